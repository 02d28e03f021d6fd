"""The models on kutta.data batches, and every model in float32 as well as float64."""

import pytest
import torch

from kutta.data import collate_irregular, split_extrapolation, split_interpolation
from kutta.models import (
    CNF,
    ODERNN,
    UDE,
    LatentODE,
    NeuralCDE,
    NeuralODE,
    ODENetClassifier,
    TimeMLP,
    control_path,
)


def series(n_series=4, dtype=torch.float64):
    g = torch.Generator().manual_seed(9)
    out = []
    for n in range(n_series):
        length = 4 + 2 * n
        times = torch.sort(torch.rand(length, generator=g, dtype=dtype)).values * 2
        values = torch.randn(length, 2, generator=g, dtype=dtype)
        values[1, 0] = float("nan")
        out.append((times, values))
    return out


def test_ode_rnn_on_a_collated_batch_matches_each_series_alone():
    torch.manual_seed(0)
    model = ODERNN(2, 6, 2, method="rk4").double()
    data = series()
    together = model(collate_irregular(data)).last
    for b, sample in enumerate(data):
        alone = model(collate_irregular([sample])).last
        torch.testing.assert_close(together[b], alone[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("split", ["interpolation", "extrapolation"])
def test_latent_ode_elbo_on_data_splits(split):
    torch.manual_seed(0)
    model = LatentODE(2, latent_dim=3, encoder_hidden=5, decoder_hidden=4, method="rk4").double()
    batch = collate_irregular(series())
    if split == "interpolation":
        observed, target = split_interpolation(batch, 0.5, seed=0)
    else:
        observed, target = split_extrapolation(batch)
    terms = model.elbo(observed, target)
    assert terms.elbo.shape == (4,) and torch.isfinite(terms.elbo).all()
    torch.testing.assert_close(terms.observed, target.mask.sum(dim=(1, 2)).to(torch.float64))
    mean, std = model.predict(observed, target.times, n_samples=3)
    assert mean.shape == std.shape == target.values.shape


def _float32_cases():
    times = torch.linspace(0, 1, 6)
    batch = collate_irregular([(times[:4], torch.randn(4, 2)), (times, torch.randn(6, 2))])
    fixed = {"method": "rk4", "options": {"step_size": 0.25}}
    return {
        "NeuralODE": lambda: NeuralODE(TimeMLP(3, (8,)), augment_dim=1, **fixed)(torch.randn(3, 2)),
        "ODENetClassifier": lambda: ODENetClassifier(4, 3, width=8, hidden=(8,), **fixed)(
            torch.randn(3, 4)
        ),
        "ODERNN": lambda: ODERNN(2, 5, 2).predict(batch),
        "LatentODE": lambda: LatentODE(2, 3, 5, 4).elbo(batch).elbo,
        "NeuralCDE": lambda: NeuralCDE(3, 4, 1)(
            control_path(batch.values, batch.times, mask=batch.mask)
        ),
        "CNF": lambda: CNF(2, hidden=(8,), trace="hutchinson", **fixed).log_prob(torch.randn(3, 2)),
        "UDE": lambda: UDE(lambda t, y: -y, torch.nn.Linear(2, 2), **fixed)(
            torch.randn(3, 2), torch.linspace(0, 1, 3)
        ),
    }


@pytest.mark.parametrize("name", list(_float32_cases()))
def test_every_model_runs_and_differentiates_in_float32(name):
    out = _float32_cases()[name]()
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    out.sum().backward()
