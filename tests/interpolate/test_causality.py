"""Causal schemes: changing observations after t_k leaves X and X' on [t_0, t_k] unchanged.
The natural spline is the control case: it is not causal, so the same check must fail."""

import pytest
import torch

from kutta.interpolate import (
    HermiteCubic,
    LinearInterpolation,
    NaturalCubicSpline,
    RectilinearInterpolation,
)

NAN = float("nan")


def observations():
    times = torch.tensor([0.0, 0.5, 1.5, 2.0, 3.0, 4.5], dtype=torch.float64)
    values = torch.randn(2, 6, 3, dtype=torch.float64)
    values[0, 2, 1] = NAN  # a gap in one channel, straddling the cut below
    values[1, 3, 0] = NAN
    return times, values


def with_future_changed(values, cut):
    changed = values.clone()
    changed[:, cut + 1 :] = torch.randn_like(changed[:, cut + 1 :])
    return changed


def past_queries(times, cut):
    inner = [times[k] + f * (times[k + 1] - times[k]) for k in range(cut) for f in (0.3, 0.8)]
    return [times[0], *inner, *times[: cut + 1]]


@pytest.mark.parametrize(
    "build",
    [
        lambda v, t: LinearInterpolation.from_values(v, t, fill="forward"),
        lambda v, t: HermiteCubic.from_values(v, t),
    ],
    ids=["linear", "hermite"],
)
@pytest.mark.parametrize("cut", [1, 2, 3])
def test_causal_in_time(build, cut):
    times, values = observations()
    before, after = build(values, times), build(with_future_changed(values, cut), times)
    for t in past_queries(times, cut):
        torch.testing.assert_close(before.evaluate(t), after.evaluate(t), rtol=0, atol=0)
        torch.testing.assert_close(before.derivative(t), after.derivative(t), rtol=0, atol=0)


@pytest.mark.parametrize("cut", [1, 2, 3])
def test_rectilinear_is_causal_in_its_parameter(cut):
    times, values = observations()
    before = RectilinearInterpolation.from_values(values, times)
    after = RectilinearInterpolation.from_values(with_future_changed(values, cut), times)
    # Up to observation `cut` (s = 2 cut) and along the following time-only segment.
    for s in torch.linspace(0, 2 * cut + 1, 4 * cut + 3, dtype=torch.float64):
        torch.testing.assert_close(before.evaluate(s), after.evaluate(s), rtol=0, atol=0)
        torch.testing.assert_close(before.derivative(s), after.derivative(s), rtol=0, atol=0)


def test_linear_fill_is_not_causal_across_a_gap():
    times, values = observations()
    build = LinearInterpolation.from_values  # default fill="linear", like torchcde
    before, after = build(values, times), build(with_future_changed(values, 2), times)
    assert not torch.equal(before.evaluate(times[2]), after.evaluate(times[2]))


def test_natural_spline_is_not_causal():
    times, values = observations()
    before = NaturalCubicSpline.from_values(values, times)
    after = NaturalCubicSpline.from_values(with_future_changed(values, 3), times)
    assert not torch.allclose(before.evaluate(times[1] + 0.1), after.evaluate(times[1] + 0.1))
