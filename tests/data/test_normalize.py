"""Normalizers: statistics over observed entries only, exact inverses, state_dict round trips."""

import numpy as np
import pytest
import torch
from torch import nn

from kutta.data import IrregularBatch, TimeNormalizer, ValueNormalizer, collate_irregular
from kutta.errors import InvalidArgumentError

NAN = float("nan")


def training_batch():
    a = (torch.tensor([1.0, 2.0, 4.0]), torch.tensor([[1.0, 10.0], [NAN, 20.0], [5.0, NAN]]))
    b = (torch.tensor([3.0, 9.0]), torch.tensor([[3.0, NAN], [NAN, 60.0]]))
    return collate_irregular([a, b], pad_to=5)


def test_value_statistics_use_only_observed_entries():
    norm = ValueNormalizer(2).fit(training_batch())
    expected = [np.array([1.0, 5.0, 3.0]), np.array([10.0, 20.0, 60.0])]
    torch.testing.assert_close(norm.mean, torch.tensor([e.mean() for e in expected]).float())
    torch.testing.assert_close(norm.std, torch.tensor([e.std() for e in expected]).float())


def test_normalize_and_inverse_are_inverse_and_standardise():
    batch = training_batch().to(torch.float64)
    norm = ValueNormalizer(2).double().fit(batch)
    normalized = norm.normalize_batch(batch)
    assert (normalized.values[~normalized.mask] == 0).all()
    for c in range(2):
        column = normalized.values[..., c][normalized.mask[..., c]]
        torch.testing.assert_close(column.mean(), torch.tensor(0.0, dtype=torch.float64))
        torch.testing.assert_close(
            column.std(unbiased=False), torch.tensor(1.0, dtype=torch.float64)
        )
    x = torch.randn(4, 2, dtype=torch.float64)
    torch.testing.assert_close(norm.inverse(norm(x)), x)
    torch.testing.assert_close(norm.inverse_scale(torch.ones(2, dtype=torch.float64)), norm.std)


def test_constant_channel_is_only_centred():
    batch = IrregularBatch.from_nan_values(torch.arange(3.0), torch.full((1, 3, 1), 7.0))
    norm = ValueNormalizer(1).fit(batch)
    assert norm.std.item() == 1.0 and norm.normalize(torch.tensor([8.0])).item() == 1.0


def test_time_normalizer_maps_training_times_to_unit_interval():
    batch = training_batch()
    norm = TimeNormalizer().fit(batch)
    assert norm.offset.item() == 1.0 and norm.scale.item() == 8.0  # padding (repeats) ignored
    normalized = norm.normalize_batch(batch)
    real = normalized.times[batch.step_mask]
    assert real.min().item() == 0.0 and real.max().item() == 1.0
    torch.testing.assert_close(norm.inverse(norm(batch.times)), batch.times)
    assert norm.rate_to_user_units(torch.tensor(8.0)).item() == 1.0


class ModelWithUnits(nn.Module):
    def __init__(self):
        super().__init__()
        self.values = ValueNormalizer(2)
        self.times = TimeNormalizer()
        self.layer = nn.Linear(2, 2)


def test_normalizers_travel_in_a_model_state_dict():
    trained = ModelWithUnits()
    trained.values.fit(training_batch())
    trained.times.fit(training_batch())
    state = trained.state_dict()
    assert {"values.mean", "values.std", "values.fitted", "times.offset", "times.scale"} <= set(
        state
    )
    restored = ModelWithUnits()
    with pytest.raises(InvalidArgumentError, match="ValueNormalizer is not fitted"):
        restored.values.inverse(torch.zeros(2))
    restored.load_state_dict(state)
    x = torch.randn(3, 2)
    torch.testing.assert_close(restored.values.inverse(x), trained.values.inverse(x))
    torch.testing.assert_close(restored.times.inverse(x), trained.times.inverse(x))


def test_loading_an_unfitted_state_keeps_it_unfitted():
    restored = TimeNormalizer()
    restored.load_state_dict(TimeNormalizer().state_dict())
    with pytest.raises(InvalidArgumentError, match="TimeNormalizer is not fitted"):
        restored.normalize(torch.zeros(1))


def test_bad_fits():
    with pytest.raises(InvalidArgumentError, match="batch has 2 channels, the normalizer 3"):
        ValueNormalizer(3).fit(training_batch())
    empty_channel = IrregularBatch.from_nan_values(
        torch.arange(2.0), torch.tensor([[[1.0, NAN], [2.0, NAN]]])
    )
    with pytest.raises(InvalidArgumentError, match="channels \\[1\\] have no observations"):
        ValueNormalizer(2).fit(empty_channel)
    one_time = IrregularBatch.from_nan_values(torch.tensor([3.0]), torch.ones(2, 1, 1))
    with pytest.raises(InvalidArgumentError, match="all training times are equal"):
        TimeNormalizer().fit(one_time)
    with pytest.raises(InvalidArgumentError, match="at least 1"):
        ValueNormalizer(0)
