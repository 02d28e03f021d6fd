"""torchdiffeq-compatible entry points: ``odeint`` and ``odeint_event``.

Same signatures, method names, options and return values as torchdiffeq's, so code written for
it runs after changing only the import. These are thin adapters: they translate torchdiffeq's
options into a method, a controller and a loop configuration, and call the one engine.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from ._inputs import attach_time_gradient, expand_tolerance, normalize, shift_start
from .controllers import PIDController, rms_norm
from .errors import InvalidArgumentError, SolverError, UnknownNameError
from .loop import LoopConfig, LoopResult, integrate_shared
from .solvers.registry import make_method, method_names, valid_options

__all__ = ["odeint", "odeint_event"]

DEFAULT_METHOD = "dopri5"


def _time_list(name: str, value: Any, reverse: bool) -> list[float]:
    if value is None:
        return []
    values = torch.as_tensor(value, dtype=torch.float64).reshape(-1)
    if not torch.isfinite(values).all():
        raise InvalidArgumentError(f"option {name} contains NaN or inf")
    vals = values.tolist()
    return [-v for v in vals] if reverse else vals


def _tuple_norm(shapes, user_norm: Callable | None) -> Callable:
    sizes = [math.prod(s) for s in shapes]
    if user_norm is None:

        def mixed(x):
            return torch.stack([rms_norm(p) for p in torch.split(x, sizes)]).max()

        return mixed

    def wrapped(x):
        return user_norm(tuple(p.view(s) for p, s in zip(torch.split(x, sizes), shapes)))

    return wrapped


def _build(func, y0, t, rtol, atol, method, options, event_fn):
    if method is None:
        if options:
            raise InvalidArgumentError("cannot supply `options` without specifying `method`")
        method = DEFAULT_METHOD
    options = dict(options or {})
    if not isinstance(method, str):
        raise InvalidArgumentError(
            f"method must be a name (one of {', '.join(method_names())}), got {method!r}"
        )
    if method == "scipy_solver":
        return None, method, options
    problem = normalize(func, y0, t)
    m = make_method(method, options)
    valid = valid_options(method, m)
    unknown = sorted(set(options) - valid)
    if unknown:
        raise UnknownNameError(f"{method} option", unknown[0], sorted(valid))
    user_norm = options.get("norm")
    norm = _tuple_norm(problem.shapes, user_norm) if problem.shapes else user_norm
    if m.adaptive:
        controller = PIDController(
            rtol=expand_tolerance(rtol, "rtol", problem.shapes),
            atol=expand_tolerance(atol, "atol", problem.shapes),
            norm=norm,
            dt_min=float(options.get("min_step", 0.0)),
            dt_max=float(options.get("max_step", math.inf)),
            safety=float(options.get("safety", 0.9)),
            factor_max=float(options.get("ifactor", 10.0)),
            factor_min=float(options.get("dfactor", 0.2)),
            pcoeff=float(options.get("pcoeff", 0.0)),
            icoeff=float(options.get("icoeff", 1.0)),
            dcoeff=float(options.get("dcoeff", 0.0)),
        )
    else:
        controller = PIDController(rtol=rtol, atol=atol, norm=norm)
    grid = None
    if "grid_constructor" in options:
        if "step_size" in options:
            raise InvalidArgumentError("step_size and grid_constructor are mutually exclusive")
        user_t = torch.as_tensor(t)
        grid = torch.as_tensor(options["grid_constructor"](func, y0, user_t), dtype=torch.float64)
        grid = -grid if problem.reverse else grid
    first = options.get("first_step")
    cfg = LoopConfig(
        max_steps=int(options.get("max_num_steps", 2**31 - 1)),
        max_steps_per_output=True,
        first_step=None if first is None else abs(float(first)),
        step_size=None if options.get("step_size") is None else abs(float(options["step_size"])),
        grid=grid,
        step_t=_time_list("step_t", options.get("step_t"), problem.reverse),
        jump_t=_time_list("jump_t", options.get("jump_t"), problem.reverse),
    )
    if event_fn is not None:
        cfg.event_fn = problem.event_in_forward_time(event_fn)
        problem.times = problem.times[:1]
    m = m.bind(problem.y0.dtype, problem.y0.device)  # complex states get complex coefficients
    ctl = controller.bind(m.error_order or m.order, problem.y0.real.dtype, problem.y0.device, False)
    m.set_error_scale(ctl.atol, ctl.rtol)
    m.set_error_norm(ctl.rtol, ctl.atol, ctl.norm)
    return problem, m, (ctl, cfg)


def _run(problem, method, ctl, cfg) -> LoopResult:
    try:
        return integrate_shared(
            problem.f, problem.y0, problem.times, method, ctl, cfg, problem.counter
        )
    except SolverError as err:
        # Give torchdiffeq-style callers the outputs reached so far as a tensor.
        result = err.partial
        if isinstance(result, LoopResult):
            err.partial = problem.unflatten(torch.stack(result.ys)) if result.ys else None
            err.t = problem.user_time(result.t_final)
        raise


def odeint(
    func: Callable,
    y0: Any,
    t: torch.Tensor,
    *,
    rtol: Any = 1e-7,
    atol: Any = 1e-9,
    method: str | None = None,
    options: dict[str, Any] | None = None,
    event_fn: Callable | None = None,
) -> Any:
    """Integrate ``dy/dt = func(t, y)`` from ``y(t[0]) = y0``; torchdiffeq's ``odeint``.

    Args:
        func: ``func(t, y)`` with ``t`` a 0-dim tensor; ``y`` a tensor or a tuple of tensors.
        y0: the initial state (tensor or tuple of tensors).
        t: 1-D output times, strictly increasing or strictly decreasing.
        rtol, atol: tolerances; floats or per-component tensors (per part for tuple states).
        method: a torchdiffeq method name (default ``"dopri5"``) or any name in
            ``kutta.solvers.registry.method_names()``.
        options: torchdiffeq's options (``step_size``, ``first_step``, ``max_num_steps``,
            ``min_step``, ``max_step``, ``norm``, ``step_t``, ``jump_t``, ``perturb``, ``interp``,
            ``dtype``, ...). Unknown names are an error. kutta adds ``compile`` for explicit
            Runge-Kutta methods: ``True`` runs each step as one ``torch.compile``-d graph, which
            pays off for small states and long or repeated solves (the first solve compiles,
            for tens of seconds).
        event_fn: ``event_fn(t, y) -> tensor``; integration stops when it changes sign. Then
            only ``t[0]`` is used and ``(event_t, solution)`` is returned.

    Returns:
        ``(len(t), *y0.shape)`` tensor (a tuple for tuple states), or ``(event_t, solution)``.

    Raises:
        InvalidArgumentError: bad shapes, dtypes, times, method or option names.
        SolverError: NaN/inf, step-size underflow or ``max_num_steps`` exhausted; its
            ``partial`` holds the outputs computed so far.

    Example:
        >>> import torch
        >>> from kutta import odeint
        >>> y = odeint(lambda t, y: -y, torch.tensor([1.0]), torch.linspace(0, 1, 5))
        >>> y.shape, round(float(y[-1]), 5)
        (torch.Size([5, 1]), 0.36788)
    """
    problem, m, extra = _build(func, y0, t, rtol, atol, method, options, event_fn)
    if problem is None:
        from .solvers.scipy_solver import scipy_odeint

        if event_fn is not None:
            raise InvalidArgumentError("scipy_solver does not support event_fn")
        return scipy_odeint(func, y0, t, rtol=rtol, atol=atol, options=extra)
    ctl, cfg = extra
    time_grad = event_fn is None and torch.is_tensor(t) and t.requires_grad
    time_grad = time_grad and torch.is_grad_enabled()
    if time_grad:
        t_user = t.to(device=problem.y0.device, dtype=problem.time_dtype)
        problem.y0 = shift_start(problem, t_user[0])
    result = _run(problem, m, ctl, cfg)
    if event_fn is not None:
        event_t = torch.tensor(
            problem.user_time(result.event_t), dtype=problem.time_dtype, device=problem.y0.device
        )
        return event_t, problem.unflatten(torch.stack([problem.y0, result.event_y]))
    ys = torch.stack(result.ys)
    if time_grad:
        ys = attach_time_gradient(problem, t_user, ys)
    return problem.unflatten(ys)


class _EventTimeGradient(torch.autograd.Function):
    """Routes gradients through the event time by the implicit function theorem.

    At the event, ``g(t*, y(t*)) = 0``; so ``dt*/dtheta = -(dg/dtheta) / (dg/dt)`` with
    ``dg/dt = g_t + g_y . f`` the total derivative along the flow. The forward pass is the
    identity; the backward pass turns a gradient on ``t*`` (and on the state at ``t*``, which
    moves with ``t*``) into a gradient on the state computed at the detached ``t*``.
    """

    @staticmethod
    def forward(ctx, func, event_fn, event_t, state_t):
        ctx.func, ctx.event_fn = func, event_fn
        ctx.save_for_backward(event_t, state_t)
        return event_t.detach(), state_t.detach()

    @staticmethod
    def backward(ctx, grad_t, grad_state):
        event_t, state_t = ctx.saved_tensors
        with torch.enable_grad():
            te = event_t.detach().requires_grad_(True)
            ye = state_t.detach().requires_grad_(True)
            g = ctx.event_fn(te, ye)
            g_t, g_y = torch.autograd.grad(g.sum(), (te, ye), allow_unused=True)
        g_t = torch.zeros_like(te) if g_t is None else g_t
        g_y = torch.zeros_like(ye) if g_y is None else g_y
        with torch.no_grad():
            f_val = ctx.func(event_t, state_t)
            dg_dt = g_t + (g_y * f_val).sum()
            # The state returned at t* also moves with t*: d y(t*) = f dt*.
            total_grad_t = grad_t + (grad_state * f_val).sum()
            grad_state = grad_state - g_y * (total_grad_t / dg_dt)
        return None, None, None, grad_state


def odeint_event(
    func: Callable,
    y0: Any,
    t0: torch.Tensor,
    *,
    event_fn: Callable,
    reverse_time: bool = False,
    odeint_interface: Callable = odeint,
    **kwargs: Any,
) -> tuple[torch.Tensor, Any]:
    """Solve until ``event_fn(t, y)`` changes sign; the event time is differentiable.

    Returns ``(event_t, solution)`` where ``solution`` holds the states at ``t0`` and ``event_t``,
    as torchdiffeq's ``odeint_event``.

    Example:
        >>> import torch
        >>> from kutta import odeint_event
        >>> y0 = torch.tensor([1.0, 0.0])  # height, velocity of a falling ball
        >>> t, ys = odeint_event(lambda t, y: torch.stack([y[1], -torch.ones_like(y[1])]), y0,
        ...                      torch.tensor(0.0), event_fn=lambda t, y: y[0])
        >>> round(float(t), 5)  # sqrt(2), in float32
        1.41421
    """
    t0 = torch.as_tensor(t0)
    step = -1.0 if reverse_time else 1.0
    t = torch.cat([t0.reshape(-1), t0.reshape(-1).detach() + step])
    event_t, solution = odeint_interface(func, y0, t, event_fn=event_fn, **kwargs)
    is_tuple = isinstance(y0, (tuple, list))
    if is_tuple:
        shapes = [p.shape for p in y0]
        sizes = [p.numel() for p in y0]
        state_t = torch.cat([s[-1].reshape(-1) for s in solution])

        def split(flat):
            return tuple(p.view(s) for p, s in zip(torch.split(flat, sizes), shapes))

        def flat_func(tt, y):
            return torch.cat([o.reshape(-1) for o in func(tt, split(y))])

        def flat_event(tt, y):
            return event_fn(tt, split(y))
    else:
        state_t, flat_func, flat_event = solution[-1], func, event_fn
    event_t, state_t = _EventTimeGradient.apply(flat_func, flat_event, event_t, state_t)
    if is_tuple:
        parts = split(state_t)
        solution = tuple(torch.cat([s[:-1], p[None]]) for s, p in zip(solution, parts))
    else:
        solution = torch.cat([solution[:-1], state_t[None]])
    return event_t, solution
