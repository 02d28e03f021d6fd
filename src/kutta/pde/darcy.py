"""2-D Darcy flow -div(a grad u) = f on the unit square with u = 0 on the boundary: a
second-order finite-difference solver (scipy.sparse, one LU factorization per sample) and the FNO
data set of Li et al. (2021): a = 12 where a Neumann GRF z >= 0 and 3 where z < 0, f = 1.

Grid: ``s x s`` nodes ``x_i = i / (s - 1)`` (boundary included); the unknowns are the interior
nodes. The flux between neighbouring nodes uses the arithmetic mean of their coefficients, so the
five-point operator is symmetric positive definite.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse
import scipy.sparse.linalg
import torch

from kutta.errors import InvalidArgumentError
from kutta.pde.grf import neumann_grf_2d


def darcy_matrix(a: np.ndarray) -> scipy.sparse.csc_matrix:
    """The five-point matrix of -div(a grad .) on the interior nodes of an ``s x s`` grid.

    ``a`` holds the coefficient at every node (shape ``(s, s)``, axis 0 is x). Unknowns are
    numbered row-major over the interior, ``(i - 1) * (s - 2) + (j - 1)``.

    Example:
        >>> darcy_matrix(np.ones((4, 4))).shape
        (4, 4)
    """
    s = a.shape[0]
    h2 = (1.0 / (s - 1)) ** 2
    face_x = 0.5 * (a[1:, :] + a[:-1, :]) / h2  # between nodes (i, j) and (i + 1, j)
    face_y = 0.5 * (a[:, 1:] + a[:, :-1]) / h2  # between nodes (i, j) and (i, j + 1)
    east, west = face_x[1:, 1:-1], face_x[:-1, 1:-1]
    north, south = face_y[1:-1, 1:], face_y[1:-1, :-1]
    index = np.arange((s - 2) ** 2).reshape(s - 2, s - 2)
    # neighbours on the boundary are zero (Dirichlet), so only interior couplings enter
    blocks = [
        (index, index, east + west + north + south),
        (index[:-1, :], index[1:, :], -east[:-1, :]),
        (index[1:, :], index[:-1, :], -west[1:, :]),
        (index[:, :-1], index[:, 1:], -north[:, :-1]),
        (index[:, 1:], index[:, :-1], -south[:, 1:]),
    ]
    rows, cols, values = (np.concatenate([b[k].ravel() for b in blocks]) for k in range(3))
    size = (s - 2) ** 2
    return scipy.sparse.csc_matrix((values, (rows, cols)), shape=(size, size))


def solve_darcy(a: torch.Tensor, forcing: float | torch.Tensor = 1.0) -> torch.Tensor:
    """Solve -div(a grad u) = forcing, u = 0 on the boundary, for each coefficient field in ``a``.

    ``a`` has shape ``(s, s)`` or ``(batch, s, s)`` (nodal values, positive); ``forcing`` is a
    number or nodal values of the same shape. Returns ``u`` at all nodes (zero on the boundary)
    in ``a``'s dtype and device; the solve itself runs in float64 on the CPU (scipy's sparse LU).

    Example:
        >>> u = solve_darcy(torch.ones(33, 33, dtype=torch.float64))
        >>> round(u[16, 16].item(), 3)  # the torsion function's centre value, 0.07367...
        0.074
    """
    if a.ndim not in (2, 3) or a.shape[-1] != a.shape[-2] or a.shape[-1] < 3:
        raise InvalidArgumentError(
            f"a must have shape (s, s) or (batch, s, s) with s >= 3, got {tuple(a.shape)}"
        )
    if not bool((a > 0).all()):
        raise InvalidArgumentError("the coefficient a must be positive everywhere")
    batch = a.reshape(-1, *a.shape[-2:]).detach().cpu().double().numpy()
    rhs = torch.as_tensor(forcing, dtype=torch.float64).detach().cpu()
    rhs = rhs.expand(a.shape).reshape(batch.shape).numpy()
    s = batch.shape[-1]
    u = np.zeros_like(batch)
    for n, coefficient in enumerate(batch):
        factor = scipy.sparse.linalg.splu(darcy_matrix(coefficient))
        u[n, 1:-1, 1:-1] = factor.solve(np.ascontiguousarray(rhs[n, 1:-1, 1:-1]).ravel()).reshape(
            s - 2, s - 2
        )
    return torch.from_numpy(u).reshape(a.shape).to(dtype=a.dtype, device=a.device)


def darcy_data(
    num_samples: int,
    resolution: int,
    *,
    solver_resolution: int | None = None,
    high: float = 12.0,
    low: float = 3.0,
    alpha: float = 2.0,
    tau: float = 3.0,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairs ``(a, u)`` of Li et al.'s Darcy benchmark on a ``resolution x resolution`` grid.

    z ~ N(0, (-Laplacian + tau^2 I)^-alpha) (Neumann) on the solver grid, a = high where z >= 0
    and low elsewhere, f = 1; both fields are then subsampled to ``resolution``, as the paper does
    from 421 x 421 (``solver_resolution - 1`` must be a multiple of ``resolution - 1``).

    Example:
        >>> a, u = darcy_data(2, 9, solver_resolution=17, generator=torch.Generator().manual_seed(0))
        >>> tuple(a.shape), tuple(u.shape)
        ((2, 9, 9), (2, 9, 9))
    """
    solver_resolution = solver_resolution or resolution
    if resolution < 3 or (solver_resolution - 1) % (resolution - 1):
        raise InvalidArgumentError(
            f"solver_resolution - 1 ({solver_resolution - 1}) must be a multiple of "
            f"resolution - 1 ({resolution - 1}), with resolution >= 3"
        )
    if low <= 0 or high <= 0:
        raise InvalidArgumentError(f"the coefficient values must be positive, got {high}, {low}")
    z = neumann_grf_2d(num_samples, solver_resolution, alpha=alpha, tau=tau, generator=generator)
    a = torch.where(z >= 0, high, low).to(torch.float64)
    u = solve_darcy(a)
    stride = (solver_resolution - 1) // (resolution - 1)
    return a[:, ::stride, ::stride].to(dtype), u[:, ::stride, ::stride].to(dtype)
