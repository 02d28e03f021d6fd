"""SDE terms in kutta.solve: the shared loop against sdeint, strong orders, errors and gradients.

Exact solutions as in test_orders.py: GBM X_T = x0 exp((mu - sigma²/2) T + sigma W_T) (Itô), and
OU's from _ou.py (X_1 from the Brownian interval's increments and space-time integrals).
"""

import doctest
import importlib
import math

import pytest
import torch

import kutta
import kutta.sde as ksde
from kutta.errors import InvalidArgumentError
from kutta.sde.native import SDEMethod
from kutta.terms import SDETerm

from . import _ou

MU, SIGMA = 0.5, 0.8


def gbm_term(bm=None, noise_type="diagonal", sde_type="ito"):
    drift = MU if sde_type == "ito" else MU - 0.5 * SIGMA**2

    def diffusion(t, y):
        return SIGMA * y if noise_type == "diagonal" else (SIGMA * y).unsqueeze(-1)

    return SDETerm(lambda t, y: drift * y, diffusion, noise_type, sde_type, bm=bm)


def ou_term(bm):
    return SDETerm(_ou.drift, _ou.diffusion, noise_type="additive", bm=bm)


class AsSDE(torch.nn.Module):
    """The same SDE as an sdeint object."""

    def __init__(self, term):
        super().__init__()
        self.term = term
        self.noise_type, self.sde_type = term.noise_type, term.sde_type

    def f(self, t, y):
        return self.term.f(t, y)

    def g(self, t, y):
        return self.term.g(t, y)


def _bm(batch, channels=1, entropy=0, levy="none", t1=1.0):
    return ksde.BrownianInterval(
        0.0,
        t1,
        size=(batch, channels),
        dtype=torch.float64,
        entropy=entropy,
        levy_area_approximation=levy,
    )


def _slope(steps, errors):
    x = torch.log2(torch.tensor(steps, dtype=torch.float64))
    y = torch.log2(torch.tensor(errors, dtype=torch.float64))
    x = x - x.mean()
    return float((x * (y - y.mean())).sum() / (x * x).sum())


@pytest.mark.parametrize(
    ("method", "noise_type", "sde_type", "levy"),
    [
        ("euler", "diagonal", "ito", "none"),
        ("milstein", "diagonal", "ito", "none"),
        ("srk", "diagonal", "ito", "space-time"),
        ("euler", "general", "ito", "none"),
        ("heun", "diagonal", "stratonovich", "none"),
        ("midpoint", "scalar", "stratonovich", "none"),
        ("euler_heun", "diagonal", "stratonovich", "none"),
        ("reversible_heun", "diagonal", "stratonovich", "none"),
        ("log_ode", "general", "stratonovich", "foster"),
    ],
)
def test_fixed_steps_match_sdeint_on_the_same_path(method, noise_type, sde_type, levy):
    y0 = torch.linspace(0.5, 1.5, 12, dtype=torch.float64).view(6, 2)
    channels = 1 if noise_type in ("general", "scalar") else 2
    bm = _bm(6, channels, entropy=11, levy=levy)
    term = gbm_term(bm, noise_type, sde_type)
    if noise_type == "general":  # two states driven by one channel, g of shape (6, 2, 1)
        term = gbm_term(bm, "scalar", sde_type)
        term.noise_type = "general"
    ts = torch.tensor([0.0, 0.3, 0.35, 1.0], dtype=torch.float64)  # not on the step grid
    expected = ksde.sdeint(AsSDE(term), y0, ts, bm=bm, method=method, dt=0.04)
    sol = kutta.solve(term, y0, ts, method=method, step_size=0.04)
    torch.testing.assert_close(sol.ys, expected, rtol=1e-13, atol=1e-13)
    assert sol.ts is ts or torch.equal(sol.ts, ts)
    assert sol.stats["method"] == method and bool(sol.success)


def test_default_method_and_brownian_motion():
    # No method: sdeint's default for Itô diagonal noise (srk); no bm: a fresh interval.
    torch.manual_seed(0)
    sol = kutta.solve(gbm_term(), torch.ones(4, 1), span=(0.0, 1.0), step_size=0.1)
    assert sol.stats["method"] == "srk" and sol.ys.shape == (2, 4, 1)
    assert sol.stats["n_steps"] == 10 and sol.stats["nfe"] == 80  # SRK: 4 drift + 4 diffusion


