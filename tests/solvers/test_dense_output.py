"""Dense output: ``Solution.evaluate`` and odeint's outputs between steps.

A dense output of order ``q`` (``tableau.dense_order``, checked symbolically in
test_tableaus.py) has a local error ``O(h^(q+1))`` inside a step; on top of the method's global
error ``O(h^p)`` the error between steps is ``O(h^min(p, q+1))``. Both slopes are measured here on
``y' = y cos(t)``, exact ``y = exp(sin(t))``, with constant steps.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import kutta
from kutta import odeint
from kutta.solvers.tableaus import EXPLICIT_TABLEAUS

ADAPTIVE = sorted(name for name, tab in EXPLICIT_TABLEAUS.items() if tab.adaptive)
THETAS = (0.13, 0.3, 0.5, 0.77, 0.91)


def field(t, y):
    return y * torch.cos(t)


def exact(t):
    return np.exp(np.sin(t))


def dense_solve(name: str, h: float, T: float) -> kutta.Solution:
    return kutta.solve(
        field,
        torch.ones(1, dtype=torch.float64),
        span=(0.0, T),
        method=kutta.ExplicitRK(EXPLICIT_TABLEAUS[name]),
        controller=kutta.ConstantController(),
        dt0=h,
        dense=True,
    )


def slope(hs, errors) -> float:
    return float(np.polyfit(np.log(hs), np.log(errors), 1)[0])


@pytest.mark.parametrize("name", ADAPTIVE)
def test_local_interpolation_error_has_the_dense_order(name):
    """One step from the exact value: the error at theta * h inside it is O(h^(q+1))."""
    q = EXPLICIT_TABLEAUS[name].dense_order
    hs = [0.4, 0.3, 0.2, 0.15] if q >= 4 else [0.1, 0.075, 0.05, 0.0375]
    errors = []
    for h in hs:
        sol = dense_solve(name, h, h)
        tq = np.array(THETAS) * h
        errors.append(np.abs(sol.evaluate(torch.tensor(tq))[:, 0].numpy() - exact(tq)).max())
    s = slope(hs, errors)
    assert abs(s - (q + 1)) <= 0.3, f"{name}: local dense slope {s:.2f}, errors {errors}"


@pytest.mark.parametrize("name", ADAPTIVE)
def test_global_dense_error_slope(name):
    tab = EXPLICIT_TABLEAUS[name]
    expected = min(tab.order, tab.dense_order + 1)
    T = 2.0
    steps = {8: (8, 12, 16, 24), 5: (16, 24, 32, 48)}.get(tab.order, (32, 48, 64, 96))
    hs, errors = [], []
    for n in steps:
        h = T / n
        sol = dense_solve(name, h, T)
        assert sol.stats["n_accepted"] == n
        tq = np.concatenate([(np.arange(n) + th) * h for th in THETAS])
        errors.append(np.abs(sol.evaluate(torch.tensor(tq))[:, 0].numpy() - exact(tq)).max())
        hs.append(h)
    s = slope(hs, errors)
    assert abs(s - expected) <= 0.3, f"{name}: dense slope {s:.2f}, errors {errors}"


@pytest.mark.parametrize("name", ["dopri5", "tsit5", "bosh3"])
def test_evaluate_at_output_times_returns_the_outputs(name):
    t = torch.linspace(0.0, 3.0, 7, dtype=torch.float64)
    sol = kutta.solve(field, torch.ones(1, dtype=torch.float64), t, method=name, dense=True)
    torch.testing.assert_close(sol.evaluate(t), sol.ys, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["dopri5", "bosh3", "dopri8"])
def test_odeint_outputs_between_steps_use_the_dense_interpolant(name):
    """odeint steps freely and interpolates at the output times, like ``evaluate``."""
    t = torch.linspace(0.0, 3.0, 201, dtype=torch.float64)
    y0 = torch.ones(1, dtype=torch.float64)
    ys = odeint(field, y0, t, method=name, rtol=1e-6, atol=1e-8)
    sol = kutta.solve(
        field,
        y0,
        span=(0.0, 3.0),
        method=name,
        controller=kutta.IController(1e-6, 1e-8),
        dense=True,
    )
    assert sol.stats["n_accepted"] < 200, "the outputs must lie between steps for this test"
    np.testing.assert_allclose(ys[:, 0].numpy(), exact(t.numpy()), rtol=1e-4)
    # odeint's default controller is this I-controller, so the steps are the same ones
    torch.testing.assert_close(ys, sol.evaluate(t), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("interp, order", [("linear", 2), ("cubic", 4)])
def test_fixed_step_odeint_interpolation_order(interp, order):
    """rk4 with outputs off its grid: linear interpolation is O(h^2), cubic Hermite O(h^4).

    The outputs sit at the same fractions of the steps for every ``h``, so the error constant
    does not change from one ``h`` to the next.
    """
    hs, errors = [], []
    for n in (8, 12, 16, 24):
        h = 2.0 / n
        fractions = np.concatenate([np.arange(n) + th for th in (0.3, 0.77)])
        t = torch.tensor([0.0, *np.sort(fractions * h)], dtype=torch.float64)
        ys = odeint(
            field,
            torch.ones(1, dtype=torch.float64),
            t,
            method="rk4",
            options={"step_size": h, "interp": interp},
        )
        errors.append(np.abs(ys[:, 0].numpy() - exact(t.numpy())).max())
        hs.append(h)
    s = slope(hs, errors)
    assert abs(s - order) <= 0.3, f"{interp}: slope {s:.2f}, errors {errors}"


def test_dense_output_in_reversed_time_and_tuple_state():
    """Harmonic oscillator (x, v) integrated backwards from t = 2 to t = -1."""
    x0, v0 = math.cos(2.0), -math.sin(2.0)
    sol = kutta.solve(
        lambda t, s: (s[1], -s[0]),
        (torch.tensor([x0], dtype=torch.float64), torch.tensor([v0], dtype=torch.float64)),
        torch.tensor([2.0, 0.5, -1.0], dtype=torch.float64),
        controller=kutta.PIController(1e-10, 1e-12),
        dense=True,
    )
    tq = torch.tensor([1.7, 0.2, -0.9], dtype=torch.float64)
    x, v = sol.evaluate(tq)
    np.testing.assert_allclose(x[:, 0].numpy(), np.cos(tq.numpy()), atol=1e-9)
    np.testing.assert_allclose(v[:, 0].numpy(), -np.sin(tq.numpy()), atol=1e-9)
    x1, v1 = sol.evaluate(0.3)
    assert x1.shape == (1,) and abs(float(x1) - math.cos(0.3)) < 1e-9


def test_dense_output_is_differentiable():
    """d y(t) / d y0 = exp(sin t) for y' = y cos t with y(0) = y0."""
    y0 = torch.ones(1, dtype=torch.float64, requires_grad=True)
    sol = kutta.solve(
        field, y0, span=(0.0, 2.0), controller=kutta.PIController(1e-10, 1e-12), dense=True
    )
    sol.evaluate(1.3).sum().backward()
    assert abs(float(y0.grad) - math.exp(math.sin(1.3))) < 1e-8


