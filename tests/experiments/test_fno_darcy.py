"""The fno-darcy experiment: its data, a short run that learns and evaluates zero-shot on the
solver grid, the run directory, and config checks."""

import pytest
import torch

from kutta.errors import InvalidArgumentError
from kutta.experiments import get_experiment
from kutta.experiments import run as runs
from kutta.experiments.fno_darcy import FNODarcyConfig, FNODarcyData, FNODarcyTask
from kutta.experiments.operator_task import OperatorModel
from kutta.pde.darcy import solve_darcy

SMALL = [
    "data.num_train=60",
    "data.num_test=20",
    "data.resolution=17",
    "data.super_resolution=33",
    "model.width=12",
    "model.modes=6",
    "train.steps=60",
    "train.batch_size=10",
    "train.tensorboard=false",
]


def test_splits_are_subsamples_of_the_solved_fields():
    data = FNODarcyData(num_train=3, num_test=2, resolution=9, super_resolution=17)
    config = FNODarcyConfig(data=data, model=OperatorModel(modes=4, width=4))
    task = FNODarcyTask(config, torch.device("cpu"), torch.float64)
    (a, u), (at, ut), (a_fine, u_fine) = (task.splits[k] for k in ("train", "test", "test_super"))
    assert a.shape == u.shape == (3, 1, 9, 9) and at.shape == (2, 1, 9, 9)
    assert a_fine.shape == (2, 1, 17, 17)
    torch.testing.assert_close(a_fine[..., ::2, ::2], at, atol=0, rtol=0)
    torch.testing.assert_close(u_fine[..., ::2, ::2], ut, atol=0, rtol=0)
    torch.testing.assert_close(solve_darcy(a_fine[:, 0]), u_fine[:, 0])
    assert set(a.unique().tolist()) <= {3.0, 12.0}
    # the scaled operator standardizes with the training statistics
    mean, std, scale = task.model.statistics.tolist()
    assert mean == pytest.approx(a.mean().item()) and scale == pytest.approx(u.std().item())


def test_short_run_learns_and_evaluates_zero_shot(tmp_path):
    result = runs.train("fno-darcy", overrides=SMALL, out=tmp_path / "run")
    metrics = result.metrics["metrics"]
    # predicting zero scores 1.0; this 60-step run gets about 15% at s = 17 and 16% at s = 33
    assert metrics["test_relative_l2"] < 0.3, metrics
    ratio = metrics["test_relative_l2_super_resolution"] / metrics["test_relative_l2"]
    assert ratio < 1.5, metrics
    assert "prediction.png" in {p.name for p in result.plots}
    again = runs.evaluate(tmp_path / "run")
    assert again["test_relative_l2"] == pytest.approx(metrics["test_relative_l2"], rel=1e-5)


def test_bad_settings_are_rejected():
    experiment = get_experiment("fno-darcy")
    with pytest.raises(InvalidArgumentError, match="multiple"):
        runs.resolve_config(experiment, overrides=["data.super_resolution=40"])
    config = runs.resolve_config(
        experiment, overrides=["data.resolution=9", "data.super_resolution=17"]
    )
    with pytest.raises(InvalidArgumentError, match="model.modes"):
        experiment.build(config, torch.device("cpu"), torch.float32)
