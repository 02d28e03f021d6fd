"""The Trainer on a tiny regression task: logging, checkpoints, resume, early stopping, hooks."""

import json
import math

import pytest
import torch
from torch import nn

from kutta.errors import InvalidArgumentError, KuttaError
from kutta.train import BatchSchedule, DistInfo, Hook, StepOutput, TrainConfig, Trainer
from kutta.train.trainer import TrainingDivergedError, read_metrics_log


class LineTask:
    """Fit y = 2x + 1 with one linear layer; every example is one (x, y) pair."""

    def __init__(self, num_examples=64, regularizer=True):
        torch.manual_seed(0)
        self.model = nn.Linear(1, 1)
        self.x = torch.linspace(-1, 1, num_examples)[:, None]
        self.y = 2 * self.x + 1
        self.num_examples = num_examples
        self.with_regularizer = regularizer
        self.evaluations = 0

    def loss(self, model, indices):
        prediction = model(self.x[indices])
        loss = (prediction - self.y[indices]).pow(2).mean()
        reg = (lambda: prediction.pow(2).mean()) if self.with_regularizer else None
        return StepOutput(loss=loss, regularizer=reg)

    def evaluate(self, model):
        self.evaluations += 1
        return {"val_loss": (model(self.x) - self.y).pow(2).mean().item()}

    def nfe(self):
        return 0


def config(**overrides):
    settings = dict(steps=40, batch_size=8, lr=0.05, log_every=5, checkpoint_every=10)
    settings.update(overrides)
    return TrainConfig(**settings)


def test_training_reduces_the_loss_and_logs_every_few_steps(tmp_path):
    task = LineTask()
    before = task.evaluate(task.model)["val_loss"]
    result = Trainer(task, config(eval_every=20), run_dir=tmp_path).fit()
    records = read_metrics_log(tmp_path)
    assert [r["step"] for r in records] == [5, 10, 15, 20, 25, 30, 35, 40]
    assert records[-1]["loss"] < records[0]["loss"]
    assert "val/val_loss" in records[3] and "val/val_loss" not in records[2]
    assert task.evaluate(task.model)["val_loss"] < 0.1 * before
    assert result["steps"] == 40 and math.isfinite(result["final_loss"])
    assert (tmp_path / "checkpoints" / "last.pt").is_file()


class Crash(Hook):
    def __init__(self, at_step):
        self.at_step = at_step

    def on_step(self, trainer, step):
        if step == self.at_step:
            raise KeyboardInterrupt


