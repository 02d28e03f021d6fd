"""periodic: Rubanova's toy data as stated, the observation masks, and a short run of all models."""

import pytest
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
from kutta.train.config import SolverConfig

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


def _tiny_task(encoder="forward", **solver):
    config = PeriodicConfig(data=PeriodicData(num_series=4, num_points=12, observed=6))
    config.model = PeriodicModel(
        latent_dim=2,
        encoder_hidden=4,
        dynamics_hidden=4,
        rnn_hidden=4,
        extrapolation_encoder=encoder,
    )
    if solver:
        # one solver throughout, the latent ODE's included
        config.solver = SolverConfig(**solver)
        config.model.latent_method = ""
    return PeriodicTask(config, torch.device("cpu"), torch.float64)


def test_recurrent_baselines_never_predict_a_value_they_have_seen():
    # Fairness of the interpolation MSE, which also scores the observed points: the ODE-RNN and
    # the GRU-dt predict time j from their state before the update at j, so changing the value
    # observed at j leaves the prediction at j alone (and changes the later ones).
    task = _tiny_task()
    rows = torch.arange(4)
    seen = task.masks["interpolation"][0]
    j = int(seen[0].nonzero()[2])  # an observed time of series 0 that is not its first
    for kind in ["odernn", "gru"]:
        name = f"interpolation_{kind}"
        before = task.predict(task.model, name, rows, seen)
        task.y[0, j] += 1.0
        after = task.predict(task.model, name, rows, seen)
        task.y[0, j] -= 1.0
        assert torch.equal(before[0, : j + 1], after[0, : j + 1])
        assert not torch.equal(before[0, j + 1 :], after[0, j + 1 :])


