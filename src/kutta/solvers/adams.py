"""Fixed-step Adams methods with torchdiffeq's semantics.

``explicit_adams`` is Adams–Bashforth; ``implicit_adams`` (alias ``fixed_adams``) is
Adams–Bashforth–Moulton: the Bashforth value predicts, the Moulton formula corrects by
functional iteration. As in torchdiffeq:

- the steps are the fixed grid (``step_size``, a grid constructor, or the output times); the
  weights assume equal steps, so the grid should be uniform;
- every step evaluates ``f`` at its start and adds it to a history of at most ``max_order - 1``
  derivatives (newest first); with fewer than 3 of them the step is rk4 (the 3/8 rule), so the
  first two steps start the method up;
- with ``k`` stored derivatives the predictor is the ``k``-value Adams–Bashforth formula and the
  corrector the ``(k + 1)``-value Adams–Moulton formula, so the order rises step by step up to
  ``max_order - 1`` (explicit) or ``max_order`` (implicit);
- the corrector iterates at most ``max_iters`` times, until two successive increments agree in
  the max norm to ``atol + rtol * max(|old|, |new|)`` (the solve's tolerances). If it does not
  converge, a ``RuntimeWarning`` is issued and the oldest derivative is dropped (lower order next).

Stability: the high-order Bashforth formulas are stable only for tiny ``h * |lambda|`` (on the
negative real axis: up to 0.30 for 4 values, 0.024 for 8, 0.0034 for 11, the default
``max_order = 12``), so with the defaults ``explicit_adams`` needs very small steps (as in
torchdiffeq); a lower ``max_order`` allows larger ones.

Since the start-up steps are taken once whatever ``h``, the global error is
``O(h^min(4, max_order - 1))`` (explicit: one third-order Bashforth step) and
``O(h^min(5, max_order))`` (implicit: the rk4 start-up), which ``order`` reports.

The weights are computed exactly (rational arithmetic) by integrating the Lagrange basis
polynomials of the nodes over one step; see Hairer, Nørsett & Wanner, "Solving Ordinary
Differential Equations I", III.1.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from fractions import Fraction
from typing import Any, NamedTuple

import torch

from ..errors import InvalidArgumentError
from .base import Method, StepResult
from .explicit import ExplicitRK
from .tableaus import RK4

MAX_ORDER = 12  #: the highest order torchdiffeq allows (and its default)
MAX_ITERS = 4  #: torchdiffeq's default number of corrector iterations
_START_UP = 3  # fewer stored derivatives than this: take an rk4 step


@functools.cache
def adams_weights(n_values: int, implicit: bool) -> tuple[Fraction, ...]:
    """The weights of the ``n_values``-value Adams formula on a uniform grid, exactly.

    Explicit (Bashforth): ``y_{n+1} = y_n + h * sum_j w_j f_{n-j}``, ``j = 0..n_values-1``.
    Implicit (Moulton): ``y_{n+1} = y_n + h * sum_j w_j f_{n+1-j}``.

    Each weight is the integral over one step of the Lagrange basis polynomial of its node
    (nodes ``0, -1, ...`` in units of ``h``; Moulton's start at ``1``).

    Example:
        >>> [str(w) for w in adams_weights(2, implicit=False)]
        ['3/2', '-1/2']
        >>> [str(w) for w in adams_weights(2, implicit=True)]
        ['1/2', '1/2']
    """
    if n_values < 1:
        raise InvalidArgumentError(f"an Adams formula needs at least one value, got {n_values}")
    first = 1 if implicit else 0
    nodes = [first - j for j in range(n_values)]
    weights = []
    for i, node in enumerate(nodes):
        poly = [Fraction(1)]  # coefficients of s^0, s^1, ...
        denominator = Fraction(1)
        for j, other in enumerate(nodes):
            if j != i:
                poly = _times_linear(poly, -other)
                denominator *= node - other
        integral = sum(c / (m + 1) for m, c in enumerate(poly))
        weights.append(integral / denominator)
    return tuple(weights)


def _times_linear(poly: list[Fraction], shift: int) -> list[Fraction]:
    """``poly(s) * (s + shift)``."""
    out = [Fraction(0)] * (len(poly) + 1)
    for m, c in enumerate(poly):
        out[m] += c * shift
        out[m + 1] += c
    return out


class AdamsDense(NamedTuple):
    """What interpolation inside one step needs (``f0``/``f1`` only for cubic output)."""

    y0: torch.Tensor
    y1: torch.Tensor
    h: Any
    f0: torch.Tensor | None
    f1: torch.Tensor | None


@dataclasses.dataclass(eq=False)
class Adams(Method):
    """Fixed-step Adams–Bashforth(–Moulton), torchdiffeq's ``explicit_adams``/``implicit_adams``.

    Args:
        implicit: correct with Adams–Moulton (``implicit_adams``) or not (``explicit_adams``).
        max_order: at most ``max_order - 1`` stored derivatives (1..12; below 4 the method is
            rk4 throughout, as in torchdiffeq).
        max_iters: corrector iterations per step (implicit only).
        interp: output between grid points, ``"linear"`` or ``"cubic"`` (Hermite; costs one
            evaluation per step).
        perturb: evaluate ``f`` at a step's start just after it and at its end just before it,
            so that a jump of ``f`` at a grid point is seen on the correct side.

    The method state is the tuple of stored derivatives, newest first.

    Example:
        >>> import torch, kutta
        >>> sol = kutta.solve(lambda t, y: -y, torch.ones(1, dtype=torch.float64),
        ...                   span=(0.0, 1.0), method=Adams(max_order=5), step_size=0.01)
        >>> abs(float(sol.ys[-1]) - 0.36787944117144233) < 1e-9
        True
    """

    implicit: bool = False
    max_order: int = MAX_ORDER
    max_iters: int = MAX_ITERS
    interp: str = "linear"
    perturb: bool = False
    _weights: dict | None = dataclasses.field(default=None, repr=False)
    _start: ExplicitRK | None = dataclasses.field(default=None, repr=False)
    _tolerances: tuple[Any, Any] = dataclasses.field(default=(1e-9, 1e-7), repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.max_order, int) or not 1 <= self.max_order <= MAX_ORDER:
            raise InvalidArgumentError(
                f"max_order must be an integer from 1 to {MAX_ORDER}, got {self.max_order!r}"
            )
        if not isinstance(self.max_iters, int) or self.max_iters < 1:
            raise InvalidArgumentError(
                f"max_iters must be a positive integer, got {self.max_iters!r}"
            )
        if self.interp not in ("linear", "cubic"):
            raise InvalidArgumentError(
                f"unknown interp {self.interp!r}; valid values are: cubic, linear"
            )
        self.name = "implicit_adams" if self.implicit else "explicit_adams"
        if self.max_order <= _START_UP:
            self.order = RK4.order  # rk4 throughout
        elif self.implicit:
            self.order = min(RK4.order + 1, self.max_order)
        else:
            self.order = min(RK4.order, self.max_order - 1)

    def bind(self, dtype: torch.dtype, device: torch.device) -> Adams:
        history = self.max_order - 1
        weights = {
            k: (
                torch.tensor(
                    [float(w) for w in adams_weights(k, False)], dtype=dtype, device=device
                ),
                torch.tensor(
                    [float(w) for w in adams_weights(k + 1, True)], dtype=dtype, device=device
                ),
            )
            for k in range(_START_UP, history + 1)
        }
        start = ExplicitRK(RK4, perturb=self.perturb).bind(dtype, device)
        return dataclasses.replace(self, _weights=weights, _start=start)

    def set_error_scale(self, atol: Any, rtol: Any) -> None:
        self._tolerances = (atol, rtol)

    def init(self, f, t0, y0):
        return ()

    def reset_after_discontinuity(self, state):
        return ()

    def step(self, f, t, y, h, state) -> StepResult:
        per_sample = not isinstance(h, float)
        h_time = h[:, 0] if per_sample else h
        t1 = t + h_time
        f0 = f(self._after(t, t1), y)
        history = (f0, *(state or ()))[: max(self.max_order - 1, 1)]
        k = len(history) if self.max_order > _START_UP else 0
        if k < _START_UP:
            y1 = self._start.step(f, t, y, h, f0).y
        else:
            bashforth, moulton = self._weights[k]
            past = torch.stack(history)
            dy = h * torch.tensordot(bashforth, past, dims=1)
            if self.implicit:
                dy, converged = self._correct(f, self._before(t1, t), y, h, moulton, past, dy)
                if not converged:
                    warnings.warn(
                        f"implicit_adams: the corrector did not converge in {self.max_iters} "
                        f"iterations near t = {_describe(t)}; the solution may be inaccurate "
                        "(the order is lowered; a smaller step_size helps)",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                    history = history[:-1]
            y1 = y + dy
        f1 = f(self._before(t1, t), y1) if self.interp == "cubic" else None
        dense = AdamsDense(y, y1, h, f0 if f1 is not None else None, f1)
        return StepResult(y1, None, dense, history)

    def _correct(self, f, t1, y, h, moulton, past, dy):
        """Functional iteration of the Moulton formula from the predicted increment ``dy``.

        In per-sample mode each row stops iterating once it has converged, so a row's result
        does not depend on the others (only the iteration count it is charged does).
        """
        delta = h * torch.tensordot(moulton[1:], past, dims=1)
        gain = h * moulton[0]
        atol, rtol = self._tolerances
        per_sample = not isinstance(h, float)
        done = torch.zeros(y.shape[0], dtype=torch.bool, device=y.device) if per_sample else None
        for _ in range(self.max_iters):
            new = gain * f(t1, y + dy) + delta
            ratio = (dy - new).abs() / (atol + rtol * torch.maximum(dy.abs(), new.abs()))
            if per_sample:
                new = torch.where(done[:, None], dy, new)
                done = done | (ratio.flatten(1).amax(dim=1) < 1)
                dy = new
                if bool(done.all()):
                    return dy, True
            else:
                dy = new
                if bool(ratio.max() < 1):
                    return dy, True
        return dy, False

    def _after(self, t, toward):
        return _nudge(t, toward) if self.perturb else t

    def _before(self, t1, toward):
        return _nudge(t1, toward) if self.perturb else t1

    def interpolate(self, dense: AdamsDense, theta):
        if dense.f1 is None:
            return super().interpolate(dense, theta)
        y0, y1, h, f0, f1 = dense
        h00 = (1 + 2 * theta) * (1 - theta) ** 2
        h10 = theta * (1 - theta) ** 2
        h01 = theta**2 * (3 - 2 * theta)
        h11 = theta**2 * (theta - 1)
        return h00 * y0 + h10 * h * f0 + h01 * y1 + h11 * h * f1


def _nudge(t: Any, toward: Any) -> Any:
    """The float next to ``t`` in the direction of ``toward``."""
    if isinstance(t, float):
        return math.nextafter(t, toward)
    return torch.nextafter(t, torch.as_tensor(toward, dtype=t.dtype, device=t.device))


def _describe(t: Any) -> str:
    return f"{t:.6g}" if isinstance(t, float) else f"{float(t.min()):.6g}"
