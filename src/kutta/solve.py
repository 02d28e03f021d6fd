"""The native entry point: ``kutta.solve(...) -> Solution``."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ._inputs import attach_time_gradient, normalize, shift_start
from .controllers import ConstantController, Controller, PIDController
from .errors import InvalidArgumentError, SolverError
from .gradients import Backprop, LoopCall
from .loop import LoopConfig, LoopResult, integrate_per_sample, integrate_shared
from .sde.native import solve_sde
from .solution import Solution, loop_stats
from .solvers.base import Method
from .solvers.registry import make_method
from .status import Status
from .terms import SDETerm

BATCH_MODES = ("shared", "per_sample")


def _resolve_method(method: Method | str | None) -> Method:
    if method is None:
        return make_method("tsit5", {})
    if isinstance(method, str):
        return make_method(method, {})
    if not isinstance(method, Method):
        raise InvalidArgumentError(
            f"method must be a kutta Method (e.g. kutta.Tsit5()) or a name, got {method!r}"
        )
    return method


def solve(
    f: Callable,
    y0: torch.Tensor | tuple[torch.Tensor, ...],
    t_eval: torch.Tensor | None = None,
    *,
    span: tuple[float, float] | None = None,
    method: Method | str | None = None,
    controller: Controller | None = None,
    dense: bool = False,
    batch_mode: str = "shared",
    gradient: Any = None,
    dt0: float | None = None,
    step_size: float | None = None,
    max_steps: int | None = 100_000,
    step_t: Sequence[float] = (),
    jump_t: Sequence[float] = (),
    event_fn: Callable | None = None,
    event_terminal: bool = True,
    raise_on_failure: bool = True,
) -> Solution:
    """Solve ``dy/dt = f(t, y)`` and return a :class:`~kutta.Solution`.

    Args:
        f: the vector field ``f(t, y)``, or a :class:`~kutta.terms.SDETerm` (then ``method`` is
            an SDE method, fixed steps take ``step_size``, adaptive ones a controller and
            ``dt0``; see :mod:`kutta.sde.native`), or a :class:`~kutta.terms.CDETerm`.
            In ``"per_sample"`` mode ``t`` has shape ``(A,)`` and ``y`` shape ``(A, N)`` for the
            ``A <= B`` samples still running (finished ones are dropped), so per-sample parameters belong in the state, not in a closure.
        y0: initial state: any shape (shared mode), ``(B, N)`` (per-sample mode), or a tuple.
        t_eval: output times ``(T,)``; in per-sample mode also ``(B, T)`` (a grid per sample).
        span: ``(t0, t1)`` instead of ``t_eval``: outputs at both ends only.
        method: a method object (``kutta.Tsit5()``, ``kutta.Dopri5()``, ...) or a name.
        controller: step-size control and tolerances. Default: ``kutta.PIDController()``, whose
            default gains are the integral controller's, because on the DETEST problems it takes
            no more steps than torchdiffeq's (benchmarks/README.md, section 3);
            ``kutta.PIController()`` trades a few more steps on smooth problems for fewer
            rejections, which pays off when rejected steps are expensive (implicit methods).
        dense: keep every step's interpolant so that ``Solution.evaluate(t)`` works (shared mode).
        batch_mode: ``"shared"`` (one step size for the whole state) or ``"per_sample"``.
        gradient: a gradient strategy (default ``kutta.Backprop()``).
        dt0: first step size (default: Hairer's automatic choice).
        step_size: the step of a fixed-step method (default: step between output times).
        max_steps: the step budget (accepted and rejected); then status ``MAX_STEPS``. None
            (or ``math.inf``): no budget.
        step_t, jump_t: times to step on exactly; at ``jump_t`` the vector field may jump.
        event_fn: ``event_fn(t, y)`` (shared mode), watched for sign changes, each located by
            bisection on the dense interpolant and recorded in ``Solution.events``.
        event_terminal: stop at the first sign change (then the outputs are ``t0`` and the
            event time) or keep going to the last output time, recording every crossing.
        raise_on_failure: raise :class:`~kutta.SolverError` (with the partial ``Solution``)
            when a sample fails; otherwise return it with the status codes set.

    Example:
        >>> import torch, kutta
        >>> y0 = torch.tensor([[1.0], [2.0]])
        >>> sol = kutta.solve(lambda t, y: -y, y0, t_eval=torch.linspace(0, 1, 3),
        ...                   batch_mode="per_sample")
        >>> sol.ys.shape, sol.stats["nfe"].shape
        (torch.Size([3, 2, 1]), torch.Size([2]))
    """
    if batch_mode not in BATCH_MODES:
        raise InvalidArgumentError(
            f"unknown batch_mode {batch_mode!r}; valid modes are: {', '.join(BATCH_MODES)}"
        )
    if max_steps is None:
        max_steps = math.inf  # no budget (RecursiveCheckpoint refuses this for adaptive methods)
    elif max_steps != math.inf and (
        isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1
    ):
        raise InvalidArgumentError(
            "max_steps must be a positive integer, or None (or math.inf) for no budget; "
            f"got {max_steps!r}"
        )
    if (t_eval is None) == (span is None):
        raise InvalidArgumentError("give exactly one of t_eval and span")
    if span is not None:
        if len(span) != 2:
            raise InvalidArgumentError(f"span must be (t0, t1), got {span!r}")
        t_eval = torch.tensor([float(span[0]), float(span[1])], dtype=torch.float64)
    if isinstance(f, SDETerm):
        # The ODE-only features, named in one error if any is asked for.
        ode_only = {
            "batch_mode='per_sample'": batch_mode != "shared",
            "dense": dense,
            "step_t": bool(step_t),
            "jump_t": bool(jump_t),
            "event_fn": event_fn is not None,
        }
        return solve_sde(
            f,
            y0,
            t_eval,
            method=method,
            controller=controller,
            step_size=step_size,
            dt0=dt0,
            gradient=gradient,
            max_steps=max_steps,
            raise_on_failure=raise_on_failure,
            unsupported=[name for name, asked in ode_only.items() if asked],
        )
    m = _resolve_method(method)
    if step_size is not None and m.adaptive:
        raise InvalidArgumentError(
            f"step_size is for fixed-step methods and {m.name} is adaptive; for constant steps "
            f"use controller=kutta.ConstantController() and dt0={step_size}"
        )
    if dt0 is not None and not m.adaptive:
        raise InvalidArgumentError(
            f"dt0 is for adaptive methods and {m.name} takes fixed steps; use step_size"
        )
    per_sample = batch_mode == "per_sample"
    if controller is None:
        controller = PIDController() if m.adaptive else ConstantController()
    gradient = Backprop() if gradient is None else gradient
    t_eval = torch.as_tensor(t_eval)
    if per_sample and t_eval.dim() == 2:
        problem = normalize(f, y0, t_eval[0], per_sample=True)
        times = _per_sample_times(t_eval, problem.y0)
        if problem.reverse:
            times = -times
    else:
        problem = normalize(f, y0, t_eval, per_sample=per_sample)
        times = problem.times
    dtype = problem.y0.real.dtype
    m = m.bind(problem.y0.dtype, problem.y0.device)  # complex states get complex coefficients
    ctl = controller.bind(m.error_order or m.order, dtype, problem.y0.device, per_sample)
    m.set_error_scale(ctl.atol, ctl.rtol)
    if not per_sample:
        m.set_error_norm(ctl.rtol, ctl.atol, ctl.norm)
    cfg = LoopConfig(
        max_steps=max_steps,
        first_step=dt0,
        step_size=step_size,
        step_t=[problem.to_forward(float(x)) for x in step_t],
        jump_t=[problem.to_forward(float(x)) for x in jump_t],
        dense=dense,
        raise_on_failure=False,
    )
    if event_fn is not None:
        if per_sample:
            raise InvalidArgumentError("event_fn is supported in shared mode only")
        cfg.event_fn = problem.event_in_forward_time(event_fn)
        cfg.event_terminal = event_terminal
        if event_terminal:
            times = times[:1]
    if per_sample:
        if t_eval.requires_grad and torch.is_grad_enabled():
            raise InvalidArgumentError(
                "gradients with respect to t_eval are supported in shared mode only; "
                "pass t_eval.detach()"
            )
        if dense or step_t or jump_t:
            raise InvalidArgumentError("dense, step_t and jump_t are supported in shared mode only")
        tdev = times.to(problem.y0.device, torch.float64)
        result = gradient.run(
            LoopCall(
                integrate_per_sample, problem.f, problem.y0, tdev, m, ctl, cfg, problem.counter, f
            )
        )
        sol = Solution(
            ts=torch.as_tensor(t_eval),
            ys=problem.unflatten(result.ys),
            stats=loop_stats(result, m),
            status=result.status,
        )
        failed = ~sol.success
        if raise_on_failure and bool(failed.any()):
            first = int(torch.nonzero(failed)[0])
            code = Status(int(result.status[first]))
            raise SolverError(
                f"{int(failed.sum())} of {len(failed)} samples failed; sample {first}: "
                f"{code.message} at t = {problem.user_time(float(result.t_final[first])):.6g}. "
                "The partial Solution (with per-sample status codes) is attached.",
                partial=sol,
                t=problem.user_time(float(result.t_final[first])),
            )
        return sol

    time_grad = event_fn is None and t_eval.requires_grad and torch.is_grad_enabled()
    if time_grad:
        t_user = t_eval.to(problem.y0.device, problem.time_dtype)
        problem.y0 = shift_start(problem, t_user[0])
    result: LoopResult = gradient.run(
        LoopCall(integrate_shared, problem.f, problem.y0, times, m, ctl, cfg, problem.counter, f)
    )
    ys = torch.stack(result.ys) if result.ys else problem.y0[:0]
    if time_grad and result.ys:
        ys = attach_time_gradient(problem, t_user, ys)
    ts_user = torch.as_tensor(t_eval)[: len(result.ys)]
    events = [{"t": problem.user_time(te), "y": problem.unflatten(ye)} for te, ye in result.events]
    if result.event_t is not None:
        te = problem.user_time(result.event_t)
        ts_user = torch.tensor([float(t_eval[0]), te], dtype=torch.as_tensor(t_eval).dtype)
        ys = torch.stack([problem.y0, result.event_y])
    sol = Solution(
        ts=ts_user,
        ys=problem.unflatten(ys),
        stats=loop_stats(result, m),
        status=torch.tensor(int(result.status)),
        events=events,
        _dense=result.dense,
        _to_user=(problem.to_forward, problem.unflatten),
    )
    if raise_on_failure and result.status not in (Status.SUCCESS, Status.EVENT):
        raise SolverError(result.message, partial=sol, t=problem.user_time(result.t_final))
    return sol


def _per_sample_times(t_eval: torch.Tensor, y0: torch.Tensor) -> torch.Tensor:
    if t_eval.shape[0] != y0.shape[0]:
        raise InvalidArgumentError(
            f"per-sample t_eval has {t_eval.shape[0]} rows but y0 has batch size {y0.shape[0]}"
        )
    if not torch.isfinite(t_eval).all():
        raise InvalidArgumentError("t_eval contains NaN or inf")
    d = t_eval[:, 1:] - t_eval[:, :-1]
    direction = torch.sign(d[0, 0])
    bad = ~(d * direction > 0)
    if bool(bad.any()):
        row, col = (int(v) for v in torch.nonzero(bad)[0])
        raise InvalidArgumentError(
            f"t_eval row {row} is not strictly monotone in the common direction at index {col + 1}"
        )
    return t_eval.detach().to(torch.float64)
