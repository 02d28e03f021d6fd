import math

import pytest
import torch

from kutta import odeint
from kutta.errors import InvalidArgumentError
from kutta.models import UDE, polynomial_library, stlsq

# Lotka-Volterra setup of Rackauckas et al. 2020 (values from shared/reference/published_results.md).
ALPHA, BETA, GAMMA, DELTA = 1.3, 0.9, 0.8, 1.8
U0 = [0.44249296, 4.6280594]


def known(t, u):
    return torch.stack([ALPHA * u[..., 0], -DELTA * u[..., 1]], dim=-1)


class Interaction(torch.nn.Module):
    def forward(self, u):
        return torch.stack([-BETA * u[..., 0] * u[..., 1], GAMMA * u[..., 0] * u[..., 1]], dim=-1)


def lotka_volterra(t, u):
    return known(t, u) + Interaction()(u)


def small_network():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)
    ).double()


FIXED = {"method": "rk4", "options": {"step_size": 0.05}}


def test_known_plus_exact_correction_reproduces_the_full_model():
    t = torch.linspace(0, 3, 31, dtype=torch.float64)
    u0 = torch.tensor([U0], dtype=torch.float64)
    model = UDE(known, Interaction(), rtol=1e-10, atol=1e-10)
    with torch.no_grad():
        expected = odeint(lotka_volterra, u0, t, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(model(u0, t), expected, rtol=1e-8, atol=1e-8)


def test_shapes_batch_independence_and_gradient_step(
    one_step_reduces_loss, assert_every_parameter_gets_gradient
):
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    u0 = torch.tensor([U0, [1.0, 1.0], [2.0, 0.5]], dtype=torch.float64)
    with torch.no_grad():
        data = odeint(lotka_volterra, u0, t, rtol=1e-10, atol=1e-10)
    model = UDE(known, small_network(), **FIXED)
    out = model(u0, t)
    assert out.shape == (11, 3, 2)
    torch.testing.assert_close(out[:, 1:2], model(u0[1:2], t), rtol=1e-12, atol=1e-12)

    def loss():
        return ((model(u0, t) - data) ** 2).mean()

    before, after = one_step_reduces_loss(model, loss, lr=1e-3)
    assert after < before
    assert_every_parameter_gets_gradient(model, loss())


def test_state_dict_round_trip(round_trip):
    model = UDE(known, small_network(), **FIXED)
    u0, t = torch.tensor([U0], dtype=torch.float64), torch.linspace(0, 1, 5, dtype=torch.float64)
    fresh = round_trip(model, lambda: UDE(known, small_network(), **FIXED))
    assert torch.equal(fresh(u0, t), model(u0, t))


def test_polynomial_library_has_every_monomial_once():
    u = torch.tensor([[2.0, 3.0, 5.0]], dtype=torch.float64)
    features, names = polynomial_library(u, 3, names=["x", "y", "z"])
    assert features.shape[1] == len(names) == math.comb(3 + 3, 3)
    assert len(set(names)) == len(names)
    lookup = dict(zip(names, features[0].tolist()))
    assert (
        lookup["1"] == 1
        and lookup["x*y^2"] == 18
        and lookup["z^3"] == 125
        and lookup["x*y*z"] == 30
    )


def test_stlsq_recovers_the_lotka_volterra_interaction():
    g = torch.Generator().manual_seed(0)
    u = 5 * torch.rand(200, 2, generator=g, dtype=torch.float64)
    features, names = polynomial_library(u, 5)
    targets = Interaction()(u)
    xi = stlsq(features, targets, threshold=0.05)
    support = [[names[i] for i in xi[:, k].nonzero().flatten()] for k in range(2)]
    assert support == [["u1*u2"], ["u1*u2"]]
    index = names.index("u1*u2")
    torch.testing.assert_close(
        xi[index], torch.tensor([-BETA, GAMMA], dtype=torch.float64), rtol=1e-9, atol=1e-9
    )
    noisy = targets + 1e-3 * torch.randn(targets.shape, generator=g, dtype=torch.float64)
    xi_noisy = stlsq(features, noisy, threshold=0.05)
    assert torch.equal(xi_noisy != 0, xi != 0)
    torch.testing.assert_close(xi_noisy[index], xi[index], rtol=0, atol=1e-3)


def test_stlsq_drops_coefficients_below_the_threshold():
    u = torch.linspace(-1, 1, 50, dtype=torch.float64).unsqueeze(-1)
    features, names = polynomial_library(u, 2)
    xi = stlsq(features, 2.0 * u + 0.01 * u**2, threshold=0.1)
    assert xi[names.index("u1^2"), 0] == 0
    assert abs(float(xi[names.index("u1"), 0]) - 2.0) < 1e-2


def test_bad_arguments_are_named():
    with pytest.raises(InvalidArgumentError, match="degree"):
        polynomial_library(torch.zeros(3, 2), -1)
    with pytest.raises(InvalidArgumentError, match="names"):
        polynomial_library(torch.zeros(3, 2), 2, names=["a"])
    with pytest.raises(InvalidArgumentError, match="share N"):
        stlsq(torch.zeros(3, 2), torch.zeros(4, 1), threshold=0.1)
