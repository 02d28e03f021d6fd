"""Gradients through the implicit methods (float64).

Rosenbrock steps are differentiated through their linear solves and their (differentiable)
Jacobian; ESDIRK and fully implicit steps through the implicit function theorem at the Newton
solution. Both must equal finite differences of the same discrete map.
"""

from __future__ import annotations

import pytest
import torch

import kutta
from kutta.controllers import PIController
from kutta.solvers.implicit import IMPLICIT_METHODS

ROBER_RATES = torch.tensor([0.04, 1e4, 3e7], dtype=torch.float64)


def _robertson(log_rates: torch.Tensor):
    """Robertson kinetics with rate constants ``0.04, 1e4, 3e7`` scaled by ``exp(log_rates)``."""
    rates = ROBER_RATES * log_rates.exp()

    def f(t, y):
        k1, k2, k3 = rates.unbind(-1)
        y1, y2, y3 = y.unbind(-1)
        return torch.stack(
            [-k1 * y1 + k2 * y2 * y3, k1 * y1 - k2 * y2 * y3 - k3 * y2**2, k3 * y2**2], dim=-1
        )

    return f


def _steps(name: str, log_rates, y0, t, h, n: int = 3):
    m = IMPLICIT_METHODS[name]()
    m.set_error_scale(1e-14, 1e-14)
    m = m.bind(torch.float64, torch.device("cpu"))
    f = _robertson(log_rates)
    y, state = y0, m.init(f, t, y0)
    for _ in range(n):
        res = m.step(f, t, y, h, state)
        y, state, t = res.y, res.state, t + (h[:, 0] if isinstance(h, torch.Tensor) else h)
    assert m.stats["n_newton_failures"] == 0  # the gradient is that of the converged solution
    return y


@pytest.mark.parametrize(
    "name", ["rodas5", "rosenbrock23", "kvaerno5", "trbdf2", "radauIIA5", "sdirk2"]
)
def test_gradcheck_of_steps_in_shared_mode(name):
    log_rates = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    y0 = torch.tensor([0.98, 1e-5, 0.02], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda k, y: _steps(name, k, y, 0.0, 2e-4), (log_rates, y0), eps=1e-9, atol=1e-6, rtol=1e-4
    )


@pytest.mark.parametrize("name", ["rodas5", "kvaerno5", "radauIIA5"])
def test_gradcheck_of_steps_per_sample(name):
    log_rates = torch.tensor([[0.1, -0.2, 0.3], [-0.3, 0.2, 0.0]], dtype=torch.float64)
    log_rates.requires_grad_(True)
    y0 = torch.tensor([[1.0, 0.0, 0.0], [0.9, 1e-5, 0.1]], dtype=torch.float64)
    t = torch.zeros(2, dtype=torch.float64)
    h = torch.tensor([[1e-4], [3e-4]], dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda k: _steps(name, k, y0, t, h), (log_rates,), atol=1e-6, rtol=1e-4
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", ["rodas5", "kvaerno5", "bdf"])
def test_gradient_of_an_adaptive_stiff_solve_matches_finite_differences(name):
    """d y(1) / d log k for Robertson through kutta.solve (Backprop) vs central differences.

    Tight tolerances keep the step-size sequence's own jitter (which finite differences see
    and backpropagation does not) below the comparison threshold.
    """
    y0 = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    atol = torch.tensor([1e-12, 1e-16, 1e-12], dtype=torch.float64)

    def final_state(log_rates):
        m = IMPLICIT_METHODS[name]()
        m.set_error_scale(atol, 1e-9)
        ctl = PIController(rtol=1e-9, atol=atol)
        sol = kutta.solve(
            _robertson(log_rates), y0, span=(0.0, 1.0), method=m, controller=ctl, dt0=1e-6
        )
        return sol.ys[-1]

    log_rates = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    y = final_state(log_rates)
    weights = torch.tensor([1.0, 1e4, 1.0], dtype=torch.float64)  # y2 is ~1e-5: scale it up
    (grad,) = torch.autograd.grad((weights * y).sum(), log_rates)
    eps = 1e-3  # central differences: truncation ~eps^2, step-sequence jitter ~rtol / eps
    fd = torch.zeros(3, dtype=torch.float64)
    with torch.no_grad():
        for i in range(3):
            e = torch.zeros(3, dtype=torch.float64)
            e[i] = eps
            fd[i] = ((weights * final_state(e)).sum() - (weights * final_state(-e)).sum()) / (
                2 * eps
            )
    torch.testing.assert_close(grad, fd, rtol=1e-4, atol=1e-8)
