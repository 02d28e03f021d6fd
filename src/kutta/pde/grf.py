"""Gaussian random fields N(0, sigma^2 (-Laplacian + tau^2 I)^-alpha) on the unit interval/square.

The covariance operator is diagonal in the Laplacian's eigenfunctions, so a sample is a sum of
eigenfunctions with independent Gaussian coefficients of variance ``sigma^2 (lambda + tau^2)^-alpha``
(lambda the Laplacian's eigenvalue). Periodic fields use Fourier modes (FFT); Neumann fields use
cosines (a type-I DCT on the grid x_j = j / (n - 1), boundary included). The draws come from a
``torch.Generator``, so a seed fixes the sample.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft
import torch

from kutta.errors import InvalidArgumentError


def _check(num_samples: int, size: int, alpha: float, tau: float, sigma: float) -> None:
    if num_samples < 1 or size < 2:
        raise InvalidArgumentError(
            f"need num_samples >= 1 and size >= 2, got {num_samples}, {size}"
        )
    if alpha <= 0 or tau < 0 or sigma < 0:
        raise InvalidArgumentError(
            f"need alpha > 0, tau >= 0, sigma >= 0, got alpha={alpha}, tau={tau}, sigma={sigma}"
        )
    if tau == 0:
        # the constant eigenfunction has eigenvalue 0: (0 + tau^2)^-alpha is infinite
        raise InvalidArgumentError(
            "tau must be > 0 (tau = 0 gives the constant mode infinite variance)"
        )


def grf_eigenvalues(
    wavenumbers_squared: torch.Tensor, alpha: float, tau: float, sigma: float
) -> torch.Tensor:
    """Variances ``sigma^2 (k^2 + tau^2)^-alpha`` of the eigenfunction coefficients.

    ``wavenumbers_squared`` are the Laplacian's eigenvalues, e.g. ``(2 pi k)^2`` for Fourier mode k.

    Example:
        >>> grf_eigenvalues(torch.tensor([0.0]), alpha=2.0, tau=5.0, sigma=25.0)
        tensor([1.])
    """
    return sigma**2 * (wavenumbers_squared + tau**2) ** (-alpha)


def periodic_grf(
    num_samples: int,
    shape: int | tuple[int, ...],
    *,
    alpha: float = 2.0,
    tau: float = 5.0,
    sigma: float = 25.0,
    zero_mean: bool = False,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Samples of a periodic GRF on the grid ``x_j = j / n`` of the unit interval or square.

    ``shape`` is ``n`` (1-D) or ``(n1, n2)`` (2-D). The sample is the field's trigonometric
    interpolant: every Fourier mode the grid resolves has exactly the variance of the formula,
    and the coefficients of k and -k are conjugate, so the field is real. Built as filtered white
    noise: ``irfft(rfft(xi) * sqrt(eigenvalue)) * sqrt(n1 * n2 ...)`` with ``xi`` iid N(0, 1).
    ``zero_mean`` drops the constant mode (the field then has mean exactly 0), as Li et al.'s
    generator of the Burgers initial conditions does (alpha 2, tau 5, sigma 25: the defaults).

    Returns a CPU tensor of shape ``(num_samples, *shape)``.

    Example:
        >>> u0 = periodic_grf(4, 64, generator=torch.Generator().manual_seed(0))
        >>> tuple(u0.shape)
        (4, 64)
    """
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    if len(shape) not in (1, 2):
        raise InvalidArgumentError(f"periodic_grf supports 1-D and 2-D grids, got shape {shape}")
    _check(num_samples, min(shape), alpha, tau, sigma)
    dims = tuple(range(-len(shape), 0))
    noise = torch.randn(num_samples, *shape, generator=generator, dtype=torch.float64)
    k_squared = torch.zeros(())
    for axis, n in enumerate(shape):
        last = axis == len(shape) - 1
        k = torch.fft.rfftfreq(n, 1.0 / n) if last else torch.fft.fftfreq(n, 1.0 / n)
        k = k.to(torch.float64).reshape([-1 if a == axis else 1 for a in range(len(shape))])
        k_squared = k_squared + (2 * math.pi * k) ** 2
    scale = grf_eigenvalues(k_squared, alpha, tau, sigma).sqrt() * math.sqrt(math.prod(shape))
    if zero_mean:
        scale = torch.where(k_squared == 0, 0.0, scale)
    field = torch.fft.irfftn(torch.fft.rfftn(noise, dim=dims) * scale, s=shape, dim=dims)
    return field.to(dtype)


def neumann_grf_2d(
    num_samples: int,
    size: int,
    *,
    alpha: float = 2.0,
    tau: float = 3.0,
    sigma: float = 1.0,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Samples of a GRF on the unit square with the Neumann Laplacian, on a ``size x size`` grid.

    The grid is ``x_j = j / (size - 1)`` (boundary included). Eigenfunctions are
    ``phi_k1(x) phi_k2(y)`` with ``phi_0 = 1``, ``phi_k = sqrt(2) cos(pi k x)`` (orthonormal on
    (0, 1)) and Laplacian eigenvalue ``pi^2 (k1^2 + k2^2)``, for ``k1, k2 < size`` (all the cosines
    the grid resolves). The sum over cosines is a type-I DCT (scipy.fft). Defaults: the Darcy
    coefficient field of Li et al. (2021), N(0, (-Laplacian + 9 I)^-2).

    Returns a CPU tensor of shape ``(num_samples, size, size)``.

    Example:
        >>> z = neumann_grf_2d(2, 17, generator=torch.Generator().manual_seed(0))
        >>> tuple(z.shape)
        (2, 17, 17)
    """
    _check(num_samples, size, alpha, tau, sigma)
    k = torch.arange(size, dtype=torch.float64)
    eigenvalues = grf_eigenvalues(math.pi**2 * (k[:, None] ** 2 + k**2), alpha, tau, sigma)
    normalization = torch.where(k == 0, 1.0, math.sqrt(2.0))
    noise = torch.randn(num_samples, size, size, generator=generator, dtype=torch.float64)
    coefficients = noise * eigenvalues.sqrt() * normalization[:, None] * normalization
    # DCT-I computes c_0 + (-1)^j c_last + 2 sum_interior c_k cos(pi k j / (size - 1)):
    # halving the interior coefficients makes it the plain cosine sum.
    weights = torch.where((k == 0) | (k == size - 1), 1.0, 0.5)
    halved = (coefficients * weights[:, None] * weights).numpy()
    field = scipy.fft.dctn(halved, type=1, axes=(1, 2))
    return torch.from_numpy(np.ascontiguousarray(field)).to(dtype)
