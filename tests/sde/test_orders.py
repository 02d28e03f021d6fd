"""Strong and weak convergence of the SDE methods against exact solutions on the same path.

Strong order: slope of log E|X_T - X_T^h| against log h, for h = 2^-3 .. 2^-7 (GBM: 2^-4 .. 2^-8).
Exact solutions: GBM X_T = x0 exp((mu - sigma²/2) T + sigma W_T) (Itô), and OU's from _ou.py
(X_1 from the Brownian interval's increments and space-time integrals on a 2^12 grid).
"""

import math

import pytest
import torch

import kutta.sde as ksde

from . import _ou

MU, SIGMA = 0.5, 0.8
BATCH = 1000


class GBM(ksde.BaseSDE):
    """dX = mu X dt + sigma X dW (Itô); the same solution in Stratonovich form has drift (mu - sigma²/2) X."""

    def __init__(self, noise_type="diagonal", sde_type="ito"):
        super().__init__(noise_type=noise_type, sde_type=sde_type)
        self.drift = MU if sde_type == "ito" else MU - 0.5 * SIGMA**2

    def f(self, t, y):
        return self.drift * y

    def g(self, t, y):
        return SIGMA * y if self.noise_type == "diagonal" else (SIGMA * y).unsqueeze(-1)


class OU(ksde.BaseSDE):
    """dX = -θ X dt + σ dW: additive noise, so Itô and Stratonovich coincide."""

    def __init__(self, sde_type="ito"):
        super().__init__(noise_type="additive", sde_type=sde_type)

    def f(self, t, y):
        return _ou.drift(t, y)

    def g(self, t, y):
        return _ou.diffusion(t, y)


def _slope(steps, errors):
    x = torch.log2(torch.tensor(steps, dtype=torch.float64))
    y = torch.log2(torch.tensor(errors, dtype=torch.float64))
    x = x - x.mean()
    return float((x * (y - y.mean())).sum() / (x * x).sum())


def _gbm_order(method, noise_type="diagonal", sde_type="ito", options=None):
    y0 = torch.ones(BATCH, 1, dtype=torch.float64)
    bm = ksde.BrownianInterval(0.0, 1.0, size=(BATCH, 1), dtype=torch.float64, entropy=123)
    exact = y0 * torch.exp(MU - 0.5 * SIGMA**2 + SIGMA * bm(0.0, 1.0))
    steps = [2.0**-k for k in range(4, 9)]
    errors = []
    for dt in steps:
        ys = ksde.sdeint(
            GBM(noise_type, sde_type), y0, [0.0, 1.0], bm=bm, method=method, dt=dt, options=options
        )
        errors.append((ys[-1] - exact).abs().mean().item())
    return _slope(steps, errors)


def _ou_order(method, sde_type):
    y0 = torch.full((BATCH, 1), _ou.X0, dtype=torch.float64)
    bm = ksde.BrownianInterval(
        0.0,
        1.0,
        size=(BATCH, 1),
        dtype=torch.float64,
        entropy=7,
        levy_area_approximation="space-time",
    )
    exact = _ou.exact_at_one(bm, y0)
    steps = [2.0**-k for k in range(3, 8)]
    errors = []
    for dt in steps:
        ys = ksde.sdeint(OU(sde_type), y0, [0.0, 1.0], bm=bm, method=method, dt=dt)
        errors.append((ys[-1] - exact).abs().mean().item())
    return _slope(steps, errors)


@pytest.mark.parametrize(
    ("method", "noise_type", "sde_type", "options", "order"),
    [
        ("euler", "diagonal", "ito", None, 0.5),
        ("milstein", "diagonal", "ito", None, 1.0),
        ("milstein", "scalar", "ito", None, 1.0),
        ("milstein", "diagonal", "ito", {"grad_free": True}, 1.0),
        ("milstein", "diagonal", "stratonovich", None, 1.0),
        ("milstein", "scalar", "stratonovich", {"grad_free": True}, 1.0),
    ],
)
def test_strong_order_on_geometric_brownian_motion(method, noise_type, sde_type, options, order):
    assert abs(_gbm_order(method, noise_type, sde_type, options) - order) < 0.15


