"""Simplified Newton for ``z = phi(z)``, per block, with gradients by the implicit function theorem.

The iteration reuses one factorization of an approximate ``I - dphi/dz`` (chord method), so its
cost per iteration is one evaluation of ``phi`` and one pair of triangular solves. It stops, per
block, when Hairer & Wanner's estimate of the remaining error ``rate / (1 - rate) * |dz|`` is
below ``tol`` in the loop's error norm (Solving ODEs II, Sec. IV.8), and fails a block whose
corrections grow or that is not done after ``max_iters``. A converged block is frozen, so its
result does not depend on how long the others take.

The solution is computed without a graph. When gradients are needed, it is re-attached by
:func:`with_implicit_gradient`: the backward pass solves ``(I - dphi/dz)^T v = grad`` with the
exact Jacobian at the solution and sends ``v`` through one evaluation of ``phi`` to its inputs
(the earlier stages, the state, and the parameters ``f`` closes over). That is the implicit
function theorem: exact for the discrete solution, and independent of how many iterations ran.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch

from .linalg import block_jacobian, gmres, rms

BlockFn = Callable[[torch.Tensor], torch.Tensor]


class NewtonResult(NamedTuple):
    z: torch.Tensor  # (B, m)
    converged: torch.Tensor  # (B,) bool
    rate: torch.Tensor  # (B,) last observed contraction rate (0 if one iteration sufficed)
    iterations: int
    all_converged: bool  # converged.all() on the host


def newton(
    phi: BlockFn,
    z0: torch.Tensor,
    solve: BlockFn,
    scale: torch.Tensor,
    tol: float,
    max_iters: int,
    eta: torch.Tensor | None = None,
) -> NewtonResult:
    """Solve ``z = phi(z)`` per block from ``z0`` (None: from zero); ``solve(r, z)`` applies (an
    approximation of) ``(I - dphi/dz)^-1`` at the iterate ``z``.

    ``eta`` (per block) is the factor ``rate / (1 - rate)`` expected from the previous solve
    (at most 1 is used); with it a first correction that is already small enough ends the
    iteration (Hairer's ``max(eta_old, eps)^0.8`` heuristic, Solving ODEs II, IV.8, or CVODE's
    remembered rate).

    Example:
        >>> phi = lambda z: 0.5 * torch.cos(z)
        >>> res = newton(phi, torch.zeros(1, 1), lambda r, z: r / 1.2, torch.ones(1, 1), 1e-10, 20)
        >>> bool(res.converged.all()), round(float(res.z), 6)
        (True, 0.450184)
    """
    with torch.no_grad():
        if scale.shape[0] == 1:
            return _newton_one_block(phi, z0, solve, scale, tol, max_iters, eta)
        z = torch.zeros_like(scale) if z0 is None else z0
        n_blocks = z.shape[0]
        active = torch.ones(n_blocks, dtype=torch.bool, device=z.device)
        converged = torch.zeros_like(active)
        rate = torch.zeros(n_blocks, dtype=z.dtype, device=z.device)
        first_eta = torch.ones_like(rate) if eta is None else eta.to(rate.dtype).clamp(max=1)
        previous = None
        iterations = 0
        for iterations in range(1, max_iters + 1):  # noqa: B007 -- the count is returned
            dz = solve(phi(z) - z, z)
            size = rms(dz, scale)
            if previous is None:
                estimate = first_eta * size
            else:
                rate = torch.where(active, size / previous, rate)
                estimate = rate / (1 - rate).clamp_min(1e-12) * size
            finite = torch.isfinite(size)
            z = torch.where((active & finite)[:, None], z + dz, z)
            done = active & (estimate <= tol) & (rate < 1)  # NaN compares False
            failed = active & ((rate >= 1) | ~finite)
            converged = converged | done
            active = active & ~(done | failed)
            if not bool(active.any()):
                break
            previous = size
        all_converged = bool(converged.all())
    return NewtonResult(z, converged, rate, iterations, all_converged)


class FixedNewtonResult(NamedTuple):
    z: torch.Tensor  # (B, m)
    converged: torch.Tensor  # (B,) bool
    rate: torch.Tensor  # (B,) as in NewtonResult
    iterations: torch.Tensor  # (B,) the iterations each block took before it stopped


def newton_fixed(
    phi: BlockFn,
    solve: BlockFn,
    scale: torch.Tensor,
    tol: float,
    max_iters: int,
    eta: torch.Tensor,
) -> FixedNewtonResult:
    """:func:`newton` from zero without a data-dependent exit, for tracing into one graph.

    All ``max_iters`` iterations run; a block that converged or failed is frozen by
    ``torch.where``, so each block's result, rate and iteration count are those :func:`newton`
    returns for it (its one-block test: the 2-norm of the scaled correction against ``tol``
    times ``sqrt(m)``). ``solve(r)`` applies the approximate ``(I - dphi/dz)^-1``.

    Example:
        >>> phi = lambda z: 0.5 * torch.cos(z)
        >>> res = newton_fixed(phi, lambda r: r / 1.2, torch.ones(1, 1), 1e-10, 20, torch.ones(1))
        >>> bool(res.converged.all()), round(float(res.z), 6), int(res.iterations)
        (True, 0.450184, 6)
    """
    tol = tol * math.sqrt(scale.shape[1])
    z = torch.zeros_like(scale)
    active = torch.ones(scale.shape[0], dtype=torch.bool, device=scale.device)
    converged = torch.zeros_like(active)
    rate = torch.zeros_like(scale[:, 0])
    iterations = torch.zeros(scale.shape[0], dtype=torch.long, device=scale.device)
    previous = None
    for first in [True] + [False] * (max_iters - 1):
        dz = solve(phi(z) if first else phi(z) - z)
        size = torch.linalg.vector_norm(dz / scale, dim=1)
        finite = torch.isfinite(size)
        moving = active & finite
        if first:
            estimate = eta.to(size.dtype).clamp(max=1) * size
        else:
            rate = torch.where(moving, size / previous, rate)
            estimate = rate / (1 - rate).clamp_min(1e-12) * size
        iterations = iterations + active.long()
        z = torch.where(moving[:, None], z + dz, z)
        done = moving & (estimate <= tol) & (rate < 1)
        converged = converged | done
        active = moving & ~done & (rate < 1)
        previous = size
    return FixedNewtonResult(z, converged, rate, iterations)


def roundoff_floor(scale: torch.Tensor, magnitude: torch.Tensor, tol: float) -> torch.Tensor:
    """``scale`` raised so that ``tol * scale`` is at least some tens of ulps of ``magnitude``.

    Corrections below that are roundoff, not progress: a finer tolerance would never be met.
    """
    return torch.maximum(scale, (16 * torch.finfo(scale.dtype).eps / tol) * magnitude.abs())


def _newton_one_block(phi, z, solve, scale, tol, max_iters, eta) -> NewtonResult:
    """The same iteration for a single block, with the bookkeeping on host floats."""
    from_zero = z is None
    if from_zero:  # the first iteration needs no z arithmetic
        z = torch.zeros_like(scale)
    rate, previous, converged = 0.0, None, False
    first_eta = 1.0 if eta is None else min(1.0, float(eta))
    # Sizes are 2-norms of the scaled corrections: the RMS norm times sqrt(m), so is the test.
    tol = tol * math.sqrt(z.shape[1])
    iterations = 0
    for iterations in range(1, max_iters + 1):  # noqa: B007 -- the count is returned
        at_zero = from_zero and iterations == 1
        dz = solve(phi(z) if at_zero else phi(z) - z, z)
        size = float(torch.linalg.vector_norm(dz / scale))
        if not math.isfinite(size):
            break
        z = dz if at_zero else z + dz
        if previous is None:
            estimate = first_eta * size
        else:
            rate = size / previous
            if rate >= 1:
                break
            estimate = rate / (1 - rate) * size
        if estimate <= tol:
            converged = True
            break
        previous = size
    flag = z.new_full((1,), converged, dtype=torch.bool)
    return NewtonResult(z, flag, z.new_full((1,), rate), iterations, converged)


class _ImplicitSolution(torch.autograd.Function):
    """Identity on the solution forward; ``(I - dphi/dz)^-T`` on the gradient backward."""

    @staticmethod
    def forward(ctx, z_star, phi_at_solution, transposed_solve):
        ctx.transposed_solve = transposed_solve
        return z_star.clone()

    @staticmethod
    def backward(ctx, grad):
        return None, ctx.transposed_solve(grad), None


def with_implicit_gradient(
    phi: BlockFn,
    phi_detached: BlockFn,
    z_star: torch.Tensor,
    jacobian_mode: str = "autograd",
    krylov_dim: int | None = None,
) -> torch.Tensor:
    """``z_star`` (a solution of ``z = phi(z)``) carrying the implicit-function-theorem gradient.

    ``phi_detached`` is ``phi`` with its tensor inputs (not its parameters) detached; the
    backward pass solves ``(I - dphi/dz)^T v = grad`` at ``z_star`` with it, by an exact block
    Jacobian, or matrix-free by GMRES on vector-Jacobian products when ``krylov_dim`` is given.
    Costs one extra evaluation of ``phi`` when gradients are enabled, nothing otherwise.
    """
    if not torch.is_grad_enabled():
        return z_star
    z_fixed = z_star.detach()
    phi_at_solution = phi(z_fixed)
    if not phi_at_solution.requires_grad:
        return z_star

    def transposed_solve(grad: torch.Tensor) -> torch.Tensor:
        if krylov_dim is not None:
            with torch.enable_grad():
                _, vjp = torch.func.vjp(phi_detached, z_fixed)
            return gmres(lambda u: u - vjp(u)[0], grad, krylov_dim)
        with torch.no_grad():
            jac = block_jacobian(phi_detached, z_fixed, jacobian_mode)
        eye = torch.eye(jac.shape[-1], dtype=jac.dtype, device=jac.device)
        return torch.linalg.solve((eye - jac).mT, grad.unsqueeze(-1)).squeeze(-1)

    return _ImplicitSolution.apply(z_fixed, phi_at_solution, transposed_solve)
