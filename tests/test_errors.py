"""Bad input and failed solves: each raises a kutta error whose message names the problem
(and, mid-solve, where it happened and what was computed so far)."""

from __future__ import annotations

import pytest
import torch

import kutta
from kutta import odeint

F64 = torch.float64
T = torch.linspace(0.0, 1.0, 5)


def decay(t, y):
    return -y


# --- times -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "t, match",
    [
        (torch.tensor([0.0, 1.0, 0.5]), r"strictly increasing or strictly decreasing.*index 2"),
        (torch.tensor([0.0, 0.0, 1.0]), r"strictly increasing.*index 1"),
        (torch.zeros(2, 2), r"one-dimensional, got shape \(2, 2\)"),
        (torch.tensor([0, 1]), r"floating-point dtype, got torch.int64"),
        (torch.tensor([0.0, float("nan")]), r"NaN or inf"),
    ],
)
def test_bad_times(t, match):
    with pytest.raises(kutta.InvalidArgumentError, match=match):
        odeint(decay, torch.ones(2), t)
    with pytest.raises(kutta.InvalidArgumentError, match=match):
        kutta.solve(decay, torch.ones(2), t)


def test_bad_per_sample_time_grids():
    y0 = torch.ones(2, 1)
    with pytest.raises(kutta.InvalidArgumentError, match="3 rows but y0 has batch size 2"):
        kutta.solve(decay, y0, torch.rand(3, 4).cumsum(1), batch_mode="per_sample")
    grid = torch.tensor([[0.0, 1.0, 2.0], [0.0, 2.0, 1.0]])
    with pytest.raises(kutta.InvalidArgumentError, match="row 1 is not strictly monotone"):
        kutta.solve(decay, y0, grid, batch_mode="per_sample")


def test_invalid_errors_are_value_errors():
    """Bad arguments are also ValueErrors, so generic handlers still catch them."""
    with pytest.raises(ValueError):
        odeint(decay, torch.ones(2), torch.tensor([1.0, 0.0, 2.0]))


# --- states and the vector field ---------------------------------------------------------------


@pytest.mark.parametrize(
    "y0, match",
    [
        (torch.tensor([1, 2]), r"y0 must have a floating-point dtype, got torch.int64"),
        ([1.0, 2.0], r"y0\[0\] must be a tensor"),
        (torch.tensor([1.0, float("inf")]), r"y0 contains NaN or inf"),
        ((torch.ones(1), torch.ones(1, dtype=F64)), r"share one dtype"),
        ((), r"empty tuple"),
    ],
)
def test_bad_initial_states(y0, match):
    with pytest.raises(kutta.InvalidArgumentError, match=match):
        odeint(decay, y0, T)


def test_func_returning_the_wrong_shape():
    with pytest.raises(
        kutta.InvalidArgumentError,
        match=r"func returned shape \(1,\), but the state has shape \(2,\)",
    ):
        odeint(lambda t, y: y[:1], torch.ones(2), T)


def test_func_returning_the_wrong_dtype():
    with pytest.raises(
        kutta.InvalidArgumentError,
        match="func returned dtype torch.float64, but the state has dtype torch.float32",
    ):
        odeint(lambda t, y: y.double(), torch.ones(2), T)


def test_func_returning_the_wrong_structure_for_a_tuple_state():
    with pytest.raises(kutta.InvalidArgumentError, match="tuple of 2 tensors"):
        odeint(lambda t, s: s[0], (torch.ones(1), torch.ones(1)), T)


def test_non_callable_func():
    with pytest.raises(kutta.InvalidArgumentError, match="func must be callable"):
        odeint(3.0, torch.ones(1), T)


def test_per_sample_needs_a_batch_of_vectors():
    with pytest.raises(kutta.InvalidArgumentError, match=r"shape \(batch, features\)"):
        kutta.solve(decay, torch.ones(3), T, batch_mode="per_sample")


# --- failures mid-solve ------------------------------------------------------------------------


def nan_after_half(t, y):
    return -y if float(t) < 0.5 else y * float("nan")


@pytest.mark.parametrize("method", ["dopri5", "tsit5"])
def test_nan_mid_solve_adaptive(method):
    t = torch.linspace(0.0, 1.0, 5, dtype=F64)
    with pytest.raises(
        kutta.SolverError, match=r"non-finite values \(NaN/inf\).* at t = 0\.5"
    ) as info:
        odeint(nan_after_half, torch.ones(2, dtype=F64), t, method=method)
    err = info.value
    # the outputs before t = 0.5 are attached, and they are right
    assert err.partial.shape == (2, 2)
    torch.testing.assert_close(err.partial[:, 0], torch.exp(-t[:2]), rtol=1e-6, atol=0)
    assert err.t == pytest.approx(0.5, abs=1e-6)


