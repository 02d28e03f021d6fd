import pytest
import torch

from kutta.errors import InvalidArgumentError, UnknownNameError
from kutta.models import CNF, TimeMLP
from kutta.models.cnf import exact_divergence, hutchinson_divergence

FIXED = {"method": "rk4", "options": {"step_size": 0.125}}


class LinearField(torch.nn.Module):
    def __init__(self, a):
        super().__init__()
        self.a = torch.nn.Parameter(a)

    def forward(self, t, x):
        return x @ self.a.T


def test_linear_flow_log_prob_and_regularizers_are_exact():
    # x(t) = expm(A t) x, so z = expm(A t1) x and log p(x) = log N(z) + t1 tr(A);
    # int ||df/dx||_F^2 dt = t1 ||A||_F^2.
    a = torch.tensor([[-0.4, 1.0], [-0.7, 0.3]], dtype=torch.float64)
    flow = CNF(2, func=LinearField(a.clone()), t1=0.8, rtol=1e-10, atol=1e-12).double()
    x = torch.randn(5, 2, dtype=torch.float64)
    with torch.no_grad():
        out = flow(x)
        z = x @ torch.linalg.matrix_exp(0.8 * a).T
        expected = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1) + 0.8 * torch.trace(a)
        torch.testing.assert_close(out.log_prob, expected, rtol=1e-8, atol=1e-8)
        torch.testing.assert_close(
            out.jacobian_norm, torch.full((5,), 0.8 * float((a**2).sum()), dtype=torch.float64)
        )
        ts = torch.linspace(0, 0.8, 2001, dtype=torch.float64)
        speeds = torch.stack(
            [((x @ torch.linalg.matrix_exp(t * a).T @ a.T) ** 2).sum(-1) for t in ts]
        )
        torch.testing.assert_close(
            out.kinetic_energy, torch.trapezoid(speeds, ts, dim=0), rtol=1e-6, atol=1e-8
        )
        torch.testing.assert_close(flow.inverse(flow.transform(x)), x, rtol=1e-8, atol=1e-8)


@torch.no_grad()
def test_one_dimensional_density_integrates_to_one():
    torch.manual_seed(3)
    flow = CNF(1, hidden=(16, 16), rtol=1e-8, atol=1e-8).double()
    grid = torch.linspace(-10, 10, 1601, dtype=torch.float64).unsqueeze(-1)
    density = flow.log_prob(grid).exp()
    assert abs(float(torch.trapezoid(density, grid[:, 0])) - 1.0) < 1e-4


@pytest.mark.parametrize("noise", ["rademacher", "gaussian"])
def test_hutchinson_estimates_are_unbiased(noise):
    # Mean of n independent probe estimates vs the exact values: a z-test at 4.5 sigma
    # (false alarm rate ~1e-5), sigma estimated from the same probes.
    torch.manual_seed(4)
    field = TimeMLP(4, hidden=(16,), layer="concatsquash").double()
    n = 20000
    x = torch.randn(1, 4, dtype=torch.float64).expand(n, 4).clone().requires_grad_(True)
    dx = field(torch.tensor(0.3, dtype=torch.float64), x)
    exact_trace, exact_frobenius = exact_divergence(dx, x, create_graph=False)
    probes = torch.randn_like(x) if noise == "gaussian" else torch.randint_like(x, 0, 2) * 2 - 1
    trace, frobenius = hutchinson_divergence(dx, x, probes, create_graph=False)
    for estimate, exact in [(trace, exact_trace[0]), (frobenius, exact_frobenius[0])]:
        stderr = estimate.std() / n**0.5
        assert stderr > 0
        assert abs(float(estimate.mean() - exact)) < 4.5 * float(stderr)


@torch.no_grad()
def test_hutchinson_log_prob_is_unbiased():
    torch.manual_seed(5)
    exact = CNF(2, hidden=(16,), **FIXED).double()
    estimated = CNF(2, hidden=(16,), trace="hutchinson", **FIXED).double()
    estimated.load_state_dict(exact.state_dict())
    n = 4000
    x = torch.randn(1, 2, dtype=torch.float64)
    estimates = estimated.log_prob(x.expand(n, 2))
    stderr = estimates.std() / n**0.5
    assert abs(float(estimates.mean() - exact.log_prob(x)[0])) < 4.5 * float(stderr)


def test_rows_are_independent_of_the_batch():
    flow = CNF(2, hidden=(8,), **FIXED).double()
    x = torch.randn(6, 2, dtype=torch.float64)
    torch.testing.assert_close(flow.log_prob(x)[:2], flow.log_prob(x[:2]), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("trace", ["exact", "hutchinson"])
def test_gradient_step_and_every_parameter_is_used(
    trace, one_step_reduces_loss, assert_every_parameter_gets_gradient
):
    flow = CNF(2, hidden=(8,), trace=trace, **FIXED)
    x = torch.randn(64, 2) * 0.5 + 1.0

    def loss():
        torch.manual_seed(6)  # the same probes before and after the step
        out = flow(x)
        return -out.log_prob.mean() + 0.01 * (out.kinetic_energy + out.jacobian_norm).mean()

    before, after = one_step_reduces_loss(flow, loss, lr=1e-2)
    assert after < before
    assert_every_parameter_gets_gradient(flow, loss())


def test_state_dict_round_trip(round_trip):
    def make():
        return CNF(2, hidden=(8,), **FIXED)

    flow = make()
    x = torch.randn(4, 2)
    assert torch.equal(round_trip(flow, make).log_prob(x), flow.log_prob(x))


def test_bad_arguments_are_named():
    with pytest.raises(UnknownNameError, match="trace"):
        CNF(2, trace="approximate")
    with pytest.raises(UnknownNameError, match="noise"):
        CNF(2, noise="uniform")
    with pytest.raises(InvalidArgumentError, match="shape"):
        CNF(2, **FIXED).log_prob(torch.zeros(3, 5))
