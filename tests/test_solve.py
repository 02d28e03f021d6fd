"""The native API ``kutta.solve``: the Solution, shared and per-sample stepping, status codes,
and property-based checks on random stable linear systems against ``scipy.linalg.expm``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import kutta

F64 = torch.float64


def decay(t, y):
    return -y


def test_solution_fields_in_shared_mode():
    t = torch.linspace(0.0, 1.0, 5, dtype=F64)
    sol = kutta.solve(decay, torch.tensor([1.0, 2.0], dtype=F64), t)
    assert sol.ys.shape == (5, 2) and torch.equal(sol.ts, t)
    torch.testing.assert_close(sol.ys[:, 0], torch.exp(-t), rtol=1e-6, atol=0)
    assert sol.stats["method"] == "tsit5"  # the default method
    for key in ("nfe", "n_steps", "n_accepted", "n_rejected"):
        assert isinstance(sol.stats[key], int)
    assert sol.stats["n_steps"] == sol.stats["n_accepted"] + sol.stats["n_rejected"]
    assert sol.status.dim() == 0 and int(sol.status) == kutta.Status.SUCCESS and bool(sol.success)


def test_span_gives_both_ends():
    sol = kutta.solve(decay, torch.ones(1, dtype=F64), span=(0.0, 2.0))
    assert sol.ys.shape == (2, 1)
    assert float(sol.ys[-1]) == pytest.approx(math.exp(-2.0), rel=1e-6)


@pytest.mark.parametrize("method", [kutta.Dopri5(), "dopri5", kutta.Dopri8(), kutta.Bosh3()])
def test_method_objects_and_names(method):
    sol = kutta.solve(
        decay,
        torch.ones(1, dtype=F64),
        span=(0.0, 1.0),
        method=method,
        controller=kutta.PIController(1e-9, 1e-11),
    )
    assert float(sol.ys[-1]) == pytest.approx(math.exp(-1.0), rel=1e-8)


def test_tuple_state_and_reversed_time():
    """Harmonic oscillator from t = 1 back to t = -2."""
    x0, v0 = math.cos(1.0), -math.sin(1.0)
    t = torch.tensor([1.0, 0.0, -2.0], dtype=F64)
    sol = kutta.solve(
        lambda t, s: (s[1], -s[0]),
        (torch.tensor([x0], dtype=F64), torch.tensor([v0], dtype=F64)),
        t,
        controller=kutta.PIController(1e-10, 1e-12),
    )
    x, v = sol.ys
    np.testing.assert_allclose(x[:, 0].numpy(), np.cos(t.numpy()), atol=1e-9)
    np.testing.assert_allclose(v[:, 0].numpy(), -np.sin(t.numpy()), atol=1e-9)


def test_time_dependent_field_sees_user_time_in_reverse():
    """y' = t y, y(1) = 1 backwards to 0: y = exp((t^2 - 1) / 2)."""
    seen = []

    def field(t, y):
        seen.append(float(t))
        return t * y

    sol = kutta.solve(
        field,
        torch.ones(1, dtype=F64),
        torch.tensor([1.0, 0.0], dtype=F64),
        controller=kutta.PIController(1e-10, 1e-12),
    )
    assert float(sol.ys[-1]) == pytest.approx(math.exp(-0.5), rel=1e-9)
    assert min(seen) >= 0.0 - 1e-12 and max(seen) <= 1.0 + 1e-12


# --- per-sample stepping -----------------------------------------------------------------------


def van_der_pol(t, y):
    """(x, v, mu) per row; mu rides along in the state, so a sample keeps its own parameter
    when finished samples are dropped from the working set."""
    x, v, mu = y.unbind(-1)
    return torch.stack([v, mu * (1 - x**2) * v - x, torch.zeros_like(mu)], -1)


def vdp_batch(mus):
    mus = torch.as_tensor(mus, dtype=F64)
    return torch.stack([torch.full_like(mus, 2.0), torch.zeros_like(mus), mus], -1)


def test_per_sample_result_does_not_depend_on_the_batch():
    """Each sample solved alone equals the same sample in a batch: same steps (NFE), same
    values up to round-off of batched vs unbatched kernels (~1e-16 here; 1e-13 allowed)."""
    y0 = vdp_batch([0.1, 1.0, 3.0, 6.0])
    t = torch.linspace(0.0, 4.0, 9, dtype=F64)
    ctl = kutta.PIController(1e-8, 1e-10)
    batch = kutta.solve(van_der_pol, y0, t, batch_mode="per_sample", controller=ctl)
    assert batch.ys.shape == (9, 4, 3)
    for i in range(4):
        alone = kutta.solve(van_der_pol, y0[i : i + 1], t, batch_mode="per_sample", controller=ctl)
        torch.testing.assert_close(alone.ys[:, 0], batch.ys[:, i], rtol=1e-13, atol=1e-13)
        assert int(alone.stats["nfe"][0]) == int(batch.stats["nfe"][i])
        assert int(alone.stats["n_rejected"][0]) == int(batch.stats["n_rejected"][i])
    # stiffer samples need more steps: the statistics really are per sample
    nfe = batch.stats["nfe"].tolist()
    assert nfe == sorted(nfe) and nfe[0] < nfe[-1]
    assert batch.status.tolist() == [0, 0, 0, 0]


