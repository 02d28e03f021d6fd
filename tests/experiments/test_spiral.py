"""The spiral experiment: its data solve the stated ODE, a short run trains, options work."""

import pytest
import torch

from kutta.errors import InvalidArgumentError, UnknownNameError
from kutta.experiments import available, get_experiment
from kutta.experiments import run as runs
from kutta.experiments.spiral import SPIRAL_MATRIX, SpiralData, spiral_data

TINY = [
    "data.num_points=200",
    "train.steps=6",
    "train.batch_size=8",
    "train.eval_every=3",
    "train.log_every=2",
    "train.checkpoint_every=2",
    "solver.rtol=1e-4",
    "solver.atol=1e-6",
]


def test_data_follow_the_cubic_spiral():
    t, y, observed = spiral_data(SpiralData(), seed=0, dtype=torch.float64)
    assert len(observed) == 1000 and t[999].item() == pytest.approx(25.0)
    assert t[-1].item() == pytest.approx(50.0)
    torch.testing.assert_close(y[0], torch.tensor([2.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(observed, y[:1000])  # no noise by default
    # central differences of the data against the vector field (y**3) A: agreement to O(dt**2) (about 1% where the spiral turns fastest)
    dt = t[1] - t[0]
    slope = (y[2:] - y[:-2]) / (2 * dt)
    field = y[1:-1] ** 3 @ torch.tensor(SPIRAL_MATRIX, dtype=torch.float64)
    assert (slope - field).abs().max() < 2e-2 * field.abs().max()


def test_noise_is_seeded():
    noisy = SpiralData(noise=0.1)
    a = spiral_data(noisy, seed=1, dtype=torch.float32)[2]
    b = spiral_data(noisy, seed=1, dtype=torch.float32)[2]
    c = spiral_data(noisy, seed=2, dtype=torch.float32)[2]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_short_run_writes_a_complete_run_directory(tmp_path):
    result = runs.train("spiral", overrides=TINY, out=tmp_path / "run")
    run_dir = tmp_path / "run"
    for name in ["config.toml", "metrics.jsonl", "metrics.json", "checkpoints/last.pt"]:
        assert (run_dir / name).is_file(), name
    assert sorted(p.name for p in result.plots) == ["loss.png", "nfe.png", "trajectories.png"]
    metrics = result.metrics["metrics"]
    assert metrics["mse_over_variance"] == pytest.approx(metrics["mse"] / metrics["data_variance"])
    assert metrics["nfe"] > 0 and result.metrics["training"]["steps"] == 6
    assert "fit error" in result.summary
    # the written config is complete and reloads to the same values
    reloaded = runs.resolve_config(get_experiment("spiral"), run_dir / "config.toml")
    assert reloaded.train.steps == 6 and reloaded.data.num_points == 200
    # evaluating the saved run gives the metrics computed at the end of training
    again = runs.evaluate(run_dir)
    assert again["mse"] == pytest.approx(metrics["mse"], rel=1e-6)


@pytest.mark.skipif(
    not hasattr(__import__("kutta"), "odeint_adjoint"), reason="kutta.odeint_adjoint not built yet"
)
def test_adjoint_gradient_option_trains(tmp_path):
    result = runs.train("spiral", overrides=[*TINY, "solver.gradient=adjoint"], out=tmp_path)
    records = runs.read_metrics_log(tmp_path)
    assert result.metrics["training"]["steps"] == 6
    assert all(r["nfe_backward"] > 0 for r in records)  # the adjoint solves backwards


def test_bad_spiral_settings_are_rejected():
    spiral = get_experiment("spiral")
    with pytest.raises(InvalidArgumentError, match="window"):
        runs.resolve_config(spiral, overrides=["data.window=1"])
    with pytest.raises(UnknownNameError, match="l1"):
        runs.resolve_config(spiral, overrides=["model.loss=huber"])


def test_registry_lists_the_builtins_and_rejects_unknown_names():
    assert {"spiral", "neural-ode"} <= set(available())
    with pytest.raises(UnknownNameError, match="spiral"):
        get_experiment("spirall")
