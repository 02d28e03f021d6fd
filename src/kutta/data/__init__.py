"""Irregular time series: batches, padding, splits, normalisation, CSV loading, union grids.

Example:
    >>> import torch
    >>> from kutta.data import collate_irregular, split_interpolation
    >>> series = [(torch.sort(torch.rand(n)).values, torch.randn(n, 2)) for n in (5, 8, 3)]
    >>> batch = collate_irregular(series)
    >>> batch.values.shape, batch.lengths.tolist()
    (torch.Size([3, 8, 2]), [5, 8, 3])
    >>> split_interpolation(batch, 2, seed=0).observed.lengths.tolist()
    [2, 2, 2]
"""

from kutta.data.batch import IrregularBatch
from kutta.data.collate import collate_irregular
from kutta.data.load import LongFormatData, load_long_csv
from kutta.data.normalize import TimeNormalizer, ValueNormalizer
from kutta.data.splits import (
    Split,
    observe_first,
    select_steps,
    split_extrapolation,
    split_indices,
    split_interpolation,
)
from kutta.data.union import UnionGrid, to_union_grid, union_grid

__all__ = [
    "IrregularBatch",
    "LongFormatData",
    "Split",
    "TimeNormalizer",
    "UnionGrid",
    "ValueNormalizer",
    "collate_irregular",
    "load_long_csv",
    "observe_first",
    "select_steps",
    "split_extrapolation",
    "split_indices",
    "split_interpolation",
    "to_union_grid",
    "union_grid",
]
