"""The pinn-burgers experiment: its data and scores follow the stated problem, a short run
trains through both phases (Adam by the Trainer, then L-BFGS), and options are checked."""

import math

import numpy as np
import pytest
import torch

import kutta.experiments.pinn_burgers as pinn_burgers  # registers "pinn-burgers"
from kutta.errors import InvalidArgumentError, UnknownNameError
from kutta.experiments import get_experiment
from kutta.experiments import run as runs
from kutta.pde.burgers_exact import burgers_exact
from kutta.pde.pinn import Derivatives, fit
from kutta.train.trainer import Hook, Trainer, read_metrics_log

TINY = [
    "data.num_collocation=200",
    "data.num_initial=20",
    "data.num_boundary=20",
    "data.grid_x=64",
    "data.grid_t=20",
    "model.depth=3",
    "train.batch_size=200",
    "train.steps=20",
    "train.lbfgs_steps=20",
    "train.eval_every=20",
    "train.log_every=5",
    "train.checkpoint_every=20",
]


def _config(*overrides):
    return runs.resolve_config(get_experiment("pinn-burgers"), overrides=[*TINY, *overrides])


def test_problem_data_follow_burgers_setup():
    config = _config()
    torch.manual_seed(0)
    task = pinn_burgers.PINNBurgersTask(config, torch.device("cpu"), torch.float64)
    initial = task.problem.conditions["initial"]
    assert bool((initial.points[:, 1] == 0).all())
    torch.testing.assert_close(initial.target, -torch.sin(math.pi * initial.points[:, 0]))
    boundary = task.problem.conditions["boundary"]
    assert set(boundary.points[:, 0].tolist()) == {-1.0, 1.0} and bool((boundary.target == 0).all())
    grid = task.grid.numpy()
    np.testing.assert_array_equal(task.exact.numpy(), burgers_exact(grid[:, 0], grid[:, 1]))
    assert grid[:, 1].max() == pytest.approx(0.99) and len(grid) == 64 * 20
    # the residual is Burgers' operator: for u = x t, u_t + u u_x - nu u_xx = x + x t**2
    x = task.problem.collocation[:5].clone().requires_grad_(True)
    u = (x[:, 0] * x[:, 1])[:, None]
    residual = task.problem.residual_fn(x, u, Derivatives(x, u))
    torch.testing.assert_close(residual, x[:, 0] + x[:, 0] * x[:, 1] ** 2)


def test_short_run_trains_both_phases_and_writes_a_run(tmp_path):
    result = runs.train("pinn-burgers", overrides=TINY, out=tmp_path)
    metrics = result.metrics["metrics"]
    records = read_metrics_log(tmp_path)
    adam_end = [r for r in records if r["step"] == 20][0]["loss"]
    assert records[-1]["step"] == 40 and records[-1]["loss"] < adam_end
    assert 0 < metrics["relative_l2"] < 1.2 and metrics["lbfgs_evaluations"] >= 20
    assert metrics["loss"] == pytest.approx(
        metrics["loss_pde"] + metrics["loss_initial"] + metrics["loss_boundary"]
    )
    # no differential-equation solver, so no NFE curve
    assert sorted(p.name for p in result.plots) == ["loss.png", "solution.png"]
    assert "relative L2 error" in result.summary
    # the saved run reloads to the same score
    assert runs.evaluate(tmp_path)["relative_l2"] == pytest.approx(
        metrics["relative_l2"], rel=1e-10
    )
    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=False)
    assert int(state["model"]["loss_evaluations"]) == 20 + metrics["lbfgs_evaluations"]


def test_trainer_schedule_is_the_fit_functions_schedule(tmp_path):
    # Adam steps through the Trainer, then one L-BFGS iteration per Trainer step, give the
    # same result as pde.pinn.fit with the same schedule (full-batch Adam sums the points in a
    # shuffled order, so equal to rounding, not bitwise). They can differ in general: fit's
    # L-BFGS caps line searches at 1.25 evaluations per iteration on average and stops at a
    # gradient of 1e-8, the Trainer's allows 25 per iteration and stops at torch's 1e-7; neither
    # limit is reached here.
    config = _config("train.steps=15", "train.lbfgs_steps=15")
    torch.manual_seed(config.train.seed)
    direct = pinn_burgers.PINNBurgersTask(config, torch.device("cpu"), torch.float64)
    history = fit(direct.problem, adam_steps=15, lr=config.train.lr, lbfgs_steps=15, log_every=15)
    result = runs.train(
        "pinn-burgers", overrides=[*TINY, "train.steps=15", "train.lbfgs_steps=15"], out=tmp_path
    )
    metrics = result.metrics["metrics"]
    assert metrics["relative_l2"] == pytest.approx(
        direct.evaluate(direct.model)["val_loss"], rel=1e-6
    )
    # the same line searches: as many loss evaluations as fit's L-BFGS made
    assert metrics["lbfgs_evaluations"] == history.lbfgs_evaluations > 15


class _RecordWeights(Hook):
    def __init__(self):
        self.weights = []

    def on_step(self, trainer, step):
        self.weights.append(trainer.task.problem.weights())


def test_annealing_changes_the_weights_during_adam_only():
    config = _config("pinn.weighting=annealing", "pinn.annealing_every=5")
    torch.manual_seed(config.train.seed)
    task = pinn_burgers.PINNBurgersTask(config, torch.device("cpu"), torch.float64)
    recorder = _RecordWeights()
    Trainer(task, config.train, hooks=[recorder]).fit()
    adam, lbfgs = recorder.weights[:20], recorder.weights[20:]
    # updates at Adam steps 1, 6, 11, 16 (every 5th loss evaluation), none after
    changes = [i for i in range(1, 20) if adam[i] != adam[i - 1]]
    assert changes == [5, 10, 15] and adam[0] != {"pde": 1.0, "initial": 1.0, "boundary": 1.0}
    assert len(lbfgs) == 20 and all(w == adam[-1] for w in lbfgs)
    assert task.lbfgs_evaluations() >= 20


