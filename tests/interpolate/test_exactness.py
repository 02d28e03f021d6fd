"""Each scheme against exact answers: polynomials it must reproduce, scipy's natural spline,
and convergence orders measured from error slopes."""

import math

import numpy as np
import pytest
import torch
from scipy.interpolate import CubicSpline

from kutta.interpolate import (
    HermiteCubic,
    LinearInterpolation,
    NaturalCubicSpline,
    RectilinearInterpolation,
)

SCHEMES = [LinearInterpolation, HermiteCubic, NaturalCubicSpline]


def irregular_times(batch, length, generator=None):
    steps = torch.rand(batch, length, generator=generator, dtype=torch.float64) + 0.1
    return torch.cumsum(steps, dim=1) - steps[:, :1]


def affine(times, slope, offset):
    """x_c(t) = slope_c * t + offset_c for times (B, T): values (B, T, C)."""
    return times.unsqueeze(-1) * slope + offset


@pytest.mark.parametrize("scheme", SCHEMES)
def test_reproduces_affine_functions_with_per_series_times(scheme):
    times = irregular_times(4, 7)
    slope = torch.tensor([2.0, -0.5, 0.0], dtype=torch.float64)
    offset = torch.tensor([1.0, 3.0, -2.0], dtype=torch.float64)
    path = scheme.from_values(affine(times, slope, offset), times)
    for fraction in [0.0, 0.13, 0.5, 0.77, 1.0]:
        t = times[:, 0] + fraction * (times[:, -1] - times[:, 0])
        torch.testing.assert_close(path.evaluate(t), affine(t.unsqueeze(1), slope, offset)[:, 0])
        torch.testing.assert_close(path.derivative(t), slope.expand(4, 3))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_passes_through_the_observations(scheme):
    times = irregular_times(3, 6)
    values = torch.randn(3, 6, 2, dtype=torch.float64)
    path = scheme.from_values(values, times)
    for k in range(6):
        torch.testing.assert_close(path.evaluate(times[:, k]), values[:, k])


def test_linear_derivative_is_the_secant_and_knots_use_the_left_piece():
    times = torch.tensor([0.0, 1.0, 3.0], dtype=torch.float64)
    values = torch.tensor([[[0.0], [2.0], [3.0]]], dtype=torch.float64)
    path = LinearInterpolation.from_values(values, times)
    assert path.derivative(0.5).item() == 2.0
    assert path.derivative(1.0).item() == 2.0  # left piece at a knot
    assert path.derivative(1.5).item() == 0.5
    assert path.evaluate(2.0).item() == 2.5


def test_natural_spline_matches_scipy():
    # Reference: scipy.interpolate.CubicSpline(bc_type="natural").
    generator = torch.Generator().manual_seed(1)
    times = irregular_times(2, 9, generator)
    values = torch.randn(2, 9, 3, dtype=torch.float64, generator=generator)
    path = NaturalCubicSpline.from_values(values, times)
    for b in range(2):
        reference = CubicSpline(times[b].numpy(), values[b].numpy(), bc_type="natural")
        for t in np.linspace(times[b, 0].item(), times[b, -1].item(), 23):
            query = torch.full((2,), t, dtype=torch.float64)
            np.testing.assert_allclose(path.evaluate(query)[b].numpy(), reference(t), atol=1e-12)
            np.testing.assert_allclose(
                path.derivative(query)[b].numpy(), reference(t, 1), atol=1e-11
            )


def test_natural_spline_is_c2_with_natural_ends():
    times = irregular_times(1, 8)[0]
    values = torch.randn(1, 8, 2, dtype=torch.float64)
    path = NaturalCubicSpline.from_values(values, times)
    pieces = path._pieces[0]
    widths = (times[1:] - times[:-1]).view(-1, 1)
    second_at_end = 2 * pieces[:, 2] + 6 * pieces[:, 3] * widths
    torch.testing.assert_close(second_at_end[:-1], 2 * pieces[1:, 2])
    torch.testing.assert_close(pieces[0, 2], torch.zeros(2, dtype=torch.float64))
    torch.testing.assert_close(second_at_end[-1], torch.zeros(2, dtype=torch.float64))


def test_hermite_is_c1_and_starts_each_piece_with_the_backward_difference():
    times = irregular_times(1, 6)[0]
    values = torch.randn(1, 6, 2, dtype=torch.float64)
    path = HermiteCubic.from_values(values, times)
    secants = (values[0, 1:] - values[0, :-1]) / (times[1:] - times[:-1]).unsqueeze(-1)
    for k in range(1, 5):
        inside = times[k] + 1e-9
        torch.testing.assert_close(path.derivative(inside)[0], secants[k - 1], atol=1e-6, rtol=0)
        torch.testing.assert_close(path.derivative(times[k])[0], secants[k - 1])


def max_error_and_width(scheme, function, derivative, lo, hi, pieces):
    times = torch.linspace(lo, hi, pieces + 1, dtype=torch.float64)
    queries = torch.linspace(lo, hi, 2001, dtype=torch.float64)
    # One copy of the series per query time, so a single call evaluates them all.
    values = function(times).view(1, -1, 1).expand(len(queries), -1, -1)
    path = scheme.from_values(values, times)
    value_error = (path.evaluate(queries)[:, 0] - function(queries)).abs().max().item()
    slope_error = (path.derivative(queries)[:, 0] - derivative(queries)).abs().max().item()
    return value_error, slope_error, (hi - lo) / pieces


