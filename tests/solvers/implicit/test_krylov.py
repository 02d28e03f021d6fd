"""Matrix-free Newton–Krylov (``krylov_dim``): GMRES on Jacobian-vector products, no Jacobian."""

from __future__ import annotations

import math

import pytest
import torch

from kutta.errors import InvalidArgumentError
from kutta.solvers.implicit import IMPLICIT_METHODS


def heat_equation(n: int = 16):
    """``u_t = u_xx`` on (0, 1), zero boundary values, ``n`` interior points: stiff (lambda up
    to ~4 n^2). The sine mode is an exact eigenvector of the discrete Laplacian."""
    dx = 1.0 / (n + 1)

    def f(t, u):
        padded = torch.nn.functional.pad(u, (1, 1))
        return (padded[..., 2:] - 2 * u + padded[..., :-2]) / dx**2

    x = torch.arange(1, n + 1, dtype=torch.float64) * dx
    u0 = torch.sin(math.pi * x)
    rate = 4 / dx**2 * math.sin(math.pi * dx / 2) ** 2  # the sine mode's exact discrete decay rate
    return f, u0, rate


@pytest.mark.parametrize("name", ["trbdf2", "bdf"])  # kvaerno5: the inexact-Newton test below
def test_krylov_matches_lu_and_forms_no_jacobian(kit, name):
    f, u0, rate = heat_equation()
    lu = kit.make(name, atol=1e-12, rtol=1e-10, max_iters=30)
    krylov = kit.make(name, atol=1e-12, rtol=1e-10, max_iters=30, krylov_dim=16)
    y_lu, _ = kit.fixed_steps(lu, f, u0, 0.0, 0.05, 5)
    y_krylov, _ = kit.fixed_steps(krylov, f, u0, 0.0, 0.05, 5)
    assert krylov.stats["n_jac"] == krylov.stats["n_lu"] == 0
    assert krylov.stats["n_newton_failures"] == lu.stats["n_newton_failures"] == 0
    torch.testing.assert_close(y_krylov, y_lu, rtol=1e-8, atol=1e-12)
    torch.testing.assert_close(y_krylov, u0 * math.exp(-rate * 0.05), rtol=2e-2, atol=0)


def test_short_krylov_space_still_converges_as_inexact_newton(kit):
    f, u0, _ = heat_equation()
    full = kit.make("kvaerno5", atol=1e-10, rtol=1e-8, max_iters=50)
    short = kit.make("kvaerno5", atol=1e-10, rtol=1e-8, max_iters=50, krylov_dim=4)
    y_full, _ = kit.fixed_steps(full, f, u0, 0.0, 0.01, 5)
    y_short, _ = kit.fixed_steps(short, f, u0, 0.0, 0.01, 5)
    assert short.stats["n_newton_failures"] == 0
    torch.testing.assert_close(y_short, y_full, rtol=1e-6, atol=1e-9)


def test_krylov_gradients_by_the_implicit_function_theorem():
    f, u0, _ = heat_equation(5)

    def final(scale, u_init):
        m = IMPLICIT_METHODS["trbdf2"](krylov_dim=5, max_iters=30)
        m.set_error_scale(1e-13, 1e-13)
        m = m.bind(torch.float64, torch.device("cpu"))
        g = lambda t, u: scale * f(t, u) - u**3  # noqa: E731
        y, state, t = u_init, m.init(g, 0.0, u_init), 0.0
        for _ in range(2):
            res = m.step(g, t, y, 2e-3, state)
            y, state, t = res.y, res.state, t + 2e-3
        assert m.stats["n_newton_failures"] == 0
        return y

    scale = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    u_init = u0.clone().requires_grad_(True)
    # nondet_tol: GMRES's least-squares solve rounds differently between backward calls.
    assert torch.autograd.gradcheck(
        final, (scale, u_init), eps=1e-7, atol=1e-6, rtol=1e-4, nondet_tol=1e-10
    )


def test_krylov_is_refused_where_it_does_not_apply():
    with pytest.raises(InvalidArgumentError, match="exact linear solves"):
        IMPLICIT_METHODS["rodas5"](krylov_dim=10)
    with pytest.raises(InvalidArgumentError, match="diagonally implicit"):
        IMPLICIT_METHODS["radauIIA5"](krylov_dim=10)