def test_nan_mid_solve_fixed_step():
    t = torch.linspace(0.0, 1.0, 5, dtype=F64)
    with pytest.raises(kutta.SolverError, match=r"non-finite.*at output t = 0\.5") as info:
        odeint(
            nan_after_half, torch.ones(2, dtype=F64), t, method="rk4", options={"step_size": 0.05}
        )
    assert info.value.partial.shape == (2, 2)
    assert torch.isfinite(info.value.partial).all()


def test_nan_mid_solve_native_api_keeps_a_partial_solution():
    t = torch.linspace(0.0, 1.0, 5, dtype=F64)
    with pytest.raises(kutta.SolverError) as info:
        kutta.solve(nan_after_half, torch.ones(2, dtype=F64), t)
    partial = info.value.partial
    assert isinstance(partial, kutta.Solution)
    assert int(partial.status) == kutta.Status.NONFINITE
    assert partial.ys.shape == (2, 2)
    sol = kutta.solve(nan_after_half, torch.ones(2, dtype=F64), t, raise_on_failure=False)
    assert int(sol.status) == kutta.Status.NONFINITE and not bool(sol.success)


def test_nan_in_the_first_evaluation():
    with pytest.raises(kutta.SolverError, match=r"NaN/inf.*t = 0"):
        odeint(lambda t, y: y * float("nan"), torch.ones(2), T)


def test_step_size_underflow_below_min_step():
    """y' = y^2, y(0) = 1 blows up at t = 1."""
    t = torch.tensor([0.0, 2.0], dtype=F64)
    with pytest.raises(
        kutta.SolverError, match=r"step size underflow at t = 0\.99.*min_step = 0\.001"
    ) as info:
        odeint(
            lambda t, y: y**2,
            torch.ones(1, dtype=F64),
            t,
            options={"min_step": 1e-3},
            method="dopri5",
        )
    assert info.value.partial.shape == (1, 1)  # only t = 0 was reached
    assert 0.98 < info.value.t < 1.0


def test_step_size_underflow_at_machine_precision():
    t = torch.tensor([0.0, 2.0], dtype=F64)
    with pytest.raises(kutta.SolverError, match=r"step size underflow at t = 1[^0-9]") as info:
        odeint(lambda t, y: y**2, torch.ones(1, dtype=F64), t)
    assert info.value.t == pytest.approx(1.0, abs=1e-6)
    sol = kutta.solve(lambda t, y: y**2, torch.ones(1, dtype=F64), t, raise_on_failure=False)
    assert int(sol.status) == kutta.Status.DT_UNDERFLOW


def test_max_num_steps_exhausted():
    t = torch.linspace(0.0, 10.0, 11, dtype=F64)
    with pytest.raises(
        kutta.SolverError,
        match=r"max_num_steps = 5 \(per output interval\) exhausted at t = [0-9.]+ before reaching",
    ) as info:
        odeint(decay, torch.ones(1, dtype=F64), t, method="dopri5", options={"max_num_steps": 5})
    err = info.value
    n = err.partial.shape[0]
    assert 1 <= n < 11
    torch.testing.assert_close(err.partial[:, 0], torch.exp(-t[:n]), rtol=1e-6, atol=0)
    assert t[n - 1] <= err.t < t[n]
    sol = kutta.solve(decay, torch.ones(1, dtype=F64), t, max_steps=5, raise_on_failure=False)
    assert int(sol.status) == kutta.Status.MAX_STEPS


# --- names -------------------------------------------------------------------------------------


def test_unknown_method_lists_the_valid_ones():
    with pytest.raises(
        kutta.UnknownNameError, match=r"unknown method 'rk45'; valid methods are: .*dopri5.*tsit5"
    ) as info:
        odeint(decay, torch.ones(1), T, method="rk45")
    assert "rk4" in info.value.valid and "scipy_solver" in info.value.valid
    with pytest.raises(kutta.UnknownNameError, match="unknown method 'rk45'"):
        kutta.solve(decay, torch.ones(1), T, method="rk45")


