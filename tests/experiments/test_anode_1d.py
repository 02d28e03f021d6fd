"""anode-1d: a plain 1-D neural ODE cannot fit g(+-1) = -+1, an augmented one can."""

import pytest

from kutta.experiments import run as runs
from kutta.experiments.anode_1d import PLAIN_LOSS_FLOOR


def test_short_run_writes_metrics_and_plots(tmp_path):
    result = runs.train(
        "anode-1d",
        overrides=["train.steps=3", "model.hidden=8", "train.tensorboard=false"],
        out=tmp_path / "run",
    )
    metrics = result.metrics["metrics"]
    for key in ["loss_plain", "loss_augmented", "nfe_plain", "nfe_augmented"]:
        assert key in metrics
    assert (tmp_path / "run" / "metrics.json").is_file()
    assert sorted(p.name for p in result.plots) == ["loss.png", "nfe.png", "trajectories.png"]
    assert "augmented loss" in result.summary


@pytest.mark.slow
def test_only_the_augmented_model_fits_the_crossing_map(tmp_path):
    # Dupont et al. 2019: a 1-D flow is increasing, so phi(+1) >= phi(-1) and the loss is >= 1.
    result = runs.train(
        "anode-1d",
        overrides=["train.steps=120", "train.lr=0.03", "model.hidden=16", "solver.rtol=1e-4"],
        out=tmp_path,
    )
    metrics = result.metrics["metrics"]
    assert metrics["loss_plain"] >= PLAIN_LOSS_FLOOR - 1e-3
    assert metrics["plain_g(+1)"] >= metrics["plain_g(-1)"] - 1e-4
    assert metrics["loss_augmented"] < 1e-2
    assert metrics["augmented_g(+1)"] < 0 < metrics["augmented_g(-1)"]
