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
    ``callback`` receives every logged record.

    Example:
        >>> from kutta.pde.pinn import DirichletBC, Interval, PINNProblem, mlp
        >>> _ = torch.manual_seed(0)
        >>> domain = Interval(0.0, 1.0)
        >>> problem = PINNProblem(
        ...     mlp(1, 1, hidden=10, depth=2), lambda x, u, ops: ops.partial(0, 0) + 2.0, domain,
        ...     domain.sample_interior(32, "lhs"),
        ...     {"boundary": DirichletBC(domain, domain.sample_boundary(2), 0.0)},
        ... ).double()
        >>> history = fit(problem, adam_steps=10, lbfgs_steps=60, log_every=30)
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
        lbfgs = torch.optim.LBFGS(
            parameters,
            lr=1.0,
            max_iter=min(log_every, lbfgs_steps),
            max_eval=math.ceil(1.25 * min(log_every, lbfgs_steps)),
            tolerance_grad=tolerance_grad,
            tolerance_change=0.0,
            history_size=history_size,
            line_search_fn="strong_wolfe",
        )

        def closure() -> torch.Tensor:
            lbfgs.zero_grad(set_to_none=True)
            loss = problem.loss()
            loss.backward()
            return loss

        done = 0
        while done < lbfgs_steps:
            chunk = min(log_every, lbfgs_steps - done)
            lbfgs.param_groups[0]["max_iter"] = chunk
            lbfgs.param_groups[0]["max_eval"] = math.ceil(1.25 * chunk)
            lbfgs.step(closure)
            advanced = lbfgs.state[parameters[0]]["n_iter"] - done
            done += advanced
            with torch.enable_grad():
                record(adam_steps + done, "lbfgs", problem.losses())
            if advanced == 0:  # converged: the gradient is below tolerance_grad
                break
        history.lbfgs_iterations = done
    history.lbfgs_time_s = time.perf_counter() - started
    return history
