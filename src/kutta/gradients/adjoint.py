"""Continuous adjoints: backsolve (optionally restarted from checkpoints) and interpolated.

The forward solve runs without a graph. The backward pass integrates the adjoint equations
from the last output time to the first (Pontryagin; Chen et al. 2018)::

    da/ds = -a . dF/dy,    dg/ds = -a . dF/dtheta,    g(s_end) = 0,  dL/dtheta = g(s_0)

where ``a(s) = dL/dy(s)`` jumps by ``dL/dy_i`` at every output time. *Backsolve* re-solves ``y``
backwards alongside ``a`` and restarts it from the stored forward state at every output time
and checkpoint; *interpolated* reads ``y`` from the forward solve's dense output instead.
The backward solve runs in ``tau = -s`` so the same (increasing-time) loop does it.

The seminorm (Kidger, Chen & Lyons 2021) leaves the parameter channels ``g`` out of the error
norm: they never feed back into the dynamics, so their error need not limit the step size.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable
from typing import Any

import torch

from ..controllers import rms_norm
from ..errors import InvalidArgumentError, SolverError
from ..loop import LoopResult, PerSampleResult, integrate_per_sample, integrate_shared
from ..solvers.base import Method
from ..solvers.implicit import ImplicitMethod
from ..solvers.registry import make_method
from ..status import Status
from .base import LoopCall, find_params

# (aug_f, z, tau_start, tau_end) -> z at tau_end; runs one backward interval.
BackwardRun = Callable[[Callable, torch.Tensor, float, float], torch.Tensor]


@dataclasses.dataclass
class AdjointSetup:
    """What the continuous adjoint needs, all in the solver's forward time ``s``.

    Attributes:
        f: the normalized vector field ``F(s, y)`` (host-float ``s``).
        grid: increasing forward times at which the forward states are stored: the output
            times plus any checkpoints.
        outputs: indices into ``grid`` of the output times.
        forward: the forward result over ``grid`` (computed without a graph); its ``ys`` a list
            of states or a ``(len(grid), ...)`` tensor.
        make_backward: ``norm -> BackwardRun``, given the error norm of the augmented state.
        state_norm: the forward solve's error norm, applied to the state and to the adjoint.
        seminorm: leave the parameter channels out of the backward error norm.
        interpolated: read ``y`` from ``forward.dense`` instead of re-solving it.
        time_sign: user time = ``time_sign * s``; set to return gradients for the times.
        sample_times: per-sample mode: ``(B, len(grid))`` forward times of every sample. Each
            backward interval is then rescaled to ``u`` in [0, 1] (``s = s_lo + u (s_hi - s_lo)``
            per sample), so one shared backward solve covers every sample's own interval and the
            parameter gradient stays one shared accumulator.
    """

    f: Callable
    grid: list[float]
    outputs: list[int]
    forward: LoopResult
    make_backward: Callable[[Callable], BackwardRun]
    state_norm: Callable
    seminorm: bool
    interpolated: bool = False
    time_sign: float | None = None
    sample_times: torch.Tensor | None = None


def checkpoint_grid(times: list[float], checkpoints: int) -> tuple[list[float], list[int]]:
    """The output times plus ``checkpoints`` evenly spaced interior times, and the outputs' places.

    Example:
        >>> checkpoint_grid([0.0, 1.0], 3)
        ([0.0, 0.25, 0.5, 0.75, 1.0], [0, 4])
    """
    t0, t1 = times[0], times[-1]
    extra = {t0 + (t1 - t0) * k / (checkpoints + 1) for k in range(1, checkpoints + 1)}
    grid = sorted(set(times) | extra)
    place = {t: i for i, t in enumerate(grid)}
    return grid, [place[t] for t in times]


class ContinuousAdjoint(torch.autograd.Function):
    """ys = solve(y0) forward; the continuous adjoint backward (see the module docstring)."""

    @staticmethod
    def forward(ctx, setup: AdjointSetup, y0, t, *params):
        ys = setup.forward.ys
        ys = ys if torch.is_tensor(ys) else torch.stack(ys)
        setup.forward.ys = None  # the stacked copy is the one kept
        ctx.setup = setup
        ctx.save_for_backward(ys, *params)
        return ys[setup.outputs]

    @staticmethod
    def backward(ctx, grad_outputs):
        if torch.is_grad_enabled():
            raise InvalidArgumentError(
                "gradients of gradients (create_graph=True) are not available through a "
                "continuous adjoint; use backprop (kutta.odeint, kutta.Backprop or "
                "kutta.RecursiveCheckpoint) for higher derivatives"
            )
        setup: AdjointSetup = ctx.setup
        ys, *params = ctx.saved_tensors
        grads = torch.zeros_like(ys)
        grads[setup.outputs] = grad_outputs
        a_back, param_grads = _backward_pass(setup, ys, grads, tuple(params))
        grad_t = None
        if setup.time_sign is not None and ctx.needs_input_grad[2]:
            grad_t = _time_gradients(setup, ys, grads, a_back)
        grad_y0 = (a_back + grads[0].reshape(-1)).view_as(ys[0])
        return (None, grad_y0, grad_t, *param_grads)


def _time_gradients(setup: AdjointSetup, ys, grads, a_back) -> torch.Tensor:
    """dL/dt_i = <dL/dy_i, f(t_i, y_i)>; dL/dt_0 = -<a(t_0), f(t_0, y_0)> (a without dL/dy_0)."""
    sign = setup.time_sign
    out = []
    for k in setup.outputs:
        fy = setup.f(setup.grid[k], ys[k]).reshape(-1)
        if k == 0:
            out.append(-sign * torch.dot(a_back, fy))
        else:
            out.append(sign * torch.dot(grads[k].reshape(-1), fy))
    return torch.stack(out).to(ys.dtype)


def _backward_pass(setup: AdjointSetup, ys, grads, params):
    shape, n = ys.shape[1:], ys[0].numel()
    sizes = [p.numel() for p in params]
    n_params = sum(sizes)
    f = setup.f
    dense = setup.forward.dense if setup.interpolated else None
    grid = setup.grid

    def vjp(s: float, y: torch.Tensor, a: torch.Tensor):
        """``F(s, y)`` and the flat pieces of ``a . dF/d(y, theta)``.

        An implicit backward method differentiates the augmented field itself (its Jacobian),
        so when the augmented state requires grad the result keeps a graph to ``y`` and ``a``.
        """
        differentiable = y.requires_grad or a.requires_grad
        # Shaped before it requires grad, so autograd records no view.
        y = y.view(shape)
        if not (differentiable and y.requires_grad):
            y = y.detach().requires_grad_(True)
        with torch.enable_grad():
            fy = f(s, y)
            parts = torch.autograd.grad(
                fy, (y, *params), a.view(shape), allow_unused=True, create_graph=differentiable
            )
        flat = [
            torch.zeros_like(x).reshape(-1) if g is None else g.reshape(-1)
            for g, x in zip(parts, (y, *params))
        ]
        return (fy if differentiable else fy.detach()), flat

    if setup.interpolated:
        lead = 0
        s_first, s_last = grid[0], grid[-1]

        def interval_field(k):
            def aug_f(tau, z):
                # Implicit methods may sample f just outside the step (a difference quotient
                # for df/dt, a stage beyond the end); the interpolant ends at the solved span.
                s = min(max(-tau, s_first), s_last)
                _, parts = vjp(-tau, dense(s).reshape(-1), z[:n])
                return torch.cat(parts)

            return aug_f, -grid[k], -grid[k - 1]
    elif setup.sample_times is None:
        lead = n

        def interval_field(k):
            def aug_f(tau, z):
                fy, parts = vjp(-tau, z[:n], z[n : 2 * n])
                return torch.cat([fy.reshape(-1).neg(), *parts])

            return aug_f, -grid[k], -grid[k - 1]
    else:
        lead = n

        def interval_field(k):
            # In u = (s - s_lo) / (s_hi - s_lo): dy/du = dt * F, and the adjoint's vjp is taken
            # against dt * a, which also weights each sample's share of the parameter gradient.
            s_lo, s_hi = setup.sample_times[:, k - 1], setup.sample_times[:, k]
            dt = (s_hi - s_lo).to(ys.dtype).view(-1, *([1] * (len(shape) - 1)))

            def aug_f(tau, z):
                s = torch.addcmul(s_lo, s_hi - s_lo, torch.full_like(s_lo, -tau))
                a = (z[n : 2 * n].view(shape) * dt).reshape(-1)
                fy, parts = vjp(s, z[:n], a)
                return torch.cat([(fy * dt).reshape(-1).neg(), *parts])

            return aug_f, -1.0, 0.0

    run = setup.make_backward(_augmented_norm(setup, shape, n, lead, sizes))
    a = ys.new_zeros(n)
    g = ys.new_zeros(n_params)
    for k in range(len(grid) - 1, 0, -1):
        a = a + grads[k].reshape(-1)
        z = torch.cat([a, g]) if setup.interpolated else torch.cat([ys[k].reshape(-1), a, g])
        aug_f, start, end = interval_field(k)
        z = run(aug_f, z, start, end)
        a, g = z[lead : lead + n], z[lead + n :]
    param_grads = [p.view_as(x) for p, x in zip(torch.split(g, sizes), params)]
    return a, param_grads


def _augmented_norm(setup: AdjointSetup, shape, n: int, lead: int, sizes: list[int]):
    """max(norm(y), norm(a), rms(g_1), ...) over the augmented state; the seminorm drops g."""
    state_norm = setup.state_norm
    param_sizes = [] if setup.seminorm else sizes

    def norm(ratio: torch.Tensor) -> torch.Tensor:
        ratio = ratio.reshape(-1)
        if state_norm is rms_norm:
            # One reduction over the (y, a) blocks: the norm is on the backward's hot path.
            blocks = ratio[: lead + n].view(-1, n)
            parts = [torch.linalg.vector_norm(blocks, dim=1).amax() * (1.0 / math.sqrt(n))]
        else:
            parts = [state_norm(ratio[lead : lead + n].view(shape))]
            if lead:
                parts.append(state_norm(ratio[:n].view(shape)))
        start = lead + n
        for size in param_sizes:
            if size:
                chunk = ratio[start : start + size]
                parts.append(torch.linalg.vector_norm(chunk) * (1.0 / math.sqrt(size)))
            start += size
        return torch.stack(parts).max() if len(parts) > 1 else parts[0]

    return norm


class StepMemory:
    """A bound controller's copy that remembers the step it wanted next where the solve ended.

    The backward solve starts each interval with the step the solve wanted where that interval
    starts: half the forward's (the augmented state's error exceeds the state's alone) for the
    first interval, the previous backward interval's for the others. That skips Hairer's
    starting-step guess, which costs an evaluation of the augmented field (a full vjp) and starts
    small. A step cut short to land on an output time says little about the next one, so what
    is remembered is the step the controller wanted before the cut. A user's ``first_step``
    still wins.

    Example:
        >>> import torch
        >>> from kutta.controllers import PIDController
        >>> ctl = StepMemory(PIDController().bind(4, torch.float64, torch.device("cpu"), False))
        >>> accept, h_next, _ = ctl.adapt(0.5, 0.1, ctl.init_state(0.1))
        >>> ctl.proposal == h_next
        True
    """

    def __init__(self, controller: Any):
        self._controller = controller
        self._wanted: float | None = None  # the step the controller asked for last
        self.proposal: float | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._controller, name)

    def adapt(self, scale: Any, h: Any, state: Any) -> tuple[Any, Any, Any]:
        accept, h_next, state = self._controller.adapt(scale, h, state)
        if accept is True:
            wanted = self._wanted
            cut_short = wanted is not None and h < wanted * (1 - 1e-12)
            self.proposal = min(wanted, h_next) if cut_short else h_next
        self._wanted = h_next
        return accept, h_next, state

    def first_step(self, cfg: Any, factor: float = 1.0) -> Any:
        """``cfg`` starting from ``factor`` times the remembered step (unless ``cfg`` has one)."""
        if cfg.first_step is not None or self.proposal is None:
            return cfg
        return dataclasses.replace(cfg, first_step=factor * self.proposal)


def backward_failure(err: SolverError, where: str, t: float | None = None) -> SolverError:
    """The same failure, said to be in the backward (adjoint) solve, ``where`` in user terms."""
    partial = err.partial
    why = partial.status.message if isinstance(partial, LoopResult) else str(err)
    return SolverError(
        f"the backward (adjoint) solve {where} failed: "
        f"{why}. Tighten the forward tolerances, loosen adjoint_rtol/adjoint_atol, raise the "
        "step budget, or restart the backward solve from checkpoints.",
        t=t,
    )


# ------------------------------------------------------------------------------------------
# Native strategies
# ------------------------------------------------------------------------------------------


def _scalar_tolerances(controller: Any) -> None:
    for name in ("rtol", "atol"):
        tol = getattr(controller, name)
        if torch.is_tensor(tol) and tol.numel() > 1:
            raise InvalidArgumentError(
                f"adjoint strategies need a scalar {name}; per-component tolerances are "
                "supported with kutta.Backprop or kutta.RecursiveCheckpoint"
            )


def check_shared_call(call: LoopCall, strategy: str) -> None:
    """Reject, before any work, what a non-backprop strategy cannot differentiate."""
    if call.driver is not integrate_shared:
        raise InvalidArgumentError(
            f"{strategy} supports batch_mode='shared' only; use kutta.Backprop for per_sample"
        )
    if call.cfg.event_fn is not None:
        raise InvalidArgumentError(
            f"{strategy} does not differentiate through events; use kutta.Backprop "
            "(or kutta.odeint_event for a differentiable event time)"
        )


def for_augmented_field(method: Method) -> Method:
    """``method`` ready to integrate the augmented adjoint state.

    An implicit method's Jacobian options describe the user's field, not the augmented one:
    a user ``jac`` has the wrong size, ``independent_batch`` would split the flat augmented
    state into unrelated scalars, and the vmapped Jacobians (``jacobian="fwd"/"rev"``, Krylov
    JVPs) cannot see through the ``autograd.grad`` inside the augmented field. So the backward
    solve takes its Jacobian by plain autograd, as one coupled block.
    """
    if not isinstance(method, ImplicitMethod):
        return method
    out = copy.copy(method)
    out.jac, out.jacobian, out.independent_batch, out.krylov_dim = None, "autograd", False, None
    return out


def _backward_method(call: LoopCall, method: Any) -> tuple[Method, Any]:
    """The backward solve's method and controller: ``method`` (a name or a Method), bound like
    the forward one, or the forward method itself."""
    if method is None:
        return for_augmented_field(call.method), call.controller
    if isinstance(method, str):
        method = make_method(method, {})
    elif not isinstance(method, Method):
        raise InvalidArgumentError(
            f"the adjoint's method must be a kutta Method or a name, got {method!r}"
        )
    if not method.adaptive and call.method.adaptive:
        raise InvalidArgumentError(
            f"the adjoint's method {method.name} takes fixed steps but the forward method "
            f"{call.method.name} is adaptive; give an adaptive backward method"
        )
    y0, controller = call.y0, call.controller
    bound = method.bind(y0.dtype, y0.device)
    controller = copy.copy(controller)
    controller._exponent = 1.0 / ((bound.error_order or bound.order) + 1)
    bound.set_error_scale(controller.atol, controller.rtol)
    return for_augmented_field(bound), controller


def run_native_adjoint(
    call: LoopCall,
    params: Any,
    *,
    seminorm: bool,
    checkpoints: int,
    interpolated: bool,
    strategy: str,
    method: Any = None,
) -> LoopResult:
    """``kutta.solve``'s adjoint strategies: a forward solve, then ContinuousAdjoint."""
    _scalar_tolerances(call.controller)
    back_method, back_controller = _backward_method(call, method)
    if call.driver is integrate_per_sample:
        if checkpoints or interpolated:
            raise InvalidArgumentError(
                f"{strategy} with checkpoints or interpolation supports batch_mode='shared' "
                "only; use kutta.Adjoint() (plain backsolve) or kutta.Backprop for per_sample"
            )
        back_call = dataclasses.replace(call, method=back_method, controller=back_controller)
        params = find_params(call.func, params, "params")
        return _run_per_sample_adjoint(call, back_call, params, seminorm)
    check_shared_call(call, strategy)
    params = find_params(call.func, params, "params")
    times = call.times.tolist()
    grid, outputs = checkpoint_grid(times, checkpoints)
    cfg = dataclasses.replace(call.cfg, dense=call.cfg.dense or interpolated)
    forward_memory = StepMemory(call.controller)
    with torch.no_grad():
        forward = call(
            y0=call.y0.detach(),
            times=torch.tensor(grid, dtype=torch.float64),
            cfg=cfg,
            controller=forward_memory,
        )
    if forward.status != Status.SUCCESS:
        forward.ys = [forward.ys[i] for i in outputs if i < len(forward.ys)]
        return forward
    step_t = list(call.cfg.step_t)
    if interpolated:
        # The interpolant is smooth within each forward step only; a backward step across a
        # kink loses the method's order unnoticed (Rosenbrock methods visibly so).
        step_t += forward.dense.starts[1:]
    back_cfg = dataclasses.replace(
        call.cfg,
        step_t=[-s for s in step_t],
        jump_t=[-s for s in call.cfg.jump_t],
        first_step=None,
        dense=False,
        raise_on_failure=True,
    )

    def make_backward(norm: Callable) -> BackwardRun:
        # A shallow copy keeps the bound tolerances and exponent; only the norm changes.
        controller = StepMemory(_copy_with_norm(back_controller, norm))
        # The forward's last step suits the backward's first only if the method is the same.
        previous = [forward_memory if back_method.name == call.method.name else controller]

        def run(aug_f, z, tau_start, tau_end):
            span = torch.tensor([tau_start, tau_end], dtype=torch.float64)
            cfg = previous[0].first_step(back_cfg, 0.5 if previous[0] is forward_memory else 1.0)
            previous[0] = controller
            try:
                res = integrate_shared(aug_f, z, span, back_method, controller, cfg, call.counter)
            except SolverError as err:
                where = f"from solver time {-tau_start:.6g} to {-tau_end:.6g}"
                raise backward_failure(err, where, -tau_start) from None
            return res.ys[-1]

        return run

    setup = AdjointSetup(
        f=call.f,
        grid=grid,
        outputs=outputs,
        forward=forward,
        make_backward=make_backward,
        state_norm=call.controller.norm,
        seminorm=seminorm,
        interpolated=interpolated,
    )
    ys = ContinuousAdjoint.apply(setup, call.y0, None, *params)
    result = dataclasses.replace(forward, ys=list(ys.unbind(0)))
    if not call.cfg.dense:
        result.dense = None
    return result


