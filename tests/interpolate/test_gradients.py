"""Gradients with respect to the observed values (gradcheck in float64), missing ones included."""

import pytest
import torch

from kutta.interpolate import (
    HermiteCubic,
    LinearInterpolation,
    NaturalCubicSpline,
    RectilinearInterpolation,
    linear_fill,
)

BUILDERS = {
    "linear": lambda v, t: LinearInterpolation.from_values(v, t),
    "linear-forward": lambda v, t: LinearInterpolation.from_values(v, t, fill="forward"),
    "hermite": lambda v, t: HermiteCubic.from_values(v, t),
    "natural": lambda v, t: NaturalCubicSpline.from_values(v, t),
    "rectilinear": lambda v, t: RectilinearInterpolation.from_values(v, t),
}


def inputs():
    times = torch.tensor(
        [[0.0, 0.3, 1.0, 1.4, 2.0], [0.0, 0.5, 0.9, 1.8, 1.8]], dtype=torch.float64
    )
    values = torch.randn(2, 5, 2, dtype=torch.float64)
    missing = torch.zeros_like(values, dtype=torch.bool)
    missing[0, 1, 0] = missing[1, 0, 1] = missing[0, 4, 1] = True
    return times, values, missing


@pytest.mark.parametrize("shared_times", [False, True], ids=["per-series", "shared"])
@pytest.mark.parametrize("name", BUILDERS)
def test_gradcheck_wrt_values(name, shared_times):
    times, values, missing = inputs()
    if shared_times:
        times = times[0]
    build = BUILDERS[name]
    queries = (
        torch.tensor([0.15, 0.7]),
        torch.tensor([1.2, 1.5]),
        torch.tensor(1.9),
    )
    if name == "rectilinear":
        queries = (torch.tensor(0.5), torch.tensor([3.3, 1.6]), torch.tensor(5.2))

    def outputs(observed):
        path = build(torch.where(missing, float("nan"), observed), times)
        queried = [q.to(torch.float64) for q in queries]
        return torch.cat(
            [path.evaluate(q) for q in queried] + [path.derivative(q) for q in queried]
        )

    assert torch.autograd.gradcheck(outputs, (values.requires_grad_(),))


def test_missing_values_get_no_gradient():
    times, values, missing = inputs()
    values = torch.where(missing, float("nan"), values).requires_grad_()
    path = NaturalCubicSpline.from_values(values, times)
    path.evaluate(torch.tensor(0.6, dtype=torch.float64)).sum().backward()
    assert torch.isfinite(values.grad).all()
    assert (values.grad[missing] == 0).all()


def test_gradient_wrt_evaluation_time_is_the_derivative():
    times, values, _ = inputs()
    path = HermiteCubic.from_values(values, times)
    t = torch.tensor([0.55, 1.1], dtype=torch.float64, requires_grad=True)
    path.evaluate(t)[:, 0].sum().backward()
    torch.testing.assert_close(t.grad, path.derivative(t.detach())[:, 0])


def test_linear_fill_gradcheck():
    times, values, missing = inputs()
    assert torch.autograd.gradcheck(
        lambda v: linear_fill(torch.where(missing, float("nan"), v), times),
        (values.requires_grad_(),),
    )
