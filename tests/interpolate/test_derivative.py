"""derivative(t) against central finite differences of evaluate(t), away from the knots."""

import pytest
import torch

from kutta.interpolate import (
    HermiteCubic,
    LinearInterpolation,
    NaturalCubicSpline,
    RectilinearInterpolation,
)

NAN = float("nan")


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


def test_held_constant_outside_the_interval():
    times = torch.tensor([[0.0, 1.0, 2.0], [0.5, 1.0, 1.0]], dtype=torch.float64)  # 1 is padded
    values = torch.tensor([[[0.0], [1.0], [3.0]], [[4.0], [5.0], [NAN]]], dtype=torch.float64)
    for scheme in (LinearInterpolation, HermiteCubic, NaturalCubicSpline):
        path = scheme.from_values(values, times)
        for t, expected in [(-1.0, [0.0, 4.0]), (0.2, None), (1.7, None), (3.0, [3.0, 5.0])]:
            query = torch.full((2,), t, dtype=torch.float64)
            out = path.evaluate(query)[:, 0]
            if expected is not None:
                assert out.tolist() == expected
                assert path.derivative(query).abs().max() == 0
        before = path.derivative(torch.tensor([-1.0, 0.2], dtype=torch.float64))
        assert before[0, 0] == 0 and before[1, 0] == 0  # series 1 starts at 0.5
        after = path.derivative(torch.tensor([1.7, 1.7], dtype=torch.float64))
        assert after[0, 0] != 0 and after[1, 0] == 0  # series 1 ends at 1.0
    shared = LinearInterpolation.from_values(values[:1], times[0])
    assert shared.evaluate(-1.0).item() == 0.0 and shared.evaluate(5.0).item() == 3.0
    assert shared.derivative(-1.0).item() == 0.0 and shared.derivative(5.0).item() == 0.0


def test_gradient_wrt_time_is_exact_at_the_ends():
    times = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)
    values = torch.tensor([[[0.0], [1.0], [3.0]]], dtype=torch.float64)
    path = LinearInterpolation.from_values(values, times)
    for t, slope in [(0.0, 1.0), (2.0, 2.0), (2.5, 0.0), (-0.5, 0.0)]:
        t = torch.tensor(t, dtype=torch.float64, requires_grad=True)
        path.evaluate(t).sum().backward()
        assert t.grad.item() == slope