def _run_per_sample_adjoint(
    call: LoopCall, back_call: LoopCall, params, seminorm: bool
) -> PerSampleResult:
    """Per-sample forward; one shared backward solve per output interval (see ``sample_times``)."""
    with torch.no_grad():
        forward = call(y0=call.y0.detach())
    if bool((forward.status != int(Status.SUCCESS)).any()):
        return forward
    batch = call.y0.shape[0]
    times = call.times.expand(batch, -1) if call.times.dim() == 1 else call.times
    step_size = call.cfg.step_size
    if step_size is not None:
        # In u the widest sample's interval has the forward's step; the others get smaller ones.
        step_size = step_size / float((times[:, 1:] - times[:, :-1]).max())
    back_cfg = dataclasses.replace(
        call.cfg, first_step=None, step_size=step_size, dense=False, raise_on_failure=True
    )

    def make_backward(norm: Callable) -> BackwardRun:
        controller = _copy_with_norm(back_call.controller, norm, per_sample=False)
        span = torch.tensor([-1.0, 0.0], dtype=torch.float64)

        def run(aug_f, z, tau_start, tau_end):
            try:
                res = integrate_shared(
                    aug_f, z, span, back_call.method, controller, back_cfg, call.counter
                )
            except SolverError as err:
                raise backward_failure(err, "over one output interval (per-sample mode)") from None
            return res.ys[-1]

        return run

    n_times = times.shape[1]
    setup = AdjointSetup(
        f=call.f,
        grid=[float(i) for i in range(n_times)],
        outputs=list(range(n_times)),
        forward=forward,
        make_backward=make_backward,
        state_norm=rms_norm,
        seminorm=seminorm,
        sample_times=times,
    )
    ys = ContinuousAdjoint.apply(setup, call.y0, None, *params)
    return dataclasses.replace(forward, ys=ys)


