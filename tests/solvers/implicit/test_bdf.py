"""The variable-order BDF/NDF method: exact special cases, history rescaling, batching, gradients."""

from __future__ import annotations

import pytest
import torch

import kutta
from kutta.controllers import PIController
from kutta.solvers.implicit import IMPLICIT_METHODS
from kutta.solvers.implicit.bdf import (
    _PRED_PSI_COLUMNS,
    _ROWS,
    _STEP_COLUMNS,
    _coefficients,
    _rescale_matrix,
)


def test_first_order_bdf_is_implicit_euler(kit):
    bdf = kit.make("bdf", max_order=1, ndf=False, max_iters=50)
    euler = kit.make("implicit_euler")
    y0 = kit.nonlinear_exact(0.0)
    y_bdf, _ = kit.fixed_steps(bdf, kit.nonlinear_f, y0, 0.0, 1.0, 10)
    y_euler, _ = kit.fixed_steps(euler, kit.nonlinear_f, y0, 0.0, 1.0, 10)
    torch.testing.assert_close(y_bdf, y_euler, rtol=1e-11, atol=1e-12)


def test_rescaling_the_history_is_exact_for_polynomials():
    # D holds the backward differences of p(t) = 1 + 2 t + 3 t^2 on the grid t = 0, -h, -2h
    # (order 2); rescaling to step h' must give the differences on 0, -h', -2h'.
    def differences(h):
        values = [1 + 2 * t + 3 * t**2 for t in (0.0, -h, -2 * h)]
        first = [values[0] - values[1], values[1] - values[2]]
        return torch.tensor([values[0], first[0], first[0] - first[1]], dtype=torch.float64)

    D = torch.zeros(1, 8, 1, dtype=torch.float64)
    D[0, :3, 0] = differences(0.1)
    order = torch.tensor([2])
    rescaled = _rescale_matrix(torch.tensor([0.37 / 0.1], dtype=torch.float64), order) @ D
    torch.testing.assert_close(rescaled[0, :3, 0], differences(0.37))
    assert torch.equal(rescaled[0, 3:], D[0, 3:])


def test_dense_output_ends_at_the_step(kit):
    m = kit.make("bdf", atol=1e-10, rtol=1e-10, max_iters=50)
    y0 = kit.nonlinear_exact(0.0)
    _, results = kit.fixed_steps(m, kit.nonlinear_f, y0, 0.0, 0.5, 10)
    assert m.stats["n_newton_failures"] == 0
    for res in results:
        torch.testing.assert_close(m.interpolate(res.dense, 1.0), res.y, rtol=1e-13, atol=1e-13)
    # The interpolant passes (up to the differences' own error) through the step's start, and
    # inside the step its error is no worse than the solution's at the ends.
    for before, res, t0 in zip(results[:-1], results[1:], [0.05 * i for i in range(1, 10)]):
        torch.testing.assert_close(m.interpolate(res.dense, 0.0), before.y, rtol=0, atol=1e-6)
        end_error = max(
            float((before.y - kit.nonlinear_exact(t0)).abs().max()),
            float((res.y - kit.nonlinear_exact(t0 + 0.05)).abs().max()),
        )
        mid_error = float(
            (m.interpolate(res.dense, 0.5) - kit.nonlinear_exact(t0 + 0.025)).abs().max()
        )
        assert mid_error <= 1.05 * end_error + 1e-6


def test_order_rises_on_a_smooth_problem(kit):
    m = kit.make("bdf", atol=1e-10, rtol=1e-10, max_iters=50)
    y0 = kit.nonlinear_exact(0.0)
    _, results = kit.fixed_steps(m, kit.nonlinear_f, y0, 0.0, 1.0, 40)
    assert m.stats["n_newton_failures"] == 0
    orders = [int(r.state[1]) for r in results]
    assert orders[0] == 1 and max(orders) >= 3


def test_solve_error_follows_the_tolerance(kit):
    errors = []
    for rtol in (1e-4, 1e-6, 1e-8):
        sol = kutta.solve(
            kit.nonlinear_f,
            kit.nonlinear_exact(0.0),
            span=(0.0, 2.0),
            method=IMPLICIT_METHODS["bdf"](),
            controller=PIController(rtol=rtol, atol=rtol),
        )
        errors.append(float((sol.ys[-1].detach() - kit.nonlinear_exact(2.0)).abs().max()))
    assert errors[0] > 10 * errors[1] > 100 * errors[2]
    assert errors[2] < 1e-6


