import math
from types import SimpleNamespace

import pytest
import torch
from scipy.integrate import simpson

from kutta.errors import InvalidArgumentError
from kutta.models import LatentODE


def ragged_batch(dtype=torch.float64):
    g = torch.Generator().manual_seed(5)
    lengths = torch.tensor([6, 4, 5])
    times = torch.sort(torch.rand(3, 6, generator=g, dtype=dtype), dim=1).values
    values = torch.randn(3, 6, 2, generator=g, dtype=dtype)
    mask = (torch.rand(3, 6, 2, generator=g) > 0.3).to(dtype)
    mask[:, 0] = 1
    for b, n in enumerate(lengths):
        times[b, n:] = times[b, n - 1]
        values[b, n:] = -77.0
    return SimpleNamespace(times=times, values=values, mask=mask, lengths=lengths)


def single(batch, b):
    n = int(batch.lengths[b])
    return SimpleNamespace(
        times=batch.times[b : b + 1, :n],
        values=batch.values[b : b + 1, :n],
        mask=batch.mask[b : b + 1, :n],
    )


def make_model(**kwargs):
    torch.manual_seed(0)
    settings = dict(latent_dim=3, encoder_hidden=5, decoder_hidden=4, method="rk4")
    settings.update(kwargs)
    return LatentODE(2, **settings).double()


def test_shapes_on_a_ragged_batch():
    model, batch = make_model(), ragged_batch()
    posterior = model.encode(batch)
    assert posterior.mean.shape == posterior.std.shape == (3, 3)
    torch.testing.assert_close(posterior.t0, batch.times[:, 0])
    query = torch.linspace(0, 2, 7, dtype=torch.float64)
    mean, std = model.predict(batch, query, n_samples=5)
    assert mean.shape == std.shape == (3, 7, 2) and bool((std > 0).all())
    assert model.sample(4, query).shape == (4, 7, 2)
    assert model.sample(4, query, condition_on=batch).shape == (4, 3, 7, 2)
    terms = model.elbo(batch, n_samples=2)
    assert terms.elbo.shape == terms.kl.shape == (3,)
    assert terms.loss().shape == ()


