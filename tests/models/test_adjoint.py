"""gradient="adjoint" gives the gradients of gradient="backprop" (to solver tolerance)."""

import pytest
import torch

import kutta
from kutta.models import CNF, ODERNN, LatentODE, NeuralCDE, NeuralODE, TimeMLP, control_path

pytestmark = pytest.mark.skipif(
    not hasattr(kutta, "odeint_adjoint"), reason="kutta.odeint_adjoint is not exported yet"
)

TOL = {"rtol": 1e-9, "atol": 1e-10}


def gradients(make, loss):
    grads = []
    for mode in ("backprop", "adjoint"):
        torch.manual_seed(0)
        model = make(mode).double()
        model.zero_grad()
        loss(model).backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    return grads


def assert_same_gradients(make, loss):
    backprop, adjoint = gradients(make, loss)
    for b, a in zip(backprop, adjoint):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_neural_ode():
    x = torch.randn(4, 2, dtype=torch.float64)
    assert_same_gradients(
        lambda mode: NeuralODE(TimeMLP(3, (8,)), augment_dim=1, gradient=mode, **TOL),
        lambda m: (m(x) ** 2).sum(),
    )


def test_cnf_with_exact_trace():
    x = torch.randn(4, 2, dtype=torch.float64)
    assert_same_gradients(
        lambda mode: CNF(2, hidden=(8,), gradient=mode, **TOL),
        lambda m: -m.log_prob(x).sum(),
    )


def test_ode_rnn_and_latent_ode():
    times = torch.tensor([0.0, 0.3, 0.5, 1.0], dtype=torch.float64)
    values = torch.randn(3, 4, 2, dtype=torch.float64)
    batch = type("Batch", (), {"times": times, "values": values})()
    assert_same_gradients(
        lambda mode: ODERNN(2, 5, 2, gradient=mode, **TOL),
        lambda m: (m.predict(batch) ** 2).sum(),
    )

    def elbo(m):
        torch.manual_seed(1)
        return m.elbo(batch).loss()

    assert_same_gradients(lambda mode: LatentODE(2, 3, 5, 4, gradient=mode, **TOL), elbo)


def test_neural_cde():
    times = torch.linspace(0, 1, 5, dtype=torch.float64)
    path = control_path(torch.randn(3, 5, 2, dtype=torch.float64), times)
    assert_same_gradients(
        lambda mode: NeuralCDE(3, 4, 1, gradient=mode, **TOL), lambda m: (m(path) ** 2).sum()
    )
