"""Cubic control paths: Hermite cubic with backward differences, and the natural cubic spline.

Both store their coefficients as (B, T - 1, 4, C): on piece i,
X(t) = sum_k coeffs[:, i, k] * (t - t_i) ** k. Store these in a dataset and rebuild the
path each batch with ``HermiteCubic(coeffs, times)`` / ``NaturalCubicSpline(coeffs, times)``.
"""

from __future__ import annotations

import torch

from kutta.errors import InvalidArgumentError
from kutta.interpolate._checks import check_times, check_values, hide_padding
from kutta.interpolate.base import ControlPath
from kutta.interpolate.linear import linear_coeffs
from kutta.interpolate.prepare import forward_fill


def _widths_and_slopes(
    knots: torch.Tensor, grid: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Piece widths (B, T-1, 1), a zero-safe copy of them, and the secant slopes (B, T-1, C)."""
    widths = (grid[:, 1:] - grid[:, :-1]).unsqueeze(-1)
    # Zero-width pieces only occur in trailing padding and are never evaluated.
    safe = torch.where(widths > 0, widths, 1.0)
    slopes = torch.where(widths > 0, (knots[:, 1:] - knots[:, :-1]) / safe, 0.0)
    return widths, safe, slopes


def hermite_cubic_coeffs(
    values: torch.Tensor, times: torch.Tensor, *, fill: str = "forward"
) -> torch.Tensor:
    """Coefficients (B, T - 1, 4, C) of the Hermite cubic with backward differences.

    On [t_i, t_{i+1}] the cubic matches x_i and x_{i+1}, with slope at t_i equal to the
    backward difference (x_i - x_{i-1}) / (t_i - t_{i-1}) (the first piece uses its own
    secant) and slope at t_{i+1} equal to (x_{i+1} - x_i) / (t_{i+1} - t_i). The path is
    C^1, reproduces linear functions exactly, and on [t_0, t_k] depends only on
    observations up to t_k. Missing values are forward filled by default to keep that
    causality (torchcde fills them linearly, which is not causal; ``fill="linear"`` does that).

    Example:
        >>> x = torch.tensor([[[0.0], [1.0], [3.0]]])
        >>> hermite_cubic_coeffs(x, torch.arange(3.0))[0, 1, :, 0].tolist()
        [1.0, 1.0, 2.0, -1.0]
    """
    knots = linear_coeffs(values, times, fill=fill)
    grid, _ = check_times(times, values.shape[0], values.shape[1], values)
    _, safe, slopes = _widths_and_slopes(knots, grid)
    start_slopes = torch.cat([slopes[:, :1], slopes[:, :-1]], dim=1)
    change = slopes - start_slopes
    return torch.stack([knots[:, :-1], start_slopes, 2 * change / safe, -change / safe**2], dim=2)


def _solve_tridiagonal(
    lower: torch.Tensor, diagonal: torch.Tensor, upper: torch.Tensor, rhs: torch.Tensor
) -> torch.Tensor:
    """Thomas algorithm along dim 1: rows i read lower[:, i] x_{i-1} + diagonal x_i + upper x_{i+1}.

    Stable here because the spline system is strictly diagonally dominant. Written without
    in-place updates so autograd can differentiate through it.
    """
    length = diagonal.shape[1]
    ratios = [upper[:, 0] / diagonal[:, 0]]
    partial = [rhs[:, 0] / diagonal[:, 0]]
    for i in range(1, length):
        pivot = diagonal[:, i] - lower[:, i] * ratios[-1]
        ratios.append(upper[:, i] / pivot)
        partial.append((rhs[:, i] - lower[:, i] * partial[-1]) / pivot)
    solution = [partial[-1]]
    for i in range(length - 2, -1, -1):
        solution.append(partial[i] - ratios[i] * solution[-1])
    return torch.stack(solution[::-1], dim=1)


def _natural_spline(knots: torch.Tensor, grid: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Natural spline pieces (R, T - 1, 4, C) through knots (R, T, C) at grid (R, T), each row
    using only its first ``lengths`` knots (the rest is padding repeating the last time)."""
    widths, safe, slopes = _widths_and_slopes(knots, grid)
    # Unknowns: second derivatives M_i at the knots. Rows 0 and >= length - 1 say M_i = 0
    # (natural ends, and padding); the others are the C^2 conditions.
    steps = torch.arange(grid.shape[1], device=grid.device)
    interior = ((steps > 0) & (steps < (lengths - 1).unsqueeze(1))).unsqueeze(-1)
    zero = torch.zeros_like(widths[:, :1])
    left_widths = torch.cat([zero, widths], dim=1)
    right_widths = torch.cat([widths, zero], dim=1)
    lower = torch.where(interior, left_widths, 0.0)
    upper = torch.where(interior, right_widths, 0.0)
    diagonal = torch.where(interior, 2 * (left_widths + right_widths), 1.0)
    no_jump = torch.zeros_like(slopes[:, :1])
    slope_jumps = torch.cat([no_jump, slopes[:, 1:] - slopes[:, :-1], no_jump], dim=1)
    rhs = torch.where(interior, 6 * slope_jumps, 0.0)
    curvature = _solve_tridiagonal(lower, diagonal, upper, rhs)
    m_left, m_right = curvature[:, :-1], curvature[:, 1:]
    return torch.stack(
        [
            knots[:, :-1],
            slopes - widths * (2 * m_left + m_right) / 6,
            m_left / 2,
            (m_right - m_left) / (6 * safe),
        ],
        dim=2,
    )


def natural_cubic_coeffs(values: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
    """Coefficients (B, T - 1, 4, C) of the natural cubic spline through the observations.

    C^2, with zero second derivative at both ends; it reproduces linear functions exactly and
    converges at O(h^4) on smooth functions whose second derivative vanishes at the ends
    (O(h^2) near the ends otherwise). Not causal: every piece depends on all observations.
    With missing values each channel is the spline through its own observations; steps
    before its first (after its last) observation take that observation's value and are
    knots too, as in torchcde's ``natural_cubic_coeffs``.

    Example:
        >>> x = torch.tensor([[[0.0], [1.0], [0.0]]])
        >>> natural_cubic_coeffs(x, torch.arange(3.0))[0, 0, :, 0].tolist()
        [0.0, 1.5, 0.0, -0.5]
    """
    check_values(values)
    batch, length, channels = values.shape
    grid, lengths = check_times(times, batch, length, values)
    values = hide_padding(values, lengths)
    real = (torch.arange(length, device=values.device) < lengths.unsqueeze(1)).unsqueeze(-1)
    observed = ~torch.isnan(values)
    seen_before = observed.cummax(dim=1).values
    seen_after = observed.flip(1).cummax(dim=1).values.flip(1)
    # Knots: the observations, plus the steps before the first / after the last one.
    is_knot = (observed | ~seen_before | ~seen_after) & real
    held = forward_fill(values)

    # One row per (series, channel): its knots moved to the front, padded like per-series times.
    def rows(x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 1).reshape(batch * channels, length)

    row_knots = rows(is_knot)
    row_grid = rows(grid.unsqueeze(-1).expand(batch, length, channels))
    order = torch.sort((~row_knots).to(torch.uint8), dim=1, stable=True).indices
    counts = row_knots.sum(dim=1)
    in_row = torch.arange(length, device=values.device) < counts.unsqueeze(1)
    knot_times = row_grid.gather(1, order)
    knot_times = torch.where(in_row, knot_times, knot_times.gather(1, (counts - 1).unsqueeze(1)))
    pieces = _natural_spline(rows(held).gather(1, order).unsqueeze(-1), knot_times, counts)[..., 0]

    # Re-expand each row's spline around the original grid's piece starts (a Taylor shift).
    starts = row_grid[:, :-1].contiguous()
    index = torch.searchsorted(knot_times, starts, right=True) - 1
    index = torch.minimum(index.clamp(min=0), (counts - 2).unsqueeze(1))
    a, b, c, d = (pieces[:, :, k].gather(1, index) for k in range(4))
    shift = starts - knot_times.gather(1, index)
    shifted = torch.stack(
        [
            a + shift * (b + shift * (c + shift * d)),
            b + shift * (2 * c + 3 * shift * d),
            c + 3 * shift * d,
            d,
        ],
        dim=-1,
    )
    return shifted.reshape(batch, channels, length - 1, 4).permute(0, 2, 3, 1)


class _CubicPath(ControlPath):
    def __init__(self, coeffs: torch.Tensor, times: torch.Tensor):
        if not isinstance(coeffs, torch.Tensor) or coeffs.ndim != 4 or coeffs.shape[2] != 4:
            shape = tuple(coeffs.shape) if isinstance(coeffs, torch.Tensor) else type(coeffs)
            raise InvalidArgumentError(
                f"cubic coeffs must have shape (batch, time - 1, 4, channels), got {shape}"
            )
        check_values(coeffs[:, :, 0], "coeffs")
        if torch.isnan(coeffs).any():
            raise InvalidArgumentError(
                "coeffs contain NaN; build them from values, which fills NaNs"
            )
        grid, lengths = check_times(times, coeffs.shape[0], coeffs.shape[1] + 1, coeffs)
        given = grid if times.ndim == 2 else times.to(coeffs.dtype)
        super().__init__(coeffs, given, lengths)


class HermiteCubic(_CubicPath):
    """Hermite cubic path with backward differences (C^1, causal); see :func:`hermite_cubic_coeffs`.

    Example:
        >>> times = torch.arange(4.0)
        >>> path = HermiteCubic.from_values(2 * times.view(1, 4, 1) + 1, times)
        >>> path.evaluate(1.5).tolist(), path.derivative(1.5).tolist()
        ([[4.0]], [[2.0]])
    """

    @classmethod
    def from_values(
        cls, values: torch.Tensor, times: torch.Tensor, *, fill: str = "forward"
    ) -> HermiteCubic:
        """Build the path from raw observations (NaN = missing)."""
        return cls(hermite_cubic_coeffs(values, times, fill=fill), times)


class NaturalCubicSpline(_CubicPath):
    """Natural cubic spline path (C^2, not causal); see :func:`natural_cubic_coeffs`.

    Example:
        >>> times = torch.tensor([0.0, 1.0, 2.0])
        >>> path = NaturalCubicSpline.from_values(torch.tensor([[[0.0], [1.0], [0.0]]]), times)
        >>> path.evaluate(1.0).tolist()
        [[1.0]]
    """

    @classmethod
    def from_values(cls, values: torch.Tensor, times: torch.Tensor) -> NaturalCubicSpline:
        """Build the path from raw observations (NaN = missing)."""
        return cls(natural_cubic_coeffs(values, times), times)
