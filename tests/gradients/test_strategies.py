"""Native gradient strategies of kutta.solve: Backprop, Adjoint, InterpolatedAdjoint,
RecursiveCheckpoint. Finite differences, mutual agreement, exactness, and their errors."""

import pytest
import torch
from torch import nn

import kutta
from kutta.errors import InvalidArgumentError, SolverError
from kutta.gradients import Adjoint, InterpolatedAdjoint, RecursiveCheckpoint

DT = torch.float64


class MLPField(nn.Module):
    def __init__(self, n=2, width=8, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Linear(n, width), nn.Tanh(), nn.Linear(width, n)).double()

    def forward(self, t, y):
        return self.net(y) * torch.cos(t)


STRATEGIES = {
    "backprop": lambda p: kutta.Backprop(),
    "adjoint": lambda p: Adjoint(params=p),
    "adjoint-fullnorm": lambda p: Adjoint(seminorm=False, params=p),
    "adjoint-checkpoints": lambda p: Adjoint(checkpoints=3, params=p),
    "interpolated": lambda p: InterpolatedAdjoint(params=p),
    "recursive": lambda p: RecursiveCheckpoint(max_checkpoints=2, params=p),
}


def _solve(f, y0, t, strategy, method="tsit5", rtol=1e-10, atol=1e-11, **kw):
    controller = kutta.PIController(rtol=rtol, atol=atol) if method != "rk4" else None
    return kutta.solve(f, y0, t, method=method, controller=controller, gradient=strategy, **kw)


@pytest.mark.parametrize("method", ["dopri5", "tsit5", "bosh3"])
@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_gradcheck(method, name):
    W = torch.tensor([[-0.4, 0.9], [-0.7, 0.1]], dtype=DT, requires_grad=True)
    y0 = torch.tensor([0.3, -0.2], dtype=DT, requires_grad=True)
    t = torch.tensor([0.0, 0.3, 0.6], dtype=DT)
    tol = dict(rtol=1e-9, atol=1e-10) if method == "bosh3" else {}

    def fn(y0, W):
        field = lambda tt, y: torch.tanh(W @ y) * (1 + tt)  # noqa: E731
        return _solve(field, y0, t, STRATEGIES[name]((W,)), method, **tol).ys

    assert torch.autograd.gradcheck(fn, (y0, W), eps=1e-5, atol=1e-6, rtol=1e-5, fast_mode=True)


@pytest.mark.parametrize("name", sorted(set(STRATEGIES) - {"backprop"}))
def test_strategies_agree_with_backprop(name):
    field = MLPField(3, 16)
    params = tuple(field.parameters())
    y0 = torch.randn(4, 3, dtype=DT, requires_grad=True)
    t = torch.linspace(0.0, 2.0, 5, dtype=DT)
    weights = torch.randn(5, 4, 3, dtype=DT)
    grads = {}
    for key in ("backprop", name):
        sol = _solve(field, y0, t, STRATEGIES[key](params), rtol=1e-9, atol=1e-10)
        grads[key] = torch.autograd.grad((sol.ys * weights).sum(), (y0, *params))
    for got, want in zip(grads[name], grads["backprop"]):
        torch.testing.assert_close(got, want, rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize("method", ["tsit5", "dopri5", "bosh3", "rk4"])
@pytest.mark.parametrize("max_checkpoints", [1, 2, 5, None])
def test_recursive_checkpoint_is_exactly_backprop(method, max_checkpoints):
    # Same discrete solve, differentiated step by step from replays: equal to round-off, also
    # with a jump (the method's cached stage is dropped there) and outputs inside steps.
    field = MLPField(2, 8, seed=3)
    params = tuple(field.parameters())
    y0 = torch.tensor([[0.5, -0.3], [0.1, 0.2]], dtype=DT, requires_grad=True)
    t = torch.linspace(0.0, 3.0, 7, dtype=DT)
    kw = dict(step_size=0.1) if method == "rk4" else dict(jump_t=[1.3], rtol=1e-6, atol=1e-7)
    out = {}
    for strategy in (kutta.Backprop(), RecursiveCheckpoint(max_checkpoints, params=params)):
        sol = _solve(field, y0, t, strategy, method, **kw)
        out[type(strategy)] = torch.autograd.grad(sol.ys.pow(2).sum(), (y0, *params))
    for got, want in zip(out[RecursiveCheckpoint], out[kutta.Backprop]):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-13)


