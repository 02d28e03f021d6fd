"""method='auto': explicit until the problem is stiff, then implicit, and back."""

import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

import kutta
from kutta.solvers.auto import AutoSwitch
from kutta.solvers.explicit import ExplicitRK
from kutta.solvers.implicit.rosenbrock import Rosenbrock

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


@pytest.mark.slow
def test_compiled_auto_takes_the_eager_steps_on_van_der_pol(monkeypatch):
    # compile=True builds tsit5 and rodas5 with compiled steps; they compute what the eager
    # steps compute (rodas5's compiled inverse differs from LAPACK's only in round-off)
    compiled_steps = {ExplicitRK: 0, Rosenbrock: 0}
    for cls in compiled_steps:

        def counted(self, *args, _step=cls._compiled_step, _cls=cls):
            compiled_steps[_cls] += 1
            return _step(self, *args)

        monkeypatch.setattr(cls, "_compiled_step", counted)
    y0 = torch.tensor([2.0, 0.0], dtype=torch.float64)
    solves = {}
    with torch.no_grad():
        for compile_steps in (False, True):
            solves[compile_steps] = kutta.solve(
                van_der_pol,
                y0,
                span=(0.0, 2.0),
                method=AutoSwitch(compile=compile_steps),
                controller=kutta.PIController(rtol=1e-6, atol=1e-8),
            )
    eager, compiled = solves[False], solves[True]
    assert compiled.stats["steps_by_method"]["rodas5"] > 0
    assert compiled.stats["steps_by_method"] == eager.stats["steps_by_method"]
    # the compiled steps ran (at most one explicit step, the first, may run eagerly)
    assert compiled_steps[ExplicitRK] >= compiled.stats["steps_by_method"]["tsit5"] - 1
    assert compiled_steps[Rosenbrock] > 0
    torch.testing.assert_close(compiled.ys[-1], eager.ys[-1], rtol=1e-7, atol=1e-9)
    # odeint takes the option by name (torchdiffeq-style options)
    t = torch.tensor([0.0, 2.0], dtype=torch.float64)
    with torch.no_grad():
        ys = kutta.odeint(
            van_der_pol, y0, t, method="auto", options={"compile": True}, rtol=1e-6, atol=1e-8
        )
    torch.testing.assert_close(ys[-1], eager.ys[-1], rtol=1e-5, atol=1e-7)
