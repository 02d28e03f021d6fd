"""kutta.adjoint.odeint_adjoint: torchdiffeq's continuous adjoint on kutta's loop."""

import pytest
import torch
from torch import nn

from kutta.adjoint import odeint_adjoint
from kutta.compat import odeint, odeint_event
from kutta.errors import InvalidArgumentError, SolverError

DT = torch.float64
TIGHT = dict(rtol=1e-11, atol=1e-12)


class Field(nn.Module):
    """A small non-autonomous nonlinear field: tanh(W y + b) * (1 + t / 2)."""

    def __init__(self, n=2):
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.W = nn.Parameter(0.5 * torch.randn(n, n, generator=g, dtype=DT))
        self.b = nn.Parameter(0.1 * torch.randn(n, generator=g, dtype=DT))

    def forward(self, t, y):
        return torch.tanh(y @ self.W.T + self.b) * (1 + t / 2)


def _field(W, b):
    return lambda t, y: torch.tanh(y @ W.T + b) * (1 + t / 2)


@pytest.mark.parametrize("method", ["dopri5", "tsit5", "bosh3"])
@pytest.mark.parametrize("seminorm", [False, True])
def test_gradcheck_y0_params_and_times(method, seminorm):
    W = (0.5 * torch.randn(2, 2, dtype=DT)).requires_grad_()
    b = (0.1 * torch.randn(2, dtype=DT)).requires_grad_()
    y0 = torch.tensor([0.3, -0.2], dtype=DT, requires_grad=True)
    t = torch.tensor([0.0, 0.4, 1.0], dtype=DT, requires_grad=True)
    adj = dict(norm="seminorm") if seminorm else None
    # Third order needs thousands of steps at 1e-11; its gradient is checked a little looser.
    tol = dict(rtol=1e-9, atol=1e-10) if method == "bosh3" else TIGHT

    def fn(y0, t, W, b):
        return odeint_adjoint(
            _field(W, b), y0, t, method=method, adjoint_params=(W, b), adjoint_options=adj, **tol
        )

    # fast_mode checks one random projection of the Jacobian: the same test at a fraction of
    # the solves (each finite difference is a full adaptive solve).
    assert torch.autograd.gradcheck(
        fn, (y0, t, W, b), eps=1e-5, atol=1e-6, rtol=1e-5, fast_mode=True
    )


def _linear_reference(A, y0, t, c):
    """L = sum_i <c_i, expm(A (t_i - t_0)) y0>, differentiable exactly by torch."""
    ys = torch.stack([torch.linalg.matrix_exp(A * (ti - t[0])) @ y0 for ti in t])
    return (ys * c).sum()


@pytest.mark.parametrize("decreasing", [False, True])
def test_linear_ode_gradients_match_matrix_exponential(decreasing):
    # y' = A y has y(t) = expm(A (t - t0)) y0, so every gradient (y0, A, all t_i incl. t0, t1)
    # has an exact reference through torch.linalg.matrix_exp.
    A = torch.tensor([[-0.5, 1.0], [-1.0, -0.2]], dtype=DT, requires_grad=True)
    y0 = torch.tensor([1.0, 0.5], dtype=DT, requires_grad=True)
    times = [0.2, 0.7, 1.5, 2.0]
    t = torch.tensor(times[::-1] if decreasing else times, dtype=DT, requires_grad=True)
    c = torch.randn(len(times), 2, dtype=DT)

    ys = odeint_adjoint(lambda tt, y: A @ y, y0, t, adjoint_params=(A,), **TIGHT)
    got = torch.autograd.grad((ys * c).sum(), (y0, t, A))
    want = torch.autograd.grad(_linear_reference(A, y0, t, c), (y0, t, A))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-7, atol=1e-8)


def test_time_gradients_of_first_and_last_time_are_analytic():
    # y' = -k y: L = y(t1) = y0 exp(-k (t1 - t0)): dL/dt1 = -k L, dL/dt0 = k L.
    k = 0.7
    y0 = torch.tensor([2.0], dtype=DT)
    t = torch.tensor([0.3, 1.8], dtype=DT, requires_grad=True)
    ys = odeint_adjoint(lambda tt, y: -k * y, y0, t, **TIGHT)
    (g,) = torch.autograd.grad(ys[-1].sum(), t)
    L = 2.0 * torch.exp(torch.tensor(-k * 1.5, dtype=DT))
    torch.testing.assert_close(g, torch.stack([k * L, -k * L]), rtol=1e-8, atol=1e-10)


def test_module_parameters_are_found_and_agree_with_backprop():
    field = Field(3)
    y0 = torch.tensor([[0.2, -0.1, 0.4], [0.5, 0.3, -0.2]], dtype=DT, requires_grad=True)
    t = torch.linspace(0.0, 2.0, 5, dtype=DT)
    loss = odeint_adjoint(field, y0, t, **TIGHT).pow(2).sum()
    got = torch.autograd.grad(loss, (y0, *field.parameters()))
    loss_ref = odeint(field, y0, t, **TIGHT).pow(2).sum()
    want = torch.autograd.grad(loss_ref, (y0, *field.parameters()))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-7, atol=1e-9)


