"""The spectral Burgers solver against exact solutions: temporal order 4, spectral convergence in
space, conservation of the mean, decay of the energy, and the FNO data set's construction.

Exact solutions by the Cole-Hopf transformation (E. Hopf 1950, Commun. Pure Appl. Math. 3, 201;
J. D. Cole 1951, Q. Appl. Math. 9, 225): if phi > 0 solves the heat equation phi_t = nu phi_xx,
u = -2 nu phi_x / phi solves u_t + u u_x = nu u_xx. With phi = a + sum_m b_m exp(-nu (2 pi m)^2 t)
cos(2 pi m x + theta_m), a > sum |b_m|, u is smooth and 1-periodic; Galilean invariance
(u(x - c t, t) + c is again a solution) adds a mean c that the solver must carry along.
"""

import math

import pytest
import torch

from kutta.errors import InvalidArgumentError
from kutta.pde.burgers import burgers_data, fourier_resample, solve_burgers
from kutta.pde.grf import periodic_grf

NU = 0.1


def cole_hopf(x: torch.Tensor, t: float, drift: float = 0.7) -> torch.Tensor:
    a, modes = 1.0, [(1, 0.5, 0.0), (2, 0.2, 0.4)]
    shifted = x - drift * t
    numerator, denominator = torch.zeros_like(x), torch.full_like(x, a)
    for m, b, theta in modes:
        decay = b * math.exp(-NU * (2 * math.pi * m) ** 2 * t)
        numerator += decay * 2 * math.pi * m * torch.sin(2 * math.pi * m * shifted + theta)
        denominator += decay * torch.cos(2 * math.pi * m * shifted + theta)
    return drift + 2 * NU * numerator / denominator


def grid(n: int) -> torch.Tensor:
    return torch.arange(n, dtype=torch.float64) / n


def error(n: int, max_step: float, t_end: float = 0.5) -> float:
    x = grid(n)
    u = solve_burgers(cole_hopf(x, 0.0), [t_end], NU, max_step=max_step)[0]
    return (u - cole_hopf(x, t_end)).abs().max().item()


def test_cole_hopf_profile_solves_burgers():
    # the test's exact solution checked by finite differences of the PDE itself
    x, t, dx, dt = grid(50), 0.3, 1e-4, 1e-5
    u = cole_hopf(x, t)
    u_t = (cole_hopf(x, t + dt) - cole_hopf(x, t - dt)) / (2 * dt)
    u_x = (cole_hopf(x + dx, t) - cole_hopf(x - dx, t)) / (2 * dx)
    u_xx = (cole_hopf(x + dx, t) - 2 * u + cole_hopf(x - dx, t)) / dx**2
    assert (u_t + u * u_x - NU * u_xx).abs().max() < 1e-5


def test_temporal_order_is_four():
    # n = 128 resolves the profile to rounding; halving the step divides the error by 2^4
    steps = [1 / 25, 1 / 50, 1 / 100, 1 / 200]
    errors = [error(128, h) for h in steps]
    slopes = [math.log2(e0 / e1) for e0, e1 in zip(errors, errors[1:])]
    assert errors[-1] < 5e-9
    assert all(3.5 < s < 4.5 for s in slopes[1:]), (errors, slopes)


def test_spatial_convergence_is_spectral():
    # geometric decay in n (faster than any power) down to the time error of max_step = 1e-3
    errors = [error(n, 1e-3) for n in (16, 24, 32, 48)]
    assert errors[0] > 1e-4 and errors[-1] < 1e-9, errors
    assert all(e1 < e0 / 10 for e0, e1 in zip(errors, errors[1:])), errors


def test_outputs_at_several_times_match_separate_solves():
    x = grid(64)
    both = solve_burgers(cole_hopf(x, 0.0), [0.2, 0.5], NU, max_step=1e-3)
    for i, t in enumerate((0.2, 0.5)):
        assert (both[i] - cole_hopf(x, t)).abs().max() < 1e-9
    assert solve_burgers(cole_hopf(x, 0.0), [0.0], NU)[0].sub(cole_hopf(x, 0.0)).abs().max() < 1e-14


