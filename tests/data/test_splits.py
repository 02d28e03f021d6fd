"""Observed/target splits: correct steps, seeded, padding never selected, clear errors."""

import pytest
import torch

from kutta.data import (
    collate_irregular,
    observe_first,
    select_steps,
    split_extrapolation,
    split_indices,
    split_interpolation,
)
from kutta.errors import InvalidArgumentError


def ragged_batch(lengths=(10, 6, 3)):
    series = []
    for n in lengths:
        times = torch.cumsum(torch.rand(n) + 0.1, 0)
        values = torch.stack([times, -times], dim=1)  # values identify their time step
        values[1::3, 1] = float("nan")
        series.append((times, values))
    return collate_irregular(series)


def steps_of(batch, b):
    """(time, value0) pairs of series b's real steps."""
    n = int(batch.lengths[b])
    return list(zip(batch.times[b, :n].tolist(), batch.values[b, :n, 0].tolist()))


def test_interpolation_split_observes_a_sorted_subset_and_targets_everything():
    batch = ragged_batch()
    split = split_interpolation(batch, 4, seed=3)
    assert split.target is batch
    assert split.observed.lengths.tolist() == [4, 4, 3]
    for b in range(3):
        chosen = steps_of(split.observed, b)
        assert set(chosen) <= set(steps_of(batch, b))
        assert [t for t, _ in chosen] == sorted(t for t, _ in chosen)
        assert all(t == v for t, v in chosen)  # values travelled with their times
    # Masks travel too: channel 1 stays missing exactly where it was.
    observed = split.observed
    for b in range(3):
        real = int(batch.lengths[b])
        full = dict(zip(batch.times[b, :real].tolist(), batch.mask[b, :real, 1].tolist()))
        n = int(observed.lengths[b])
        assert [full[t] for t in observed.times[b, :n].tolist()] == observed.mask[b, :n, 1].tolist()
    assert not observed.mask[~observed.step_mask].any()


def test_interpolation_split_is_seeded():
    batch = ragged_batch()
    a, b = (split_interpolation(batch, 0.5, seed=7).observed for _ in range(2))
    assert torch.equal(a.times, b.times)
    c = split_interpolation(batch, 0.5, seed=8).observed
    assert not torch.equal(a.times, c.times)
    assert a.lengths.tolist() == [5, 3, 2]  # round(0.5 * 3) = 2


def test_every_step_gets_chosen_by_some_seed():
    batch = ragged_batch((6,))
    seen = set()
    for seed in range(40):
        seen |= {t for t, _ in steps_of(split_interpolation(batch, 1, seed=seed).observed, 0)}
    assert seen == {t for t, _ in steps_of(batch, 0)}


def test_extrapolation_split_cuts_each_series_in_half():
    batch = ragged_batch()
    observed, target = split_extrapolation(batch)
    assert observed.lengths.tolist() == [5, 3, 1] and target.lengths.tolist() == [5, 3, 2]
    for b in range(3):
        assert steps_of(observed, b) + steps_of(target, b) == steps_of(batch, b)


def test_extrapolation_split_at_a_time():
    times = torch.tensor([0.0, 1.0, 2.0, 3.0])
    batch = collate_irregular([(times, torch.ones(4, 1)), (times[1:] + 0.5, torch.ones(3, 1))])
    observed, target = split_extrapolation(batch, at=2.0)
    assert observed.times.tolist() == [[0.0, 1.0, 2.0], [1.5, 1.5, 1.5]]
    assert target.times.tolist() == [[3.0, 3.0], [2.5, 3.5]]
    with pytest.raises(InvalidArgumentError, match="leaves series 1 with no steps"):
        split_extrapolation(batch, at=1.2)


def test_observe_first_with_per_series_counts():
    batch = ragged_batch()
    observed, target = observe_first(batch, torch.tensor([2, 5, 1]))
    assert observed.lengths.tolist() == [2, 5, 1] and target.lengths.tolist() == [8, 1, 2]
    assert steps_of(observed, 1) + steps_of(target, 1) == steps_of(batch, 1)
    with pytest.raises(
        InvalidArgumentError, match="series 2 has 3 steps, so observing the first 3"
    ):
        observe_first(batch, 3)
    with pytest.raises(InvalidArgumentError, match="at least 1"):
        observe_first(batch, 0)


@pytest.mark.parametrize(
    ("observed", "message"),
    [
        (0, "at least 1 step"),
        (1.5, "in \\(0, 1\\]"),
        (0.0, "in \\(0, 1\\]"),
        ("half", "int or a float"),
    ],
)
def test_interpolation_split_bad_arguments(observed, message):
    with pytest.raises(InvalidArgumentError, match=message):
        split_interpolation(ragged_batch(), observed, seed=0)


def test_select_steps_ignores_padding():
    batch = ragged_batch((2, 4))
    everything = torch.ones_like(batch.step_mask)
    assert torch.equal(select_steps(batch, everything).times, batch.times)


def test_split_indices_partition():
    parts = split_indices(11, (0.6, 0.2, 0.2), seed=1)
    assert [len(p) for p in parts] == [7, 2, 2]
    assert sorted(torch.cat(parts).tolist()) == list(range(11))
    assert all(torch.equal(p, q) for p, q in zip(parts, split_indices(11, (0.6, 0.2, 0.2), seed=1)))
    with pytest.raises(InvalidArgumentError, match="summing to 1"):
        split_indices(10, (0.5, 0.4), seed=0)
