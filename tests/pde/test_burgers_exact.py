"""The Cole-Hopf solution of Burgers' equation: it solves the PDE, meets the initial and
boundary conditions, agrees with independent adaptive quadrature, and reproduces the published
steepest slope (Basdevant et al. 1986)."""

import numpy as np
import pytest
from scipy import integrate, optimize

from kutta.errors import InvalidArgumentError
from kutta.pde.burgers_exact import BURGERS_NU, burgers_exact, raissi_grid


def test_satisfies_the_pde_by_finite_differences():
    rng = np.random.default_rng(0)
    x, t = rng.uniform(-0.95, 0.95, 60), rng.uniform(0.05, 0.99, 60)
    h, k = 1e-4, 1e-4
    u = burgers_exact(x, t)
    u_t = (burgers_exact(x, t + k) - burgers_exact(x, t - k)) / (2 * k)
    u_x = (burgers_exact(x + h, t) - burgers_exact(x - h, t)) / (2 * h)
    u_xx = (burgers_exact(x + h, t) - 2 * u + burgers_exact(x - h, t)) / h**2
    residual = u_t + u * u_x - BURGERS_NU * u_xx
    scale = np.abs(u_t) + np.abs(u * u_x) + np.abs(BURGERS_NU * u_xx)
    # central differences err by O(h**2) times third/fourth derivatives; the shock at x = 0 makes
    # those large, so the bound is relative to the size of the terms
    assert np.max(np.abs(residual) / scale) < 1e-4
    # and a wrong viscosity leaves a residual that is not small
    wrong = u_t + u * u_x - 2 * BURGERS_NU * u_xx
    assert np.max(np.abs(wrong) / scale) > 1e-2


def test_initial_and_boundary_conditions():
    x = np.linspace(-1, 1, 101)
    np.testing.assert_array_equal(burgers_exact(x, 0.0), -np.sin(np.pi * x))
    # just after t = 0 the quadrature takes over and still matches the initial condition
    np.testing.assert_allclose(burgers_exact(x, 1e-9), -np.sin(np.pi * x), atol=1e-6)
    t = np.linspace(0.01, 0.99, 50)
    assert np.abs(burgers_exact(-1.0, t)).max() < 1e-12
    assert np.abs(burgers_exact(1.0, t)).max() < 1e-12


def _adaptive_quadrature(x: float, t: float) -> float:
    """Cole-Hopf's two integrals by scipy.integrate.quad in s (no Gauss-Hermite rule)."""

    def log_kernel(s):
        return -np.cos(np.pi * (x - s)) / (2 * np.pi * BURGERS_NU) - s * s / (4 * BURGERS_NU * t)

    shift = log_kernel(np.linspace(-3, 3, 20001)).max()
    pieces = [(-4, -1), (-1, 0), (0, 1), (1, 4)]  # the kernel is negligible beyond |s| = 4

    def integral(f):
        return sum(integrate.quad(f, a, b, limit=500, epsabs=0, epsrel=1e-13)[0] for a, b in pieces)

    numerator = integral(lambda s: np.sin(np.pi * (x - s)) * np.exp(log_kernel(s) - shift))
    return -numerator / integral(lambda s: np.exp(log_kernel(s) - shift))


@pytest.mark.filterwarnings("ignore::scipy.integrate.IntegrationWarning")
@pytest.mark.parametrize(
    "x, t", [(0.01, 0.5), (-0.003, 0.51), (0.5, 0.25), (-0.8, 0.9), (0.001, 0.99), (0.3, 0.01)]
)
def test_agrees_with_adaptive_quadrature(x, t):
    assert burgers_exact(x, t) == pytest.approx(_adaptive_quadrature(x, t), abs=1e-13)


def test_gauss_hermite_rule_has_converged():
    x, t = raissi_grid()
    grid_x, grid_t = np.meshgrid(x, t)
    coarse = burgers_exact(grid_x, grid_t, num_nodes=200)
    fine = burgers_exact(grid_x, grid_t, num_nodes=600)
    assert np.abs(coarse - fine).max() < 1e-13


def test_steepest_slope_matches_basdevant_et_al():
    # Basdevant et al. (1986), "Spectral and finite difference solutions of the Burgers
    # equation", Computers & Fluids 14(1), 23-41: max |du/dx| = 152.00516, reached at x = 0,
    # t = 1.6037 / pi (the value every Burgers solver of this setup is checked against).
    h = 1e-6

    def slope(t):
        return (burgers_exact(h, t) - burgers_exact(-h, t)) / (2 * h)

    best = optimize.minimize_scalar(
        lambda t: slope(t), bounds=(0.45, 0.55), method="bounded", options={"xatol": 1e-10}
    )
    assert -best.fun == pytest.approx(152.00516, abs=2e-5)
    assert best.x * np.pi == pytest.approx(1.6037, abs=1e-4)


def test_shapes_broadcast_and_bad_input_is_rejected():
    x, t = raissi_grid()
    assert burgers_exact(x[:, None], t[None, :]).shape == (256, 100)
    with pytest.raises(InvalidArgumentError, match="t >= 0"):
        burgers_exact(0.0, -0.1)
    with pytest.raises(InvalidArgumentError, match="nu"):
        burgers_exact(0.0, 0.1, nu=0.0)
