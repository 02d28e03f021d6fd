"""Irregular time series as the models consume them.

A batch is any object with ``times`` (B, T) or (T,), ``values`` (B, T, C), and optionally
``mask`` (B, T, C) (1 = observed) and ``lengths`` (B,): a ``kutta.data.IrregularBatch`` or
anything shaped like it. NaN in ``values`` also marks a missing value. Positions at or after
a series' length are padding: the models give them zero time steps and no observations, so
that results do not depend on padding.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from kutta.errors import InvalidArgumentError


class Series(NamedTuple):
    """Validated series: padding neutralised, NaN replaced by 0 and masked out."""

    times: torch.Tensor  # (B, T); padded positions repeat the series' last time
    values: torch.Tensor  # (B, T, C); 0 where not observed
    mask: torch.Tensor  # (B, T, C), values' dtype, 1 = observed
    lengths: torch.Tensor  # (B,), long

    @property
    def valid(self) -> torch.Tensor:
        """(B, T) bool: True where the position is not padding."""
        steps = torch.arange(self.times.shape[1], device=self.times.device)
        return steps[None, :] < self.lengths[:, None]

    @property
    def first_time(self) -> torch.Tensor:
        return self.times[:, 0]

    @property
    def last_time(self) -> torch.Tensor:
        return self.times[:, -1]


def as_series(batch: Any, name: str = "batch") -> Series:
    """Validate an IrregularBatch-like object and neutralise its padding."""
    times, values = getattr(batch, "times", None), getattr(batch, "values", None)
    if not (torch.is_tensor(times) and torch.is_tensor(values)):
        raise InvalidArgumentError(
            f"{name} must have tensor attributes `times` (B, T) and `values` (B, T, C) "
            f"(e.g. a kutta.data.IrregularBatch), got {type(batch).__name__}"
        )
    if values.dim() != 3:
        raise InvalidArgumentError(
            f"{name}.values must have shape (batch, time, channels), got {tuple(values.shape)}"
        )
    b, t, _ = values.shape
    if times.dim() == 1:
        times = times.expand(b, -1)
    if tuple(times.shape) != (b, t):
        raise InvalidArgumentError(
            f"{name}.times must have shape (time,) or (batch, time) = {(b, t)}, got {tuple(times.shape)}"
        )
    times = times.to(values.dtype)
    mask = getattr(batch, "mask", None)
    observed = ~torch.isnan(values)
    if mask is not None:
        if mask.shape != values.shape:
            raise InvalidArgumentError(
                f"{name}.mask must have the shape of values {tuple(values.shape)}, got {tuple(mask.shape)}"
            )
        observed = observed & mask.bool()
    lengths = getattr(batch, "lengths", None)
    if lengths is None:
        lengths = torch.full((b,), t, dtype=torch.long, device=values.device)
    lengths = torch.as_tensor(lengths, device=values.device).long()
    if lengths.shape != (b,) or bool(((lengths < 1) | (lengths > t)).any()):
        raise InvalidArgumentError(f"{name}.lengths must be (batch,) with entries in [1, {t}]")
    steps = torch.arange(t, device=values.device)
    valid = steps[None, :] < lengths[:, None]
    last = times.gather(1, (lengths - 1).unsqueeze(1))
    times = torch.where(valid, times, last)
    if not torch.isfinite(times).all():
        raise InvalidArgumentError(f"{name}.times must be finite within each series")
    if bool((times[:, 1:] < times[:, :-1]).any()):
        raise InvalidArgumentError(f"{name}.times must be non-decreasing within each series")
    observed = observed & valid.unsqueeze(-1)
    values = torch.where(observed, values, torch.zeros_like(values))
    return Series(times, values, observed.to(values.dtype), lengths)


def reverse_series(series: Series) -> Series:
    """Each series in reverse time order (padding stays at the end)."""
    b, t = series.times.shape
    steps = torch.arange(t, device=series.times.device).expand(b, t)
    index = torch.where(series.valid, series.lengths[:, None] - 1 - steps, steps)
    times = series.times.gather(1, index)
    # Padding now repeats the reversed series' last time, which is its first observation.
    times = torch.where(series.valid, times, series.times[:, :1])
    channel_index = index.unsqueeze(-1).expand_as(series.values)
    return Series(
        times,
        series.values.gather(1, channel_index),
        series.mask.gather(1, channel_index),
        series.lengths,
    )
