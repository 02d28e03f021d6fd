"""SDEs in ``kutta.solve``: the SDE methods as methods of the shared solve loop.

:class:`SDEMethod` wraps one of kutta.sde's one-step methods in the loop's
:class:`~kutta.solvers.base.Method` contract. The step takes its Brownian increments for
``[t, t + h]`` from the term's Brownian motion, so the loop, its controllers, budget, status
codes and :class:`~kutta.Solution` are the ODE ones:

- fixed steps (no controller, or ``kutta.ConstantController()``) of ``step_size``, ending exactly
  on every output time: the steps ``kutta.sde.sdeint`` takes with ``dt=step_size``;
- adaptive steps (an error-based controller such as ``kutta.PIDController(rtol, atol)``) by step
  doubling: one step against two half steps on the same Brownian path, the error estimate their
  difference. A ``BrownianInterval`` answers repeated queries consistently, so rejected steps do
  not bias the path. Steps also land on every output time: interpolating between the ends of a
  step would add an O(sqrt(h)) error to an SDE's outputs.

Gradients: ``kutta.Backprop()`` differentiates the steps; ``kutta.Adjoint()`` (fixed steps) uses
the stochastic adjoint of ``kutta.sde.sdeint_adjoint``, whose memory does not grow with the
number of steps (exact gradients with ``method="reversible_heun"``; ``Adjoint(method=...)``
names the backward SDE method, e.g. ``"midpoint"``).

Example:
    >>> import torch, kutta
    >>> from kutta.terms import SDETerm
    >>> from kutta.sde import BrownianInterval
    >>> bm = BrownianInterval(0.0, 1.0, size=(16, 1), entropy=0)
    >>> term = SDETerm(lambda t, y: 0.5 * y, lambda t, y: 0.2 * y, bm=bm)
    >>> sol = kutta.solve(term, torch.ones(16, 1), t_eval=torch.linspace(0, 1, 5),
    ...                   method=SDEMethod("milstein"), step_size=0.01)
    >>> sol.ys.shape, sol.stats["n_steps"]
    (torch.Size([5, 16, 1]), 100)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from kutta._inputs import Counter
from kutta.controllers import ConstantController, Controller
from kutta.errors import InvalidArgumentError, SolverError
from kutta.gradients import Adjoint, Backprop, LoopCall, find_params
from kutta.loop import LoopConfig, LoopResult, integrate_shared
from kutta.sde.adjoint import sdeint_adjoint
from kutta.sde.base import SDEView
from kutta.sde.loop import SDEStep, prefetched_increments, step_grid
from kutta.sde.sdeint import prepare
from kutta.solution import Solution, loop_stats
from kutta.status import Status


class SDEMethod:
    """An SDE method for ``kutta.solve``, by its kutta.sde (torchsde) name.

    Args:
        name: one of ``kutta.sde.METHODS`` (``"euler"``, ``"milstein"``, ``"srk"``, ``"heun"``,
            ``"midpoint"``, ``"euler_heun"``, ``"reversible_heun"``, ``"log_ode"``), or None for
            sdeint's default for the term (``"srk"`` for Itô diagonal/additive/scalar noise,
            ``"euler"`` for Itô general noise, ``"midpoint"`` for Stratonovich SDEs).
        options: the method's options, e.g. ``{"grad_free": True}`` for Milstein, or
            ``{"compile": True}`` for ``torch.compile``-d steps ('euler', 'reversible_heun').

    Passing the name alone (``method="milstein"``) is the same as ``SDEMethod("milstein")``.

    Example:
        >>> SDEMethod("milstein", options={"grad_free": True})
        SDEMethod('milstein', options={'grad_free': True})
    """

    def __init__(self, name: str | None = None, options: dict | None = None):
        self.name, self.options = name, dict(options or {})

    def __repr__(self) -> str:
        options = f", options={self.options}" if self.options else ""
        return f"{type(self).__name__}({self.name!r}{options})"

    def for_problem(self, view: SDEView, bm: Any, method_cls: type, doubling: bool) -> SDEStep:
        """The loop's method: ``method_cls`` stepping ``view`` on ``bm``, adaptive if ``doubling``."""
        return SDEStep(method_cls(view, bm, dict(self.options)), doubling)


class _CountedSDE:
    """The term's drift and diffusion, each call counted (the solve's ``nfe``)."""

    def __init__(self, term: Any, counter: Counter):
        self.term, self.counter = term, counter
        self.noise_type, self.sde_type = term.noise_type, term.sde_type
        # A compiled step traces the term itself (stable across solves) and counts here.
        self.compile_target = (term, counter)

    def f(self, t, y):
        self.counter.calls += 1
        return self.term.f(t, y)

    def g(self, t, y):
        self.counter.calls += 1
        return self.term.g(t, y)


def _sde_method(method: Any) -> SDEMethod:
    if method is None or isinstance(method, str):
        return SDEMethod(method)
    if isinstance(method, SDEMethod):
        return method
    raise InvalidArgumentError(
        f"an SDETerm is solved by an SDE method: a name from kutta.sde.METHODS or "
        f"kutta.sde.SDEMethod(name, options), got {method!r}"
    )