def _copy_with_norm(controller: Any, norm: Callable, per_sample: bool | None = None) -> Any:
    out = copy.copy(controller)
    out.norm = norm
    if per_sample is not None:
        out._per_sample = per_sample
    return out


@dataclasses.dataclass(frozen=True)
class Adjoint:
    """The continuous backsolve adjoint: O(1) memory in the number of steps.

    Works in both batch modes. In ``per_sample`` mode the forward solve steps every sample on its
    own; the backward solve covers all samples' intervals at once (each rescaled to [0, 1]) with
    one shared parameter-gradient accumulator, so its cost does not grow with per-sample copies
    of the parameters.

    Args:
        seminorm: leave the parameter-gradient channels out of the backward error norm
            (Kidger, Chen & Lyons 2021); usually far fewer backward steps, same accuracy.
        checkpoints: store this many extra forward states (evenly spaced in time) and restart
            the backward re-solve of ``y`` from them; this keeps chaotic or stiff problems,
            whose backward re-solve diverges, accurate.
        params: the tensors to differentiate; default: ``f``'s parameters if it is an
            ``nn.Module`` (a plain callable capturing tensors that need grad is an error).
        method: the backward solve's method (a name or a Method); default: the forward one.
            The adjoint equation ``da/ds = -a J`` is as stiff as the forward problem, so a
            stiff forward problem wants an implicit backward method (``"rodas5"``, ``"bdf"``...):
            an explicit one is held to tiny steps by stability. For a stiff problem prefer
            :class:`InterpolatedAdjoint` or checkpoints: re-solving ``y`` backwards runs its
            decaying modes in the unstable direction. With steps far longer than the fast time
            scales, also pass ``seminorm=False``: the parameter gradient is a quadrature along
            the solution, and only its own error estimate makes the steps resolve a fast
            transient in it.

    Example:
        >>> import torch, kutta
        >>> y0 = torch.ones(1, requires_grad=True)
        >>> sol = kutta.solve(lambda t, y: -y, y0, t_eval=torch.tensor([0.0, 1.0]),
        ...                   gradient=kutta.Adjoint())
        >>> sol.ys[-1].sum().backward()
        >>> round(float(y0.grad), 4)
        0.3679
    """

    seminorm: bool = True
    checkpoints: int = 0
    params: tuple[torch.Tensor, ...] | None = None
    method: Method | str | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.checkpoints, int) and self.checkpoints >= 0):
            raise InvalidArgumentError(
                f"checkpoints must be a non-negative integer, got {self.checkpoints!r}"
            )

    def run(self, call: LoopCall) -> LoopResult:
        return run_native_adjoint(
            call,
            self.params,
            seminorm=self.seminorm,
            checkpoints=self.checkpoints,
            interpolated=False,
            strategy="kutta.Adjoint",
            method=self.method,
        )


