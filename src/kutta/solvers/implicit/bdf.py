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

from ...controllers import weighted_error_norm
from ..base import StepResult, VectorField
from ..compiled import CompileTarget, StepKind
from .common import ImplicitMethod, compile_options
from .linalg import (
    Factorization,
    blocks_ok,
    error_scale,
    factor_blocks,
    gmres,
    jvp_matvec,
    newton_matrix,
    to_blocks,
)
from .newton import newton, newton_fixed, roundoff_floor, with_implicit_gradient

MAX_ORDER = 5
_ROWS = MAX_ORDER + 3  # D[0..k+2] are used at order k
# Columns of BDF._tables: 7 scalars of the order (see bind), then the prediction weights (2 rows
# of _ROWS), then the step matrix (_ROWS + 3 rows of _ROWS + 1).
_PRED_PSI_COLUMNS = slice(7, 7 + 2 * _ROWS)
_STEP_COLUMNS = slice(7 + 2 * _ROWS, 7 + 2 * _ROWS + (_ROWS + 3) * (_ROWS + 1))


def _coefficients(ndf: bool) -> tuple[list[float], list[float], list[float]]:
    """``gamma``, ``alpha`` and ``error_const`` for orders 0..MAX_ORDER (index = order)."""
    kappa = [0.0, -0.1850, -1.0 / 9.0, -0.0823, -0.0415, 0.0] if ndf else [0.0] * 6
    gamma = [0.0]
    for j in range(1, MAX_ORDER + 1):
        gamma.append(gamma[-1] + 1.0 / j)
    alpha = [(1 - k) * g for k, g in zip(kappa, gamma)]
    error_const = [k * g + 1.0 / (j + 1) for j, (k, g) in enumerate(zip(kappa, gamma))]
    return gamma, alpha, error_const


class _Attempt(NamedTuple):
    d: torch.Tensor  # (B, n) the Newton solution: y_new - y_pred
    y_new: torch.Tensor
    converged: torch.Tensor  # (B,) bool
    all_converged: bool
    rate: torch.Tensor  # (B,) Newton's last contraction rate
    crate: torch.Tensor  # (B,) the rate remembered for the next step (CVODE's crate)


class BDFDense(NamedTuple):
    D: torch.Tensor  # (B, rows, n), after the step
    order: torch.Tensor  # (B,), or a compiled step's (B, 4) block columns (order first)
    shape: torch.Size


class _CompiledState(NamedTuple):
    """The state between compiled steps: the per-block order, steps at that order, stale flag
    and remembered rate packed as the float64 columns of ``blocks`` (B, 4), so that the graph
    takes and returns one tensor for them (each graph input and output costs host time)."""

    D: torch.Tensor
    blocks: torch.Tensor
    h_of_D: float
    jac: torch.Tensor


def _packed(state) -> _CompiledState:
    D, order, h_of_D, steps, jac, stale, crate = state
    columns = (order, steps, stale, crate)
    return _CompiledState(D, torch.stack([c.to(torch.float64) for c in columns], 1), h_of_D, jac)


def _unpacked(state) -> tuple:
    """The state of :meth:`BDF.init` (what the eager step takes) from either form."""
    if not isinstance(state, _CompiledState):
        return state
    D, blocks, h_of_D, jac = state
    order, steps, stale, crate = blocks.unbind(1)
    return (D, order.long(), h_of_D, steps.long(), jac, stale > 0, crate.to(D.dtype))


