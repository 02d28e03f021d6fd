"""Validation shared by every control path: shapes, dtypes and the time grid.

Per-series times may end in padding that repeats the last real time (the rule used by
``kutta.data.collate_irregular``); such a series' effective length is the number of its
strictly increasing times, and everything at or after the first repeat is ignored.
"""

from __future__ import annotations

import torch

from kutta.errors import InvalidArgumentError, UnknownNameError


def check_values(values: torch.Tensor, name: str = "values") -> None:
    if not isinstance(values, torch.Tensor):
        raise InvalidArgumentError(f"{name} must be a torch.Tensor, got {type(values).__name__}")
    if not values.is_floating_point():
        raise InvalidArgumentError(f"{name} must be floating point, got dtype {values.dtype}")
    if values.ndim != 3:
        raise InvalidArgumentError(
            f"{name} must have shape (batch, time, channels), got shape {tuple(values.shape)}"
        )


def check_times(
    times: torch.Tensor, batch: int, length: int, like: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate ``times`` ((T,) or (B, T)) and return it as (B, T) plus each series' length.

    ``times`` is cast to ``like``'s dtype; it must already be on ``like``'s device.
    """
    if not isinstance(times, torch.Tensor):
        raise InvalidArgumentError(f"times must be a torch.Tensor, got {type(times).__name__}")
    if not times.is_floating_point():
        raise InvalidArgumentError(f"times must be floating point, got dtype {times.dtype}")
    if times.device != like.device:
        raise InvalidArgumentError(
            f"times are on {times.device} but the values are on {like.device}"
        )
    if times.ndim == 1:
        if times.shape[0] != length:
            raise InvalidArgumentError(
                f"times has {times.shape[0]} entries but the values have {length} time steps"
            )
    elif times.ndim == 2:
        if tuple(times.shape) != (batch, length):
            raise InvalidArgumentError(
                f"per-series times must have shape (batch, time) = {(batch, length)}, "
                f"got {tuple(times.shape)}"
            )
    else:
        raise InvalidArgumentError(
            f"times must have shape (time,) or (batch, time), got {tuple(times.shape)}"
        )
    if length < 2:
        raise InvalidArgumentError(f"a path needs at least 2 time steps, got {length}")
    if not torch.isfinite(times).all():
        raise InvalidArgumentError("times must be finite (no NaN or inf)")
    times = times.to(like.dtype)
    rows = times.expand(batch, length)
    increasing = rows[:, 1:] > rows[:, :-1]
    # Increasing steps must form a prefix: after the first repeat only padding may follow.
    prefix = increasing.long().cumprod(dim=1).bool()
    repeats_last = rows == rows[:, -1:]
    padding_ok = (prefix | repeats_last[:, 1:]).all(dim=1)
    lengths = prefix.sum(dim=1) + 1
    if times.ndim == 1:
        padding_ok = padding_ok & (lengths == length)
    bad = (~padding_ok) | (lengths < 2)
    if bad.any():
        row = int(bad.nonzero()[0, 0])
        step = int((~increasing[row]).nonzero()[0, 0]) + 1
        where = f"series {row}: " if times.ndim == 2 else ""
        raise InvalidArgumentError(
            f"times must be strictly increasing ({where}times[{step}] = "
            f"{float(rows[row, step])} <= times[{step - 1}] = {float(rows[row, step - 1])}); "
            "per-series times may only end in padding that repeats the last time"
        )
    return rows.contiguous(), lengths


def hide_padding(values: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mark every value at or after a series' length as missing (NaN)."""
    steps = torch.arange(values.shape[1], device=values.device)
    padded = (steps[None, :] >= lengths[:, None]).unsqueeze(-1)
    return values.masked_fill(padded, float("nan"))


def check_fill(fill: str) -> None:
    if fill not in ("linear", "forward"):
        raise UnknownNameError("fill", fill, ["linear", "forward"])
