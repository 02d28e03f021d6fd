"""Gaussian random fields: the sampled spectra and variances match sigma^2 (-Laplacian + tau^2)^-alpha.

Statistical tests with a fixed seed. A normalized squared coefficient |c_k|^2 / lambda_k has mean 1
and variance 1 (complex Fourier modes: exponential) or 2 (real modes: chi-square with one degree
of freedom), so its mean over N samples is within 5 standard deviations, 5 sqrt(var / N), of 1.
"""

import math

import pytest
import torch

from kutta.errors import InvalidArgumentError
from kutta.pde.grf import grf_eigenvalues, neumann_grf_2d, periodic_grf

SIGMAS = 5.0


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def eigenvalues(k_squared: torch.Tensor, alpha: float, tau: float, sigma: float) -> torch.Tensor:
    # the formula written out again, independent of the module's helper
    return sigma**2 / (k_squared + tau**2) ** alpha


def test_eigenvalues_formula():
    k = torch.tensor([0.0, 1.0, 3.0], dtype=torch.float64)
    got = grf_eigenvalues((2 * math.pi * k) ** 2, alpha=2.0, tau=5.0, sigma=25.0)
    torch.testing.assert_close(got, 625.0 / (4 * math.pi**2 * k**2 + 25.0) ** 2)


