"""The paths as a Neural CDE uses them: integrate dz = z dX (exact solution z0 exp(X(T) - X(0))
for any path) with a hand-written RK4 that steps on the knots, over one common time span for a
batch whose series have their own times and lengths."""

import pytest
import torch

from kutta.interpolate import HermiteCubic, LinearInterpolation, NaturalCubicSpline


def rk4(path, start, end, knots, substeps=16):
    """Integrate dz/dt = z * X'(t) (one z per channel) from start to end, z(start) = 1.

    X' jumps at knots (and where a series' path starts or stops being held), so steps end on
    every knot and stages are nudged just inside each knot interval, as a solver given
    ``jump_t=path.grid_points`` does.
    """
    z = torch.ones(path.batch_size, path.channels, dtype=torch.float64)
    marks = torch.unique(torch.cat([knots.flatten(), torch.stack([start, end])]))
    marks = marks[(marks >= start) & (marks <= end)]
    for a, b in zip(marks[:-1], marks[1:]):
        h, nudge = (b - a) / substeps, 1e-12 * (b - a)

        def slope(t, a=a, b=b, nudge=nudge):
            return path.derivative(t.clamp(a + nudge, b - nudge))

        for i in range(substeps):
            t = a + i * h
            k1 = z * slope(t)
            k2 = (z + h / 2 * k1) * slope(t + h / 2)
            k3 = (z + h / 2 * k2) * slope(t + h / 2)
            k4 = (z + h * k3) * slope(t + h)
            z = z + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return z


@pytest.mark.parametrize("scheme", [LinearInterpolation, HermiteCubic, NaturalCubicSpline])
def test_batch_over_a_common_span_matches_the_exact_solution_per_series(scheme):
    times = torch.tensor(
        [[0.0, 0.3, 0.9, 1.4, 2.0], [0.5, 0.8, 1.1, 1.1, 1.1], [0.2, 0.6, 1.5, 1.8, 2.4]],
        dtype=torch.float64,
    )  # series 1 is padded after 1.1
    values = 0.5 * torch.randn(3, 5, 2, dtype=torch.float64)
    path = scheme.from_values(values, times)
    z = rk4(path, times.min(), times.max(), times)
    first, last = path.interval.unbind(dim=1)
    exact = torch.exp(path.evaluate(last) - path.evaluate(first))
    torch.testing.assert_close(z, exact, rtol=1e-7, atol=1e-7)