def test_unknown_option_lists_the_valid_ones():
    with pytest.raises(
        kutta.UnknownNameError,
        match=r"unknown rk4 option 'stepsize'; valid rk4 options are: .*step_size",
    ):
        odeint(decay, torch.ones(1), T, method="rk4", options={"stepsize": 0.1})
    with pytest.raises(
        kutta.UnknownNameError, match=r"unknown dopri5 option 'step_size'.*first_step"
    ):
        odeint(decay, torch.ones(1), T, method="dopri5", options={"step_size": 0.1})
    with pytest.raises(kutta.UnknownNameError, match="scipy_solver option 'foo'"):
        odeint(decay, torch.ones(1), T, method="scipy_solver", options={"foo": 1})
    with pytest.raises(kutta.UnknownNameError, match="unknown scipy solver 'RK99'.*LSODA"):
        odeint(decay, torch.ones(1), T, method="scipy_solver", options={"solver": "RK99"})


def test_options_without_method():
    with pytest.raises(kutta.InvalidArgumentError, match="options.*without specifying `method`"):
        odeint(decay, torch.ones(1), T, options={"step_size": 0.1})


def test_bad_native_arguments():
    with pytest.raises(kutta.InvalidArgumentError, match="exactly one of t_eval and span"):
        kutta.solve(decay, torch.ones(1))
    with pytest.raises(kutta.InvalidArgumentError, match="exactly one of t_eval and span"):
        kutta.solve(decay, torch.ones(1), T, span=(0.0, 1.0))
    with pytest.raises(kutta.InvalidArgumentError, match="unknown batch_mode 'batch'"):
        kutta.solve(decay, torch.ones(1), T, batch_mode="batch")
    with pytest.raises(kutta.InvalidArgumentError, match="method must be a kutta Method"):
        kutta.solve(decay, torch.ones(1), T, method=3)
    with pytest.raises(kutta.InvalidArgumentError, match="need a step size"):
        kutta.solve(decay, torch.ones(2, 1), T, method="rk4", batch_mode="per_sample")
    with pytest.raises(kutta.InvalidArgumentError, match="step_size must be positive"):
        kutta.solve(decay, torch.ones(1), T, method="rk4", step_size=-0.1)


def test_per_sample_nan_from_the_start_fails_that_sample_at_once():
    """NaN in f at t0 makes that sample's first step size NaN; it must fail as NONFINITE
    right away (not loop until the step budget), and leave the other samples alone."""

    def field(t, y):
        return torch.where(y[:, :1] > 1.5, y * float("nan"), -y)

    y0 = torch.tensor([[1.0, 1.0], [2.0, 2.0]], dtype=F64)
    sol = kutta.solve(
        field,
        y0,
        torch.tensor([0.0, 1.0], dtype=F64),
        batch_mode="per_sample",
        raise_on_failure=False,
    )
    assert sol.status.tolist() == [kutta.Status.SUCCESS, kutta.Status.NONFINITE]
    assert int(sol.stats["n_steps"][1]) == 1
    assert float(sol.ys[-1, 0, 0]) == pytest.approx(torch.exp(torch.tensor(-1.0)).item(), rel=1e-6)


def test_step_size_with_an_adaptive_method_and_dt0_with_a_fixed_one_are_errors():
    with pytest.raises(kutta.InvalidArgumentError, match="step_size is for fixed-step methods"):
        kutta.solve(decay, torch.ones(1), T, method=kutta.Dopri5(), step_size=0.1)
    with pytest.raises(kutta.InvalidArgumentError, match="dt0 is for adaptive methods"):
        kutta.solve(decay, torch.ones(1), T, method="rk4", dt0=0.1)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "10"])
def test_solve_rejects_a_step_budget_that_is_not_a_positive_integer(bad):
    with pytest.raises(kutta.InvalidArgumentError, match="max_steps must be a positive integer"):
        kutta.solve(
            decay, torch.ones(1, dtype=F64), torch.tensor([0.0, 1.0], dtype=F64), max_steps=bad
        )


@pytest.mark.parametrize("batch_mode", ["shared", "per_sample"])
def test_solve_without_a_step_budget_runs_to_the_end(batch_mode):
    y0 = torch.ones(2, 1, dtype=F64)
    t = torch.tensor([0.0, 1.0], dtype=F64)
    sol = kutta.solve(decay, y0, t, max_steps=None, batch_mode=batch_mode)
    torch.testing.assert_close(sol.ys[-1], torch.full((2, 1), torch.e**-1.0, dtype=F64))
