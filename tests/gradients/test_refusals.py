"""A gradient strategy that cannot handle a case says so before the solve runs (issue 3)."""

import math

import pytest
import torch
from torch import nn

import kutta
from kutta.errors import InvalidArgumentError

DT = torch.float64


class CountingField(nn.Module):
    def __init__(self):
        super().__init__()
        self.rate = nn.Parameter(torch.tensor(-0.5, dtype=DT))
        self.calls = 0

    def forward(self, t, y):
        self.calls += 1
        return self.rate * y


class Ball(nn.Module):
    """Height and velocity of a ball falling under gravity ``g``."""

    def __init__(self):
        super().__init__()
        self.g = nn.Parameter(torch.tensor(9.81, dtype=DT))
        self.calls = 0

    def forward(self, t, y):
        self.calls += 1
        return torch.stack([y[1], -self.g])


@pytest.mark.parametrize("max_steps", [None, math.inf])
def test_recursive_checkpoint_refuses_an_unbounded_adaptive_solve(max_steps):
    field = CountingField()
    y0 = torch.ones(2, dtype=DT, requires_grad=True)
    with pytest.raises(InvalidArgumentError, match="bounded number of steps.*max_steps"):
        kutta.solve(
            field,
            y0,
            t_eval=torch.tensor([0.0, 1.0], dtype=DT),
            gradient=kutta.RecursiveCheckpoint(),
            max_steps=max_steps,
        )
    assert field.calls == 0


def test_recursive_checkpoint_takes_a_fixed_step_solve_without_a_budget():
    # A fixed-step solve has as many steps as its grid, however large max_steps is.
    field = CountingField()
    y0 = torch.ones(2, dtype=DT, requires_grad=True)
    sol = kutta.solve(
        field,
        y0,
        t_eval=torch.tensor([0.0, 1.0], dtype=DT),
        method="rk4",
        step_size=0.1,
        gradient=kutta.RecursiveCheckpoint(),
        max_steps=math.inf,
    )
    sol.ys[-1].sum().backward()
    torch.testing.assert_close(y0.grad, torch.full_like(y0, math.exp(-0.5)), rtol=1e-6, atol=0)


NON_DIFFERENTIABLE_EVENTS = {
    "comparison": lambda t, y: (y[0] > 0).to(y.dtype) - 0.5,
    "python number": lambda t, y: torch.tensor(float(y[0]), dtype=y.dtype),
    "detach": lambda t, y: y[0].detach(),
}


@pytest.mark.parametrize("name", sorted(NON_DIFFERENTIABLE_EVENTS))
def test_adjoint_refuses_a_non_differentiable_event_function(name):
    ball = Ball()
    y0 = torch.tensor([2.0, 0.5], dtype=DT, requires_grad=True)
    with pytest.raises(InvalidArgumentError, match="event_fn.*not differentiable"):
        kutta.odeint_event(
            ball,
            y0,
            torch.tensor(0.0, dtype=DT),
            event_fn=NON_DIFFERENTIABLE_EVENTS[name],
            odeint_interface=kutta.odeint_adjoint,
        )
    assert ball.calls == 0


def test_a_non_differentiable_event_function_is_fine_without_gradients():
    ball = Ball()
    y0 = torch.tensor([2.0, 0.5], dtype=DT)
    with torch.no_grad():
        event_t, _ = kutta.odeint_adjoint(
            ball,
            y0,
            torch.tensor([0.0, 5.0], dtype=DT),
            event_fn=NON_DIFFERENTIABLE_EVENTS["comparison"],
            rtol=1e-9,
            atol=1e-11,
        )
    # y(t) = 2 + 0.5 t - g t^2 / 2 = 0
    g = 9.81
    exact = (0.5 + math.sqrt(0.25 + 4 * g)) / g
    assert abs(float(event_t) - exact) < 1e-6


@pytest.mark.parametrize("strategy", [kutta.Adjoint(), kutta.InterpolatedAdjoint()])
def test_native_adjoints_refuse_events_before_running(strategy):
    field = CountingField()
    with pytest.raises(InvalidArgumentError, match="events"):
        kutta.solve(
            field,
            torch.ones(2, dtype=DT, requires_grad=True),
            t_eval=torch.tensor([0.0, 1.0], dtype=DT),
            gradient=strategy,
            event_fn=lambda t, y: y.sum() - 0.5,
        )
    assert field.calls == 0


@pytest.mark.parametrize(
    ("method", "message"),
    [("rk4", "takes fixed steps"), (42, "must be a kutta Method or a name"), ("nope", "nope")],
)
def test_native_adjoint_refuses_a_backward_method_it_cannot_use(method, message):
    field = CountingField()
    with pytest.raises(InvalidArgumentError, match=message):
        kutta.solve(
            field,
            torch.ones(2, dtype=DT, requires_grad=True),
            t_eval=torch.tensor([0.0, 1.0], dtype=DT),
            gradient=kutta.Adjoint(method=method),
        )
    assert field.calls == 0