def test_bound_method_of_a_module_finds_its_parameters():
    field = Field()
    y0 = torch.tensor([0.2, -0.1], dtype=DT)
    ys = odeint_adjoint(field.forward, y0, torch.tensor([0.0, 1.0], dtype=DT), **TIGHT)
    ys[-1].sum().backward()
    assert field.W.grad is not None and field.W.grad.abs().sum() > 0


def test_tuple_state_agrees_with_backprop():
    field = Field(2)
    scale = nn.Parameter(torch.tensor(0.8, dtype=DT))

    class Pair(nn.Module):
        def __init__(self):
            super().__init__()
            self.field, self.scale = field, scale

        def forward(self, t, state):
            x, v = state
            return v, -self.scale * x + self.field(t, v).sum() * 0.1 * torch.ones_like(v)

    pair = Pair()
    x0 = torch.tensor([1.0, 0.0], dtype=DT, requires_grad=True)
    v0 = torch.tensor([0.0, 0.5], dtype=DT, requires_grad=True)
    t = torch.tensor([0.0, 0.5, 1.5], dtype=DT)

    def loss(fn):
        xs, vs = fn(pair, (x0, v0), t, **TIGHT)
        return xs.pow(2).sum() + (vs * torch.arange(2, dtype=DT)).sum()

    got = torch.autograd.grad(loss(odeint_adjoint), (x0, v0, *pair.parameters()))
    want = torch.autograd.grad(loss(odeint), (x0, v0, *pair.parameters()))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-7, atol=1e-9)


def _backward_calls(adjoint_options):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 32), nn.Tanh(), nn.Linear(32, 4)).double()
    calls = [0]

    class Counted(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, t, y):
            calls[0] += 1
            return self.net(y)

    y0 = torch.randn(8, 4, dtype=DT)
    ys = odeint_adjoint(
        Counted(),
        y0,
        torch.tensor([0.0, 2.0], dtype=DT),
        rtol=1e-8,
        atol=1e-8,
        adjoint_options=adjoint_options,
    )
    calls[0] = 0
    ys[-1].pow(2).sum().backward()
    return calls[0], [p.grad.clone() for p in net.parameters()]


def test_seminorm_takes_fewer_backward_evaluations_and_the_same_gradients():
    full, g_full = _backward_calls(None)
    semi, g_semi = _backward_calls(dict(norm="seminorm"))
    assert semi < full
    for a, b in zip(g_full, g_semi):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_closure_with_hidden_parameters_is_detected():
    W = torch.randn(2, 2, dtype=DT, requires_grad=True)
    y0 = torch.ones(2, dtype=DT)
    t = torch.tensor([0.0, 1.0], dtype=DT)
    with pytest.raises(InvalidArgumentError, match="adjoint_params"):
        odeint_adjoint(lambda tt, y: W @ y, y0, t)
    net = nn.Linear(2, 2).double()
    with pytest.raises(InvalidArgumentError, match="'net'"):
        odeint_adjoint(lambda tt, y: net(y), y0, t)
    # Told about them, it works; a closure over constants needs nothing.
    odeint_adjoint(lambda tt, y: W @ y, y0, t, adjoint_params=(W,))
    const = torch.eye(2, dtype=DT)
    odeint_adjoint(lambda tt, y: const @ y, y0, t)


def test_double_backward_raises_clearly():
    y0 = torch.ones(2, dtype=DT, requires_grad=True)
    ys = odeint_adjoint(lambda tt, y: -y * y, y0, torch.tensor([0.0, 1.0], dtype=DT))
    with pytest.raises(InvalidArgumentError, match="gradients of gradients"):
        torch.autograd.grad(ys[-1].sum(), y0, create_graph=True)


def test_backward_failure_says_backward():
    y0 = torch.ones(2, dtype=DT, requires_grad=True)
    ys = odeint_adjoint(
        lambda tt, y: -y,
        y0,
        torch.tensor([0.0, 5.0], dtype=DT),
        adjoint_options=dict(max_num_steps=3),
    )
    with pytest.raises(SolverError, match="backward"):
        ys[-1].sum().backward()


def test_event_time_gradient_through_odeint_adjoint_matches_finite_differences():
    # A ball falling under gravity g from height h0 with velocity v0: event at height 0.
    class Ball(nn.Module):
        def __init__(self):
            super().__init__()
            self.g = nn.Parameter(torch.tensor(9.81, dtype=DT))

        def forward(self, t, y):
            return torch.stack([y[1], -self.g])

    ball = Ball()

    def event_time(h0, g=None):
        if g is not None:
            ball.g.data.fill_(g)
        y0 = torch.stack([h0, torch.tensor(0.5, dtype=DT)])
        te, _ = odeint_event(
            ball,
            y0,
            torch.tensor(0.0, dtype=DT),
            event_fn=lambda t, y: y[0],
            odeint_interface=odeint_adjoint,
            **TIGHT,
        )
        return te

    h0 = torch.tensor(2.0, dtype=DT, requires_grad=True)
    te = event_time(h0, 9.81)
    g_h0, g_g = torch.autograd.grad(te, (h0, ball.g))
    eps = 1e-6
    with torch.no_grad():
        fd_h0 = (event_time(h0 + eps) - event_time(h0 - eps)) / (2 * eps)
        fd_g = (event_time(h0, 9.81 + eps) - event_time(h0, 9.81 - eps)) / (2 * eps)
    torch.testing.assert_close(g_h0, fd_h0, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(g_g, fd_g, rtol=1e-5, atol=1e-7)
