"""The one generic Rosenbrock step, driven by a :class:`RosenbrockTableau`.

A Rosenbrock method solves linear systems with ``M = I - h gamma J`` instead of a nonlinear
system, so it needs no Newton iteration, a fresh Jacobian per step (the methods here are not
W-methods), and one LU factorization per step size. Gradients flow through the linear solves and
through the Jacobian itself (autograd Jacobians are differentiable), which is exact
backpropagation through the discrete solution.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import torch

from ...errors import InvalidArgumentError
from ..base import StepResult, VectorField
from .common import ImplicitMethod
from .linalg import Factorization, newton_matrix, to_blocks
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
        return bound

    def init(self, f: VectorField, t0: Any, y0: torch.Tensor) -> Any:
        self._layout_name = self._layout(t0)
        to_blocks(y0, self._layout_name)  # a clear error now for a state without batch dimension
        return f(t0, y0)

    def reset_after_discontinuity(self, state: Any) -> Any:
        return None

    def _jacobian_and_dfdt(self, f: VectorField, t: Any, y: torch.Tensor, f0: torch.Tensor):
        if _same_point(self._memo, t, y):
            return self._memo.jac, self._memo.dfdt
        jac = self._jacobian(f, t, y, self._layout_name, keep_graph=f0.requires_grad)
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
        tab, co, layout = self.tableau, self._coeffs, self._layout_name
        shape = y.shape
        y_b = to_blocks(y, layout)
        f0 = f(t, y) if state is None else state
        jac, dfdt = self._jacobian_and_dfdt(f, t, y, f0)
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


def rodas5(**options: Any) -> Rosenbrock:
    """Rodas5 (Di Marzo 1993): order 5(4), L-stable, stiffly accurate, order-4 dense output."""
    return Rosenbrock(RODAS5, **options)


def rosenbrock23(**options: Any) -> Rosenbrock:
    """Shampine & Reichelt's ode23s: order 2(3), L-stable W-method, cheap per step."""
    return Rosenbrock(ROSENBROCK23, **options)
