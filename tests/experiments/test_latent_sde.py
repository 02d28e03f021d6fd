"""latent-sde: the data, the prior's KL, and a short run that writes likelihood and coverage."""

import math

import pytest
import torch

from kutta.experiments import run as runs
from kutta.experiments.latent_sde import LatentSDE, LatentSDEData, sine_data

TINY = [
    "train.steps=2",
    "train.batch_size=8",
    "train.tensorboard=false",
    "model.hidden=8",
    "model.eval_samples=32",
    "solver.dt=0.05",
]


def test_data_are_the_sine_at_sorted_uniform_times():
    t, y = sine_data(LatentSDEData(), seed=0)
    assert t.shape == (16,) and bool((t[1:] > t[:-1]).all())
    assert t.min() >= 0.4 and t.max() < 1.6
    torch.testing.assert_close(y[:, 0], 0.8 * torch.sin(2 * math.pi * t))


def test_untrained_posterior_kl_is_the_euler_sum_of_half_u_squared():
    # Zero last layer: posterior drift f = 0, prior drift h = -theta y, g = sigma, so
    # u = (f - h) / g = theta y / sigma, and with q(y0) = p(y0) (KL 0) the path KL under Euler
    # on the output grid is sum_k |u(y_k)|^2 / 2 dt (Li et al. 2020, the log-ratio of the paths).
    torch.manual_seed(0)
    sde = LatentSDE(hidden=8, theta=1.0, sigma=0.5).double()
    ts = torch.linspace(0, 1, 101, dtype=torch.float64)
    ys, kl = sde(ts, batch_size=4, dt=0.01)
    assert ys.shape == (101, 4, 1)
    expected = 0.5 * (ys[:-1, :, 0] / 0.5).pow(2).sum(0) * 0.01
    torch.testing.assert_close(kl, expected)
    # q(y0) starts at the OU stationary law: variance sigma^2 / (2 theta) = 0.125
    assert sde.qy0_logvar.exp().item() == pytest.approx(0.125)


def test_short_run_reports_likelihood_and_coverage(tmp_path):
    result = runs.train("latent-sde", overrides=TINY, out=tmp_path)
    metrics = result.metrics["metrics"]
    assert metrics["elbo"] <= metrics["log_likelihood"] + 1e-6  # the KL is not negative
    assert 0 <= metrics["coverage_90"] <= 1 and metrics["median_abs_error"] >= 0
    assert sorted(p.name for p in result.plots) == ["loss.png", "nfe.png", "posterior.png"]
