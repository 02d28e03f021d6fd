"""Variable-order (1-5), variable-step BDF (or NDF) in backward-difference form.

The formulas are those of Shampine & Reichelt's ode15s ("The MATLAB ODE suite", SIAM J. Sci.
Comput. 18, 1997), which scipy's ``BDF`` also uses: the history is an array ``D`` of modified
divided differences (``D[0] = y``, ``D[1] ~ h y'``, ...), rescaled exactly when the step size
changes (``D <- (R U)^T D``), and each step solves

    d = c f(t + h, y_pred + d) - psi,   c = h / alpha_k,   y_new = y_pred + d,

with ``y_pred = sum_{j<=k} D[j]`` and ``psi = sum_{1<=j<=k} gamma_j D[j] / alpha_k``. The error
estimate is ``error_const_k * d``. Plain BDF by default (as CVODE and LSODE); ``ndf=True``
gives ode15s's numerical differentiation formulas (the ``kappa`` coefficients). On the IVP Test
Set problems at rtol 1e-8, plain BDF reached more correct digits with fewer steps.

The method chooses order and step together (``StepResult.h_next``), by CVODE's rules
(Hindmarsh et al., "SUNDIALS", ACM TOMS 31, 2005; cvode.c): the step for order ``j`` is
``h / ((bias_j e_j)^(1 / (j + 1)) + 1e-6)`` with the error estimates ``e_j`` of orders ``k - 1``,
``k``, ``k + 1`` and biases 6, 6, 10. The biases aim each step at a local error of about a sixth
of the tolerance, which keeps the accumulated global error near the requested tolerance (scipy's
0.9 safety factor left OREGO at 5.6 digits at rtol 1e-8). An order change is considered after
``k + 1`` steps at order ``k`` (the order allowing the largest step is taken); a step grows
only when it can grow 1.5 times, and never shrinks after an accepted step (rejections shrink
it, through the loop's controller). An unchanged step keeps the history as it is and reuses
the LU factorization. In per-sample mode every sample has its own order, step and history
(``state`` holds them batch first).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import torch

from ..base import StepResult, VectorField
from .common import ImplicitMethod
from .linalg import Factorization, gmres, jvp_matvec, newton_matrix, rms, to_blocks
from .newton import newton, roundoff_floor, with_implicit_gradient

MAX_ORDER = 5
_ROWS = MAX_ORDER + 3  # D[0..k+2] are used at order k


def _coefficients(ndf: bool) -> tuple[list[float], list[float], list[float]]:
    """``gamma``, ``alpha`` and ``error_const`` for orders 0..MAX_ORDER (index = order)."""
    kappa = [0.0, -0.1850, -1.0 / 9.0, -0.0823, -0.0415, 0.0] if ndf else [0.0] * 6
    gamma = [0.0]
    for j in range(1, MAX_ORDER + 1):
        gamma.append(gamma[-1] + 1.0 / j)
    alpha = [(1 - k) * g for k, g in zip(kappa, gamma)]
    error_const = [k * g + 1.0 / (j + 1) for j, (k, g) in enumerate(zip(kappa, gamma))]
    return gamma, alpha, error_const


class BDFDense(NamedTuple):
    D: torch.Tensor  # (B, rows, n), after the step
    order: torch.Tensor  # (B,)
    shape: torch.Size


def _rescale_matrix(factor: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Per block, the ``(rows, rows)`` matrix ``M`` with ``D_new = M D`` for a step-size ratio
    ``factor``: ``(R(factor) U)^T`` on rows ``0..order``, the identity on the others."""
    idx = torch.arange(_ROWS, device=factor.device)
    dtype = factor.dtype
    i = idx[1:, None].to(dtype)
    j = idx[None, 1:].to(dtype)

    def r_matrix(fac: torch.Tensor) -> torch.Tensor:
        m = torch.zeros(fac.shape[0], _ROWS, _ROWS, dtype=dtype, device=fac.device)
        m[:, 0, :] = 1
        m[:, 1:, 1:] = (i - 1 - fac[:, None, None] * j) / i
        return torch.cumprod(m, dim=1)

    inside = (idx[:, None] <= order[:, None, None]) & (idx[None, :] <= order[:, None, None])
    r = r_matrix(factor) * inside
    u = r_matrix(torch.ones_like(factor)) * inside
    eye = torch.eye(_ROWS, dtype=dtype, device=factor.device)
    return (r @ u).mT + eye * ~inside


