"""The one generic explicit Runge–Kutta step, driven by a :class:`ButcherTableau`.

Speed matters here more than anywhere: for small states the cost of a solve is Python and
dispatch overhead per operation, not arithmetic. So each stage's combination of earlier stages is
a single fused matrix–vector product over the stacked stages (``addmv``), coefficients are cast
once per solve (``bind``), and stage times are made in one operation per step.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import torch

from ..errors import InvalidArgumentError
from .base import Method, StepResult
from .tableau import ButcherTableau, TableauTensors


class RKDense(NamedTuple):
    """What interpolation inside one accepted step needs."""

    y0: torch.Tensor
    y1: torch.Tensor
    h: Any  # float, or (B, 1) tensor
    stages: torch.Tensor  # (s, *y.shape)
    f1: torch.Tensor | None  # f(t + h, y1) when known (for Hermite output of fixed-step methods)


def _combine(y: torch.Tensor, stages: torch.Tensor, coeffs: torch.Tensor, h: Any) -> torch.Tensor:
    """``y + h * sum_j coeffs[j] * stages[j]`` in as few kernels as possible."""
    n = coeffs.shape[0]
    if isinstance(h, float):
        flat = stages[:n].reshape(n, -1)
        return torch.addmv(y.reshape(-1), flat.t(), coeffs, alpha=h).view_as(y)
    # per sample: stages (s, B, N), h (B, 1)
    return torch.addcmul(y, h, torch.tensordot(coeffs, stages[:n], dims=1))


def _weighted(stages: torch.Tensor, coeffs: torch.Tensor, h: Any) -> torch.Tensor:
    """``h * sum_j coeffs[j] * stages[j]``."""
    flat = torch.mv(stages.reshape(stages.shape[0], -1).t(), coeffs).view(stages.shape[1:])
    return flat * h


@dataclasses.dataclass(eq=False)
class ExplicitRK(Method):
    """An explicit Runge–Kutta method from its tableau.

    Args:
        tableau: the method's coefficients.
        interp: ``"auto"`` uses the tableau's dense output (linear if it has none);
            ``"linear"`` or ``"cubic"`` (Hermite; costs one evaluation per step for non-FSAL
            fixed-step methods) force a choice, as torchdiffeq's ``interp`` option does.
        perturb: evaluate stage times at ``t`` and ``t + h`` one float nudged inwards, so a
            vector field with a jump at a step boundary is sampled on the correct side.

    Example:
        >>> import torch
        >>> from kutta.solvers.tableaus import DOPRI5
        >>> m = ExplicitRK(DOPRI5).bind(torch.float64, torch.device("cpu"))
        >>> f = lambda t, y: -y
        >>> y0 = torch.ones(1, dtype=torch.float64)
        >>> r = m.step(f, 0.0, y0, 0.1, m.init(f, 0.0, y0))
        >>> round(float(r.y), 8) == round(float(torch.exp(torch.tensor(-0.1))), 8)
        True
    """

    tableau: ButcherTableau
    interp: str = "auto"
    perturb: bool = False
    _tt: TableauTensors | None = dataclasses.field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.interp not in ("auto", "linear", "cubic"):
            raise InvalidArgumentError(
                f"unknown interp {self.interp!r}; valid values are: auto, cubic, linear"
            )
        self.name = self.tableau.name
        self.order = self.tableau.order
        self.error_order = self.tableau.error_order if self.tableau.adaptive else None

    def bind(self, dtype: torch.dtype, device: torch.device) -> ExplicitRK:
        return dataclasses.replace(self, _tt=self.tableau.to(dtype, device))

    def init(self, f, t0, y0):
        return f(t0, y0)

    def reset_after_discontinuity(self, state):
        return None

    def step(self, f, t, y, h, state) -> StepResult:
        tt, tab = self._tt, self.tableau
        s = tab.stages
        k0 = f(t, y) if state is None else state
        stages: torch.Tensor | None = None
        ks = [k0]
        y_stage = y
        per_sample = not isinstance(h, float)
        h_time = h[:, 0] if per_sample else h
        for i in range(1, s):
            stages = torch.stack(ks)
            y_stage = _combine(y, stages, tt.a_rows[i], h)
            c = tt.c_list[i]
            if self.perturb and c == 1.0:
                ti = _nudge(t + h_time, toward=t)
            else:
                ti = t + c * h_time
            ks.append(f(ti, y_stage))
        stages = torch.stack(ks)
        fsal = tab.fsal
        y1 = y_stage if fsal else _combine(y, stages, tt.b, h)
        error = _weighted(stages, tt.b_err, h) if tt.b_err is not None else None
        if fsal:
            f1 = ks[-1]
        elif self.interp == "cubic" and tt.b_dense is None:
            # Fixed steps are always accepted, so this evaluation is the next step's first stage.
            f1 = f(t + h_time, y1)
        else:
            f1 = None
        return StepResult(y1, error, RKDense(y, y1, h, stages, f1), f1)

    def interpolate(self, dense: RKDense, theta):
        tt = self._tt
        if self.interp == "linear" or (self.interp == "auto" and tt.b_dense is None):
            return super().interpolate(dense, theta)
        if self.interp == "cubic" and tt.b_dense is None:
            return _cubic_hermite(dense, theta)
        degree = tt.b_dense.shape[1]
        if isinstance(theta, float):
            powers = [theta ** (m + 1) for m in range(degree)]
            weights = torch.mv(tt.b_dense, tt.b_dense.new_tensor(powers))
            return _combine(dense.y0, dense.stages, weights, dense.h)
        exps = torch.arange(1, degree + 1, dtype=theta.dtype, device=theta.device)
        weights = theta.pow(exps) @ tt.b_dense.t()  # (B, s)
        increments = torch.einsum("bs,sbn->bn", weights, dense.stages)
        return torch.addcmul(dense.y0, dense.h, increments)


def _nudge(t: Any, toward: Any) -> Any:
    """The float next to ``t`` in the direction of ``toward``."""
    if isinstance(t, float):
        import math

        return math.nextafter(t, toward)
    return torch.nextafter(t, torch.as_tensor(toward, dtype=t.dtype, device=t.device))


def _cubic_hermite(dense: RKDense, theta):
    """Cubic Hermite through (y0, f0) and (y1, f1) on the unit interval, scaled by h."""
    if dense.f1 is None:
        raise InvalidArgumentError(
            "interp='cubic' needs f(t1, y1); this method does not provide it"
        )
    y0, y1, h = dense.y0, dense.y1, dense.h
    f0, f1 = dense.stages[0], dense.f1
    th = theta
    h00 = (1 + 2 * th) * (1 - th) ** 2
    h10 = th * (1 - th) ** 2
    h01 = th**2 * (3 - 2 * th)
    h11 = th**2 * (th - 1)
    return h00 * y0 + h10 * h * f0 + h01 * y1 + h11 * h * f1