def observed_order(scheme, function, derivative, lo, hi):
    rows = [max_error_and_width(scheme, function, derivative, lo, hi, n) for n in (8, 16, 32, 64)]
    value_errors, slope_errors, widths = (np.log(np.array(column)) for column in zip(*rows))
    return np.polyfit(widths, value_errors, 1)[0], np.polyfit(widths, slope_errors, 1)[0]


def test_natural_spline_converges_at_fourth_order():
    # sin has zero second derivative at 0 and pi, so the natural end conditions are exact
    # and the textbook O(h^4) (values) / O(h^3) (derivatives) rates hold up to the ends.
    value_order, slope_order = observed_order(NaturalCubicSpline, torch.sin, torch.cos, 0, math.pi)
    assert 3.8 < value_order < 4.3
    assert 2.8 < slope_order < 3.3


def test_hermite_backward_differences_converge_at_second_order():
    # The end slopes are first-order differences, so values converge at O(h^2), slopes at O(h).
    value_order, slope_order = observed_order(HermiteCubic, torch.exp, torch.exp, 0, 1)
    assert 1.8 < value_order < 2.3
    assert 0.8 < slope_order < 1.3


def test_linear_converges_at_second_order():
    value_order, slope_order = observed_order(LinearInterpolation, torch.exp, torch.exp, 0, 1)
    assert 1.8 < value_order < 2.3
    assert 0.8 < slope_order < 1.3


def test_rectilinear_moves_time_then_values():
    times = torch.tensor([0.0, 1.0, 3.0], dtype=torch.float64)
    values = torch.tensor([[[1.0], [4.0], [-2.0]]], dtype=torch.float64)
    path = RectilinearInterpolation.from_values(values, times)
    assert path.interval.tolist() == [0.0, 4.0]
    assert path.observation_parameters.tolist() == [0.0, 2.0, 4.0]
    expected = {0.0: [0, 1], 0.5: [0.5, 1], 1.0: [1, 1], 1.5: [1, 2.5], 2.0: [1, 4], 3.0: [3, 4]}
    for s, point in expected.items():
        assert path.evaluate(s)[0].tolist() == point
    assert path.derivative(0.5)[0].tolist() == [1.0, 0.0]
    assert path.derivative(1.5)[0].tolist() == [0.0, 3.0]
    assert path.derivative(2.5)[0].tolist() == [2.0, 0.0]
    assert path.derivative(3.5)[0].tolist() == [0.0, -6.0]


def test_shared_and_per_series_times_agree():
    times = torch.linspace(0, 2, 6, dtype=torch.float64)
    values = torch.randn(3, 6, 2, dtype=torch.float64)
    for scheme in SCHEMES:
        shared = scheme.from_values(values, times)
        per_series = scheme.from_values(values, times.expand(3, 6))
        for t in (0.1, 1.0, 1.7):
            torch.testing.assert_close(shared.evaluate(t), per_series.evaluate(t))
            torch.testing.assert_close(shared.derivative(t), per_series.derivative(t))
        assert shared.interval.tolist() == [0.0, 2.0]
        assert per_series.interval.tolist() == [[0.0, 2.0]] * 3


def test_per_series_times_evaluate_each_series_on_its_own_grid():
    times = irregular_times(3, 5)
    values = torch.randn(3, 5, 2, dtype=torch.float64)
    for scheme in SCHEMES:
        batched = scheme.from_values(values, times)
        t = times[:, 1] + 0.3 * (times[:, 2] - times[:, 1])
        for b in range(3):
            alone = scheme.from_values(values[b : b + 1], times[b])
            torch.testing.assert_close(batched.evaluate(t)[b], alone.evaluate(t[b])[0])
            torch.testing.assert_close(batched.derivative(t)[b], alone.derivative(t[b])[0])


def test_stored_coefficients_rebuild_the_same_path():
    from kutta.interpolate import hermite_cubic_coeffs, linear_coeffs, natural_cubic_coeffs

    times = irregular_times(2, 5)
    values = torch.randn(2, 5, 3, dtype=torch.float64)
    values[0, 2, 1] = float("nan")
    pairs = [
        (LinearInterpolation(linear_coeffs(values, times), times), LinearInterpolation),
        (HermiteCubic(hermite_cubic_coeffs(values, times), times), HermiteCubic),
        (NaturalCubicSpline(natural_cubic_coeffs(values, times), times), NaturalCubicSpline),
    ]
    t = times[:, 1] + 0.4
    for stored, scheme in pairs:
        direct = scheme.from_values(values, times)
        torch.testing.assert_close(stored.evaluate(t), direct.evaluate(t))
        torch.testing.assert_close(stored.grid_points, times)


def test_float32_works():
    times = torch.linspace(0, 1, 5)
    values = torch.randn(2, 5, 3)
    for scheme in [*SCHEMES]:
        out = scheme.from_values(values, times).evaluate(0.3)
        assert out.dtype == torch.float32 and out.shape == (2, 3)
    assert RectilinearInterpolation.from_values(values, times).evaluate(1.0).shape == (2, 4)


def test_natural_spline_drops_to_second_order_when_the_ends_are_curved():
    # exp'' != 0 at the ends, where the natural condition X'' = 0 is then an O(1) error in
    # curvature: the documented O(h^2) near the ends, not a bug.
    value_order, _ = observed_order(NaturalCubicSpline, torch.exp, torch.exp, 0, 1)
    assert 1.8 < value_order < 2.3
