"""The one generic explicit Runge–Kutta step, driven by a :class:`ButcherTableau`.

Speed matters here more than anywhere: for small states the cost of a solve is Python and
dispatch overhead per operation, not arithmetic. So each stage's combination of earlier stages is
a single fused matrix–vector product over the stacked stages (``addmv``), coefficients are cast
once per solve (``bind``), and stage times are made in one operation per step.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import torch

from ..errors import InvalidArgumentError
from .base import Method, StepResult
from .compiled import CompileTarget, compiled_attempt, grad_mode
from .tableau import ButcherTableau, TableauTensors


class RKDense(NamedTuple):
    """What interpolation inside one accepted step needs."""

    y0: torch.Tensor
    y1: torch.Tensor
    h: Any  # float, or (B, 1) tensor
    stages: torch.Tensor  # shared: (s, n) flat stages; per sample: (s, B, N)
    f1: torch.Tensor | None  # f(t + h, y1) when known (for Hermite output of fixed-step methods)


@dataclasses.dataclass(eq=False)
class ExplicitRK(Method):
    """An explicit Runge–Kutta method from its tableau.

    Args:
        tableau: the method's coefficients.
        interp: ``"auto"`` uses the tableau's dense output (linear if it has none);
            ``"linear"`` or ``"cubic"`` (Hermite; costs one evaluation per step for non-FSAL
            fixed-step methods) force a choice, as torchdiffeq's ``interp`` option does.
        perturb: evaluate stage times at ``t + h`` one float nudged inwards, so a vector field
            with a jump at a step boundary is sampled on the correct side.
        compile: run each shared-mode step as one ``torch.compile``-d graph (see
            :mod:`kutta.solvers.compiled`). The first solve pays the compilation (tens of
            seconds); later ones with the same field and shapes reuse it. Steps the compiled path
            cannot take (tuple states, per-sample mode, ``perturb``, Hermite output) run eagerly.

    Example:
        >>> import torch
        >>> from kutta.solvers.tableaus import DOPRI5
        >>> m = ExplicitRK(DOPRI5).bind(torch.float64, torch.device("cpu"))
        >>> f = lambda t, y: -y
        >>> y0 = torch.ones(1, dtype=torch.float64)
        >>> r = m.step(f, 0.0, y0, 0.1, m.init(f, 0.0, y0))
        >>> abs(float(r.y) - math.exp(-0.1)) < 1e-8
        True
    """

    tableau: ButcherTableau
    interp: str = "auto"
    perturb: bool = False
    compile: bool = False
    _tt: TableauTensors | None = dataclasses.field(default=None, repr=False)
    # ((reverse, grad mode), compiled step) of this solve, looked up when the key changes (twice
    # per solve with gradients): hashing a tableau costs too much to do every step
    _attempt: tuple[Any, Any] | None = dataclasses.field(default=None, repr=False)
    # the controller's (rtol, atol, norm) as the compiled step wants them
    _tolerances: tuple[Any, Any, Any] | None = dataclasses.field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.interp not in ("auto", "linear", "cubic"):
            raise InvalidArgumentError(
                f"unknown interp {self.interp!r}; valid values are: auto, cubic, linear"
            )
        tab = self.tableau
        self.name = tab.name
        self.order = tab.order
        self.error_order = tab.error_order if tab.adaptive else None
        # Derived once here, not per step: the step is the hot path.
        self._fsal = tab.fsal
        self._first_coeff = tab.a[1][0] if tab.stages > 1 else 0.0
        self._hermite = self.interp == "cubic" and tab.b_dense is None
        self._linear = self.interp == "linear" or (self.interp == "auto" and tab.b_dense is None)

    def bind(self, dtype: torch.dtype, device: torch.device) -> ExplicitRK:
        return dataclasses.replace(
            self,
            _tt=self.tableau.to(dtype, device),
            _attempt=None,
            _tolerances=None,
        )

    def set_error_norm(self, rtol, atol, norm) -> None:
        if not self.compile:
            return
        real = self._tt.b.real.dtype
        device = self._tt.b.device
        # Tensors, not floats: the compiled graph would bake floats in and recompile per tolerance.
        self._tolerances = (
            torch.as_tensor(rtol, dtype=real, device=device),
            torch.as_tensor(atol, dtype=real, device=device),
            norm,
        )

    def init(self, f, t0, y0):
        return f(t0, y0)

    def reset_after_discontinuity(self, state):
        return None

    def _stage_time(self, t, c: float, h):
        if self.perturb and c == 1.0:
            return _nudge(t + h, toward=t)
        return t + c * h

    def step(self, f, t, y, h, state) -> StepResult:
        if not isinstance(h, float):
            return self._step_per_sample(f, t, y, h, state)
        if self.compile and not self.perturb and not self._hermite:
            target = getattr(f, "compile_target", None)
            if target is not None:
                return self._compiled_step(target, f, t, y, h, state)
        tt = self._tt
        c = tt.c_list
        shape = y.shape
        yf = y.reshape(-1)
        k = f(t, y) if state is None else state
        ks = [k.reshape(-1)]
        yi = yf
        for i in range(1, len(c)):
            if i == 1:
                yi = torch.add(yf, ks[0], alpha=h * self._first_coeff)
            else:
                # Stacking rows (dim 0) and multiplying by the transpose is 4x faster than
                # stacking columns at n ~ 2000: the copy stays contiguous.
                yi = torch.addmv(yf, torch.stack(ks).t(), tt.a_rows[i], alpha=h)
            k = f(self._stage_time(t, c[i], h), yi.view(shape))
            ks.append(k.reshape(-1))
        stages = torch.stack(ks)  # (s, n)
        y1 = yi if self._fsal else torch.addmv(yf, stages.t(), tt.b, alpha=h)
        y1 = y1.view(shape)
        error = None if tt.b_err is None else torch.mv(stages.t(), tt.b_err).mul_(h).view(shape)
        if self._fsal:
            f1 = k
        elif self._hermite:
            # Fixed steps are always accepted, so this evaluation is the next step's first stage.
            f1 = f(self._stage_time(t, 1.0, h), y1)
        else:
            f1 = None
        return StepResult(y1, error, RKDense(y, y1, h, stages, f1), f1)

    def _compiled_step(self, target: CompileTarget, f, t, y, h, state) -> StepResult:
        k0 = f(t, y) if state is None else state
        sign = -1.0 if target.reverse else 1.0
        times = torch.tensor(
            [sign * (t + ci * h) for ci in self._tt.c_list] + [h],
            dtype=torch.float64,
            device=y.device,
        )
        key = (target.reverse, grad_mode(y))
        if self._attempt is None or self._attempt[0] != key:
            self._attempt = (key, compiled_attempt(self.tableau, *key))
        attempt = self._attempt[1]
        y1, error, stages, k_last, error_norm = attempt(
            target.func, times, target.time_dtype, y, k0, self._tolerances
        )
        target.counter.calls += self.tableau.stages - 1
        f1 = k_last if self._fsal else None
        return StepResult(y1, error, RKDense(y, y1, h, stages, f1), f1, error_norm=error_norm)

    def _step_per_sample(self, f, t, y, h, state) -> StepResult:
        tt = self._tt
        c = tt.c_list
        h_time = h[:, 0]
        k = f(t, y) if state is None else state
        ks = [k]
        yi = y
        for i in range(1, len(c)):
            yi = torch.addcmul(y, h, _weighted_sum(tt.a_rows[i], torch.stack(ks)))
            k = f(self._stage_time(t, c[i], h_time), yi)
            ks.append(k)
        stages = torch.stack(ks)  # (s, B, N)
        y1 = yi if self._fsal else torch.addcmul(y, h, _weighted_sum(tt.b, stages))
        error = None if tt.b_err is None else _weighted_sum(tt.b_err, stages) * h
        if self._fsal:
            f1 = k
        elif self._hermite:
            f1 = f(self._stage_time(t, 1.0, h_time), y1)
        else:
            f1 = None
        return StepResult(y1, error, RKDense(y, y1, h, stages, f1), f1)

    def interpolate(self, dense: RKDense, theta):
        tt = self._tt
        if self._linear:
            return super().interpolate(dense, theta)
        if self._hermite:
            return _cubic_hermite(dense, theta)
        if isinstance(theta, float):
            return self.interpolate_many(dense, [theta])[0]
        degree = tt.b_dense.shape[1]
        exps = torch.arange(1, degree + 1, dtype=theta.dtype, device=theta.device)
        weights = theta.pow(exps) @ tt.b_dense.t()  # (B, s)
        increments = torch.einsum("bs,sbn->bn", weights, dense.stages)
        return torch.addcmul(dense.y0, dense.h, increments)

    def interpolate_many(self, dense: RKDense, thetas: list[float]) -> torch.Tensor:
        tt = self._tt
        if self._linear or self._hermite:
            return super().interpolate_many(dense, thetas)
        degree = tt.b_dense.shape[1]
        # powers of theta on the host in float64, then cast once
        powers = tt.b_dense.new_tensor([[th ** (m + 1) for m in range(degree)] for th in thetas])
        weights = powers @ tt.b_dense.t()  # (m, s)
        y0 = dense.y0
        flat = torch.addmm(y0.reshape(1, -1), weights, dense.stages, alpha=dense.h)
        return flat.view(len(thetas), *y0.shape)


def _weighted_sum(coeffs: torch.Tensor, stages: torch.Tensor) -> torch.Tensor:
    """``sum_j coeffs[j] * stages[j]`` for stacked stages ``(s, B, N)``, as one matrix-vector product
    (``tensordot`` expands into about ten operations)."""
    s = stages.shape[0]
    return torch.mv(stages.reshape(s, -1).t(), coeffs).view(stages.shape[1:])


def _nudge(t: Any, toward: Any) -> Any:
    """The float next to ``t`` in the direction of ``toward``."""
    if isinstance(t, float):
        return math.nextafter(t, toward)
    return torch.nextafter(t, torch.as_tensor(toward, dtype=t.dtype, device=t.device))


def _cubic_hermite(dense: RKDense, theta):
    """Cubic Hermite through (y0, f0) and (y1, f1) on the unit interval, scaled by h."""
    if dense.f1 is None:
        raise InvalidArgumentError(
            "interp='cubic' needs f(t1, y1); this method does not provide it"
        )
    y0, y1, h = dense.y0, dense.y1, dense.h
    f0 = dense.stages[0].view_as(y0)
    f1 = dense.f1
    th = theta
    h00 = (1 + 2 * th) * (1 - th) ** 2
    h10 = th * (1 - th) ** 2
    h01 = th**2 * (3 - 2 * th)
    h11 = th**2 * (th - 1)
    return h00 * y0 + h10 * h * f0 + h01 * y1 + h11 * h * f1
