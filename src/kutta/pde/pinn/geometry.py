"""Shapes, and shapes built from others by set operations (constructive solid geometry, CSG).

A :class:`Shape` is a closed region of ``R**d``: it samples seeded points inside it and on its
boundary, tests membership per row of an ``(n, d)`` tensor (:meth:`~Shape.contains`,
:meth:`~Shape.on_boundary`), and gives outward unit normals on its boundary (for Neumann
conditions). Tolerances are relative to the shape's size.

``a | b`` is :class:`Union`, ``a & b`` :class:`Intersection` and ``a - b`` :class:`Difference`.
Their interiors are sampled by rejection from their bounding box, their boundaries by sampling
each part's boundary in proportion to its measure and keeping the points on the result's
boundary. Where the parts' boundaries coincide with opposite normals (two boxes sharing a face,
or a hole flush with the outer boundary as in ``Rectangle - Rectangle`` making an L), the shared
piece is not boundary: it lies inside the result, or outside its closure.
"""

from __future__ import annotations

import abc
import math

import numpy as np
import torch

from kutta.errors import InvalidArgumentError
from kutta.pde.pinn.sampling import Seed, check_count, unit_samples

CONTAINS_TOL = 1e-12
BOUNDARY_TOL = 1e-9
#: boundary points each part of a combination draws (Sobol, fixed seed) to estimate its measure
MEASURE_SAMPLES = 4096
#: a rejection sampler that drew this many candidates and kept none calls the shape empty
EMPTY_AFTER = 100_000
#: the most candidates a rejection sampler draws at once (bounds its memory)
MAX_BATCH = 100_000
#: two parts' unit normals cancel when their (signed) sum is shorter than this: opposite
#: within about 0.006 degrees, far above the roundoff of float32 normals
CANCELLING = 1e-4