@pytest.mark.parametrize(("method", "order"), [("euler", 0.5), ("milstein", 1.0)])
def test_strong_order_on_geometric_brownian_motion(method, order):
    batch = 1000
    y0 = torch.ones(batch, 1, dtype=torch.float64)
    bm = _bm(batch, entropy=123)
    exact = y0 * torch.exp(MU - 0.5 * SIGMA**2 + SIGMA * bm(0.0, 1.0))
    steps = [2.0**-k for k in range(4, 9)]
    errors = []
    for dt in steps:
        sol = kutta.solve(gbm_term(bm), y0, span=(0.0, 1.0), method=method, step_size=dt)
        errors.append((sol.ys[-1] - exact).abs().mean().item())
    assert abs(_slope(steps, errors) - order) < 0.15


def test_strong_order_on_ornstein_uhlenbeck():
    batch = 1000
    y0 = torch.full((batch, 1), _ou.X0, dtype=torch.float64)
    bm = _bm(batch, entropy=7, levy="space-time")
    exact = _ou.exact_at_one(bm, y0)
    steps = [2.0**-k for k in range(3, 8)]
    errors = []
    for dt in steps:
        sol = kutta.solve(ou_term(bm), y0, span=(0.0, 1.0), method="srk", step_size=dt)
        errors.append((sol.ys[-1] - exact).abs().mean().item())
    # As in test_orders.py: with a linear drift SRA's order-1.5 terms vanish (measured ~2.0).
    assert _slope(steps, errors) > 1.5 - 0.15


def test_adaptive_steps_converge_with_the_tolerance():
    batch = 200
    y0 = torch.ones(batch, 1, dtype=torch.float64)
    bm = _bm(batch, entropy=5)
    exact = y0 * torch.exp(MU - 0.5 * SIGMA**2 + SIGMA * bm(0.0, 1.0))
    errors, steps, rejected = [], [], []
    for tol in (1e-2, 1e-3, 1e-4):
        sol = kutta.solve(
            gbm_term(bm),
            y0,
            t_eval=torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64),
            method="milstein",
            controller=kutta.PIDController(rtol=tol, atol=tol),
            dt0=0.1,
        )
        errors.append((sol.ys[-1] - exact).abs().mean().item())
        steps.append(sol.stats["n_accepted"])
        rejected.append(sol.stats["n_rejected"])
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 4e-3  # measured 2.0e-3 (fixed steps of 0.01: 5.8e-3)
    assert steps[0] < steps[1] < steps[2]
    assert sum(rejected) > 0  # step doubling rejected steps on this path


def test_adaptive_steps_land_on_output_times():
    # dY = σ dW: every step is exact at its end, Y_t = Y_0 + σ W_t, and the error estimate is
    # zero, so the steps grow large; an output interpolated inside a step would differ.
    bm = _bm(3, entropy=1)
    term = SDETerm(
        lambda t, y: torch.zeros_like(y),
        lambda t, y: torch.full((3, 1, 1), 0.5, dtype=y.dtype),
        noise_type="additive",
        bm=bm,
    )
    ts = torch.tensor([0.0, 0.123, 0.7, 1.0], dtype=torch.float64)
    y0 = torch.ones(3, 1, dtype=torch.float64)
    sol = kutta.solve(
        term, y0, ts, method="euler", controller=kutta.PIDController(rtol=1e-3, atol=1e-3), dt0=0.05
    )
    expected = torch.stack([y0 + 0.5 * bm(0.0, float(t)) for t in ts])
    torch.testing.assert_close(sol.ys, expected, rtol=1e-13, atol=1e-13)
    assert sol.stats["n_accepted"] < 10


def test_backprop_gradients_pass_gradcheck():
    bm = _bm(3, 2, entropy=9, levy="space-time")
    ts = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)

    def final_state(y0, theta, method):
        term = SDETerm(
            lambda t, y: -theta * y + torch.sin(y),
            lambda t, y: 0.3 * torch.cos(theta * y),
            bm=bm,
        )
        return kutta.solve(term, y0, ts, method=method, step_size=0.1).ys

    y0 = torch.tensor([[0.1, 0.4], [0.7, -0.2], [1.0, 0.5]], dtype=torch.float64)
    theta = torch.tensor(0.8, dtype=torch.float64)
    for method in ("euler", "milstein", "srk"):
        inputs = (y0.clone().requires_grad_(True), theta.clone().requires_grad_(True))
        assert torch.autograd.gradcheck(lambda a, b, m=method: final_state(a, b, m), inputs)


