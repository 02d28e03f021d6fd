"""Conditions compute the residuals they claim, and refuse points that are not where they belong."""

import math

import pytest
import torch

from kutta.errors import InvalidArgumentError
from kutta.pde.pinn import (
    DirichletBC,
    InitialCondition,
    Interval,
    NeumannBC,
    Observations,
    PeriodicBC,
    Rectangle,
    SpaceTime,
)

F64 = torch.float64


def test_dirichlet_residual_and_targets_of_every_kind():
    domain = Rectangle([0, 0], [1, 2])
    points = domain.sample_boundary(30, seed=0, dtype=F64)

    def net(x):
        return (x[:, :1] ** 2 + x[:, 1:]).clone()

    exact = points[:, 0] ** 2 + points[:, 1]
    for target in (lambda x: x[:, 0] ** 2 + x[:, 1], exact, exact[:, None]):
        assert DirichletBC(domain, points, target).residual(net).abs().max() == 0
    torch.testing.assert_close(DirichletBC(domain, points, 1.0).residual(net), exact - 1.0)


def test_neumann_uses_outward_normals():
    domain = Rectangle([0, 0], [1, 1])
    points = torch.tensor([[0.0, 0.3], [1.0, 0.3], [0.4, 0.0], [0.4, 1.0]], dtype=F64)

    def net(x):
        return x[:, :1] ** 2 + 3 * x[:, 1:]  # gradient (2x, 3)

    residual = NeumannBC(domain, points, 0.0).residual(net)
    torch.testing.assert_close(residual, torch.tensor([-0.0, 2.0, -3.0, 3.0], dtype=F64))


def test_periodic_pairs_each_point_with_its_mirror():
    domain = SpaceTime(Interval(0, 1), 0, 1)
    points = torch.tensor([[0.0, 0.2], [0.0, 0.7]], dtype=F64)

    def periodic(x):
        return (torch.sin(2 * math.pi * x[:, :1]) + x[:, 1:]).clone()

    def linear(x):
        return 3 * x[:, :1] + x[:, 1:] ** 2

    assert PeriodicBC(domain, points, axis=0).residual(periodic).abs().max() < 1e-12
    assert (
        PeriodicBC(domain, points, axis=0, derivative_order=1).residual(periodic).abs().max()
        < 1e-12
    )
    torch.testing.assert_close(
        PeriodicBC(domain, points, axis=0).residual(linear), torch.full((2,), -3.0, dtype=F64)
    )
    torch.testing.assert_close(
        PeriodicBC(domain, points, axis=0, derivative_order=1).residual(linear),
        torch.zeros(2, dtype=F64),
    )


def test_initial_condition_and_observations():
    domain = SpaceTime(Interval(-1, 1), 0, 1)
    points = domain.sample_initial(10, "lhs", dtype=F64)
    ic = InitialCondition(domain, points, lambda x: -torch.sin(math.pi * x[:, 0]))
    assert ic.residual(lambda x: -torch.sin(math.pi * x[:, :1])).abs().max() == 0
    inside = domain.sample_interior(5, dtype=F64)
    data = Observations(domain, inside, torch.zeros(5, dtype=F64))
    torch.testing.assert_close(data.residual(lambda x: x[:, 1:]), inside[:, 1])


def test_points_in_the_wrong_place_are_rejected():
    square = Rectangle([0, 0], [1, 1])
    with pytest.raises(InvalidArgumentError, match=r"1 of 2 points are not on the boundary.*row 1"):
        DirichletBC(square, torch.tensor([[0.0, 0.5], [0.5, 0.5]]), 0.0)
    with pytest.raises(InvalidArgumentError, match="not on the boundary"):
        NeumannBC(square, torch.tensor([[0.5, 0.5]]), 0.0)
    with pytest.raises(InvalidArgumentError, match="low face"):
        PeriodicBC(square, torch.tensor([[1.0, 0.5]]), axis=0)
    with pytest.raises(InvalidArgumentError, match="not a spatial axis"):
        PeriodicBC(SpaceTime(Interval(0, 1), 0, 1), torch.tensor([[0.0, 0.5]]), axis=1)
    with pytest.raises(InvalidArgumentError, match="outside"):
        Observations(square, torch.tensor([[0.5, 1.5]]), 0.0)
    space_time = SpaceTime(Interval(0, 1), 0, 1)
    with pytest.raises(InvalidArgumentError, match="not at t0"):
        InitialCondition(space_time, torch.tensor([[0.5, 0.1]]), 0.0)
    with pytest.raises(InvalidArgumentError, match="SpaceTime"):
        InitialCondition(square, torch.tensor([[0.5, 0.0]]), 0.0)
    with pytest.raises(InvalidArgumentError, match=r"shape \(n, 2\)"):
        DirichletBC(square, torch.tensor([0.0, 0.5]), 0.0)


def test_targets_and_networks_of_the_wrong_shape_are_rejected():
    domain = Interval(0, 1)
    ends = torch.tensor([[0.0], [1.0]])
    with pytest.raises(InvalidArgumentError, match=r"one value per point.*got \(3,\)"):
        DirichletBC(domain, ends, torch.zeros(3))
    with pytest.raises(InvalidArgumentError, match="network must map"):
        DirichletBC(domain, ends, 0.0).residual(lambda x: x[:, 0])
    with pytest.raises(InvalidArgumentError, match="m > 1"):
        DirichletBC(domain, ends, 0.0, component=1).residual(lambda x: x)
