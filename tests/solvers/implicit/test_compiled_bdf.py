"""The optional torch.compile-d BDF step (``compile=True``) computes what the eager step computes.

Compiling costs tens of seconds per field on CPU, so these tests are few and marked slow.
Reference values: the IVP Test Set for ODE and DAE solvers (F. Mazzia, C. Magherini,
F. Iavernaro, University of Bari, release 2.3), copied from kutta's shared reference notes
(stiff_problems.md), as in test_stiff_problems.py.
"""

from __future__ import annotations

import math

import pytest
import torch

import kutta
from kutta.controllers import PIController
from kutta.solvers import compiled
from kutta.solvers.implicit.bdf import BDF

from .test_stiff_problems import PROBLEMS, significant_digits

pytestmark = pytest.mark.slow


def solve(problem: str, compile: bool, rtol: float = 1e-8, t_end: float | None = None):
    f, y0, end, ref = PROBLEMS[problem]
    ref = torch.tensor(ref, dtype=torch.float64)
    atol = torch.minimum(ref.abs() * 1e-10, torch.full_like(ref, 1e-10))
    method = BDF(compile=compile)
    with torch.no_grad():
        sol = kutta.solve(
            f,
            torch.tensor(y0, dtype=torch.float64),
            span=(0.0, end if t_end is None else t_end),
            method=method,
            controller=PIController(rtol=rtol, atol=atol),
            max_steps=100_000,
        )
    return sol, method.stats, ref


def _compiled_kinds() -> set[str]:
    return {key[0].name for key in compiled._CACHE}


def test_compiled_bdf_takes_the_eager_steps_on_a_stiff_problem():
    eager, eager_stats, ref = solve("hires", compile=False)
    fast, fast_stats, _ = solve("hires", compile=True)
    assert {"bdf", "block_jacobian"} <= _compiled_kinds()  # the graphs did run
    for key in ("n_steps", "n_accepted", "n_rejected", "nfe"):
        assert fast.stats[key] == eager.stats[key], key
    assert fast_stats == eager_stats  # Jacobians, factorizations, Newton iterations
    # the same arithmetic in another association order: round-off apart after 784 steps
    torch.testing.assert_close(fast.ys, eager.ys, rtol=1e-10, atol=0)
    assert significant_digits(fast.ys[-1], ref) >= 6.5


@pytest.mark.parametrize("problem", ["rober", "orego", "vdpol"])
def test_compiled_bdf_reaches_six_and_a_half_digits_at_rtol_1e_8(problem):
    # hires is checked above; the eager method's check is in test_stiff_problems.py
    sol, stats, ref = solve(problem, compile=True)
    assert significant_digits(sol.ys[-1], ref) >= 6.5
    assert stats["n_newton_failures"] < sol.stats["n_steps"] // 10


def test_new_tolerances_and_spans_reuse_the_compiled_step():
    solve("rober", compile=True, rtol=1e-6, t_end=10.0)
    with torch.compiler.set_stance("fail_on_recompile"):
        sol, _, _ = solve("rober", compile=True, rtol=1e-9, t_end=40.0)
    eager, _, _ = solve("rober", compile=False, rtol=1e-9, t_end=40.0)
    # Not step for step: ROBER's first steps (h ~ 1e-12) have error estimates 1e-5 of the
    # tolerance, dominated by cancellation, so a one-ulp difference in y at the third step
    # changes the fourth step size by 2e-6 and the step sequence from there on.
    assert abs(sol.stats["n_steps"] - eager.stats["n_steps"]) <= 0.03 * eager.stats["n_steps"]
    torch.testing.assert_close(sol.ys, eager.ys, rtol=1e-7, atol=1e-20)


