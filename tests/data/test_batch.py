"""IrregularBatch: validation, constructors, indexing, device/dtype moves, pytree support."""

import pytest
import torch
import torch.utils._pytree as pytree

from kutta.data import IrregularBatch
from kutta.errors import InvalidArgumentError

NAN = float("nan")


def example():
    times = torch.tensor([[0.0, 1.0, 9.0], [0.0, 0.5, 2.0]])
    values = torch.tensor(
        [[[1.0, NAN], [2.0, 3.0], [7.0, 7.0]], [[NAN, NAN], [4.0, 5.0], [6.0, NAN]]]
    )
    return IrregularBatch.from_nan_values(times, values, lengths=torch.tensor([2, 3]))


def test_from_nan_values_masks_nans_and_padding():
    batch = example()
    assert batch.times.tolist() == [[0.0, 1.0, 1.0], [0.0, 0.5, 2.0]]  # padding repeats
    assert batch.mask.tolist() == [
        [[True, False], [True, True], [False, False]],
        [[False, False], [True, True], [True, False]],
    ]
    assert not torch.isnan(batch.values).any()
    assert (batch.values[~batch.mask] == 0).all()
    assert batch.step_mask.tolist() == [[True, True, False], [True, True, True]]
    nan_values = batch.nan_values()
    assert torch.isnan(nan_values[~batch.mask]).all()
    assert torch.equal(nan_values[batch.mask], batch.values[batch.mask])


def test_shared_times_and_default_lengths():
    batch = IrregularBatch.from_nan_values(torch.arange(4.0), torch.zeros(3, 4, 1))
    assert batch.times.shape == (3, 4) and batch.lengths.tolist() == [4, 4, 4]
    assert len(batch) == 3 and batch.batch_size == 3 and batch.num_channels == 1


def test_indexing_selects_series():
    batch = example()
    assert batch[1].lengths.tolist() == [3]
    assert batch[-1].times.tolist() == [[0.0, 0.5, 2.0]]
    assert batch[torch.tensor([1, 0])].lengths.tolist() == [3, 2]
    assert batch[torch.tensor(1)].lengths.tolist() == [3]
    assert batch[torch.tensor([False, True])].lengths.tolist() == [3]
    assert batch[:1].trim().times.tolist() == [[0.0, 1.0]]


def test_to_casts_floats_only():
    batch = example().to(torch.float64)
    assert batch.times.dtype == batch.values.dtype == torch.float64
    assert batch.mask.dtype == torch.bool and batch.lengths.dtype == torch.long
    assert example().to("cpu", dtype=torch.float64).values.dtype == torch.float64
    with pytest.raises(InvalidArgumentError, match="floating dtype"):
        example().to(torch.int32)


def test_is_a_pytree():
    batch = example()
    leaves, _ = pytree.tree_flatten(batch)
    assert len(leaves) == 4
    doubled = pytree.tree_map(lambda x: x * 2 if x.is_floating_point() else x, batch)
    assert isinstance(doubled, IrregularBatch)
    torch.testing.assert_close(doubled.times, 2 * batch.times)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(values=torch.zeros(2, 3)), "values must be a floating \\(batch, time, channels\\)"),
        (dict(times=torch.zeros(2, 4)), "times must be torch.float32 of shape \\(2, 3\\)"),
        (dict(times=torch.zeros(2, 3, dtype=torch.float64)), "times must be torch.float32"),
        (dict(mask=torch.ones(2, 3, 2)), "mask must be bool"),
        (dict(lengths=torch.tensor([2.0, 3.0])), "lengths must be long of shape \\(2,\\)"),
        (dict(lengths=[2, 3]), "lengths must be a torch.Tensor"),
    ],
)
def test_construction_checks_shapes_and_dtypes(change, message):
    fields = dict(
        times=torch.zeros(2, 3),
        values=torch.zeros(2, 3, 2),
        mask=torch.ones(2, 3, 2, dtype=torch.bool),
        lengths=torch.tensor([2, 3]),
    )
    with pytest.raises(InvalidArgumentError, match=message):
        IrregularBatch(**{**fields, **change})


def test_from_nan_values_checks_contents():
    with pytest.raises(
        InvalidArgumentError, match="series 0 has times\\[2\\] = 1.0 <= times\\[1\\]"
    ):
        IrregularBatch.from_nan_values(torch.tensor([0.0, 1.0, 1.0]), torch.zeros(1, 3, 1))
    with pytest.raises(InvalidArgumentError, match="entries in \\[1, 3\\]"):
        IrregularBatch.from_nan_values(torch.arange(3.0), torch.zeros(1, 3, 1), torch.tensor([4]))
    with pytest.raises(InvalidArgumentError, match="times must have shape"):
        IrregularBatch.from_nan_values(torch.arange(2.0), torch.zeros(1, 3, 1))
    with pytest.raises(InvalidArgumentError, match="finite"):
        IrregularBatch.from_nan_values(torch.tensor([0.0, NAN]), torch.zeros(1, 2, 1))