def _rescale_matrix(
    factor: torch.Tensor, order: torch.Tensor, traced: bool = False
) -> torch.Tensor:
    """Per block, the ``(rows, rows)`` matrix ``M`` with ``D_new = M D`` for a step-size ratio
    ``factor``: ``(R(factor) U)^T`` on rows ``0..order``, the identity on the others.

    ``traced``: the same products written as elementwise operations, which the compiler fuses
    (it calls out to library kernels for ``cumprod`` and ``bmm``, at a dispatch each).
    """
    idx = torch.arange(_ROWS, device=factor.device)
    dtype = factor.dtype
    i = idx[1:, None].to(dtype)
    j = idx[None, 1:].to(dtype)

    def r_matrix(fac: torch.Tensor) -> torch.Tensor:
        m = torch.zeros(fac.shape[0], _ROWS, _ROWS, dtype=dtype, device=fac.device)
        m[:, 0, :] = 1
        m[:, 1:, 1:] = (i - 1 - fac[:, None, None] * j) / i
        if not traced:
            return torch.cumprod(m, dim=1)
        rows = [m[:, 0]]
        for r in range(1, _ROWS):
            rows.append(rows[-1] * m[:, r])
        return torch.stack(rows, dim=1)

    inside = (idx[:, None] <= order[:, None, None]) & (idx[None, :] <= order[:, None, None])
    r = r_matrix(factor) * inside
    u = r_matrix(torch.ones_like(factor)) * inside
    eye = torch.eye(_ROWS, dtype=dtype, device=factor.device)
    return (_small_bmm(r, u) if traced else r @ u).mT + eye * ~inside


