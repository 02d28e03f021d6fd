"""Backprop through the solver with binomial checkpointing (Griewank & Walther's revolve).

The forward solve runs once without a graph and records only the accepted steps' times and
sizes (two host floats per step). The backward pass replays steps from a few stored states and
differentiates one step at a time, so the gradient is exactly Backprop's (the derivative of the
discrete solve) while memory holds ``max_checkpoints`` states and one step's graph.

With ``c`` checkpoints and each step replayed at most ``r`` times, ``binom(c + r, c)`` steps can
be reversed, and splitting a segment after ``binom(c + r - 1, c)`` steps achieves it: the head is
reversed later with ``c`` slots and one replay fewer, the tail now with ``c - 1`` slots.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from array import array
from typing import Any

import torch

from ..errors import InvalidArgumentError
from ..loop import LoopResult
from ..solvers.base import Method
from ..status import Status
from .adjoint import check_shared_call
from .base import LoopCall, find_params


class _StepRecorder(Method):
    """Wraps a method and records every attempted step ``(t, h)`` and every state reset."""

    def __init__(self, inner: Method):
        self.inner = inner
        self.name, self.order, self.error_order = inner.name, inner.order, inner.error_order
        self.starts = array("d")
        self.sizes = array("d")
        self.resets: set[int] = set()

    def init(self, f, t0, y0):
        return self.inner.init(f, t0, y0)

    def step(self, f, t, y, h, state):
        self.starts.append(t)
        self.sizes.append(h)
        return self.inner.step(f, t, y, h, state)

    def interpolate(self, dense, theta):
        return self.inner.interpolate(dense, theta)

    def interpolate_many(self, dense, thetas):
        return self.inner.interpolate_many(dense, thetas)

    def reset_after_discontinuity(self, state):
        self.resets.add(len(self.starts) - 1)
        return self.inner.reset_after_discontinuity(state)


@dataclasses.dataclass
class _Plan:
    """The accepted steps of a forward solve and where the outputs fall in them."""

    call: LoopCall
    forward: LoopResult
    starts: list[float]
    sizes: list[float]
    resets: list[bool]  # the method state is dropped after this step (a jump_t)
    # per step: (output index, theta) for outputs inside it; theta None = at the step's end
    outputs: list[list[tuple[int, float | None]]]
    max_checkpoints: int | None

    @classmethod
    def record(cls, call: LoopCall, rec: _StepRecorder, forward: LoopResult, max_checkpoints):
        accepted = [
            j
            for j in range(len(rec.starts))
            if j == len(rec.starts) - 1 or rec.starts[j + 1] != rec.starts[j]
        ]
        starts = [rec.starts[j] for j in accepted]
        sizes = [rec.sizes[j] for j in accepted]
        ends = starts[1:] + [forward.t_final]
        outputs: list[list[tuple[int, float | None]]] = [[] for _ in accepted]
        for i, te in enumerate(call.times.tolist()[1:], start=1):
            # The loop emits an output in the first step whose end reaches it.
            k = bisect.bisect_left(ends, te)
            theta = None if te == ends[k] else (te - starts[k]) / sizes[k]
            outputs[k].append((i, theta))
        resets = [j in rec.resets for j in accepted]
        return cls(call, forward, starts, sizes, resets, outputs, max_checkpoints)

    def initial_state(self, y0: torch.Tensor) -> Any:
        call = self.call
        return call.method.init(call.f, self.starts[0], y0) if call.method.adaptive else None

    def step(self, k: int, y: torch.Tensor, state: Any):
        method = self.call.method
        res = method.step(self.call.f, self.starts[k], y, self.sizes[k], state)
        state = method.reset_after_discontinuity(res.state) if self.resets[k] else res.state
        return res, state

    def advance(self, i: int, j: int, y: torch.Tensor, state: Any):
        """The state after steps ``i .. j-1``, without a graph."""
        with torch.no_grad():
            for k in range(i, j):
                res, state = self.step(k, y, state)
                y = res.y
        return y, state

    def outputs_of_step(self, k: int, res) -> list[tuple[int, torch.Tensor]]:
        method = self.call.method
        return [
            (i, res.y if theta is None else method.interpolate(res.dense, theta))
            for i, theta in self.outputs[k]
        ]


def _detached(x: Any) -> Any:
    if x is None:
        return None
    if not torch.is_tensor(x):
        raise InvalidArgumentError(
            "kutta.RecursiveCheckpoint needs a method whose step state is a tensor or None, "
            f"got {type(x).__name__}; use kutta.Backprop with this method"
        )
    return x.detach().requires_grad_(True)


class _Checkpointed(torch.autograd.Function):
    @staticmethod
    def forward(ctx, plan: _Plan, y0, *params):
        ctx.plan = plan
        ctx.save_for_backward(y0, *params)
        return torch.stack(plan.forward.ys)

    @staticmethod
    def backward(ctx, grad_ys):
        plan: _Plan = ctx.plan
        y0, *params = ctx.saved_tensors
        params = tuple(params)
        if torch.is_grad_enabled():
            return (None, *_replay_with_graph(plan, y0, params, grad_ys))
        param_grads = [torch.zeros_like(p) for p in params]

        def step_vjp(k, y_k, s_k, cot):
            y_bar, s_bar = cot
            with torch.enable_grad():
                y, s = _detached(y_k), _detached(s_k)
                res, s_next = plan.step(k, y, s)
                outs, gouts = [res.y], [y_bar]
                if s_next is not None and s_bar is not None:
                    outs.append(s_next)
                    gouts.append(s_bar)
                for i, value in plan.outputs_of_step(k, res):
                    outs.append(value)
                    gouts.append(grad_ys[i])
                inputs = (y,) + (() if s is None else (s,)) + params
                grads = torch.autograd.grad(outs, inputs, gouts, allow_unused=True)
            _accumulate(param_grads, grads[len(inputs) - len(params) :])
            y_grad = torch.zeros_like(y_k) if grads[0] is None else grads[0]
            return y_grad, (None if s is None else grads[1])

        def reverse(i, j, y_i, s_i, slots, cot):
            n = j - i
            if n == 1:
                return step_vjp(i, y_i, s_i, cot)
            if slots == 0:
                for k in range(j - 1, i - 1, -1):
                    cot = step_vjp(k, *plan.advance(i, k, y_i, s_i), cot)
                return cot
            r = 1
            while math.comb(slots + r, slots) < n:
                r += 1
            m = i + min(math.comb(slots + r - 1, slots), n - 1)
            y_m, s_m = plan.advance(i, m, y_i, s_i)
            cot = reverse(m, j, y_m, s_m, slots - 1, cot)
            del y_m, s_m
            return reverse(i, m, y_i, s_i, slots, cot)

        n_steps = len(plan.starts)
        y0d = y0.detach()
        s0 = plan.initial_state(y0d)
        slots = plan.max_checkpoints or max(1, math.ceil(math.log2(max(n_steps, 2))))
        cot = (torch.zeros_like(y0d), None)
        if n_steps:
            cot = reverse(0, n_steps, y0d, s0, slots, cot)
        y_bar, s_bar = cot
        y_bar = y_bar + grad_ys[0]
        if s_bar is not None:
            with torch.enable_grad():
                y = y0d.requires_grad_(True)
                s = plan.initial_state(y)
                grads = torch.autograd.grad(s, (y, *params), s_bar, allow_unused=True)
            y_bar = y_bar + (0 if grads[0] is None else grads[0])
            _accumulate(param_grads, grads[1:])
        return (None, y_bar, *param_grads)


def _accumulate(totals: list[torch.Tensor], grads) -> None:
    for total, g in zip(totals, grads):
        if g is not None:
            total.add_(g)


def _replay_with_graph(plan: _Plan, y0, params, grad_ys):
    """Gradients of gradients: replay the whole solve with a graph (Backprop's memory)."""
    with torch.enable_grad():
        y = y0
        s = plan.initial_state(y)
        outs, gouts = [y], [grad_ys[0]]
        for k in range(len(plan.starts)):
            res, s = plan.step(k, y, s)
            for i, value in plan.outputs_of_step(k, res):
                outs.append(value)
                gouts.append(grad_ys[i])
            y = res.y
        grads = torch.autograd.grad(
            outs, (y0, *params), gouts, create_graph=True, allow_unused=True
        )
    return [torch.zeros_like(x) if g is None else g for g, x in zip(grads, (y0, *params))]


def _check_bounded(call: LoopCall) -> None:
    """Refuse an adaptive solve without a finite step budget, before it runs.

    The checkpoint schedule is laid over the recorded steps, whose number must be finite: an
    unbounded adaptive solve (a stiff or blowing-up problem, too tight a tolerance) could grow
    the step record and the backward replays without limit instead of stopping with MAX_STEPS.
    """
    budget = call.cfg.max_steps
    if not call.method.adaptive:
        return
    if budget is None or not (isinstance(budget, int) or math.isfinite(budget)) or budget < 1:
        raise InvalidArgumentError(
            f"kutta.RecursiveCheckpoint needs a bounded number of steps, got max_steps={budget!r} "
            f"with the adaptive method {call.method.name}; pass a finite max_steps (e.g. the "
            "default 100_000), or use kutta.Adjoint, whose memory does not grow with the steps"
        )


@dataclasses.dataclass(frozen=True)
class RecursiveCheckpoint:
    """Backprop through the solver with binomial checkpointing: Backprop's exact gradients.

    The forward pass keeps no graph; the backward pass replays steps from at most
    ``max_checkpoints`` stored states (default ``ceil(log2(steps))``), so memory is
    ``O(max_checkpoints)`` states and compute a few forward solves. Gradients of gradients work
    (they replay the solve with a full graph, so they cost Backprop's memory).

    Because the forward pass records the accepted step sizes, the number of steps need not be
    known in advance; it must be bounded, though: an adaptive solve needs a finite
    ``max_steps`` (refused before the solve otherwise).

    Args:
        max_checkpoints: the number of states stored at once during the backward pass.
        params: the tensors to differentiate; default: ``f``'s parameters if it is an
            ``nn.Module`` (a plain callable capturing tensors that need grad is an error).

    Example:
        >>> import torch, kutta
        >>> y0 = torch.ones(1, requires_grad=True)
        >>> sol = kutta.solve(lambda t, y: -y, y0, t_eval=torch.tensor([0.0, 1.0]),
        ...                   gradient=kutta.RecursiveCheckpoint(max_checkpoints=4))
        >>> sol.ys[-1].sum().backward()
        >>> round(float(y0.grad), 4)
        0.3679
    """

    max_checkpoints: int | None = None
    params: tuple[torch.Tensor, ...] | None = None

    def __post_init__(self) -> None:
        mc = self.max_checkpoints
        if mc is not None and not (isinstance(mc, int) and mc >= 1):
            raise InvalidArgumentError(f"max_checkpoints must be a positive integer, got {mc!r}")

    def run(self, call: LoopCall) -> LoopResult:
        check_shared_call(call, "kutta.RecursiveCheckpoint")
        _check_bounded(call)
        params = find_params(call.func, self.params, "params")
        recorder = _StepRecorder(call.method)
        with torch.no_grad():
            forward = call(y0=call.y0.detach(), method=recorder)
        if forward.status != Status.SUCCESS:
            return forward
        plan = _Plan.record(call, recorder, forward, self.max_checkpoints)
        ys = _Checkpointed.apply(plan, call.y0, *params)
        return dataclasses.replace(forward, ys=list(ys.unbind(0)))
