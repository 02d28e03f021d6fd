"""Output transforms: the residual, the conditions and predictions see the transformed output,
so a transform that vanishes on the boundary enforces a Dirichlet condition exactly, and a
PINN solves Poisson's equation on the disk with it."""

import math

import pytest
import torch

from kutta.errors import InvalidArgumentError
from kutta.pde.pinn import DirichletBC, Disk, Interval, PINNProblem, fit, mlp

F64 = torch.float64


def _constant_network(value: float) -> torch.nn.Module:
    network = mlp(1, 1, hidden=4, depth=1).double()
    with torch.no_grad():
        network[-1].weight.zero_()
        network[-1].bias.fill_(value)
    return network


def test_residual_conditions_and_predictions_see_the_transformed_output():
    # network = c, u = x (1 - x) c: u'' = -2c, and u = 0 at both ends for every c
    domain = Interval(0.0, 1.0)
    points = domain.sample_interior(10, seed=0, dtype=F64)
    ends = torch.tensor([[0.0], [1.0]], dtype=F64)
    problem = PINNProblem(
        _constant_network(3.0),
        lambda x, u, ops: ops.partial(0, 0) + 1.0,
        domain,
        points,
        {"boundary": DirichletBC(domain, ends, 0.0), "right": DirichletBC(domain, ends[1:], 2.0)},
        output_transform=lambda x, u_raw: x * (1 - x) * u_raw,
    )
    torch.testing.assert_close(
        problem.pde_residual(points)[:, 0], torch.full((10,), -5.0, dtype=F64)
    )
    losses = problem.losses()
    assert losses["boundary"].item() == 0.0 and losses["right"].item() == 4.0
    torch.testing.assert_close(problem.predict(points), 3.0 * points * (1 - points))
    # without the transform the same network is the constant 3
    plain = PINNProblem(
        _constant_network(3.0), lambda x, u, ops: ops.partial(0, 0) + 1.0, domain, points
    )
    torch.testing.assert_close(plain.predict(ends), torch.full((2, 1), 3.0, dtype=F64))


def test_poisson_on_the_unit_disk_with_the_boundary_condition_built_in():
    # -laplacian u = 4 on the unit disk, u = 0 on the circle: exact u = 1 - r**2 (the
    # Laplacian of r**2 = x**2 + y**2 is 4). The transform u = (1 - r**2) net(x) vanishes on the
    # circle, so the problem has no boundary term at all.
    torch.manual_seed(0)
    disk = Disk([0.0, 0.0], 1.0)
    problem = PINNProblem(
        mlp(2, 1, hidden=16, depth=2).double(),
        lambda x, u, ops: -ops.laplacian() - 4.0,
        disk,
        disk.sample_interior(128, "sobol", seed=0, dtype=F64),
        output_transform=lambda x, u_raw: (1 - (x**2).sum(dim=1, keepdim=True)) * u_raw,
    )
    assert problem.term_names == ["pde"]
    points = disk.sample_interior(2000, seed=9, dtype=F64)
    exact = 1 - (points**2).sum(dim=1)

    def error():
        return float((problem.predict(points)[:, 0] - exact).norm() / exact.norm())

    before = error()
    fit(problem, adam_steps=0, lbfgs_steps=100, log_every=50)
    # seed 0 reaches 5e-5 in 100 iterations (under a second); the bound leaves a factor 20
    assert before > 0.5 and error() < 1e-3
    circle = disk.sample_boundary(100, seed=1, dtype=F64)
    assert float(problem.predict(circle).abs().max()) < 1e-12


def test_bad_transforms_are_rejected():
    domain = Interval(0.0, 1.0)
    points = domain.sample_interior(4, dtype=F64)
    network = mlp(1, 1, hidden=4, depth=1).double()

    def residual(x, u, ops):
        return ops.partial(0, 0)

    with pytest.raises(InvalidArgumentError, match="output_transform must be a function"):
        PINNProblem(network, residual, domain, points, output_transform=math.pi)
    flat = PINNProblem(network, residual, domain, points, output_transform=lambda x, u: u[:, 0])
    with pytest.raises(InvalidArgumentError, match=r"with its output transform must map.*\(4,\)"):
        flat.losses()
    with pytest.raises(InvalidArgumentError, match="got float"):
        PINNProblem(network, residual, domain, points, output_transform=lambda x, u: 1.0).predict(
            points
        )
