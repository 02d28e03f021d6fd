"""Where a PINN's points live: intervals, boxes, and a space shape times a time interval (other
shapes are in :mod:`~kutta.pde.pinn.shapes` and :mod:`~kutta.pde.pinn.geometry`).

Points are rows of an ``(n, dim)`` tensor (torch's default dtype unless ``dtype`` is given); for
space-time domains the last column is time.
Sampling is seeded and draws from the unit cube by one of three methods ("uniform",
"lhs" = Latin hypercube, "sobol" = scrambled Sobol), then maps the unit cube onto the domain's
interior, its boundary, or its initial slice.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from kutta.errors import InvalidArgumentError
from kutta.pde.pinn.geometry import (
    BOUNDARY_TOL,
    CONTAINS_TOL,
    PointSet,
    Shape,
    refuse_failing_rows,
)
from kutta.pde.pinn.sampling import Seed, unit_samples


class Box(Shape):
    """The axis-aligned box ``[low_0, high_0] x ... x [low_{d-1}, high_{d-1}]``.

    Example:
        >>> square = Box([0.0, 0.0], [1.0, 2.0])
        >>> square.dim, square.sample_interior(5, "sobol", seed=1).shape
        (2, torch.Size([5, 2]))
        >>> bool(square.on_boundary(torch.tensor([[0.0, 0.5], [0.5, 0.5]])).tolist() == [True, False])
        True
    """

    def __init__(self, low: Sequence[float], high: Sequence[float]):
        low_array = np.asarray(low, dtype=np.float64).reshape(-1)
        high_array = np.asarray(high, dtype=np.float64).reshape(-1)
        if low_array.shape != high_array.shape or low_array.size == 0:
            raise InvalidArgumentError(
                f"low and high must have the same nonzero length, got {low_array.size} and "
                f"{high_array.size}"
            )
        if not (np.all(np.isfinite(low_array)) and np.all(np.isfinite(high_array))):
            raise InvalidArgumentError("box bounds must be finite")
        if np.any(high_array <= low_array):
            raise InvalidArgumentError(f"every high must exceed its low, got {low=} and {high=}")
        self.low, self.high = low_array, high_array

    @property
    def dim(self) -> int:
        return self.low.size

    def __repr__(self) -> str:
        return f"{type(self).__name__}(low={self.low.tolist()}, high={self.high.tolist()})"

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.low, self.high

    @property
    def boundary_measure(self) -> float:
        return float(2 * self._face_areas().sum())

    def _face_areas(self) -> np.ndarray:
        """The area of the two faces across each axis (the box without that axis); a 1-D
        "face" is a point, of measure 1."""
        widths = self.high - self.low
        return np.array([np.prod(np.delete(widths, axis)) for axis in range(self.dim)])

    def _scale(
        self, unit: np.ndarray, dtype: torch.dtype | None, device: torch.device | str | None
    ) -> torch.Tensor:
        points = self.low + unit * (self.high - self.low)
        return torch.as_tensor(points, dtype=dtype or torch.get_default_dtype(), device=device)

    def sample_interior(
        self,
        n: int,
        method: str = "uniform",
        seed: Seed = 0,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """``n`` points inside the box, shape ``(n, dim)``."""
        return self._scale(unit_samples(n, self.dim, method, seed), dtype, device)

    def sample_boundary(
        self,
        n: int,
        method: str = "uniform",
        seed: Seed = 0,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """``n`` points on the faces, each face drawn in proportion to its area, ``(n, dim)``."""
        return self._scale(
            self._unit_boundary(unit_samples(n, self.dim, method, seed)), dtype, device
        )

    def _unit_boundary(self, unit: np.ndarray) -> np.ndarray:
        """Map unit-cube samples onto the unit cube's faces (area-weighted as in the real box).

        The first coordinate picks the face, the others place the point on it, so stratified
        samples stay stratified over faces and over positions.
        """
        cumulative = np.cumsum(np.repeat(self._face_areas(), 2))
        cumulative /= cumulative[-1]
        choice = unit[:, 0]
        face = np.minimum(np.searchsorted(cumulative, choice, side="right"), 2 * self.dim - 1)
        points = np.empty_like(unit)
        others = unit[:, 1:]
        for axis in range(self.dim):
            rows = face // 2 == axis
            free = [a for a in range(self.dim) if a != axis]
            points[np.ix_(rows, free)] = others[rows]
            points[rows, axis] = (face[rows] % 2).astype(np.float64)
        return points

    def contains(self, x: torch.Tensor, tol: float = CONTAINS_TOL) -> torch.Tensor:
        """Per row of ``x`` (n, dim): inside or on the boundary (within ``tol`` times the size)."""
        self.check_shape(x)
        low, high, scale = self._bounds_like(x, tol)
        return ((x >= low - scale) & (x <= high + scale)).all(dim=-1)

    def on_boundary(self, x: torch.Tensor, tol: float = BOUNDARY_TOL) -> torch.Tensor:
        """Per row: in the box and within ``tol`` (relative to the box's size) of a face."""
        low, high, scale = self._bounds_like(x, tol)
        near_face = ((x - low).abs() <= scale) | ((x - high).abs() <= scale)
        return self.contains(x, tol) & near_face.any(dim=-1)

    def boundary_normal(self, x: torch.Tensor, tol: float = BOUNDARY_TOL) -> torch.Tensor:
        """Outward unit normals at boundary points ``x`` (n, dim).

        At edges and corners the normal is the normalized sum of the faces' normals (the
        derivative there is not defined; this is the usual convention).
        """
        self.check_on_boundary(x, tol)
        low, high, scale = self._bounds_like(x, tol)
        normal = ((x - high).abs() <= scale).to(x.dtype) - ((x - low).abs() <= scale).to(x.dtype)
        return normal / normal.norm(dim=-1, keepdim=True)

    def _bounds_like(self, x: torch.Tensor, tol: float) -> tuple[torch.Tensor, ...]:
        low = torch.as_tensor(self.low, dtype=x.dtype, device=x.device)
        high = torch.as_tensor(self.high, dtype=x.dtype, device=x.device)
        return low, high, tol * (high - low)


class Interval(Box):
    """The interval ``[low, high]`` as a one-dimensional :class:`Box`.

    Example:
        >>> Interval(-1.0, 1.0).sample_boundary(4).flatten().tolist()
        [1.0, -1.0, -1.0, -1.0]
    """

    def __init__(self, low: float, high: float):
        super().__init__([low], [high])

    def __repr__(self) -> str:
        return f"Interval({self.low[0]:g}, {self.high[0]:g})"


def Rectangle(low: Sequence[float], high: Sequence[float]) -> Box:
    """A two-dimensional :class:`Box`.

    Example:
        >>> Rectangle([0, 0], [1, 1]).dim
        2
    """
    box = Box(low, high)
    if box.dim != 2:
        raise InvalidArgumentError(f"a rectangle has 2 dimensions, got {box.dim}")
    return box


class SpaceTime(PointSet):
    """A space shape times the time interval ``[t0, t1]``; points are ``(x_1, ..., x_d, t)``.

    "Boundary" means the spatial boundary times the time interval; the initial slice
    (``t = t0``) is separate, as the conditions on it are. A box's space and time are drawn
    together (one stratified draw in ``d + 1`` dimensions); another shape's points come from
    its own sampler, and their times from the same seeded generator.

    Example:
        >>> domain = SpaceTime(Interval(-1.0, 1.0), 0.0, 1.0)
        >>> domain.dim, domain.sample_initial(3)[:, 1].tolist()
        (2, [0.0, 0.0, 0.0])
        >>> from kutta.pde.pinn import Disk
        >>> cylinder = SpaceTime(Disk([0.0, 0.0], 1.0), 0.0, 2.0)
        >>> cylinder.on_boundary(torch.tensor([[0.0, 1.0, 0.5], [0.0, 0.5, 0.5]])).tolist()
        [True, False]
    """

    def __init__(self, space: Shape, t0: float, t1: float):
        if not isinstance(space, Shape):
            raise InvalidArgumentError(
                f"space must be a shape (Interval, Box, Disk, ...), got {type(space).__name__}"
            )
        if not (np.isfinite(t0) and np.isfinite(t1) and t1 > t0):
            raise InvalidArgumentError(f"the time interval needs finite t0 < t1, got {t0}, {t1}")
        self.space, self.t0, self.t1 = space, float(t0), float(t1)

    @property
    def dim(self) -> int:
        return self.space.dim + 1

    def __repr__(self) -> str:
        return f"SpaceTime({self.space!r}, {self.t0:g}, {self.t1:g})"

    def _box(self) -> Box:
        """The space box times the time interval (for a box space)."""
        return Box([*self.space.low, self.t0], [*self.space.high, self.t1])

    def _with_times(
        self,
        space: torch.Tensor,
        method: str,
        rng: np.random.Generator,
        dtype: torch.dtype | None,
        device: torch.device | str | None,
    ) -> torch.Tensor:
        times = self.t0 + unit_samples(len(space), 1, method, rng) * (self.t1 - self.t0)
        points = torch.cat([space, torch.as_tensor(times)], dim=1)
        return points.to(dtype=dtype or torch.get_default_dtype(), device=device)

    def sample_interior(
        self,
        n: int,
        method: str = "uniform",
        seed: Seed = 0,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """``n`` points in space x time, shape ``(n, dim)``."""
        if isinstance(self.space, Box):
            return self._box().sample_interior(n, method, seed, dtype, device)
        rng = np.random.default_rng(seed)
        space = self.space.sample_interior(n, method, rng, torch.float64)
        return self._with_times(space, method, rng, dtype, device)

    def sample_boundary(
        self,
        n: int,
        method: str = "uniform",
        seed: Seed = 0,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """``n`` points on the spatial boundary at times spread over ``[t0, t1]``."""
        if isinstance(self.space, Box):
            unit = unit_samples(n, self.dim, method, seed)
            space_unit = self.space._unit_boundary(unit[:, :-1])
            return self._box()._scale(
                np.concatenate([space_unit, unit[:, -1:]], axis=1), dtype, device
            )
        rng = np.random.default_rng(seed)
        space = self.space.sample_boundary(n, method, rng, torch.float64)
        return self._with_times(space, method, rng, dtype, device)

    def sample_initial(
        self,
        n: int,
        method: str = "uniform",
        seed: Seed = 0,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """``n`` points of the space shape at ``t = t0``."""
        space = self.space.sample_interior(n, method, seed, dtype, device)
        return torch.cat([space, torch.full_like(space[:, :1], self.t0)], dim=1)

    def contains(self, x: torch.Tensor, tol: float = CONTAINS_TOL) -> torch.Tensor:
        """Per row: in the space shape at a time in ``[t0, t1]`` (within ``tol``)."""
        self.check_shape(x)
        slack = tol * (self.t1 - self.t0)
        in_time = (x[:, -1] >= self.t0 - slack) & (x[:, -1] <= self.t1 + slack)
        return self.space.contains(x[:, :-1], tol) & in_time

    def on_boundary(self, x: torch.Tensor, tol: float = BOUNDARY_TOL) -> torch.Tensor:
        """Per row: on the spatial boundary (at any time in ``[t0, t1]``)."""
        return self.contains(x, tol) & self.space.on_boundary(x[:, :-1], tol)

    def on_initial(self, x: torch.Tensor, tol: float = BOUNDARY_TOL) -> torch.Tensor:
        """Per row: in the domain with ``t = t0``."""
        scale = tol * (self.t1 - self.t0)
        return self.contains(x, tol) & ((x[:, -1] - self.t0).abs() <= scale)

    def boundary_normal(self, x: torch.Tensor, tol: float = BOUNDARY_TOL) -> torch.Tensor:
        """Outward normals of the spatial boundary, with a zero time component."""
        self.check_on_boundary(x, tol)
        normal = self.space.boundary_normal(x[:, :-1], tol)
        return torch.cat([normal, torch.zeros_like(x[:, :1])], dim=1)

    def check_on_boundary(self, x: torch.Tensor, tol: float = BOUNDARY_TOL) -> None:
        self.check_shape(x)
        refuse_failing_rows(
            x, self.on_boundary(x, tol), f"are not on the spatial boundary of {self!r}"
        )

    def check_initial(self, x: torch.Tensor, tol: float = BOUNDARY_TOL) -> None:
        self.check_shape(x)
        refuse_failing_rows(x, self.on_initial(x, tol), f"are not at t0 = {self.t0:g} in {self!r}")


Domain = Shape | SpaceTime
