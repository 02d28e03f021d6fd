"""Agreement with torchcde 0.2.5 on one irregular, partially observed series.

Reference values were computed with torchcde 0.2.5 (natural_cubic_coeffs + CubicSpline,
hermite_cubic_coefficients_with_backward_differences + CubicSpline, linear_interpolation_coeffs
(+ rectilinear=0) + LinearInterpolation) in float64 and copied here; torchcde is not imported.
torchcde fills missing values linearly for the Hermite scheme, hence fill="linear" below.
"""

import pytest
import torch

from kutta.interpolate import (
    HermiteCubic,
    LinearInterpolation,
    NaturalCubicSpline,
    RectilinearInterpolation,
)

NAN = float("nan")
TIMES = torch.tensor([0.0, 0.4, 1.0, 1.3, 2.1, 3.0], dtype=torch.float64)
VALUES = torch.tensor(
    [[[0.5, NAN], [NAN, 1.0], [-1.0, 0.3], [2.0, NAN], [NAN, -0.7], [1.5, NAN]]],
    dtype=torch.float64,
)
QUERIES = [0.2, 0.4, 0.7, 1.15, 1.9, 2.5, 3.0]

REFERENCE = {
    "natural": (
        [[-0.7141553032464198, 1.0372061229259173], [-1.699771780681235, 1.0],
         [-2.249757516973812, 0.7171678546389344], [0.4382171078906818, 0.09974286419936704],
         [5.009287183807167, -0.6076037306932376], [3.9226000892740274, -0.7602211777875874],
         [1.5, -0.7]],
        [[-5.689878473212757, 0.06201020487652878], [-3.9758372796257198, -0.49608163901223035],
         [0.7377760027386313, -1.278066331697437], [10.57688851486278, -1.2769897207645513],
         [0.9815645776767941, -0.5729581394690066], [-3.9832527294023676, 0.012904538097340212],
         [-5.2761739031209, 0.17421126431409217]],
    ),
    "hermite": (
        [[0.2, 1.0], [-0.1, 1.0], [-0.55, 0.7375], [0.06874999999999831, 0.1539772727272728],
         [2.209558823529412, -0.5181818181818181], [1.6470588235294117, -0.8122334455667789],
         [1.5, -0.7]],
        [[-1.5, 0.0], [-1.5, 0.0], [-1.5, -1.4583333333333328], [12.874999999999991, -0.8446969696969697],
         [-3.5110294117647047, -0.909090909090909], [-0.2941176470588235, 0.16835016835016825],
         [-0.2941176470588235, 0.0]],
    ),
    "linear": (
        [[0.2, 1.0], [-0.1, 1.0], [-0.55, 0.65], [0.5, 0.16363636363636372],
         [1.8235294117647058, -0.5181818181818181], [1.6470588235294117, -0.7], [1.5, -0.7]],
        [[-1.5, 0.0], [-1.5, 0.0], [-1.5, -1.1666666666666667], [10.0, -0.9090909090909091],
         [-0.2941176470588236, -0.909090909090909], [-0.2941176470588235, 0.0],
         [-0.2941176470588235, 0.0]],
    ),
}  # fmt: skip

BUILDERS = {
    "natural": NaturalCubicSpline.from_values,
    "hermite": lambda v, t: HermiteCubic.from_values(v, t, fill="linear"),
    "linear": LinearInterpolation.from_values,
}


@pytest.mark.parametrize("name", REFERENCE)
def test_matches_torchcde(name):
    path = BUILDERS[name](VALUES, TIMES)
    expected_values, expected_slopes = (
        torch.tensor(r, dtype=torch.float64) for r in REFERENCE[name]
    )
    values = torch.stack([path.evaluate(q)[0] for q in QUERIES])
    slopes = torch.stack([path.derivative(q)[0] for q in QUERIES])
    torch.testing.assert_close(values, expected_values, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(slopes, expected_slopes, rtol=1e-12, atol=1e-12)


def test_rectilinear_matches_torchcde():
    values = VALUES.clone()
    values[0, 0] = torch.tensor(
        [0.5, 0.8], dtype=torch.float64
    )  # torchcde warns about leading NaNs; avoid them
    path = RectilinearInterpolation.from_values(values, TIMES)
    parameters = [0.5, 1.5, 2.0, 3.25, 5.5, 7.9, 9.5]
    expected_values = [[0.2, 0.5, 0.8], [0.4, 0.5, 0.9], [0.4, 0.5, 1.0], [1.0, 0.125, 0.825],
                       [1.3, 0.5, 0.3], [2.1, 2.0, -0.6], [3.0, 1.75, -0.7]]  # fmt: skip
    expected_slopes = [[0.4, 0.0, 0.0], [0.0, 0.0, 0.2], [0.0, 0.0, 0.2], [0.0, -1.5, -0.7],
                       [0.0, 3.0, 0.0], [0.0, 0.0, -1.0], [0.0, -0.5, 0.0]]  # fmt: skip
    for s, value, slope in zip(parameters, expected_values, expected_slopes):
        torch.testing.assert_close(path.evaluate(s)[0].tolist(), value, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(path.derivative(s)[0].tolist(), slope, rtol=1e-12, atol=1e-12)
