"""Preparing observations for a control path: filling missing values, time as a channel.

NaN marks a missing value. Filling is per channel, so channels may be observed at
different times. Every function here is differentiable with respect to the observed values.
"""

from __future__ import annotations

import torch

from kutta.interpolate._checks import check_fill, check_times, check_values


def _neighbours(observed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each (series, step, channel): the index of the last observation at or before the
    step (-1 if none) and of the first at or after it (T if none)."""
    length = observed.shape[1]
    steps = torch.arange(length, device=observed.device).view(1, -1, 1)
    previous = torch.where(observed, steps, -1).cummax(dim=1).values
    following = torch.where(observed, steps, length).flip(1).cummin(dim=1).values.flip(1)
    return previous, following


def forward_fill(values: torch.Tensor) -> torch.Tensor:
    """Replace each NaN by the last observation before it in the same channel.

    Causal, except that NaNs before a channel's first observation take that first
    observation (there is nothing earlier); fill those yourself (e.g. with the channel's
    training mean) if strict causality matters. A channel with no observation becomes 0.

    Example:
        >>> x = torch.tensor([[[float("nan")], [1.0], [float("nan")], [3.0]]])
        >>> forward_fill(x).flatten().tolist()
        [1.0, 1.0, 1.0, 3.0]
    """
    check_values(values)
    observed = ~torch.isnan(values)
    previous, following = _neighbours(observed)
    length = values.shape[1]
    source = torch.where(previous >= 0, previous, following).clamp(max=length - 1)
    filled = values.gather(1, source)
    return torch.where(observed.any(dim=1, keepdim=True), filled, torch.zeros_like(values))


def linear_fill(values: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
    """Replace each NaN by linear interpolation (in time) between its channel's neighbours.

    Not causal: a filled value depends on the next observation. NaNs before the first or
    after the last observation of a channel take that observation; a channel with no
    observation becomes 0.

    Example:
        >>> x = torch.tensor([[[0.0], [float("nan")], [4.0]]])
        >>> linear_fill(x, torch.tensor([0.0, 1.0, 4.0])).flatten().tolist()
        [0.0, 1.0, 4.0]
    """
    check_values(values)
    batch, length, channels = values.shape
    rows, _ = check_times(times, batch, length, values)
    observed = ~torch.isnan(values)
    previous, following = _neighbours(observed)
    has_previous, has_following = previous >= 0, following < length
    # Safe indices: a missing neighbour falls back to the other one (then the weight is 0).
    left = torch.where(has_previous, previous, following.clamp(max=length - 1))
    right = torch.where(has_following, following, left)
    step_times = rows.unsqueeze(-1).expand(batch, length, channels)
    t_left, t_right = step_times.gather(1, left), step_times.gather(1, right)
    gap = t_right - t_left
    weight = torch.where(gap > 0, (step_times - t_left) / torch.where(gap > 0, gap, 1.0), 0.0)
    x_left, x_right = values.gather(1, left), values.gather(1, right)
    interpolated = x_left + weight * (x_right - x_left)
    filled = torch.where(observed, values, interpolated)
    return torch.where(observed.any(dim=1, keepdim=True), filled, torch.zeros_like(values))


def fill_missing(values: torch.Tensor, times: torch.Tensor, fill: str) -> torch.Tensor:
    """Dispatch to :func:`forward_fill` (``fill="forward"``) or :func:`linear_fill` (``"linear"``).

    Example:
        >>> x = torch.tensor([[[0.0], [float("nan")], [4.0]]])
        >>> fill_missing(x, torch.arange(3.0), "forward").flatten().tolist()
        [0.0, 0.0, 4.0]
    """
    check_fill(fill)
    return forward_fill(values) if fill == "forward" else linear_fill(values, times)


def with_time_channel(values: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
    """Prepend time as channel 0: (B, T, C) -> (B, T, C + 1).

    A Neural CDE needs time as a channel to know how fast the data arrives; without it the
    CDE's output is invariant to reparametrising time.

    Example:
        >>> x = torch.zeros(2, 3, 1)
        >>> with_time_channel(x, torch.tensor([0.0, 0.5, 2.0]))[0, :, 0].tolist()
        [0.0, 0.5, 2.0]
    """
    check_values(values)
    batch, length, _ = values.shape
    rows, _ = check_times(times, batch, length, values)
    return torch.cat([rows.unsqueeze(-1), values], dim=-1)
