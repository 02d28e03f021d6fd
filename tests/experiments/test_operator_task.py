"""What the operator experiments share: their classical data solves run once per process."""

import pytest
import torch

import kutta.experiments.fno_burgers as fno_burgers  # registers "fno-burgers"
import kutta.experiments.fno_darcy as fno_darcy  # registers "fno-darcy"
from kutta.experiments import get_experiment, operator_task
from kutta.experiments import run as runs

#: experiment: (its module, the name of its data function there, tiny overrides, its plots)
CASES = {
    "fno-burgers": (
        fno_burgers,
        "burgers_data",
        [
            "data.num_train=12",
            "data.num_test=4",
            "data.resolution=16",
            "data.super_resolution=32",
            "data.solver_points=32",
            "model.width=4",
            "model.modes=4",
            "train.steps=6",
            "train.batch_size=4",
            "train.eval_every=3",
            "train.checkpoint_every=4",
            "train.tensorboard=false",
        ],
        ["loss.png", "predictions.png"],
    ),
    "fno-darcy": (
        fno_darcy,
        "darcy_data",
        [
            "data.num_train=12",
            "data.num_test=4",
            "data.resolution=9",
            "data.super_resolution=17",
            "model.width=4",
            "model.modes=4",
            "train.steps=6",
            "train.batch_size=4",
            "train.eval_every=3",
            "train.checkpoint_every=4",
            "train.tensorboard=false",
        ],
        ["loss.png", "prediction.png"],
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_a_run_solves_its_data_once_for_training_evaluation_and_plots(name, tmp_path, monkeypatch):
    module, data_function, tiny, plots = CASES[name]
    solve = getattr(module, data_function)
    calls = []

    def counting(*args, **kwargs):
        calls.append(kwargs["generator"].initial_seed())
        return solve(*args, **kwargs)

    operator_task._solved.cache_clear()
    monkeypatch.setattr(module, data_function, counting)
    result = runs.train(name, overrides=tiny, out=tmp_path)
    metrics = result.metrics["metrics"]
    assert runs.evaluate(tmp_path) == metrics
    assert sorted(p.name for p in runs.plot(tmp_path)) == plots
    assert calls == [0]
    # solved again in a fresh process (as a resumed run is), the data are the same: seeded
    operator_task._solved.cache_clear()
    assert runs.evaluate(tmp_path) == metrics and calls == [0, 0]
    # the cache holds one data set, keyed by the data settings and dtype
    config = runs.resolve_config(get_experiment(name), overrides=tiny)
    first = module.solved_pairs(config.data, torch.float32)
    config.data.seed = 1
    assert not torch.equal(module.solved_pairs(config.data, torch.float32)[0], first[0])
    module.solved_pairs(config.data, torch.float64)
    assert calls == [0, 0, 1, 1]