class PointSet(abc.ABC):
    """What every domain (a :class:`Shape`, or a shape times a time interval) checks points by:
    their shape ``(n, dim)`` and membership."""

    @property
    @abc.abstractmethod
    def dim(self) -> int:
        """The number of coordinates of a point."""

    @abc.abstractmethod
    def contains(self, x: torch.Tensor, tol: float = CONTAINS_TOL) -> torch.Tensor:
        """Per row of ``x`` (n, dim): inside or on the boundary (within ``tol``)."""

    def check_shape(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[1] != self.dim:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise InvalidArgumentError(
                f"points must be a tensor of shape (n, {self.dim}) for {self!r}, got {shape}"
            )

    def check_inside(self, x: torch.Tensor, tol: float = CONTAINS_TOL) -> None:
        """Raise :class:`InvalidArgumentError` naming the first point outside the domain."""
        refuse_failing_rows(x, self.contains(x, tol), f"lie outside {self!r}")


class Shape(PointSet):
    """A closed region of ``R**dim``; subclasses give membership, normals and boundary samples.

    Example:
        >>> from kutta.pde.pinn import Disk, Rectangle
        >>> plate = Rectangle([-1.0, -1.0], [1.0, 1.0]) - Disk([0.0, 0.0], 0.5)
        >>> plate.contains(torch.tensor([[0.0, 0.0], [0.9, 0.0], [0.5, 0.0]])).tolist()
        [False, True, True]
    """

    @property
    @abc.abstractmethod
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """``(low, high)``: a box holding the shape."""

    @property
    @abc.abstractmethod
    def boundary_measure(self) -> float:
        """The boundary's length (2-D), area (3-D), ...; 1-D boundaries count their points."""

    @abc.abstractmethod
    def on_boundary(self, x: torch.Tensor, tol: float = BOUNDARY_TOL) -> torch.Tensor:
        """Per row of ``x`` (n, dim): on the boundary (within ``tol``)."""

    @abc.abstractmethod
    def boundary_normal(self, x: torch.Tensor, tol: float = BOUNDARY_TOL) -> torch.Tensor:
        """Outward unit normals ``(n, dim)`` at boundary points ``x`` (others are refused)."""

    @abc.abstractmethod
    def sample_boundary(
        self,
        n: int,
        method: str = "uniform",
        seed: Seed = 0,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """``n`` points on the boundary, spread evenly over its measure, ``(n, dim)``."""

    def sample_interior(
        self,
        n: int,
        method: str = "uniform",
        seed: Seed = 0,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """``n`` points inside, ``(n, dim)``: the bounding box's samples that fall inside.

        Candidates come in batches drawn by ``method`` from one generator seeded by ``seed``
        (a stratified batch stays roughly stratified after rejection).
        """
        check_count(n)
        rng = np.random.default_rng(seed)
        low, high = self.bounds
        kept: list[torch.Tensor] = []
        count = drawn = 0
        batch = max(2 * n, 64)
        while count < n:
            unit = unit_samples(batch, self.dim, method, rng)
            candidates = torch.as_tensor(low + unit * (high - low))
            inside = candidates[self.contains(candidates)]
            kept.append(inside)
            count, drawn = count + len(inside), drawn + batch
            if count == 0 and drawn >= EMPTY_AFTER:
                raise InvalidArgumentError(
                    f"none of {drawn} points of the bounding box fell inside {self!r}; is it empty?"
                )
            # the next batch aims at the points still missing at the acceptance seen so far
            batch = min(max(math.ceil(1.2 * (n - count) * drawn / max(count, 1)), 64), MAX_BATCH)
        return _as_points(torch.cat(kept)[:n], dtype, device)

    def strictly_inside(self, x: torch.Tensor, tol: float = BOUNDARY_TOL) -> torch.Tensor:
        """Per row: inside and farther than ``tol`` from the boundary."""
        return self.contains(x, tol) & ~self.on_boundary(x, tol)

    def check_on_boundary(self, x: torch.Tensor, tol: float = BOUNDARY_TOL) -> None:
        refuse_failing_rows(x, self.on_boundary(x, tol), f"are not on the boundary of {self!r}")

    def __or__(self, other: Shape) -> Union:
        return Union(self, other)

    def __and__(self, other: Shape) -> Intersection:
        return Intersection(self, other)

    def __sub__(self, other: Shape) -> Difference:
        return Difference(self, other)


class Combination(Shape):
    """Two shapes of one dimension combined by a set operation; see :class:`Union`."""

    def __init__(self, first: Shape, second: Shape):
        for part in (first, second):
            if not isinstance(part, Shape):
                raise InvalidArgumentError(
                    f"{type(self).__name__} combines shapes (Box, Ball, ...), "
                    f"got {type(part).__name__}"
                )
        if first.dim != second.dim:
            raise InvalidArgumentError(
                f"{type(self).__name__} needs shapes of one dimension, got {first.dim} "
                f"({first!r}) and {second.dim} ({second!r})"
            )
        self.first, self.second = first, second
        self._boundary_measure: float | None = None

    @property
    def dim(self) -> int:
        return self.first.dim

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.first!r}, {self.second!r})"

    @abc.abstractmethod
    def boundary_parts(self, x: torch.Tensor, tol: float) -> list[tuple[Shape, torch.Tensor, int]]:
        """Per part: ``(part, rows of x on the part's boundary that bound the result, sign)``;
        the result's outward normal there is ``sign`` times the part's."""

    def boundary(
        self, x: torch.Tensor, tol: float = BOUNDARY_TOL
    ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """``(rows, normal, cancelled)``: per part, the rows of ``x`` on its boundary that bound
        the result; the result's outward normal there (not normalized; zero elsewhere); and the
        rows where the parts' boundaries meet with cancelling normals, which bound nothing."""
        parts = self.boundary_parts(x, tol)
        normal = torch.zeros_like(x)
        for part, rows, sign in parts:
            if bool(rows.any()):
                normal[rows] = normal[rows] + sign * part.boundary_normal(x[rows], tol)
        on_a_part = parts[0][1] | parts[1][1]
        cancelled = on_a_part & (normal.norm(dim=-1) < CANCELLING)
        return [rows & ~cancelled for _, rows, _ in parts], normal, cancelled

    def on_boundary(self, x: torch.Tensor, tol: float = BOUNDARY_TOL) -> torch.Tensor:
        self.check_shape(x)
        first, second = self.boundary(x, tol)[0]
        return first | second

    def boundary_normal(self, x: torch.Tensor, tol: float = BOUNDARY_TOL) -> torch.Tensor:
        """The bounding part's outward normal (negated for a hole); where two parts bound the
        result (a corner), their normalized sum, as :class:`Box` does at its corners."""
        self.check_on_boundary(x, tol)
        normal = self.boundary(x, tol)[1]
        return normal / normal.norm(dim=-1, keepdim=True)

    @property
    def boundary_measure(self) -> float:
        """An estimate: each part's measure times the fraction of its boundary (Sobol points,
        fixed seed) that bounds the result."""
        if self._boundary_measure is None:
            self._boundary_measure = sum(
                part.boundary_measure * float(kept.double().mean())
                for part, kept in self._kept_boundary_samples(MEASURE_SAMPLES)
            )
        return self._boundary_measure

    def _kept_boundary_samples(
        self, n: int, method: str = "sobol", seed: Seed = 0
    ) -> list[tuple[Shape, torch.Tensor]]:
        rng = np.random.default_rng(seed)
        result = []
        for index, part in enumerate((self.first, self.second)):
            points = part.sample_boundary(n, method, rng, torch.float64)
            result.append((part, self.boundary(points)[0][index]))
        return result

    def sample_boundary(
        self,
        n: int,
        method: str = "uniform",
        seed: Seed = 0,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """``n`` points on the boundary: each part's boundary points, drawn in proportion to
        the part's measure, that bound the result (so the boundary is covered evenly)."""
        check_count(n)
        if self.boundary_measure <= 0:
            raise InvalidArgumentError(f"{self!r} has no boundary points; is it empty?")
        rng = np.random.default_rng(seed)
        parts = (self.first, self.second)
        measures = np.array([part.boundary_measure for part in parts])
        kept_fraction = self.boundary_measure / measures.sum()
        kept: list[torch.Tensor] = []
        count = 0
        while count < n:
            wanted = math.ceil(1.2 * (n - count) / kept_fraction) + 16
            for index, k in enumerate(rng.multinomial(wanted, measures / measures.sum())):
                if k == 0:
                    continue
                points = parts[index].sample_boundary(int(k), method, rng, torch.float64)
                points = points[self.boundary(points)[0][index]]
                kept.append(points)
                count += len(points)
        points = torch.cat(kept)
        # mixed over the parts, so any n rows keep the parts' proportions
        points = points[torch.as_tensor(rng.permutation(len(points))[:n])]
        return _as_points(points, dtype, device)


class Union(Combination):
    """The points in ``first`` or ``second`` (also ``first | second``).

    Example:
        >>> from kutta.pde.pinn import Disk
        >>> pair = Disk([0.0, 0.0], 1.0) | Disk([1.0, 0.0], 1.0)
        >>> pair.contains(torch.tensor([[1.9, 0.0], [0.5, 0.9], [2.1, 0.0]])).tolist()
        [True, False, False]
        >>> pair.on_boundary(torch.tensor([[-1.0, 0.0], [1.0, 0.0]])).tolist()
        [True, False]
    """

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        (low_a, high_a), (low_b, high_b) = self.first.bounds, self.second.bounds
        return np.minimum(low_a, low_b), np.maximum(high_a, high_b)

    def contains(self, x: torch.Tensor, tol: float = CONTAINS_TOL) -> torch.Tensor:
        self.check_shape(x)
        return self.first.contains(x, tol) | self.second.contains(x, tol)

    def boundary_parts(self, x: torch.Tensor, tol: float) -> list[tuple[Shape, torch.Tensor, int]]:
        a, b = self.first, self.second
        return [
            (a, a.on_boundary(x, tol) & ~b.strictly_inside(x, tol), 1),
            (b, b.on_boundary(x, tol) & ~a.strictly_inside(x, tol), 1),
        ]


class Intersection(Combination):
    """The points in both ``first`` and ``second`` (also ``first & second``).

    Example:
        >>> from kutta.pde.pinn import Disk, Rectangle
        >>> half = Disk([0.0, 0.0], 1.0) & Rectangle([0.0, -1.0], [1.0, 1.0])
        >>> half.on_boundary(torch.tensor([[0.0, 0.5], [1.0, 0.0], [-1.0, 0.0]])).tolist()
        [True, True, False]
    """

    def __init__(self, first: Shape, second: Shape):
        super().__init__(first, second)
        low, high = self.bounds
        if np.any(low >= high):
            raise InvalidArgumentError(f"the shapes of {self!r} do not overlap")

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        (low_a, high_a), (low_b, high_b) = self.first.bounds, self.second.bounds
        return np.maximum(low_a, low_b), np.minimum(high_a, high_b)

    def contains(self, x: torch.Tensor, tol: float = CONTAINS_TOL) -> torch.Tensor:
        self.check_shape(x)
        touching = self.boundary(x, tol)[2]
        return self.first.contains(x, tol) & self.second.contains(x, tol) & ~touching

    def boundary_parts(self, x: torch.Tensor, tol: float) -> list[tuple[Shape, torch.Tensor, int]]:
        a, b = self.first, self.second
        return [
            (a, a.on_boundary(x, tol) & b.contains(x, tol), 1),
            (b, b.on_boundary(x, tol) & a.contains(x, tol), 1),
        ]


class Difference(Combination):
    """The points of ``first`` not inside ``second`` (also ``first - second``); the hole's
    boundary belongs to the result, with normals pointing into the hole.

    Example:
        >>> from kutta.pde.pinn import Disk, Rectangle
        >>> plate = Rectangle([-1.0, -1.0], [1.0, 1.0]) - Disk([0.0, 0.0], 0.5)
        >>> plate.boundary_normal(torch.tensor([[0.5, 0.0], [1.0, 0.0]])).tolist()
        [[-1.0, 0.0], [1.0, 0.0]]
    """

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.first.bounds

    def contains(self, x: torch.Tensor, tol: float = CONTAINS_TOL) -> torch.Tensor:
        self.check_shape(x)
        flush = self.boundary(x, tol)[2]  # e.g. the faces of a hole cut flush with the outside
        return self.first.contains(x, tol) & ~self.second.strictly_inside(x, tol) & ~flush

    def boundary_parts(self, x: torch.Tensor, tol: float) -> list[tuple[Shape, torch.Tensor, int]]:
        a, b = self.first, self.second
        return [
            (a, a.on_boundary(x, tol) & ~b.strictly_inside(x, tol), 1),
            (b, b.on_boundary(x, tol) & a.contains(x, tol), -1),
        ]


def roundoff(dtype: torch.dtype) -> float:
    """A relative tolerance just above the rounding of points stored in ``dtype``: a float32
    point computed on a curved boundary is off it by about 1e-7."""
    return 64 * torch.finfo(dtype).eps if dtype.is_floating_point else 0.0


def _as_points(
    points: torch.Tensor, dtype: torch.dtype | None, device: torch.device | str | None
) -> torch.Tensor:
    return points.to(dtype=dtype or torch.get_default_dtype(), device=device)


def refuse_failing_rows(x: torch.Tensor, passes: torch.Tensor, failure: str) -> None:
    """Raise :class:`InvalidArgumentError` counting the rows of ``x`` where ``passes`` is false
    and showing the first; ``failure`` completes "N of M points ..."."""
    if not bool(passes.all()):
        row = int((~passes).nonzero()[0])
        raise InvalidArgumentError(
            f"{int((~passes).sum())} of {len(x)} points {failure}, e.g. row {row}: {x[row].tolist()}"
        )
