"""One shared time grid for a batch: the sorted union of every series' times, with a mask.

Solving on the union grid lets a whole batch use one time axis; each series then reads its
own outputs back with :meth:`UnionGrid.gather`. Times are merged by exact equality.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kutta.data.batch import IrregularBatch


@dataclass(frozen=True)
class UnionGrid:
    """The union grid of a batch.

    Attributes:
        times: (G,) sorted distinct times of all real steps.
        index: (B, T) long, position in ``times`` of each step (padding points at the
            series' last time).
        mask: (B, G) bool, True where the series has a real step at that grid time.
    """

    times: torch.Tensor
    index: torch.Tensor
    mask: torch.Tensor

    def scatter(self, per_step: torch.Tensor, step_mask: torch.Tensor) -> torch.Tensor:
        """Place per-step data (B, T, ...) on the grid (B, G, ...); zeros where a series has
        no step. ``step_mask`` (B, T) selects the real steps (padding is dropped)."""
        batch, length = self.index.shape
        extra = per_step.shape[2:]
        index = self.index.view(batch, length, *([1] * len(extra))).expand_as(per_step)
        keep = step_mask.view(batch, length, *([1] * len(extra)))
        kept = torch.where(
            keep, per_step, torch.zeros((), dtype=per_step.dtype, device=per_step.device)
        )
        out = per_step.new_zeros(batch, self.times.shape[0], *extra)
        return out.scatter_add(1, index, kept)

    def gather(self, on_grid: torch.Tensor) -> torch.Tensor:
        """Read each series' own steps (B, T, ...) from data on the grid (B, G, ...)."""
        batch, length = self.index.shape
        extra = on_grid.shape[2:]
        index = self.index.view(batch, length, *([1] * len(extra))).expand(batch, length, *extra)
        return on_grid.gather(1, index)


def union_grid(batch: IrregularBatch) -> UnionGrid:
    """The sorted union of the batch's times and where each series' steps sit on it.

    Example:
        >>> batch = IrregularBatch.from_nan_values(
        ...     torch.tensor([[0.0, 2.0, 2.0], [0.0, 1.0, 3.0]]), torch.ones(2, 3, 1),
        ...     lengths=torch.tensor([2, 3]))
        >>> grid = union_grid(batch)
        >>> grid.times.tolist(), grid.mask.tolist()
        ([0.0, 1.0, 2.0, 3.0], [[True, False, True, False], [True, True, False, True]])
    """
    step_mask = batch.step_mask
    times = torch.unique(batch.times[step_mask], sorted=True)
    # Every step's time (padding repeats a real one) is on the grid, so the left
    # insertion point is its exact position.
    index = torch.searchsorted(times, batch.times.contiguous())
    hits = torch.zeros(batch.batch_size, times.shape[0], dtype=torch.long, device=times.device)
    mask = hits.scatter_add(1, index, step_mask.long()) > 0
    return UnionGrid(times, index, mask)


def to_union_grid(batch: IrregularBatch) -> tuple[IrregularBatch, UnionGrid]:
    """The batch re-expressed on its union grid: every series gets all G grid times, with
    ``mask`` False where it has no observation, and ``lengths`` G.

    Example:
        >>> batch = IrregularBatch.from_nan_values(
        ...     torch.tensor([[0.0, 2.0], [0.0, 1.0]]), torch.ones(2, 2, 1))
        >>> on_grid, grid = to_union_grid(batch)
        >>> on_grid.times.tolist(), on_grid.mask[:, :, 0].tolist()
        ([[0.0, 1.0, 2.0], [0.0, 1.0, 2.0]], [[True, False, True], [True, True, False]])
    """
    grid = union_grid(batch)
    step_mask = batch.step_mask
    values = grid.scatter(batch.values, step_mask)
    mask = grid.scatter(batch.mask.long(), step_mask) > 0
    size = grid.times.shape[0]
    times = grid.times.expand(batch.batch_size, size).contiguous()
    lengths = torch.full_like(batch.lengths, size)
    return IrregularBatch(times, values, mask, lengths), grid