def _small_bmm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``torch.bmm`` as a broadcast product and a sum, which the compiler fuses."""
    return (a.unsqueeze(-1) * b.unsqueeze(-3)).sum(-2)


class _OrderConstants(NamedTuple):
    same_order_only: torch.Tensor  # (3,) factors allowing only the current order
    norm_bias: torch.Tensor  # (3,) the biases over sqrt(n): 2-norms become weighted RMS norms
    one: torch.Tensor
    zero_steps: torch.Tensor


def _order_constants(dtype: torch.dtype, device: torch.device, n: int) -> _OrderConstants:
    as_tensor = dict(dtype=dtype, device=device)
    return _OrderConstants(
        torch.tensor([0.0, 1.0, 0.0], **as_tensor),
        torch.tensor([6.0, 6.0, 10.0], **as_tensor) / math.sqrt(n),
        torch.ones((), **as_tensor),
        torch.zeros((), dtype=torch.long, device=device),
    )


def _choose_order(errors, order, table, steps, scale, max_order: int, consts: _OrderConstants):
    """Per block, the next order, step-size factor and count of steps at that order, by
    CVODE's rules (module docstring), from the ``(B, 3, n)`` error estimates of orders
    ``k - 1``, ``k``, ``k + 1`` weighted by ``scale``. A factor of 1 keeps the step."""
    norms = torch.linalg.vector_norm(errors / scale[:, None], dim=2)  # sqrt(n) * RMS
    # Orders other than k are candidates only after k + 1 steps at order k (and if they
    # exist); a candidate that is not has factor 0.
    ready = (steps >= order)[:, None]
    allowed = torch.where(ready, table[:, 4:7], consts.same_order_only)
    factors = allowed / ((consts.norm_bias * norms).pow(table[:, 1:4]) + 1e-6)
    best, choice = factors.max(dim=1)
    grow = best >= 1.5
    order_new = (order + choice - 1).clamp(1, max_order)
    factor = torch.where(grow, best.clamp(max=10.0), consts.one)
    steps_new = torch.where(grow | (choice != 1), consts.zero_steps, steps + 1)
    return order_new, factor, steps_new


@dataclasses.dataclass(eq=False)
class BDF(ImplicitMethod):
    """Variable-order BDF/NDF (``bdf``), orders 1 to ``max_order``.

    Args:
        max_order: highest order used (1..5).
        ndf: use ode15s's numerical differentiation formulas instead of plain BDF.
        newton_tol: Newton stops when its estimated error is below this fraction of the loop's
            error scale ``atol + rtol |y|`` (0.03, scipy's largest; on the IVP Test Set problems
            at rtol 1e-8 it saved 15% of the evaluations of 0.01 at the same digits, while 0.1
            cost OREGO a digit).
        max_iters: Newton iterations per step before the step is rejected (4, as scipy).
        jacobian_rate: re-evaluate the Jacobian at the next step when Newton contracted slower.
        compile: run each shared-mode step without gradients as one ``torch.compile``-d graph
            (see :func:`_make_compiled_step`); the Jacobian and the factorization of the Newton
            matrix are graphs of their own. The first solve of a field and block size pays the
            compilation; steps the graph cannot take (per-sample mode, grad mode,
            ``krylov_dim``, tuple states, jump clamping) run eagerly and compute the same thing.
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
    newton_tol: float = 0.03
    max_iters: int = 4
    jacobian_rate: float = 0.2
    compile: bool = False

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
        bound._lu_memo = bound._host_lu_memo = None
        bound._tolerances = None
        bound._compilable = False  # set_error_norm decides
        bound._known = None
        # The graph's float64 ``times`` input, refilled in place each step through a numpy view
        # (torch.tensor of the host floats cost about 6 us a step, a tenth of the whole step)
        bound._times_host = torch.zeros(5, dtype=torch.float64)
        bound._times_values = bound._times_host.numpy()
        # Everything a step needs of its order k is gathered by one indexing of these tables
        # (the step's cost is kernel dispatch, not arithmetic). Row k of ``order_table``:
        # 1 / alpha_k; the step-size exponents 1 / (j + 1) of orders j = k - 1, k, k + 1; and
        # which of those orders exist.
        orders = range(MAX_ORDER + 1)
        order_table = torch.tensor(
            [
                [1 / max(alpha[k], 1e-300), 1 / max(k, 1), 1 / (k + 1), 1 / (k + 2)]
                + [float(k > 1), 1.0, float(k < self.max_order)]
                for k in orders
            ],
            dtype=dtype,
        )
        # Row k, as two weight rows over D: y_pred = sum_{j<=k} D[j] and
        # -psi = -sum_{1<=j<=k} gamma_j D[j] / alpha_k.
        weights = torch.zeros(MAX_ORDER + 1, 2, _ROWS, dtype=dtype)
        for k in range(1, MAX_ORDER + 1):
            weights[k, 0, : k + 1] = 1.0
            weights[k, 1, 1 : k + 1] = torch.tensor(gamma[1 : k + 1], dtype=dtype) / -alpha[k]
        # Row k, the accepted step at order k as one matrix acting on [D; d]: its first _ROWS
        # rows give the new differences (D[k+2] = d - D[k+1], D[k+1] = d, then D[i] += D[i+1]
        # for i = k..0; rows > k+2 stay), its last three the error estimates of orders k - 1,
        # k, k + 1 (error_const_j times D_new[k], d and D_new[k+2]).
        step = torch.zeros(MAX_ORDER + 1, _ROWS + 3, _ROWS + 1, dtype=dtype)
        for k in range(1, MAX_ORDER + 1):
            update = step[k, :_ROWS]
            update[: k + 1, : k + 1] = torch.ones(k + 1, k + 1, dtype=dtype).triu()
            update[k + 2, k + 1] = -1.0
            update[k + 3 :, k + 3 : _ROWS] = torch.eye(_ROWS - k - 3, dtype=dtype)
            update[: k + 3, _ROWS] = 1.0
            step[k, _ROWS] = error_const[k - 1] * update[k]
            step[k, _ROWS + 1, _ROWS] = error_const[k]
            if k < MAX_ORDER:
                step[k, _ROWS + 2] = error_const[k + 1] * update[k + 2]
        # One indexing per step gathers a block's row of all three tables.
        bound._tables = torch.cat([order_table, weights.flatten(1), step.flatten(1)], dim=1).to(
            device
        )
        return bound

    def set_error_norm(self, rtol, atol, norm) -> None:
        if self.compile:
            # Tensors, not floats: the graph would bake floats in and recompile per tolerance.
            as_tensor = dict(dtype=self._tables.dtype, device=self._tables.device)
            rtol, atol = torch.as_tensor(rtol, **as_tensor), torch.as_tensor(atol, **as_tensor)
            self._tolerances = (rtol, atol, norm)
            self._compilable = self.krylov_dim is None

    def init(self, f: VectorField, t0: Any, y0: torch.Tensor) -> Any:
        self._layout_name = self._layout(t0)
        y_b = to_blocks(y0, self._layout_name)
        n_blocks, n = y_b.shape
        self._consts = _order_constants(y0.dtype, y0.device, n)
        self._error_tols = self._error_scale.tensors(y0)
        D = torch.zeros(n_blocks, _ROWS, n, dtype=y0.dtype, device=y0.device)
        D[:, 0] = y_b
        D[:, 1] = to_blocks(f(t0, y0), self._layout_name)  # h * f0 for a step of 1; rescaled later
        long = dict(dtype=torch.long, device=y0.device)
        order = torch.ones(n_blocks, **long)
        # The step size D is scaled for: a host float in shared mode (one step for all blocks),
        # per block in per-sample mode.
        h_of_D = (
            torch.ones(n_blocks, dtype=y0.dtype, device=y0.device)
            if self._layout_name == "per_sample"
            else 1.0
        )
        steps_at_order = torch.zeros(n_blocks, **long)
        m = 0 if self.krylov_dim is not None else n  # matrix-free: no Jacobian kept
        jac = torch.zeros(n_blocks, m, m, dtype=y0.dtype, device=y0.device)
        stale = torch.ones(n_blocks, dtype=torch.bool, device=y0.device)
        crate = torch.ones(n_blocks, dtype=y0.dtype, device=y0.device)
        return (D, order, h_of_D, steps_at_order, jac, stale, crate)

    def reset_after_discontinuity(self, state: Any) -> Any:
        D, order, h_of_D, steps, jac, stale, crate = _unpacked(state)
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
            torch.ones_like(crate),
        )

    def step(self, f: VectorField, t: Any, y: torch.Tensor, h: Any, state: Any) -> StepResult:
        if self._compilable and not isinstance(h, torch.Tensor) and not torch.is_grad_enabled():
            target = getattr(f, "compile_target", None)
            if target is not None:
                return self._compiled_step(target, f, t, y, h, state)
        shape = y.shape
        D, order, h_of_D, steps_at_order, jac, stale, crate = _unpacked(state)
        per_sample = isinstance(h, torch.Tensor)
        h_blocks = h[:, 0] if per_sample else h  # (B,) or a float
        if per_sample:
            resized = h_blocks != h_of_D
            if bool(resized.any()):
                D = torch.bmm(_rescale_matrix(h_blocks / h_of_D, order), D)
                steps_at_order = torch.where(resized, self._consts.zero_steps, steps_at_order)
        elif h != h_of_D:
            D, steps_at_order = self._rescaled(D, order, steps_at_order, h / h_of_D)

        matrix_free = self.krylov_dim is not None
        fresh = None  # the blocks whose Jacobian is evaluated at this step's start
        if not matrix_free and bool(stale.any()):
            jac, fresh = self._refresh(f, t, y, jac, stale), stale
        table = self._tables[order]  # (B, columns): the rows of the order tables
        y_abs = y.detach().abs()
        scale = self._error_scale.blocks(y_abs, self._layout_name, magnitude=True)
        attempt = self._attempt(f, t, y, h, h_blocks, D, order, table, jac, scale, crate)
        if not attempt.all_converged and not matrix_free:
            retry = ~attempt.converged if fresh is None else ~attempt.converged & ~fresh
            if bool(retry.any()):
                jac = self._refresh(f, t, y, jac, retry)
                attempt = self._attempt(f, t, y, h, h_blocks, D, order, table, jac, scale, crate)
        d, y_new = attempt.d, attempt.y_new

        # One product gives the new differences and the error estimates of orders k-1, k, k+1.
        step_matrices = table[:, _STEP_COLUMNS].view(-1, _ROWS + 3, _ROWS + 1)
        stepped = torch.bmm(step_matrices, torch.cat([D, d[:, None]], dim=1))
        D_new, err = stepped[:, :_ROWS], stepped[:, _ROWS + 1]
        next_stale = attempt.rate > self.jacobian_rate
        if not attempt.all_converged:
            self.stats["n_newton_failures"] += 1
            failed = ~attempt.converged
            err = err.masked_fill(failed[:, None], math.inf)
            next_stale = next_stale | failed

        with torch.no_grad():  # order and step-size choices are not differentiated
            # The loop's error weights: of the larger of |y| and |y_new|.
            scale = self._error_scale.blocks(
                torch.maximum(y_abs, y_new.reshape(shape).abs()), self._layout_name, magnitude=True
            )
            order_new, factor, steps_new = _choose_order(
                stepped[:, _ROWS:],
                order,
                table,
                steps_at_order,
                scale,
                self.max_order,
                self._consts,
            )
        dense = BDFDense(D_new, order, shape)
        new_state = (D_new, order_new, h_blocks, steps_new, jac, next_stale, attempt.crate)
        h_next = factor * h_blocks
        if not per_sample:  # shared mode: one step size for all blocks
            h_next = min(h_next.tolist())
        return StepResult(y_new.reshape(shape), err.reshape(shape), dense, new_state, h_next)

    def _compiled_step(self, target: CompileTarget, f, t, y, h, state) -> StepResult:
        """:meth:`step` with the prediction, Newton, error estimates and the order and step
        choice in one graph; the host reads back one small tensor per attempt."""
        if not isinstance(state, _CompiledState):  # a solve's first step, or after an eager one
            state = _packed(state)
        D, blocks, h_of_D, jac = state
        # host copies of the blocks' orders and whether any is stale, which would otherwise be
        # read back (by identity: a rejected step's next attempt starts from the older state)
        known = self._known if self._known is not None and self._known[0] is blocks else None
        if known is None:
            known = (blocks, bool((blocks[:, 2] > 0).any()), blocks[:, 0].tolist())
        fresh = None
        if known[1]:
            fresh = blocks[:, 2] > 0
            jac = self._compiled_refresh(target, f, t, y, jac, fresh)
        orders = known[2]
        user_time = -(t + h) if target.reverse else t + h
        # the ratio and a flag for rescaling the history: always computed in the graph, where
        # it costs less than a separate eager rescaling costs the steps that need one
        self._times_values[:4] = (user_time, h, h / h_of_D, float(h != h_of_D))
        args = (target, y, D, blocks, h, orders)
        out, summary = self._compiled_attempt(jac, *args)
        n_blocks = D.shape[0]
        if summary[0] != 1.0:
            converged = torch.tensor(summary[5 + n_blocks :], device=y.device) == 1.0
            retry = ~converged if fresh is None else ~converged & ~fresh
            if bool(retry.any()):
                jac = self._compiled_refresh(target, f, t, y, jac, retry)
                out, summary = self._compiled_attempt(jac, *args)
            if summary[0] != 1.0:
                self.stats["n_newton_failures"] += 1
        y_new, err, D_new, blocks_new, _ = out
        self._known = (blocks_new, summary[1] == 1.0, summary[5 : 5 + n_blocks])
        dense = BDFDense(D_new, blocks, y.shape)
        new_state = _CompiledState(D_new, blocks_new, h, jac)
        return StepResult(y_new, err, dense, new_state, summary[2], error_norm=summary[3])

    def _compiled_attempt(self, jac, target, y, D, blocks, h, orders):
        """One run of the compiled step with the factorization for ``jac``; returns its
        outputs and the host copy of its summary."""
        n = D.shape[2]

        def build() -> tuple:
            constants = (self.max_order, self.newton_tol, self.max_iters, self.jacobian_rate)
            layout = self._layout_name
            # A function per block size: graphs of one function that differ in a size are
            # recompiled with that size symbolic, which made OREGO's steps after a HIRES solve
            # a quarter slower than with all sizes known (a changed batch size still
            # recompiles once to a symbolic batch dimension).
            key = (StepKind("bdf", (*constants, n)), target.reverse, layout)
            name = f"bdf_step_{layout}_n{n}{'_reverse' if target.reverse else ''}"
            make = lambda: _make_compiled_step(*constants, target.reverse, layout)  # noqa: E731
            return key, name, make, compile_options(pointwise_cat=True)

        compiled = self._compiled_function((target.reverse, n), build)
        # ``c`` is a function of ``h`` and the orders (which compare equal as ints or floats):
        # a held step finds its factorization without reading anything back
        memo = self._host_lu_memo
        new_matrix = memo is None or memo[0] is not jac or memo[1] != (h, orders)
        self._times_values[4] = float(new_matrix)  # the graph forgets Newton's rate
        times = self._times_host if y.device.type == "cpu" else self._times_host.to(y.device)
        if new_matrix:
            lu = self._compiled_factorization(jac, blocks, times)
            self._host_lu_memo = memo = (jac, (h, orders), lu)
        lu = memo[2]
        out = compiled(
            target.func,
            target.time_dtype,
            times,
            y,
            D,
            blocks,
            lu.factor,
            lu.pivots,
            lu.ok,
            self._tables,
            self._error_tols,
            self._tolerances,
        )
        summary = out[-1].tolist()
        iterations = int(summary[4])
        target.counter.calls += iterations
        self.stats["n_newton_iters"] += iterations
        return out, summary

    def _rescaled(self, D, order, steps_at_order, ratio: float):
        """Shared mode: the history for a step ``ratio`` times the one it is scaled for."""
        D = torch.bmm(_rescale_matrix(torch.full_like(D[:, 0, 0], ratio), order), D)
        return D, torch.zeros_like(steps_at_order)

    def _compiled_factorization(self, jac, blocks, times) -> Factorization:
        """The factorization of ``I - c J`` for the orders in ``blocks``, from a compiled graph."""
        n = jac.shape[-1]
        factorize = self._compiled_function(
            ("factorize", n),  # one function per block size, as the step's
            lambda: (
                (StepKind("bdf_factorization", (n,)), False, self._layout_name),
                f"bdf_factorization_n{n}",
                lambda: _factorize,
                compile_options(),
            ),
        )
        self.stats["n_lu"] += 1
        return Factorization.of(*factorize(jac, self._tables, blocks, times))

    def _compiled_refresh(self, target, f, t, y, jac, which: torch.Tensor) -> torch.Tensor:
        if self.jac is not None:
            return self._refresh(f, t, y, jac, which)
        new = self._compiled_jacobian(target, t, y, self._layout_name)
        return new if jac.shape[0] == 1 else torch.where(which[:, None, None], new, jac)

    def _refresh(self, f, t, y, jac, which: torch.Tensor) -> torch.Tensor:
        new = self._jacobian(f, t, y.detach(), self._layout_name).detach()
        return torch.where(which[:, None, None], new, jac)

    def _attempt(self, f, t, y, h, h_blocks, D, order, table, jac, scale, crate) -> _Attempt:
        layout, shape = self._layout_name, y.shape
        pred_psi = torch.bmm(table[:, _PRED_PSI_COLUMNS].view(-1, 2, _ROWS), D)  # (B, 2, n)
        y_pred, minus_psi = pred_psi[:, 0], pred_psi[:, 1]
        per_sample = isinstance(h_blocks, torch.Tensor)
        c = table[:, :1] * (h_blocks[:, None] if per_sample else h_blocks)  # h / alpha_k
        g = self._block_fn(f, self._stage_time(t, 1.0, h), shape, layout)

        def phi(d):
            return torch.addcmul(minus_psi, c, g(y_pred + d))

        def phi_detached(d):
            return torch.addcmul(minus_psi.detach(), c, g(y_pred.detach() + d))

        floor = roundoff_floor(scale, y_pred.detach(), self.newton_tol)
        if self.krylov_dim is None:
            lu, new_matrix = self._factorization(jac, c)
            solve, ok, all_ok = (lambda r, z: lu.solve(r)), lu.ok, lu.all_ok
        else:
            solve = lambda r, z: gmres(jvp_matvec(phi, z), r, self.krylov_dim)  # noqa: E731
            ok, all_ok, new_matrix = None, True, True
        # CVODE's convergence-rate memory: with the Newton matrix of earlier steps, a first
        # correction that is small by the rate those steps saw ends the iteration. A new matrix
        # starts again from rate 1 (no memory).
        crate = torch.ones_like(crate) if new_matrix else crate
        res = newton(phi, None, solve, floor, self.newton_tol, self.max_iters, crate)
        self.stats["n_newton_iters"] += res.iterations
        d = with_implicit_gradient(phi, phi_detached, res.z, self.jacobian, self.krylov_dim)
        converged = res.converged if ok is None or all_ok else res.converged & ok
        # The rate is 0 where one iteration sufficed: nothing new was learnt there.
        if res.iterations > 1:
            crate = torch.where(res.rate > 0, torch.maximum(0.3 * crate, res.rate), crate)
        return _Attempt(d, y_pred + d, converged, res.all_converged and all_ok, res.rate, crate)

    def _factorization(self, jac: torch.Tensor, c: torch.Tensor) -> tuple[Factorization, bool]:
        """The factorization of ``I - c J``, reused while neither the Jacobian nor
        ``c = h / alpha_k`` changed (held steps at one order: most steps), and whether it is
        new."""
        memo = self._lu_memo
        if memo is not None and memo[0] is jac and torch.equal(memo[1], c):
            return memo[2], False
        lu = Factorization(newton_matrix(jac, c))
        self.stats["n_lu"] += 1
        self._lu_memo = (jac, c, lu)
        return lu, True

    def interpolate(self, dense: BDFDense, theta: Any) -> torch.Tensor:
        D, order, shape = dense
        if order.dim() == 2:  # a compiled step's packed block columns
            order = order[:, 0]
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