def test_mean_is_conserved_and_energy_decays_for_a_batch():
    u0 = periodic_grf(8, 128, generator=torch.Generator().manual_seed(0))
    times = torch.linspace(0.1, 1.0, 10)
    u = solve_burgers(u0, times, NU)
    assert u.shape == (10, 8, 128)
    torch.testing.assert_close(u.mean(-1), u0.mean(-1).expand(10, 8), atol=1e-13, rtol=0)
    energy = torch.cat([u0[None], u]).pow(2).mean(-1)  # d/dt int u^2/2 = -nu int u_x^2 <= 0
    assert (energy[1:] < energy[:-1]).all()
    # the batch is solved sample by sample: a sample's result does not depend on the others
    torch.testing.assert_close(solve_burgers(u0[3:4], times, NU)[:, 0], u[:, 3], atol=1e-13, rtol=0)


def test_float32_tracks_float64():
    u0 = periodic_grf(4, 64, generator=torch.Generator().manual_seed(1))
    u64 = solve_burgers(u0, [1.0], NU)
    u32 = solve_burgers(u0.float(), [1.0], NU)
    assert u32.dtype == torch.float32
    assert (u32.double() - u64).abs().max() < 1e-5 * u64.abs().max()


def test_fourier_resample_is_exact_for_trigonometric_polynomials():
    def f(x):
        return 1 + torch.sin(2 * math.pi * 3 * x) + 0.5 * torch.cos(2 * math.pi * 7 * x)

    for m, n in [(32, 128), (128, 32), (31, 17), (20, 20)]:
        torch.testing.assert_close(fourier_resample(f(grid(m)), n), f(grid(n)), atol=1e-12, rtol=0)


def test_burgers_data_are_resolved_and_nested():
    # a coarse solver grid agrees with a four times finer one with a quarter of the step
    coarse = burgers_data(
        16, 256, solver_points=128, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    fine = burgers_data(
        16,
        256,
        solver_points=512,
        max_step=2.5e-4,
        generator=torch.Generator().manual_seed(0),
        dtype=torch.float64,
    )
    torch.testing.assert_close(coarse[0], fine[0], atol=0, rtol=0)
    relative = (coarse[1] - fine[1]).norm(dim=1) / fine[1].norm(dim=1)
    assert relative.max() < 1e-6
    # u(1) on a coarser grid is the subsample of u(1) on a finer one (both are samples of the
    # solver's trigonometric polynomial), so one data set serves every resolution
    u1_64 = solve_burgers(fourier_resample(coarse[0], 128), [1.0], NU, max_step=2e-3)[0]
    torch.testing.assert_close(fourier_resample(u1_64, 64), coarse[1][:, ::4], atol=1e-12, rtol=0)


@pytest.mark.parametrize(
    "args, match",
    [
        ((torch.zeros(3), [1.0], NU), "n >= 4"),
        ((torch.zeros(8, dtype=torch.long), [1.0], NU), "floating-point"),
        ((torch.zeros(8), [1.0], -1.0), "viscosity"),
        ((torch.zeros(8), [1.0, 0.5], NU), "increasing"),
    ],
)
def test_bad_arguments_are_rejected(args, match):
    with pytest.raises(InvalidArgumentError, match=match):
        solve_burgers(*args)


def test_agrees_with_kuttas_ode_solver_on_the_method_of_lines():
    # the same semi-discretization (Fourier derivatives, 2/3-dealiased product) integrated by
    # kutta's dopri5 at tight tolerances: an independent check of the ETDRK4 time stepping
    from kutta import odeint

    n = 32
    k = 2 * math.pi * torch.fft.rfftfreq(n, 1.0 / n, dtype=torch.float64)
    k[-1] = 0.0
    keep = torch.arange(n // 2 + 1) < n / 3

    def field(t, u):
        u_hat = torch.fft.rfft(u)
        square = torch.fft.rfft(u**2) * keep
        return torch.fft.irfft(-NU * k**2 * u_hat - 0.5j * k * square, n=n)

    u0 = periodic_grf(3, n, generator=torch.Generator().manual_seed(2))
    times = torch.tensor([0.0, 0.3, 1.0], dtype=torch.float64)
    reference = odeint(field, u0, times, method="dopri5", rtol=1e-11, atol=1e-12)[1:]
    torch.testing.assert_close(solve_burgers(u0, times[1:], NU), reference, atol=1e-9, rtol=0)
