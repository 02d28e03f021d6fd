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
    # torchdiffeq counts max_num_steps per output interval (steps since the last output time
    # was passed), not in total
    max_steps_per_output: bool = False
    first_step: float | None = None
    step_size: float | None = None  # fixed-step methods: the grid spacing (None: output times)
    grid: torch.Tensor | None = None  # fixed-step methods: an explicit grid (overrides step_size)
    step_t: Sequence[float] = ()
    jump_t: Sequence[float] = ()
    dense: bool = False
    event_fn: Callable | None = None  # g(t, y) -> tensor, watched for sign changes
    event_terminal: bool = True  # stop at the first sign change, or record them all
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
    event_t: float | None = None  # the terminal event, if one fired
    event_y: torch.Tensor | None = None
    events: list[tuple[float, torch.Tensor]] = dataclasses.field(default_factory=list)
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
            # The error estimate's order, as Hairer's DOPRI5 code (IORD) and torchdiffeq use.
            # Methods whose state is not just f(t0, y0) (e.g. implicit ones) get one more evaluation.
            f0 = state if isinstance(state, torch.Tensor) else f(t0, y0)
            h = controller.initial(f, t0, y0, f0, method.error_order)
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
        state = method.init(f, t0, y0)
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
    after_jump = None  # set after landing on a jump: sample f on its far side until a step is taken
    budget_start = 0  # steps taken before the current budget (see max_steps_per_output)
    max_h = controller.dt_max

    def fail(status: Status, msg: str) -> LoopResult:
        result = LoopResult(
            ys, status, counter.calls - nfe0, n_acc, n_rej, t, dense_steps, message=msg
        )
        if cfg.raise_on_failure:
            raise SolverError(msg, partial=result, t=t)
        return result

    terminal_event = cfg.event_fn is not None and cfg.event_terminal
    events: list[tuple[float, torch.Tensor]] = []
    while next_out < n_out or terminal_event:
        if stop_i >= len(stops):
            break
        if n_acc + n_rej - budget_start >= cfg.max_steps:
            per_output = " (per output interval)" if cfg.max_steps_per_output else ""
            return fail(
                Status.MAX_STEPS,
                f"max_num_steps = {cfg.max_steps}{per_output} exhausted at t = {_fmt(t)} "
                "before reaching "
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
        step_f = f
        if method.adaptive and landing and target in jumps:
            step_f = _clamp_time(f, hi=math.nextafter(target, -math.inf))
        elif after_jump is not None:
            step_f = _clamp_time(f, lo=after_jump)
        res = method.step(step_f, t, y, h_try, state)

        if method.adaptive:
            if not controller.uses_error:
                scale = 0.0
            elif res.error_norm is not None:
                scale = float(res.error_norm)
            else:
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
            if res.h_next is not None:
                h_next = res.h_next
            h_next = max(h_next, controller.dt_min)
        t_new = target if landing else t + h_try

        # outputs inside (t, t_new]
        first_out = next_out
        while next_out < n_out and out_times[next_out] <= t_new:
            next_out += 1
        if next_out > first_out:
            ys.extend(_outputs_in_step(method, res, t, h_try, t_new, out_times[first_out:next_out]))
            if cfg.max_steps_per_output:
                budget_start = n_acc + n_rej + 1  # this step counts towards the interval it ends
        if dense_steps is not None:
            dense_steps.append(t, h_try, res.dense)

        if cfg.event_fn is not None:
            with torch.no_grad():
                sign1 = torch.sign(cfg.event_fn(t_new, res.y))
            if bool((sign1 != event_sign0).any()):
                te, ye = _locate_event(cfg, method, res.dense, t, h_try, event_sign0)
                events.append((te, ye))
                event_sign0 = sign1
            if events and terminal_event:
                n_acc += 1
                result = LoopResult(
                    ys, Status.EVENT, counter.calls - nfe0, n_acc, n_rej, te, dense_steps
                )
                result.event_t, result.event_y = te, ye
                result.events = events
                return result

        n_acc += 1
        t, y, state = t_new, res.y, res.state
        after_jump = None
        if method.adaptive:
            h = h_next
        if landing:
            if target in jumps:
                state = method.reset_after_discontinuity(state)
                after_jump = math.nextafter(target, math.inf)
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
    if terminal_event:
        return fail(Status.MAX_STEPS, "the event did not fire before the end of the time span")
    result = LoopResult(ys, Status.SUCCESS, counter.calls - nfe0, n_acc, n_rej, t, dense_steps)
    result.events = events
    return result


def _outputs_in_step(method, res, t: float, h: float, t_new: float, out_times: list[float]):
    """The states at ``out_times`` (increasing, inside ``(t, t_new]``) of one accepted step."""
    ends_here = out_times[-1] == t_new
    inside = out_times[:-1] if ends_here else out_times
    ys = []
    if inside:
        # one operation for all of them: a dense output grid can put thousands in one step
        ys.extend(method.interpolate_many(res.dense, [(te - t) / h for te in inside]).unbind(0))
    if ends_here:
        ys.append(res.y)
    return ys


def _clamp_time(f: Callable, lo: float = -math.inf, hi: float = math.inf) -> Callable:
    """``f`` with its (host float) time clamped to ``[lo, hi]``.

    A step that ends on a jump of ``f`` must see ``f`` from before the jump, even at ``t + h``;
    the first step after it must see ``f`` from after, even at its start (torchdiffeq's perturb).
    """

    def clamped(tt: float, y: torch.Tensor) -> torch.Tensor:
        return f(min(max(tt, lo), hi), y)

    return clamped


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


# ------------------------------------------------------------------------------------------
# Per-sample stepping
# ------------------------------------------------------------------------------------------


def _tree_map(fn: Callable, tree: Any, *rest: Any) -> Any:
    if tree is None:
        return None
    if isinstance(tree, torch.Tensor):
        return fn(tree, *rest)
    return type(tree)(_tree_map(fn, *parts) for parts in zip(tree, *rest))


def _repeat(value: Any, tree: Any) -> Any:
    """A tree shaped like ``tree`` with ``value`` at every leaf (to pass per-leaf arguments)."""
    if tree is None or isinstance(tree, torch.Tensor):
        return value
    return type(tree)(_repeat(value, part) for part in tree)


def _tree_where(mask: torch.Tensor, new: Any, old: Any) -> Any:
    """Per-sample merge: take ``new`` where ``mask`` (shape ``(A,)``), else ``old``."""
    if new is None or old is None:
        # A method state of None means "nothing cached"; dropping the cache is always safe.
        return None

    def pick(n: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
        m = mask.view(-1, *([1] * (n.dim() - 1)))
        return torch.where(m, n, o)

    return _tree_map(pick, new, old)


@dataclasses.dataclass
class PerSampleResult:
    ys: torch.Tensor  # (T, B, N); NaN where a sample never reached an output time
    status: torch.Tensor  # (B,) int
    nfe: torch.Tensor  # (B,) long
    n_accepted: torch.Tensor
    n_rejected: torch.Tensor
    t_final: torch.Tensor  # (B,) forward time reached


def integrate_per_sample(
    f: Callable,
    y0: torch.Tensor,
    times: torch.Tensor,
    method: Method,
    controller: Controller,
    cfg: LoopConfig,
    counter: Any,
) -> PerSampleResult:
    """Integrate every sample with its own step size, acceptance and (optionally) output times.

    ``y0`` is ``(B, N)``; ``times`` is ``(T,)`` or ``(B, T)`` increasing forward times on the
    state's device. A sample that finished is dropped from the working set, so it costs nothing
    more; and since every operation is per row, a sample's result never depends on the others.
    """
    B, N = y0.shape
    device = y0.device
    tdtype = times.dtype
    times_w = times.expand(B, -1) if times.dim() == 1 else times
    T = times_w.shape[1]
    if T < 2:
        raise InvalidArgumentError("per-sample solves need at least two output times")
    idx = torch.arange(B, device=device)
    t = times_w[:, 0].clone()
    t_end = times_w[:, -1]
    y = y0
    next_out = torch.ones(B, dtype=torch.long, device=device)
    dummy = B * T  # a scratch slot that absorbs writes from samples without an output this step
    out_index = [idx * T]
    out_values = [y0]
    status = torch.full((B,), int(Status.SUCCESS), dtype=torch.long, device=device)
    nfe = torch.zeros(B, dtype=torch.long, device=device)
    n_acc = torch.zeros_like(nfe)
    n_rej = torch.zeros_like(nfe)
    t_final = t.clone()

    calls = counter.calls
    state = method.init(f, t, y)
    if method.adaptive:
        if cfg.first_step is not None:
            h = torch.full((B,), float(cfg.first_step), dtype=tdtype, device=device)
        else:
            f0 = state if isinstance(state, torch.Tensor) else f(t, y)
            h = controller.initial(f, t, y, f0, method.error_order).to(tdtype)
    else:
        if cfg.step_size is None:
            raise InvalidArgumentError(
                "fixed-step methods in per_sample mode need a step size (step_size=...)"
            )
        h = torch.full((B,), float(cfg.step_size), dtype=tdtype, device=device)
    cstate = controller.init_state(h)
    eps = torch.finfo(tdtype).eps
    iteration = 0

    # Every running sample takes part in every evaluation and every step, so its counts are
    # the loop's counts at the moment it finishes; only acceptances differ between samples.
    calls0 = calls
    accepted_w = torch.zeros(B, dtype=torch.long, device=device)

    def retire(which: torch.Tensor, codes: Any) -> None:
        rows = idx[which]
        status[rows] = codes
        t_final[rows] = t[which]
        nfe[rows] = counter.calls - calls0
        n_acc[rows] = accepted_w[which]
        n_rej[rows] = iteration - accepted_w[which]

    while idx.numel() > 0:
        if iteration >= cfg.max_steps:
            retire(torch.ones_like(idx, dtype=torch.bool), int(Status.MAX_STEPS))
            break
        iteration += 1
        h = h.clamp(max=controller.dt_max)
        landing = t + h >= t_end
        h_try = torch.where(landing, t_end - t, h)
        res = method.step(f, t, y, h_try.to(y.dtype)[:, None], state)
        if method.adaptive:
            scale = (
                controller.error_norm(res.error, y, res.y)
                if controller.uses_error
                else torch.zeros_like(h)
            )
            accept, h_next, cstate = controller.adapt(scale, h_try, cstate)
            if res.h_next is not None:
                h_next = torch.where(accept, res.h_next.to(h_next.dtype), h_next)
            h_next = h_next.clamp(min=controller.dt_min)
        else:
            accept = torch.ones_like(landing)
            h_next = h
            scale = torch.zeros_like(h)
        t_new = torch.where(landing, t_end, t + h_try)
        accepted_w += accept

        # Outputs inside (t, t_new] of accepted samples (possibly several per step).
        while True:
            pos = next_out.clamp(max=T - 1)
            t_out = times_w.gather(1, pos[:, None])[:, 0]
            emit = accept & (next_out < T) & (t_out <= t_new)
            if not bool(emit.any()):
                break
            theta = ((t_out - t) / h_try).clamp(0.0, 1.0).to(y.dtype)[:, None]
            at_end = (t_out == t_new)[:, None]
            value = torch.where(at_end, res.y, method.interpolate(res.dense, theta))
            out_index.append(torch.where(emit, idx * T + pos, torch.full_like(pos, dummy)))
            out_values.append(value)
            next_out = next_out + emit.long()

        y = torch.where(accept[:, None], res.y, y)
        t = torch.where(accept, t_new, t)
        state = _tree_where(accept, res.state, state) if method.adaptive else res.state
        h = h_next

        finite = torch.isfinite(scale)
        if not method.adaptive:
            finite = torch.isfinite(res.y).all(dim=1)
        # A NaN step size (from NaN in f at the start) compares False with everything.
        too_small = (~accept) & (
            (h < _EPS_FACTOR * eps * t.abs()) | (h < controller.dt_min) | ~torch.isfinite(h)
        )
        failed = too_small | ~finite if not method.adaptive else too_small
        done = accept & landing & (next_out >= T)
        finished = done | failed
        if bool(finished.any()):
            code = torch.where(
                failed,
                torch.where(finite, int(Status.DT_UNDERFLOW), int(Status.NONFINITE)),
                int(Status.SUCCESS),
            )
            retire(finished, code[finished])
            keep = ~finished
            idx, t, h, y, t_end = idx[keep], t[keep], h[keep], y[keep], t_end[keep]
            accepted_w = accepted_w[keep]
            next_out, times_w = next_out[keep], times_w[keep]
            state = _tree_map(torch.Tensor.__getitem__, state, _repeat(keep, state))
            cstate = _tree_map(torch.Tensor.__getitem__, cstate, _repeat(keep, cstate))

    flat = y0.new_full((B * T + 1, N), math.nan)
    flat = flat.index_copy(0, torch.cat(out_index), torch.cat(out_values))
    ys = flat[:-1].view(B, T, N).transpose(0, 1)
    return PerSampleResult(ys, status, nfe, n_acc, n_rej, t_final)
