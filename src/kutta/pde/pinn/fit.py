"""Training a PINN: Adam, then L-BFGS with a strong Wolfe line search (full batch).

Kept here rather than in ``kutta.train`` because the Trainer steps a first-order optimizer on
mini-batches, while L-BFGS re-evaluates the whole loss inside its line search (a closure).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import torch

from kutta.errors import InvalidArgumentError, SolverError
from kutta.pde.pinn.problem import PINNProblem


@dataclasses.dataclass
class FitHistory:
    """What happened in :func:`fit`: one record per logged step, and the time of each phase.

    ``records`` hold ``step`` (Adam steps, then L-BFGS iterations counted on), ``phase``,
    ``loss`` (weighted), each term's unweighted loss, the weights, and the coefficients.
    """

    records: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    adam_steps: int = 0
    lbfgs_iterations: int = 0
    #: loss-and-gradient evaluations L-BFGS made (its line search takes more than one per iteration)
    lbfgs_evaluations: int = 0
    adam_time_s: float = 0.0
    lbfgs_time_s: float = 0.0

    @property
    def final_loss(self) -> float:
        return self.records[-1]["loss"] if self.records else math.nan


def fit(
    problem: PINNProblem,
    *,
    adam_steps: int = 1000,
    lr: float = 1e-3,
    lbfgs_steps: int = 0,
    history_size: int = 50,
    tolerance_grad: float = 1e-8,
    log_every: int = 100,
    callback: Callable[[dict[str, Any]], None] | None = None,
) -> FitHistory:
    """Minimize ``problem.loss()``: ``adam_steps`` of Adam, then up to ``lbfgs_steps`` L-BFGS
    iterations (``torch.optim.LBFGS``, strong Wolfe line search, at most 1.25 loss evaluations
    per iteration on average; it stops early once the gradient's largest entry is below
    ``tolerance_grad``). Adaptive weights update during Adam only: L-BFGS needs a fixed objective.

    The problem's dtype is its parameters' and points' (``problem.to(torch.float64)``).
    ``callback`` receives every logged record. Each call starts fresh optimizers, so calls can
    alternate with changes to the problem, e.g. residual-based refinement of its collocation
    points (:func:`~kutta.pde.pinn.refinement.refine_by_residual` shows the loop).

    Example:
        >>> from kutta.pde.pinn import DirichletBC, Interval, PINNProblem, mlp
        >>> _ = torch.manual_seed(0)
        >>> domain = Interval(0.0, 1.0)
        >>> problem = PINNProblem(
        ...     mlp(1, 1, hidden=8, depth=1), lambda x, u, ops: ops.partial(0, 0) + 2.0, domain,
        ...     domain.sample_interior(16, "lhs"),
        ...     {"boundary": DirichletBC(domain, domain.sample_boundary(2), 0.0)},
        ... ).double()
        >>> history = fit(problem, adam_steps=10, lbfgs_steps=40, log_every=20)
        >>> history.final_loss < 1e-4  # u = x (1 - x)
        True
    """
    for name, value in (("adam_steps", adam_steps), ("lbfgs_steps", lbfgs_steps)):
        if not isinstance(value, int) or value < 0:
            raise InvalidArgumentError(f"{name} must be an int >= 0, got {value!r}")
    if log_every < 1:
        raise InvalidArgumentError(f"log_every must be >= 1, got {log_every}")
    parameters = [p for p in problem.parameters() if p.requires_grad]
    if not parameters:
        raise InvalidArgumentError("the problem has no trainable parameters")
    history = FitHistory()

    def record(step: int, phase: str, losses: dict[str, torch.Tensor]) -> None:
        loss = float(problem.total(losses).detach())
        if not math.isfinite(loss):
            raise SolverError(
                f"PINN training diverged in {phase} at step {step}: the loss is {loss}; "
                "try a smaller lr or float64",
                partial=history,
            )
        entry = {"step": step, "phase": phase, "loss": loss}
        entry.update({f"loss/{k}": float(v.detach()) for k, v in losses.items()})
        entry.update({f"weight/{k}": v for k, v in problem.weights().items()})
        if problem.coefficients is not None:
            entry.update(problem.coefficients.values())
        history.records.append(entry)
        if callback is not None:
            callback(entry)

    started = time.perf_counter()
    if adam_steps:
        adam = torch.optim.Adam(parameters, lr=lr)
        for step in range(1, adam_steps + 1):
            losses = problem.losses()
            problem.weighting.update(losses, parameters)
            total = problem.total(losses)
            adam.zero_grad(set_to_none=True)
            total.backward()
            adam.step()
            if step % log_every == 0 or step == adam_steps:
                record(step, "adam", losses)
    history.adam_steps = adam_steps
    history.adam_time_s = time.perf_counter() - started

    started = time.perf_counter()
    if lbfgs_steps:
        stepper = LBFGSStepper(problem, history_size=history_size, tolerance_grad=tolerance_grad)
        while stepper.iterations < lbfgs_steps:
            advanced = stepper.step(min(log_every, lbfgs_steps - stepper.iterations))
            record(adam_steps + stepper.iterations, "lbfgs", problem.losses())
            if advanced == 0:  # converged: the gradient is below tolerance_grad
                break
        history.lbfgs_iterations = stepper.iterations
        history.lbfgs_evaluations = stepper.evaluations
    history.lbfgs_time_s = time.perf_counter() - started
    return history


class LBFGSStepper:
    """L-BFGS (``torch.optim.LBFGS``, strong Wolfe line search) on ``problem.loss()``, run a
    few iterations at a time.

    ``torch.optim.LBFGS.step`` starts by evaluating the loss at the current parameters, which
    the previous call's line search has already done; the last evaluation is remembered (keyed
    by the exact parameter values), so stepping one iteration at a time costs no extra
    evaluations. History and curvature pairs persist between calls.

    Example:
        >>> from kutta.pde.pinn import Interval, PINNProblem, mlp
        >>> domain = Interval(0.0, 1.0)
        >>> problem = PINNProblem(mlp(1, 1, hidden=4, depth=1), lambda x, u, ops: u[:, 0] - 1.0,
        ...                       domain, domain.sample_interior(8))
        >>> stepper = LBFGSStepper(problem)
        >>> stepper.step(3), stepper.iterations
        (3, 3)
    """

    def __init__(self, problem: PINNProblem, history_size: int = 50, tolerance_grad: float = 1e-8):
        self.problem = problem
        self.parameters = [p for p in problem.parameters() if p.requires_grad]
        if not self.parameters:
            raise InvalidArgumentError("the problem has no trainable parameters")
        self.optimizer = torch.optim.LBFGS(
            self.parameters,
            lr=1.0,
            tolerance_grad=tolerance_grad,
            # 0: never stop on a small change of the loss (PINN losses decrease in tiny steps)
            tolerance_change=0.0,
            history_size=history_size,
            line_search_fn="strong_wolfe",
        )
        self.evaluations = 0
        self._last: tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]] | None = None

    @property
    def iterations(self) -> int:
        return int(self.optimizer.state[self.parameters[0]].get("n_iter", 0))

    @property
    def last_loss(self) -> torch.Tensor:
        """The loss at the last evaluated parameters (NaN before the first step)."""
        return self._last[1] if self._last is not None else torch.tensor(math.nan)

    def step(self, iterations: int = 1) -> int:
        """Run up to ``iterations`` iterations (at most 1.25 evaluations each on average, as
        DeepXDE does); returns how many ran (0 once the gradient is below tolerance)."""
        before = self.iterations
        group = self.optimizer.param_groups[0]
        group["max_iter"], group["max_eval"] = iterations, math.ceil(1.25 * iterations) + 1
        self.optimizer.step(self._closure)
        return self.iterations - before

    def _closure(self) -> torch.Tensor:
        flat = torch.cat([p.detach().reshape(-1) for p in self.parameters])
        if self._last is not None and torch.equal(flat, self._last[0]):
            for parameter, grad in zip(self.parameters, self._last[2]):
                parameter.grad = grad.clone()
            return self._last[1]
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.problem.loss()
        loss.backward()
        self.evaluations += 1
        grads = [
            torch.zeros_like(p) if p.grad is None else p.grad.detach().clone()
            for p in self.parameters
        ]
        self._last = (flat, loss.detach(), grads)
        return loss.detach()
