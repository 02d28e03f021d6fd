"""method='auto': explicit until the problem is stiff, then implicit, and back."""

import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

import kutta

MU = 1000.0


def van_der_pol(t, y):
    return torch.stack([y[1], MU * (1 - y[0] ** 2) * y[1] - y[0]])


def test_a_non_stiff_problem_stays_explicit_and_is_accurate():
    y0 = torch.ones(3, dtype=torch.float64)
    sol = kutta.solve(lambda t, y: -y, y0, span=(0.0, 5.0), method="auto")
    assert sol.stats["steps_by_method"]["rodas5"] == 0
    assert sol.stats["switches"] == 0
    torch.testing.assert_close(sol.ys[-1], y0 * math.exp(-5.0), rtol=1e-6, atol=0)


def test_van_der_pol_switches_to_the_implicit_method_and_matches_radau():
    # Reference: scipy's Radau at rtol=1e-12 on the same problem (Van der Pol, mu = 1000, the
    # IVP Test Set's VDPOL, over its first relaxation phase).
    t1 = 800.0
    ref = solve_ivp(
        lambda t, y: [y[1], MU * (1 - y[0] ** 2) * y[1] - y[0]],
        (0.0, t1),
        [2.0, 0.0],
        method="Radau",
        rtol=1e-12,
        atol=1e-12,
    ).y[:, -1]
    sol = kutta.solve(
        van_der_pol,
        torch.tensor([2.0, 0.0], dtype=torch.float64),
        span=(0.0, t1),
        method="auto",
        controller=kutta.PIController(rtol=1e-7, atol=1e-7),
    )
    assert sol.stats["steps_by_method"]["rodas5"] > 0, "stiffness was never detected"
    # the slow phase of VDPOL is stiff: most of the span must be covered implicitly
    assert sol.stats["steps_by_method"]["rodas5"] > 0.2 * sol.stats["n_steps"]
    # VDPOL amplifies local errors along the limit cycle: at rtol 1e-7 the global error is ~1e-4.
    np.testing.assert_allclose(sol.ys[-1].numpy(), ref, rtol=1e-3)


def test_auto_refuses_per_sample_mode_with_a_clear_error():
    with pytest.raises(ValueError, match="shared batch mode"):
        kutta.solve(
            lambda t, y: -y,
            torch.ones(2, 1, dtype=torch.float64),
            span=(0.0, 1.0),
            method="auto",
            batch_mode="per_sample",
        )
