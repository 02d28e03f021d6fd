"""Single steps of the implicit methods, driven by a fixed-step loop (conftest ``kit``).

Convergence orders are measured from error slopes under step halving, against exact solutions:
a nonlinear, time-dependent problem (classical order) and a stiff linear one solved by ``expm``.
"""

from __future__ import annotations

import math

import pytest
import torch

from kutta.solvers.implicit import IMPLICIT_METHODS
from kutta.solvers.implicit.linalg import block_jacobian
from kutta.solvers.implicit.tableaus import RODAS5, DIRKTableau, RosenbrockTableau

ADAPTIVE = ["rodas5", "rosenbrock23", "kvaerno3", "kvaerno5", "trbdf2"]
FIXED = [
    "implicit_euler",
    "implicit_midpoint",
    "trapezoid",
    "radauIIA3",
    "radauIIA5",
    "gl4",
    "gl6",
    "sdirk2",
]
L_STABLE = [
    "rodas5",
    "rosenbrock23",
    "kvaerno3",
    "kvaerno5",
    "trbdf2",
    "implicit_euler",
    "sdirk2",
    "radauIIA3",
    "radauIIA5",
]
ORDERS = {
    "rodas5": 5,
    "rosenbrock23": 2,
    "kvaerno3": 3,
    "kvaerno5": 5,
    "trbdf2": 2,
    "implicit_euler": 1,
    "implicit_midpoint": 2,
    "trapezoid": 2,
    "radauIIA3": 3,
    "radauIIA5": 5,
    "gl4": 4,
    "gl6": 6,
    "sdirk2": 2,
}


def test_registry_has_every_name_with_the_right_kind():
    assert set(IMPLICIT_METHODS) == set(ADAPTIVE) | set(FIXED) | {"bdf"}  # bdf: test_bdf.py
    assert IMPLICIT_METHODS["bdf"]().adaptive
    for name in ADAPTIVE:
        assert IMPLICIT_METHODS[name]().adaptive, name
    for name in FIXED:
        assert not IMPLICIT_METHODS[name]().adaptive, name
    assert not IMPLICIT_METHODS["trbdf2"](adaptive_step=False).adaptive
    assert {n: IMPLICIT_METHODS[n]().order for n in ORDERS} == ORDERS


@pytest.mark.parametrize("name", ADAPTIVE + FIXED)
def test_classical_order_on_a_nonlinear_time_dependent_problem(kit, name):
    errors = []
    for n in (10, 20, 40):
        m = kit.make(name, adaptive_step=False) if name == "trbdf2" else kit.make(name)
        y, _ = kit.fixed_steps(m, kit.nonlinear_f, kit.nonlinear_exact(0.0), 0.0, 1.0, n)
        errors.append(float((y - kit.nonlinear_exact(1.0)).abs().max()))
    observed = kit.slopes(errors)
    assert abs(observed[-1] - ORDERS[name]) < 0.3, (errors, observed)


@pytest.mark.parametrize("name", L_STABLE)
def test_order_on_a_stiff_linear_problem(kit, name):
    f, y0, exact = kit.stiff_linear()
    errors = []
    # Rodas5's error at 40 steps is already 2e-11, within a few roundoff units of this
    # non-normal problem's floor (about 5e-12), so the steps stay coarser.
    for n in (8, 16, 32):
        y, _ = kit.fixed_steps(kit.make(name), f, y0, 0.0, 1.0, n)
        errors.append(float((y - exact).abs().max()))
    observed = kit.slopes(errors)
    assert min(observed) > ORDERS[name] - 0.5, (errors, observed)


# Local error orders (error after one step ~ h^q) of the dense output at theta = 0.5:
# Rodas5's interpolant has order 4, ode23s's order 2, the ESDIRKs use cubic Hermite output.
DENSE_LOCAL_ORDER = {"rodas5": 5, "rosenbrock23": 3, "kvaerno3": 4, "kvaerno5": 4, "trbdf2": 3}


