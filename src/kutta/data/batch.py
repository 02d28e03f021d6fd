"""IrregularBatch: a padded batch of irregularly sampled, partially observed series."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.utils._pytree as pytree

from kutta.errors import InvalidArgumentError


@dataclass(frozen=True)
class IrregularBatch:
    """B series padded to T steps, C channels.

    Attributes:
        times: (B, T) each series' observation times, strictly increasing over its first
            ``lengths[b]`` steps; padding repeats the last real time.
        values: (B, T, C) observations; 0 wherever ``mask`` is False (never NaN, so masked
            sums stay finite).
        mask: (B, T, C) bool, True where a channel is observed (always False in padding).
        lengths: (B,) long, the number of real steps of each series.

    Construction checks shapes and dtypes only; :func:`collate_irregular` and
    :meth:`from_nan_values` also check contents. Registered as a torch pytree node, so
    ``torch.utils._pytree.tree_map`` reaches its tensors.

    Example:
        >>> times = torch.tensor([[0.0, 1.0, 1.0], [0.0, 0.5, 2.0]])
        >>> values = torch.tensor([[[1.0], [2.0], [float("nan")]], [[3.0], [4.0], [5.0]]])
        >>> batch = IrregularBatch.from_nan_values(times, values, lengths=torch.tensor([2, 3]))
        >>> batch[1:].lengths.tolist(), batch.to(torch.float64).values.dtype
        ([3], torch.float64)
    """

    times: torch.Tensor
    values: torch.Tensor
    mask: torch.Tensor
    lengths: torch.Tensor

    def __post_init__(self) -> None:
        for field in fields(self):
            if not isinstance(getattr(self, field.name), torch.Tensor):
                raise InvalidArgumentError(f"IrregularBatch.{field.name} must be a torch.Tensor")
        if self.values.ndim != 3 or not self.values.is_floating_point():
            raise InvalidArgumentError(
                "IrregularBatch.values must be a floating (batch, time, channels) tensor, got "
                f"{self.values.dtype} of shape {tuple(self.values.shape)}"
            )
        batch, length, _ = self.values.shape
        if tuple(self.times.shape) != (batch, length) or self.times.dtype != self.values.dtype:
            raise InvalidArgumentError(
                f"IrregularBatch.times must be {self.values.dtype} of shape {(batch, length)}, "
                f"got {self.times.dtype} of shape {tuple(self.times.shape)}"
            )
        if self.mask.shape != self.values.shape or self.mask.dtype != torch.bool:
            raise InvalidArgumentError(
                f"IrregularBatch.mask must be bool of shape {tuple(self.values.shape)}, "
                f"got {self.mask.dtype} of shape {tuple(self.mask.shape)}"
            )
        if tuple(self.lengths.shape) != (batch,) or self.lengths.dtype != torch.long:
            raise InvalidArgumentError(
                f"IrregularBatch.lengths must be long of shape ({batch},), "
                f"got {self.lengths.dtype} of shape {tuple(self.lengths.shape)}"
            )

    @classmethod
    def from_nan_values(
        cls, times: torch.Tensor, values: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> IrregularBatch:
        """Build a batch where NaN in ``values`` marks a missing entry.

        ``times`` may be (T,) (shared) or (B, T); ``lengths`` defaults to T for every series.
        Times past a series' length are replaced by its last time.
        """
        if values.ndim != 3 or not values.is_floating_point():
            raise InvalidArgumentError(
                f"values must be a floating (batch, time, channels) tensor, got {values.dtype} "
                f"of shape {tuple(values.shape)}"
            )
        batch, length, _ = values.shape
        if times.shape not in ((length,), (batch, length)):
            raise InvalidArgumentError(
                f"times must have shape ({length},) or {(batch, length)}, got {tuple(times.shape)}"
            )
        if lengths is None:
            lengths = torch.full((batch,), length, dtype=torch.long, device=values.device)
        lengths = torch.as_tensor(lengths, device=values.device).long()
        if lengths.shape != (batch,) or bool(((lengths < 1) | (lengths > length)).any()):
            raise InvalidArgumentError(f"lengths must be ({batch},) with entries in [1, {length}]")
        steps = torch.arange(length, device=values.device)
        real = steps[None, :] < lengths[:, None]
        times = times.to(values.dtype).expand(batch, length)
        last = times.gather(1, (lengths - 1).unsqueeze(1))
        times = torch.where(real, times, last)
        check_times(times, lengths)
        mask = ~torch.isnan(values) & real.unsqueeze(-1)
        return cls(times, torch.where(mask, values, 0.0), mask, lengths)

    @property
    def batch_size(self) -> int:
        return self.values.shape[0]

    @property
    def num_channels(self) -> int:
        return self.values.shape[2]

    @property
    def step_mask(self) -> torch.Tensor:
        """(B, T) bool, True at real (not padded) steps."""
        steps = torch.arange(self.times.shape[1], device=self.times.device)
        return steps[None, :] < self.lengths[:, None]

    def nan_values(self) -> torch.Tensor:
        """``values`` with NaN where unobserved: the input format of ``kutta.interpolate``."""
        return self.values.masked_fill(~self.mask, float("nan"))

    def __len__(self) -> int:
        return self.batch_size

    def __getitem__(self, index: Any) -> IrregularBatch:
        """Select series (an int keeps the batch dimension). Padding is kept; see :meth:`trim`."""
        if isinstance(index, int):
            index = [index]
        elif isinstance(index, torch.Tensor) and index.ndim == 0:
            index = index.view(1)
        return IrregularBatch(
            self.times[index], self.values[index], self.mask[index], self.lengths[index]
        )

    def trim(self) -> IrregularBatch:
        """Drop padding steps that no series uses."""
        length = int(self.lengths.max())
        return IrregularBatch(
            self.times[:, :length], self.values[:, :length], self.mask[:, :length], self.lengths
        )

    def pin_memory(self) -> IrregularBatch:
        """Page-locked copy, so ``DataLoader(pin_memory=True)`` works with this batch."""
        return IrregularBatch(*(tensor.pin_memory() for tensor in _flatten(self)[0]))

    def to(
        self,
        device: torch.device | str | torch.dtype | None = None,
        dtype: torch.dtype | None = None,
        non_blocking: bool = False,
    ) -> IrregularBatch:
        """Move to a device and/or cast times and values to a floating dtype."""
        if isinstance(device, torch.dtype):
            device, dtype = None, device
        if dtype is not None and not dtype.is_floating_point:
            raise InvalidArgumentError(f"IrregularBatch.to needs a floating dtype, got {dtype}")
        return IrregularBatch(
            self.times.to(device=device, dtype=dtype, non_blocking=non_blocking),
            self.values.to(device=device, dtype=dtype, non_blocking=non_blocking),
            self.mask.to(device=device, non_blocking=non_blocking),
            self.lengths.to(device=device, non_blocking=non_blocking),
        )


def check_times(times: torch.Tensor, lengths: torch.Tensor, where: str = "") -> None:
    """Raise unless each series' times are finite and strictly increasing over its length."""
    if not torch.isfinite(times).all():
        raise InvalidArgumentError(f"times must be finite{where}")
    steps = torch.arange(1, times.shape[1], device=times.device)
    real_steps = steps[None, :] < lengths[:, None]
    bad = real_steps & (times[:, 1:] <= times[:, :-1])
    if bad.any():
        series, step = (int(i) for i in bad.nonzero()[0])
        step += 1
        raise InvalidArgumentError(
            f"times must be strictly increasing within each series{where}: series {series} has "
            f"times[{step}] = {float(times[series, step])} <= times[{step - 1}] = "
            f"{float(times[series, step - 1])}"
        )


def _flatten(batch: IrregularBatch) -> tuple[list[torch.Tensor], None]:
    return [batch.times, batch.values, batch.mask, batch.lengths], None


def _unflatten(children: Any, _context: None) -> IrregularBatch:
    return IrregularBatch(*children)


pytree.register_pytree_node(IrregularBatch, _flatten, _unflatten)
