"""derivative(t) against central finite differences of evaluate(t), away from the knots."""

import pytest
import torch

from kutta.interpolate import (
    HermiteCubic,
    LinearInterpolation,
    NaturalCubicSpline,
    RectilinearInterpolation,
)


@pytest.mark.parametrize("scheme", [LinearInterpolation, HermiteCubic, NaturalCubicSpline])
def test_derivative_matches_finite_differences(scheme):
    steps = torch.rand(3, 7, dtype=torch.float64) + 0.2
    times = torch.cumsum(steps, dim=1)
    values = torch.randn(3, 7, 2, dtype=torch.float64)
    values[1, 4, 0] = float("nan")
    path = scheme.from_values(values, times)
    h = 1e-6
    for k in range(6):
        t = times[:, k] + 0.37 * (times[:, k + 1] - times[:, k])
        central = (path.evaluate(t + h) - path.evaluate(t - h)) / (2 * h)
        torch.testing.assert_close(path.derivative(t), central, atol=1e-7, rtol=1e-7)


def test_rectilinear_derivative_matches_finite_differences():
    times = torch.tensor([0.0, 0.7, 1.0, 2.5], dtype=torch.float64)
    values = torch.randn(2, 4, 2, dtype=torch.float64)
    path = RectilinearInterpolation.from_values(values, times)
    h = 1e-6
    for s in torch.arange(6, dtype=torch.float64) + 0.4:
        central = (path.evaluate(s + h) - path.evaluate(s - h)) / (2 * h)
        torch.testing.assert_close(path.derivative(s), central, atol=1e-7, rtol=1e-7)


def test_extrapolates_with_the_end_pieces():
    times = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)
    values = torch.tensor([[[0.0], [1.0], [3.0]]], dtype=torch.float64)
    path = LinearInterpolation.from_values(values, times)
    assert path.evaluate(-1.0).item() == -1.0
    assert path.evaluate(3.0).item() == 5.0