@pytest.mark.parametrize("name", ADAPTIVE)
def test_dense_output_and_error_estimate_orders(kit, name):
    t0 = 0.3
    dense_errors, estimates = [], []
    for h in (0.1, 0.05, 0.025):
        m = kit.make(name)
        y0 = kit.nonlinear_exact(t0)
        res = m.step(kit.nonlinear_f, t0, y0, h, m.init(kit.nonlinear_f, t0, y0))
        mid = m.interpolate(res.dense, 0.5)
        dense_errors.append(float((mid - kit.nonlinear_exact(t0 + h / 2)).abs().max()))
        estimates.append(float(res.error.abs().max()))
        torch.testing.assert_close(m.interpolate(res.dense, 1.0), res.y, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(m.interpolate(res.dense, 0.0), y0, rtol=1e-12, atol=1e-12)
    assert min(kit.slopes(dense_errors)) > DENSE_LOCAL_ORDER[name] - 0.4, dense_errors
    m = IMPLICIT_METHODS[name]()
    expected = min(m.order, m.error_order) + 1
    assert min(kit.slopes(estimates)) > expected - 0.4, estimates


def _kinetics(rates: torch.Tensor):
    """Robertson kinetics with per-sample rate constants ``rates`` of shape (B, 3)."""

    def f(t, y):
        k1, k2, k3 = rates.unbind(-1)
        y1, y2, y3 = y.unbind(-1)
        return torch.stack(
            [-k1 * y1 + k2 * y2 * y3, k1 * y1 - k2 * y2 * y3 - k3 * y2**2, k3 * y2**2], dim=-1
        )

    return f


@pytest.mark.parametrize("name", ["rodas5", "kvaerno5", "radauIIA5", "trbdf2"])
def test_a_sample_never_depends_on_the_others(kit, name):
    rates = torch.tensor([0.04, 1e4, 3e7], dtype=torch.float64) * torch.exp(
        torch.empty(4, 3, dtype=torch.float64).uniform_(-0.7, 0.7)
    )
    y0 = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64).repeat(4, 1)
    t = torch.zeros(4, dtype=torch.float64)
    h = torch.tensor([[1e-5], [3e-5], [1e-4], [2e-5]], dtype=torch.float64)

    def run(rows):
        m = kit.make(name, atol=1e-10, rtol=1e-8)
        f = _kinetics(rates[rows])
        y, tt, state = y0[rows], t[rows], m.init(f, t[rows], y0[rows])
        for _ in range(6):
            res = m.step(f, tt, y, h[rows], state)
            y, state, tt = res.y, res.state, tt + h[rows, 0]
        assert m.stats["n_newton_failures"] == 0 and torch.isfinite(y).all()
        return y

    together = run(slice(None))
    for i in range(4):
        torch.testing.assert_close(together[i : i + 1], run(slice(i, i + 1)), rtol=1e-13, atol=0)


@pytest.mark.parametrize("name", ["rodas5", "kvaerno5"])
def test_independent_batch_in_shared_mode_uses_one_block_per_row(kit, name):
    rates = torch.tensor([[0.04, 1e4, 3e7], [0.08, 2e4, 1e7]], dtype=torch.float64)
    y0 = torch.tensor([[1.0, 0.0, 0.0], [0.9, 0.0, 0.1]], dtype=torch.float64)
    shapes = []

    def jac(t, y):  # analytic blocks, also recording the shape the method asks for
        shapes.append(tuple(y.shape))
        k1, k2, k3 = rates.unbind(-1)
        y1, y2, y3 = y.unbind(-1)
        z = torch.zeros_like(y1)
        rows = [
            [-k1, k2 * y3, k2 * y2],
            [k1, -k2 * y3 - 2 * k3 * y2, -k2 * y2],
            [z, 2 * k3 * y2, z],
        ]
        return torch.stack(
            [torch.stack([torch.as_tensor(v) * 1.0 + z for v in r], -1) for r in rows], -2
        )

    f = _kinetics(rates)
    batched = kit.make(name, atol=1e-10, rtol=1e-8, independent_batch=True)
    with_jac = kit.make(name, atol=1e-10, rtol=1e-8, independent_batch=True, jac=jac)
    y_auto, _ = kit.fixed_steps(batched, f, y0, 0.0, 5e-4, 5)
    y_user, _ = kit.fixed_steps(with_jac, f, y0, 0.0, 5e-4, 5)
    assert batched.stats["n_newton_failures"] == with_jac.stats["n_newton_failures"] == 0
    assert shapes and all(s == (2, 3) for s in shapes)
    assert with_jac.stats["n_jac"] == len(shapes)
    torch.testing.assert_close(y_auto, y_user, rtol=1e-9, atol=1e-15)
    for i in range(2):
        solo = kit.make(name, atol=1e-10, rtol=1e-8)
        y_solo, _ = kit.fixed_steps(solo, _kinetics(rates[i]), y0[i], 0.0, 5e-4, 5)
        torch.testing.assert_close(y_auto[i], y_solo, rtol=1e-9, atol=1e-15)


