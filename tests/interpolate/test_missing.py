"""NaN marks a missing value: filling rules, all-missing channels, and trailing time padding."""

import pytest
import torch

from kutta.interpolate import (
    HermiteCubic,
    LinearInterpolation,
    NaturalCubicSpline,
    RectilinearInterpolation,
    forward_fill,
    hermite_cubic_coeffs,
    linear_coeffs,
    linear_fill,
    natural_cubic_coeffs,
    with_time_channel,
)

NAN = float("nan")


def column(*xs):
    return torch.tensor(xs, dtype=torch.float64).view(1, -1, 1)


def test_forward_fill_holds_the_last_observation_and_backfills_the_start():
    filled = forward_fill(column(NAN, 2.0, NAN, NAN, 5.0, NAN))
    assert filled.flatten().tolist() == [2.0, 2.0, 2.0, 2.0, 5.0, 5.0]


def test_linear_fill_interpolates_in_time_not_in_index():
    times = torch.tensor([0.0, 1.0, 4.0, 5.0, 6.0], dtype=torch.float64)
    filled = linear_fill(column(NAN, 0.0, NAN, 5.0, NAN), times)
    assert filled.flatten().tolist() == [0.0, 0.0, 3.75, 5.0, 5.0]  # by index it would be 2.5


def test_channels_fill_independently_and_empty_channels_become_zero():
    values = torch.tensor([[[1.0, NAN, NAN], [NAN, 2.0, NAN], [3.0, NAN, NAN]]])
    filled = forward_fill(values)
    assert filled[0].tolist() == [[1.0, 2.0, 0.0], [1.0, 2.0, 0.0], [3.0, 2.0, 0.0]]
    filled = linear_fill(values, torch.arange(3.0))
    assert filled[0].tolist() == [[1.0, 2.0, 0.0], [2.0, 2.0, 0.0], [3.0, 2.0, 0.0]]


def test_linear_path_with_gaps_is_the_path_through_the_observed_points():
    times = torch.tensor([0.0, 1.0, 2.5, 3.0, 4.0], dtype=torch.float64)
    values = column(1.0, NAN, NAN, 4.0, 2.0)
    gappy = LinearInterpolation.from_values(values, times)
    observed = [0, 3, 4]
    direct = LinearInterpolation.from_values(values[:, observed], times[observed])
    for t in torch.linspace(0, 4, 17, dtype=torch.float64):
        torch.testing.assert_close(gappy.evaluate(t), direct.evaluate(t))


def test_with_time_channel_prepends_time():
    times = torch.tensor([[0.0, 1.0], [2.0, 5.0]])
    out = with_time_channel(torch.ones(2, 2, 1), times)
    assert out.tolist() == [[[0.0, 1.0], [1.0, 1.0]], [[2.0, 1.0], [5.0, 1.0]]]


def pad(times, values, extra):
    """Trailing padding: repeat the last time, put garbage (not NaN) in the values."""
    times = torch.cat([times, times[-1:].expand(extra)])
    garbage = torch.full((values.shape[0], extra, values.shape[2]), 123.0, dtype=values.dtype)
    return times, torch.cat([values, garbage], dim=1)


@pytest.mark.parametrize("scheme", [LinearInterpolation, HermiteCubic, NaturalCubicSpline])
def test_trailing_padding_of_per_series_times_changes_nothing(scheme):
    short_times = torch.tensor([0.0, 0.4, 1.0, 1.7], dtype=torch.float64)
    long_times = torch.tensor([0.0, 0.2, 0.5, 0.9, 1.6, 2.0], dtype=torch.float64)
    short_values = torch.randn(1, 4, 2, dtype=torch.float64)
    short_values[0, 3, 1] = NAN  # the last real step is missing in one channel
    long_values = torch.randn(1, 6, 2, dtype=torch.float64)
    padded_times, padded_values = pad(short_times, short_values, 2)
    batch = scheme.from_values(
        torch.cat([padded_values, long_values]), torch.stack([padded_times, long_times])
    )
    short = scheme.from_values(short_values, short_times)
    long = scheme.from_values(long_values, long_times)
    assert batch.interval.tolist() == [[0.0, 1.7], [0.0, 2.0]]
    for t in [0.1, 0.4, 1.2, 1.7, 1.9, 2.5]:  # includes extrapolation past the short end
        query = torch.tensor([t, t], dtype=torch.float64)
        torch.testing.assert_close(batch.evaluate(query)[0], short.evaluate(t)[0])
        torch.testing.assert_close(batch.derivative(query)[0], short.derivative(t)[0])
        torch.testing.assert_close(batch.evaluate(query)[1], long.evaluate(t)[0])


