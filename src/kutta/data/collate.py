"""Padding single series into an IrregularBatch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from kutta.data.batch import IrregularBatch
from kutta.errors import InvalidArgumentError


def _unpack(sample: Any, number: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    if isinstance(sample, Mapping):
        missing = {"times", "values"} - set(sample)
        if missing:
            raise InvalidArgumentError(f"sample {number} has no {sorted(missing)} entry")
        parts = (sample["times"], sample["values"], sample.get("mask"))
    elif isinstance(sample, Sequence) and len(sample) in (2, 3):
        parts = (*sample, None) if len(sample) == 2 else tuple(sample)
    else:
        raise InvalidArgumentError(
            f"sample {number} must be (times, values), (times, values, mask) or a mapping with "
            f"'times', 'values' and optionally 'mask'; got {type(sample).__name__}"
        )
    times, values, mask = (None if p is None else torch.as_tensor(p) for p in parts)
    if times.ndim != 1 or times.shape[0] < 1 or not times.is_floating_point():
        raise InvalidArgumentError(
            f"sample {number}: times must be a non-empty floating (time,) tensor, got "
            f"{times.dtype} of shape {tuple(times.shape)}"
        )
    if not torch.isfinite(times).all():
        raise InvalidArgumentError(f"sample {number}: times must be finite")
    repeats = (times[1:] <= times[:-1]).nonzero()
    if len(repeats):
        step = int(repeats[0, 0]) + 1
        raise InvalidArgumentError(
            f"sample {number}: times must be strictly increasing, but times[{step}] = "
            f"{float(times[step])} <= times[{step - 1}] = {float(times[step - 1])}"
        )
    if values.ndim != 2 or values.shape[0] != times.shape[0] or not values.is_floating_point():
        raise InvalidArgumentError(
            f"sample {number}: values must be a floating ({times.shape[0]}, channels) tensor, "
            f"got {values.dtype} of shape {tuple(values.shape)}"
        )
    if mask is not None:
        if mask.shape != values.shape:
            raise InvalidArgumentError(
                f"sample {number}: mask must have the shape of values {tuple(values.shape)}, "
                f"got {tuple(mask.shape)}"
            )
        mask = mask.bool()
        if torch.isnan(values[mask]).any():
            raise InvalidArgumentError(f"sample {number}: values are NaN where mask says observed")
    return times, values, mask


def collate_irregular(samples: Sequence[Any], *, pad_to: int | None = None) -> IrregularBatch:
    """Pad series of different lengths into one :class:`IrregularBatch`.

    Each sample is ``(times, values)`` or ``(times, values, mask)`` (or a mapping with those
    keys): times (T_i,) strictly increasing, values (T_i, C), NaN or ``mask == False``
    marking a missing entry. Padding rule: times repeat the series' last time, values are 0
    and the mask is False, so a masked computation never sees the padding. Values take the
    first sample's dtype. Use as ``DataLoader(..., collate_fn=collate_irregular)``.

    Example:
        >>> a = (torch.tensor([0.0, 1.0]), torch.tensor([[1.0], [2.0]]))
        >>> b = (torch.tensor([0.5]), torch.tensor([[float("nan")]]))
        >>> batch = collate_irregular([a, b])
        >>> batch.times.tolist(), batch.mask[:, :, 0].tolist(), batch.lengths.tolist()
        ([[0.0, 1.0], [0.5, 0.5]], [[True, True], [False, False]], [2, 1])
    """
    if len(samples) == 0:
        raise InvalidArgumentError("cannot collate an empty list of samples")
    unpacked = [_unpack(sample, number) for number, sample in enumerate(samples)]
    channels = {values.shape[1] for _, values, _ in unpacked}
    if len(channels) != 1:
        raise InvalidArgumentError(
            f"samples have different numbers of channels: {sorted(channels)}"
        )
    lengths = [times.shape[0] for times, _, _ in unpacked]
    length = max(lengths) if pad_to is None else pad_to
    if length < max(lengths):
        raise InvalidArgumentError(
            f"pad_to={pad_to} is shorter than the longest series ({max(lengths)})"
        )
    dtype, device = unpacked[0][1].dtype, unpacked[0][1].device
    batch_times, batch_values, batch_mask = [], [], []
    for (times, values, mask), real in zip(unpacked, lengths):
        pad = length - real
        times = times.to(device=device, dtype=dtype)
        values = values.to(device=device, dtype=dtype)
        observed = ~torch.isnan(values) if mask is None else mask.to(device)
        batch_times.append(torch.cat([times, times[-1:].expand(pad)]))
        batch_values.append(
            torch.cat([torch.where(observed, values, 0.0), values.new_zeros(pad, values.shape[1])])
        )
        batch_mask.append(torch.cat([observed, observed.new_zeros(pad, values.shape[1])]))
    lengths_tensor = torch.tensor(lengths, dtype=torch.long, device=device)
    return IrregularBatch(
        torch.stack(batch_times), torch.stack(batch_values), torch.stack(batch_mask), lengths_tensor
    )
