"""collate_irregular: the padding rule, input checks, and results that never depend on padding
or on the other series in the batch."""

import math

import pytest
import torch
from torch.utils.data import DataLoader

from kutta.data import IrregularBatch, collate_irregular, to_union_grid, union_grid
from kutta.errors import InvalidArgumentError
from kutta.interpolate import HermiteCubic, LinearInterpolation

NAN = float("nan")


def random_series(length, channels=2, generator=None):
    times = torch.cumsum(torch.rand(length, generator=generator, dtype=torch.float64) + 0.05, 0)
    values = torch.randn(length, channels, generator=generator, dtype=torch.float64)
    values[torch.rand(length, channels, generator=generator) < 0.3] = NAN
    return times, values


def test_padding_rule():
    a = (torch.tensor([0.0, 1.0, 2.0]), torch.tensor([[1.0], [NAN], [3.0]]))
    b = (torch.tensor([5.0]), torch.tensor([[4.0]]), torch.tensor([[True]]))
    batch = collate_irregular([a, b], pad_to=4)
    assert batch.times.tolist() == [[0.0, 1.0, 2.0, 2.0], [5.0, 5.0, 5.0, 5.0]]
    assert batch.values[..., 0].tolist() == [[1.0, 0.0, 3.0, 0.0], [4.0, 0.0, 0.0, 0.0]]
    assert batch.mask[..., 0].tolist() == [[True, False, True, False], [True, False, False, False]]
    assert batch.lengths.tolist() == [3, 1]


def test_mask_hides_values_and_mappings_work():
    sample = {"times": torch.tensor([0.0, 1.0]), "values": torch.tensor([[1.0], [2.0]])}
    sample["mask"] = torch.tensor([[True], [False]])
    batch = collate_irregular([sample])
    assert batch.values[0, :, 0].tolist() == [1.0, 0.0]


def test_works_as_a_dataloader_collate_fn():
    series = [random_series(n) for n in (3, 7, 5, 2)]
    loader = DataLoader(series, batch_size=3, collate_fn=collate_irregular)
    first, second = list(loader)
    assert first.lengths.tolist() == [3, 7, 5] and second.values.shape == (1, 2, 2)


@pytest.mark.parametrize(
    ("samples", "message"),
    [
        ([], "empty list"),
        (
            [(torch.arange(2.0), torch.zeros(2, 1)), (torch.zeros(1), torch.zeros(1, 2))],
            "channels: \\[1, 2\\]",
        ),
        (
            [(torch.tensor([0.0, 1.0, 1.0]), torch.zeros(3, 1))],
            "sample 0: times must be strictly increasing, but times\\[2\\] = 1.0 <= times\\[1\\]",
        ),
        (
            [(torch.tensor([0.0, 1.0]), torch.zeros(3, 1))],
            "sample 0: values must be a floating \\(2, channels\\)",
        ),
        (
            [(torch.zeros(2, 1), torch.zeros(2, 1))],
            "sample 0: times must be a non-empty floating \\(time,\\)",
        ),
        ([(torch.tensor([0, 1]), torch.zeros(2, 1))], "times must be a non-empty floating"),
        (
            [(torch.arange(2.0), torch.tensor([[NAN], [1.0]]), torch.ones(2, 1))],
            "NaN where mask says observed",
        ),
        ([(torch.arange(2.0), torch.zeros(2, 1), torch.ones(2, 2))], "mask must have the shape"),
        ([torch.zeros(3)], "must be \\(times, values\\)"),
        ([{"times": torch.zeros(1)}], "no \\['values'\\] entry"),
        ([(torch.tensor([0.0, math.inf]), torch.zeros(2, 1))], "sample 0: times must be finite"),
    ],
)
def test_bad_samples(samples, message):
    with pytest.raises(InvalidArgumentError, match=message):
        collate_irregular(samples)


def test_pad_to_shorter_than_a_series():
    with pytest.raises(InvalidArgumentError, match="pad_to=1 is shorter"):
        collate_irregular([(torch.arange(2.0), torch.zeros(2, 1))], pad_to=1)


# --- Masked computations: per-series results must not depend on padding or companions. ---


def masked_mean(batch):
    weights = batch.mask.to(batch.values.dtype)
    return (batch.values * weights).sum(1) / weights.sum(1).clamp(min=1)


def decaying_memory(batch):
    """A recurrent scan like an ODE-RNN's: exact exponential decay between steps, masked
    updates at observations; returns each series' state at its own last step."""
    state = torch.zeros(batch.batch_size, batch.num_channels, dtype=batch.values.dtype)
    for k in range(batch.times.shape[1]):
        gap = batch.times[:, k] - batch.times[:, max(k - 1, 0)]
        state = state * torch.exp(-gap).unsqueeze(-1)
        state = torch.where(batch.mask[:, k], 0.5 * state + batch.values[:, k], state)
    return state


def path_at_own_times(batch, scheme):
    path = scheme.from_values(batch.nan_values(), batch.times, fill="forward")
    first, last = batch.times[:, 0], batch.times.gather(1, (batch.lengths - 1)[:, None])[:, 0]
    fractions = (0.1, 0.5, 0.9, 1.0, 1.3)  # 1.3 extrapolates past the series' end
    return torch.stack([path.evaluate(first + f * (last - first)) for f in fractions], dim=1)


def union_grid_roundtrip(batch):
    on_grid, grid = to_union_grid(batch)
    cumulative = torch.cumsum(on_grid.values, dim=1)  # a computation along the shared grid
    return grid.gather(cumulative).gather(
        1, (batch.lengths - 1).view(-1, 1, 1).expand(-1, 1, batch.num_channels)
    )


COMPUTATIONS = {
    "masked mean": masked_mean,
    "recurrent scan": decaying_memory,
    "linear path": lambda b: path_at_own_times(b, LinearInterpolation),
    "hermite path": lambda b: path_at_own_times(b, HermiteCubic),
    "union grid": union_grid_roundtrip,
}


@pytest.mark.parametrize("name", COMPUTATIONS)
@pytest.mark.parametrize("seed", range(4))
def test_results_do_not_depend_on_padding_or_companions(name, seed):
    compute = COMPUTATIONS[name]
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, 9, (4,), generator=generator).tolist()
    series = [random_series(n, generator=generator) for n in lengths]
    for s in series:  # paths need an observation per channel somewhere; keep step 0 observed
        s[1][0] = torch.randn(2, generator=generator, dtype=torch.float64)
    alone = [compute(collate_irregular([s])) for s in series]
    batched = compute(collate_irregular(series, pad_to=12))
    shuffled_order = [2, 0, 3, 1]
    shuffled = compute(collate_irregular([series[i] for i in shuffled_order]))
    for i in range(4):
        torch.testing.assert_close(batched[i], alone[i][0], rtol=0, atol=1e-12)
        j = shuffled_order.index(i)
        torch.testing.assert_close(shuffled[j], alone[i][0], rtol=0, atol=1e-12)


def test_union_grid_is_consistent_with_the_batch():
    series = [random_series(n) for n in (3, 5)]
    batch = collate_irregular(series)
    grid = union_grid(batch)
    assert torch.equal(grid.times, torch.cat([s[0] for s in series]).sort().values)
    assert isinstance(batch, IrregularBatch)