def test_resume_after_a_crash_matches_an_uninterrupted_run(tmp_path):
    settings = config(eval_every=10, schedule="cosine", restore_best=True)
    full = LineTask()
    Trainer(full, settings, run_dir=tmp_path / "full").fit()

    interrupted = LineTask()
    with pytest.raises(KeyboardInterrupt):
        # dies at step 27: the last checkpoint is from step 20, the log has steps up to 25
        Trainer(interrupted, settings, run_dir=tmp_path / "cut", hooks=[Crash(27)]).fit()
    resumed = LineTask()
    trainer = Trainer(resumed, settings, run_dir=tmp_path / "cut", resume=True)
    assert trainer.step == 20
    trainer.fit()
    for a, b in zip(full.model.parameters(), resumed.model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    steps = [r["step"] for r in read_metrics_log(tmp_path / "cut")]
    assert steps == [5, 10, 15, 20, 25, 30, 35, 40]  # no duplicated lines from the dead run
    assert (
        read_metrics_log(tmp_path / "cut")[-1]["loss"]
        == read_metrics_log(tmp_path / "full")[-1]["loss"]
    )


def test_early_stopping_and_restore_best():
    class Worsening(LineTask):
        def evaluate(self, model):
            self.evaluations += 1
            return {"val_loss": float(self.evaluations)}  # best at the first evaluation

    task = Worsening()
    seen = {}

    class Remember(Hook):
        def on_log(self, trainer, record):
            if record["step"] == 2:
                seen["state"] = {k: v.clone() for k, v in trainer.model.state_dict().items()}

    trainer = Trainer(
        task,
        config(steps=100, eval_every=2, patience=3, restore_best=True, log_every=2),
        hooks=[Remember()],
    )
    result = trainer.fit()
    assert result["stopped_early"] and result["steps"] == 8 and result["best_step"] == 2
    for key, value in task.model.state_dict().items():
        torch.testing.assert_close(value, seen["state"][key], rtol=0, atol=0)


def test_nfe_regularizer_and_gradient_clipping(tmp_path):
    plain, regularized = LineTask(), LineTask()
    Trainer(plain, config()).fit()
    Trainer(regularized, config(nfe_weight=1.0, grad_clip=0.5), run_dir=tmp_path).fit()
    # the penalty on the output's size pulls the bias (the mean output) towards zero
    assert abs(regularized.model.bias.item()) < abs(plain.model.bias.item())

    class TensorPenalty(LineTask):  # a penalty given as a tensor acts like one given as a function
        def loss(self, model, indices):
            out = super().loss(model, indices)
            return StepOutput(out.loss, out.regularizer())

    as_tensor = TensorPenalty()
    Trainer(as_tensor, config(nfe_weight=1.0, grad_clip=0.5)).fit()
    torch.testing.assert_close(as_tensor.model.bias, regularized.model.bias, rtol=0, atol=0)
    assert all("grad_norm" in r for r in read_metrics_log(tmp_path))
    with pytest.raises(KuttaError, match="no regularizer"):
        Trainer(LineTask(regularizer=False), config(nfe_weight=1.0)).fit()


def test_divergence_is_reported_with_advice():
    with pytest.raises(TrainingDivergedError, match="smaller train.lr"):
        Trainer(LineTask(), config(lr=1e3, optimizer="sgd")).fit()


def test_batches_of_two_processes_form_the_single_process_batch():
    single = BatchSchedule(50, 10, seed=4, info=DistInfo())
    shards = [BatchSchedule(50, 10, seed=4, info=DistInfo(rank=r, world_size=2)) for r in (0, 1)]
    assert single.steps_per_epoch == shards[0].steps_per_epoch == 5
    for step in range(12):  # crosses epochs: each epoch is a new permutation
        union = torch.cat([s.indices(step) for s in shards])
        assert sorted(union.tolist()) == sorted(single.indices(step).tolist())
    assert single.indices(0).tolist() != single.indices(5).tolist()


def test_batch_size_must_fit_the_data_and_the_processes():
    with pytest.raises(InvalidArgumentError, match="divisible"):
        BatchSchedule(50, 9, seed=0, info=DistInfo(rank=0, world_size=2))
    with pytest.raises(InvalidArgumentError, match="larger than the number"):
        BatchSchedule(5, 8, seed=0, info=DistInfo())


def test_a_torn_log_line_is_skipped(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(
        json.dumps({"step": 1, "loss": 1.0}) + '\n{"step": 2, "lo'
    )
    assert read_metrics_log(tmp_path) == [{"step": 1, "loss": 1.0}]


class CurveTask(LineTask):
    """Fit y = sin(3x) with a small tanh network: Adam alone leaves a visible error."""

    def __init__(self):
        super().__init__(regularizer=False)
        torch.manual_seed(0)
        self.model = nn.Sequential(nn.Linear(1, 16), nn.Tanh(), nn.Linear(16, 1)).double()
        self.x, self.y = self.x.double(), torch.sin(3 * self.x.double())
        self.loss_calls = 0

    def loss(self, model, indices):
        self.loss_calls += 1
        return super().loss(model, indices)


def test_lbfgs_steps_follow_adam_and_fit_tightly():
    adam_only, finished = CurveTask(), CurveTask()
    Trainer(adam_only, config(steps=20, lr=0.01)).fit()
    Trainer(finished, config(steps=20, lr=0.01, lbfgs_steps=100)).fit()
    assert adam_only.evaluate(adam_only.model)["val_loss"] > 1e-2
    assert finished.evaluate(finished.model)["val_loss"] < 1e-5


def test_lbfgs_one_iteration_per_step_equals_one_long_lbfgs_run_with_no_extra_solves():
    # Reference: torch's L-BFGS doing all 30 iterations in one call, from the same start.
    reference = CurveTask()
    optimizer = torch.optim.LBFGS(
        reference.model.parameters(), lr=1.0, max_iter=30, max_eval=10**6, history_size=50,
        line_search_fn="strong_wolfe", tolerance_grad=0.0, tolerance_change=0.0,
    )  # fmt: skip
    everything = torch.arange(reference.num_examples)

    def closure():
        optimizer.zero_grad()
        loss = reference.loss(reference.model, everything).loss
        loss.backward()
        return loss

    optimizer.step(closure)

    # The Trainer with steps=1 and lr tiny: the Adam step barely moves the parameters, so start
    # both from the state after that step.
    task = CurveTask()
    trainer = Trainer(task, config(steps=1, lr=1e-300, lbfgs_steps=30))
    trainer.fit()
    for a, b in zip(reference.model.parameters(), task.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    # one Adam step's loss, then exactly the evaluations the single run made
    assert task.loss_calls == 1 + reference.loss_calls


def test_resume_inside_the_lbfgs_phase_matches_an_uninterrupted_run(tmp_path):
    settings = config(steps=10, lr=0.01, lbfgs_steps=30, checkpoint_every=10)
    full = CurveTask()
    Trainer(full, settings, run_dir=tmp_path / "full").fit()
    with pytest.raises(KeyboardInterrupt):
        Trainer(CurveTask(), settings, run_dir=tmp_path / "cut", hooks=[Crash(27)]).fit()
    resumed = CurveTask()
    trainer = Trainer(resumed, settings, run_dir=tmp_path / "cut", resume=True)
    assert trainer.step == 20 and isinstance(trainer.optimizer, torch.optim.LBFGS)
    trainer.fit()
    for a, b in zip(full.model.parameters(), resumed.model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


class Calls(Hook):
    """Records the task's loss-call count after every step."""

    def __init__(self, task):
        self.task, self.after_step = task, {}

    def on_step(self, trainer, step):
        self.after_step[step] = self.task.loss_calls


def test_resume_inside_the_lbfgs_phase_makes_no_extra_loss_evaluation(tmp_path):
    # The closure's memo of its last evaluation is saved: the first L-BFGS step after a resume
    # recalls the loss at the current parameters instead of computing it again.
    settings = config(steps=10, lr=0.01, lbfgs_steps=30, checkpoint_every=10)
    full = CurveTask()
    calls = Calls(full)
    Trainer(full, settings, run_dir=tmp_path / "full", hooks=[calls]).fit()
    with pytest.raises(KeyboardInterrupt):
        Trainer(CurveTask(), settings, run_dir=tmp_path / "cut", hooks=[Crash(27)]).fit()
    resumed = CurveTask()
    Trainer(resumed, settings, run_dir=tmp_path / "cut", resume=True).fit()
    assert resumed.loss_calls == full.loss_calls - calls.after_step[20]


def test_resume_between_log_lines_logs_the_same_losses(tmp_path):
    # log every 6 steps, checkpoint every 10: the checkpoint at step 20 falls inside the window
    # that the line at step 24 averages (steps 19-24)
    settings = config(log_every=6, checkpoint_every=10)
    Trainer(LineTask(), settings, run_dir=tmp_path / "full").fit()
    with pytest.raises(KeyboardInterrupt):
        Trainer(LineTask(), settings, run_dir=tmp_path / "cut", hooks=[Crash(27)]).fit()
    Trainer(LineTask(), settings, run_dir=tmp_path / "cut", resume=True).fit()
    full, cut = read_metrics_log(tmp_path / "full"), read_metrics_log(tmp_path / "cut")
    assert [r["step"] for r in cut] == [r["step"] for r in full] == [6, 12, 18, 24, 30, 36, 40]
    assert [r["loss"] for r in cut] == [r["loss"] for r in full]


class ScheduledLineTask(LineTask):
    """LineTask whose loss weight grows with the step the Trainer announces."""

    def __init__(self):
        super().__init__(regularizer=False)
        self.steps_seen = []

    def begin_step(self, step):
        self.steps_seen.append(step)

    def loss(self, model, indices):
        out = super().loss(model, indices)
        return StepOutput(loss=(1 + self.steps_seen[-1] ** 2) * out.loss)


def test_a_task_schedule_follows_the_trainer_step_across_a_resume(tmp_path):
    settings = config()
    full = ScheduledLineTask()
    Trainer(full, settings, run_dir=tmp_path / "full").fit()
    assert full.steps_seen == list(range(40))
    with pytest.raises(KeyboardInterrupt):
        Trainer(ScheduledLineTask(), settings, run_dir=tmp_path / "cut", hooks=[Crash(27)]).fit()
    resumed = ScheduledLineTask()
    Trainer(resumed, settings, run_dir=tmp_path / "cut", resume=True).fit()
    assert resumed.steps_seen == list(range(20, 40))
    for a, b in zip(full.model.parameters(), resumed.model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_lbfgs_steps_must_not_be_negative():
    with pytest.raises(InvalidArgumentError, match="lbfgs_steps"):
        TrainConfig(lbfgs_steps=-1)
