from types import SimpleNamespace

import torch

from kutta.data import collate_irregular
from kutta.models import GRUDelta


def ragged():
    g = torch.Generator().manual_seed(4)
    data = []
    for length in (5, 3, 4):
        times = torch.sort(torch.rand(length, generator=g, dtype=torch.float64)).values
        data.append((times, torch.randn(length, 2, generator=g, dtype=torch.float64)))
    return data


def make_model():
    torch.manual_seed(0)
    return GRUDelta(2, 6, 2).double()


def test_shapes_and_independence_from_padding_and_batch():
    model, data = make_model(), ragged()
    batch = collate_irregular(data)
    predictions = model.predict(batch)
    assert predictions.shape == (3, 5, 2)
    query = torch.tensor([1.2, 1.5], dtype=torch.float64)
    forecasts = model.forecast(batch, query)
    assert forecasts.shape == (3, 2, 2)
    for b, sample in enumerate(data):
        alone = collate_irregular([sample])
        n = sample[0].shape[0]
        torch.testing.assert_close(
            predictions[b, :n], model.predict(alone)[0], rtol=1e-12, atol=1e-12
        )
        torch.testing.assert_close(
            forecasts[b], model.forecast(alone, query)[0], rtol=1e-12, atol=1e-12
        )


def test_prediction_at_a_step_does_not_see_its_value():
    model, data = make_model(), ragged()
    batch = collate_irregular(data)
    changed = SimpleNamespace(
        times=batch.times, values=batch.values.clone(), mask=batch.mask, lengths=batch.lengths
    )
    changed.values[:, 2] += 10.0
    before, after = model.predict(batch), model.predict(changed)
    torch.testing.assert_close(after[:, :3], before[:, :3], rtol=0, atol=0)
    assert not torch.allclose(after[:, 3:4], before[:, 3:4])


def test_gradient_step_parameters_and_round_trip(
    one_step_reduces_loss, assert_every_parameter_gets_gradient, round_trip
):
    model, batch = make_model(), collate_irregular(ragged())

    def loss():
        return (((model.predict(batch) - batch.values) * batch.mask) ** 2).mean()

    before, after = one_step_reduces_loss(model, loss, lr=0.1)
    assert after < before
    assert_every_parameter_gets_gradient(model, loss())
    assert torch.equal(round_trip(model, make_model).predict(batch), model.predict(batch))
