"""Events: location to 1e-8 on problems with known event times, differentiable event times
(torchdiffeq's ``odeint_event`` semantics), and non-terminal events in ``kutta.solve``.

Falling ball (no drag): height ``x(t) = h + v0 t - g t^2 / 2`` hits the ground at
``t* = (v0 + sqrt(v0^2 + 2 g h)) / g`` (``sqrt(2h/g)`` from rest), so
``dt*/dh = 1 / sqrt(v0^2 + 2 g h)`` and ``dt*/dv0 = (1 + v0 / sqrt(v0^2 + 2 g h)) / g``.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

import kutta
from kutta import odeint_event

F64 = torch.float64
G = 9.81


def falling(t, y):
    return torch.stack([y[1], -G * torch.ones_like(y[1])])


def ground(t, y):
    return y[0]


def impact_time(h: float, v0: float) -> float:
    return (v0 + math.sqrt(v0 * v0 + 2 * G * h)) / G


@pytest.mark.parametrize("method", ["dopri5", "tsit5", "bosh3", "dopri8"])
@pytest.mark.parametrize("h, v0", [(10.0, 0.0), (2.0, 3.0), (1.0, -1.0)])
def test_bouncing_ball_impact_is_located_to_1e_8(method, h, v0):
    y0 = torch.tensor([h, v0], dtype=F64)
    t_event, ys = odeint_event(
        falling, y0, torch.tensor(0.0, dtype=F64), event_fn=ground, method=method
    )
    assert abs(float(t_event) - impact_time(h, v0)) < 1e-8
    assert ys.shape == (2, 2)
    assert abs(float(ys[-1, 0])) < 1e-8
    assert float(ys[-1, 1]) == pytest.approx(v0 - G * impact_time(h, v0), abs=1e-7)
    torch.testing.assert_close(ys[0], y0)


def test_bouncing_ball_bounces():
    """Three bounces with restitution 0.8, each impact restarted from the last one."""
    t0, state = torch.tensor(0.0, dtype=F64), torch.tensor([5.0, 0.0], dtype=F64)
    expected_t, v_up = math.sqrt(2 * 5.0 / G), None
    for _ in range(3):
        t_event, ys = odeint_event(
            falling, state, t0, event_fn=ground, rtol=1e-10, atol=1e-12, method="dopri5"
        )
        if v_up is not None:
            expected_t += 2 * v_up / G  # up and down again
        assert abs(float(t_event) - expected_t) < 1e-8
        v_up = -0.8 * float(ys[-1, 1])
        t0 = t_event.detach()
        state = torch.tensor([0.0, v_up], dtype=F64) + torch.tensor([1e-12, 0.0], dtype=F64)


def test_event_time_gradient_matches_the_analytic_one_and_finite_differences():
    h, v0 = 2.0, 3.0
    y0 = torch.tensor([h, v0], dtype=F64, requires_grad=True)
    t_event, _ = odeint_event(
        falling, y0, torch.tensor(0.0, dtype=F64), event_fn=ground, rtol=1e-10, atol=1e-12
    )
    t_event.backward()
    root = math.sqrt(v0 * v0 + 2 * G * h)
    assert y0.grad.tolist() == pytest.approx([1 / root, (1 + v0 / root) / G], rel=1e-7)

    def event_time(h_, v_):
        with torch.no_grad():
            te, _ = odeint_event(
                falling,
                torch.tensor([h_, v_], dtype=F64),
                torch.tensor(0.0, dtype=F64),
                event_fn=ground,
                rtol=1e-12,
                atol=1e-14,
            )
        return float(te)

    eps = 1e-5
    fd_h = (event_time(h + eps, v0) - event_time(h - eps, v0)) / (2 * eps)
    fd_v = (event_time(h, v0 + eps) - event_time(h, v0 - eps)) / (2 * eps)
    assert y0.grad.tolist() == pytest.approx([fd_h, fd_v], rel=1e-6)


class Decay(nn.Module):
    def __init__(self, rate: float):
        super().__init__()
        self.rate = nn.Parameter(torch.tensor(rate, dtype=F64))

    def forward(self, t, y):
        return -self.rate * y


def test_event_time_gradient_with_respect_to_parameters():
    """y' = -k y from 1 until y = 1/2: t* = ln 2 / k, dt*/dk = -ln 2 / k^2."""
    field = Decay(0.7)
    t_event, _ = odeint_event(
        field,
        torch.ones(1, dtype=F64),
        torch.tensor(0.0, dtype=F64),
        event_fn=lambda t, y: y[0] - 0.5,
        rtol=1e-10,
        atol=1e-12,
    )
    assert abs(float(t_event.detach()) - math.log(2) / 0.7) < 1e-8
    t_event.backward()
    assert float(field.rate.grad) == pytest.approx(-math.log(2) / 0.49, rel=1e-7)


