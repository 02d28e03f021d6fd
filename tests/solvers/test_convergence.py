"""Empirical convergence orders of every explicit method, from error-vs-step slopes.

Each method takes constant steps ``h`` on problems with exact solutions; the global error at the
output times is fitted as ``C * h^p`` and ``p`` must be within 0.3 of the method's order. Fixed-step
methods get ``step_size``; adaptive tableaus are run with ``ConstantController`` and ``dt0 = h``,
which makes them take constant steps too (their *advancing* solution is what is measured).

Two problems, so that both autonomous nonlinear and non-autonomous fields are covered (order
conditions of non-autonomous problems involve the nodes ``c``):

- ``logistic``: ``y' = y (1 - y)``, ``y(0) = 0.1``, exact ``y = 1 / (1 + 9 exp(-t))``;
- ``sin``: ``y' = y cos(t)``, ``y(0) = 1``, exact ``y = exp(sin(t))``.

(``tanh``: ``y' = 1 - y^2``, exact ``tanh(t)``, has larger errors and serves the float32 checks;
for dopri8 its next error term dominates until round-off, slope ~8.5, so it is not used there.)

The step counts per order keep the errors in the asymptotic range and well above round-off
(tsit5's leading error coefficients are small by design, so it needs finer steps before the
slope settles at 5). Float32 is checked separately, with coarser steps.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import kutta
from kutta.solvers.tableaus import EXPLICIT_TABLEAUS

PROBLEMS = {
    "logistic": (lambda t, y: y * (1 - y), 0.1, lambda t: 1 / (1 + 9 * np.exp(-t)), 4.0),
    "tanh": (lambda t, y: 1 - y**2, 0.0, np.tanh, 4.0),
    "sin": (lambda t, y: y * torch.cos(t), 1.0, lambda t: np.exp(np.sin(t)), 4.0),
}

# steps per unit time, by order: errors from ~1e-5 down to ~1e-12 in float64
STEPS_PER_UNIT = {1: (8, 16, 32, 64), 2: (8, 16, 32, 64), 3: (8, 12, 16, 24)}
STEPS_PER_UNIT.update({4: (16, 24, 32, 48), 5: (12, 16, 24, 32), 8: (2, 3, 4, 5)})


def solve_constant_steps(name: str, problem: str, h: float, dtype=torch.float64) -> torch.Tensor:
    f, y0, _, T = PROBLEMS[problem]
    y0 = torch.tensor([y0], dtype=dtype)
    t = torch.linspace(0.0, T, 5, dtype=dtype)  # multiples of h: no interpolation involved
    tab = EXPLICIT_TABLEAUS[name]
    if tab.adaptive:
        sol = kutta.solve(
            f, y0, t, method=kutta.ExplicitRK(tab), controller=kutta.ConstantController(), dt0=h
        )
    else:
        sol = kutta.solve(f, y0, t, method=name, step_size=h)
    return sol.ys[:, 0]


def error_slope(name: str, problem: str, steps_per_unit, dtype=torch.float64):
    _, _, exact, T = PROBLEMS[problem]
    hs, errors = [], []
    for n in steps_per_unit:
        h = 1.0 / n
        ys = solve_constant_steps(name, problem, h, dtype).double().numpy()
        errors.append(np.abs(ys - exact(np.linspace(0.0, T, 5))).max())
        hs.append(h)
    slope = np.polyfit(np.log(hs), np.log(errors), 1)[0]
    return slope, errors


@pytest.mark.parametrize("problem", ["logistic", "sin"])
@pytest.mark.parametrize("name", sorted(EXPLICIT_TABLEAUS))
def test_empirical_order_matches_theory(name, problem):
    order = EXPLICIT_TABLEAUS[name].order
    slope, errors = error_slope(name, problem, STEPS_PER_UNIT[order])
    assert errors[-1] > 1e-14, f"{name}: errors hit round-off, the slope would mean nothing"
    assert abs(slope - order) <= 0.3, f"{name} on {problem}: slope {slope:.2f}, errors {errors}"


def test_constant_controller_really_takes_constant_steps():
    """The convergence test relies on dt0 + ConstantController giving exactly T / h steps."""
    f, y0, _, _ = PROBLEMS["sin"]
    sol = kutta.solve(
        f,
        torch.tensor([y0], dtype=torch.float64),
        torch.tensor([0.0, 2.0], dtype=torch.float64),
        method=kutta.Dopri5(),
        controller=kutta.ConstantController(),
        dt0=0.125,
    )
    assert sol.stats["n_accepted"] == 16 and sol.stats["n_rejected"] == 0


@pytest.mark.parametrize(
    "name, order, steps",
    [("euler", 1, (4, 8, 16, 32)), ("midpoint", 2, (8, 16, 32, 64)), ("heun3", 3, (8, 12, 16, 24))]
    + [("rk4", 4, (4, 6, 8, 12))],
)
def test_float32_convergence_order(name, order, steps):
    """In float32 the same slopes appear while the error is well above float32 round-off.

    (Fifth order and up reach float32 round-off within one refinement, so no slope exists there;
    float32 adaptive solves are checked for accuracy below instead.)
    """
    slope, errors = error_slope(name, "tanh", steps, dtype=torch.float32)
    assert errors[-1] > 3e-7
    assert abs(slope - order) <= 0.3, f"{name} float32: slope {slope:.2f}, errors {errors}"


@pytest.mark.parametrize("method", [kutta.Dopri5, kutta.Tsit5, kutta.Bosh3])
def test_float32_adaptive_solve_is_accurate_and_stays_float32(method):
    f, y0, exact, T = PROBLEMS["sin"]
    t = torch.linspace(0.0, T, 9)
    sol = kutta.solve(
        f, torch.tensor([y0]), t, method=method(), controller=kutta.PIController(1e-5, 1e-6)
    )
    assert sol.ys.dtype == torch.float32
    err = np.abs(sol.ys[:, 0].double().numpy() - exact(t.double().numpy())).max()
    assert err < 1e-4


@pytest.mark.parametrize("name", ["dopri5", "tsit5", "dopri8", "bosh3"])
def test_adaptive_error_shrinks_with_tolerance(name):
    """Tolerance proportionality: 100x tighter tolerances give a much smaller global error."""
    f, y0, exact, T = PROBLEMS["sin"]
    t = torch.linspace(0.0, T, 9, dtype=torch.float64)
    errors = []
    for rtol in (1e-5, 1e-7, 1e-9):
        sol = kutta.solve(
            f,
            torch.tensor([y0], dtype=torch.float64),
            t,
            method=name,
            controller=kutta.PIController(rtol, rtol * 1e-2),
        )
        errors.append(np.abs(sol.ys[:, 0].numpy() - exact(t.numpy())).max())
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-7
    assert errors[0] / errors[2] > 100


def test_tuple_state_converges_like_the_flat_state():
    """A tuple state (position, velocity) of the harmonic oscillator with rk4: order 4."""
    hs, errors = [], []
    for n in (8, 12, 16, 24):
        h = 1.0 / n
        sol = kutta.solve(
            lambda t, s: (s[1], -s[0]),
            (torch.ones(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)),
            torch.tensor([0.0, 3.0], dtype=torch.float64),
            method="rk4",
            step_size=h,
        )
        x, v = sol.ys
        errors.append(max(abs(float(x[-1, 0]) - math.cos(3.0)), abs(float(v[-1, 0]) + math.sin(3))))
        hs.append(h)
    slope = np.polyfit(np.log(hs), np.log(errors), 1)[0]
    assert abs(slope - 4) <= 0.3
