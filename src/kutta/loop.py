"""The solve loop: the only place that owns time.

It chooses step sizes through the controller, asks the method for steps, accepts or rejects
them, lands on output times, ``step_t``/``jump_t`` and the final time, locates events, counts,
and turns failures into status codes or a :class:`~kutta.errors.SolverError` carrying what was
computed so far. Two drivers share these rules: one for a whole batch that steps together
(``"shared"``, host-side floats for time, one decision per step) and one where every sample has
its own step size (``"per_sample"``, elementwise tensors, finished samples dropped).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from .controllers import Controller
from .errors import InvalidArgumentError, SolverError
from .solution import DenseSteps
from .solvers.base import Method
from .status import Status

_EPS_FACTOR = 4.0  # a step below EPS_FACTOR * eps * |t| cannot change t: that is underflow


@dataclasses.dataclass
class LoopConfig:
    """What the loop needs besides the method and the controller (all in forward time)."""

    max_steps: int = 2**31 - 1
    first_step: float | None = None
    step_size: float | None = None  # fixed-step methods: the grid spacing (None: output times)
    grid: torch.Tensor | None = None  # fixed-step methods: an explicit grid (overrides step_size)
    step_t: Sequence[float] = ()
    jump_t: Sequence[float] = ()
    dense: bool = False
    event_fn: Callable | None = None  # g(t, y) -> tensor; terminal at the first sign change
    event_tol: float | None = None
    raise_on_failure: bool = True


@dataclasses.dataclass
class LoopResult:
    ys: list[torch.Tensor]  # states at the output times reached
    status: Status
    nfe: int
    n_accepted: int
    n_rejected: int
    t_final: float
    dense: DenseSteps | None = None
    event_t: float | None = None
    event_y: torch.Tensor | None = None
    message: str = ""


def _stop_points(t0: float, t1: float, cfg: LoopConfig) -> tuple[list[float], set[float]]:
    jumps = {float(x) for x in cfg.jump_t if t0 < float(x) < t1}
    stops = sorted({float(x) for x in cfg.step_t if t0 < float(x) < t1} | jumps | {t1})
    return stops, jumps


def integrate_shared(
    f: Callable,
    y0: torch.Tensor,
    times: torch.Tensor,
    method: Method,
    controller: Controller,
    cfg: LoopConfig,
    counter: Any,
) -> LoopResult:
    """Integrate the whole state with one step size. ``times`` are increasing host floats."""
    out_times = times.tolist()
    t0, t_end = out_times[0], out_times[-1]
    ys = [y0]
    n_out = len(out_times)
    next_out = 1
    nfe0 = counter.calls
    dense_steps = DenseSteps(method) if cfg.dense else None
    event_sign0 = None
    if cfg.event_fn is not None:
        with torch.no_grad():
            event_sign0 = torch.sign(cfg.event_fn(t0, y0))

    if method.adaptive:
        state = method.init(f, t0, y0)
        if cfg.first_step is not None:
            h = float(cfg.first_step)
        elif t_end > t0 or cfg.event_fn is not None:
            h = controller.initial(f, t0, y0, state, method.order)
        else:
            h = 1.0
        if not math.isfinite(h) or h <= 0:
            raise SolverError(
                f"non-finite values: the vector field returned NaN/inf at t = {t0}", t=t0
            )
        cstate = controller.init_state(h)
        stops, jumps = _stop_points(t0, t_end, cfg)
        if cfg.event_fn is not None and t_end <= t0:
            stops = [math.inf]
    else:
        state = None
        if cfg.event_fn is not None:
            if cfg.step_size is None:
                raise InvalidArgumentError(
                    "events with a fixed-step method need options={'step_size': ...}"
                )
            stops: Sequence[float] = _EndlessGrid(t0, float(cfg.step_size))
        else:
            stops = _fixed_grid(t0, t_end, out_times, cfg)[1:]
        jumps = set()
        h = 0.0

    t, y = t0, y0
    n_acc = n_rej = 0
    stop_i = 0
    max_h = controller.dt_max

    def fail(status: Status, msg: str) -> LoopResult:
        result = LoopResult(
            ys, status, counter.calls - nfe0, n_acc, n_rej, t, dense_steps, message=msg
        )
        if cfg.raise_on_failure:
            raise SolverError(msg, partial=result, t=t)
        return result

    while next_out < n_out or cfg.event_fn is not None:
        if stop_i >= len(stops):
            break
        if n_acc + n_rej >= cfg.max_steps:
            return fail(
                Status.MAX_STEPS,
                f"max_num_steps = {cfg.max_steps} exhausted at t = {_fmt(t)} before reaching "
                f"t = {_fmt(out_times[min(next_out, n_out - 1)])}; partial results are attached "
                "(SolverError.partial). Raise max_num_steps or loosen the tolerances.",
            )
        target = stops[stop_i]
        if method.adaptive:
            h = min(h, max_h)
            landing = t + h >= target or (target - t - h) < 1e-12 * max(abs(target), 1.0)
            h_try = target - t if landing else h
        else:
            landing, h_try = True, target - t
        res = method.step(f, t, y, h_try, state)

        if method.adaptive:
            scale = float(controller.error_norm(res.error, y, res.y))
            accept, h_next, cstate = controller.adapt(scale, h_try, cstate)
            if not accept:
                n_rej += 1
                if h_next < max(controller.dt_min, _EPS_FACTOR * 2.2e-16 * max(abs(t), 1e-300)):
                    why = (
                        "non-finite values (NaN/inf) in the state or error estimate"
                        if not math.isfinite(scale)
                        else "step size underflow"
                    )
                    status = Status.NONFINITE if not math.isfinite(scale) else Status.DT_UNDERFLOW
                    return fail(
                        status,
                        f"{why} at t = {_fmt(t)}: the step size fell to {h_next:.3g} "
                        f"(min_step = {controller.dt_min:g}); partial results are attached.",
                    )
                h = h_next
                continue
            h_next = max(h_next, controller.dt_min)
        t_new = target if landing else t + h_try

        # outputs inside (t, t_new]
        while next_out < n_out and out_times[next_out] <= t_new:
            te = out_times[next_out]
            if te == t_new:
                ys.append(res.y)
            else:
                ys.append(method.interpolate(res.dense, (te - t) / h_try))
            next_out += 1
        if dense_steps is not None:
            dense_steps.append(t, h_try, res.dense)

        if cfg.event_fn is not None:
            with torch.no_grad():
                sign1 = torch.sign(cfg.event_fn(t_new, res.y))
            if bool((sign1 != event_sign0).any()):
                te, ye = _locate_event(cfg, method, res.dense, t, h_try, event_sign0)
                n_acc += 1
                result = LoopResult(
                    ys, Status.EVENT, counter.calls - nfe0, n_acc, n_rej, te, dense_steps
                )
                result.event_t, result.event_y = te, ye
                return result

        n_acc += 1
        t, y, state = t_new, res.y, res.state
        if method.adaptive:
            h = h_next
        if landing:
            if target in jumps:
                state = method.reset_after_discontinuity(state)
            stop_i += 1

    if not method.adaptive:
        # Fixed steps do not look at the error, so check the outputs once at the end.
        for i, yi in enumerate(ys):
            if not torch.isfinite(yi).all():
                ys = ys[:i]
                return fail(
                    Status.NONFINITE,
                    f"non-finite values (NaN/inf) in the state at output t = {_fmt(out_times[i])}; "
                    "partial results are attached.",
                )
    if cfg.event_fn is not None:
        return fail(Status.MAX_STEPS, "the event did not fire before the end of the time span")
    return LoopResult(ys, Status.SUCCESS, counter.calls - nfe0, n_acc, n_rej, t, dense_steps)


def _fmt(t: float) -> str:
    return f"{t:.6g}"


def _fixed_grid(t0: float, t_end: float, out_times: list[float], cfg: LoopConfig) -> list[float]:
    """The step grid of a fixed-step method (torchdiffeq's construction)."""
    if cfg.grid is not None:
        grid = cfg.grid.tolist()
        if grid[0] != t0 or grid[-1] != t_end:
            raise InvalidArgumentError("grid_constructor must return a grid from t[0] to t[-1]")
        return grid
    if cfg.step_size is None:
        return out_times
    step = float(cfg.step_size)
    if not step > 0:
        raise InvalidArgumentError(f"step_size must be positive, got {step}")
    n = math.ceil((t_end - t0) / step + 1)
    grid = [t0 + i * step for i in range(n)]
    grid[-1] = t_end
    if len(grid) > 1 and grid[-2] >= t_end:
        grid.pop(-2)
    return grid


class _EndlessGrid(Sequence):
    """Grid points ``t0 + i * step`` for ``i = 1, 2, ...`` (fixed steps until an event fires)."""

    def __init__(self, t0: float, step: float):
        if not step > 0:
            raise InvalidArgumentError(f"step_size must be positive, got {step}")
        self.t0, self.step = t0, step

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, i):
        return self.t0 + (i + 1) * self.step


def _locate_event(cfg, method, dense, t: float, h: float, sign0) -> tuple[float, torch.Tensor]:
    """Bisect the event function on the step's interpolant down to ``event_tol``."""
    lo, hi = 0.0, 1.0
    tol = cfg.event_tol if cfg.event_tol is not None else 4 * 2.2e-16 * max(abs(t) + abs(h), 1.0)
    with torch.no_grad():
        while (hi - lo) * h > tol:
            mid = 0.5 * (lo + hi)
            s = torch.sign(cfg.event_fn(t + mid * h, method.interpolate(dense, mid)))
            if bool((s == sign0).all()):
                lo = mid
            else:
                hi = mid
    theta = 0.5 * (lo + hi)
    return t + theta * h, method.interpolate(dense, theta)