def test_evaluate_needs_dense_and_stays_inside_the_interval():
    y0 = torch.ones(1, dtype=torch.float64)
    sol = kutta.solve(field, y0, span=(0.0, 1.0))
    with pytest.raises(kutta.InvalidArgumentError, match="dense=True"):
        sol.evaluate(0.5)
    sol = kutta.solve(field, y0, span=(0.0, 1.0), dense=True)
    with pytest.raises(kutta.InvalidArgumentError, match="outside"):
        sol.evaluate(1.5)


@pytest.mark.parametrize("name", sorted(EXPLICIT_TABLEAUS))
def test_interpolate_many_equals_interpolate_per_theta(name):
    # the loop evaluates all output times inside a step at once; it must be the same polynomial
    method = kutta.ExplicitRK(EXPLICIT_TABLEAUS[name]).bind(torch.float64, torch.device("cpu"))
    y0 = torch.tensor([[1.0, -0.5], [0.25, 2.0]], dtype=torch.float64)
    res = method.step(lambda t, y: torch.sin(y) + t, 0.3, y0, 0.2, None)
    many = method.interpolate_many(res.dense, list(THETAS))
    one_by_one = torch.stack([method.interpolate(res.dense, th) for th in THETAS])
    assert many.shape == (len(THETAS), 2, 2)
    torch.testing.assert_close(many, one_by_one, rtol=1e-14, atol=1e-14)


def test_many_outputs_in_one_step_are_accurate_and_differentiable():
    # 401 output times, a handful of steps: most outputs share a step
    t = torch.linspace(0.0, 4.0, 401, dtype=torch.float64)
    y0 = torch.ones(1, dtype=torch.float64, requires_grad=True)
    out = odeint(field, y0, t, rtol=1e-10, atol=1e-12, method="dopri5")
    assert out.shape == (401, 1)
    err = (out[:, 0].detach().numpy() - exact(t.numpy())).__abs__().max()
    assert err < 1e-8
    # y(t) = y0 exp(sin t) is linear in y0: d sum(y) / d y0 = sum(exp(sin t))
    (grad,) = torch.autograd.grad(out.sum(), y0)
    assert float(grad) == pytest.approx(exact(t.numpy()).sum(), rel=1e-8)


def test_evaluate_many_times_in_any_order_equals_one_at_a_time():
    sol = kutta.solve(
        field, torch.ones(1, dtype=torch.float64), span=(0.0, 3.0), dense=True, method=kutta.Tsit5()
    )
    ts = torch.rand(50, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 3.0
    together = sol.evaluate(ts)
    one_by_one = torch.stack([sol.evaluate(float(s)) for s in ts])
    assert together.shape == (50, 1)
    torch.testing.assert_close(together, one_by_one, rtol=1e-14, atol=1e-14)
    assert float((together[:, 0] - torch.from_numpy(exact(ts.numpy()))).abs().max()) < 1e-5
