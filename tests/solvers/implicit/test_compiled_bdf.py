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


def _forced_relaxation(t, y):
    # y' = -50 (y - g(t)), g switching from 1 to -1 at t = 0.5: stiff, with a jump in f
    target = torch.where(torch.as_tensor(t) < 0.5, 1.0, -1.0).to(y.dtype)
    return -50.0 * (y - target)


def test_jumps_and_dense_outputs_match_the_eager_step():
    # Around a jump the loop wraps the field (no compile target), so the eager step continues
    # from the compiled step's packed state and restarts the history at order 1; the outputs
    # inside steps interpolate the compiled step's history.
    y0 = torch.tensor([0.0, 2.0], dtype=torch.float64)
    t_eval = torch.linspace(0.0, 1.0, 41, dtype=torch.float64)
    runs = []
    for compile in (False, True):
        method = BDF(compile=compile)
        with torch.no_grad():
            sol = kutta.solve(
                _forced_relaxation, y0, t_eval, method=method, jump_t=[0.5],
                controller=PIController(rtol=1e-8, atol=1e-10),
            )  # fmt: skip
        runs.append((sol, method.stats))
    (eager, eager_stats), (fast, fast_stats) = runs
    # the eager and compiled steps keep factorization memos of their own, so crossing from
    # one to the other around the jump may factor once more
    assert abs(fast_stats.pop("n_lu") - eager_stats.pop("n_lu")) <= 2
    assert fast_stats == eager_stats
    assert fast.stats["n_steps"] == eager.stats["n_steps"]
    torch.testing.assert_close(fast.ys, eager.ys, rtol=1e-10, atol=1e-12)
    # exact: y = g + (y(t_j) - g) exp(-50 (t - t_j)) on each side of the jump
    y_half = 1.0 + (y0 - 1.0) * math.exp(-25.0)
    exact_end = -1.0 + (y_half + 1.0) * math.exp(-25.0)
    torch.testing.assert_close(fast.ys[-1], exact_end, rtol=1e-6, atol=1e-8)


def test_each_block_size_gets_a_static_graph_of_its_own():
    # Graphs of one compiled function that differ in a size are recompiled with that size
    # symbolic (slower); a solve of another size must not recompile the first size's graph.
    def decay(t, y):
        return -torch.arange(1, y.shape[-1] + 1, dtype=y.dtype) * 100.0 * y

    def run(n):
        with torch.no_grad():
            return kutta.odeint(
                decay, torch.ones(n, dtype=torch.float64), torch.tensor([0.0, 0.1]),
                method="bdf", rtol=1e-8, atol=1e-10, options={"compile": True},
            )  # fmt: skip

    for n in (2, 5):
        out = run(n)
        exact = torch.exp(-100.0 * 0.1 * torch.arange(1, n + 1, dtype=torch.float64))
        torch.testing.assert_close(out[-1], exact, rtol=1e-5, atol=1e-9)
    with torch.compiler.set_stance("fail_on_recompile"):
        run(2)
        run(5)
    sizes = {key[0].constants[-1] for key in compiled._CACHE if key[0].name == "bdf"}
    assert {2, 5} <= sizes
