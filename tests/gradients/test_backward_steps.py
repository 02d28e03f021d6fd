"""The backward solve starts each interval with the step the solve proposed there (StepMemory),
instead of Hairer's starting guess: fewer backward evaluations than torchdiffeq, same accuracy."""

import pytest
import torch
import torchdiffeq
from torch import nn

import kutta

DT = torch.float64


class NeuralField(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.net = nn.Sequential(nn.Linear(4, 32), nn.Tanh(), nn.Linear(32, 4)).double()
        self.calls = 0

    def forward(self, t, y):
        self.calls += 1
        return self.net(y)


def gradient_and_backward_nfe(odeint_fn, t, **kw):
    field = NeuralField()
    y0 = torch.randn(3, 4, dtype=DT, generator=torch.Generator().manual_seed(2))
    ys = odeint_fn(field, y0, t, method="dopri5", **kw)
    forward_calls = field.calls
    ys[1:].pow(2).sum().backward()
    grads = torch.cat([p.grad.reshape(-1) for p in field.parameters()])
    return grads, field.calls - forward_calls


@pytest.mark.parametrize("n_times", [2, 6])
@pytest.mark.parametrize("norm", ["seminorm", None])
def test_backward_takes_no_more_evaluations_than_torchdiffeq_and_is_as_accurate(n_times, norm):
    t = torch.linspace(0.0, 2.0, n_times, dtype=DT)
    reference, _ = gradient_and_backward_nfe(torchdiffeq.odeint, t, rtol=1e-12, atol=1e-12)
    options = dict(rtol=1e-6, atol=1e-8, adjoint_options=dict(norm=norm) if norm else {})
    ours, our_nfe = gradient_and_backward_nfe(kutta.odeint_adjoint, t, **options)
    theirs, their_nfe = gradient_and_backward_nfe(torchdiffeq.odeint_adjoint, t, **options)
    assert our_nfe <= their_nfe
    our_error = float((ours - reference).norm() / reference.norm())
    their_error = float((theirs - reference).norm() / reference.norm())
    assert our_error < max(2 * their_error, 1e-6)


def test_a_first_step_in_adjoint_options_wins():
    t = torch.tensor([0.0, 2.0], dtype=DT)
    _, default_nfe = gradient_and_backward_nfe(kutta.odeint_adjoint, t, rtol=1e-6, atol=1e-8)
    _, tiny_nfe = gradient_and_backward_nfe(
        kutta.odeint_adjoint, t, rtol=1e-6, atol=1e-8, adjoint_options=dict(first_step=1e-6)
    )
    assert tiny_nfe > default_nfe
