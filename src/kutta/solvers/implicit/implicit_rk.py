"""The generic implicit Runge–Kutta step: (E)SDIRK stage by stage, fully implicit all at once.

Diagonally implicit tableaus (``kvaerno3``, ``kvaerno5``, ``trbdf2``, ``sdirk2``, ``trapezoid``,
``implicit_euler``) solve one stage at a time, ``Z_i = y + h sum_{j<i} a_ij k_j + h g f(t_i, Z_i)``,
with one factorization of ``I - h g J`` shared by all stages. Fully implicit tableaus
(``radauIIA3``, ``radauIIA5``, ``gl4``, ``gl6``, ``implicit_midpoint``) solve for all ``s``
stages together with the ``(s n, s n)`` matrix ``I - h A (x) J`` per block.

The Jacobian is reused across steps (state) and re-evaluated only when Newton contracted slowly
(rate above ``jacobian_rate``) or failed; a failed Newton with an old Jacobian is retried once with
a fresh one before the step is given up (error ``+inf``, which the loop rejects). Decisions are
made per block, so in per-sample mode no sample's numbers depend on another's.

Adaptive ESDIRKs filter their error estimate through ``(I - h g J)^-1`` (Hosea & Shampine 1996),
which keeps stiff components from forcing tiny steps. Fixed-step methods (torchdiffeq's names)
return no error; a Newton failure there warns, as torchdiffeq does.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any, NamedTuple

import torch

from ...errors import InvalidArgumentError
from ..base import StepResult, VectorField
from .common import ImplicitMethod
from .linalg import Factorization, gmres, jvp_matvec, newton_matrix, to_blocks
from .newton import newton, roundoff_floor, with_implicit_gradient
from .tableaus import DIRKTableau


def _next_eta(rate: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Hairer's guess of the next solve's ``rate / (1 - rate)`` from this solve's rate."""
    return rate.clamp_min(torch.finfo(dtype).eps).pow(0.8)


class IRKDense(NamedTuple):
    y0: torch.Tensor  # user shape
    y1: torch.Tensor
    f0: torch.Tensor | None  # f(t, y0) and f(t + h, y1) for Hermite output, else None
    f1: torch.Tensor | None
    h: Any


class _Attempt(NamedTuple):
    y: torch.Tensor  # (B, n)
    err: torch.Tensor | None  # (B, n)
    k: list[torch.Tensor]  # stage derivatives, (B, n) each
    converged: torch.Tensor  # (B,)
    rate: torch.Tensor  # (B,)