def test_periodic_1d_spectrum_matches_the_covariance_operator():
    n, num, alpha, tau, sigma = 64, 4000, 2.0, 5.0, 25.0
    u = periodic_grf(num, n, alpha=alpha, tau=tau, sigma=sigma, generator=seeded())
    assert u.shape == (num, n) and u.dtype == torch.float64
    c = torch.fft.rfft(u) / n  # u(x_j) = sum_k c_k exp(2 pi i k x_j)
    k = torch.arange(n // 2 + 1, dtype=torch.float64)
    lam = eigenvalues((2 * math.pi * k) ** 2, alpha, tau, sigma)
    ratio = (c.abs() ** 2 / lam).mean(0)
    real_mode = (k == 0) | (k == n // 2)
    var = torch.where(real_mode, 2.0, 1.0)
    assert ((ratio - 1).abs() <= SIGMAS * (var / num).sqrt()).all(), ratio
    # real and imaginary parts of the complex modes carry half the variance each
    half = (c.real[:, 1:-1] ** 2 / lam[1:-1]).mean(0)
    assert ((half - 0.5).abs() <= SIGMAS * math.sqrt(0.5 / num)).all()
    # real modes are real (the field is real)
    assert c.imag[:, 0].abs().max() < 1e-9 and c.imag[:, -1].abs().max() < 1e-9


def lag_covariance_and_its_variance(lam: torch.Tensor, n: int, lag: int) -> tuple[float, float]:
    """E[u(x) u(x + lag/n)] and the variance of its within-sample average mean_j u_j u_(j+lag)."""
    k = torch.arange(len(lam), dtype=torch.float64)
    cos = torch.cos(2 * math.pi * k * lag / n)
    pair = torch.ones_like(k, dtype=torch.bool)
    pair[0] = pair[-1] = False  # k = 0 and n/2 appear once, the others as the pair (k, -k)
    mean = torch.where(pair, 2 * lam * cos, lam * cos).sum()
    variance = torch.where(pair, 4 * lam**2 * cos**2, 2 * lam**2 * cos**2).sum()
    return mean.item(), variance.item()


@pytest.mark.parametrize("lag", [0, 1, 5])
def test_periodic_1d_covariance_at_lags(lag):
    n, num, alpha, tau, sigma = 32, 4000, 1.5, 3.0, 2.0
    u = periodic_grf(num, n, alpha=alpha, tau=tau, sigma=sigma, generator=seeded(1))
    k = torch.arange(n // 2 + 1, dtype=torch.float64)
    mean, variance = lag_covariance_and_its_variance(
        eigenvalues((2 * math.pi * k) ** 2, alpha, tau, sigma), n, lag
    )
    estimate = (u * torch.roll(u, -lag, dims=1)).mean().item()
    assert abs(estimate - mean) <= SIGMAS * math.sqrt(variance / num)


def test_periodic_2d_spectrum_matches_the_covariance_operator():
    n, num, alpha, tau, sigma = 16, 3000, 2.5, 7.0, 7.0**1.5
    u = periodic_grf(num, (n, n), alpha=alpha, tau=tau, sigma=sigma, generator=seeded(2))
    assert u.shape == (num, n, n)
    c = torch.fft.fft2(u) / n**2
    k = torch.fft.fftfreq(n, 1.0 / n).to(torch.float64)
    lam = eigenvalues(4 * math.pi**2 * (k[:, None] ** 2 + k**2), alpha, tau, sigma)
    ratio = (c.abs() ** 2 / lam).mean(0)
    # modes equal to their own conjugate partner (k = -k mod n in both axes) are real
    self_paired = ((k == 0) | (k == -n // 2))[:, None] & ((k == 0) | (k == -n // 2))
    var = torch.where(self_paired, 2.0, 1.0)
    assert ((ratio - 1).abs() <= SIGMAS * (var / num).sqrt()).all()


def test_neumann_2d_cosine_coefficients_and_pointwise_variance():
    n, num, alpha, tau, sigma = 9, 4000, 2.0, 3.0, 1.0
    z = neumann_grf_2d(num, n, alpha=alpha, tau=tau, sigma=sigma, generator=seeded(3))
    assert z.shape == (num, n, n)
    # the orthonormal Neumann eigenfunctions phi_0 = 1, phi_k = sqrt(2) cos(pi k x) on x_j = j/(n-1)
    j = torch.arange(n, dtype=torch.float64)
    phi = torch.cos(math.pi * j[:, None] * j / (n - 1))
    phi[:, 1:] *= math.sqrt(2.0)
    lam = eigenvalues(math.pi**2 * (j[:, None] ** 2 + j**2), alpha, tau, sigma)
    # z = Phi C Phi^T with C_k1k2 ~ N(0, lam): solve for C with the explicit matrix
    inverse = torch.linalg.inv(phi)
    coefficients = inverse @ z @ inverse.T
    ratio = (coefficients**2 / lam).mean(0)
    assert ((ratio - 1).abs() <= SIGMAS * math.sqrt(2.0 / num)).all()
    # pointwise variance sum_k lam_k phi_k1(x)^2 phi_k2(y)^2: larger at the corner (Neumann)
    for a, b in [(0, 0), (n // 2, n // 2), (0, n // 2)]:
        expected = (lam * phi[a][:, None] ** 2 * phi[b] ** 2).sum()
        estimate = (z[:, a, b] ** 2).mean()
        assert abs(estimate - expected) <= SIGMAS * math.sqrt(2.0 / num) * expected


def test_samples_are_seeded_and_cast():
    a = periodic_grf(3, 16, generator=seeded(5), dtype=torch.float32)
    b = periodic_grf(3, 16, generator=seeded(5), dtype=torch.float32)
    c = periodic_grf(3, 16, generator=seeded(6), dtype=torch.float32)
    assert a.dtype == torch.float32 and torch.equal(a, b) and not torch.equal(a, c)
    d = neumann_grf_2d(2, 5, generator=seeded(5))
    assert torch.equal(d, neumann_grf_2d(2, 5, generator=seeded(5)))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_samples=0, shape=8), "num_samples"),
        (dict(num_samples=1, shape=8, tau=0.0), "tau"),
        (dict(num_samples=1, shape=8, alpha=-1.0), "alpha"),
        (dict(num_samples=1, shape=(4, 4, 4)), "1-D and 2-D"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, match):
    with pytest.raises(InvalidArgumentError, match=match):
        periodic_grf(**kwargs)


def test_zero_mean_drops_only_the_constant_mode():
    full = periodic_grf(5, 32, generator=seeded(7))
    centred = periodic_grf(5, 32, zero_mean=True, generator=seeded(7))
    assert centred.mean(-1).abs().max() < 1e-14
    torch.testing.assert_close(centred, full - full.mean(-1, keepdim=True))
    centred_2d = periodic_grf(2, (8, 8), zero_mean=True, generator=seeded(7))
    assert centred_2d.mean((-2, -1)).abs().max() < 1e-14
