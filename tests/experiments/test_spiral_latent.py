"""spiral-latent: the spirals are the stated curves (Chen et al. 2018); a short run writes metrics."""

import math

import torch

from kutta.experiments import run as runs
from kutta.experiments.spiral_latent import SpiralLatentData, two_direction_spirals

TINY = [
    "data.num_series=20",
    "data.window=10",
    "train.steps=2",
    "train.batch_size=4",
    "train.eval_every=2",
    "train.tensorboard=false",
    "model.encoder_hidden=4",
    "model.decoder_hidden=4",
]


def test_series_are_noisy_windows_of_the_two_spirals():
    config = SpiralLatentData(num_series=200)
    t, clean, noisy, clockwise = two_direction_spirals(config, seed=0)
    assert torch.allclose(t, torch.linspace(0, 6 * math.pi, 1000, dtype=torch.float64)[:100])
    assert 60 < int(clockwise.sum()) < 140  # each direction with probability 1/2
    # counter-clockwise: r = 0.3 angle around (+5, 0); clockwise: r = 15 / angle around (-5, 0)
    ccw = clean[~clockwise] - torch.tensor([5.0, 0.0], dtype=torch.float64)
    r = ccw.norm(dim=-1)
    angle = r / 0.3
    torch.testing.assert_close(ccw[..., 0], r * torch.cos(angle))
    torch.testing.assert_close(ccw[..., 1], r * torch.sin(angle))
    cw = clean[clockwise] + torch.tensor([5.0, 0.0], dtype=torch.float64)
    r = cw.norm(dim=-1)
    angle = 15 / r
    torch.testing.assert_close(cw[..., 0], r * torch.cos(angle))
    torch.testing.assert_close(cw[..., 1], r * torch.sin(angle))
    # windows are consecutive grid points: the angle steps by 6 pi / 999 (decreasing when clockwise)
    step = (angle[:, 1:] - angle[:, :-1]).mean()
    assert abs(step.item() + 6 * math.pi / 999) < 1e-9
    assert abs((noisy - clean).std().item() - 0.3) < 0.01


def test_short_run_reports_the_reconstruction_rmse(tmp_path):
    result = runs.train("spiral-latent", overrides=TINY, out=tmp_path)
    metrics = result.metrics["metrics"]
    assert metrics["test_rmse"] > 0 and metrics["test_rmse_vs_observed"] > 0
    assert metrics["nfe"] > 0
    assert sorted(p.name for p in result.plots) == ["loss.png", "nfe.png", "reconstructions.png"]
    assert "RMSE" in result.summary
