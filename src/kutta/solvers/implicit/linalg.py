"""Jacobians, batched LU factorizations and error-scaled norms for the implicit methods.

Everything here works on *blocks*: a state viewed as ``(B, n)``, each row an independent
system with its own ``(n, n)`` Jacobian block. Three layouts map the user's state to blocks:

* ``"coupled"`` (shared mode, torchdiffeq's semantics): one block holding the whole state, so
  the Jacobian couples every element (``B = 1``).
* ``"batch"`` (shared mode, opt-in): the leading dimension indexes independent systems, one
  block each; a ``(B, ...)`` state never becomes one ``(B n, B n)`` matrix.
* ``"per_sample"``: the loop's per-sample mode, ``y`` of shape ``(B, N)``; one block per sample.

Block Jacobians of a row-independent ``g: (B, n) -> (B, n)`` cost ``n`` JVPs in one ``vmap``
(forward mode: differentiate ``g(z + u)`` w.r.t. a shift ``u`` shared by all rows) or ``n`` VJPs
(reverse mode: differentiate ``g(z).sum(0)``), never ``B n``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch

from ...controllers import per_sample_rms_norm
from ...errors import InvalidArgumentError

BlockFn = Callable[[torch.Tensor], torch.Tensor]
LAYOUTS = ("coupled", "batch", "per_sample")
JACOBIAN_MODES = ("autograd", "fwd", "rev")


def new_stats() -> dict[str, int]:
    """Fresh counters of the expensive operations of one solve."""
    return {"n_jac": 0, "n_lu": 0, "n_newton_iters": 0, "n_newton_failures": 0}


def to_blocks(y: torch.Tensor, layout: str) -> torch.Tensor:
    """The state as ``(B, n)`` blocks (a view)."""
    if layout == "coupled":
        return y.reshape(1, -1)
    if y.dim() < 1:
        raise InvalidArgumentError(
            f"layout {layout!r} needs a leading batch dimension, got a scalar state"
        )
    return y.reshape(y.shape[0], -1)


def block_jacobian(
    g: BlockFn, z: torch.Tensor, mode: str = "autograd", keep_graph: bool = False
) -> torch.Tensor:
    """The ``(B, n, n)`` Jacobian blocks of a row-independent map ``g`` at ``z`` of shape ``(B, n)``.

    Modes: ``"autograd"`` runs one backward pass of ``g(z).sum(0)`` batched over the ``n`` unit
    cotangents (fastest for small ``n``: one forward, one vectorized backward), ``"rev"``/``"fwd"``
    vectorize ``n`` VJPs/JVPs with ``torch.func``. With ``keep_graph`` (and grad mode on) the result is differentiable w.r.t. ``z``
    and whatever ``g`` closes over, which backpropagation through Rosenbrock steps needs.

    Example:
        >>> z = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
        >>> block_jacobian(lambda x: x**2, z)[1]
        tensor([[6., 0.],
                [0., 8.]])
    """
    if not (keep_graph and torch.is_grad_enabled()):
        z = z.detach()
    if mode == "fwd":
        shift = torch.zeros(z.shape[1], dtype=z.dtype, device=z.device)
        return torch.func.jacfwd(lambda u: g(z + u))(shift)
    if mode == "rev":
        return torch.func.jacrev(lambda x: g(x).sum(0))(z).movedim(1, 0)
    keep_graph = keep_graph and torch.is_grad_enabled()
    n = z.shape[1]
    with torch.enable_grad():
        x = z if z.requires_grad else z.detach().requires_grad_()
        out = g(x).sum(0)
        # All n rows in one backward pass, batched over the unit cotangents.
        eye = torch.eye(n, dtype=out.dtype, device=out.device)
        (rows,) = torch.autograd.grad(
            out, x, eye, create_graph=keep_graph, allow_unused=True, is_grads_batched=True
        )
    if rows is None:  # g does not depend on z at all
        return z.new_zeros(z.shape[0], n, n)
    return rows.movedim(0, 1)


class ErrorScale:
    """``atol + rtol * |y|`` in block layout, and the weighted RMS norm per block.

    A floor of a few ulps on ``rtol`` keeps Newton's stopping test reachable when the user's
    tolerances are below the dtype's resolution (``rtol=1e-12`` in float32, say). The casts are
    made once per dtype and device.
    """

    def __init__(self, atol: Any, rtol: Any):
        self.atol, self.rtol = atol, rtol
        self._cast: tuple | None = None

    def tensors(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float | None]:
        """``(atol, rtol, tiny)`` cast to ``like``'s dtype and device (see :func:`error_scale`)."""
        if self._cast is None or self._cast[0] != (like.dtype, like.device):
            finfo = torch.finfo(like.dtype)
            atol = torch.as_tensor(self.atol, dtype=like.dtype, device=like.device)
            rtol = torch.as_tensor(self.rtol, dtype=like.dtype, device=like.device)
            # A zero atol needs a floor against dividing by zero; a positive one is its own.
            tiny = None if bool((atol > 0).all()) else finfo.tiny
            self._cast = ((like.dtype, like.device), atol, rtol.clamp_min(16 * finfo.eps), tiny)
        return self._cast[1:]

    def blocks(self, y: torch.Tensor, layout: str, magnitude: bool = False) -> torch.Tensor:
        """The scale in block layout; ``magnitude``: ``y`` is already ``|y|``."""
        atol, rtol, tiny = self.tensors(y)
        return error_scale(atol, rtol, tiny, y if magnitude else y.abs(), layout)


