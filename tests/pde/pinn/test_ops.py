"""Autograd derivatives: exact on polynomials and trig functions (float64), equal to finite
differences for a network, and differentiable again (residuals train)."""

import pytest
import torch

from kutta.errors import InvalidArgumentError
from kutta.pde.pinn import Derivatives, divergence, gradient, laplacian, mlp, partial


def _points(n=20, d=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return (2 * torch.rand(n, d, generator=generator, dtype=torch.float64) - 1).requires_grad_(True)


def test_polynomial_derivatives_of_every_order_are_exact():
    x = _points()
    a, b = x[:, 0], x[:, 1]
    u = (a**3 * b**2 + 2 * a * b).unsqueeze(1)
    torch.testing.assert_close(
        gradient(u, x), torch.stack([3 * a**2 * b**2 + 2 * b, 2 * a**3 * b + 2 * a], 1)
    )
    torch.testing.assert_close(partial(u, x, 0, 0), 6 * a * b**2)
    torch.testing.assert_close(partial(u, x, 0, 1), 6 * a**2 * b + 2)
    torch.testing.assert_close(partial(u, x, 1, 0), 6 * a**2 * b + 2)
    torch.testing.assert_close(partial(u, x, 0, 0, 0, 1), 12 * b)
    torch.testing.assert_close(partial(u, x, 0, 0, 0, 0), torch.zeros_like(a))
    torch.testing.assert_close(laplacian(u, x), 6 * a * b**2 + 2 * a**3)
    torch.testing.assert_close(partial(u, x), u[:, 0])


def test_trig_laplacian_and_divergence_are_exact():
    x = _points(d=3)
    a, b, c = x.unbind(1)
    u = torch.sin(2 * a) * torch.cos(3 * b) * torch.exp(c)
    torch.testing.assert_close(laplacian(u, x), (-4 - 9 + 1) * u)
    torch.testing.assert_close(laplacian(u, x, axes=[0, 1]), -13 * u)
    field = torch.stack([torch.sin(a) * b, torch.cos(b) * c, a * c**2], dim=1)
    torch.testing.assert_close(
        divergence(field, x), torch.cos(a) * b - torch.sin(b) * c + 2 * a * c
    )


def test_derivatives_object_caches_and_agrees_with_the_functions():
    x = _points(d=2)
    u = torch.stack([torch.sin(x[:, 0]) * x[:, 1] ** 2, x[:, 0] * x[:, 1]], dim=1)
    ops = Derivatives(x, u)
    torch.testing.assert_close(ops.partial(0, 1), partial(u, x, 0, 1))
    assert ops.partial(1, 0) is ops.partial(0, 1)  # mixed partials are shared
    torch.testing.assert_close(ops.gradient(component=1), gradient(u, x, component=1))
    torch.testing.assert_close(ops.laplacian(), laplacian(u, x))
    torch.testing.assert_close(ops.divergence(), divergence(u, x))
    torch.testing.assert_close(ops.partial(1, 1, 0), 2 * torch.cos(x[:, 0]))


def test_network_derivatives_match_finite_differences():
    torch.manual_seed(0)
    net = mlp(2, 1, hidden=16, depth=3).double()
    x = _points(n=10)
    u = net(x)
    h = 1e-4
    for axis in range(2):
        step = torch.zeros(2, dtype=torch.float64)
        step[axis] = h
        with torch.no_grad():
            up, mid, down = net(x + step)[:, 0], net(x)[:, 0], net(x - step)[:, 0]
        torch.testing.assert_close(partial(u, x, axis), (up - down) / (2 * h), rtol=1e-7, atol=1e-8)
        torch.testing.assert_close(
            partial(u, x, axis, axis), (up - 2 * mid + down) / h**2, rtol=1e-5, atol=1e-5
        )


def test_residuals_are_differentiable_in_the_parameters():
    # gradcheck of the map weights -> Laplacian of the network at fixed points (float64):
    # checks that create_graph keeps the derivatives trainable, and that their gradients are right
    torch.manual_seed(1)
    net = mlp(2, 1, hidden=5, depth=2).double()
    x0 = _points(n=4).detach()
    weight = net[0].weight.detach().clone().requires_grad_(True)

    def laplacian_of_net(w):
        x = x0.clone().requires_grad_(True)
        hidden = torch.tanh(x @ w.T + net[0].bias)
        return laplacian(net[2:](hidden), x)

    assert torch.autograd.gradcheck(laplacian_of_net, (weight,))


def test_a_function_not_of_x_has_zero_derivatives():
    x = _points()
    u = torch.ones(len(x), 1, dtype=torch.float64, requires_grad=True)
    assert torch.equal(partial(u, x, 0, 0), torch.zeros(len(x), dtype=torch.float64))


def test_bad_inputs_are_rejected():
    x = _points()
    with pytest.raises(InvalidArgumentError, match="requires_grad"):
        gradient(x.detach()[:, :1], x.detach())
    with pytest.raises(InvalidArgumentError, match="20 rows"):
        gradient(x[:5, :1], x)
    with pytest.raises(InvalidArgumentError, match="axis 2 out of range"):
        partial(x[:, :1] ** 2, x, 2)
    with pytest.raises(InvalidArgumentError, match="component 3"):
        partial(x**2, x, 0, component=3)
    with pytest.raises(InvalidArgumentError, match="pairs each"):
        divergence(torch.cat([x, x], 1), x)
    with pytest.raises(InvalidArgumentError, match="out of range"):
        Derivatives(x, x**2).partial(0, 5)