def test_rectilinear_padding_makes_the_path_constant_after_the_end():
    times, values = pad(torch.tensor([0.0, 1.0, 2.0]), torch.randn(1, 3, 2), 2)
    path = RectilinearInterpolation.from_values(values, times.unsqueeze(0))
    end = path.evaluate(4.0)
    for s in [4.5, 5.0, 6.0]:
        torch.testing.assert_close(path.evaluate(s), end)
        assert path.derivative(s).abs().max() == 0


def test_natural_spline_with_gaps_is_the_spline_through_the_observed_points():
    # Leading/trailing gaps take the first/last observation and count as knots (torchcde's rule);
    # interior gaps are skipped.
    times = torch.tensor([0.0, 0.5, 1.0, 2.5, 3.0, 4.0], dtype=torch.float64)
    gappy = NaturalCubicSpline.from_values(column(NAN, 1.0, NAN, 4.0, -2.0, NAN), times)
    knots = [0, 1, 3, 4, 5]
    direct = NaturalCubicSpline.from_values(column(1.0, 1.0, 4.0, -2.0, -2.0), times[knots])
    for t in torch.linspace(0.1, 3.9, 13, dtype=torch.float64):
        torch.testing.assert_close(gappy.evaluate(t), direct.evaluate(t))
        torch.testing.assert_close(gappy.derivative(t), direct.derivative(t))


@pytest.mark.parametrize("scheme", [LinearInterpolation, HermiteCubic, NaturalCubicSpline])
def test_coefficients_of_a_padded_dataset_can_be_sliced_into_batches(scheme):
    # torchcde's workflow: compute coefficients once for the whole dataset, index batches.
    coefficients = {
        LinearInterpolation: linear_coeffs,
        HermiteCubic: hermite_cubic_coeffs,
        NaturalCubicSpline: natural_cubic_coeffs,
    }[scheme]
    lengths = [5, 3, 7, 4]
    times = torch.zeros(4, 7, dtype=torch.float64)
    values = torch.full((4, 7, 2), NAN, dtype=torch.float64)
    for b, n in enumerate(lengths):
        times[b, :n] = torch.cumsum(torch.rand(n, dtype=torch.float64) + 0.1, 0)
        times[b, n:] = times[b, n - 1]
        values[b, :n] = torch.randn(n, 2, dtype=torch.float64)
    dataset_coeffs = coefficients(values, times)
    pick = torch.tensor([3, 1])
    from_dataset = scheme(dataset_coeffs[pick], times[pick])
    own = [scheme.from_values(values[b : b + 1, :n], times[b, :n]) for b, n in [(3, 4), (1, 3)]]
    for fraction in (0.0, 0.3, 0.75, 1.0):
        t = torch.stack([times[3, 0] + fraction * (times[3, 3] - times[3, 0]),
                         times[1, 0] + fraction * (times[1, 2] - times[1, 0])])  # fmt: skip
        torch.testing.assert_close(from_dataset.evaluate(t)[0], own[0].evaluate(t[0])[0])
        torch.testing.assert_close(from_dataset.evaluate(t)[1], own[1].evaluate(t[1])[0])
        torch.testing.assert_close(from_dataset.derivative(t)[1], own[1].derivative(t[1])[0])