def test_resume_inside_the_lbfgs_phase_matches_an_uninterrupted_run(tmp_path):
    # annealing weights are part of the saved state, so the resumed L-BFGS objective is the same
    settings = ["pinn.weighting=annealing", "pinn.annealing_every=5", "train.checkpoint_every=10"]
    config = _config(*settings)

    def trainer(run_dir, **kwargs):
        torch.manual_seed(config.train.seed)
        task = pinn_burgers.PINNBurgersTask(config, torch.device("cpu"), torch.float64)
        return Trainer(task, config.train, run_dir=run_dir, **kwargs)

    full = trainer(tmp_path / "full")
    full.fit()
    with pytest.raises(KeyboardInterrupt):
        trainer(tmp_path / "cut", hooks=[_Crash(35)]).fit()
    resumed = trainer(tmp_path / "cut", resume=True)
    assert resumed.step == 30
    resumed.fit()
    assert resumed.task.problem.weights() == full.task.problem.weights()
    for a, b in zip(full.model.parameters(), resumed.model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_resume_inside_the_adam_phase_matches_an_uninterrupted_run(tmp_path):
    # Annealing updates at Adam steps 1, 6, 11, 16; the run dies at step 10 and resumes from
    # its checkpoint at step 7, between two updates, so the resumed run must know where it is
    # in the annealing schedule (not only the weights), and in the batch schedule (two batches
    # per epoch). The whole path: config file, build, checkpoint, resume, final metrics.
    settings = [
        *TINY,
        "pinn.weighting=annealing",
        "pinn.annealing_every=5",
        "train.batch_size=100",
        "train.checkpoint_every=7",
    ]
    full = runs.train("pinn-burgers", overrides=settings, out=tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):
        runs.train("pinn-burgers", overrides=settings, out=tmp_path / "cut", hooks=[_Crash(10)])
    saved = torch.load(tmp_path / "cut" / "checkpoints" / "last.pt", weights_only=True)
    assert saved["step"] == 7 and saved["model"]["_extra_state"]["weighting"]["calls"] == 7
    resumed = runs.train("pinn-burgers", resume=tmp_path / "cut")
    assert resumed.metrics["metrics"] == full.metrics["metrics"]
    ends = [
        torch.load(tmp_path / run / "checkpoints" / "last.pt", weights_only=True)["model"]
        for run in ("full", "cut")
    ]
    assert ends[0]["_extra_state"] == ends[1]["_extra_state"]
    assert ends[0]["_extra_state"]["weighting"]["values"] != {"initial": 1.0, "boundary": 1.0}
    for name, value in ends[0].items():
        if isinstance(value, torch.Tensor):
            torch.testing.assert_close(ends[1][name], value, rtol=0, atol=0)
    # the log's loss is a mean over the steps since the last record; the record at step 10
    # averages steps 8-10 after the resume (the Trainer keeps no window in its checkpoint),
    # the later ones are equal
    logs = [read_metrics_log(tmp_path / run) for run in ("full", "cut")]
    assert [r["step"] for r in logs[0]] == [r["step"] for r in logs[1]]
    assert [r["loss"] for r in logs[0][2:]] == [r["loss"] for r in logs[1][2:]]


def test_a_checkpoint_holding_only_the_weights_still_loads():
    # checkpoints written before the weighting's state was saved hold {"weights": ...}; the
    # annealing's count of updates is then the Adam-phase loss evaluations
    config = _config("pinn.weighting=annealing")
    torch.manual_seed(0)
    task = pinn_burgers.PINNBurgersTask(config, torch.device("cpu"), torch.float64)
    state = task.model.state_dict()
    for evaluations, calls in ((7, 7), (33, 20)):  # 20 Adam steps
        state["loss_evaluations"] = torch.tensor(evaluations)
        state["_extra_state"] = {"weights": {"initial": 2.5, "boundary": 4.0}}
        task.model.load_state_dict(state)
        restored = task.problem.weighting.state_dict()
        assert restored == {"values": {"initial": 2.5, "boundary": 4.0}, "calls": calls}


class _Crash(Hook):
    def __init__(self, at_step):
        self.at_step = at_step

    def on_step(self, trainer, step):
        if step == self.at_step:
            raise KeyboardInterrupt


def test_inverse_problem_reports_the_learned_coefficients(tmp_path):
    result = runs.train(
        "pinn-burgers",
        overrides=[*TINY, "data.inverse=true", "data.num_observations=100"],
        out=tmp_path,
    )
    metrics = result.metrics["metrics"]
    assert metrics["lambda1"] != 0.0 and metrics["lambda2"] != pytest.approx(math.exp(-6))
    assert metrics["lambda1_error_percent"] == pytest.approx(100 * abs(metrics["lambda1"] - 1))
    assert set(k for k in metrics if k.startswith("loss_")) == {"loss_pde", "loss_data"}
    assert "lambda2" in result.summary


def test_bad_settings_are_rejected():
    with pytest.raises(InvalidArgumentError, match="batch_size"):
        _config("train.batch_size=500")
    with pytest.raises(UnknownNameError, match="weighting"):
        _config("pinn.weighting=softadapt")
    with pytest.raises(UnknownNameError, match="sampling"):
        _config("data.sampling=grid")
    with pytest.raises(InvalidArgumentError, match="forward problem"):
        _config("data.inverse=true", "pinn.weighting=annealing")
