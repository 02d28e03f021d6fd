"""Observed/target splits for interpolation and extrapolation tasks, and dataset splits.

All splits act per series on its real steps and are seeded, so they are reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

from kutta.data.batch import IrregularBatch
from kutta.errors import InvalidArgumentError


class Split(NamedTuple):
    """What a model sees (``observed``) and what it is scored on (``target``).

    Example:
        >>> batch = IrregularBatch.from_nan_values(torch.arange(4.0), torch.randn(2, 4, 1))
        >>> observed, target = split_extrapolation(batch)
        >>> observed.lengths.tolist(), target.lengths.tolist()
        ([2, 2], [2, 2])
    """

    observed: IrregularBatch
    target: IrregularBatch


def select_steps(
    batch: IrregularBatch, keep: torch.Tensor, what: str = "selection"
) -> IrregularBatch:
    """The sub-batch of the steps where ``keep`` (B, T) is True, moved to the front and re-padded.

    Example:
        >>> batch = IrregularBatch.from_nan_values(torch.arange(3.0), torch.ones(1, 3, 1))
        >>> select_steps(batch, torch.tensor([[True, False, True]])).times.tolist()
        [[0.0, 2.0]]
    """
    keep = keep & batch.step_mask
    lengths = keep.sum(dim=1)
    if (lengths == 0).any():
        series = int((lengths == 0).nonzero()[0, 0])
        raise InvalidArgumentError(f"the {what} leaves series {series} with no steps")
    length = int(lengths.max())
    # A stable sort of "not kept" brings the kept steps to the front in time order.
    order = torch.sort((~keep).to(torch.uint8), dim=1, stable=True).indices[:, :length]
    real = torch.arange(length, device=keep.device)[None, :] < lengths[:, None]
    times = batch.times.gather(1, order)
    last = times.gather(1, (lengths - 1).unsqueeze(1))
    channel_order = order.unsqueeze(-1).expand(-1, -1, batch.num_channels)
    mask = batch.mask.gather(1, channel_order) & real.unsqueeze(-1)
    values = torch.where(mask, batch.values.gather(1, channel_order), 0.0)
    return IrregularBatch(torch.where(real, times, last), values, mask, lengths)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def split_interpolation(batch: IrregularBatch, observed: int | float, *, seed: int) -> Split:
    """Observe a random subset of each series' steps; the target is every step.

    ``observed`` is a count of steps per series (capped at the series' length) or, if a
    float in (0, 1], a fraction of each series' steps (rounded, at least one).

    Example:
        >>> batch = IrregularBatch.from_nan_values(torch.arange(10.0), torch.randn(4, 10, 2))
        >>> split = split_interpolation(batch, 0.5, seed=0)
        >>> split.observed.lengths.tolist(), split.target is batch
        ([5, 5, 5, 5], True)
    """
    if isinstance(observed, bool) or not isinstance(observed, (int, float)):
        raise InvalidArgumentError(f"observed must be an int or a float, got {observed!r}")
    if isinstance(observed, float):
        if not 0 < observed <= 1:
            raise InvalidArgumentError(f"an observed fraction must be in (0, 1], got {observed}")
        counts = (batch.lengths * observed).round().long().clamp(min=1)
    else:
        if observed < 1:
            raise InvalidArgumentError(f"observed must be at least 1 step, got {observed}")
        counts = batch.lengths.clamp(max=observed)
    scores = torch.rand(batch.times.shape, generator=_generator(seed)).to(batch.times.device)
    scores = scores.masked_fill(~batch.step_mask, 2.0)  # padding ranks last
    ranks = scores.argsort(dim=1).argsort(dim=1)
    return Split(select_steps(batch, ranks < counts[:, None], "interpolation split"), batch)


def observe_first(batch: IrregularBatch, k: int | torch.Tensor) -> Split:
    """Observe the first ``k`` steps of each series and target the rest.

    ``k`` is an int or a (B,) tensor of per-series counts; every series needs more than
    ``k`` steps so that something is left to predict.

    Example:
        >>> batch = IrregularBatch.from_nan_values(torch.arange(4.0), torch.randn(1, 4, 1))
        >>> [part.times.tolist() for part in observe_first(batch, 1)]
        [[[0.0]], [[1.0, 2.0, 3.0]]]
    """
    k = torch.as_tensor(k, device=batch.lengths.device).long().expand(batch.batch_size)
    if (k < 1).any():
        raise InvalidArgumentError(f"k must be at least 1, got {k.min().item()}")
    short = k >= batch.lengths
    if short.any():
        series = int(short.nonzero()[0, 0])
        raise InvalidArgumentError(
            f"series {series} has {int(batch.lengths[series])} steps, so observing the first "
            f"{int(k[series])} leaves nothing to predict"
        )
    steps = torch.arange(batch.times.shape[1], device=k.device)[None, :]
    first = steps < k[:, None]
    return Split(select_steps(batch, first, "split"), select_steps(batch, ~first, "split"))


def split_extrapolation(batch: IrregularBatch, at: float | None = None) -> Split:
    """Observe the first half of each series and target the second half.

    By default the first ``length // 2`` steps are observed; with ``at``, the steps with
    ``time <= at`` are. Every series needs steps on both sides.

    Example:
        >>> batch = IrregularBatch.from_nan_values(torch.arange(4.0), torch.randn(1, 4, 1))
        >>> [part.times.tolist() for part in split_extrapolation(batch, at=2.5)]
        [[[0.0, 1.0, 2.0]], [[3.0]]]
    """
    if at is None:
        return observe_first(batch, (batch.lengths // 2).clamp(min=1))
    before = batch.times <= at
    return Split(
        select_steps(batch, before, f"extrapolation split at {at}"),
        select_steps(batch, ~before, f"extrapolation split at {at}"),
    )


def split_indices(
    count: int, fractions: Sequence[float] = (0.8, 0.2), *, seed: int
) -> list[torch.Tensor]:
    """Shuffle ``range(count)`` and cut it into parts of the given fractions (summing to 1).

    Example:
        >>> train, test = split_indices(10, (0.8, 0.2), seed=0)
        >>> len(train), len(test), sorted(torch.cat([train, test]).tolist()) == list(range(10))
        (8, 2, True)
    """
    if count < 1 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-9:
        raise InvalidArgumentError(
            f"need count >= 1 and non-negative fractions summing to 1, got {count} and {tuple(fractions)}"
        )
    order = torch.randperm(count, generator=_generator(seed))
    bounds = [round(count * sum(fractions[:i])) for i in range(len(fractions) + 1)]
    return [order[lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:])]
