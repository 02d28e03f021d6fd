"""Residual-based adaptive refinement (Lu et al. 2021): the points added are the candidates with
the largest residual, found again here by brute force, and the collocation set grows by them."""

import pytest
import torch

from kutta.errors import InvalidArgumentError
from kutta.pde.pinn import (
    DirichletBC,
    Disk,
    Interval,
    PINNProblem,
    Rectangle,
    fit,
    mlp,
    refine_by_residual,
    residual_magnitude,
)

F64 = torch.float64


def _plate_problem():
    """-laplacian u = 1 on a square with a hole, u = 0 on its boundary (untrained network)."""
    torch.manual_seed(0)
    plate = Rectangle([-1.0, -1.0], [1.0, 1.0]) - Disk([0.3, 0.0], 0.4)
    return PINNProblem(
        mlp(2, 1, hidden=16, depth=2).double(),
        lambda x, u, ops: -ops.laplacian() - 1.0,
        plate,
        plate.sample_interior(50, "lhs", seed=0, dtype=F64),
        {"boundary": DirichletBC(plate, plate.sample_boundary(40, seed=0, dtype=F64), 0.0)},
    )


def test_added_points_are_the_candidates_with_the_largest_residual():
    problem = _plate_problem()
    before = problem.collocation.clone()
    refinement = refine_by_residual(problem, 10, num_candidates=500, method="sobol", seed=3)

    candidates = problem.domain.sample_interior(500, "sobol", seed=3, dtype=F64)
    residuals = problem.pde_residual(candidates).detach()[:, 0].abs()
    order = torch.argsort(residuals, descending=True)
    torch.testing.assert_close(refinement.added, candidates[order[:10]])
    torch.testing.assert_close(refinement.added_residuals, residuals[order[:10]])
    assert float(refinement.added_residuals.min()) >= float(residuals[order[10:]].max())
    assert refinement.mean_residual == pytest.approx(float(residuals.mean()))
    # the residual is not flat, so the choice matters
    assert float(residuals[order[0]]) > 1.3 * float(residuals.median())

    assert problem.collocation.shape == (60, 2)
    assert torch.equal(problem.collocation[:50], before)
    assert torch.equal(problem.collocation[50:], refinement.added)
    assert bool(problem.domain.contains(refinement.added).all())


def test_magnitude_is_the_norm_over_equations_and_independent_of_the_batch_size():
    domain = Interval(0.0, 1.0)
    problem = PINNProblem(
        mlp(1, 2, hidden=8, depth=1).double(),
        lambda x, u, ops: [ops.partial(0) - u[:, 1], ops.partial(0, component=1) + u[:, 0]],
        domain,
        domain.sample_interior(4, dtype=F64),
    )
    points = domain.sample_interior(37, seed=1, dtype=F64)
    whole = residual_magnitude(problem, points)
    torch.testing.assert_close(whole, problem.pde_residual(points).detach().norm(dim=1))
    torch.testing.assert_close(residual_magnitude(problem, points, batch_size=5), whole)
    assert not whole.requires_grad


def test_fit_after_a_refinement_trains_on_the_added_points():
    problem = _plate_problem()
    fit(problem, adam_steps=0, lbfgs_steps=20, log_every=20)
    refinement = refine_by_residual(problem, 20, num_candidates=1000, seed=0)
    history = fit(problem, adam_steps=0, lbfgs_steps=60, log_every=60)
    assert len(problem.collocation) == 70
    after = residual_magnitude(problem, refinement.added)
    assert float(after.max()) < float(refinement.added_residuals.min())
    # the PDE term is the mean over all 70 points
    residual = problem.pde_residual(problem.collocation).detach()
    assert history.records[-1]["loss/pde"] == pytest.approx(float(residual.pow(2).mean()))


def test_bad_requests_are_rejected():
    problem = _plate_problem()
    with pytest.raises(InvalidArgumentError, match="num_added must be an int >= 1"):
        refine_by_residual(problem, 0)
    with pytest.raises(InvalidArgumentError, match="num_candidates must be an int >= num_added"):
        refine_by_residual(problem, 10, num_candidates=5)
    with pytest.raises(InvalidArgumentError, match="batch_size"):
        residual_magnitude(problem, problem.collocation, batch_size=0)
    with pytest.raises(InvalidArgumentError, match="outside"):
        problem.add_collocation(torch.tensor([[0.3, 0.0]], dtype=F64))  # in the hole
    with pytest.raises(InvalidArgumentError, match="float32 but the collocation points"):
        problem.add_collocation(torch.tensor([[0.9, 0.9]]))
    assert len(problem.collocation) == 50
