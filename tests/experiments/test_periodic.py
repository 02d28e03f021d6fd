"""periodic: Rubanova's toy data as stated, the observation masks, and a short run of all models."""

import torch

from kutta.experiments import run as runs
from kutta.experiments.periodic import (
    PeriodicConfig,
    PeriodicData,
    PeriodicModel,
    PeriodicTask,
    observation_masks,
    periodic_data,
)

TINY = [
    "data.num_series=20",
    "data.num_points=12",
    "data.observed=6",
    "train.steps=2",
    "train.batch_size=4",
    "train.eval_every=2",
    "train.tensorboard=false",
    "model.latent_dim=2",
    "model.encoder_hidden=4",
    "model.decoder_hidden=4",
    "model.rnn_hidden=4",
]


def test_data_follow_rubanovas_description():
    t, y = periodic_data(PeriodicData(num_series=2000), seed=0)
    # t = {0} plus 99 sorted draws from U(0, 5), shared by every series
    assert t.shape == (100,) and t[0] == 0 and bool((t[1:] >= t[:-1]).all()) and t[-1] < 5
    # at t = 0 the sine vanishes and there is no noise: y(0) = 1 + e0, e0 ~ N(0, 0.1^2)
    first = y[:, 0, 0]
    assert abs(first.mean().item() - 1) < 0.01 and abs(first.std().item() - 0.1) < 0.01
    # the rest is a sine of amplitude 1 around 1 + e0 plus noise in [0, 0.01)
    centred = y[:, :, 0] - first[:, None]
    assert centred.max() < 1.01 and centred.min() > -1.0


def test_masks_of_both_modes():
    generator = torch.Generator().manual_seed(0)
    seen, target = observation_masks("interpolation", 5, 100, 50, generator)
    assert seen.sum(1).tolist() == [50] * 5 and bool(target.all())
    assert not torch.equal(seen[0], seen[1])  # each series observes its own points
    seen, target = observation_masks("extrapolation", 5, 100, 50, generator)
    assert bool(seen[:, :50].all()) and not bool(seen[:, 50:].any())
    assert torch.equal(target, ~seen)


def test_short_run_reports_every_model_in_both_modes(tmp_path):
    result = runs.train("periodic", overrides=TINY, out=tmp_path)
    metrics = result.metrics["metrics"]
    for mode in ["interpolation", "extrapolation"]:
        for kind in ["latent", "odernn", "gru"]:
            assert metrics[f"test_mse_{mode}_{kind}"] >= 0
    assert "test_mse_unobserved_interpolation_latent" in metrics
    assert sorted(p.name for p in result.plots) == ["loss.png", "nfe.png", "predictions.png"]
    records = runs.read_metrics_log(tmp_path)
    assert records[-1]["nfe_forward"] > 0


def test_recurrent_baselines_never_predict_a_value_they_have_seen():
    # Fairness of the interpolation MSE, which also scores the observed points: the ODE-RNN and
    # the GRU-dt predict time j from their state before the update at j, so changing the value
    # observed at j leaves the prediction at j alone (and changes the later ones).
    config = PeriodicConfig(data=PeriodicData(num_series=4, num_points=12, observed=6))
    config.model = PeriodicModel(latent_dim=2, encoder_hidden=4, dynamics_hidden=4, rnn_hidden=4)
    task = PeriodicTask(config, torch.device("cpu"), torch.float64)
    rows = torch.arange(4)
    seen = task.masks["interpolation"][0]
    j = int(seen[0].nonzero()[2])  # an observed time of series 0 that is not its first
    observed = task.batch(rows, seen)
    changed = task.batch(rows, seen)
    changed.values[0, j] += 1.0
    for kind in ["odernn", "gru"]:
        before = task.predict(task.model, f"interpolation_{kind}", observed)
        after = task.predict(task.model, f"interpolation_{kind}", changed)
        assert torch.equal(before[0, : j + 1], after[0, : j + 1])
        assert not torch.equal(before[0, j + 1 :], after[0, j + 1 :])
