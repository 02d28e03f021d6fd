"""Linear and rectilinear control paths.

Both are causal: X on [t_0, t_k] depends only on observations at times <= t_k (with
``fill="forward"`` when values are missing). Rectilinear paths are also usable online
between observations: the data is held until the next observation arrives.
"""

from __future__ import annotations

import torch

from kutta.errors import InvalidArgumentError
from kutta.interpolate._checks import check_times, check_values, hide_padding
from kutta.interpolate.base import ControlPath
from kutta.interpolate.prepare import fill_missing, forward_fill


def linear_coeffs(
    values: torch.Tensor, times: torch.Tensor, *, fill: str = "linear"
) -> torch.Tensor:
    """Knots of the linear interpolation, (B, T, C): ``values`` with NaNs filled.

    ``fill="linear"`` (torchcde's choice) interpolates across missing values;
    ``fill="forward"`` holds the last observation, which keeps the path causal.
    Values in trailing time padding are ignored.

    Example:
        >>> x = torch.tensor([[[0.0], [float("nan")], [2.0]]])
        >>> linear_coeffs(x, torch.arange(3.0)).flatten().tolist()
        [0.0, 1.0, 2.0]
    """
    check_values(values)
    _, lengths = check_times(times, values.shape[0], values.shape[1], values)
    return fill_missing(hide_padding(values, lengths), times, fill)


def _linear_pieces(knots: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    widths = (grid[..., 1:] - grid[..., :-1]).unsqueeze(-1)
    widths = widths if widths.ndim == 3 else widths.unsqueeze(0)
    rises = knots[:, 1:] - knots[:, :-1]
    # Zero-width pieces only occur in padding; give them slope 0 rather than 0/0.
    slopes = torch.where(widths > 0, rises / torch.where(widths > 0, widths, 1.0), 0.0)
    return torch.stack([knots[:, :-1], slopes], dim=2)


def _check_knots(coeffs: torch.Tensor) -> None:
    check_values(coeffs, "coeffs")
    if torch.isnan(coeffs).any():
        raise InvalidArgumentError(
            "coeffs contain NaN; build them with linear_coeffs / rectilinear_coeffs, which fill "
            "missing values"
        )


class LinearInterpolation(ControlPath):
    """Piecewise-linear path through the knots ``coeffs`` at ``times``.

    Example:
        >>> times = torch.tensor([0.0, 1.0, 3.0])
        >>> path = LinearInterpolation.from_values(torch.tensor([[[0.0], [2.0], [2.0]]]), times)
        >>> path.evaluate(0.5).tolist(), path.derivative(2.0).tolist()
        ([[1.0]], [[0.0]])
    """

    def __init__(self, coeffs: torch.Tensor, times: torch.Tensor):
        _check_knots(coeffs)
        grid, lengths = check_times(times, coeffs.shape[0], coeffs.shape[1], coeffs)
        given = grid if times.ndim == 2 else times.to(coeffs.dtype)
        super().__init__(_linear_pieces(coeffs, grid), given, lengths)

    @classmethod
    def from_values(
        cls, values: torch.Tensor, times: torch.Tensor, *, fill: str = "linear"
    ) -> LinearInterpolation:
        """Build the path from raw observations (NaN = missing); see :func:`linear_coeffs`."""
        return cls(linear_coeffs(values, times, fill=fill), times)


def rectilinear_coeffs(values: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
    """Knots of the rectilinear path, (B, 2T - 1, C + 1), with time as channel 0.

    Between observations k and k + 1 the path first moves time from t_k to t_{k+1} with
    the values held at x_k, then moves the values to x_{k+1} at fixed time. Missing values
    are forward filled (leading ones take the first observation; see :func:`forward_fill`).
    The path is parametrised by the knot index s in [0, 2T - 2]; observation k is at s = 2k.

    Example:
        >>> x = torch.tensor([[[1.0], [5.0]]])
        >>> rectilinear_coeffs(x, torch.tensor([0.0, 2.0]))[0].tolist()
        [[0.0, 1.0], [2.0, 1.0], [2.0, 5.0]]
    """
    check_values(values)
    grid, lengths = check_times(times, values.shape[0], values.shape[1], values)
    filled = forward_fill(hide_padding(values, lengths))
    held = filled.repeat_interleave(2, dim=1)[:, :-1]
    clock = grid.repeat_interleave(2, dim=1)[:, 1:]
    return torch.cat([clock.unsqueeze(-1), held], dim=-1)


class RectilinearInterpolation(ControlPath):
    """Rectilinear path through the knots ``coeffs`` from :func:`rectilinear_coeffs`.

    Its parameter is the knot index s (not time): solve the CDE over ``path.interval``
    = [0, 2T - 2] and read observation k's output at ``path.observation_parameters[k]`` = 2k.
    Causal: X(s) for s <= 2k depends only on observations 0..k (and the time t_k).

    Example:
        >>> x = torch.tensor([[[1.0], [5.0]]])
        >>> path = RectilinearInterpolation.from_values(x, torch.tensor([0.0, 2.0]))
        >>> path.evaluate(1.5).tolist()
        [[2.0, 3.0]]
    """

    def __init__(self, coeffs: torch.Tensor):
        _check_knots(coeffs)
        knots = coeffs.shape[1]
        if knots % 2 == 0:
            raise InvalidArgumentError(
                f"rectilinear coeffs have 2T - 1 knots (an odd number), got {knots}"
            )
        grid = torch.arange(knots, dtype=coeffs.dtype, device=coeffs.device)
        lengths = torch.full((coeffs.shape[0],), knots, device=coeffs.device)
        super().__init__(_linear_pieces(coeffs, grid), grid, lengths)

    @property
    def observation_parameters(self) -> torch.Tensor:
        """The parameter s of each observation: 0, 2, ..., 2T - 2."""
        return self.grid_points[::2]

    @classmethod
    def from_values(cls, values: torch.Tensor, times: torch.Tensor) -> RectilinearInterpolation:
        """Build the path from raw observations (NaN = missing); see :func:`rectilinear_coeffs`."""
        return cls(rectilinear_coeffs(values, times))
