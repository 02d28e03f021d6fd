"""kutta.train.fit: a Latent ODE trained through the Trainer on a tiny IrregularBatch.

Checks that the loss goes down, that the checkpoint is written atomically (a failed write
leaves the previous one whole, and no temporary file behind), that a killed run resumes to
exactly the parameters of an uninterrupted one, and that bad input is explained.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import kutta.train.checkpoint as checkpoint_module
from kutta.data import IrregularBatch, collate_irregular, split_extrapolation
from kutta.errors import InvalidArgumentError
from kutta.models import LatentODE
from kutta.train import Hook, SeriesTask, TrainConfig, fit, load_checkpoint
from kutta.train.trainer import CHECKPOINT_NAME, read_metrics_log


def tiny_series(num_series: int = 8) -> IrregularBatch:
    """Damped sines of different frequencies on ragged, per-series irregular grids."""
    generator = torch.Generator().manual_seed(0)
    series = []
    for i in range(num_series):
        n = 6 + i % 3
        t = torch.cat([torch.zeros(1), torch.rand(n - 1, generator=generator).sort().values * 2])
        y = torch.sin((1 + 0.2 * i) * t) * torch.exp(-0.3 * t)
        series.append((t, y.unsqueeze(-1)))
    return collate_irregular(series)


def latent_ode() -> LatentODE:
    torch.manual_seed(0)
    return LatentODE(1, latent_dim=2, encoder_hidden=6, decoder_hidden=6, obs_std=0.1, method="rk4")


def settings(**overrides) -> TrainConfig:
    values = dict(steps=12, batch_size=4, lr=0.02, log_every=2, checkpoint_every=4, seed=3)
    values.update(overrides)
    return TrainConfig(**values)


def full_loss(model: LatentODE, data: IrregularBatch) -> float:
    torch.manual_seed(123)
    with torch.no_grad():
        return model.loss(data, n_samples=8).item()


def test_fit_reduces_the_loss_and_logs_nfe(tmp_path):
    data = tiny_series()
    model = latent_ode()
    before = full_loss(model, data)
    result = fit(model, data, settings(steps=30), run_dir=tmp_path)
    assert result["steps"] == 30
    assert full_loss(model, data) < 0.8 * before
    records = read_metrics_log(tmp_path)
    assert [r["step"] for r in records] == list(range(2, 31, 2))
    # rk4 with one step per interval: at least 4 calls per interval of the encoder and decoder
    assert all(r["nfe_forward"] >= 4 * 5 for r in records)
    assert all(r["nfe_backward"] == 0 for r in records)  # backprop: no field calls backwards


def test_fit_with_a_target_and_validation(tmp_path):
    data = tiny_series()
    observed, target = split_extrapolation(data)
    model = latent_ode()
    result = fit(
        model,
        observed[:6],
        settings(steps=8, eval_every=4),
        target=target[:6],
        val_data=observed[6:],
        val_target=target[6:],
        run_dir=tmp_path,
        loss_kwargs={"n_samples": 2},
    )
    evaluated = [r for r in read_metrics_log(tmp_path) if "val/val_loss" in r]
    assert [r["step"] for r in evaluated] == [4, 8]
    assert result["best_val_loss"] == min(r["val/val_loss"] for r in evaluated)


def test_the_checkpoint_is_written_atomically(tmp_path, monkeypatch):
    data = tiny_series()
    fit(latent_ode(), data, settings(steps=4), run_dir=tmp_path)
    path = tmp_path / CHECKPOINT_NAME
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temporary file left
    saved = load_checkpoint(path)
    assert saved["step"] == 4
    model = latent_ode()
    model.load_state_dict(saved["model"])  # the checkpoint holds this model's parameters

    def torn_save(state, file):
        file.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_module.torch, "save", torn_save)
    with pytest.raises(OSError, match="disk full"):
        fit(latent_ode(), data, settings(steps=8), run_dir=tmp_path, resume=True)
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 4  # the previous checkpoint is intact
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]


class Crash(Hook):
    def __init__(self, at_step: int):
        self.at_step = at_step

    def on_step(self, trainer, step):
        if step == self.at_step:
            raise KeyboardInterrupt


def test_a_killed_fit_resumes_to_the_uninterrupted_result(tmp_path):
    data = tiny_series()
    config = settings(schedule="cosine")
    uninterrupted = latent_ode()
    fit(uninterrupted, data, config, run_dir=tmp_path / "full", loss_kwargs={"n_samples": 2})

    with pytest.raises(KeyboardInterrupt):  # dies at step 7; the last checkpoint is step 4
        fit(
            latent_ode(),
            data,
            config,
            run_dir=tmp_path / "cut",
            hooks=[Crash(7)],
            loss_kwargs={"n_samples": 2},
        )
    assert load_checkpoint(tmp_path / "cut" / CHECKPOINT_NAME)["step"] == 4
    resumed = latent_ode()
    result = fit(
        resumed, data, config, run_dir=tmp_path / "cut", resume=True, loss_kwargs={"n_samples": 2}
    )
    assert result["steps"] == 12
    for name, value in uninterrupted.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], value, rtol=0, atol=0, msg=name)
    logged = [r["step"] for r in read_metrics_log(tmp_path / "cut")]
    assert logged == [2, 4, 6, 8, 10, 12]  # the steps logged past the checkpoint were redone once


def test_fitting_leaves_no_counting_hooks_behind():
    model = latent_ode()
    fit(model, tiny_series(), settings(steps=2))
    assert not model.dynamics._forward_pre_hooks and not model.encoder_func._forward_pre_hooks


def test_bad_input_is_explained(tmp_path):
    data = tiny_series()
    with pytest.raises(InvalidArgumentError, match="loss\\(batch, target=None\\)"):
        fit(nn.Linear(1, 1), data, settings())
    with pytest.raises(InvalidArgumentError, match="same 8 series"):
        fit(latent_ode(), data, settings(), target=data[:5])
    with pytest.raises(InvalidArgumentError, match="indexable"):
        fit(latent_ode(), object(), settings())
    with pytest.raises(InvalidArgumentError, match="val_target was given without val_data"):
        SeriesTask(latent_ode(), data, val_target=data)
    with pytest.raises(InvalidArgumentError, match="run_dir"):
        fit(latent_ode(), data, settings(), resume=True)