def test_latent_encoder_on_observed_points_equals_the_masked_grid():
    # The Latent ODE's encoder reads only the observed points. On the masked full grid it makes
    # no update at the other times, so once the (backwards) run has met its first observation
    # both give the same posterior of z0, to solver tolerance; here every series observes the
    # grid's last time so that both runs start there.
    task = _tiny_task(method="dopri5", rtol=1e-10, atol=1e-12)
    rows = torch.arange(4)
    generator = torch.Generator().manual_seed(0)
    seen = torch.zeros(4, 12, dtype=torch.bool)
    seen[:, -1] = True
    for row in range(4):
        seen[row, torch.randperm(11, generator=generator)[:5]] = True
    net = task.model["interpolation_latent"]
    compact = net.encode(task.observed_points(rows, seen))
    masked = net.encode(task.batch(rows, seen))
    assert compact.t0.tolist() == [0.0] * 4 and masked.t0.tolist() == [0.0] * 4
    torch.testing.assert_close(compact.mean, masked.mean, rtol=1e-7, atol=1e-8)
    torch.testing.assert_close(compact.std, masked.std, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("encoder", ["backward", "forward"])
def test_extrapolating_latent_ode_starts_at_the_first_target_and_reads_only_the_first_half(
    encoder,
):
    # As in Rubanova et al.'s code, the latent ODE starts at the first time to predict (the
    # start of the second half); the encoder, whichever way it runs, reads the first half
    # only, so values in the second half cannot change the predictions.
    task = _tiny_task(encoder=encoder)
    assert task.model["extrapolation_latent"].encoder_direction == encoder
    assert task.model["interpolation_latent"].encoder_direction == "backward"
    rows = torch.arange(4)
    seen = task.masks["extrapolation"][0]
    name = "extrapolation_latent"
    assert task.latent_start == {"interpolation": 0, "extrapolation": 6}
    posterior = task.model[name].encode(task.observed_points(rows, seen))
    assert torch.equal(posterior.t0, task.t[6].expand(4))
    before = task.predict(task.model, name, rows, seen)
    assert bool(before[:, :6].isnan().all()) and bool(before[:, 6:].isfinite().all())
    task.y[:, 6:] += 1.0
    after = task.predict(task.model, name, rows, seen)
    task.y[:, 6:] -= 1.0
    torch.testing.assert_close(before[:, 6:], after[:, 6:], rtol=0, atol=0)


def test_latent_ode_can_start_at_time_zero_in_extrapolation():
    config = PeriodicConfig(data=PeriodicData(num_series=4, num_points=12, observed=6))
    config.model = PeriodicModel(
        latent_dim=2, encoder_hidden=4, dynamics_hidden=4, rnn_hidden=4, z0_at_first_target=False
    )
    task = PeriodicTask(config, torch.device("cpu"), torch.float64)
    assert task.latent_start["extrapolation"] == 0
    prediction = task.predict(
        task.model, "extrapolation_latent", torch.arange(4), task.masks["extrapolation"][0]
    )
    assert bool(prediction.isfinite().all())


def test_kl_weight_follows_rubanovas_annealing():
    # run_models.py of Rubanova et al.: KL weight 0 for the first 10 epochs, then
    # 1 - 0.99 ** (epoch - 10).
    task = _tiny_task()
    per_epoch = task.steps_per_epoch
    weights = {}
    for epoch in [0, 9, 10, 11, 60]:
        task.steps_taken = epoch * per_epoch + 1  # the first step of that epoch
        weights[epoch] = task.kl_weight()
    assert weights[0] == weights[9] == weights[10] == 0.0
    assert abs(weights[11] - 0.01) < 1e-12 and abs(weights[60] - (1 - 0.99**50)) < 1e-12


def test_training_loss_uses_the_annealed_kl_weight():
    task = _tiny_task()
    task.horizon_steps = 0  # the whole target window at both steps: only the KL weight differs
    indices = torch.arange(2)
    task.begin_step(0)
    torch.manual_seed(3)
    first = task.loss(task.model, indices).loss  # epoch 0: KL weight 0
    task.begin_step(60 * task.steps_per_epoch)
    torch.manual_seed(3)
    later = task.loss(task.model, indices).loss
    weight = task.kl_weight()
    rows = task.rows["train"][indices]
    torch.manual_seed(3)  # the same posterior draws, in the order loss() takes them
    expected = 0.0
    for mode in task.modes:
        seen, target = task.masks[mode]
        terms = task.model[f"{mode}_latent"].elbo(
            task.observed_points(rows, seen),
            task.batch(rows, target, start=task.latent_start[mode]),
            n_samples=task.samples,
        )
        expected += weight * terms.kl.sum() / terms.observed.sum()
    torch.testing.assert_close(later - first, expected, rtol=1e-9, atol=1e-12)


def test_the_target_window_grows_over_the_first_part_of_training():
    task = _tiny_task()  # 300 steps, a window growing over the first 30 % from 20 % of it
    assert task.horizon_steps == 90
    t = task.t
    ends = {}
    for step in [0, 44, 89, 90, 299]:
        task.begin_step(step)
        ends[step] = {mode: task.horizon_end(mode) for mode in task.modes}
    for mode, first in [("interpolation", 0), ("extrapolation", 6)]:
        fraction = 0.2 + 0.8 * 1 / 90  # at step 0, counting the step being taken
        horizon = t[first] + fraction * (t[-1] - t[first])
        assert ends[0][mode] == max(int((t <= horizon).sum()), first + 1)
        assert ends[0][mode] <= ends[44][mode] <= ends[89][mode] <= len(t)
        assert ends[90][mode] == ends[299][mode] == len(t)
    assert ends[0]["interpolation"] < len(t)


def test_targets_beyond_the_window_do_not_enter_the_loss():
    # extrapolation only: the points after the window are neither observed nor (yet) targets
    config = PeriodicConfig(
        data=PeriodicData(num_series=4, num_points=12, observed=6, mode="extrapolation")
    )
    config.model = PeriodicModel(latent_dim=2, encoder_hidden=4, dynamics_hidden=4, rnn_hidden=4)
    task = PeriodicTask(config, torch.device("cpu"), torch.float64)
    indices = torch.arange(2)

    def loss_at(step, shift):
        task.begin_step(step)
        task.y[:, end:] += shift
        torch.manual_seed(3)
        value = task.loss(task.model, indices).loss
        task.y[:, end:] -= shift
        return value

    task.begin_step(0)
    end = task.horizon_end("extrapolation")
    assert 6 < end < len(task.t)
    assert loss_at(0, 1.0) == loss_at(0, 0.0)
    assert loss_at(task.horizon_steps, 1.0) != loss_at(task.horizon_steps, 0.0)


def test_rubanova_encoder_options_reach_the_latent_odes():
    config = PeriodicConfig(data=PeriodicData(num_series=4, num_points=12, observed=6))
    config.model = PeriodicModel(
        latent_dim=2, encoder_hidden=4, dynamics_hidden=4, rnn_hidden=4,
        encoder_func_hidden=8, posterior_hidden=6, extrapolation_carry=False,
    )  # fmt: skip
    task = PeriodicTask(config, torch.device("cpu"), torch.float64)
    for mode in ["interpolation", "extrapolation"]:
        net = task.model[f"{mode}_latent"]
        assert net.encoder_func.net[0].out_features == 8
        assert net.to_posterior[0].out_features == 6
    # interpolation still carries from the first observation to t = 0; extrapolation places
    assert task.model["interpolation_latent"].carry_to_z0_time
    assert not task.model["extrapolation_latent"].carry_to_z0_time
