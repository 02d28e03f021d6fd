"""Control paths X(t) for Neural CDEs, built from irregular observations (NaN = missing).

Each path has ``evaluate(t)`` and ``derivative(t)`` (t a scalar or one time per series),
``grid_points`` (the knots, for a solver's ``jump_t``/``step_t``) and ``interval``.
Coefficients are computed by separate functions so they can be stored with a dataset.

Example:
    >>> import torch
    >>> from kutta.interpolate import NaturalCubicSpline, natural_cubic_coeffs
    >>> times = torch.linspace(0, 1, 5)
    >>> values = torch.randn(8, 5, 3)
    >>> path = NaturalCubicSpline(natural_cubic_coeffs(values, times), times)
    >>> path.derivative(torch.tensor(0.3)).shape
    torch.Size([8, 3])
"""

from kutta.interpolate.base import ControlPath
from kutta.interpolate.cubic import (
    HermiteCubic,
    NaturalCubicSpline,
    hermite_cubic_coeffs,
    natural_cubic_coeffs,
)
from kutta.interpolate.linear import (
    LinearInterpolation,
    RectilinearInterpolation,
    linear_coeffs,
    rectilinear_coeffs,
)
from kutta.interpolate.prepare import fill_missing, forward_fill, linear_fill, with_time_channel

__all__ = [
    "ControlPath",
    "HermiteCubic",
    "LinearInterpolation",
    "NaturalCubicSpline",
    "RectilinearInterpolation",
    "fill_missing",
    "forward_fill",
    "hermite_cubic_coeffs",
    "linear_coeffs",
    "linear_fill",
    "natural_cubic_coeffs",
    "rectilinear_coeffs",
    "with_time_channel",
]
