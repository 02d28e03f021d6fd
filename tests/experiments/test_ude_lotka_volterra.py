"""ude-lotka-volterra: a UDE learns Lotka-Volterra's interaction terms, STLSQ recovers them."""

import math

import pytest
import torch

from kutta.experiments import run as runs
from kutta.experiments.ude_lotka_volterra import UDELotkaVolterra, UDELotkaVolterraConfig
from kutta.train.config import TrainConfig


class ExactInteraction(torch.nn.Module):
    """The missing terms themselves, standing in for a perfectly trained network."""

    def __init__(self, truth):
        super().__init__()
        self.truth = truth

    def forward(self, u):
        return self.truth.interaction(u)


def test_short_run_writes_metrics_and_plots(tmp_path):
    result = runs.train(
        "ude-lotka-volterra",
        overrides=["train.steps=3", "train.lbfgs_steps=2", "train.tensorboard=false"],
        out=tmp_path / "run",
    )
    metrics = result.metrics["metrics"]
    for key in ["fit_rmse", "recovered_u1u2_in_du1", "spurious_terms"]:
        assert math.isfinite(metrics[key])
    assert "extrapolation_max_rel_error_recovered" in metrics
    assert sorted(p.name for p in result.plots) == ["extrapolation.png", "loss.png", "nfe.png"]
    assert "recovered du1" in result.summary


def test_a_perfect_network_is_recovered_exactly_and_extrapolates():
    # With the true missing terms in place of the network, the whole pipeline (data, fit,
    # sparse regression, extrapolation to t = 50) must return the true system.
    experiment = UDELotkaVolterra()
    config = UDELotkaVolterraConfig(train=TrainConfig(dtype="float64"))
    task = experiment.build(config, torch.device("cpu"), torch.float64)
    task.model.field.network = ExactInteraction(task.truth)
    metrics = experiment.final_metrics(task, config)
    assert metrics["recovered_u1u2_in_du1"] == pytest.approx(-0.9, abs=1e-8)
    assert metrics["recovered_u1u2_in_du2"] == pytest.approx(0.8, abs=1e-8)
    assert metrics["spurious_terms"] == 0
    assert metrics["missing_terms_rel_error"] == 0
    assert metrics["extrapolation_max_rel_error_recovered"] < 1e-6
    assert metrics["extrapolation_max_rel_error_network"] < 1e-6
    assert metrics["fit_rmse"] < 1e-6


def test_a_model_that_blows_up_gets_an_infinite_extrapolation_error():
    experiment = UDELotkaVolterra()
    config = UDELotkaVolterraConfig(train=TrainConfig(dtype="float64"))
    task = experiment.build(config, torch.device("cpu"), torch.float64)

    class Explosive(torch.nn.Module):
        def forward(self, u):
            return u.square() * 10

    task.model.field.network = Explosive()
    metrics = experiment.final_metrics(task, config)
    assert metrics["extrapolation_max_rel_error_network"] == math.inf
    assert metrics["fit_rmse"] == math.inf


@pytest.mark.slow
def test_training_recovers_the_interaction_terms(tmp_path):
    # Rackauckas et al. 2020: the UDE's network, sparsified, is -0.9 u1 u2 and +0.8 u1 u2.
    result = runs.train("ude-lotka-volterra", overrides=["train.tensorboard=false"], out=tmp_path)
    metrics = result.metrics["metrics"]
    assert metrics["spurious_terms"] == 0
    assert metrics["recovered_u1u2_in_du1"] == pytest.approx(-0.9, rel=0.1)
    assert metrics["recovered_u1u2_in_du2"] == pytest.approx(0.8, rel=0.1)
    assert metrics["extrapolation_max_rel_error_recovered"] < 0.5
    assert metrics["extrapolation_max_rel_error_network"] > 1
