"""Checks every model test repeats: gradients reach every parameter, state dicts round-trip."""

import io

import pytest
import torch


def _assert_every_parameter_gets_gradient(model: torch.nn.Module, loss: torch.Tensor) -> None:
    model.zero_grad(set_to_none=True)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    zero = [n for n, p in model.named_parameters() if p.grad is not None and not p.grad.any()]
    assert not missing, f"parameters without a gradient: {missing}"
    assert not zero, f"parameters with an all-zero gradient: {zero}"


def _round_trip(model: torch.nn.Module, make_model) -> torch.nn.Module:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    fresh = make_model()
    fresh.load_state_dict(torch.load(buffer))
    return fresh


def _one_step_reduces_loss(
    model: torch.nn.Module, loss_fn, lr: float = 1e-2
) -> tuple[float, float]:
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    opt.zero_grad()
    before = loss_fn()
    before.backward()
    before = before.detach()
    opt.step()
    with torch.no_grad():
        after = loss_fn()
    return before.item(), after.item()


@pytest.fixture
def assert_every_parameter_gets_gradient():
    return _assert_every_parameter_gets_gradient


@pytest.fixture
def round_trip():
    return _round_trip


@pytest.fixture
def one_step_reduces_loss():
    return _one_step_reduces_loss
