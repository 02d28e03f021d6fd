"""Residual-based adaptive refinement (RAR): add collocation points where the PDE is worst met.

Lu, Meng, Mao & Karniadakis (2021), "DeepXDE: a deep learning library for solving differential
equations", SIAM Review 63(1), 208-228 (arXiv:1907.04502), proposed it: train; evaluate the
residual at many random points; while its mean exceeds a tolerance, add the ``m`` points with
the largest residual to the collocation set and train again.
"""

from __future__ import annotations

import dataclasses

import torch

from kutta.errors import InvalidArgumentError
from kutta.pde.pinn.problem import PINNProblem
from kutta.pde.pinn.sampling import Seed


@dataclasses.dataclass
class Refinement:
    """What :func:`refine_by_residual` did.

    ``added`` are the new collocation points ``(m, d)``, ``added_residuals`` their residual
    magnitudes ``(m,)`` (largest first), and ``mean_residual`` the mean magnitude over all
    candidates (the procedure's stopping criterion).
    """

    added: torch.Tensor
    added_residuals: torch.Tensor
    mean_residual: float


def residual_magnitude(
    problem: PINNProblem, points: torch.Tensor, batch_size: int = 4096
) -> torch.Tensor:
    """``|r|`` at each of ``points`` (n, d), detached: the residual's absolute value, or for a
    system its Euclidean norm over the equations. Evaluated ``batch_size`` points at a time, so
    the derivatives' graphs of a large candidate set never coexist.

    Example:
        >>> from kutta.pde.pinn import Interval, PINNProblem
        >>> domain = Interval(0.0, 1.0)
        >>> problem = PINNProblem(torch.nn.Linear(1, 1), lambda x, u, ops: x[:, 0] - 0.5, domain,
        ...                       domain.sample_interior(4))
        >>> residual_magnitude(problem, torch.tensor([[0.0], [0.75]])).tolist()
        [0.5, 0.25]
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidArgumentError(f"batch_size must be an int >= 1, got {batch_size!r}")
    with torch.enable_grad():
        return torch.cat(
            [problem.pde_residual(batch).detach().norm(dim=1) for batch in points.split(batch_size)]
        )


def refine_by_residual(
    problem: PINNProblem,
    num_added: int,
    num_candidates: int = 10_000,
    method: str = "uniform",
    seed: Seed = 0,
    batch_size: int = 4096,
) -> Refinement:
    """Add to ``problem``'s collocation points the ``num_added`` of ``num_candidates`` points,
    sampled in the domain by ``method`` with ``seed``, where :func:`residual_magnitude` is
    largest.

    Use it between calls of :func:`~kutta.pde.pinn.fit.fit` (each call starts fresh
    optimizers on the enlarged problem), with a new ``seed`` per round so the candidates differ:

    Example:
        >>> from kutta.pde.pinn import DirichletBC, Interval, PINNProblem, fit, mlp
        >>> _ = torch.manual_seed(0)
        >>> domain = Interval(0.0, 1.0)
        >>> problem = PINNProblem(
        ...     mlp(1, 1, hidden=8, depth=1), lambda x, u, ops: ops.partial(0, 0) + 2.0, domain,
        ...     domain.sample_interior(8, "lhs"),
        ...     {"boundary": DirichletBC(domain, domain.sample_boundary(2), 0.0)},
        ... ).double()
        >>> _ = fit(problem, adam_steps=0, lbfgs_steps=10)
        >>> for round in range(3):
        ...     refinement = refine_by_residual(problem, 4, num_candidates=200, seed=round)
        ...     if refinement.mean_residual < 1e-3:
        ...         break
        ...     _ = fit(problem, adam_steps=0, lbfgs_steps=10)
        >>> len(problem.collocation) > 8
        True
    """
    if not isinstance(num_added, int) or num_added < 1:
        raise InvalidArgumentError(f"num_added must be an int >= 1, got {num_added!r}")
    if not isinstance(num_candidates, int) or num_candidates < num_added:
        raise InvalidArgumentError(
            f"num_candidates must be an int >= num_added = {num_added}, got {num_candidates!r}"
        )
    collocation = problem.collocation
    candidates = problem.domain.sample_interior(
        num_candidates, method, seed, dtype=collocation.dtype, device=collocation.device
    )
    magnitude = residual_magnitude(problem, candidates, batch_size)
    worst = magnitude.topk(num_added)
    added = candidates[worst.indices]
    problem.add_collocation(added)
    return Refinement(added, worst.values, float(magnitude.mean()))