def test_recursive_checkpoint_gradients_of_gradients_equal_backprop():
    field = MLPField(2, 8, seed=4)
    params = tuple(field.parameters())
    t = torch.linspace(0.0, 1.0, 3, dtype=DT)
    out = {}
    for strategy in (kutta.Backprop(), RecursiveCheckpoint(2, params=params)):
        y0 = torch.tensor([0.5, -0.3], dtype=DT, requires_grad=True)
        sol = _solve(field, y0, t, strategy, rtol=1e-6, atol=1e-7)
        (g,) = torch.autograd.grad(sol.ys.pow(2).sum(), y0, create_graph=True)
        out[type(strategy)] = torch.autograd.grad(g.sum(), (y0, *params))
    for got, want in zip(out[RecursiveCheckpoint], out[kutta.Backprop]):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("strategy", [Adjoint(), InterpolatedAdjoint()])
def test_adjoints_refuse_gradients_of_gradients(strategy):
    y0 = torch.tensor([0.5, -0.3], dtype=DT, requires_grad=True)
    sol = _solve(lambda tt, y: -y * y, y0, torch.tensor([0.0, 1.0], dtype=DT), strategy)
    with pytest.raises(InvalidArgumentError, match="gradients of gradients"):
        torch.autograd.grad(sol.ys[-1].sum(), y0, create_graph=True)


def test_module_parameters_are_found_without_params():
    field = MLPField()
    y0 = torch.tensor([0.5, -0.3], dtype=DT)
    for strategy in (Adjoint(), InterpolatedAdjoint(), RecursiveCheckpoint()):
        field.zero_grad()
        _solve(field, y0, torch.tensor([0.0, 1.0], dtype=DT), strategy).ys[-1].sum().backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in field.parameters())


@pytest.mark.parametrize("strategy", [Adjoint(), InterpolatedAdjoint(), RecursiveCheckpoint()])
def test_errors_before_running(strategy):
    y0 = torch.ones(2, 2, dtype=DT)
    t = torch.tensor([0.0, 1.0], dtype=DT)
    field = MLPField()
    if not isinstance(strategy, Adjoint):
        with pytest.raises(InvalidArgumentError, match="per_sample"):
            kutta.solve(field, y0, t, gradient=strategy, batch_mode="per_sample")
    with pytest.raises(InvalidArgumentError, match="events"):
        kutta.solve(field, y0, t, gradient=strategy, event_fn=lambda tt, y: y.sum() - 5)
    net = field.net
    with pytest.raises(InvalidArgumentError, match="'net'"):
        kutta.solve(lambda tt, y: net(y), y0, t, gradient=strategy)


class PerSampleField(nn.Module):
    """Per-sample mode hands the field a (B,) time tensor."""

    def __init__(self):
        super().__init__()
        self.inner = MLPField(2, 8, seed=5)

    def forward(self, t, y):
        return self.inner.net(y) * torch.cos(t)[:, None]


@pytest.mark.parametrize("decreasing", [False, True])
def test_per_sample_adjoint_agrees_with_per_sample_backprop(decreasing):
    # Every sample has its own output grid; the adjoint's parameter gradient is one shared sum.
    field = PerSampleField()
    params = tuple(field.parameters())
    y0 = torch.tensor([[0.5, -0.3], [0.1, 0.2], [-0.4, 0.6]], dtype=DT, requires_grad=True)
    t = torch.tensor([[0.0, 0.5, 1.0], [0.2, 0.9, 2.0], [0.0, 1.5, 3.0]], dtype=DT)
    t = -t if decreasing else t
    weights = torch.randn(3, 3, 2, dtype=DT)
    grads = {}
    for strategy in (kutta.Backprop(), Adjoint(params=params), Adjoint(seminorm=False)):
        sol = _solve(field, y0, t, strategy, batch_mode="per_sample")
        grads[strategy] = torch.autograd.grad((sol.ys * weights).sum(), (y0, *params))
    want = grads.pop(kutta.Backprop())
    for got in grads.values():
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, rtol=1e-7, atol=1e-9)