@dataclasses.dataclass(eq=False)
class BDF(ImplicitMethod):
    """Variable-order BDF/NDF (``bdf``), orders 1 to ``max_order``.

    Args:
        max_order: highest order used (1..5).
        ndf: use ode15s's numerical differentiation formulas instead of plain BDF.
        newton_tol: Newton stops when its estimated error is below this fraction of the loop's
            error scale ``atol + rtol |y|``.
        max_iters: Newton iterations per step before the step is rejected (4, as scipy).
        jacobian_rate: re-evaluate the Jacobian at the next step when Newton contracted slower.
        (and the options of :class:`ImplicitMethod`: ``jac``, ``jacobian``, ``independent_batch``.)

    Example:
        >>> import math, torch
        >>> m = BDF().bind(torch.float64, torch.device("cpu"))
        >>> f = lambda t, y: -1000.0 * y
        >>> y0 = torch.ones(2, dtype=torch.float64)
        >>> res = m.step(f, 0.0, y0, 1e-4, m.init(f, 0.0, y0))  # a first step at order 1
        >>> abs(float(res.y[0]) - math.exp(-0.1)) < 5e-3
        True
    """

    max_order: int = MAX_ORDER
    ndf: bool = False
    newton_tol: float = 0.01
    max_iters: int = 4
    jacobian_rate: float = 0.2

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.max_order <= MAX_ORDER:
            from ...errors import InvalidArgumentError

            raise InvalidArgumentError(
                f"bdf: max_order must be in 1..{MAX_ORDER}, got {self.max_order}"
            )
        self.name = "bdf"
        self.order = self.max_order
        # The loop's controller needs one exponent; the error estimate is O(h^(k+1)) with k
        # moving between 1 and 5, and 1 / (3 + 1) is a compromise that neither stalls at low
        # orders nor overshoots badly at high ones.
        self.error_order = min(3, self.max_order)

    def bind(self, dtype: torch.dtype, device: torch.device) -> BDF:
        bound = super().bind(dtype, device)
        gamma, alpha, error_const = _coefficients(self.ndf)
        bound._gamma = torch.tensor(gamma, dtype=dtype, device=device)
        bound._alpha = torch.tensor(alpha, dtype=dtype, device=device)
        bound._error_const = torch.tensor(error_const, dtype=dtype, device=device)
        bound._bias = torch.tensor([6.0, 6.0, 10.0], dtype=dtype, device=device)
        # Row k: the weights of y_pred = sum_{j<=k} D[j], psi = sum_{1<=j<=k} gamma_j D[j] / alpha_k
        rows = torch.arange(_ROWS)[None, :]
        orders = torch.arange(MAX_ORDER + 1)[:, None]
        upto = (rows <= orders).to(dtype)
        gamma_rows = torch.tensor(gamma + [0.0] * (_ROWS - MAX_ORDER - 1), dtype=dtype)
        alpha_k = torch.tensor(alpha, dtype=dtype)[:, None].clamp_min(1e-300)  # alpha_0 unused
        bound._pred_weights = upto.to(device)
        bound._psi_weights = (upto * (rows >= 1) * gamma_rows / alpha_k).to(device)
        bound._lu_memo = None
        # Row k: the step-size exponents 1 / (j + 1) of orders j = k - 1, k, k + 1.
        orders_around = torch.arange(MAX_ORDER + 1)[:, None] + torch.arange(3)[None, :]
        bound._inv_exponents = (1 / orders_around.clamp_min(1)).to(dtype=dtype, device=device)
        # The accepted-step update of the differences at order k, as D_new = P_k D + q_k d:
        # D[k+2] = d - D[k+1], D[k+1] = d, then D[i] += D[i+1] for i = k..0; rows > k+2 stay.
        update = torch.zeros(MAX_ORDER + 1, _ROWS, _ROWS, dtype=dtype)
        update_d = torch.zeros(MAX_ORDER + 1, _ROWS, 1, dtype=dtype)
        for k in range(1, MAX_ORDER + 1):
            update[k, : k + 1, : k + 1] = torch.ones(k + 1, k + 1, dtype=dtype).triu()
            update[k, k + 2, k + 1] = -1.0
            update[k, k + 3 :, k + 3 :] = torch.eye(_ROWS - k - 3, dtype=dtype)
            update_d[k, : k + 3] = 1.0
        bound._update, bound._update_d = update.to(device), update_d.to(device)
        return bound

    def init(self, f: VectorField, t0: Any, y0: torch.Tensor) -> Any:
        self._layout_name = self._layout(t0)
        y_b = to_blocks(y0, self._layout_name)
        n_blocks, n = y_b.shape
        D = torch.zeros(n_blocks, _ROWS, n, dtype=y0.dtype, device=y0.device)
        D[:, 0] = y_b
        D[:, 1] = to_blocks(f(t0, y0), self._layout_name)  # h * f0 for a step of 1; rescaled later
        long = dict(dtype=torch.long, device=y0.device)
        order = torch.ones(n_blocks, **long)
        h_of_D = torch.ones(n_blocks, dtype=y0.dtype, device=y0.device)
        steps_at_order = torch.zeros(n_blocks, **long)
        m = 0 if self.krylov_dim is not None else n  # matrix-free: no Jacobian kept
        jac = torch.zeros(n_blocks, m, m, dtype=y0.dtype, device=y0.device)
        stale = torch.ones(n_blocks, dtype=torch.bool, device=y0.device)
        return (D, order, h_of_D, steps_at_order, jac, stale)

    def reset_after_discontinuity(self, state: Any) -> Any:
        D, order, h_of_D, steps, jac, stale = state
        # Restart at order 1 from the current state (D[1] is re-derived from f on the next step).
        D = D.clone()
        D[:, 2:] = 0
        return (
            D,
            torch.ones_like(order),
            h_of_D,
            torch.zeros_like(steps),
            jac,
            torch.ones_like(stale),
        )

    def step(self, f: VectorField, t: Any, y: torch.Tensor, h: Any, state: Any) -> StepResult:
        shape = y.shape
        D, order, h_of_D, steps_at_order, jac, stale = state
        h_blocks = h[:, 0] if isinstance(h, torch.Tensor) else torch.full_like(h_of_D, h)
        resized = h_blocks != h_of_D
        if bool(resized.any()):
            D = torch.einsum("bij,bjn->bin", _rescale_matrix(h_blocks / h_of_D, order), D)
            steps_at_order = torch.where(resized, 0, steps_at_order)

        fresh = torch.ones_like(stale) if self.krylov_dim is not None else torch.zeros_like(stale)
        if bool((stale & ~fresh).any()):
            jac, fresh = self._refresh(f, t, y, jac, stale), stale
        attempt = self._attempt(f, t, y, h, D, order, jac)
        retry = ~attempt[2] & ~fresh
        if bool(retry.any()):
            jac = self._refresh(f, t, y, jac, retry)
            fresh = fresh | retry
            attempt = self._attempt(f, t, y, h, D, order, jac)
        d, y_new, converged, rate = attempt
        failed = ~converged
        if bool(failed.any()):
            self.stats["n_newton_failures"] += 1
        k = order
        err = (self._error_const[k][:, None] * d).masked_fill(failed[:, None], math.inf)
        D_new = self._update[k] @ D + self._update_d[k] * d[:, None]

        with torch.no_grad():  # order and step-size choices are not differentiated
            order_new, factor = self._choose_order(D_new, k, steps_at_order + 1, err, y_new, y)
        steps_new = torch.where((factor == 1) & (order_new == k), steps_at_order + 1, 0)
        dense = BDFDense(D_new, k, shape)
        next_stale = (rate > self.jacobian_rate) | failed
        new_state = (D_new, order_new, h_blocks, steps_new, jac, next_stale)
        h_next = h_blocks * factor
        if not isinstance(h, torch.Tensor):  # shared mode: one step size for all blocks
            h_next = float(h_next.min())
        return StepResult(y_new.reshape(shape), err.reshape(shape), dense, new_state, h_next)

    def _refresh(self, f, t, y, jac, which: torch.Tensor) -> torch.Tensor:
        new = self._jacobian(f, t, y.detach(), self._layout_name).detach()
        return torch.where(which[:, None, None], new, jac)

    def _attempt(self, f, t, y, h, D, order, jac):
        layout, shape = self._layout_name, y.shape
        y_pred = torch.einsum("br,brn->bn", self._pred_weights[order], D)
        psi = torch.einsum("br,brn->bn", self._psi_weights[order], D)
        c = h / self._alpha[order][:, None]  # (B, 1)
        g = self._block_fn(f, self._stage_time(t, 1.0, h), shape, layout)

        def phi(d):
            return c * g(y_pred + d) - psi

        def phi_detached(d):
            return c * g(y_pred.detach() + d) - psi.detach()

        scale = self._error_scale.blocks(y.detach(), layout)
        floor = roundoff_floor(scale, y_pred.detach(), self.newton_tol)
        if self.krylov_dim is None:
            lu = self._factorization(jac, c)
            solve, ok = (lambda r, z: lu.solve(r)), lu.ok
        else:
            solve, ok = (lambda r, z: gmres(jvp_matvec(phi, z), r, self.krylov_dim)), True
        res = newton(phi, torch.zeros_like(y_pred), solve, floor, self.newton_tol, self.max_iters)
        self.stats["n_newton_iters"] += res.iterations
        d = with_implicit_gradient(phi, phi_detached, res.z, self.jacobian, self.krylov_dim)
        return d, y_pred + d, res.converged & ok, res.rate

    def _factorization(self, jac: torch.Tensor, c: torch.Tensor) -> Factorization:
        """The LU of ``I - c J``, reused while neither the Jacobian nor ``c = h / alpha_k``
        changed (held steps at one order: most steps)."""
        memo = self._lu_memo
        if memo is not None and memo[0] is jac and torch.equal(memo[1], c):
            return memo[2]
        lu = Factorization(newton_matrix(jac, c))
        self.stats["n_lu"] += 1
        self._lu_memo = (jac, c, lu)
        return lu

    def _choose_order(self, D_new, k, steps, err, y_new, y):
        """Per block, the next order and step-size factor by CVODE's rules (module docstring).
        Returns ``(order, factor)``; factor 1 keeps the step."""
        layout = self._layout_name
        scale = self._error_scale.blocks(
            torch.maximum(y.abs(), y_new.abs().reshape(y.shape)), layout
        )
        inf = torch.full_like(err[:, 0], math.inf)

        def norm_of_row(row_index, const_index, allowed):
            row = D_new.gather(1, row_index[:, None, None].expand(-1, 1, D_new.shape[2]))[:, 0]
            value = rms(self._error_const[const_index.clamp(0, MAX_ORDER)][:, None] * row, scale)
            return torch.where(allowed, value, inf)

        ready = steps >= k + 1
        e_same = rms(err, scale)
        if bool(ready.any()):
            e_down = norm_of_row(k, k - 1, ready & (k > 1))
            e_up = norm_of_row((k + 2).clamp(max=_ROWS - 1), k + 1, ready & (k < self.max_order))
        else:  # no block may change its order yet: only the current order's step matters
            e_down = e_up = inf
        norms = torch.stack([e_down, e_same, e_up], dim=1)
        # An infinite norm (an order not allowed, a failed step) gives a factor of 0.
        factors = 1 / ((self._bias * norms).clamp_min(1e-300) ** self._inv_exponents[k] + 1e-6)
        best, choice = factors.max(dim=1)
        finite = e_same < math.inf
        grow = (best >= 1.5) & finite
        order_new = torch.where(finite, k + choice - 1, k).clamp(1, self.max_order)
        factor = torch.where(grow, best.clamp(max=10.0), torch.ones_like(best))
        return order_new, factor

    def interpolate(self, dense: BDFDense, theta: Any) -> torch.Tensor:
        D, order, shape = dense
        n_blocks = D.shape[0]
        th = (
            theta[:, 0]
            if isinstance(theta, torch.Tensor)
            else torch.full((n_blocks,), float(theta), dtype=D.dtype, device=D.device)
        )
        # y(t_new + (theta - 1) h) = D0 + sum_{j=1..k} D_j prod_{m<j} (theta - 1 + m) / (m + 1)
        m = torch.arange(_ROWS - 1, device=D.device, dtype=D.dtype)
        factors = (th[:, None] - 1 + m[None, :]) / (m[None, :] + 1)
        products = torch.cumprod(factors, dim=1)  # (B, rows-1): product up to m = j - 1
        use = (torch.arange(1, _ROWS, device=D.device)[None, :] <= order[:, None]).to(D.dtype)
        y = D[:, 0] + torch.einsum("bj,bjn->bn", products * use, D[:, 1:])
        return y.reshape(shape)


def bdf(**options: Any) -> BDF:
    """Variable-order BDF (orders 1-5) in ode15s's difference form, CVODE's step control."""
    return BDF(**options)