def test_per_sample_equals_shared_for_a_single_sample():
    t = torch.linspace(0.0, 3.0, 5, dtype=F64)
    y0 = vdp_batch([1.5])
    per = kutta.solve(van_der_pol, y0, t, batch_mode="per_sample")
    shared = kutta.solve(van_der_pol, y0, t)
    torch.testing.assert_close(per.ys, shared.ys, rtol=1e-12, atol=1e-12)
    assert int(per.stats["nfe"][0]) == shared.stats["nfe"]


def test_per_sample_time_grids():
    """t_eval of shape (B, T): each sample has its own output times (and end time)."""
    y0 = vdp_batch([0.5, 2.0, 4.0])
    grids = torch.stack([torch.linspace(0.0, 1.0 + 2 * i, 5, dtype=F64) for i in range(3)])
    ctl = kutta.PIController(1e-8, 1e-10)
    sol = kutta.solve(van_der_pol, y0, grids, batch_mode="per_sample", controller=ctl)
    assert sol.ys.shape == (5, 3, 3) and sol.ts.shape == (3, 5)
    for i in range(3):
        alone = kutta.solve(
            van_der_pol, y0[i : i + 1], grids[i], batch_mode="per_sample", controller=ctl
        )
        torch.testing.assert_close(alone.ys[:, 0], sol.ys[:, i], rtol=1e-13, atol=1e-13)
    # the sample with the shortest span finished first and stopped costing evaluations
    assert int(sol.stats["nfe"][0]) < int(sol.stats["nfe"][2])


def test_per_sample_reversed_time_against_exact():
    rates = torch.tensor([0.5, 1.0, 2.0], dtype=F64)
    y0 = torch.stack([torch.ones(3, dtype=F64), rates], -1)  # (y, rate)

    def field(t, y):
        assert t.shape == (y.shape[0],)
        return torch.stack([-y[:, 1] * y[:, 0], torch.zeros_like(y[:, 1])], -1)

    t = torch.linspace(1.0, -1.0, 5, dtype=F64)
    sol = kutta.solve(
        field, y0, t, batch_mode="per_sample", controller=kutta.PIController(1e-10, 1e-12)
    )
    exact = torch.exp(-rates[None, :] * (t[:, None] - 1.0))
    torch.testing.assert_close(sol.ys[..., 0], exact, rtol=1e-8, atol=0)


def test_per_sample_fixed_step_method():
    y0 = torch.tensor([[1.0], [2.0]], dtype=F64)
    t = torch.linspace(0.0, 1.0, 3, dtype=F64)
    sol = kutta.solve(decay, y0, t, method="rk4", step_size=0.05, batch_mode="per_sample")
    shared = kutta.solve(decay, y0, t, method="rk4", step_size=0.05)
    torch.testing.assert_close(sol.ys, shared.ys, rtol=1e-14, atol=1e-14)
    assert sol.stats["n_steps"].tolist() == [20, 20]


def test_per_sample_status_codes_are_per_sample():
    """y' = y^2 from y0 blows up at t = 1 / y0: only the sample with y0 = 2 fails (at 0.5)."""
    y0 = torch.tensor([[0.5], [2.0], [0.1]], dtype=F64)
    t = torch.tensor([0.0, 1.0], dtype=F64)
    sol = kutta.solve(lambda t, y: y**2, y0, t, batch_mode="per_sample", raise_on_failure=False)
    assert sol.status.tolist() == [
        kutta.Status.SUCCESS,
        kutta.Status.DT_UNDERFLOW,
        kutta.Status.SUCCESS,
    ]
    assert sol.success.tolist() == [True, False, True]
    assert float(sol.ys[-1, 0, 0]) == pytest.approx(1.0, rel=1e-6)  # 0.5 / (1 - 0.5)
    assert math.isnan(float(sol.ys[-1, 1, 0]))  # never reached
    with pytest.raises(kutta.SolverError, match="1 of 3 samples failed; sample 1") as info:
        kutta.solve(lambda t, y: y**2, y0, t, batch_mode="per_sample")
    assert info.value.partial.status.tolist() == sol.status.tolist()
    assert info.value.t == pytest.approx(0.5, abs=1e-3)


