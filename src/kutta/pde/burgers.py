"""1-D viscous Burgers u_t + (u^2 / 2)_x = nu u_xx, periodic on (0, 1): a batched spectral solver
and the FNO data set of Li et al. (2021) (u0 from a Gaussian random field -> u(., 1)).

Space: Fourier pseudo-spectral on the grid x_j = j / n, the product u^2 dealiased by the 2/3 rule.
Time: ETDRK4 (Cox & Matthews 2002, "Exponential time differencing for stiff systems", J. Comput.
Phys. 176), which integrates the stiff viscous term exactly and the nonlinearity with a fourth-order
Runge-Kutta scheme; its phi-function coefficients are evaluated by the contour integrals of Kassam &
Trefethen (2005, SIAM J. Sci. Comput. 26), stable where the direct formulas cancel catastrophically.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from kutta.errors import InvalidArgumentError
from kutta.pde.grf import periodic_grf

_CONTOUR_POINTS = 32


def _wavenumbers(n: int, device: torch.device) -> torch.Tensor:
    """Angular wavenumbers 2 pi k of ``rfft`` on n points (the Nyquist mode's derivative is 0)."""
    k = torch.fft.rfftfreq(n, 1.0 / n, dtype=torch.float64, device=device)
    if n % 2 == 0:
        k[-1] = 0.0
    return 2 * math.pi * k


def _etdrk4_coefficients(
    linear: torch.Tensor, h: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """exp(hL), exp(hL/2) and the ETDRK4 weights Q, f1, f2, f3 for a real diagonal L (float64)."""
    roots = torch.exp(
        2j
        * math.pi
        * (torch.arange(_CONTOUR_POINTS, dtype=torch.float64, device=linear.device) + 0.5)
        / _CONTOUR_POINTS
    )
    z = (h * linear)[:, None].to(torch.complex128) + roots  # a circle of radius 1 around each hL
    ez = torch.exp(z)

    def mean(values: torch.Tensor) -> torch.Tensor:
        return h * values.mean(dim=-1).real

    q = mean((torch.exp(z / 2) - 1) / z)
    f1 = mean((-4 - z + ez * (4 - 3 * z + z**2)) / z**3)
    f2 = mean((2 + z + ez * (z - 2)) / z**3)
    f3 = mean((-4 - 3 * z - z**2 + ez * (4 - z)) / z**3)
    return torch.exp(h * linear), torch.exp(h * linear / 2), q, f1, f2, f3


def solve_burgers(
    u0: torch.Tensor,
    times: Sequence[float] | torch.Tensor,
    viscosity: float,
    *,
    max_step: float = 1e-3,
) -> torch.Tensor:
    """Solve viscous Burgers from ``u0`` (shape ``(..., n)`` on x_j = j / n) to each of ``times``.

    Between consecutive output times (the first measured from t = 0) the solver takes equal steps
    no longer than ``max_step``. Computes in ``u0``'s dtype (float64 for references) and device.

    Returns shape ``(len(times), ..., n)``.

    Example:
        >>> x = torch.arange(64, dtype=torch.float64) / 64
        >>> u = solve_burgers(torch.sin(2 * math.pi * x), [0.5, 1.0], viscosity=0.1)
        >>> tuple(u.shape)
        (2, 64)
    """
    times = torch.as_tensor(times, dtype=torch.float64).reshape(-1).tolist()
    n = u0.shape[-1] if u0.ndim else 0
    if n < 4:
        raise InvalidArgumentError(
            f"u0 must have shape (..., n) with n >= 4, got {tuple(u0.shape)}"
        )
    if not u0.is_floating_point():
        raise InvalidArgumentError(f"u0 must be a floating-point tensor, got {u0.dtype}")
    if viscosity <= 0 or max_step <= 0:
        raise InvalidArgumentError(
            f"need viscosity > 0 and max_step > 0, got {viscosity}, {max_step}"
        )
    if not times or times[0] < 0 or any(b <= a for a, b in zip(times, times[1:])):
        raise InvalidArgumentError(f"times must be non-negative and increasing, got {times}")

    k = _wavenumbers(n, u0.device)
    linear = -viscosity * k**2
    # 2/3 rule: a product of two fields with modes |k| <= n/3 aliases only onto discarded modes
    keep = torch.fft.rfftfreq(n, 1.0 / n, device=u0.device) < n / 3
    derivative = -0.5j * (k * keep).to(u0.dtype)

    def nonlinear(v: torch.Tensor) -> torch.Tensor:
        # -(u^2 / 2)_x in Fourier space
        return derivative * torch.fft.rfft(torch.fft.irfft(v, n=n) ** 2)

    v = torch.fft.rfft(u0)
    outputs, t = [], 0.0
    for t_out in times:
        steps = math.ceil((t_out - t) / max_step - 1e-12)
        if steps > 0:
            coefficients = _etdrk4_coefficients(linear, (t_out - t) / steps)
            e, e2, q, f1, f2, f3 = (c.to(u0.dtype) for c in coefficients)
            for _ in range(steps):
                nv = nonlinear(v)
                a = e2 * v + q * nv
                na = nonlinear(a)
                b = e2 * v + q * na
                nb = nonlinear(b)
                c = e2 * a + q * (2 * nb - nv)
                v = e * v + f1 * nv + 2 * f2 * (na + nb) + f3 * nonlinear(c)
        t = t_out
        outputs.append(torch.fft.irfft(v, n=n))
    return torch.stack(outputs)


def fourier_resample(u: torch.Tensor, n: int) -> torch.Tensor:
    """Values at ``x_j = j / n`` of the trigonometric interpolant of periodic samples ``u`` (..., m).

    Coarsening drops the modes the new grid cannot hold (and the Nyquist mode); refining pads zeros.

    Example:
        >>> u = torch.cos(2 * math.pi * torch.arange(8, dtype=torch.float64) / 8)
        >>> torch.allclose(fourier_resample(u, 4), torch.tensor([1.0, 0.0, -1.0, 0.0], dtype=torch.float64), atol=1e-12)
        True
    """
    m = u.shape[-1]
    spectrum = torch.fft.rfft(u)
    modes = min(m, n)
    kept = (modes + 1) // 2  # modes strictly below the Nyquist frequency of the smaller grid
    resized = spectrum.new_zeros(*spectrum.shape[:-1], n // 2 + 1)
    resized[..., :kept] = spectrum[..., :kept]
    return torch.fft.irfft(resized, n=n) * (n / m)


def burgers_data(
    num_samples: int,
    resolution: int,
    *,
    viscosity: float = 0.1,
    t_end: float = 1.0,
    solver_points: int = 128,
    max_step: float = 2e-3,
    alpha: float = 2.0,
    tau: float = 5.0,
    sigma: float = 25.0,
    zero_mean: bool = True,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairs ``(u0, u(., t_end))`` of Li et al.'s Burgers benchmark on ``resolution`` points.

    u0 is a periodic GRF (alpha, tau, sigma; without its constant mode, as in Li et al.'s
    generator, unless ``zero_mean=False``) sampled at ``resolution`` points; the solve runs on
    ``solver_points`` (its trigonometric interpolant; the GRF's modes beyond those carry relative
    amplitude below 1e-4 and viscosity removes them at once) in float64, and the solution is
    interpolated spectrally back to ``resolution``. The defaults agree with a solve on 512 points
    with a quarter of the step to a relative error below 1e-7 (tests/pde/test_burgers.py). For coarser data, subsample (``[..., ::r]``)
    a finer set, as the paper does.

    Returns two tensors of shape ``(num_samples, resolution)``.

    Example:
        >>> u0, u1 = burgers_data(2, 32, solver_points=64, generator=torch.Generator().manual_seed(0))
        >>> tuple(u1.shape)
        (2, 32)
    """
    if solver_points < 8 or resolution < 4:
        raise InvalidArgumentError(
            f"need resolution >= 4 and solver_points >= 8, got {resolution}, {solver_points}"
        )
    u0 = periodic_grf(
        num_samples,
        resolution,
        alpha=alpha,
        tau=tau,
        sigma=sigma,
        zero_mean=zero_mean,
        generator=generator,
    )
    u_end = solve_burgers(
        fourier_resample(u0, solver_points), [t_end], viscosity, max_step=max_step
    )
    return u0.to(dtype), fourier_resample(u_end[0], resolution).to(dtype)
