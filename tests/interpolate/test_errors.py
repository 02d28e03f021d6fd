"""Bad input gets an InvalidArgumentError that names the problem."""

import pytest
import torch

from kutta.errors import InvalidArgumentError, UnknownNameError
from kutta.interpolate import (
    HermiteCubic,
    LinearInterpolation,
    NaturalCubicSpline,
    RectilinearInterpolation,
    natural_cubic_coeffs,
)

SCHEMES = [LinearInterpolation, HermiteCubic, NaturalCubicSpline, RectilinearInterpolation]
TIMES = torch.tensor([0.0, 1.0, 2.0])


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize(
    ("values", "times", "message"),
    [
        (torch.zeros(3, 2), TIMES, "shape \\(batch, time, channels\\)"),
        (torch.zeros(1, 3, 2, dtype=torch.long), TIMES, "floating point"),
        (torch.zeros(1, 3, 2), torch.tensor([0.0, 1.0]), "2 entries but the values have 3"),
        (torch.zeros(2, 3, 2), torch.zeros(3, 3), "must have shape \\(batch, time\\)"),
        (torch.zeros(1, 3, 2), torch.zeros(1, 1, 3), "shape \\(time,\\) or \\(batch, time\\)"),
        (torch.zeros(1, 3, 2), torch.tensor([0, 1, 2]), "times must be floating point"),
        (torch.zeros(1, 3, 2), torch.tensor([0.0, 2.0, 1.0]), "times\\[2\\] = 1.0 <= times\\[1\\]"),
        (torch.zeros(1, 3, 2), torch.tensor([0.0, 1.0, 1.0]), "strictly increasing"),
        (torch.zeros(1, 3, 2), torch.tensor([0.0, float("nan"), 1.0]), "finite"),
        (torch.zeros(1, 1, 2), torch.tensor([0.0]), "at least 2 time steps"),
        ("not a tensor", TIMES, "must be a torch.Tensor"),
    ],
)
def test_bad_observations(scheme, values, times, message):
    with pytest.raises(InvalidArgumentError, match=message):
        scheme.from_values(values, times)


def test_repeated_times_are_only_allowed_as_trailing_padding():
    values = torch.zeros(2, 4, 1)
    ok = torch.tensor([[0.0, 1.0, 1.0, 1.0], [0.0, 1.0, 2.0, 3.0]])
    LinearInterpolation.from_values(values, ok)
    inner_repeat = torch.tensor([[0.0, 1.0, 2.0, 3.0], [0.0, 1.0, 1.0, 2.0]])
    with pytest.raises(InvalidArgumentError, match="series 1: times\\[2\\]"):
        LinearInterpolation.from_values(values, inner_repeat)
    one_distinct_time = torch.tensor([[0.0, 1.0, 2.0, 3.0], [1.0, 1.0, 1.0, 1.0]])
    with pytest.raises(InvalidArgumentError, match="strictly increasing"):
        LinearInterpolation.from_values(values, one_distinct_time)


def test_bad_evaluation_time_shape():
    path = LinearInterpolation.from_values(torch.zeros(2, 3, 1), TIMES)
    with pytest.raises(InvalidArgumentError, match="scalar or have shape \\(batch,\\) = \\(2,\\)"):
        path.evaluate(torch.zeros(3))


def test_unknown_fill():
    with pytest.raises(UnknownNameError, match="valid fills are: forward, linear"):
        LinearInterpolation.from_values(torch.zeros(1, 3, 1), TIMES, fill="backward")


def test_bad_coefficients():
    with pytest.raises(InvalidArgumentError, match="contain NaN"):
        LinearInterpolation(torch.full((1, 3, 1), float("nan")), TIMES)
    with pytest.raises(InvalidArgumentError, match="\\(batch, time - 1, 4, channels\\)"):
        NaturalCubicSpline(torch.zeros(1, 2, 3, 1), TIMES)
    coeffs = natural_cubic_coeffs(torch.zeros(1, 3, 1), TIMES)
    with pytest.raises(InvalidArgumentError, match="2 entries but the values have 3"):
        NaturalCubicSpline(coeffs, TIMES[:2])
    with pytest.raises(InvalidArgumentError, match="odd number"):
        RectilinearInterpolation(torch.zeros(1, 4, 2))