def test_per_sample_step_budget():
    y0 = vdp_batch([0.1, 8.0])
    sol = kutta.solve(
        van_der_pol,
        y0,
        torch.tensor([0.0, 6.0], dtype=F64),
        batch_mode="per_sample",
        max_steps=60,
        raise_on_failure=False,
    )
    assert sol.status.tolist() == [kutta.Status.SUCCESS, kutta.Status.MAX_STEPS]


# --- property-based: random stable linear systems ----------------------------------------------


def stable_matrix(entries: list[float], n: int) -> np.ndarray:
    """-(M M^T) / n - 0.1 I plus a skew part: every eigenvalue has real part <= -0.1."""
    m = np.array(entries[: n * n]).reshape(n, n)
    s = np.array(entries[n * n : 2 * n * n]).reshape(n, n)
    return -(m @ m.T) / n - 0.1 * np.eye(n) + (s - s.T)


linear_systems = st.integers(1, 4).flatmap(
    lambda n: st.tuples(
        st.just(n),
        st.lists(st.floats(-1.5, 1.5), min_size=2 * n * n, max_size=2 * n * n),
        st.lists(st.floats(-2.0, 2.0), min_size=n, max_size=n),
        st.floats(0.5, 4.0),
    )
)


@settings(max_examples=25, deadline=None)
@given(linear_systems, st.sampled_from(["dopri5", "tsit5", "bosh3", "dopri8"]))
def test_random_linear_systems_match_the_matrix_exponential(system, method):
    n, entries, y0, T = system
    a = stable_matrix(entries, n)
    ts = np.linspace(0.0, T, 4)
    exact = np.stack([scipy.linalg.expm(a * t) @ np.array(y0) for t in ts])
    at = torch.tensor(a)
    sol = kutta.solve(
        lambda t, y: at @ y,
        torch.tensor(y0, dtype=F64),
        torch.tensor(ts),
        method=method,
        controller=kutta.PIController(1e-9, 1e-11),
    )
    scale = 1.0 + np.abs(exact).max()
    np.testing.assert_allclose(sol.ys.numpy(), exact, atol=1e-6 * scale, rtol=0)


@settings(max_examples=15, deadline=None)
@given(linear_systems, st.integers(1, 4))
def test_random_linear_systems_per_sample_and_reversed(system, batch):
    """A batch of initial states per sample, integrated backwards from T to 0."""
    n, entries, y0, T = system
    a = stable_matrix(entries, n)
    rng = np.random.default_rng(len(entries))
    y_end = rng.normal(size=(batch, n))
    ts = np.linspace(T, 0.0, 3)
    exact = np.stack([y_end @ scipy.linalg.expm(a * (t - T)).T for t in ts])
    at = torch.tensor(a)
    sol = kutta.solve(
        lambda t, y: y @ at.T,
        torch.tensor(y_end),
        torch.tensor(ts),
        batch_mode="per_sample",
        controller=kutta.PIController(1e-9, 1e-11),
    )
    scale = 1.0 + np.abs(exact).max()
    np.testing.assert_allclose(sol.ys.numpy(), exact, atol=1e-6 * scale, rtol=0)


def test_per_sample_float32():
    y0 = vdp_batch([0.5, 2.0]).float()
    t = torch.linspace(0.0, 3.0, 4)
    sol = kutta.solve(
        van_der_pol, y0, t, batch_mode="per_sample", controller=kutta.PIController(1e-5, 1e-6)
    )
    assert sol.ys.dtype == torch.float32 and sol.status.tolist() == [0, 0]
    reference = kutta.solve(
        van_der_pol,
        y0.double(),
        t.double(),
        batch_mode="per_sample",
        controller=kutta.PIController(1e-10, 1e-12),
    )
    torch.testing.assert_close(sol.ys.double(), reference.ys, rtol=0, atol=1e-3)


def test_gradient_with_respect_to_t_eval_in_shared_mode():
    """y' = -t y: d y(t1) / d t1 = -t1 y(t1) and d y(t1) / d t0 = t0 y(t1)."""
    t = torch.tensor([0.5, 2.0], dtype=F64, requires_grad=True)
    sol = kutta.solve(
        lambda t, y: -t * y,
        torch.ones(1, dtype=F64),
        t,
        controller=kutta.PIController(1e-10, 1e-12),
    )
    (grad,) = torch.autograd.grad(sol.ys[-1].sum(), t)
    y1 = math.exp(-(4.0 - 0.25) / 2)
    assert grad.tolist() == pytest.approx([0.5 * y1, -2.0 * y1], rel=1e-8)
    with pytest.raises(kutta.InvalidArgumentError, match="shared mode only"):
        kutta.solve(lambda t, y: -y, torch.ones(2, 1), t, batch_mode="per_sample")