def error_scale(
    atol: torch.Tensor, rtol: torch.Tensor, tiny: float | None, y_abs: torch.Tensor, layout: str
) -> torch.Tensor:
    """``max(atol + rtol * y_abs, tiny)`` (no floor if ``tiny`` is None) in block layout."""
    scale = torch.addcmul(atol, rtol, y_abs)
    if tiny is not None:
        scale = scale.clamp_min(tiny)
    if scale.shape != y_abs.shape:
        scale = scale.expand_as(y_abs)
    return to_blocks(scale, layout)


def rms(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Weighted RMS norm of each block: ``(B,)``."""
    return per_sample_rms_norm(x / scale)


def newton_matrix(jac: torch.Tensor, hg: Any) -> torch.Tensor:
    """``I - hg * J`` per block; ``hg`` is a float or a ``(B, 1)`` tensor of per-sample values."""
    eye = torch.eye(jac.shape[-1], dtype=jac.dtype, device=jac.device)
    return eye - (hg.unsqueeze(-1) if isinstance(hg, torch.Tensor) else hg) * jac


#: Blocks up to this size are inverted explicitly: a solve is then one batched matrix-vector
#: product, several times cheaper than a triangular solve pair for the tiny systems of stiff
#: kinetics (where the dispatch of each kernel, not arithmetic, is the cost).
INVERSE_MAX_SIZE = 16


class Factorization:
    """A batched factorization of ``(B, m, m)`` matrices, for repeated solves.

    Small blocks (``m <= INVERSE_MAX_SIZE``) keep the explicit inverse when ``inverse`` is
    true, larger ones an LU factorization. ``ok`` marks the blocks whose matrix was invertible
    and finite; solves in the other blocks are garbage that the caller must turn into a
    rejected step. ``all_ok`` is the same as one host bool.

    Example:
        >>> lu = Factorization(2.0 * torch.eye(2).expand(3, 2, 2))
        >>> lu.solve(torch.ones(3, 2))[0]
        tensor([0.5000, 0.5000])
    """

    def __init__(self, matrix: torch.Tensor, inverse: bool = True):
        self.factor, self.pivots, self._info = factor_blocks(matrix, inverse)

    @classmethod
    def of(cls, factor: torch.Tensor, pivots: torch.Tensor | None, ok: torch.Tensor):
        """The factorization :func:`factor_blocks` made elsewhere (in a compiled graph)."""
        lu = cls.__new__(cls)
        lu.factor, lu.pivots, lu.ok = factor, pivots, ok
        return lu

    @functools.cached_property
    def ok(self) -> torch.Tensor:
        """``(B,)``: which blocks factored into finite, nonsingular factors."""
        return blocks_ok(self.factor, self._info)

    @functools.cached_property
    def all_ok(self) -> bool:
        return bool(self.ok.all())

    def solve(self, rhs: torch.Tensor) -> torch.Tensor:
        """``matrix^-1 rhs`` for ``rhs`` of shape ``(B, m)``."""
        if self.pivots is None:
            return torch.bmm(self.factor, rhs.unsqueeze(-1)).squeeze(-1)
        return torch.linalg.lu_solve(self.factor, self.pivots, rhs.unsqueeze(-1)).squeeze(-1)


def factor_blocks(matrix: torch.Tensor, inverse: bool = True):
    """``(factor, pivots, info)`` of :class:`Factorization`: the explicit inverse (``pivots``
    None) for blocks up to ``INVERSE_MAX_SIZE`` when ``inverse``, else LU factors."""
    if inverse and matrix.shape[-1] <= INVERSE_MAX_SIZE:
        factor, info = torch.linalg.inv_ex(matrix)
        return factor, None, info
    return torch.linalg.lu_factor_ex(matrix)


def traced_inverse(matrix: torch.Tensor) -> torch.Tensor:
    """The inverses of small ``(B, m, m)`` blocks by Gauss–Jordan elimination with partial
    pivoting, unrolled into elementwise operations and gathers for a compiled graph to fuse
    (there ``torch.linalg.inv_ex`` is a library call costing more than the rest of a small
    step). A singular block's inverse has non-finite entries.

    Example:
        >>> a = torch.tensor([[[0.0, 2.0], [4.0, 0.0]]])  # needs a row swap
        >>> traced_inverse(a)
        tensor([[[0.0000, 0.2500],
                 [0.5000, 0.0000]]])
    """
    n_blocks, m, _ = matrix.shape
    rows = torch.arange(m, device=matrix.device)
    eye = torch.eye(m, dtype=matrix.dtype, device=matrix.device).expand(n_blocks, m, m)
    a = torch.cat([matrix, eye], dim=2)  # reduced to [I | matrix^-1]
    for k in range(m):
        p = a[:, k:, k].abs().argmax(dim=1, keepdim=True) + k  # (B, 1) the pivot's row
        swap = torch.where(rows == k, p, torch.where(rows == p, k, rows))
        a = a.gather(1, swap[:, :, None].expand(-1, -1, 2 * m))
        pivot_row = a[:, k] / a[:, k, k : k + 1]
        factors = a[:, :, k].masked_fill(rows == k, 0.0)
        a = torch.where(
            (rows == k)[:, None], pivot_row[:, None], a - factors[:, :, None] * pivot_row[:, None]
        )
    return a[:, :, m:]


def blocks_ok(factor: torch.Tensor, info: torch.Tensor) -> torch.Tensor:
    """Which blocks of :func:`factor_blocks` factored into finite, nonsingular factors."""
    return (info == 0) & torch.isfinite(factor).all(dim=(1, 2))


def check_layout(layout: str, jacobian: str) -> None:
    if layout not in LAYOUTS:
        from ...errors import UnknownNameError

        raise UnknownNameError("layout", layout, LAYOUTS)
    if jacobian not in JACOBIAN_MODES:
        from ...errors import UnknownNameError

        raise UnknownNameError("jacobian mode", jacobian, JACOBIAN_MODES)


def gmres(matvec: BlockFn, rhs: torch.Tensor, dim: int) -> torch.Tensor:
    """Solve ``A x = rhs`` per block by ``dim`` steps of (unrestarted) GMRES from ``x = 0``.

    ``matvec`` applies the block-diagonal ``A`` to ``(B, n)``; only products are needed, so
    ``A`` can be ``I - c J`` applied through Jacobian-vector products, never formed. With
    ``dim >= n`` the solve is exact up to roundoff; fewer steps give an inexact Newton step.

    Example:
        >>> a = torch.tensor([[[2.0, 1.0], [0.0, 3.0]]])
        >>> x = gmres(lambda v: torch.einsum("bij,bj->bi", a, v), torch.tensor([[3.0, 3.0]]), 2)
        >>> [round(float(v), 6) for v in x[0]]
        [1.0, 1.0]
    """
    n_blocks, n = rhs.shape
    dim = max(1, min(dim, n))
    beta = torch.linalg.vector_norm(rhs, dim=1)
    tiny = torch.finfo(rhs.dtype).tiny
    basis = [rhs / beta.clamp_min(tiny)[:, None]]
    hessenberg = rhs.new_zeros(n_blocks, dim + 1, dim)
    for j in range(dim):
        w = matvec(basis[j])
        for i, v in enumerate(basis):  # modified Gram-Schmidt
            coeff = (w * v).sum(dim=1)
            hessenberg[:, i, j] = coeff
            w = w - coeff[:, None] * v
        norm = torch.linalg.vector_norm(w, dim=1)
        hessenberg[:, j + 1, j] = norm
        basis.append(w / norm.clamp_min(tiny)[:, None])
    target = rhs.new_zeros(n_blocks, dim + 1, 1)
    target[:, 0, 0] = beta
    coeffs = torch.linalg.lstsq(hessenberg, target).solution[:, :, 0]  # (B, dim)
    return torch.einsum("bk,kbn->bn", coeffs, torch.stack(basis[:dim]))


def jvp_matvec(phi: BlockFn, z: torch.Tensor) -> BlockFn:
    """``v -> v - (dphi/dz) v`` at ``z``, by forward-mode autograd."""

    def matvec(v: torch.Tensor) -> torch.Tensor:
        return v - torch.func.jvp(phi, (z,), (v,))[1]

    return matvec