def test_encoder_and_decoder_do_not_depend_on_padding_or_the_rest_of_the_batch():
    model, batch = make_model(), ragged_batch()
    together = model.encode(batch)
    z0 = torch.randn(2, 3, 3, dtype=torch.float64)
    query = torch.tensor(
        [[0.1, 0.5, 0.9, 0.9], [0.2, 0.3, 0.4, 0.8], [0.0, 0.6, 0.7, 1.2]], dtype=torch.float64
    )
    decoded = model.decode(z0, together.t0, query)
    for b in range(3):
        alone = model.encode(single(batch, b))
        torch.testing.assert_close(together.mean[b], alone.mean[0], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(together.std[b], alone.std[0], rtol=1e-12, atol=1e-12)
        one = model.decode(z0[:, b : b + 1], alone.t0, query[b : b + 1])
        torch.testing.assert_close(decoded[:, b : b + 1], one, rtol=1e-12, atol=1e-12)


def test_elbo_terms_match_the_distributions():
    model, batch = make_model(obs_std=0.3), ragged_batch()
    torch.manual_seed(11)
    terms = model.elbo(batch, n_samples=1)
    posterior = model.encode(batch)
    torch.manual_seed(11)
    z0 = posterior.mean + posterior.std * torch.randn(1, *posterior.mean.shape, dtype=torch.float64)
    means = model.decode(z0, posterior.t0, batch.times)[0]
    observed = batch.mask.bool() & (torch.arange(6)[None, :, None] < batch.lengths[:, None, None])
    normal = torch.distributions.Normal(means, 0.3)
    expected_ll = torch.where(observed, normal.log_prob(batch.values), 0.0).sum(dim=(1, 2))
    expected_kl = torch.distributions.kl_divergence(
        torch.distributions.Normal(posterior.mean, posterior.std),
        torch.distributions.Normal(0.0, 1.0),
    ).sum(-1)
    torch.testing.assert_close(terms.log_likelihood, expected_ll)
    torch.testing.assert_close(terms.kl, expected_kl)
    torch.testing.assert_close(terms.elbo, expected_ll - expected_kl)
    torch.testing.assert_close(terms.observed, observed.sum(dim=(1, 2)).to(torch.float64))


@torch.no_grad()
def test_poisson_term_integrates_the_intensity_along_the_latent_path():
    model = make_model(poisson=True, method="dopri5", rtol=1e-9, atol=1e-10)
    times = torch.linspace(0, 1, 5, dtype=torch.float64)
    batch = SimpleNamespace(times=times, values=torch.randn(2, 5, 2, dtype=torch.float64))
    torch.manual_seed(1)
    terms = model.elbo(batch)
    posterior = model.encode(batch)
    torch.manual_seed(1)
    z0 = posterior.mean + posterior.std * torch.randn(1, *posterior.mean.shape, dtype=torch.float64)
    fine = torch.linspace(0, 1, 401, dtype=torch.float64)
    latent = model._latent_paths(z0[0], posterior.t0, fine.expand(2, -1))[..., :3]
    rates = model.intensity(latent)  # (2, 401, 2)
    integral = torch.from_numpy(simpson(rates.numpy(), x=fine.numpy(), axis=1)).sum(-1)
    on_obs = model._latent_paths(z0[0], posterior.t0, times.expand(2, -1))[..., :3]
    events = torch.log(model.intensity(on_obs) + 1e-8).sum(dim=(1, 2))
    torch.testing.assert_close(
        terms.poisson_log_likelihood, events - integral, rtol=1e-6, atol=1e-6
    )


@pytest.mark.parametrize("options", [{}, {"poisson": True, "obs_std": None}])
def test_gradient_step_and_every_parameter_is_used(
    options, one_step_reduces_loss, assert_every_parameter_gets_gradient
):
    model, batch = (
        make_model(obs_std=0.5, **options) if not options else make_model(**options),
        ragged_batch(),
    )

    def loss():
        torch.manual_seed(2)  # the same reparametrisation noise before and after the step
        return model.elbo(batch, n_samples=2).loss()

    before, after = one_step_reduces_loss(model, loss, lr=1e-2)
    assert after < before
    assert_every_parameter_gets_gradient(model, loss())


def test_state_dict_round_trip(round_trip):
    model, batch = make_model(obs_std=None, poisson=True), ragged_batch()
    fresh = round_trip(model, lambda: make_model(obs_std=None, poisson=True))
    torch.manual_seed(4)
    expected = model.elbo(batch).elbo
    torch.manual_seed(4)
    assert torch.equal(fresh.elbo(batch).elbo, expected)


@pytest.mark.slow
def test_learns_a_family_of_sines():
    # A smoke test of the whole VAE: the reconstruction error drops well below the data's spread.
    g = torch.Generator().manual_seed(0)
    times = torch.linspace(0, 2, 12)
    phase = torch.rand(16, 1, generator=g) * 2 * math.pi
    values = torch.sin(2 * times + phase).unsqueeze(-1)
    batch = SimpleNamespace(times=times, values=values)
    model = LatentODE(
        1, latent_dim=2, encoder_hidden=8, decoder_hidden=8, obs_std=0.1, method="rk4"
    )
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    for _ in range(100):
        opt.zero_grad()
        model.elbo(batch).loss().backward()
        opt.step()
    with torch.no_grad():
        mean, _ = model.predict(batch, times, n_samples=8)
    assert float(((mean - values) ** 2).mean()) < 0.2 * float(values.var())


def test_bad_input_is_named():
    with pytest.raises(InvalidArgumentError, match="obs_std"):
        LatentODE(2, obs_std=0.0)
    with pytest.raises(InvalidArgumentError, match="same series"):
        make_model().elbo(
            ragged_batch(),
            target=SimpleNamespace(
                times=torch.arange(3.0), values=torch.zeros(1, 3, 2, dtype=torch.float64)
            ),
        )


def test_per_sample_decoding_matches_shared_and_ignores_the_batch():
    model = make_model(method="dopri5", rtol=1e-8, atol=1e-10, batch_mode="per_sample")
    shared = make_model(method="dopri5", rtol=1e-8, atol=1e-10)
    batch = ragged_batch()
    posterior = model.encode(batch)
    z0 = posterior.mean.unsqueeze(0)
    decoded = model.decode(z0, posterior.t0, batch.times)
    torch.testing.assert_close(
        decoded, shared.decode(z0, posterior.t0, batch.times), rtol=1e-6, atol=1e-7
    )
    for b in range(3):
        n = int(batch.lengths[b])
        alone = model.decode(z0[:, b : b + 1], posterior.t0[b : b + 1], batch.times[b : b + 1, :n])
        torch.testing.assert_close(decoded[:, b : b + 1, :n], alone, rtol=1e-12, atol=1e-12)


def test_normalizers_give_predictions_in_user_units(round_trip):
    from kutta.data import IrregularBatch, TimeNormalizer, ValueNormalizer

    g = torch.Generator().manual_seed(8)
    times = 100.0 + 50.0 * torch.sort(torch.rand(6, generator=g, dtype=torch.float64)).values
    values = 300.0 + 20.0 * torch.randn(3, 6, 2, generator=g, dtype=torch.float64)
    batch = IrregularBatch.from_nan_values(times, values)
    value_norm, time_norm = (
        ValueNormalizer(2).double().fit(batch),
        TimeNormalizer().double().fit(batch),
    )

    def make():
        return make_model(value_normalizer=ValueNormalizer(2), time_normalizer=TimeNormalizer())

    model = make_model(value_normalizer=value_norm, time_normalizer=time_norm)
    plain = make_model()  # same weights (same seed), fed normalised data by hand
    scaled = time_norm.normalize_batch(value_norm.normalize_batch(batch))
    query = torch.tensor([110.0, 140.0, 160.0], dtype=torch.float64)
    torch.manual_seed(1)
    mean, std = model.predict(batch, query, n_samples=4)
    torch.manual_seed(1)
    mean_n, std_n = plain.predict(scaled, time_norm.normalize(query), n_samples=4)
    torch.testing.assert_close(mean, value_norm.inverse(mean_n))
    torch.testing.assert_close(std, value_norm.inverse_scale(std_n))
    assert abs(float(mean.detach().mean()) - 300.0) < 100.0  # user units, not normalised ones
    fresh = round_trip(model, make).double()
    torch.manual_seed(1)
    torch.testing.assert_close(fresh.predict(batch, query, n_samples=4)[0], mean)


def test_a_common_z0_time_carries_the_encoding_back_to_it():
    model, batch = make_model(z0_time=-0.5), ragged_batch()
    posterior = model.encode(batch)
    assert torch.equal(posterior.t0, torch.full((3,), -0.5, dtype=torch.float64))
    for b in range(3):
        alone = model.encode(single(batch, b))
        torch.testing.assert_close(posterior.mean[b], alone.mean[0], rtol=1e-12, atol=1e-12)
    # The encoder state is evolved from each first observation back to -0.5, so z0 differs
    # from the one placed at the first observation.
    assert not torch.allclose(posterior.mean, make_model().encode(batch).mean)


class RotationField(torch.nn.Module):
    """dz/dt = A z with A a rotation generator (plus a fixed third axis): exp(A t) is exact."""

    def __init__(self, rate):
        super().__init__()
        a = torch.zeros(3, 3, dtype=torch.float64)
        a[0, 1], a[1, 0] = -rate, rate
        self.register_buffer("a", a)

    def forward(self, t, z):
        return z @ self.a.T

    def exact(self, z, span):
        """exp(A span) z for z (B, 3) and span (B,)."""
        return torch.stack([torch.linalg.matrix_exp(self.a * s) @ v for v, s in zip(z, span)])


def test_latent_solver_decodes_and_carries_to_z0_time_exactly():
    # The encoder steps once per observation interval (rk4 here) while the latent ODE and the
    # carry of the encoder's state to z0_time (a long span with no observation) use their own
    # solver. Reference: the matrix exponential of a linear vector field.
    from kutta.models import SolverOptions

    tight = SolverOptions("dopri5", rtol=1e-10, atol=1e-12)
    batch = ragged_batch()
    models = {}
    for name, z0_time, solver in [("at t0", None, tight), ("carried", 3.0, tight),
                                  ("rk4", None, None)]:  # fmt: skip
        model = make_model(
            encoder_hidden=3, dynamics=RotationField(2.0), z0_time=z0_time, latent_solver=solver
        )
        model.encoder_func = RotationField(1.5).double()
        models[name] = model
    z0 = torch.randn(1, 3, 3, dtype=torch.float64)
    t0 = torch.zeros(3, dtype=torch.float64)
    times = torch.tensor([[0.5, 3.0]], dtype=torch.float64).expand(3, -1)
    field = models["at t0"].dynamics
    exact = torch.stack([field.exact(z0[0], times[:, q]) for q in range(2)], dim=1)
    decoder = models["at t0"].decoder
    torch.testing.assert_close(
        models["at t0"].decode(z0, t0, times)[0], decoder(exact), rtol=1e-7, atol=1e-8
    )
    # one rk4 step of 2.5 time units on a rotation of rate 2 is far off
    rk4 = models["rk4"].decode(z0, t0, times)[0]
    assert (rk4[:, 1] - decoder(exact)[:, 1]).abs().max() > 0.1
    # carry: recover the encoder's state at each series' first time from the posterior mean
    # at t0 (to_posterior is affine and its mean block is square), evolve it exactly to 3.0
    at_t0 = models["at t0"].encode(batch)
    weight, bias = models["at t0"].to_posterior.weight[:3], models["at t0"].to_posterior.bias[:3]
    state = torch.linalg.solve(weight, (at_t0.mean - bias).T).T
    span = 3.0 - batch.times[:, 0]
    expected = models["carried"].encoder_func.exact(state, span) @ weight.T + bias
    carried = models["carried"].encode(batch)
    assert carried.t0.tolist() == [3.0] * 3
    torch.testing.assert_close(carried.mean, expected, rtol=1e-7, atol=1e-8)


def test_rubanova_encoder_widths_train_every_parameter(assert_every_parameter_gets_gradient):
    # Rubanova et al.'s encoder: a 100-unit vector field and a 100-unit tanh layer before
    # q(z0 | x) (small widths here); every one of their parameters must be trained.
    from kutta.models import AutonomousMLP

    func = AutonomousMLP(5, (7,))
    model = make_model(encoder_func=func, posterior_hidden=6, obs_std=0.5)
    assert model.encoder_func is func and isinstance(model.to_posterior, torch.nn.Sequential)
    batch = ragged_batch()
    posterior = model.encode(batch)
    assert posterior.mean.shape == posterior.std.shape == (3, 3)
    assert_every_parameter_gets_gradient(model, model.elbo(batch, n_samples=2).loss())


def test_z0_placed_at_z0_time_without_carrying_the_encoding():
    # Rubanova et al.'s extrapolation: q(z0 | x) read off the encoder at the first observation
    # is used as it is at the common start time. Same seed, same weights as make_model().
    batch = ragged_batch()
    placed = make_model(z0_time=3.0, carry_to_z0_time=False).encode(batch)
    at_first = make_model().encode(batch)
    assert placed.t0.tolist() == [3.0] * 3
    assert torch.equal(placed.mean, at_first.mean) and torch.equal(placed.std, at_first.std)
    carried = make_model(z0_time=3.0).encode(batch)
    assert not torch.allclose(carried.mean, at_first.mean)


@pytest.mark.parametrize("direction", ["backward", "forward"])
def test_encoder_direction_is_the_ode_rnn_run_that_way(direction):
    # The encoder is an ODE-RNN: its summary equals kutta.models.ODERNN's final state with the
    # same cell and vector field, run backwards (Rubanova et al.) or forwards, and q(z0 | x)
    # sits at the time where that run ends: each series' first or last (non-padding) time.
    from kutta.models import ODERNN

    model, batch = make_model(encoder_direction=direction), ragged_batch()
    rnn = ODERNN(2, hidden_dim=5, method="rk4").double()
    rnn.cell, rnn.func = model.encoder_cell, model.encoder_func
    last = rnn(batch, reverse=direction == "backward").last
    mean, raw_std = model.to_posterior(last).chunk(2, dim=-1)
    posterior = model.encode(batch)
    torch.testing.assert_close(posterior.mean, mean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(
        posterior.std, torch.nn.functional.softplus(raw_std) + 1e-4, rtol=1e-12, atol=1e-12
    )
    ends = batch.times[torch.arange(3), batch.lengths - 1 if direction == "forward" else 0]
    assert torch.equal(posterior.t0, ends)


def test_forward_encoder_shapes_and_padding_invariance():
    model, batch = make_model(encoder_direction="forward"), ragged_batch()
    query = torch.linspace(1, 2, 5, dtype=torch.float64)
    mean, std = model.predict(batch, query, n_samples=3)
    assert mean.shape == std.shape == (3, 5, 2)
    together = model.encode(batch)
    for b in range(3):
        alone = model.encode(single(batch, b))
        torch.testing.assert_close(together.mean[b], alone.mean[0], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(together.std[b], alone.std[0], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(together.t0[b], alone.t0[0])
    # forecasting from a common z0_time after the data: carried from each last observation
    carried = make_model(encoder_direction="forward", z0_time=1.5).encode(batch)
    assert carried.t0.tolist() == [1.5] * 3
    assert not torch.allclose(carried.mean, together.mean)


def test_unknown_encoder_direction_is_named():
    from kutta.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match="encoder_direction"):
        LatentODE(2, encoder_direction="sideways")
