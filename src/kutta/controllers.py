"""Step-size controllers: how big an error is, whether to accept a step, and the next step size.

A controller knows nothing of a method's internals but the order of its error estimate. It owns
the tolerances, because "how big is this error" and "what step next" are the same decision.

The contract the solve loop relies on::

    ctl = controller.bind(order, dtype, device)        # once per solve
    h0, cstate = ctl.initial(f, t0, y0, f0, h0=None)  # first step (Hairer's algorithm)
    scale = ctl.error_norm(error, y_old, y_new)       # float (shared) or (B,) tensor (per sample)
    accept, h_next, cstate = ctl.adapt(scale, h, cstate)

In shared mode ``scale`` and ``h`` are Python floats and ``accept`` a bool. In per-sample mode they
are tensors of shape ``(B,)`` and every operation is elementwise, so a sample never sees another.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import torch

from .errors import InvalidArgumentError

Norm = Callable[[torch.Tensor], torch.Tensor]


def rms_norm(x: torch.Tensor) -> torch.Tensor:
    """Root mean square over all elements (torchdiffeq's default norm); real for complex ``x``."""
    return torch.linalg.vector_norm(x) * (1.0 / math.sqrt(max(x.numel(), 1)))


def per_sample_rms_norm(x: torch.Tensor) -> torch.Tensor:
    """Root mean square over all but the first (batch) dimension: shape ``(B,)``."""
    flat = x.flatten(1)
    return torch.linalg.vector_norm(flat, dim=1) * (1.0 / math.sqrt(max(flat.shape[1], 1)))


def _tolerance(tol: Any, name: str, dtype: torch.dtype, device: torch.device) -> Any:
    if isinstance(tol, (int, float)):
        if not (tol >= 0 and math.isfinite(tol)):
            raise InvalidArgumentError(f"{name} must be a finite non-negative number, got {tol!r}")
        return float(tol)
    tol = torch.as_tensor(tol)
    if tol.requires_grad:
        raise InvalidArgumentError(f"{name} cannot require gradient")
    if not torch.isfinite(tol).all() or (tol < 0).any():
        raise InvalidArgumentError(f"{name} must be finite and non-negative")
    return tol.to(dtype=dtype, device=device)


def weighted_error_norm(
    error: torch.Tensor, y0: torch.Tensor, y1: torch.Tensor, rtol: Any, atol: Any, norm: Norm
) -> torch.Tensor:
    """``norm(error / (atol + rtol * max(|y0|, |y1|)))``: the one definition of a step's error size.

    Also traced into the compiled explicit step (:mod:`kutta.solvers.compiled`). The in-place
    operations act on a fresh intermediate only, so they are safe there and save two allocations
    per step in eager mode.

    Example:
        >>> e = torch.tensor([1e-6, 0.0])
        >>> y = torch.tensor([1.0, 1.0])  # scale rtol * |y| = 1e-6: scaled error (1, 0)
        >>> float(weighted_error_norm(e, y, y, 1e-6, 0.0, rms_norm))  # doctest: +ELLIPSIS
        0.7071...
    """
    return norm(error / torch.maximum(y0.abs(), y1.abs()).mul_(rtol).add_(atol))


@dataclasses.dataclass
class Controller:
    """Base controller holding tolerances and the error norm.

    Args:
        rtol, atol: relative and absolute tolerances (floats or per-component tensors that
            broadcast against the state).
        norm: maps the scaled error to a scalar (shared mode) or to ``(B,)`` (per-sample mode).
            Default: root mean square.
        dt_min, dt_max: bounds on the step size magnitude. A step that would have to shrink below
            ``dt_min`` is an underflow error.
    """

    rtol: Any = 1e-7
    atol: Any = 1e-9
    norm: Norm | None = None
    dt_min: float = 0.0
    dt_max: float = math.inf

    def bind(self, error_order: int, dtype: torch.dtype, device: torch.device, per_sample: bool):
        """A copy of this controller ready for one solve (tolerances cast once)."""
        bound = dataclasses.replace(
            self,
            rtol=_tolerance(self.rtol, "rtol", dtype, device),
            atol=_tolerance(self.atol, "atol", dtype, device),
        )
        bound._exponent = 1.0 / (error_order + 1)
        bound._per_sample = per_sample
        if bound.norm is None:
            bound.norm = per_sample_rms_norm if per_sample else rms_norm
        return bound

    uses_error = True  #: whether ``adapt`` looks at the error (else the loop skips computing it)

    @torch.no_grad()
    def error_norm(self, error: torch.Tensor, y0: torch.Tensor, y1: torch.Tensor) -> Any:
        """The weighted error ``norm(err / (atol + rtol * max(|y0|, |y1|)))``; <= 1 is acceptable.

        Computed without autograd: step-size choices are not differentiated (as in diffrax), and
        recording them would cost time and memory for nothing.
        """
        return weighted_error_norm(error, y0, y1, self.rtol, self.atol, self.norm)

    @torch.no_grad()
    def initial(self, f, t0, y0, f0, order: int) -> Any:
        """Hairer's initial step size (Hairer, Nørsett, Wanner I, II.4), costs one evaluation.

        Returns a float in shared mode (NaN if the field is not finite near ``t0``), a ``(B,)``
        tensor in per-sample mode. In shared mode the scalar arithmetic runs on host floats:
        each small tensor operation would cost more than the arithmetic.
        """
        norm = self.norm
        shared = not self._per_sample
        scalar = float if shared else (lambda x: x)
        scale = y0.abs() * self.rtol + self.atol
        d0, d1 = scalar(norm(y0 / scale)), scalar(norm(f0 / scale))
        h0 = _where((d0 < 1e-5) | (d1 < 1e-5), 1e-6, 0.01 * d0 / _clamp_min(d1, 1e-300))
        f1 = f(t0 + h0, y0 + (h0 if shared else h0[:, None]) * f0)
        d2 = scalar(norm((f1 - f0) / scale)) / h0
        dmax = _maximum(d1, d2)
        h1 = _where(
            dmax <= 1e-15,
            _clamp_min(h0 * 1e-3, 1e-6),
            (0.01 / _clamp_min(dmax, 1e-300)) ** (1.0 / (order + 1)),
        )
        return _minimum(100 * h0, h1)

    def init_state(self, h0: Any) -> Any:
        """Controller memory at the start (e.g. previous error norms)."""
        return None

    def adapt(self, scale: Any, h: Any, state: Any) -> tuple[Any, Any, Any]:
        raise NotImplementedError


@dataclasses.dataclass
class ConstantController(Controller):
    """Fixed steps: always accept, never change ``h`` (used for fixed-step methods).

    Example:
        >>> ConstantController().adapt(3.0, 0.1, None)
        (True, 0.1, None)
    """

    uses_error = False

    def adapt(self, scale, h, state):
        accept = True if isinstance(h, float) else torch.ones_like(h, dtype=torch.bool)
        return accept, h, state


@dataclasses.dataclass
class PIDController(Controller):
    """Proportional–integral–derivative step-size control (Söderlind 2003; Hairer's PI for dopri5).

    The next step is ``h * clip(safety * e_n^-b1 * e_{n-1}^-b2 * e_{n-2}^-b3, factor_min, factor_max)``
    with ``e`` the error norms and ``b1 = (p + i + d) / k``, ``b2 = -(p + 2d) / k``, ``b3 = d / k``,
    ``k = error_order + 1``. ``pcoeff = dcoeff = 0, icoeff = 1`` is the classic I-controller.

    Rejections only ever shrink the step, and after a rejection the next accepted step may not
    grow (Hairer's rule), which avoids reject/grow oscillations.

    Example:
        >>> import torch
        >>> ctl = PIDController(rtol=1e-6, atol=1e-9).bind(4, torch.float64, torch.device("cpu"), False)
        >>> accept, h_next, _ = ctl.adapt(0.5, 0.1, ctl.init_state(0.1))
        >>> accept, h_next > 0.1
        (True, True)
    """

    pcoeff: float = 0.0
    icoeff: float = 1.0
    dcoeff: float = 0.0
    safety: float = 0.9
    factor_min: float = 0.2
    factor_max: float = 10.0

    def init_state(self, h0):
        # (previous error norm, the one before, whether the last step was rejected)
        if isinstance(h0, float):
            return (1.0, 1.0, False)
        one = torch.ones_like(h0)
        return (one, one, torch.zeros_like(h0, dtype=torch.bool))

    def adapt(self, scale, h, state):
        prev1, prev2, last_rejected = state
        k = self._exponent
        b1 = (self.pcoeff + self.icoeff + self.dcoeff) * k
        b2 = -(self.pcoeff + 2 * self.dcoeff) * k
        b3 = self.dcoeff * k
        if isinstance(h, float):
            if not math.isfinite(scale):
                return False, h * self.factor_min, (prev1, prev2, True)
            accept = scale <= 1.0
            e = max(scale, 1e-10)
            factor = self.safety * e**-b1
            if b2:
                factor *= prev1**-b2
            if b3:
                factor *= prev2**-b3
            factor = min(max(factor, self.factor_min), self.factor_max)
            if accept:
                if last_rejected:
                    factor = min(factor, 1.0)
                return True, h * factor, (e, prev1, False)
            return False, h * min(factor, 1.0), (prev1, prev2, True)
        finite = torch.isfinite(scale)
        accept = finite & (scale <= 1.0)
        e = torch.where(finite, scale, torch.ones_like(scale)).clamp_min(1e-10)
        factor = self.safety * e.pow(-b1)
        if b2:
            factor = factor * prev1.pow(-b2)
        if b3:
            factor = factor * prev2.pow(-b3)
        factor = factor.clamp(self.factor_min, self.factor_max)
        factor = torch.where(accept & last_rejected, factor.clamp_max(1.0), factor)
        factor = torch.where(accept, factor, factor.clamp_max(1.0))
        factor = torch.where(finite, factor, torch.full_like(factor, self.factor_min))
        new_state = (
            torch.where(accept, e, prev1),
            torch.where(accept, prev1, prev2),
            ~accept,
        )
        return accept, h * factor, new_state


def PIController(rtol: Any = 1e-7, atol: Any = 1e-9, **kwargs: Any) -> PIDController:
    """A PI controller with Hairer's dopri5 gains.

    Hairer's DOPRI5 uses ``h_new = h * e_n^-(1/5 - 0.75 beta) * e_{n-1}^beta`` with ``beta = 0.04``;
    in the gains above (with ``k = 5``) that is ``pcoeff = 0.2, icoeff = 0.65``.

    Example:
        >>> ctl = PIController(rtol=1e-6, atol=1e-8)
        >>> (ctl.pcoeff, ctl.icoeff)
        (0.2, 0.65)
    """
    kwargs.setdefault("pcoeff", 0.2)
    kwargs.setdefault("icoeff", 0.65)
    return PIDController(rtol=rtol, atol=atol, **kwargs)


def IController(rtol: Any = 1e-7, atol: Any = 1e-9, **kwargs: Any) -> PIDController:
    """The classic integral controller (torchdiffeq's): ``h * safety * err^(-1/k)``."""
    return PIDController(rtol=rtol, atol=atol, pcoeff=0.0, icoeff=1.0, **kwargs)


# Elementwise helpers for numbers that are host floats (shared mode) or tensors (per sample),
# with torch's NaN propagation, so that Hairer's algorithm is written once for both.
def _where(condition: Any, a: Any, b: Any) -> Any:
    if isinstance(condition, torch.Tensor):
        return torch.where(condition, a, b)
    return a if condition else b


def _maximum(a: Any, b: Any) -> Any:
    if isinstance(a, torch.Tensor):
        return torch.maximum(a, b)
    return math.nan if math.isnan(a) or math.isnan(b) else max(a, b)


def _minimum(a: Any, b: Any) -> Any:
    if isinstance(a, torch.Tensor):
        return torch.minimum(a, b)
    return math.nan if math.isnan(a) or math.isnan(b) else min(a, b)


def _clamp_min(x: Any, low: float) -> Any:
    if isinstance(x, torch.Tensor):
        return x.clamp_min(low)
    return x if math.isnan(x) else max(x, low)