def test_backward_in_time_matches_the_eager_step():
    # y' = 50 (y - cos t) from t = 1 back to t = 0 (stiff and stable in that direction): the
    # compiled step must give the field the user's time, as the eager wrapper does
    def relax(t, y):
        return 50.0 * (y - torch.cos(t))

    y1 = torch.tensor([0.5, 1.5], dtype=torch.float64)
    t = torch.tensor([1.0, 0.5, 0.0], dtype=torch.float64)
    with torch.no_grad():
        outs = [
            kutta.odeint(relax, y1, t, method="bdf", rtol=1e-8, atol=1e-10, options=options)
            for options in ({}, {"compile": True})
        ]
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-10, atol=1e-12)
    # exact: y = (2500 cos t - 50 sin t) / 2501 + a transient that decays like exp(-50 (1 - t))
    assert abs(float(outs[1][-1, 0]) - 2500.0 / 2501.0) < 1e-6


class Decay(torch.nn.Module):
    """Robertson-like stiff kinetics with learnable rate constants."""

    def __init__(self):
        super().__init__()
        self.log_k = torch.nn.Parameter(torch.tensor([math.log(0.04), math.log(1e2)]))

    def forward(self, t, y):
        k1, k2 = self.log_k.exp().to(y.dtype).unbind()
        y1, y2 = y.unbind(-1)
        return torch.stack([-k1 * y1 + y2, k1 * y1 - k2 * y2], -1)


def test_gradients_with_compile_are_the_eager_implicit_gradients():
    # In grad mode the compiled option takes the eager step (implicit-function-theorem
    # gradients of the Newton solution), so gradients are exactly the eager ones.
    field = Decay().double()
    y0 = torch.tensor([1.0, 0.0], dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0.0, 1.0, 5.0], dtype=torch.float64)

    def grads(options):
        # odeint differentiates through the solver (Backprop), as torchdiffeq's odeint
        out = kutta.odeint(field, y0, t, method="bdf", rtol=1e-8, atol=1e-10, options=options)
        return torch.autograd.grad(out.pow(2).sum(), (y0, field.log_k))

    for g_fast, g_eager in zip(grads({"compile": True}), grads({})):
        torch.testing.assert_close(g_fast, g_eager, rtol=1e-12, atol=1e-14)


def test_independent_blocks_and_newton_failures_match_the_eager_step():
    # Three Van der Pol oscillators as independent blocks (one Jacobian block each), with two
    # Newton iterations per attempt and a strict Newton tolerance so that some attempts fail:
    # the compiled step's frozen iterations, its retry with a fresh Jacobian and its
    # rejections must match the eager ones.
    mu = torch.tensor([[5.0], [10.0], [20.0]], dtype=torch.float64)

    def vdp(t, y):
        y1, y2 = y.unbind(-1)
        return torch.stack([y2, mu[:, 0] * (1 - y1**2) * y2 - y1], -1)

    y0 = torch.tensor([[2.0, 0.0]] * 3, dtype=torch.float64)
    runs = []
    for compile in (False, True):
        method = BDF(compile=compile, max_iters=2, newton_tol=1e-4, independent_batch=True)
        with torch.no_grad():
            sol = kutta.solve(
                vdp, y0, span=(0.0, 5.0), method=method,
                controller=PIController(rtol=1e-7, atol=1e-9),
            )  # fmt: skip
        runs.append((sol, method.stats))
    (eager, eager_stats), (fast, fast_stats) = runs
    assert eager_stats["n_newton_failures"] > 0  # the failure path is exercised
    # the eager multi-block Newton tests RMS norms, the graph 2-norms against sqrt(n) times
    # the tolerance: the same test up to round-off, so counts may drift slightly
    for key in ("n_steps", "nfe"):
        assert abs(fast.stats[key] - eager.stats[key]) <= 0.02 * eager.stats[key], key
    assert abs(fast_stats["n_newton_failures"] - eager_stats["n_newton_failures"]) <= 2
    torch.testing.assert_close(fast.ys, eager.ys, rtol=1e-5, atol=1e-7)
