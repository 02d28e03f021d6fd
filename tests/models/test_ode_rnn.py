from types import SimpleNamespace

import pytest
import torch

from kutta.errors import InvalidArgumentError
from kutta.models import ODERNN

FIXED = {"method": "rk4"}  # one rk4 step per interval: batch-independent to round-off


def ragged_batch(dtype=torch.float64):
    g = torch.Generator().manual_seed(3)
    lengths = torch.tensor([5, 3, 4])
    times = torch.sort(torch.rand(3, 5, generator=g, dtype=dtype), dim=1).values
    values = torch.randn(3, 5, 2, generator=g, dtype=dtype)
    mask = (torch.rand(3, 5, 2, generator=g) > 0.3).to(dtype)
    mask[:, 0] = 1
    for b, n in enumerate(lengths):
        times[b, n:] = times[b, n - 1]  # padding repeats the last time
        values[b, n:] = 123.0  # junk that must not matter
    return SimpleNamespace(times=times, values=values, mask=mask, lengths=lengths)


def single(batch, b):
    n = int(batch.lengths[b])
    return SimpleNamespace(
        times=batch.times[b : b + 1, :n],
        values=batch.values[b : b + 1, :n],
        mask=batch.mask[b : b + 1, :n],
    )


def make_model():
    torch.manual_seed(0)
    return ODERNN(2, hidden_dim=6, output_channels=2, **FIXED).double()


def test_shapes_on_a_ragged_batch():
    batch = ragged_batch()
    out = make_model()(batch)
    assert out.prior.shape == out.posterior.shape == (3, 5, 6)
    assert out.last.shape == (3, 6)
    assert make_model().predict(batch).shape == (3, 5, 2)
    assert make_model().forecast(batch, torch.tensor([1.5, 2.0])).shape == (3, 2, 2)


def test_results_do_not_depend_on_padding_or_the_rest_of_the_batch():
    model, batch = make_model(), ragged_batch()
    together = model(batch)
    for b in range(3):
        alone = model(single(batch, b))
        n = int(batch.lengths[b])
        torch.testing.assert_close(
            together.posterior[b, :n], alone.posterior[0], rtol=1e-12, atol=1e-12
        )
        torch.testing.assert_close(together.last[b], alone.last[0], rtol=1e-12, atol=1e-12)


def test_nan_marks_a_missing_value():
    model, batch = make_model(), ragged_batch()
    with_nan = SimpleNamespace(**vars(batch))
    with_nan.values = batch.values.masked_fill(batch.mask == 0, float("nan"))
    with_nan.mask = None
    torch.testing.assert_close(model(with_nan).last, model(batch).last, rtol=0, atol=0)


def test_unobserved_steps_follow_the_ode_only():
    model, batch = make_model(), ragged_batch()
    batch.mask[0, 2] = 0
    batch.mask[0, 1] = 1
    out = model(batch)
    assert torch.equal(out.posterior[0, 2], out.prior[0, 2])
    assert not torch.equal(out.posterior[0, 1], out.prior[0, 1])


class Mirrored(torch.nn.Module):
    def __init__(self, func):
        super().__init__()
        self.func = func

    def forward(self, t, h):
        return -self.func(-t, h)


def test_reverse_equals_forward_on_the_time_reversed_series():
    # Running dh/dt = f backwards over [t_k, t_{k+1}] is running dh/ds = -f forwards in s = -t.
    model, batch = make_model(), ragged_batch()
    backwards = model(batch, reverse=True)
    mirrored = make_model()
    mirrored.func = Mirrored(mirrored.func)
    for b in range(3):
        one = single(batch, b)
        flipped = SimpleNamespace(
            times=-one.times.flip(1), values=one.values.flip(1), mask=one.mask.flip(1)
        )
        torch.testing.assert_close(
            backwards.last[b], mirrored(flipped).last[0], rtol=1e-12, atol=1e-12
        )


def test_gradient_step_and_every_parameter_is_used(
    one_step_reduces_loss, assert_every_parameter_gets_gradient
):
    model, batch = make_model(), ragged_batch()

    def loss():
        return (((model.predict(batch) - batch.values) * batch.mask) ** 2).mean()

    before, after = one_step_reduces_loss(model, loss, lr=0.05)
    assert after < before
    assert_every_parameter_gets_gradient(model, loss())


def test_state_dict_round_trip(round_trip):
    model, batch = make_model(), ragged_batch()
    assert torch.equal(round_trip(model, make_model).predict(batch), model.predict(batch))


def test_bad_input_is_named():
    model = make_model()
    with pytest.raises(InvalidArgumentError, match="channels"):
        model(SimpleNamespace(times=torch.arange(3.0), values=torch.zeros(1, 3, 5)))
    with pytest.raises(InvalidArgumentError, match="non-decreasing"):
        model(SimpleNamespace(times=torch.tensor([0.0, 2.0, 1.0]), values=torch.zeros(1, 3, 2)))
    with pytest.raises(InvalidArgumentError, match="step_size"):
        ODERNN(2, 4, method="rk4", options={"step_size": 0.1})
    with pytest.raises(InvalidArgumentError, match="readout"):
        ODERNN(2, 4, method="rk4").predict(ragged_batch(torch.float32))


def test_per_sample_adaptive_solves_do_not_depend_on_the_batch():
    torch.manual_seed(0)
    model = ODERNN(2, 6, 2, rtol=1e-7, atol=1e-9, batch_mode="per_sample").double()
    shared = ODERNN(2, 6, 2, rtol=1e-7, atol=1e-9).double()
    shared.load_state_dict(model.state_dict())
    batch = ragged_batch()
    together = model(batch)
    for b in range(3):
        alone = model(single(batch, b))
        torch.testing.assert_close(together.last[b], alone.last[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(shared(batch).last, together.last, rtol=1e-5, atol=1e-6)
