"""Input normalization, done once at the boundary of every public entry point.

After this, the engine sees one flat (or batch-by-flat) tensor state, increasing floating-point
times and a vector field that takes host-float or tensor times. All checks of user input live
here, so they give one clear error instead of a stack trace from deep inside a step.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from .errors import InvalidArgumentError
from .solvers.compiled import CompileTarget


@dataclasses.dataclass
class Counter:
    """Counts vector-field evaluations."""

    calls: int = 0


@dataclasses.dataclass
class Problem:
    """A normalized initial value problem.

    Attributes:
        f: the vector field on the normalized state, in forward time, counting its calls.
            Takes a host float time (shared mode) or a ``(B,)`` tensor (per-sample mode).
        y0: the normalized initial state.
        times: output times in forward (increasing) time, as a float64 tensor on the host.
        reverse: whether the user's times decrease (then forward time is ``-t``).
        unflatten: maps a stacked ``(T, *y0.shape)`` result back to the user's structure.
        counter: the evaluation counter of ``f``.
        user_f: the vector field on the normalized state in the user's time (a tensor), for
            the few places that need ``dy/dt`` at user times (gradients with respect to ``t``).
    """

    f: Callable[[Any, torch.Tensor], torch.Tensor]
    y0: torch.Tensor
    times: torch.Tensor
    reverse: bool
    unflatten: Callable[[torch.Tensor], Any]
    counter: Counter
    time_dtype: torch.dtype
    shapes: list[torch.Size] | None = None
    user_f: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None

    def to_forward(self, t: float) -> float:
        return -t if self.reverse else t

    def user_time(self, t: float) -> float:
        return -t if self.reverse else t

    def event_in_forward_time(self, event_fn: Callable) -> Callable:
        """``event_fn(t, y)`` in the user's time and state structure, called with the loop's
        forward host-float time and flat state."""
        sign = -1.0 if self.reverse else 1.0

        def event(t: float, y: torch.Tensor) -> torch.Tensor:
            tt = torch.scalar_tensor(sign * t, dtype=self.time_dtype, device=y.device)
            return event_fn(tt, self.unflatten(y))

        return event


def check_state(y0: Any, name: str = "y0") -> None:
    if not torch.is_tensor(y0):
        raise InvalidArgumentError(
            f"{name} must be a tensor or a tuple of tensors, got {type(y0).__name__}"
        )
    if not (torch.is_floating_point(y0) or torch.is_complex(y0)):
        raise InvalidArgumentError(
            f"{name} must have a floating-point dtype, got {y0.dtype}; "
            f"convert it with {name}.float() or {name}.double()"
        )
    if not torch.isfinite(y0).all():
        raise InvalidArgumentError(f"{name} contains NaN or inf")


def check_times(t: Any, name: str = "t", *, min_len: int = 2) -> torch.Tensor:
    """Validate output times: 1-D, floating, finite, strictly monotone. Returns them as a tensor."""
    if not torch.is_tensor(t):
        if isinstance(t, (list, tuple)) and t and all(isinstance(v, (int, float)) for v in t):
            t = torch.tensor(t, dtype=torch.get_default_dtype())
        else:
            raise InvalidArgumentError(f"{name} must be a 1-D tensor of times")
    if t.dim() != 1:
        raise InvalidArgumentError(f"{name} must be one-dimensional, got shape {tuple(t.shape)}")
    if not torch.is_floating_point(t):
        raise InvalidArgumentError(f"{name} must have a floating-point dtype, got {t.dtype}")
    if t.numel() < min_len:
        raise InvalidArgumentError(f"{name} needs at least {min_len} time points, got {t.numel()}")
    # Checked on one host copy: a few numpy operations cost less than their torch
    # counterparts on small tensors, and a GPU tensor is synchronized once, not per check.
    host = t.detach().to("cpu", torch.float64).numpy()
    if not np.isfinite(host).all():
        raise InvalidArgumentError(f"{name} contains NaN or inf")
    if host.size > 1:
        d = np.diff(host)
        if not ((d > 0).all() or (d < 0).all()):
            bad = int(np.flatnonzero(~(d * np.sign(d[0]) > 0))[0]) + 1
            raise InvalidArgumentError(
                f"{name} must be strictly increasing or strictly decreasing; "
                f"it is not at index {bad} ({name}[{bad - 1}] = {float(t[bad - 1])}, "
                f"{name}[{bad}] = {float(t[bad])})"
            )
    return t


def _check_output(name: str, out: Any, like: torch.Tensor) -> None:
    if not torch.is_tensor(out):
        raise InvalidArgumentError(f"{name} must return a tensor, got {type(out).__name__}")
    if out.shape != like.shape:
        raise InvalidArgumentError(
            f"{name} returned shape {tuple(out.shape)}, but the state has shape {tuple(like.shape)}"
        )
    if out.dtype != like.dtype:
        raise InvalidArgumentError(
            f"{name} returned dtype {out.dtype}, but the state has dtype {like.dtype}"
        )


def normalize(
    func: Callable,
    y0: Any,
    t: Any,
    *,
    per_sample: bool = False,
    time_dtype: torch.dtype | None = None,
) -> Problem:
    """Normalize a torchdiffeq-style problem ``(func, y0, t)``; see :class:`Problem`."""
    if not callable(func):
        raise InvalidArgumentError(f"func must be callable, got {type(func).__name__}")
    shapes = None
    if isinstance(y0, (tuple, list)):
        if not y0:
            raise InvalidArgumentError("y0 is an empty tuple")
        for i, part in enumerate(y0):
            check_state(part, f"y0[{i}]")
        dtypes = {p.dtype for p in y0}
        if len(dtypes) > 1:
            raise InvalidArgumentError(
                f"all parts of a tuple state must share one dtype, got {sorted(map(str, dtypes))}"
            )
        shapes = [p.shape for p in y0]
        y0_flat = torch.cat([p.reshape(-1) for p in y0])
    else:
        check_state(y0)
        y0_flat = y0
    t = check_times(t, min_len=1)
    device = y0_flat.device
    if t.device != device:
        t = t.to(device)
    tdtype = time_dtype or (t.dtype if torch.is_floating_point(t) else y0_flat.real.dtype)
    if per_sample and y0_flat.dim() != 2:
        raise InvalidArgumentError(
            f"per_sample mode needs y0 of shape (batch, features), got {tuple(y0_flat.shape)}"
        )
    reverse = t.numel() > 1 and bool(t[1] < t[0])
    times = t.detach().to("cpu", torch.float64)
    if reverse:
        times = -times

    counter = Counter()
    sign = -1.0 if reverse else 1.0
    if shapes is not None:
        sizes = [math.prod(s) for s in shapes]

        def user_f(tt, y):
            parts = tuple(p.view(s) for p, s in zip(torch.split(y, sizes), shapes))
            out = func(tt, parts)
            if not isinstance(out, (tuple, list)) or len(out) != len(shapes):
                raise InvalidArgumentError(
                    f"func must return a tuple of {len(shapes)} tensors for a tuple state"
                )
            return torch.cat([o.reshape(-1) for o in out])

        def unflatten(ys: torch.Tensor):
            lead = ys.shape[:-1]
            return tuple(
                p.reshape(*lead, *s) for p, s in zip(torch.split(ys, sizes, dim=-1), shapes)
            )
    else:
        user_f = func

        def unflatten(ys):
            return ys

    def make_time(tt):
        if isinstance(tt, float):
            # scalar_tensor is the cheapest way to make a 0-dim tensor (half of torch.tensor's cost)
            return torch.scalar_tensor(sign * tt, dtype=tdtype, device=device)
        return tt.to(tdtype) * sign if reverse else tt.to(tdtype)

    checked = False

    def f(tt, y):
        nonlocal checked
        counter.calls += 1
        out = user_f(make_time(tt), y)
        if not checked:
            checked = True
            _check_output("func", out, y)
        return -out if reverse else out

    if shapes is None:
        # lets an explicit method with compile=True trace the user's field instead of this
        # per-solve wrapper (see kutta.solvers.compiled)
        f.compile_target = CompileTarget(func, reverse, tdtype, counter)

    def f_user_time(tt: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        counter.calls += 1
        return user_f(tt, y)

    return Problem(f, y0_flat, times, reverse, unflatten, counter, tdtype, shapes, f_user_time)


def expand_tolerance(tol: Any, name: str, shapes: Sequence[torch.Size] | None) -> Any:
    """Per-part tolerances for tuple states become one flat per-component tensor (torchdiffeq)."""
    if shapes is None or not isinstance(tol, (tuple, list)):
        return tol
    if len(tol) != len(shapes):
        raise InvalidArgumentError(
            f"{name} has {len(tol)} entries but the state has {len(shapes)} parts"
        )
    return torch.cat(
        [torch.as_tensor(v, dtype=torch.float64).expand(s).reshape(-1) for v, s in zip(tol, shapes)]
    )


# Gradients with respect to the output times, as torchdiffeq gives them. The solver's times
# are host floats, so they are attached afterwards, exactly to first order and without changing
# any value (every shift below is zero):
# - moving t0 by d is, to first order, starting from y0 - d f(t0, y0) at the old t0;
# - moving t_i by d moves the output by d f(t_i, y_i).
def shift_start(problem: Problem, t0: torch.Tensor) -> torch.Tensor:
    """``y0`` carrying the gradient with respect to the start time ``t0`` (same value)."""
    shift = (t0 - t0.detach()).to(problem.y0.dtype)
    return problem.y0 - shift * problem.user_f(t0, problem.y0)


def attach_time_gradient(problem: Problem, t_user: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """``ys`` carrying the gradients with respect to the output times ``t_user`` (same value)."""
    shifts = (t_user[: len(ys)] - t_user[: len(ys)].detach()).to(ys.dtype)
    slopes = torch.stack([problem.user_f(ti, yi) for ti, yi in zip(t_user, ys)])
    return ys + shifts.view(-1, *[1] * (ys.dim() - 1)) * slopes