def _factorize(jac, tables, blocks, times):
    """The factors of ``I - c J``, ``c = h / alpha_k``, and which blocks are usable, for
    :meth:`BDF._compiled_factorization` to compile."""
    c = tables[blocks[:, 0].long()][:, :1] * times[1].to(jac.dtype)
    factor, pivots, info = factor_blocks(newton_matrix(jac, c))
    return factor, pivots, blocks_ok(factor, info)


def _make_compiled_step(
    max_order: int,
    newton_tol: float,
    max_iters: int,
    jacobian_rate: float,
    reverse: bool,
    layout: str,
):
    """The traceable BDF step of :meth:`BDF._compiled_step` (shared mode, no gradients).

    It computes what the eager step computes, with the data-dependent parts made static: the
    history is always rescaled, and the rescaling kept where ``times[3]`` says the step size
    changed; Newton runs ``max_iters`` iterations with finished blocks frozen
    (:func:`~.newton.newton_fixed`); the order's coefficients come from the padded tables, so
    one graph serves all orders. ``times`` (float64) holds the user's time of ``t + h``,
    ``h``, ``h / h_of_D``, the rescale flag and whether the Newton matrix is new (which resets
    the remembered rate). ``blocks`` are the packed columns of :class:`_CompiledState`. The
    factorization of ``I - c J`` comes from outside (the explicit inverse, or LU factors with
    ``pivots``).

    Returns ``y_new, error, D_new, blocks_new`` and a float64 summary for the host: all
    converged, any stale, the next step size, the loop's error norm, Newton's iterations, then
    the new order of each block and whether its Newton converged.
    """

    def bdf_step(
        func, time_dtype, times, y, D, blocks, factor, pivots, lu_ok, tables, error_tols,
        tolerances,
    ):  # fmt: skip
        shape, dtype = y.shape, y.dtype
        order, steps = blocks[:, 0].long(), blocks[:, 1].long()
        # CVODE's rate memory, forgotten with a new Newton matrix (as the eager step)
        crate = torch.where(times[4] > 0, 1.0, blocks[:, 3]).to(dtype)
        n = D.shape[2]
        h = times[1].to(dtype)
        resize = times[3] > 0
        ratio = times[2].to(dtype).expand(D.shape[0])
        D = torch.where(resize, _small_bmm(_rescale_matrix(ratio, order, traced=True), D), D)
        steps = torch.where(resize, torch.zeros_like(steps), steps)
        table = tables[order]
        atol, rtol, tiny = error_tols
        y_abs = y.abs()
        scale = error_scale(atol, rtol, tiny, y_abs, layout)
        pred_psi = _small_bmm(table[:, _PRED_PSI_COLUMNS].view(-1, 2, _ROWS), D)
        y_pred, minus_psi = pred_psi[:, 0], pred_psi[:, 1]
        c = table[:, :1] * h
        t_user = times[0].to(time_dtype)

        def phi(d):
            out = func(t_user, (y_pred + d).reshape(shape))
            return torch.addcmul(minus_psi, c, to_blocks(-out if reverse else out, layout))

        def solve(r):
            if pivots is None:
                return _small_bmm(factor, r.unsqueeze(-1)).squeeze(-1)
            return torch.linalg.lu_solve(factor, pivots, r.unsqueeze(-1)).squeeze(-1)

        floor = roundoff_floor(scale, y_pred, newton_tol)
        res = newton_fixed(phi, solve, floor, newton_tol, max_iters, crate)
        converged = res.converged & lu_ok
        d = res.z
        y_new = y_pred + d
        crate = torch.where(res.rate > 0, torch.maximum(0.3 * crate, res.rate), crate)
        step_matrices = table[:, _STEP_COLUMNS].view(-1, _ROWS + 3, _ROWS + 1)
        D_and_d = torch.cat([D, d[:, None]], dim=1)
        # two products, not one and a slice: the next step's input keeps its strides fixed
        D_new = _small_bmm(step_matrices[:, :_ROWS], D_and_d)
        errors = _small_bmm(step_matrices[:, _ROWS:], D_and_d)
        err = errors[:, 1].masked_fill(~converged[:, None], math.inf)
        next_stale = (res.rate > jacobian_rate) | ~converged
        y_new = y_new.reshape(shape)
        scale = error_scale(atol, rtol, tiny, torch.maximum(y_abs, y_new.abs()), layout)
        consts = _order_constants(dtype, y.device, n)
        order_new, step_factor, steps_new = _choose_order(
            errors, order, table, steps, scale, max_order, consts
        )
        err = err.reshape(shape)
        rtol_loop, atol_loop, norm = tolerances
        error_norm = weighted_error_norm(err, y, y_new, rtol_loop, atol_loop, norm)
        scalars = [
            converged.all(),
            next_stale.any(),
            (step_factor * h).min(),
            error_norm,
            res.iterations.max(),
        ]
        summary = torch.cat(
            [torch.stack([v.double() for v in scalars]), order_new.double(), converged.double()]
        )
        columns = (order_new, steps_new, next_stale, crate)
        blocks_new = torch.stack([c.to(torch.float64) for c in columns], 1)
        return y_new, err, D_new, blocks_new, summary

    return bdf_step


def bdf(**options: Any) -> BDF:
    """Variable-order BDF (orders 1-5) in ode15s's difference form, CVODE's step control."""
    return BDF(**options)