def test_strong_order_on_ornstein_uhlenbeck():
    assert abs(_ou_order("reversible_heun", "stratonovich") - 1.0) < 0.15
    # SRA's order 1.5 is a lower bound: with a linear drift the order-1.5 error terms vanish and
    # the measured order is 2.0, so the exact OU only bounds it from below. The nonlinear test
    # below checks 1.5 itself.
    assert _ou_order("srk", "ito") > 1.5 - 0.15


class NonlinearAdditive(ksde.SDEIto):
    def __init__(self):
        super().__init__(noise_type="additive")

    def f(self, t, y):
        return -torch.sin(2 * y) - 0.5 * y

    def g(self, t, y):
        return torch.full((y.shape[0], 1, 1), 0.8, dtype=y.dtype)


@pytest.mark.slow
def test_srk_strong_order_for_nonlinear_additive_noise():
    # No closed form exists for a nonlinear drift with additive noise: the reference is SRK
    # itself with dt = 2^-13 on the same path (its error, ~1e-7, is far below the errors fitted).
    batch = 500
    y0 = torch.full((batch, 1), 0.7, dtype=torch.float64)
    bm = ksde.BrownianInterval(
        0.0,
        1.0,
        size=(batch, 1),
        dtype=torch.float64,
        entropy=7,
        levy_area_approximation="space-time",
    )
    reference = ksde.sdeint(NonlinearAdditive(), y0, [0.0, 1.0], bm=bm, method="srk", dt=2.0**-13)[
        -1
    ]
    steps = [2.0**-k for k in range(5, 10)]
    errors = [
        (
            ksde.sdeint(NonlinearAdditive(), y0, [0.0, 1.0], bm=bm, method="srk", dt=dt)[-1]
            - reference
        )
        .abs()
        .mean()
        .item()
        for dt in steps
    ]
    assert abs(_slope(steps, errors) - 1.5) < 0.15


def test_srk_strong_order_for_scalar_noise_on_gbm():
    y0 = torch.ones(BATCH, 1, dtype=torch.float64)
    bm = ksde.BrownianInterval(
        0.0,
        1.0,
        size=(BATCH, 1),
        dtype=torch.float64,
        entropy=5,
        levy_area_approximation="space-time",
    )
    exact = y0 * torch.exp(MU - 0.5 * SIGMA**2 + SIGMA * bm(0.0, 1.0))
    steps = [2.0**-k for k in range(3, 8)]
    errors = [
        (ksde.sdeint(GBM("scalar"), y0, [0.0, 1.0], bm=bm, method="srk", dt=dt)[-1] - exact)
        .abs()
        .mean()
        .item()
        for dt in steps
    ]
    assert abs(_slope(steps, errors) - 1.5) < 0.15


@pytest.mark.parametrize("method", ["euler", "milstein", "srk"])
def test_weak_mean_and_variance_of_gbm(method):
    # E X_T = x0 e^{mu T}, Var X_T = x0² e^{2 mu T} (e^{sigma² T} - 1).
    n, mu, sigma = 20000, 0.5, 0.5
    gbm = GBM()
    gbm.drift = mu

    class Diffusion(GBM):
        def g(self, t, y):
            return sigma * y

    sde = Diffusion()
    sde.drift = mu
    y0 = torch.ones(n, 1, dtype=torch.float64)
    ys = ksde.sdeint(sde, y0, [0.0, 1.0], method=method, dt=2.0**-6)
    final = ys[-1, :, 0]
    mean_exact = math.exp(mu)
    var_exact = math.exp(2 * mu) * (math.exp(sigma**2) - 1)
    mean_se = math.sqrt(var_exact / n)
    assert abs(final.mean().item() - mean_exact) < 4 * mean_se + 0.01
    assert abs(final.var().item() - var_exact) < 0.05 * var_exact + 0.02
