"""SDE steps in the shared solve loop (:func:`kutta.loop.integrate_shared`).

The loop that solves ODEs solves SDEs too: :class:`SDEStep` presents one of kutta.sde's
one-step methods (``step(t0, t1, y, extra)``, Brownian increments taken inside from the
Brownian motion) as a :class:`~kutta.solvers.base.Method`. Steps end exactly on every output time
(no interpolation: an SDE solution is too rough between step ends):

- fixed steps of ``dt`` on :func:`step_grid` (a constant controller);
- adaptive steps by step doubling: one step against two half steps on the same Brownian path,
  whose queries are consistent, so rejected steps do not bias the path.

:func:`integrate` is this loop with torchsde's step-doubling rules (:class:`StepDoublingController`),
for ``sdeint`` and the adjoints; ``kutta.solve`` uses the same steps with kutta's controllers.

Example:
    >>> ys, extra = integrate(method, y0, [0.0, 0.5, 1.0], extra0, dt=0.01)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import Any

import torch

from kutta._inputs import Counter
from kutta.controllers import Controller
from kutta.errors import SolverError
from kutta.loop import LoopConfig, integrate_shared
from kutta.solvers.base import Method, StepResult
from kutta.status import Status


class SDEStep(Method):
    """A kutta.sde one-step method (``stepper``) as a method of the shared loop.

    With ``doubling`` the step returns the two half steps and, as its error estimate, their
    difference from the full step; the controller's exponent is then
    ``1 / (error_order + 1) = 1 / (strong order + 1/2)`` (torchsde's rule).

    Example:
        >>> from kutta.sde.methods import Euler
        >>> step = SDEStep(Euler(view, bm, {}), doubling=False)  # doctest: +SKIP
    """

    def __init__(self, stepper: Any, doubling: bool, extra0: tuple | None = None):
        self.stepper, self.doubling, self.extra0 = stepper, doubling, extra0
        self.name = stepper.name
        self.strong_order = stepper.strong_order
        self.error_order = stepper.strong_order - 0.5 if doubling else None
        self.final_state: Any = extra0

    def init(self, f, t0, y0):
        self.final_state = self.stepper.init(t0, y0) if self.extra0 is None else self.extra0
        return self.final_state

    def step(self, f, t, y, h, state) -> StepResult:
        stepper = self.stepper
        t_end = t + h
        y_full, extra = stepper.step(t, t_end, y, state)
        if not self.doubling:
            self.final_state = extra
            return StepResult(y_full, None, (y, y_full), extra)
        t_mid = t + 0.5 * h
        y_mid, extra_mid = stepper.step(t, t_mid, y, state)
        y_two, extra_two = stepper.step(t_mid, t_end, y_mid, extra_mid)
        with torch.no_grad():
            error = y_two - y_full
        # A solve ends with an accepted step, so the last step's state is the final one
        # (sdeint's ``extra``); the loop itself returns states, not method states.
        self.final_state = extra_two
        return StepResult(y_two, error, (y, y_two), extra_two)


@dataclasses.dataclass
class StepDoublingController(Controller):
    """torchsde's step-doubling control: accept if the error ratio is <= 1 or ``h <= dt_min``;
    grow accepted steps by at most 1.4 (not after landing on an output time), shrink rejected
    ones to between 0.2 and 0.9 of their size; never below ``dt_min``.

    The error ratio is the RMS of ``(full - halves) / (rtol * max(|full|, |halves|) + atol)``.

    Example:
        >>> import torch
        >>> ctl = StepDoublingController(rtol=1e-3, atol=1e-3, dt_min=1e-5)
        >>> ctl = ctl.bind(0, torch.float64, torch.device("cpu"), False)
        >>> accept, h_next, _ = ctl.adapt(0.5, 0.1, ctl.init_state(0.1))
        >>> accept, round(h_next, 12)
        (True, 0.14)
    """

    @torch.no_grad()
    def error_norm(self, error: torch.Tensor, y0: torch.Tensor, y1: torch.Tensor) -> Any:
        full = y1 - error
        scale = torch.maximum(full.abs(), y1.abs()).mul_(self.rtol).add_(self.atol)
        return (error / scale).pow(2).mean().sqrt()

    def init_state(self, h0):
        return h0  # the step proposed before the loop shortened it to land on an output time

    def adapt(self, scale, h, state):
        if not math.isfinite(scale):
            return False, 0.0, state  # a zero step fails at once with a non-finite status
        accept = scale <= 1.0 or h <= self.dt_min
        factor = 0.9 * max(scale, 1e-10) ** -self._exponent
        if not accept:
            h_next = h * max(0.2, min(0.9, factor))
        elif h < state:  # landed on an output time: resume with the step proposed before
            h_next = state
        else:
            h_next = h * min(1.4, max(1.0, factor))
        h_next = max(h_next, self.dt_min)
        return accept, h_next, h_next


@dataclasses.dataclass
class LoopStats:
    """Counts of one solve: accepted and rejected steps (step doubling counts each attempt once)."""

    accepted: int = 0
    rejected: int = 0


class PrefetchedBrownian:
    """A Brownian motion queried ahead, in chunks, over intervals known in advance.

    A fixed-step solve queries its Brownian motion once per step, over consecutive grid
    intervals. This wrapper makes exactly those queries, in the same order (a
    ``BrownianInterval``'s values depend on the order in which its tree is split, so the order
    is kept and the values are the same bit for bit), ``chunk`` at a time ahead of the steps
    that use them. Alternating each seeded draw with a step's field evaluations is slower on
    CPU (caches): about 15% of an Euler–Maruyama solve of bench_sde's neural SDE.

    ``intervals`` are the ``(ta, tb)`` the steps will ask for, in order, and ``flags`` their
    keyword arguments (e.g. ``{"return_U": True}``). Any other query goes straight to the
    Brownian motion (only a field that queries the same Brownian motion itself would make one).

    Example:
        >>> from kutta.sde.brownian import BrownianInterval
        >>> bm = BrownianInterval(0.0, 1.0, size=(2,), entropy=0)
        >>> ahead = PrefetchedBrownian(bm, [(0.0, 0.5), (0.5, 1.0)], {})
        >>> torch.equal(ahead(0.0, 0.5), BrownianInterval(0.0, 1.0, size=(2,), entropy=0)(0.0, 0.5))
        True
    """

    def __init__(self, bm: Any, intervals: list[tuple[float, float]], flags: dict, chunk: int = 64):
        self.bm, self.intervals, self.flags, self.chunk = bm, intervals, flags, chunk
        self.position = 0  # index of the interval the next step asks for
        self.ahead: list = []  # the values for intervals[position:position + len(ahead)]

    def __call__(self, ta, tb=None, **flags):
        position = self.position
        if (
            position < len(self.intervals)
            and (ta, tb) == self.intervals[position]
            and flags == self.flags
        ):
            if not self.ahead:
                stop = min(position + self.chunk, len(self.intervals))
                self.ahead = [self.bm(a, b, **flags) for a, b in self.intervals[position:stop]]
                self.ahead.reverse()  # pop() from the end
            self.position += 1
            return self.ahead.pop()
        return self.bm(ta, tb, **flags)

    def __getattr__(self, name):
        return getattr(self.bm, name)


@contextlib.contextmanager
def prefetched_increments(stepper: Any, grid: list[float], intervals: list | None = None):
    """While solving on the fixed ``grid``, ``stepper.bm`` answers its steps' queries from a
    :class:`PrefetchedBrownian` (for methods that declare their one query per step).
    ``intervals``: the steps' ``(t0, t1)`` when they are not the grid's consecutive points."""
    flags = stepper.brownian_query
    if flags is None or len(grid) < 3:
        yield
        return
    bm = stepper.bm
    if intervals is None:
        intervals = list(zip(grid[:-1], grid[1:]))
    stepper.bm = PrefetchedBrownian(bm, intervals, flags)
    try:
        yield
    finally:
        stepper.bm = bm


def _no_field(t, y):
    raise AssertionError("SDE steps evaluate the SDE themselves")


def integrate(
    method,
    y0: torch.Tensor,
    ts: list[float],
    extra0: tuple,
    dt: float,
    adaptive: bool = False,
    rtol: float = 1e-5,
    atol: float = 1e-4,
    dt_min: float = 1e-5,
    stats: LoopStats | None = None,
):
    """States at the times ``ts`` (increasing floats, ts[0] is y0's time) and the final extra state.

    ``method`` is a kutta.sde one-step method. Fixed steps of ``dt`` end exactly on every output
    time; adaptive ones follow :class:`StepDoublingController`. Non-finite states raise a
    :class:`~kutta.SolverError` carrying the outputs computed before them.
    """
    if not adaptive:
        ys, extra, steps = _fixed_steps(method, y0, ts, extra0, dt)
        if stats is not None:
            stats.accepted += steps
        return ys, extra
    step = SDEStep(method, adaptive, extra0)
    controller = StepDoublingController(rtol=rtol, atol=atol, dt_min=dt_min)
    cfg = LoopConfig(first_step=dt, step_t=ts[1:-1], raise_on_failure=False)
    controller = controller.bind(step.error_order or 0, y0.dtype, y0.device, False)
    times = torch.tensor(ts, dtype=torch.float64)
    result = integrate_shared(_no_field, y0, times, step, controller, cfg, Counter())
    if stats is not None:
        stats.accepted += result.n_accepted
        stats.rejected += result.n_rejected
    if result.status != Status.SUCCESS:
        raise SolverError(result.message, partial=torch.stack(result.ys), t=result.t_final)
    return torch.stack(result.ys), step.final_state


def _fixed_steps(method, y0: torch.Tensor, ts: list[float], extra: tuple, dt: float):
    """Fixed steps of ``dt`` on :func:`step_grid`: the steps the shared loop would take with a
    constant controller (each from ``t`` to ``t + (t_next - t)``, as it computes them), without
    its per-step bookkeeping, which is about a tenth of a compiled Euler step of bench_sde's
    neural SDE. Returns the outputs, the final extra state and the number of steps."""
    grid, out_steps = step_grid(ts, dt)
    intervals = [(t, t + (t_next - t)) for t, t_next in zip(grid[:-1], grid[1:])]
    ys = [y0]
    y = y0
    with prefetched_increments(method, grid, intervals):
        for first, last in zip(out_steps[:-1], out_steps[1:]):
            y, extra = method.steps(intervals[first:last], y, extra)
            ys.append(y)
    # Fixed steps do not look at the error, so the outputs are checked once at the end.
    for i, yi in enumerate(ys):
        if not torch.isfinite(yi).all():
            raise SolverError(
                f"non-finite values (NaN/inf) in the state at output t = {ts[i]:.6g}; "
                "partial results are attached.",
                partial=torch.stack(ys[:i]),
                t=ts[-1],
            )
    return torch.stack(ys), extra, len(intervals)


def step_grid(ts: list[float], dt: float) -> tuple[list[float], list[int]]:
    """The times of fixed steps of ``dt`` that end exactly on every output time in ``ts``, and
    the index of each output time in that grid (the steps :func:`integrate` takes)."""
    times = [ts[0]]
    out_steps = [0]
    for out_t in ts[1:]:
        t = times[-1]
        while t < out_t:
            next_t = t + dt
            if next_t >= out_t or out_t - next_t < 1e-9 * dt:
                next_t = out_t
            times.append(next_t)
            t = next_t
        out_steps.append(len(times) - 1)
    return times, out_steps
