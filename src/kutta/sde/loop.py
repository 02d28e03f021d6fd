"""The SDE time loop: fixed steps, or step doubling (torchsde's adaptive scheme).

This is the seam to the shared engine: it needs only a ``method`` with ``step(t0, t1, y, extra)``
and returns the states at the output times, so it can be replaced by the kutta.solve loop.
Steps end exactly on every output time (no interpolation), so fixed-step solves with output
times on the dt grid take the same steps whatever ``ts`` is.

Example:
    >>> ys, extra = integrate(method, y0, [0.0, 0.5, 1.0], extra0, dt=0.01)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from kutta.errors import SolverError


@dataclass
class LoopStats:
    """Counts of one solve: accepted and rejected steps (step doubling counts each attempt once)."""

    accepted: int = 0
    rejected: int = 0
    times: list[float] = field(default_factory=list)


def _error_ratio(full: torch.Tensor, halves: torch.Tensor, rtol: float, atol: float) -> float:
    scale = rtol * torch.maximum(full.abs(), halves.abs()) + atol
    ratio = ((full - halves) / scale).pow(2).mean().sqrt()
    return float(ratio)


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

    Adaptive stepping compares one step with two half steps on the same Brownian path (queries
    of a BrownianInterval are consistent, so rejected steps don't bias the path); steps shorter
    than ``dt_min`` are not taken, a step of dt_min is accepted instead.
    """
    stats = stats if stats is not None else LoopStats()
    order = getattr(method, "strong_order", 0.5)
    ys = [y0]
    t, y, extra = ts[0], y0, extra0
    step = dt
    for out_t in ts[1:]:
        while t < out_t:
            next_t = t + step
            # Land exactly on output times; absorb slivers left by floating-point accumulation.
            if next_t >= out_t or out_t - next_t < 1e-9 * step:
                next_t = out_t
            if not adaptive:
                y, extra = method.step(t, next_t, y, extra)
                t = next_t
                stats.accepted += 1
                continue
            h = next_t - t
            y_full, _ = method.step(t, next_t, y, extra)
            mid_t = t + 0.5 * h
            y_mid, extra_mid = method.step(t, mid_t, y, extra)
            y_two, extra_two = method.step(mid_t, next_t, y_mid, extra_mid)
            with torch.no_grad():
                ratio = _error_ratio(y_full, y_two, rtol, atol)
            if not math.isfinite(ratio):
                raise SolverError(f"non-finite state at t={t}", partial=torch.stack(ys), t=t)
            accept = ratio <= 1.0 or h <= dt_min
            factor = 0.9 * max(ratio, 1e-10) ** (-1.0 / (order + 0.5))
            if accept:
                y, extra, t = y_two, extra_two, next_t
                stats.accepted += 1
                stats.times.append(t)
                step = h * min(1.4, max(1.0, factor)) if next_t != out_t else max(step, h)
            else:
                stats.rejected += 1
                step = h * max(0.2, min(0.9, factor))
            step = max(step, dt_min)
        ys.append(y)
    return torch.stack(ys), extra


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