def test_gradient_through_the_state_at_the_event_matches_finite_differences():
    """A loss on the state at the event (which moves with the event time) and on t*."""
    field = Decay(0.7)

    def event(t, y):
        return y[0] - 0.5

    def loss_for(rate: float, y0: list[float], grad: bool):
        field.rate.data.fill_(rate)
        y0t = torch.tensor(y0, dtype=F64, requires_grad=grad)
        te, ys = odeint_event(
            field, y0t, torch.tensor(0.0, dtype=F64), event_fn=event, rtol=1e-12, atol=1e-14
        )
        return ys[-1, 1] ** 2 + 0.3 * te, y0t

    loss, y0t = loss_for(0.7, [1.0, 2.0], True)
    field.rate.grad = None
    loss.backward()
    eps = 1e-6
    fd = []
    for i in range(2):
        up = [1.0, 2.0]
        down = [1.0, 2.0]
        up[i] += eps
        down[i] -= eps
        with torch.no_grad():
            fd.append(
                (float(loss_for(0.7, up, False)[0]) - float(loss_for(0.7, down, False)[0]))
                / (2 * eps)
            )
    assert y0t.grad.tolist() == pytest.approx(fd, rel=1e-6, abs=1e-8)


def test_tuple_state_and_reversed_time_events():
    t_event, (x, v) = odeint_event(
        lambda t, s: (s[1], -G * torch.ones_like(s[1])),
        (torch.tensor([10.0], dtype=F64), torch.tensor([0.0], dtype=F64)),
        torch.tensor(0.0, dtype=F64),
        event_fn=lambda t, s: s[0][0],
    )
    assert abs(float(t_event) - math.sqrt(20 / G)) < 1e-8
    assert x.shape == (2, 1) and abs(float(x[-1, 0])) < 1e-8
    # backwards from t = 0: y' = -y grows to e at t = -1
    t_event, ys = odeint_event(
        lambda t, y: -y,
        torch.ones(1, dtype=F64),
        torch.tensor(0.0, dtype=F64),
        event_fn=lambda t, y: y[0] - math.e,
        reverse_time=True,
        rtol=1e-10,
        atol=1e-12,
    )
    assert abs(float(t_event) + 1.0) < 1e-8


def test_events_in_float32():
    t_event, _ = odeint_event(
        falling, torch.tensor([10.0, 0.0]), torch.tensor(0.0), event_fn=ground
    )
    assert t_event.dtype == torch.float32
    assert abs(float(t_event) - math.sqrt(20 / G)) < 1e-5


def test_fixed_step_events_locate_on_the_linear_interpolant():
    """As torchdiffeq: fixed-grid events are found on the (linear) interpolant of the grid,
    so the location error is the interpolation error, O(h^2)."""
    errors = []
    for step in (0.1, 0.05):
        t_event, _ = odeint_event(
            falling,
            torch.tensor([10.0, 0.0], dtype=F64),
            torch.tensor(0.0, dtype=F64),
            event_fn=ground,
            method="rk4",
            options={"step_size": step},
        )
        errors.append(abs(float(t_event) - math.sqrt(20 / G)))
    assert errors[1] < errors[0] / 3 and errors[0] < 1e-2


def test_solve_terminal_event_is_recorded():
    sol = kutta.solve(
        falling, torch.tensor([10.0, 0.0], dtype=F64), span=(0.0, 5.0), event_fn=ground
    )
    assert len(sol.events) == 1
    assert abs(sol.events[0]["t"] - math.sqrt(20 / G)) < 1e-8
    assert int(sol.status) == int(kutta.Status.EVENT) and bool(sol.success)
    assert sol.ts.shape == (2,) and abs(float(sol.ts[-1]) - math.sqrt(20 / G)) < 1e-8


def test_solve_non_terminal_events_record_every_crossing():
    """y = sin(t) (as y' = cos t) crosses 1/2 at pi/6, 5 pi/6, 13 pi/6 and 17 pi/6 on [0, 10]."""
    sol = kutta.solve(
        lambda t, y: torch.cos(t) * torch.ones_like(y),
        torch.zeros(1, dtype=F64),
        torch.linspace(0.0, 10.0, 11, dtype=F64),
        event_fn=lambda t, y: y[0] - 0.5,
        event_terminal=False,
        controller=kutta.PIController(1e-10, 1e-12),
    )
    times = [e["t"] for e in sol.events]
    assert times == pytest.approx([k * math.pi / 6 for k in (1, 5, 13, 17)], abs=1e-8)
    assert sol.ys.shape == (11, 1)
    assert float(sol.ys[-1, 0]) == pytest.approx(math.sin(10.0), abs=1e-8)


def test_event_time_gradient_for_a_tuple_state():
    height = torch.tensor([2.0], dtype=F64, requires_grad=True)
    speed = torch.tensor([3.0], dtype=F64, requires_grad=True)
    t_event, _ = odeint_event(
        lambda t, s: (s[1], -G * torch.ones_like(s[1])),
        (height, speed),
        torch.tensor(0.0, dtype=F64),
        event_fn=lambda t, s: s[0][0],
        rtol=1e-10,
        atol=1e-12,
    )
    t_event.backward()
    root = math.sqrt(3.0**2 + 2 * G * 2.0)
    assert float(height.grad) == pytest.approx(1 / root, rel=1e-9)
    assert float(speed.grad) == pytest.approx((1 + 3.0 / root) / G, rel=1e-9)