def test_block_jacobian_modes_agree():
    a = torch.randn(4, 3, 3, dtype=torch.float64)

    def g(z):  # row-independent, nonlinear
        return torch.einsum("bij,bj->bi", a, z) + z.sin() * z[:, :1]

    z = torch.randn(4, 3, dtype=torch.float64)
    exact = a + torch.diag_embed(z.cos() * z[:, :1])
    exact[:, :, 0] += z.sin()
    for mode in ("autograd", "fwd", "rev"):
        torch.testing.assert_close(block_jacobian(g, z, mode), exact)


@pytest.mark.parametrize("name", ["kvaerno5", "trbdf2", "kvaerno3"])
def test_newton_failure_gives_an_infinite_error_not_an_exception(kit, name):
    # Z = 1 + h g Z^2 has no real solution once 4 h g > 1: Newton cannot converge.
    m = kit.make(name, atol=1e-8, rtol=1e-8)
    f = lambda t, y: y**2  # noqa: E731
    y0 = torch.ones(1, dtype=torch.float64)
    res = m.step(f, 0.0, y0, 5.0, m.init(f, 0.0, y0))
    assert torch.isinf(res.error).all()
    assert m.stats["n_newton_failures"] == 1
    small = m.step(f, 0.0, y0, 0.01, m.init(f, 0.0, y0))
    assert torch.isfinite(small.error).all()


def test_singular_rosenbrock_matrix_gives_an_infinite_error(kit):
    m = kit.make("rodas5")
    f = lambda t, y: y  # noqa: E731  (I - h gamma J is singular at h = 1 / gamma)
    y0 = torch.ones(2, dtype=torch.float64)
    res = m.step(f, 0.0, y0, 1.0 / RODAS5.gamma, m.init(f, 0.0, y0))
    assert torch.isinf(res.error).all()


def test_fixed_step_newton_failure_warns(kit):
    m = kit.make("implicit_euler", atol=1e-8, rtol=1e-8)
    f = lambda t, y: y**2  # noqa: E731
    y0 = torch.ones(1, dtype=torch.float64)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        m.step(f, 0.0, y0, 5.0, m.init(f, 0.0, y0))


def test_chord_newton_reuses_the_jacobian_of_a_linear_problem(kit):
    f, y0, exact = kit.stiff_linear()
    m = kit.make("kvaerno5", atol=1e-12, rtol=1e-12)
    y, _ = kit.fixed_steps(m, f, y0, 0.0, 1.0, 20)
    assert m.stats["n_jac"] == 1  # constant Jacobian: Newton converges at once, never stale
    assert m.stats["n_lu"] == 20
    torch.testing.assert_close(y, exact, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ["rodas5", "kvaerno5", "radauIIA5"])
def test_float32_keeps_dtype_and_converges(kit, name):
    m = kit.make(name, atol=1e-6, rtol=1e-5, dtype=torch.float32)
    y0 = kit.nonlinear_exact(0.0).float()
    y, _ = kit.fixed_steps(m, kit.nonlinear_f, y0, 0.0, 1.0, 20)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y.double(), kit.nonlinear_exact(1.0), rtol=0, atol=2e-5)


def test_invalid_tableaus_are_rejected():
    with pytest.raises(ValueError, match="row 1"):
        DIRKTableau("bad", c=(0.0, 1.0), a=((), (0.5, 0.4)), b=(0.5, 0.5), order=2)
    with pytest.raises(ValueError, match="stage times"):
        RosenbrockTableau(
            name="bad",
            gamma=RODAS5.gamma,
            a=[row[:i] for i, row in enumerate(((0,) * 8, (2.1,), *RODAS5.a[2:]))],
            C=[row[:i] for i, row in enumerate(RODAS5.C)],
            c=RODAS5.c,
            d=RODAS5.d,
            b=RODAS5.b,
            e=RODAS5.e,
            dense=RODAS5.dense,
            order=5,
            error_order=4,
        )


def test_unknown_jacobian_mode_is_a_clear_error():
    from kutta.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match="jacobian mode"):
        IMPLICIT_METHODS["rodas5"](jacobian="magic")


def test_time_derivative_of_a_non_autonomous_field_matters(kit):
    # Without df/dt, Rodas5 loses its order on a time-dependent problem: the option is honest.
    errors = {}
    for autonomous in (False, True):
        m = kit.make("rodas5", autonomous=autonomous)
        y, _ = kit.fixed_steps(m, kit.nonlinear_f, kit.nonlinear_exact(0.0), 0.0, 1.0, 20)
        errors[autonomous] = float((y - kit.nonlinear_exact(1.0)).abs().max())
    assert errors[False] < 1e-7 < errors[True]
    assert math.isfinite(errors[True])