def test_per_sample_bdf_does_not_couple_samples(kit):
    rates = torch.tensor(
        [[0.04, 1e4, 3e7], [0.08, 2e4, 1e7], [0.02, 5e3, 6e7]], dtype=torch.float64
    )

    def make_f(k):
        def f(t, y):
            y1, y2, y3 = y.unbind(-1)
            k1, k2, k3 = k.unbind(-1)
            return torch.stack(
                [-k1 * y1 + k2 * y2 * y3, k1 * y1 - k2 * y2 * y3 - k3 * y2**2, k3 * y2**2], -1
            )

        return f

    y0 = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64).repeat(3, 1)
    h = torch.tensor([[1e-5], [2e-5], [4e-5]], dtype=torch.float64)

    def run(rows):
        m = kit.make("bdf", atol=1e-12, rtol=1e-8)
        f = make_f(rates[rows])
        t = torch.zeros(y0[rows].shape[0], dtype=torch.float64)
        y, state = y0[rows], m.init(f, t, y0[rows])
        for _ in range(12):
            res = m.step(f, t, y, h[rows], state)
            y, state, t = res.y, res.state, t + h[rows, 0]
        assert m.stats["n_newton_failures"] == 0
        return y, state[1]

    together, orders = run(slice(None))
    for i in range(3):
        alone, order_alone = run(slice(i, i + 1))
        torch.testing.assert_close(together[i : i + 1], alone, rtol=1e-13, atol=0)
        assert int(orders[i]) == int(order_alone[0])


def test_gradcheck_of_bdf_steps():
    def steps(log_rates, y0):
        rates = torch.tensor([0.04, 1e4, 3e7], dtype=torch.float64) * log_rates.exp()

        def f(t, y):
            y1, y2, y3 = y.unbind(-1)
            k1, k2, k3 = rates.unbind(-1)
            return torch.stack(
                [-k1 * y1 + k2 * y2 * y3, k1 * y1 - k2 * y2 * y3 - k3 * y2**2, k3 * y2**2], -1
            )

        m = IMPLICIT_METHODS["bdf"](max_iters=50)
        m.set_error_scale(1e-14, 1e-14)
        m = m.bind(torch.float64, torch.device("cpu"))
        y, state, t = y0, m.init(f, 0.0, y0), 0.0
        for _ in range(6):
            res = m.step(f, t, y, 1e-4, state)
            y, state, t = res.y, res.state, t + 1e-4
        assert m.stats["n_newton_failures"] == 0
        return y

    log_rates = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    y0 = torch.tensor([0.98, 1e-5, 0.02], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(steps, (log_rates, y0), eps=1e-9, atol=1e-6, rtol=1e-4)


def test_invalid_max_order_is_a_clear_error():
    from kutta.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError, match="max_order"):
        IMPLICIT_METHODS["bdf"](max_order=7)


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_order_tables_apply_the_difference_update_and_error_estimates(k):
    # The tables hold, per order, what scipy's BDF does step by step: y_pred = sum_{j<=k} D[j],
    # psi = sum_{1<=j<=k} gamma_j D[j] / alpha_k; then D[k+2] = d - D[k+1], D[k+1] = d,
    # D[i] += D[i+1] for i = k..0; error estimates error_const_j * (D[k], d, D[k+2]) for
    # orders j = k - 1, k, k + 1.
    m = IMPLICIT_METHODS["bdf"]().bind(torch.float64, torch.device("cpu"))
    gamma, alpha, error_const = _coefficients(ndf=False)
    gen = torch.Generator().manual_seed(k)
    D = torch.randn(_ROWS, 3, dtype=torch.float64, generator=gen)
    d = torch.randn(3, dtype=torch.float64, generator=gen)
    row = m._tables[k]

    pred, minus_psi = row[_PRED_PSI_COLUMNS].view(2, _ROWS) @ D
    torch.testing.assert_close(pred, D[: k + 1].sum(0))
    psi = sum(gamma[j] * D[j] for j in range(1, k + 1)) / alpha[k]
    torch.testing.assert_close(minus_psi, -psi)

    stepped = row[_STEP_COLUMNS].view(_ROWS + 3, _ROWS + 1) @ torch.cat([D, d[None]])
    expected = D.clone()
    expected[k + 2] = d - D[k + 1]
    expected[k + 1] = d
    for i in reversed(range(k + 1)):
        expected[i] += expected[i + 1]
    torch.testing.assert_close(stepped[:_ROWS], expected)
    torch.testing.assert_close(stepped[_ROWS], error_const[k - 1] * expected[k])
    torch.testing.assert_close(stepped[_ROWS + 1], error_const[k] * d)
    up = error_const[k + 1] * expected[k + 2] if k < 5 else torch.zeros(3, dtype=torch.float64)
    torch.testing.assert_close(stepped[_ROWS + 2], up)
