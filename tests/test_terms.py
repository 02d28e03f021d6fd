"""kutta.terms.CDETerm: a controlled differential equation solved as an ODE by kutta.solve."""

import pytest
import torch

import kutta
from kutta.errors import InvalidArgumentError
from kutta.interpolate import LinearInterpolation, NaturalCubicSpline, natural_cubic_coeffs
from kutta.terms import CDETerm


def test_linear_cde_has_the_exponential_solution():
    # dz = z dX (one channel) has z(t) = z(0) exp(X(t) - X(0)) for any path X.
    times = torch.linspace(0.0, 2.0, 9, dtype=torch.float64)
    values = torch.stack([torch.sin(3 * times), torch.cos(times)]).unsqueeze(-1)  # (2, 9, 1)
    path = NaturalCubicSpline(natural_cubic_coeffs(values, times), times)
    term = CDETerm(lambda t, z: z.unsqueeze(-1), path)
    z0 = torch.tensor([[1.0], [2.0]], dtype=torch.float64)
    sol = kutta.solve(
        term,
        z0,
        t_eval=times,
        controller=kutta.PIDController(rtol=1e-10, atol=1e-12),
        jump_t=times[1:-1].tolist(),
    )
    expected = z0 * torch.exp(values[:, :, 0] - values[:, :1, 0]).T.unsqueeze(-1)
    torch.testing.assert_close(sol.ys, expected, rtol=1e-8, atol=1e-8)


def test_parameters_of_the_vector_field_are_the_terms():
    field = torch.nn.Linear(3, 6)
    times = torch.linspace(0.0, 1.0, 4)
    path = LinearInterpolation.from_values(torch.randn(2, 4, 2), times)
    term = CDETerm(lambda t, z: field(z).view(2, 3, 2), path)
    assert list(term.parameters()) == []  # a lambda hides them: pass a module to find them
    term = CDETerm(_Field(), path)
    assert len(list(term.parameters())) == 2


class _Field(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(3, 6)

    def forward(self, t, z):
        return self.linear(z).view(*z.shape, 2)


def test_shapes_are_checked():
    times = torch.linspace(0.0, 1.0, 4)
    path = LinearInterpolation.from_values(torch.randn(2, 4, 2), times)
    term = CDETerm(lambda t, z: torch.ones(2, 3, 5), path)
    with pytest.raises(InvalidArgumentError, match=r"must have shape \(\*z.shape, channels\)"):
        kutta.solve(term, torch.zeros(2, 3), t_eval=times)
    with pytest.raises(InvalidArgumentError, match="derivative"):
        CDETerm(lambda t, z: z, object())