@dataclasses.dataclass(frozen=True)
class InterpolatedAdjoint:
    """A continuous adjoint that reads the forward state from the dense interpolant.

    No backward re-solve of ``y``, so it is stable where backsolving is not; memory grows with
    the number of forward steps (their interpolants are kept), not with the graph.

    Args:
        seminorm: as in :class:`Adjoint`.
        params: as in :class:`Adjoint`.
        method: the backward solve's method, as in :class:`Adjoint`. With a stiff problem an
            implicit one (``"rodas5"``, ``"kvaerno5"``, ``"bdf"``) integrates the adjoint
            stably in large steps.

    Example:
        >>> import torch, kutta
        >>> y0 = torch.ones(1, requires_grad=True)
        >>> sol = kutta.solve(lambda t, y: -y, y0, t_eval=torch.tensor([0.0, 1.0]),
        ...                   gradient=kutta.InterpolatedAdjoint())
        >>> sol.ys[-1].sum().backward()
        >>> round(float(y0.grad), 4)
        0.3679
    """

    seminorm: bool = True
    params: tuple[torch.Tensor, ...] | None = None
    method: Method | str | None = None

    def run(self, call: LoopCall) -> LoopResult:
        return run_native_adjoint(
            call,
            self.params,
            seminorm=self.seminorm,
            checkpoints=0,
            interpolated=True,
            strategy="kutta.InterpolatedAdjoint",
            method=self.method,
        )
