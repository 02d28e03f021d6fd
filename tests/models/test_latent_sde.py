import math
from types import SimpleNamespace

import pytest
import torch

from kutta.errors import InvalidArgumentError, UnknownNameError
from kutta.models import LatentSDE

sde = pytest.importorskip("kutta.sde")
pytestmark = pytest.mark.skipif(not hasattr(sde, "sdeint"), reason="kutta.sde.sdeint not there yet")


def _logqp_follows_torchsde() -> bool:
    """torchsde's convention: with logqp and diagonal noise, the Brownian motion has d + 1
    channels (one for the log-ratio channel). Probed so these tests run once kutta.sde does."""

    class OU(torch.nn.Module):
        noise_type, sde_type = "diagonal", "ito"

        def f(self, t, y):
            return -y

        def h(self, t, y):
            return -2 * y

        def g(self, t, y):
            return torch.ones_like(y)

    bm = sde.BrownianInterval(0.0, 1.0, size=(2, 2), dtype=torch.float64)
    try:
        sde.sdeint(
            OU(),
            torch.ones(2, 1, dtype=torch.float64),
            [0.0, 1.0],
            bm=bm,
            dt=0.5,
            method="euler",
            logqp=True,
        )
    except Exception:
        return False
    return True


needs_logqp = pytest.mark.xfail(
    not _logqp_follows_torchsde(),
    reason="kutta.sde rejects a (batch, d + 1) Brownian motion with logqp and diagonal noise",
    strict=True,
)


def shared_batch(dtype=torch.float64):
    g = torch.Generator().manual_seed(2)
    times = torch.sort(torch.rand(8, generator=g, dtype=dtype)).values * 1.2 + 0.4
    values = 0.8 * torch.sin(2 * math.pi * times).expand(3, -1).unsqueeze(-1).clone()
    mask = torch.rand(3, 8, 1, generator=g) > 0.2
    return SimpleNamespace(times=times, values=values, mask=mask)


def make_model(**kwargs):
    torch.manual_seed(0)
    settings = dict(latent_size=2, context_size=4, hidden_size=8, dt=0.02)
    settings.update(kwargs)
    return LatentSDE(1, **settings).double()


@needs_logqp
def test_shapes():
    model, batch = make_model(), shared_batch()
    context, mean, std = model.encode(batch)
    assert context.shape == (8, 3, 4) and mean.shape == std.shape == (3, 2)
    terms = model.elbo(batch, n_samples=2)
    assert all(term.shape == (3,) for term in terms[:5])
    assert terms.paths.shape == (2, 3, 8, 2)
    assert model.sample_posterior(batch, 5).shape == (5, 3, 8, 1)
    assert model.sample_prior(4, batch.times).shape == (4, 8, 1)


def test_encoder_ignores_masked_values_and_the_rest_of_the_batch():
    model, batch = make_model(), shared_batch()
    context, mean, std = model.encode(batch)
    scrambled = SimpleNamespace(**vars(batch))
    scrambled.values = torch.where(batch.mask, batch.values, torch.randn_like(batch.values))
    torch.testing.assert_close(model.encode(scrambled)[1], mean, rtol=0, atol=0)
    one = SimpleNamespace(times=batch.times, values=batch.values[1:2], mask=batch.mask[1:2])
    torch.testing.assert_close(model.encode(one)[1], mean[1:2], rtol=1e-12, atol=1e-12)


@needs_logqp
def test_kl_terms():
    # kl_z0 against torch.distributions; with a zero posterior drift under the OU prior
    # (mu = 0) the control is u = theta z / sigma, and Euler accumulates 1/2 u^2 dt at the left
    # end of each step: on a grid of steps dt the path KL is that Riemann sum of the path itself.
    model = make_model(dt=0.1)
    last = model.dynamics.posterior_drift[-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)
    times = torch.linspace(0, 1, 11, dtype=torch.float64)
    batch = SimpleNamespace(times=times, values=torch.randn(3, 11, 1, dtype=torch.float64))
    torch.manual_seed(3)
    terms = model.elbo(batch)
    _, mean, std = model.encode(batch)
    prior = torch.distributions.Normal(0.0, 0.5 / math.sqrt(2.0))
    expected_kl = torch.distributions.kl_divergence(torch.distributions.Normal(mean, std), prior)
    torch.testing.assert_close(terms.kl_z0, expected_kl.sum(-1))
    z = terms.paths[0]  # (B, T, L)
    riemann = (0.5 * (1.0 * z[:, :-1] / 0.5) ** 2 * 0.1).sum(dim=(1, 2))
    torch.testing.assert_close(terms.kl_path, riemann, rtol=1e-6, atol=1e-8)


@needs_logqp
@pytest.mark.parametrize("prior", ["ou", "learned"])
def test_gradient_step_and_every_parameter_is_used(
    prior, one_step_reduces_loss, assert_every_parameter_gets_gradient
):
    model, batch = make_model(prior=prior), shared_batch()

    def loss():
        torch.manual_seed(5)  # the same z0 draws and Brownian paths before and after
        return model.elbo(batch, n_samples=2, entropy=5).loss()

    before, after = one_step_reduces_loss(model, loss, lr=1e-3)
    assert after < before
    assert_every_parameter_gets_gradient(model, loss())


@needs_logqp
def test_state_dict_round_trip(round_trip):
    model, batch = make_model(prior="learned"), shared_batch()
    fresh = round_trip(model, lambda: make_model(prior="learned"))
    torch.manual_seed(7)
    expected = model.elbo(batch, entropy=7).elbo
    torch.manual_seed(7)
    assert torch.equal(fresh.elbo(batch, entropy=7).elbo, expected)


def test_bad_arguments_are_named():
    with pytest.raises(UnknownNameError, match="prior"):
        LatentSDE(1, prior="gp")
    with pytest.raises(UnknownNameError, match="likelihood"):
        LatentSDE(1, likelihood="cauchy")
    ragged = SimpleNamespace(times=torch.rand(2, 4).sort(1).values, values=torch.zeros(2, 4, 1))
    with pytest.raises(InvalidArgumentError, match="union grid"):
        LatentSDE(1).elbo(ragged)


@pytest.mark.skipif(not hasattr(sde, "sdeint_adjoint"), reason="no kutta.sde.sdeint_adjoint yet")
def test_adjoint_gradients_match_backprop():
    # Same Brownian path (entropy) and z0 draws; the adjoint solves its own discretisation
    # backwards, so the gradients agree to O(dt), not to round-off.
    batch = shared_batch()
    gradients = []
    for mode in ("backprop", "adjoint"):
        model = make_model(prior="learned", dt=5e-3, gradient=mode)
        torch.manual_seed(1)
        model.elbo(batch, entropy=3).loss().backward()
        gradients.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    backprop, adjoint = gradients
    assert float((adjoint - backprop).norm() / backprop.norm()) < 1e-2  # seen: 2e-3