@dataclasses.dataclass(eq=False)
class ImplicitRK(ImplicitMethod):
    """An implicit Runge–Kutta method from a :class:`DIRKTableau`.

    Args:
        tableau: the coefficients.
        adaptive_step: use the tableau's embedded error estimate (False: fixed-step, as
            torchdiffeq's ``trbdf2``).
        newton_tol: Newton stops when its estimated error is below this fraction of the loop's
            error scale ``atol + rtol |y|``.
        max_iters: Newton iterations per solve before giving up (default 10 for adaptive
            methods, which rather shrink the step; 100 for fixed-step ones, as torchdiffeq).
        jacobian_rate: re-evaluate the Jacobian at the next step when Newton contracted slower.
        (and the options of :class:`ImplicitMethod`: ``jac``, ``jacobian``, ``independent_batch``.)

    Example:
        >>> import torch
        >>> from kutta.solvers.implicit.tableaus import KVAERNO5
        >>> m = ImplicitRK(KVAERNO5).bind(torch.float64, torch.device("cpu"))
        >>> f = lambda t, y: -1000.0 * y
        >>> y0 = torch.ones(2, dtype=torch.float64)
        >>> res = m.step(f, 0.0, y0, 0.1, m.init(f, 0.0, y0))
        >>> bool(res.y.abs().max() < 0.1)  # stable at h |lambda| = 100 (explicit Euler: 99)
        True
    """

    tableau: DIRKTableau | None = None
    adaptive_step: bool = True
    newton_tol: float = 0.01
    max_iters: int | None = None
    jacobian_rate: float = 0.05

    def __post_init__(self) -> None:
        super().__post_init__()
        tab = self.tableau
        if tab is None:
            raise TypeError("ImplicitRK needs a tableau")
        self.name = tab.name
        self.order = tab.order
        self.error_order = (
            tab.error_order if (self.adaptive_step and tab.b_err is not None) else None
        )
        if self.krylov_dim is not None and not tab.diagonally_implicit:
            raise InvalidArgumentError(
                f"{tab.name}: krylov_dim is available for the diagonally implicit methods and bdf"
            )
        if self.max_iters is None:
            self.max_iters = 10 if self.adaptive else 100
        self._hermite = tab.explicit_first_stage and tab.stiffly_accurate and tab.c[-1] == 1.0

    def bind(self, dtype: torch.dtype, device: torch.device) -> ImplicitRK:
        bound = super().bind(dtype, device)
        t = self.tableau
        bound._a = torch.tensor(t.a, dtype=dtype, device=device)
        if not t.diagonally_implicit:
            bound._a_inv = torch.linalg.inv(bound._a.double()).to(dtype)
        bound._b = torch.tensor(t.b, dtype=dtype, device=device)
        bound._b_err = (
            None if t.b_err is None else torch.tensor(t.b_err, dtype=dtype, device=device)
        )
        return bound

    def init(self, f: VectorField, t0: Any, y0: torch.Tensor) -> Any:
        self._layout_name = self._layout(t0)
        y_b = to_blocks(y0, self._layout_name)
        n_blocks = y_b.shape[0]
        stale = torch.ones(n_blocks, dtype=torch.bool, device=y0.device)
        n = 0 if self.krylov_dim is not None else y_b.shape[1]  # matrix-free: no Jacobian kept
        jac = torch.zeros(n_blocks, n, n, dtype=y0.dtype, device=y0.device)
        f0 = f(t0, y0) if self.tableau.explicit_first_stage else torch.zeros_like(y0)
        return (f0, jac, stale)

    def reset_after_discontinuity(self, state: Any) -> Any:
        return (torch.full_like(state[0], math.nan), state[1], torch.ones_like(state[2]))

    def step(self, f: VectorField, t: Any, y: torch.Tensor, h: Any, state: Any) -> StepResult:
        f0, jac, stale = state
        if self.tableau.explicit_first_stage and bool(torch.isnan(f0).any()):
            f0 = f(t, y)  # after a discontinuity the cached derivative is stale
        fresh = torch.ones_like(stale) if self.krylov_dim is not None else torch.zeros_like(stale)
        if bool((stale & ~fresh).any()):
            jac, fresh = self._refresh(f, t, y, jac, stale), stale
        attempt = self._attempt(f, t, y, h, f0, jac)
        retry = ~attempt.converged & ~fresh
        if bool(retry.any()):
            jac = self._refresh(f, t, y, jac, retry)
            fresh = fresh | retry
            attempt = self._attempt(f, t, y, h, f0, jac)
        failed = ~attempt.converged
        if bool(failed.any()):
            self.stats["n_newton_failures"] += 1
            if not self.adaptive:
                warnings.warn(
                    f"{self.name}: Newton's method did not converge; the solution may be wrong "
                    "(a smaller step_size usually helps)",
                    RuntimeWarning,
                    stacklevel=2,
                )
        shape = y.shape
        y_new = attempt.y.reshape(shape)
        err = None
        if attempt.err is not None:
            inf = torch.full_like(attempt.err, math.inf)
            err = torch.where(failed[:, None], inf, attempt.err).reshape(shape)
        k_last = attempt.k[-1].reshape(shape)
        dense = (
            IRKDense(y, y_new, f0, k_last, h)
            if self._hermite
            else IRKDense(y, y_new, None, None, h)
        )
        next_stale = (attempt.rate > self.jacobian_rate) | failed
        f_next = k_last if self.tableau.explicit_first_stage else f0
        return StepResult(y_new, err, dense, (f_next, jac, next_stale))

    def _refresh(self, f, t, y, jac, which: torch.Tensor) -> torch.Tensor:
        """The Jacobian blocks, re-evaluated at ``(t, y)`` where ``which`` is set."""
        new = self._jacobian(f, t, y.detach(), self._layout_name).detach()
        return torch.where(which[:, None, None], new, jac)

    def _linear_solver(self, lu: Factorization | None, phi):
        """``(r, z) -> (I - dphi/dz)^-1 r``: by the chord LU, or by GMRES on JVPs at ``z``."""
        if lu is not None:
            return lambda r, z: lu.solve(r)
        return lambda r, z: gmres(jvp_matvec(phi, z), r, self.krylov_dim)

    def _attempt(self, f, t, y, h, f0, jac) -> _Attempt:
        if self.tableau.diagonally_implicit:
            return self._attempt_dirk(f, t, y, h, f0, jac)
        return self._attempt_firk(f, t, y, h, jac)

    def _attempt_dirk(self, f, t, y, h, f0, jac) -> _Attempt:
        tab, layout, shape = self.tableau, self._layout_name, y.shape
        y_b = to_blocks(y, layout)
        scale = self._error_scale.blocks(y.detach(), layout)
        hg = h * tab.diagonal
        lu = None
        converged = torch.ones(y_b.shape[0], dtype=torch.bool, device=y.device)
        if self.krylov_dim is None:
            lu = Factorization(newton_matrix(jac, hg))
            self.stats["n_lu"] += 1
            converged = lu.ok.clone()
        rate = torch.zeros(y_b.shape[0], dtype=y.dtype, device=y.device)
        eta = None
        k: list[torch.Tensor] = []
        for i in range(tab.stages):
            base = y_b
            if i > 0:
                base = y_b + h * torch.tensordot(self._a[i, :i], torch.stack(k), dims=1)
            if i == 0 and tab.explicit_first_stage:
                k.append(to_blocks(f0, layout))
                continue
            g = self._block_fn(f, self._stage_time(t, tab.c[i], h), shape, layout)
            # Unknown: the increment d = Z_i - base = h g k_i, so that k_i = d / (h g) suffers no
            # cancellation (which would cost digits in float32).
            guess = hg * k[-1] if k else torch.zeros_like(base)

            def phi(d, base=base, g=g):
                return hg * g(base + d)

            def phi_detached(d, base=base, g=g):
                return hg * g(base.detach() + d)

            floor = roundoff_floor(scale, base.detach(), self.newton_tol)
            solve = self._linear_solver(lu, phi)
            res = newton(phi, guess.detach(), solve, floor, self.newton_tol, self.max_iters, eta)
            self.stats["n_newton_iters"] += res.iterations
            converged = converged & res.converged
            rate = torch.maximum(rate, res.rate)
            eta = _next_eta(res.rate, y.dtype)
            d = with_implicit_gradient(phi, phi_detached, res.z, self.jacobian, self.krylov_dim)
            k.append(d / hg)
        stages = torch.stack(k)
        y_new = y_b + h * torch.tensordot(self._b, stages, dims=1)
        err = None
        if self.adaptive:
            err = h * torch.tensordot(self._b_err, stages, dims=1)
            if lu is not None:  # the Hosea-Shampine filter; matrix-free solves skip it
                err = lu.solve(err)
            converged = converged & torch.isfinite(err).all(dim=1)
        return _Attempt(y_new, err, k, converged, rate)

    def _attempt_firk(self, f, t, y, h, jac) -> _Attempt:
        tab, layout, shape = self.tableau, self._layout_name, y.shape
        s = tab.stages
        y_b = to_blocks(y, layout)
        n_blocks, n = y_b.shape
        scale = self._error_scale.blocks(y.detach(), layout).repeat(1, s)
        # Unknowns: the stage increments Z_i - y, stacked per block as (B, s n).
        a_kron_j = torch.einsum("ij,bkl->bikjl", self._a, jac).reshape(n_blocks, s * n, s * n)
        eye = torch.eye(s * n, dtype=y.dtype, device=y.device)
        h3 = h.unsqueeze(-1) if isinstance(h, torch.Tensor) else h
        lu = Factorization(eye - h3 * a_kron_j)
        self.stats["n_lu"] += 1
        funcs = [self._block_fn(f, self._stage_time(t, c, h), shape, layout) for c in tab.c]

        def stage_derivatives(w, y_b):
            zs = w.reshape(n_blocks, s, n)
            return torch.stack([g(y_b + zs[:, i]) for i, g in enumerate(funcs)], dim=1)

        def phi(w, y_b=y_b):
            return h * torch.einsum("ij,bjn->bin", self._a, stage_derivatives(w, y_b)).reshape(
                n_blocks, s * n
            )

        def phi_detached(w, y_b=y_b):
            return phi(w, y_b.detach())

        guess = torch.zeros(n_blocks, s * n, dtype=y.dtype, device=y.device)
        floor = roundoff_floor(scale, y_b.detach().repeat(1, s), self.newton_tol)
        res = newton(
            phi, guess, self._linear_solver(lu, phi), floor, self.newton_tol, self.max_iters
        )
        self.stats["n_newton_iters"] += res.iterations
        w = with_implicit_gradient(phi, phi_detached, res.z, self.jacobian)
        # h k = A^-1 Z: the stage derivatives without evaluating f again.
        kd = torch.einsum("ij,bjn->bin", self._a_inv, w.reshape(n_blocks, s, n)) / h3
        y_new = y_b + h * torch.einsum("i,bin->bn", self._b, kd)
        k = list(kd.unbind(1))
        return _Attempt(y_new, None, k, lu.ok & res.converged, res.rate)

    def interpolate(self, dense: IRKDense, theta: Any) -> torch.Tensor:
        y0, y1, f0, f1, h = dense
        if f0 is None:
            return y0 + theta * (y1 - y0)
        # Cubic Hermite through (y0, f0) and (y1, f1).
        return (
            (1 - theta) * y0
            + theta * y1
            + theta
            * (theta - 1)
            * ((1 - 2 * theta) * (y1 - y0) + (theta - 1) * h * f0 + theta * h * f1)
        )
