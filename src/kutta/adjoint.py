"""torchdiffeq-compatible ``odeint_adjoint`` on kutta's own loop.

Same signature and semantics as torchdiffeq's: a continuous backsolve adjoint whose gradients
reach ``y0``, the parameters (``adjoint_params``, default an nn.Module's parameters) and every
output time; ``adjoint_options=dict(norm="seminorm")`` gives the seminorm adjoint.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from ._inputs import Counter
from .compat import DEFAULT_METHOD, _build, _run, odeint
from .errors import InvalidArgumentError, SolverError
from .gradients.adjoint import (
    AdjointSetup,
    BackwardRun,
    ContinuousAdjoint,
    StepMemory,
    backward_failure,
    for_augmented_field,
)
from .gradients.base import find_params
from .loop import integrate_shared

__all__ = ["odeint_adjoint"]


def _scalar(tol: Any, name: str) -> float:
    if torch.is_tensor(tol) and tol.numel() == 1:
        return float(tol)
    if isinstance(tol, (int, float)):
        return float(tol)
    raise InvalidArgumentError(
        f"{name} must be a scalar for the backward solve, got {type(tol).__name__}; "
        f"pass a float {name} (per-component tolerances apply to the forward solve only)"
    )


def odeint_adjoint(
    func: Callable,
    y0: Any,
    t: torch.Tensor,
    *,
    rtol: Any = 1e-7,
    atol: Any = 1e-9,
    method: str | None = None,
    options: dict[str, Any] | None = None,
    event_fn: Callable | None = None,
    adjoint_rtol: float | None = None,
    adjoint_atol: float | None = None,
    adjoint_method: str | None = None,
    adjoint_options: dict[str, Any] | None = None,
    adjoint_params: Iterable[torch.Tensor] | None = None,
) -> Any:
    """Integrate like :func:`kutta.odeint`, differentiating by the continuous adjoint.

    Memory does not grow with the number of steps. Gradients reach ``y0``, the parameters and
    ``t`` (all output times, including the first and the last).

    Args:
        func, y0, t, rtol, atol, method, options, event_fn: as in :func:`kutta.odeint`.
        adjoint_rtol, adjoint_atol: backward tolerances (scalars; default ``rtol``, ``atol``).
        adjoint_method: backward method (default ``method``).
        adjoint_options: backward options (default: ``options`` without ``norm`` when the
            backward method is the forward one). ``norm="seminorm"`` leaves the parameter
            channels out of the backward error norm; a callable ``norm`` receives the tuple
            ``(y, adj_y, *adj_params)`` of scaled errors.
        adjoint_params: the tensors to differentiate. Default: ``func.parameters()`` when
            ``func`` (or the object of a bound method) is an ``nn.Module``. A plain callable
            that captures tensors requiring grad must list them here.

    Raises:
        InvalidArgumentError: bad arguments, or a callable with hidden parameters.
        SolverError: a failed forward solve, or a failed backward solve (the message says
            "backward").

    Example:
        >>> import torch
        >>> from kutta import odeint_adjoint
        >>> class Field(torch.nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.linear = torch.nn.Linear(2, 2)
        ...     def forward(self, t, y):
        ...         return self.linear(y)
        >>> field = Field()
        >>> y0 = torch.ones(2, requires_grad=True)
        >>> ys = odeint_adjoint(field, y0, torch.linspace(0.0, 1.0, 3))
        >>> ys[-1].sum().backward()
        >>> y0.grad.shape, field.linear.weight.grad.shape
        (torch.Size([2]), torch.Size([2, 2]))
    """
    params = find_params(func, adjoint_params, "adjoint_params")
    adjoint_method = (method or DEFAULT_METHOD) if adjoint_method is None else adjoint_method
    if adjoint_options is None:
        same = adjoint_method == (method or DEFAULT_METHOD)
        adjoint_options = {k: v for k, v in (options or {}).items() if k != "norm"} if same else {}
    back_rtol = _scalar(rtol if adjoint_rtol is None else adjoint_rtol, "adjoint_rtol")
    back_atol = _scalar(atol if adjoint_atol is None else adjoint_atol, "adjoint_atol")
    for name in (method, adjoint_method):
        if name == "scipy_solver":
            raise InvalidArgumentError("scipy_solver has no adjoint; use another method")

    if event_fn is not None:
        if torch.is_grad_enabled() and (params or _needs_grad(y0)):
            _check_differentiable_event(event_fn, y0, t)
        # Find the event without a graph, then differentiate the solve to the event time. The
        # event time's own gradient is odeint_event's business (implicit function theorem).
        with torch.no_grad():
            event_t, _ = odeint(
                func,
                _detach(y0),
                t,
                rtol=rtol,
                atol=atol,
                method=method,
                options=options,
                event_fn=event_fn,
            )
        t = torch.cat([torch.as_tensor(t).reshape(-1)[:1], event_t.reshape(1).to(t)])
        solution = odeint_adjoint(
            func,
            y0,
            t,
            rtol=rtol,
            atol=atol,
            method=method,
            options=options,
            adjoint_rtol=back_rtol,
            adjoint_atol=back_atol,
            adjoint_method=adjoint_method,
            adjoint_options=adjoint_options,
            adjoint_params=params,
        )
        return event_t, solution

    problem, m, (ctl, cfg) = _build(func, _detach(y0), t, rtol, atol, method, options, None)
    if problem.times.numel() < 2:
        raise InvalidArgumentError("t needs at least two time points")
    forward_memory = StepMemory(ctl)
    with torch.no_grad():
        forward = _run(problem, m, forward_memory, cfg)
    times = problem.times.tolist()
    user_norm = adjoint_options.get("norm")

    def make_backward(aug_norm: Callable) -> BackwardRun:
        norm = aug_norm
        if callable(user_norm):
            norm = _tuple_norm_adapter(user_norm, problem.y0, params, aug_norm)
        elif user_norm not in (None, "seminorm"):
            raise InvalidArgumentError(
                f"adjoint_options norm must be 'seminorm' or a callable, got {user_norm!r}"
            )
        opts = {k: v for k, v in adjoint_options.items() if k != "norm"}
        opts["norm"] = norm
        # The loop's times for the backward solve are tau = -s; handing _build the user's
        # times in backward order makes it map step_t/jump_t into tau.
        back_t = torch.as_tensor(t).detach().flip(0)
        _, back_method, (back_ctl, back_cfg) = _build(
            func, problem.y0, back_t, back_rtol, back_atol, adjoint_method, opts, None
        )
        back_method = for_augmented_field(back_method)
        back_ctl = StepMemory(back_ctl)
        # The forward's last step suits the backward's first only if the method is the same.
        previous = [forward_memory if back_method.name == m.name else back_ctl]
        counter = Counter()

        def run(aug_f, z, tau_start, tau_end):
            span = torch.tensor([tau_start, tau_end], dtype=torch.float64)
            cfg = previous[0].first_step(back_cfg, 0.5 if previous[0] is forward_memory else 1.0)
            previous[0] = back_ctl
            try:
                res = integrate_shared(aug_f, z, span, back_method, back_ctl, cfg, counter)
            except SolverError as err:
                start, end = problem.user_time(-tau_start), problem.user_time(-tau_end)
                where = f"from t = {start:.6g} to t = {end:.6g}"
                raise backward_failure(err, where, start) from None
            return res.ys[-1]

        return run

    setup = AdjointSetup(
        f=problem.f,
        grid=times,
        outputs=list(range(len(times))),
        forward=forward,
        make_backward=make_backward,
        state_norm=ctl.norm,
        seminorm=user_norm == "seminorm",
        time_sign=-1.0 if problem.reverse else 1.0,
    )
    t_in = torch.as_tensor(t)
    ys = ContinuousAdjoint.apply(setup, _flat(y0), t_in, *params)
    return problem.unflatten(ys)


def _needs_grad(y0: Any) -> bool:
    parts = y0 if isinstance(y0, (tuple, list)) else (y0,)
    return any(torch.is_tensor(p) and p.requires_grad for p in parts)


def _check_differentiable_event(event_fn: Callable, y0: Any, t: Any) -> None:
    """Refuse, before solving, an event function that autograd cannot differentiate.

    The event time's gradient comes from the implicit function theorem at the event,
    ``dt*/dtheta = -(dg/dtheta) / (dg/dt)``, which needs ``g = event_fn(t, y)`` to carry a graph
    to ``t`` or ``y``; without one the backward pass would divide by zero.
    """
    t0 = torch.as_tensor(t).reshape(-1)[:1].squeeze(0).detach().requires_grad_(True)
    parts = y0 if isinstance(y0, (tuple, list)) else (y0,)
    probe = tuple(p.detach().requires_grad_(p.is_floating_point()) for p in parts)
    with torch.enable_grad():
        value = event_fn(t0, probe if isinstance(y0, (tuple, list)) else probe[0])
    if not (torch.is_tensor(value) and value.requires_grad):
        raise InvalidArgumentError(
            "event_fn(t, y) is not differentiable: at t0 its result carries no gradient to t or "
            "y (a Python number, .item(), .detach(), a comparison or torch.sign cut the graph). "
            "The adjoint differentiates the event time through event_fn; write it as a "
            "differentiable expression that crosses zero (e.g. y[0] - 1.0 rather than "
            "(y[0] > 1.0).float()), or compute the solution under torch.no_grad()"
        )


def _detach(y0: Any) -> Any:
    if isinstance(y0, (tuple, list)):
        return tuple(p.detach() for p in y0)
    return y0.detach()


def _flat(y0: Any) -> torch.Tensor:
    if isinstance(y0, (tuple, list)):
        return torch.cat([p.reshape(-1) for p in y0])
    return y0


def _tuple_norm_adapter(user_norm: Callable, y0: torch.Tensor, params, aug_norm) -> Callable:
    """A user's adjoint norm gets ``(y, adj_y, *adj_params)`` scaled errors, as in torchdiffeq."""
    n = y0.numel()
    sizes = [n, n] + [p.numel() for p in params]

    def norm(ratio: torch.Tensor) -> torch.Tensor:
        ratio = ratio.reshape(-1)
        if ratio.numel() != sum(sizes):  # the interpolated variant has no y channel
            return aug_norm(ratio)
        parts = torch.split(ratio, sizes)
        shaped = [parts[0].view_as(y0), parts[1].view_as(y0)]
        shaped += [q.view_as(p) for q, p in zip(parts[2:], params)]
        return user_norm(tuple(shaped))

    return norm