def solve_sde(
    term: Any,
    y0: torch.Tensor,
    t_eval: Any,
    *,
    method: Any = None,
    controller: Controller | None = None,
    step_size: float | None = None,
    dt0: float | None = None,
    gradient: Any = None,
    max_steps: int = 100_000,
    raise_on_failure: bool = True,
    unsupported: Sequence[str] = (),
) -> Solution:
    """``kutta.solve`` for an :class:`~kutta.terms.SDETerm` (see :mod:`kutta.sde.native`).

    ``unsupported`` names the ``kutta.solve`` arguments the caller was given that SDE solves
    do not support; they are reported in one error.

    Example:
        >>> import torch
        >>> from kutta.terms import SDETerm
        >>> term = SDETerm(lambda t, y: -y, lambda t, y: 0.1 * y)
        >>> solve_sde(term, torch.ones(2, 3), [0.0, 1.0], method="euler", step_size=0.1).ys.shape
        torch.Size([2, 2, 3])
    """
    if unsupported:
        raise InvalidArgumentError(
            f"{', '.join(unsupported)} {'is' if len(unsupported) == 1 else 'are'} not supported "
            "for SDE terms"
        )
    gradient = Backprop() if gradient is None else gradient
    if type(gradient) not in (Backprop, Adjoint):
        raise InvalidArgumentError(
            f"SDE terms support gradient=kutta.Backprop() or kutta.Adjoint(), got {gradient!r}"
        )
    sde_method = _sde_method(method)
    adaptive = controller is not None and controller.uses_error
    if adaptive:
        if step_size is not None:
            raise InvalidArgumentError(
                "step_size is for fixed steps, but the controller adapts the step; give the "
                "first step as dt0, or drop the controller for fixed steps"
            )
        if dt0 is None:
            raise InvalidArgumentError("adaptive SDE solves need the first step size: dt0=...")
        dt = dt0
    else:
        if dt0 is not None:
            raise InvalidArgumentError(
                "dt0 is for adaptive steps; fixed SDE steps take step_size=..., adaptive ones "
                "need an error-based controller such as kutta.PIDController(rtol, atol)"
            )
        if step_size is None:
            raise InvalidArgumentError(
                "fixed-step SDE solves need step_size=... (or an adaptive controller and dt0)"
            )
        dt = step_size
    if isinstance(t_eval, torch.Tensor) and t_eval.requires_grad and torch.is_grad_enabled():
        raise InvalidArgumentError(
            "gradients with respect to t_eval are not supported for SDE terms; pass t_eval.detach()"
        )
    if not float(dt) > 0:
        raise InvalidArgumentError(f"{'dt0' if adaptive else 'step_size'} must be > 0, got {dt}")
    counter = Counter()
    counted = _CountedSDE(term, counter)
    problem = prepare(counted, y0, t_eval, term.bm, sde_method.name, dt, adaptive, None, False)
    stepper = sde_method.for_problem(problem.sde, problem.bm, problem.method_cls, adaptive)
    y0 = problem.y0
    times = torch.tensor(problem.ts, dtype=torch.float64)
    if adaptive:
        ctl = controller.bind(stepper.error_order, y0.dtype, y0.device, False)
        cfg = LoopConfig(
            max_steps=max_steps,
            first_step=float(dt),
            step_t=problem.ts[1:-1],
            raise_on_failure=False,
        )
        grid_times = []
    else:
        ctl = ConstantController().bind(1, y0.dtype, y0.device, False)
        grid_times = step_grid(problem.ts, float(dt))[0]
        grid = torch.tensor(grid_times, dtype=torch.float64)
        cfg = LoopConfig(max_steps=max_steps, grid=grid, raise_on_failure=False)
    call = LoopCall(integrate_shared, counted.f, y0, times, stepper, ctl, cfg, counter, term)
    if isinstance(gradient, Adjoint):
        result = _stochastic_adjoint(call, problem, gradient, sde_method, float(dt))
    else:
        with prefetched_increments(stepper.stepper, grid_times):
            result = gradient.run(call)
    ys = torch.stack(result.ys)
    sol = Solution(
        ts=problem.ts_tensor[: len(result.ys)],
        ys=ys,
        stats=loop_stats(result, stepper),
        status=torch.tensor(int(result.status)),
    )
    if raise_on_failure and result.status != Status.SUCCESS:
        raise SolverError(result.message, partial=sol, t=result.t_final)
    return sol


def _stochastic_adjoint(call: LoopCall, problem, gradient: Adjoint, method: SDEMethod, dt: float):
    """The solve with gradients by the stochastic adjoint of ``kutta.sde.sdeint_adjoint``:
    memory independent of the step count; exact gradients for reversible Heun."""
    if call.method.adaptive:
        raise InvalidArgumentError(
            "gradient=kutta.Adjoint() for SDE terms supports fixed steps (step_size=...) only"
        )
    if gradient.checkpoints:
        raise InvalidArgumentError("Adjoint(checkpoints=...) is not supported for SDE terms")
    if gradient.method is not None and not isinstance(gradient.method, str):
        raise InvalidArgumentError(
            "for SDE terms, Adjoint(method=...) is the name of the backward SDE method, e.g. "
            f"'midpoint' or 'adjoint_reversible_heun'; got {gradient.method!r}"
        )
    term = call.func
    if gradient.params is not None:
        params = find_params(term, gradient.params, "Adjoint(params=...)")
    else:
        # Each field on its own: a plain callable that hides tensors needing grad is an error.
        found = find_params(term.drift, None, "Adjoint(params=...)")
        found += find_params(term.diffusion, None, "Adjoint(params=...)")
        params = tuple({id(p): p for p in found}.values())
    calls = call.counter.calls
    ys = sdeint_adjoint(
        problem.sde.sde,
        problem.y0,
        problem.ts,
        bm=problem.bm,
        method=call.method.name,
        adjoint_method=gradient.method,
        dt=dt,
        options=method.options,
        adjoint_params=params,
    )
    steps = len(step_grid(problem.ts, dt)[0]) - 1
    return LoopResult(
        list(ys), Status.SUCCESS, call.counter.calls - calls, steps, 0, problem.ts[-1]
    )


__all__ = ["SDEMethod", "solve_sde"]
