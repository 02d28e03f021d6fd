"""The optional torch.compile-d Rosenbrock step (``compile=True``) computes what the eager step
computes, and falls back to the eager step where it does not apply.

Compiling costs tens of seconds per field on CPU, so the compiled tests are few and marked slow.
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
from kutta.solvers.implicit import common
from kutta.solvers.implicit.linalg import traced_inverse
from kutta.solvers.implicit.rosenbrock import Rosenbrock
from kutta.solvers.implicit.tableaus import RODAS5, ROSENBROCK23

from .test_stiff_problems import PROBLEMS, significant_digits

COUNTS = ("n_steps", "n_accepted", "n_rejected", "nfe")


def solve(problem: str, t_eval=None, tableau=RODAS5, **options):
    f, y0, end, ref = PROBLEMS[problem]
    ref = torch.tensor(ref, dtype=torch.float64)
    atol = torch.minimum(ref.abs() * 1e-10, torch.full_like(ref, 1e-10))
    method = Rosenbrock(tableau, **options)
    with torch.no_grad():
        sol = kutta.solve(
            f,
            torch.tensor(y0, dtype=torch.float64),
            t_eval=torch.tensor([0.0, end]) if t_eval is None else t_eval,
            method=method,
            controller=PIController(rtol=1e-8, atol=atol),
            max_steps=100_000,
        )
    return sol, method.stats, ref


def test_traced_inverse_pivots_and_marks_singular_blocks():
    gen = torch.Generator().manual_seed(0)
    for m in (1, 2, 3, 8):
        a = torch.randn(4, m, m, dtype=torch.float64, generator=gen)
        if m > 1:
            a[:, 0, 0] = 0.0  # elimination without row swaps would divide by zero
        torch.testing.assert_close(traced_inverse(a), torch.linalg.inv(a), rtol=1e-10, atol=1e-12)
    singular = torch.tensor([[[1.0, 2.0], [2.0, 4.0]]], dtype=torch.float64)
    assert not torch.isfinite(traced_inverse(singular)).all()


def _stiff_cosine(t, y):
    # t is 0-dim, or (B,) in per-sample mode
    return 50.0 * (y - torch.cos(t).view(*t.shape, *[1] * (y.dim() - t.dim())))


def _stiff_cosine_exact(t: float) -> float:
    # y' = 50 (y - cos t): y = (2500 cos t - 50 sin t) / 2501 + c exp(50 t), with c chosen so that
    # the homogeneous part is 1 at t = 1 (it decays backwards in time)
    return (2500 * math.cos(t) - 50 * math.sin(t)) / 2501 + math.exp(50 * (t - 1))


def _never_compiled(*args, **kwargs):
    raise AssertionError("the compiled step ran")


def _solve_cosine(y0, times, compile: bool, batch_mode="shared", **options):
    """The stiff cosine problem from ``times[0]`` (usually backwards in time) at rtol 1e-6."""
    method = Rosenbrock(options.pop("tableau", RODAS5), compile=compile, **options)
    sol = kutta.solve(
        _stiff_cosine,
        y0,
        t_eval=torch.tensor(times, dtype=torch.float64),
        method=method,
        controller=PIController(rtol=1e-6, atol=1e-9),
        batch_mode=batch_mode,
    )
    return sol, method.stats


def _assert_takes_the_eager_steps(fast, fast_stats, eager, eager_stats, rtol, atol=0.0):
    for key in COUNTS:
        assert fast.stats[key] == eager.stats[key], key
    assert fast_stats == eager_stats  # Jacobians and factorizations
    torch.testing.assert_close(fast.ys, eager.ys, rtol=rtol, atol=atol)


@pytest.fixture
def compiled_step_names(monkeypatch):
    """The names of the compiled graphs (the Rosenbrock steps among them) that the solves in a
    test ask for: every implicit method makes them through ``common.compile_step``."""
    names = []
    real_compile_step = common.compile_step

    def recording_compile_step(key, name, *args, **kwargs):
        names.append(name)
        return real_compile_step(key, name, *args, **kwargs)

    monkeypatch.setattr(common, "compile_step", recording_compile_step)
    return names


@pytest.mark.parametrize("mode", ["grad", "per_sample"])
def test_grad_and_per_sample_modes_take_the_eager_step(mode, monkeypatch):
    def solve_cosine(compile: bool):
        y0 = torch.full((2, 1), _stiff_cosine_exact(1.0), dtype=torch.float64)
        y0.requires_grad_(mode == "grad")
        batch_mode = "per_sample" if mode == "per_sample" else "shared"
        with torch.set_grad_enabled(mode == "grad"):
            sol, _ = _solve_cosine(y0, [1.0, 0.5, 0.0], compile, batch_mode)
        return sol, y0

    eager, y0_eager = solve_cosine(compile=False)
    monkeypatch.setattr(Rosenbrock, "_compiled_step", _never_compiled)
    fallback, y0 = solve_cosine(compile=True)
    assert torch.equal(fallback.ys, eager.ys)
    for key in COUNTS:
        assert torch.equal(torch.as_tensor(fallback.stats[key]), torch.as_tensor(eager.stats[key]))
    assert abs(float(fallback.ys[-1, 0, 0].detach()) - _stiff_cosine_exact(0.0)) < 1e-5
    if mode == "grad":
        (grad,) = torch.autograd.grad(fallback.ys[-1].sum(), y0)
        (grad_eager,) = torch.autograd.grad(eager.ys[-1].sum(), y0_eager)
        torch.testing.assert_close(grad, grad_eager, rtol=0, atol=0)


@pytest.mark.slow
def test_compiled_rodas5_takes_the_eager_steps_and_dense_outputs_on_hires(compiled_step_names):
    # not told autonomous: df/dt is differenced inside the graph, as the eager step does
    t_eval = torch.linspace(0.0, PROBLEMS["hires"][2], 9, dtype=torch.float64)
    eager, eager_stats, ref = solve("hires", t_eval=t_eval)
    fast, fast_stats, _ = solve("hires", t_eval=t_eval, compile=True)
    assert any(name.startswith("rodas5_step") for name in compiled_step_names)  # graphs ran
    assert eager.stats["n_rejected"] > 0  # the retry from the same point (Jacobian reused) ran
    # The same method with other round-off: the graph inverts M = I - h gamma J by its own
    # Gauss-Jordan elimination (not LAPACK's), and the products are associated differently.
    # The difference (round-off times the condition of M, over 991 steps) stays far below the
    # tolerance, and the dense outputs at the inner times agree as closely.
    _assert_takes_the_eager_steps(fast, fast_stats, eager, eager_stats, rtol=1e-8, atol=1e-15)
    assert significant_digits(fast.ys[-1], ref) >= 6.5


@pytest.mark.slow
@pytest.mark.parametrize("problem", ["rober", "orego", "vdpol"])
def test_compiled_rodas5_reaches_six_and_a_half_digits_at_rtol_1e_8(problem):
    # hires is checked above; the eager method's check is in test_stiff_problems.py
    sol, stats, ref = solve(problem, compile=True, autonomous=True)
    assert significant_digits(sol.ys[-1], ref) >= 6.5
    assert stats["n_lu"] == sol.stats["n_steps"]
    assert stats["n_jac"] == sol.stats["n_accepted"]  # a rejected step's retry reuses it


@pytest.mark.slow
def test_compiled_rosenbrock23_backward_in_time_matches_the_eager_step():
    # FSAL (the state carries f), not autonomous, and solved from t = 1 back to t = 0 (stiff
    # and stable in that direction)
    y1 = torch.tensor([_stiff_cosine_exact(1.0)], dtype=torch.float64)
    with torch.no_grad():
        eager, eager_stats = _solve_cosine(y1, [1.0, 0.5, 0.0], False, tableau=ROSENBROCK23)
        fast, fast_stats = _solve_cosine(y1, [1.0, 0.5, 0.0], True, tableau=ROSENBROCK23)
    _assert_takes_the_eager_steps(fast, fast_stats, eager, eager_stats, rtol=1e-12)
    exact = torch.tensor([_stiff_cosine_exact(t) for t in (1.0, 0.5, 0.0)], dtype=torch.float64)
    torch.testing.assert_close(fast.ys[:, 0], exact, rtol=1e-4, atol=0)


@pytest.mark.slow
def test_compiled_step_with_a_user_jacobian_matches_the_eager_step(compiled_step_names):
    def orego_jac(t, y):
        y1, y2, _ = y.unbind(-1)
        zero, one = torch.zeros_like(y1), torch.ones_like(y1)
        return torch.stack(
            [
                torch.stack([77.27 * (1 - 2 * 8.375e-6 * y1 - y2), 77.27 * (1 - y1), zero]),
                torch.stack([-y2 / 77.27, -(1 + y1) / 77.27, one / 77.27]),
                torch.stack([0.161 * one, zero, -0.161 * one]),
            ]
        )

    t_eval = torch.tensor([0.0, 50.0], dtype=torch.float64)
    eager, eager_stats, _ = solve("orego", t_eval=t_eval, autonomous=True, jac=orego_jac)
    fast, fast_stats, _ = solve(
        "orego", t_eval=t_eval, autonomous=True, jac=orego_jac, compile=True
    )
    _assert_takes_the_eager_steps(fast, fast_stats, eager, eager_stats, rtol=1e-8)
    # every step ran the graph that takes the (user's) Jacobian as input
    names = compiled_step_names
    assert names and all(name.endswith("_given_jacobian") for name in names)


@pytest.mark.slow
def test_compiled_step_with_independent_batch_blocks_matches_the_eager_step():
    # three independent systems, one (1, 1) Jacobian block each
    y1 = torch.tensor([[_stiff_cosine_exact(1.0)], [0.0], [2.0]], dtype=torch.float64)

    options = {"tableau": ROSENBROCK23, "independent_batch": True}
    with torch.no_grad():
        eager, eager_stats = _solve_cosine(y1, [1.0, 0.0], False, **options)
        fast, fast_stats = _solve_cosine(y1, [1.0, 0.0], True, **options)
    _assert_takes_the_eager_steps(fast, fast_stats, eager, eager_stats, rtol=1e-12)
    # every sample decays onto the same particular solution
    exact = _stiff_cosine_exact(0.0) - math.exp(-50.0)
    torch.testing.assert_close(
        fast.ys[-1, :, 0], torch.full((3,), exact, dtype=torch.float64), rtol=1e-4, atol=0
    )


def _coupled_stiff(t, y):
    # y' = A (y - g) + g' with g = (cos t, sin t) and A = [[-1000, 999], [0, -1]] (eigenvalues
    # -1000 and -1, non-normal, coupled), not autonomous: df/dt is differenced in the graph
    u = y - torch.stack([torch.cos(t), torch.sin(t)])
    return torch.stack([-1000.0 * u[0] + 999.0 * u[1] - torch.sin(t), -u[1] + torch.cos(t)])


def _coupled_stiff_exact(t: float) -> list[float]:
    # from y(0) = g(0) + (1, 0), an eigenvector of A for -1000: y = g + exp(-1000 t) (1, 0)
    return [math.cos(t) + math.exp(-1000.0 * t), math.sin(t)]


@pytest.mark.slow  # compiles two float32 graphs per method (about 35 s for both, cold)
@pytest.mark.parametrize("tableau", [RODAS5, ROSENBROCK23], ids=lambda tab: tab.name)
def test_compiled_step_in_float32_agrees_with_the_eager_step(tableau, compiled_step_names):
    times = [0.0, 0.5, 1.0, 2.0]

    def solve_float32(compile: bool):
        method = Rosenbrock(tableau, compile=compile)
        with torch.no_grad():
            sol = kutta.solve(
                _coupled_stiff,
                torch.tensor([2.0, 0.0]),
                t_eval=torch.tensor(times),
                method=method,
                controller=PIController(rtol=1e-4, atol=1e-6),
            )
        return sol

    eager = solve_float32(compile=False)
    fast = solve_float32(compile=True)
    assert fast.ys.dtype == torch.float32
    # the step graph ran (rodas5's rejections here are at its first step, which is eager)
    assert f"{tableau.name}_step_coupled_n2" in compiled_step_names
    # Not the same step count: float32 round-off in the error estimate (eps / rtol ~ 1e-3
    # relative) can flip an accept/reject decision (rosenbrock23 at rtol 1e-3 took 88 steps
    # compiled, 90 eager; here both methods take the eager steps: 22 and 189).
    assert abs(fast.stats["n_steps"] - eager.stats["n_steps"]) <= 0.1 * eager.stats["n_steps"]
    # Ten times closer than the tolerance both solves were given: with the same steps they
    # differ by round-off (at most 8e-7, 7 float32 ulps of the O(1) solution, measured with
    # torch 2.13), while a wrong coefficient, stage or dtype in the graph moves the solution by
    # about a step's error, the tolerance itself.
    torch.testing.assert_close(fast.ys, eager.ys, rtol=0.0, atol=1e-5)
    # and both are the solution (global errors measured: rodas5 1e-6, rosenbrock23 5.7e-5)
    exact = torch.tensor([_coupled_stiff_exact(t) for t in times])
    torch.testing.assert_close(fast.ys, exact, rtol=0.0, atol=2e-4)