def test_gradients_equal_sdeint_backprop():
    bm = _bm(4, 2, entropy=2)
    lin = torch.nn.Linear(2, 2).double()
    term = SDETerm(lambda t, y: torch.tanh(lin(y)), lambda t, y: 0.2 * torch.sigmoid(y), bm=bm)
    y0 = torch.full((4, 2), 0.3, dtype=torch.float64)
    ts = torch.tensor([0.0, 1.0], dtype=torch.float64)
    kutta.solve(term, y0, ts, method="euler", step_size=0.05).ys[-1].sum().backward()
    native = [p.grad.clone() for p in lin.parameters()]
    lin.zero_grad()
    ksde.sdeint(AsSDE(term), y0, ts, bm=bm, method="euler", dt=0.05)[-1].sum().backward()
    for a, b in zip(native, [p.grad for p in lin.parameters()]):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-14)


class _Fields(torch.nn.Module):
    """A drift and a diffusion with parameters (Stratonovich, diagonal noise)."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(2, 2).double()
        self.scale = torch.nn.Parameter(torch.tensor([0.3, 0.2], dtype=torch.float64))

    def drift(self, t, y):
        return torch.tanh(self.lin(y))

    def diffusion(self, t, y):
        return self.scale * torch.cos(y)


def _gradients(fields, term, gradient, method):
    y0 = torch.full((4, 2), 0.3, dtype=torch.float64, requires_grad=True)
    ts = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    sol = kutta.solve(term, y0, ts, method=method, step_size=0.05, gradient=gradient)
    (sol.ys[1:] ** 2).sum().backward()
    grads = [y0.grad] + [p.grad.clone() for p in fields.parameters()]
    fields.zero_grad()
    return grads


def test_adjoint_gradients_of_reversible_heun_equal_backprop():
    # Reversible Heun's adjoint undoes the forward steps algebraically (Kidger et al. 2021).
    fields = _Fields()
    bm = _bm(4, 2, entropy=3)
    term = SDETerm(fields.drift, fields.diffusion, sde_type="stratonovich", bm=bm)
    backprop = _gradients(fields, term, kutta.Backprop(), "reversible_heun")
    adjoint = _gradients(fields, term, kutta.Adjoint(), "reversible_heun")
    for a, b in zip(adjoint, backprop):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_continuous_adjoint_gradients_approach_backprop():
    # The continuous adjoint solves the adjoint SDE backwards on the same path: its gradients
    # differ from backprop's by the discretization error (here a few 1e-3 relative).
    fields = _Fields()
    bm = _bm(4, 2, entropy=3)
    term = SDETerm(fields.drift, fields.diffusion, sde_type="stratonovich", bm=bm)
    backprop = _gradients(fields, term, kutta.Backprop(), "midpoint")
    adjoint = _gradients(fields, term, kutta.Adjoint(method="midpoint"), "midpoint")
    for a, b in zip(adjoint, backprop):
        assert ((a - b).norm() / b.norm()).item() < 1e-2


def test_adjoint_finds_no_hidden_parameters():
    theta = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    term = SDETerm(lambda t, y: -theta * y, lambda t, y: 0.1 * y, bm=_bm(4, 2))
    with pytest.raises(InvalidArgumentError, match="Adjoint\\(params=...\\)"):
        _solve(term, method="euler", gradient=kutta.Adjoint())
    sol = _solve(term, method="euler", gradient=kutta.Adjoint(params=(theta,)))
    sol.ys[-1].sum().backward()
    assert theta.grad is not None and theta.grad.abs() > 0
    with pytest.raises(InvalidArgumentError, match="fixed steps"):
        _solve(
            term,
            method="euler",
            gradient=kutta.Adjoint(params=(theta,)),
            step_size=None,
            dt0=0.1,
            controller=kutta.PIDController(),
        )


def test_sde_method_object_with_options():
    bm = _bm(8, entropy=4)
    y0 = torch.ones(8, 1, dtype=torch.float64)
    ts = torch.tensor([0.0, 1.0], dtype=torch.float64)
    method = SDEMethod("milstein", options={"grad_free": True})
    sol = kutta.solve(gbm_term(bm), y0, ts, method=method, step_size=0.01)
    expected = ksde.sdeint(
        AsSDE(gbm_term(bm)), y0, ts, bm=bm, method="milstein", dt=0.01, options={"grad_free": True}
    )
    torch.testing.assert_close(sol.ys, expected, rtol=1e-13, atol=1e-13)


# ------------------------------------------------------------------------------ errors


def _solve(term, **kwargs):
    y0 = kwargs.pop("y0", torch.ones(4, 2, dtype=torch.float64))
    ts = kwargs.pop("ts", torch.tensor([0.0, 1.0], dtype=torch.float64))
    kwargs.setdefault("step_size", 0.1)
    return kutta.solve(term, y0, ts, **kwargs)


def test_wrong_noise_shape_is_named():
    term = SDETerm(lambda t, y: y, lambda t, y: y.unsqueeze(-1), noise_type="diagonal")
    with pytest.raises(InvalidArgumentError, match=r"diagonal noise must have shape \(batch, d\)"):
        _solve(term, method="euler")
    term = SDETerm(lambda t, y: y, lambda t, y: y, noise_type="general")
    with pytest.raises(
        InvalidArgumentError, match=r"general noise must have shape \(batch, d, m\)"
    ):
        _solve(term, method="euler")


def test_unsupported_method_names_the_ones_that_work():
    general = SDETerm(lambda t, y: y, lambda t, y: y.unsqueeze(-1), noise_type="general")
    with pytest.raises(InvalidArgumentError, match=r"'milstein' does not support .* \['euler'\]"):
        _solve(general, method="milstein")
    with pytest.raises(InvalidArgumentError, match="does not support stratonovich"):
        _solve(gbm_term(sde_type="stratonovich"), method="srk")
    with pytest.raises(kutta.UnknownNameError):
        _solve(gbm_term(), method="rk45")
    with pytest.raises(InvalidArgumentError, match="SDE method"):
        _solve(gbm_term(), method=kutta.Tsit5())


@pytest.mark.parametrize("dt", [0.0, -0.1, math.nan])
def test_non_positive_step_is_an_error(dt):
    with pytest.raises(InvalidArgumentError, match="step_size must be > 0"):
        _solve(gbm_term(), method="euler", step_size=dt)
    with pytest.raises(InvalidArgumentError, match="dt0 must be > 0"):
        _solve(gbm_term(), method="euler", step_size=None, dt0=dt, controller=kutta.PIDController())


def test_times_outside_the_brownian_span():
    term = gbm_term(_bm(4, 2, t1=0.5))
    with pytest.raises(InvalidArgumentError, match="outside the Brownian motion's span"):
        _solve(term, method="euler")


def test_step_arguments_and_ode_only_options():
    with pytest.raises(InvalidArgumentError, match="need step_size"):
        _solve(gbm_term(), method="euler", step_size=None)
    with pytest.raises(InvalidArgumentError, match="need the first step size"):
        _solve(gbm_term(), method="euler", step_size=None, controller=kutta.PIDController())
    with pytest.raises(InvalidArgumentError, match="dt0 is for adaptive steps"):
        _solve(gbm_term(), method="euler", dt0=0.1)
    with pytest.raises(InvalidArgumentError, match="dense, event_fn are not supported"):
        _solve(gbm_term(), method="euler", dense=True, event_fn=lambda t, y: y.sum())
    with pytest.raises(InvalidArgumentError, match="Backprop"):
        _solve(gbm_term(), method="euler", gradient=kutta.RecursiveCheckpoint())
    with pytest.raises(InvalidArgumentError, match="strictly increasing"):
        _solve(gbm_term(), method="euler", ts=torch.tensor([1.0, 0.0], dtype=torch.float64))
    with pytest.raises(InvalidArgumentError, match="shape \\(batch, d\\)"):
        _solve(gbm_term(), method="euler", y0=torch.ones(3, dtype=torch.float64))


def test_term_arguments_are_checked():
    with pytest.raises(InvalidArgumentError, match="noise_type must be one of"):
        SDETerm(lambda t, y: y, lambda t, y: y, noise_type="diag")
    with pytest.raises(InvalidArgumentError, match="sde_type must be one of"):
        SDETerm(lambda t, y: y, lambda t, y: y, sde_type="ito-ish")


def test_failure_is_reported_with_partial_solution():
    term = SDETerm(lambda t, y: y * y * 1e3, lambda t, y: y, bm=_bm(4, 2, entropy=0))
    with pytest.raises(kutta.SolverError) as info:
        _solve(term, method="euler", ts=torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64))
    assert info.value.partial is not None


@pytest.mark.parametrize("name", ["kutta.sde.native", "kutta.terms"])
def test_docstring_examples_run(name):
    failed, attempted = doctest.testmod(importlib.import_module(name))
    assert attempted > 0 and failed == 0
