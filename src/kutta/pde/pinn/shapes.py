"""Shapes beyond boxes: balls (disks) and polygons.

Each samples seeded points inside and on its boundary, tests membership and gives exact outward
normals; see :class:`~kutta.pde.pinn.geometry.Shape`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np
import torch
from scipy.special import gamma, ndtri

from kutta.errors import InvalidArgumentError
from kutta.pde.pinn.geometry import BOUNDARY_TOL, CONTAINS_TOL, Shape, roundoff
from kutta.pde.pinn.sampling import Seed, unit_samples


class Ball(Shape):
    """The closed ball ``|x - center| <= radius`` in ``len(center) >= 2`` dimensions.

    Interior samples map the unit cube onto the ball preserving volume (radius ``r u**(1/d)``,
    direction from the other coordinates), so stratified samples stay stratified; in 2-D the
    direction is the angle ``2 pi u``, elsewhere a normalized Gaussian vector.
    Tolerances are relative to the radius, and never below the roundoff of the points' dtype.

    Example:
        >>> ball = Ball([0.0, 0.0, 0.0], 2.0)
        >>> points = ball.sample_boundary(4, seed=0, dtype=torch.float64)
        >>> bool(torch.allclose(points.norm(dim=1), torch.full((4,), 2.0, dtype=torch.float64)))
        True
        >>> ball.boundary_normal(torch.tensor([[0.0, 0.0, -2.0]])).tolist()
        [[0.0, 0.0, -1.0]]
    """

    def __init__(self, center: Sequence[float], radius: float):
        center_array = np.asarray(center, dtype=np.float64).reshape(-1)
        if center_array.size < 2:
            raise InvalidArgumentError(
                f"a ball's center needs >= 2 coordinates (use Interval in 1-D), got "
                f"{center_array.size}"
            )
        if not np.all(np.isfinite(center_array)):
            raise InvalidArgumentError(f"the center must be finite, got {center_array.tolist()}")
        if not (isinstance(radius, numbers.Real) and math.isfinite(radius) and radius > 0):
            raise InvalidArgumentError(f"the radius must be a finite number > 0, got {radius!r}")
        self.center, self.radius = center_array, float(radius)

    @property
    def dim(self) -> int:
        return self.center.size

    def __repr__(self) -> str:
        return f"{type(self).__name__}(center={self.center.tolist()}, radius={self.radius:g})"

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.center - self.radius, self.center + self.radius

    @property
    def boundary_measure(self) -> float:
        """The sphere's area ``2 pi**(d/2) / Gamma(d/2) r**(d-1)`` (``2 pi r`` in 2-D)."""
        d = self.dim
        return float(2 * math.pi ** (d / 2) / gamma(d / 2) * self.radius ** (d - 1))

    def _direction_columns(self) -> int:
        return 1 if self.dim == 2 else self.dim

    def _directions(self, unit: np.ndarray) -> np.ndarray:
        """Unit vectors from unit-cube columns (``_direction_columns()`` of them), uniform on
        the sphere when the columns are."""
        if self.dim == 2:
            angle = 2 * np.pi * unit[:, 0]
            return np.stack([np.cos(angle), np.sin(angle)], axis=1)
        # a standard Gaussian vector has a uniformly distributed direction
        gaussian = ndtri(np.clip(unit, 1e-12, 1 - 1e-12))
        return gaussian / np.linalg.norm(gaussian, axis=1, keepdims=True)

    def _points(
        self,
        radii: np.ndarray,
        directions: np.ndarray,
        dtype: torch.dtype | None,
        device: torch.device | str | None,
    ) -> torch.Tensor:
        points = self.center + radii[:, None] * directions
        return torch.as_tensor(points, dtype=dtype or torch.get_default_dtype(), device=device)

    def sample_interior(
        self,
        n: int,
        method: str = "uniform",
        seed: Seed = 0,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """``n`` points in the ball, uniform in volume, ``(n, dim)``."""
        unit = unit_samples(n, 1 + self._direction_columns(), method, seed)
        radii = self.radius * unit[:, 0] ** (1 / self.dim)
        return self._points(radii, self._directions(unit[:, 1:]), dtype, device)

    def sample_boundary(
        self,
        n: int,
        method: str = "uniform",
        seed: Seed = 0,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """``n`` points on the sphere, uniform in area, ``(n, dim)``."""
        unit = unit_samples(n, self._direction_columns(), method, seed)
        return self._points(np.full(n, self.radius), self._directions(unit), dtype, device)

    def _distance_and_tol(self, x: torch.Tensor, tol: float) -> tuple[torch.Tensor, float]:
        """Each row's distance from the center, and ``tol`` raised to the dtype's roundoff."""
        self.check_shape(x)
        center = torch.as_tensor(self.center, dtype=x.dtype, device=x.device)
        extent = (np.abs(self.center).max() + self.radius) / self.radius
        return (x - center).norm(dim=-1), max(tol, roundoff(x.dtype) * extent)

    def contains(self, x: torch.Tensor, tol: float = CONTAINS_TOL) -> torch.Tensor:
        distance, tol = self._distance_and_tol(x, tol)
        return distance <= self.radius * (1 + tol)

    def on_boundary(self, x: torch.Tensor, tol: float = BOUNDARY_TOL) -> torch.Tensor:
        distance, tol = self._distance_and_tol(x, tol)
        return (distance - self.radius).abs() <= self.radius * tol

    def boundary_normal(self, x: torch.Tensor, tol: float = BOUNDARY_TOL) -> torch.Tensor:
        """``(x - center) / |x - center|`` at boundary points ``x``: exact."""
        self.check_on_boundary(x, tol)
        offset = x - torch.as_tensor(self.center, dtype=x.dtype, device=x.device)
        return offset / offset.norm(dim=-1, keepdim=True)


def Disk(center: Sequence[float], radius: float) -> Ball:
    """A two-dimensional :class:`Ball`: the disk ``|x - center| <= radius``.

    Example:
        >>> disk = Disk([0.0, 0.0], 1.0)
        >>> disk.on_boundary(torch.tensor([[0.6, 0.8], [0.6, 0.0]])).tolist()
        [True, False]
    """
    ball = Ball(center, radius)
    if ball.dim != 2:
        raise InvalidArgumentError(f"a disk has 2 dimensions, got a center of {ball.dim}")
    return ball


class Polygon(Shape):
    """The closed region inside a simple polygon, its ``vertices`` (k, 2) in either order.

    Boundary points spread evenly along the perimeter; interior points are the bounding box's
    that fall inside. At a vertex the normal is the normalized sum of its two edges' normals
    (as a box does at its corners). Tolerances are relative to the bounding box's larger side.

    Example:
        >>> ell = Polygon([[0, 0], [2, 0], [2, 1], [1, 1], [1, 2], [0, 2]])  # an L shape
        >>> ell.contains(torch.tensor([[0.5, 1.5], [1.5, 1.5], [1.0, 1.5]])).tolist()
        [True, False, True]
        >>> ell.boundary_normal(torch.tensor([[1.5, 1.0], [0.0, 0.5]])).tolist()
        [[0.0, 1.0], [-1.0, 0.0]]
        >>> ell.boundary_measure
        8.0
    """

    def __init__(self, vertices: Sequence[Sequence[float]]):
        corners = np.asarray(vertices, dtype=np.float64)
        if corners.ndim != 2 or corners.shape[1] != 2 or len(corners) < 3:
            raise InvalidArgumentError(
                f"a polygon needs vertices of shape (k, 2) with k >= 3, got {corners.shape}"
            )
        if not np.all(np.isfinite(corners)):
            raise InvalidArgumentError("the polygon's vertices must be finite")
        edges = np.roll(corners, -1, axis=0) - corners
        if np.any(np.linalg.norm(edges, axis=1) == 0):
            raise InvalidArgumentError("the polygon repeats a vertex (an edge of length 0)")
        # the shoelace formula: positive for counter-clockwise vertices
        signed_area = 0.5 * np.sum(corners[:, 0] * edges[:, 1] - corners[:, 1] * edges[:, 0])
        if signed_area == 0:
            raise InvalidArgumentError("the polygon has zero area")
        _refuse_crossing_edges(corners, edges)
        self.vertices = corners if signed_area > 0 else corners[::-1].copy()

    @property
    def dim(self) -> int:
        return 2

    def __repr__(self) -> str:
        return f"Polygon({self.vertices.tolist()})"

    @property
    def _edges(self) -> np.ndarray:
        return np.roll(self.vertices, -1, axis=0) - self.vertices

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.vertices.min(axis=0), self.vertices.max(axis=0)

    @property
    def boundary_measure(self) -> float:
        """The perimeter."""
        return float(np.linalg.norm(self._edges, axis=1).sum())

    def sample_boundary(
        self,
        n: int,
        method: str = "uniform",
        seed: Seed = 0,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """``n`` points spread along the perimeter by arc length, ``(n, 2)``."""
        lengths = np.linalg.norm(self._edges, axis=1)
        ends = np.cumsum(lengths)
        arc = unit_samples(n, 1, method, seed)[:, 0] * ends[-1]
        edge = np.minimum(np.searchsorted(ends, arc, side="right"), len(lengths) - 1)
        along = (arc - (ends[edge] - lengths[edge])) / lengths[edge]
        points = self.vertices[edge] + along[:, None] * self._edges[edge]
        return torch.as_tensor(points, dtype=dtype or torch.get_default_dtype(), device=device)

    def _edge_distances(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, k)``: each point's distance to each edge (segment)."""
        self.check_shape(x)
        starts = torch.as_tensor(self.vertices, dtype=x.dtype, device=x.device)
        edges = torch.as_tensor(self._edges, dtype=x.dtype, device=x.device)
        offset = x[:, None, :] - starts  # (n, k, 2)
        along = ((offset * edges).sum(-1) / (edges**2).sum(-1)).clamp(0, 1)
        return (offset - along[..., None] * edges).norm(dim=-1)

    def _slack(self, x: torch.Tensor, tol: float) -> float:
        low, high = self.bounds
        return max(tol, roundoff(x.dtype)) * float((high - low).max())

    def on_boundary(self, x: torch.Tensor, tol: float = BOUNDARY_TOL) -> torch.Tensor:
        return self._edge_distances(x).min(dim=1).values <= self._slack(x, tol)

    def contains(self, x: torch.Tensor, tol: float = CONTAINS_TOL) -> torch.Tensor:
        self.check_shape(x)
        starts = torch.as_tensor(self.vertices, dtype=x.dtype, device=x.device)
        ends = starts.roll(-1, dims=0)
        px, py = x[:, :1], x[:, 1:]
        # even-odd rule: a ray from the point towards +x crosses the boundary an odd number of
        # times iff the point is inside
        straddles = (starts[:, 1] > py) != (ends[:, 1] > py)
        run = (ends[:, 0] - starts[:, 0]) / (ends[:, 1] - starts[:, 1]).where(straddles, 1.0)
        crossing_x = starts[:, 0] + (py - starts[:, 1]) * run
        crossings = (straddles & (px < crossing_x)).sum(dim=1)
        return (crossings % 2 == 1) | self.on_boundary(x, tol)

    def boundary_normal(self, x: torch.Tensor, tol: float = BOUNDARY_TOL) -> torch.Tensor:
        """The outward normal of the edge ``x`` lies on (summed over both edges at a vertex)."""
        self.check_on_boundary(x, tol)
        edges = torch.as_tensor(self._edges, dtype=x.dtype, device=x.device)
        # counter-clockwise vertices: the outward normal of an edge (dx, dy) is (dy, -dx)
        normals = torch.stack([edges[:, 1], -edges[:, 0]], dim=1) / edges.norm(dim=1, keepdim=True)
        near = (self._edge_distances(x) <= self._slack(x, tol)).to(x.dtype)
        summed = near @ normals
        return summed / summed.norm(dim=1, keepdim=True)


def _refuse_crossing_edges(starts: np.ndarray, edges: np.ndarray) -> None:
    k = len(starts)
    for i in range(k):
        for j in range(i + 2, k - (i == 0)):  # not the edge itself or its neighbours
            if _segments_cross(starts[i], edges[i], starts[j], edges[j]):
                raise InvalidArgumentError(
                    f"edges {i} and {j} of the polygon cross; the polygon must be simple"
                )


def _segments_cross(p: np.ndarray, dp: np.ndarray, q: np.ndarray, dq: np.ndarray) -> bool:
    """Whether segments ``p + s dp`` and ``q + t dq`` (s, t in [0, 1]) intersect, touching and
    collinear overlaps included."""

    def cross(a: np.ndarray, b: np.ndarray) -> float:
        return float(a[0] * b[1] - a[1] * b[0])

    sides_of_q = cross(dp, q - p), cross(dp, q + dq - p)
    sides_of_p = cross(dq, p - q), cross(dq, p + dp - q)
    if sides_of_q[0] == sides_of_q[1] == 0:  # collinear: overlap of the projections on dp
        s0, s1 = sorted([np.dot(q - p, dp), np.dot(q + dq - p, dp)])
        return s1 >= 0 and s0 <= np.dot(dp, dp)
    return min(sides_of_q) <= 0 <= max(sides_of_q) and min(sides_of_p) <= 0 <= max(sides_of_p)
