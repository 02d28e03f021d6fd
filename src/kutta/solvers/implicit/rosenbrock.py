"""The one generic Rosenbrock step, driven by a :class:`RosenbrockTableau`.

A Rosenbrock method solves linear systems with ``M = I - h gamma J`` instead of a nonlinear
system, so it needs no Newton iteration, a fresh Jacobian per step (the methods here are not
W-methods), and one LU factorization per step size. Gradients flow through the linear solves and
through the Jacobian itself (autograd Jacobians are differentiable), which is exact
backpropagation through the discrete solution.

With ``compile=True`` a shared-mode step without gradients is one ``torch.compile``-d graph
(:func:`_make_compiled_step`): ``f(t, y)``, the Jacobian (``torch.func`` of the user's field,
inlined), ``df/dt``, the inverse of a small ``M`` (:func:`~.linalg.traced_inverse`, fused; LU
for blocks above ``INVERSE_MAX_SIZE``), every stage, the solution, the error estimate and the
loop's error norm, so that the loop reads back one number per step. A rejected step retries
from the same point with the Jacobian it already has (as the eager step does), in a second
graph that takes the Jacobian as input; so does every step when the user gives ``jac``
(evaluated eagerly). The counts (``nfe``, ``n_jac``, ``n_lu``) are the eager step's, and the
results agree with it to round-off (the inverse is another algorithm than LAPACK's). Steps the
graph does not take run eagerly: the first step of a non-FSAL method (its state is the loop's
``f(t0, y0)``), per-sample mode, grad mode (any solve with ``torch.is_grad_enabled()``: run
inference under ``torch.no_grad()``), and fields the graph cannot trace (tuple states, the
adjoint's augmented field).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import torch

from ...controllers import weighted_error_norm
from ...errors import InvalidArgumentError
from ..base import StepResult, VectorField
from ..compiled import CompileTarget, StepKind
from .common import (
    ImplicitMethod,
    _make_compiled_jacobian,
    compile_options,
)
from .linalg import (
    INVERSE_MAX_SIZE,
    Factorization,
    factor_blocks,
    newton_matrix,
    to_blocks,
    traced_inverse,
)
from .tableaus import RODAS5, ROSENBROCK23, RosenbrockTableau


class RosenbrockDense(NamedTuple):
    y0: torch.Tensor  # (B, n) blocks
    stages: torch.Tensor  # (s, B, n)
    dense: torch.Tensor  # (s, m) power-basis weights
    shape: torch.Size  # the user's state shape


class _JacobianMemo(NamedTuple):
    """The Jacobian (and df/dt) at the last point a step started from, reused on rejection."""

    t: Any
    y: torch.Tensor
    jac: torch.Tensor
    dfdt: torch.Tensor | None


def _same_point(memo: _JacobianMemo | None, t: Any, y: torch.Tensor) -> bool:
    if memo is None or memo.y.shape != y.shape:
        return False
    same_t = memo.t is t or (torch.equal(memo.t, t) if isinstance(t, torch.Tensor) else memo.t == t)
    return same_t and (memo.y is y or torch.equal(memo.y, y))


@dataclasses.dataclass(eq=False)
class Rosenbrock(ImplicitMethod):
    """An adaptive Rosenbrock method (``rodas5``, ``rosenbrock23``).

    Args:
        tableau: the method's coefficients.
        autonomous: skip ``df/dt`` when ``f`` does not depend on ``t``. Otherwise ``df/dt`` costs two
            evaluations per step (central differences).
        compile: run each shared-mode step without gradients as one ``torch.compile``-d graph
            (module docstring). The first solve of a field pays the compilation (two graphs:
            a rejected step's retry has one of its own); per-sample mode and grad mode run
            eagerly and compute the same thing.
        (and the options of :class:`ImplicitMethod`: ``jac``, ``jacobian``, ``independent_batch``.)

    Example:
        >>> import torch
        >>> m = Rosenbrock(RODAS5).bind(torch.float64, torch.device("cpu"))
        >>> f = lambda t, y: -1000.0 * y
        >>> y0 = torch.ones(2, dtype=torch.float64)
        >>> res = m.step(f, 0.0, y0, 0.1, m.init(f, 0.0, y0))
        >>> bool(res.y.abs().max() < 0.1)  # stable at h |lambda| = 100 (explicit Euler: 99)
        True
    """

    tableau: RosenbrockTableau = RODAS5
    autonomous: bool = False
    compile: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.krylov_dim is not None:
            raise InvalidArgumentError(
                f"{self.tableau.name}: Rosenbrock methods need exact linear solves; use krylov_dim "
                "with kvaerno3/kvaerno5/trbdf2/bdf"
            )
        self.name = self.tableau.name
        self.order = self.tableau.order
        self.error_order = self.tableau.error_order
        self._memo: _JacobianMemo | None = None
        tab = self.tableau
        self._fsal = tab.c[-1] == 1.0 and tab.a[-1] == tab.b

    def bind(self, dtype: torch.dtype, device: torch.device) -> Rosenbrock:
        bound = super().bind(dtype, device)
        bound._coeffs = self.tableau.to(dtype, device)
        bound._memo = None
        bound._tolerances = None
        # The compiled step's coefficients [a | C | b | e | d] as one tensor: read from the
        # tableau, each would be a constant that dynamo checks (a guard) at every call.
        tab = self.tableau
        columns = [tab.a, tab.C, [[v] for v in tab.b], [[v] for v in tab.e], [[v] for v in tab.d]]
        rows = [sum((list(col[i]) for col in columns), []) for i in range(tab.stages)]
        bound._step_coefficients = torch.tensor(rows, dtype=torch.float64, device=device)
        # The graph's float64 ``times`` input, refilled in place each step through a numpy view
        # (as bdf's: torch.tensor of the host floats cost about 6 us a step). One length for both
        # graphs, the longest (with df/dt's three values); each reads only the entries it uses.
        bound._times_host = torch.zeros(tab.stages + 6, dtype=torch.float64)
        bound._times_values = bound._times_host.numpy()
        return bound

    def set_error_norm(self, rtol, atol, norm) -> None:
        if self.compile:
            # Tensors, not floats: the graph would bake floats in and recompile per tolerance.
            as_tensor = dict(dtype=self._coeffs.b.dtype, device=self._coeffs.b.device)
            rtol, atol = torch.as_tensor(rtol, **as_tensor), torch.as_tensor(atol, **as_tensor)
            self._tolerances = (rtol, atol, norm)

    def init(self, f: VectorField, t0: Any, y0: torch.Tensor) -> Any:
        self._layout_name = self._layout(t0)
        to_blocks(y0, self._layout_name)  # a clear error now for a state without batch dimension
        return f(t0, y0)

    def reset_after_discontinuity(self, state: Any) -> Any:
        return None

    def _jacobian_and_dfdt(self, f: VectorField, t: Any, y: torch.Tensor, keep_graph: bool):
        if _same_point(self._memo, t, y):
            return self._memo.jac, self._memo.dfdt
        jac = self._jacobian(f, t, y, self._layout_name, keep_graph=keep_graph)
        dfdt = (
            None
            if self.autonomous
            else to_blocks(self._time_derivative(f, t, y), self._layout_name)
        )
        self._memo = _JacobianMemo(t, y, jac, dfdt)
        return jac, dfdt

    def _time_derivative(self, f: VectorField, t: Any, y: torch.Tensor) -> torch.Tensor:
        """``df/dt`` by central differences: exact autograd in ``t`` would silently drop the
        derivative of a vector field that calls ``math`` functions of ``t``."""
        scale = t.abs().clamp_min(1.0) if isinstance(t, torch.Tensor) else max(abs(t), 1.0)
        dt = torch.finfo(y.dtype).eps ** (1 / 3) * scale
        dt_y = dt[:, None] if isinstance(dt, torch.Tensor) else dt
        return (f(t + dt, y) - f(t - dt, y)) / (2 * dt_y)

    def step(self, f: VectorField, t: Any, y: torch.Tensor, h: Any, state: Any) -> StepResult:
        if self._tolerances is not None and not isinstance(h, torch.Tensor):
            target = getattr(f, "compile_target", None)
            # a non-FSAL tableau's state is f(t0, y0) at the first step only: that step is eager
            usable = state is None or self._fsal
            if target is not None and usable and not torch.is_grad_enabled():
                return self._compiled_step(target, f, t, y, h, state)
        tab, co, layout = self.tableau, self._coeffs, self._layout_name
        shape = y.shape
        y_b = to_blocks(y, layout)
        f0 = f(t, y) if state is None else state
        jac, dfdt = self._jacobian_and_dfdt(f, t, y, f0.requires_grad)
        hg = h * tab.gamma
        lu = Factorization(newton_matrix(jac, hg))
        self.stats["n_lu"] += 1
        # Stage i solves (I - h g J) k_i = h g (f(t_i, y + sum_j a_ij k_j) + sum_j C_ij k_j / h
        # + h d_i df/dt); the stages are kept as the columns of (B, n, i) for the sums.
        fi = to_blocks(f0, layout)
        inv_h = 1 / h
        stages: list[torch.Tensor] = []
        for i in range(tab.stages):
            rhs = fi
            if i > 0:
                ks = torch.stack(stages, -1)
                u = y_b + ks @ co.a_rows[i]
                fi = to_blocks(f(self._stage_time(t, tab.c[i], h), u.reshape(shape)), layout)
                rhs = _add_scaled(fi, ks @ co.C_rows[i], inv_h)
            if dfdt is not None and tab.d[i] != 0.0:
                rhs = _add_scaled(rhs, dfdt, h * tab.d[i])
            stages.append(lu.solve(hg * rhs))
        k = torch.stack(stages)
        y_new = y_b + torch.einsum("s,sbn->bn", co.b, k)
        # NaN/inf from a singular matrix or a blown-up stage reach the error estimate as +inf,
        # which the controller rejects (one operation instead of checking the factorization).
        err = torch.einsum("s,sbn->bn", co.e, k).nan_to_num(math.inf, math.inf, math.inf)
        dense = RosenbrockDense(y_b, k, co.dense, shape)
        # The state is f(t + h, y_new) when the last stage evaluated it anyway (FSAL).
        f_next = fi.reshape(shape) if self._fsal else None
        return StepResult(y_new.reshape(shape), err.reshape(shape), dense, f_next)

    def _compiled_step(self, target: CompileTarget, f, t, y, h, state) -> StepResult:
        tab, layout = self.tableau, self._layout_name
        # The graph evaluates f(t, y) itself unless the state carries it (FSAL tableaus).
        f0 = None
        if self._fsal:
            f0 = f(t, y) if state is None else state
        given = self.jac is not None or _same_point(self._memo, t, y)
        if given:  # the memo's Jacobian, or the user's (eager, as the eager step makes it)
            jac, dfdt = self._jacobian_and_dfdt(f, t, y, keep_graph=False)
        else:
            jac = dfdt = None
            self.stats["n_jac"] += 1
            # as the eager step: one (vectorized) evaluation per Jacobian, two for df/dt
            target.counter.calls += 1 if self.autonomous else 3
        self.stats["n_lu"] += 1
        target.counter.calls += tab.stages - (0 if f0 is None else 1)
        sign = -1.0 if target.reverse else 1.0
        # host floats rounded as the eager step rounds them: the stage times, h, h gamma, 1 / h,
        # then df/dt's difference times and twice its time step
        times = [sign * (t + c * h) for c in tab.c] + [h, h * tab.gamma, 1 / h]
        if not (given or self.autonomous):
            dt = torch.finfo(y.dtype).eps ** (1 / 3) * max(abs(t), 1.0)
            times += [sign * (t + dt), sign * (t - dt), 2 * dt]
        self._times_values[: len(times)] = times
        times_input = self._times_host if y.device.type == "cpu" else self._times_host.to(y.device)
        args = (
            target.func,
            target.time_dtype,
            times_input,
            self._step_coefficients,
            y,
            f0,
            jac,
            dfdt,
            self._tolerances,
        )
        n = to_blocks(y, layout).shape[-1]

        def build() -> tuple:
            constants = (tab, self.autonomous, self.jacobian == "fwd", given)
            # A function per block size, as bdf's: a second size would otherwise recompile the
            # graph with symbolic sizes, slower for every size after it.
            key = (StepKind("rosenbrock", (*constants, n)), target.reverse, layout)
            name = f"{tab.name}_step_{layout}_n{n}{'_given_jacobian' if given else ''}"
            name += "_reverse" if target.reverse else ""
            make = lambda: _make_compiled_step(*constants, target.reverse, layout)  # noqa: E731
            return key, name, make, compile_options(pointwise_cat=True)

        compiled = self._compiled_function((target.reverse, given, n), build)
        y_new, err, k, f_last, jac, dfdt, error_norm = compiled(*args)
        if not given:
            self._memo = _JacobianMemo(t, y, jac, dfdt)
        dense = RosenbrockDense(to_blocks(y, layout), k, self._coeffs.dense, y.shape)
        f_next = f_last if self._fsal else None
        return StepResult(y_new, err, dense, f_next, error_norm=error_norm)

    def interpolate(self, dense: RosenbrockDense, theta: Any) -> torch.Tensor:
        y0, k, weights, shape = dense
        m = weights.shape[1]
        if isinstance(theta, torch.Tensor):  # (B, 1) per sample
            powers = torch.cat([theta**p for p in range(1, m + 1)], dim=1)  # (B, m)
            coeff = powers @ weights.t()  # (B, s)
            return (y0 + torch.einsum("bs,sbn->bn", coeff, k)).reshape(shape)
        powers = torch.tensor([theta**p for p in range(1, m + 1)], dtype=k.dtype, device=k.device)
        return (y0 + torch.tensordot(weights @ powers, k, dims=1)).reshape(shape)


def _add_scaled(x: torch.Tensor, v: torch.Tensor, scale: Any) -> torch.Tensor:
    """``x + scale * v`` in one operation when ``scale`` is a number (shared mode)."""
    if isinstance(scale, torch.Tensor):
        return x + scale * v
    return torch.add(x, v, alpha=scale)


def _make_compiled_step(
    tableau: RosenbrockTableau,
    autonomous: bool,
    forward: bool,
    given_jacobian: bool,
    reverse: bool,
    layout: str,
):
    """The traceable step of :meth:`Rosenbrock._compiled_step` (shared mode, no gradients).

    ``coefficients`` (float64) holds the tableau's ``[a | C | b | e | d]`` (rows: stages);
    ``times`` (float64, ``s + 6`` entries) holds the stage times in the user's time, ``h``,
    ``h gamma``, ``1 / h`` and, when the graph makes ``df/dt`` itself, the two difference times
    (user's time) and twice the difference step (otherwise its last three entries are unused).
    ``jac`` and ``dfdt`` are inputs when ``given_jacobian``, else None and made in the graph;
    ``f0`` (the field at ``(t, y)``) is made in the graph when None. Small blocks are inverted
    by :func:`~.linalg.traced_inverse`, which the graph fuses.

    Returns ``y_new, error, stages (s, B, n), f of the last stage, jac, dfdt`` and the loop's
    error norm (the step's other outputs are the eager step's).
    """
    s = tableau.stages
    jacobian = _make_compiled_jacobian(forward, reverse, layout)

    def rosenbrock_step(func, time_dtype, times, coefficients, y, f0, jac, dfdt, tolerances):
        shape, dtype = y.shape, y.dtype

        def field(time, z):
            out = func(time.to(time_dtype), z.reshape(shape))
            return to_blocks(-out if reverse else out, layout)

        y_b = to_blocks(y, layout)
        h, hg, inv_h = (times[i].to(dtype) for i in range(s, s + 3))
        fi = field(times[0], y_b) if f0 is None else to_blocks(f0, layout)
        if not given_jacobian:
            jac = jacobian(func, time_dtype, times[0], y)
            if not autonomous:
                difference = field(times[s + 3], y_b) - field(times[s + 4], y_b)
                dfdt = difference / times[s + 5].to(dtype)
        matrix = newton_matrix(jac, hg)
        if matrix.shape[-1] <= INVERSE_MAX_SIZE:
            factor, pivots = traced_inverse(matrix), None
        else:
            factor, pivots, _ = factor_blocks(matrix)

        def solve(r):
            if pivots is None:
                return (factor * r.unsqueeze(-2)).sum(-1)  # fused, unlike a bmm
            return torch.linalg.lu_solve(factor, pivots, r.unsqueeze(-1)).squeeze(-1)

        a, C, b, e, d = coefficients.to(dtype).split([s, s, 1, 1, 1], dim=1)
        stages: list[torch.Tensor] = []
        for i in range(s):
            rhs = fi
            if i > 0:
                fi = field(times[i], y_b + _weighted(a[i], stages))
                rhs = fi + inv_h * _weighted(C[i], stages)
            if dfdt is not None:
                rhs = rhs + (h * d[i]) * dfdt
            stages.append(solve(hg * rhs))
        y_new = (y_b + _weighted(b[:, 0], stages)).reshape(shape)
        err = _weighted(e[:, 0], stages).nan_to_num(math.inf, math.inf, math.inf).reshape(shape)
        rtol, atol, norm = tolerances
        error_norm = weighted_error_norm(err, y, y_new, rtol, atol, norm)
        return y_new, err, torch.stack(stages), fi.reshape(shape), jac, dfdt, error_norm

    return rosenbrock_step


def _weighted(weights: torch.Tensor, stages: list[torch.Tensor]) -> torch.Tensor:
    """``sum_j weights[j] stages[j]`` as elementwise operations, which the compiler fuses into
    their consumer (a stacked sum would be a reduction into a buffer of its own, and each
    buffer of a small graph costs as much as its arithmetic)."""
    total = weights[0] * stages[0]
    for j in range(1, len(stages)):
        total = total + weights[j] * stages[j]
    return total


def rodas5(**options: Any) -> Rosenbrock:
    """Rodas5 (Di Marzo 1993): order 5(4), L-stable, stiffly accurate, order-4 dense output."""
    return Rosenbrock(RODAS5, **options)


def rosenbrock23(**options: Any) -> Rosenbrock:
    """Shampine & Reichelt's ode23s: order 2(3), L-stable W-method, cheap per step."""
    return Rosenbrock(ROSENBROCK23, **options)