def test_per_sample_adjoint_gradcheck():
    W = torch.tensor([[-0.4, 0.9], [-0.7, 0.1]], dtype=DT, requires_grad=True)
    y0 = torch.tensor([[0.3, -0.2], [0.1, 0.4]], dtype=DT, requires_grad=True)
    t = torch.tensor([[0.0, 0.3, 0.6], [0.1, 0.2, 0.9]], dtype=DT)

    def fn(y0, W):
        field = lambda tt, y: torch.tanh(y @ W.T) * (1 + tt[:, None])  # noqa: E731
        return _solve(field, y0, t, Adjoint(params=(W,)), batch_mode="per_sample").ys

    assert torch.autograd.gradcheck(fn, (y0, W), eps=1e-5, atol=1e-6, rtol=1e-5, fast_mode=True)


def test_invalid_strategy_arguments():
    with pytest.raises(InvalidArgumentError, match="checkpoints"):
        Adjoint(checkpoints=-1)
    with pytest.raises(InvalidArgumentError, match="max_checkpoints"):
        RecursiveCheckpoint(max_checkpoints=0)
    with pytest.raises(InvalidArgumentError, match="per_sample"):
        kutta.solve(
            MLPField(),
            torch.ones(2, 2, dtype=DT),
            torch.tensor([0.0, 1.0], dtype=DT),
            gradient=Adjoint(checkpoints=2),
            batch_mode="per_sample",
        )
    with pytest.raises(InvalidArgumentError, match="scalar rtol"):
        kutta.solve(
            MLPField(),
            torch.ones(2, dtype=DT),
            torch.tensor([0.0, 1.0], dtype=DT),
            controller=kutta.PIController(rtol=torch.tensor([1e-6, 1e-7])),
            gradient=Adjoint(),
        )


def test_backward_failure_is_a_solver_error_saying_backward():
    y0 = torch.ones(2, dtype=DT, requires_grad=True)
    # The forward solve decays (easy); backwards in time the state grows like exp(30 t).
    sol = _solve(
        lambda tt, y: -30 * y,
        y0,
        torch.tensor([0.0, 1.0], dtype=DT),
        Adjoint(),
        rtol=1e-6,
        atol=1e-9,
        max_steps=60,
    )
    with pytest.raises(SolverError, match="backward"):
        sol.ys[-1].sum().backward()


class Lorenz(nn.Module):
    def __init__(self):
        super().__init__()
        self.p = nn.Parameter(torch.tensor([10.0, 28.0, 8.0 / 3.0], dtype=DT))

    def forward(self, t, y):
        sigma, rho, beta = self.p
        x, v, z = y
        return torch.stack([sigma * (v - x), x * (rho - z) - v, x * v - beta * z])


@pytest.mark.slow
def test_lorenz_checkpointed_adjoint_tracks_backprop_where_backsolve_fails():
    # Backwards in time Lorenz expands volumes at rate sigma + 1 + beta, so re-solving y from
    # t = 20 back to 0 diverges; restarting it from stored forward states does not.
    lorenz = Lorenz()
    t = torch.tensor([0.0, 20.0], dtype=DT)
    kw = dict(rtol=1e-8, atol=1e-8, max_steps=4000)

    def gradient(strategy):
        y0 = torch.tensor([1.0, 1.0, 1.0], dtype=DT, requires_grad=True)
        sol = _solve(lorenz, y0, t, strategy, "dopri5", **kw)
        return torch.cat(torch.autograd.grad(sol.ys[-1].sum(), (y0, lorenz.p)))

    exact = gradient(kutta.Backprop())
    checkpointed = gradient(Adjoint(checkpoints=40))
    assert float((checkpointed - exact).norm() / exact.norm()) < 1e-3
    try:
        plain = gradient(Adjoint())
    except SolverError as err:
        assert "backward" in str(err)
    else:
        assert float((plain - exact).norm() / exact.norm()) > 1e-3
