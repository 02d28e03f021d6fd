import pytest
import torch

from kutta.errors import InvalidArgumentError, UnknownNameError
from kutta.models import NeuralCDE, control_path

KINDS = ["linear", "rectilinear", "hermite", "natural"]


def ragged(dtype=torch.float64):
    g = torch.Generator().manual_seed(7)
    lengths = [6, 4, 5]
    times = torch.sort(torch.rand(3, 6, generator=g, dtype=dtype), dim=1).values * 3
    values = torch.randn(3, 6, 2, generator=g, dtype=dtype)
    values[1, 1, 0] = float("nan")  # a missing value inside a series
    for b, n in enumerate(lengths):
        times[b, n:] = times[b, n - 1]
        values[b, n:] = float("nan")
    return times, values, lengths


def make_model(channels=3):
    torch.manual_seed(0)
    return NeuralCDE(channels, hidden_dim=5, output_dim=2, method="rk4").double()


@pytest.mark.parametrize("kind", KINDS)
def test_shapes_and_invariance_to_padding_and_batch(kind):
    times, values, lengths = ragged()
    model = make_model()
    path = control_path(values, times, kind)
    out = model(path)
    assert out.shape == (3, 2) and torch.isfinite(out).all()
    for b, n in enumerate(lengths):
        alone = model(control_path(values[b : b + 1, :n], times[b : b + 1, :n], kind))
        torch.testing.assert_close(out[b : b + 1], alone, rtol=1e-10, atol=1e-12)


def test_states_at_every_knot():
    times = torch.linspace(0, 1, 8, dtype=torch.float64)
    path = control_path(torch.randn(4, 8, 2, dtype=torch.float64), times)
    model = make_model()
    states = model.states(path)
    assert states.shape == (4, 8, 5)
    torch.testing.assert_close(states[:, -1], model.final_state(path), rtol=1e-12, atol=1e-12)


class ConstantField(torch.nn.Module):
    def __init__(self, matrix):
        super().__init__()
        self.matrix = matrix

    def forward(self, z):
        return self.matrix.expand(*z.shape[:-1], *self.matrix.shape)


@pytest.mark.parametrize("kind", ["linear", "hermite", "natural"])
def test_constant_vector_field_integrates_the_path_increment(kind):
    # dz = A dX  =>  z(T) = z(t0) + A (X(T) - X(t0)) whatever the path between.
    torch.manual_seed(1)
    a = torch.randn(5, 3, dtype=torch.float64)
    model = NeuralCDE(3, 5, 1, vector_field=ConstantField(a), method="rk4").double()
    times, values, lengths = ragged()
    values = torch.nan_to_num(values, nan=0.0)
    for b, n in enumerate(lengths):
        values[b, n:] = values[b, n - 1]
    path = control_path(values, times, kind)
    interval = path.interval
    x0, x1 = path.evaluate(interval[:, 0]), path.evaluate(interval[:, 1])
    expected = model.initial(x0) + (x1 - x0) @ a.T
    torch.testing.assert_close(model.final_state(path), expected, rtol=1e-10, atol=1e-10)


class ScalingField(torch.nn.Module):
    def forward(self, z):
        return z.unsqueeze(-1)


def test_linear_cde_is_an_exponential_of_the_control():
    # One channel, dz = z dX  =>  z(T) = z(t0) exp(X(T) - X(t0)).
    times = torch.linspace(0, 2, 9, dtype=torch.float64)
    values = torch.sin(3 * times).view(1, 9, 1).repeat(2, 1, 1) * torch.tensor(
        [[[1.0]], [[-0.5]]], dtype=torch.float64
    )
    path = control_path(values, times, "hermite", time_channel=False)
    model = NeuralCDE(1, 1, 1, vector_field=ScalingField(), rtol=1e-10, atol=1e-12).double()
    with torch.no_grad():
        z0 = model.initial(path.evaluate(times[0]))
        expected = z0 * torch.exp(path.evaluate(times[-1]) - path.evaluate(times[0]))
        torch.testing.assert_close(model.final_state(path), expected, rtol=1e-8, atol=1e-10)


def test_gradient_step_and_every_parameter_is_used(
    one_step_reduces_loss, assert_every_parameter_gets_gradient
):
    times, values, _ = ragged()
    path = control_path(values, times, "hermite")
    target = torch.randn(3, 2, dtype=torch.float64)
    model = make_model()

    def loss():
        return ((model(path) - target) ** 2).mean()

    before, after = one_step_reduces_loss(model, loss, lr=1e-3)
    assert after < before
    assert_every_parameter_gets_gradient(model, loss())


def test_state_dict_round_trip(round_trip):
    times, values, _ = ragged()
    path = control_path(values, times, "linear")
    model = make_model()
    assert torch.equal(round_trip(model, make_model)(path), model(path))


def test_bad_input_is_named():
    path = control_path(torch.randn(2, 4, 2), torch.linspace(0, 1, 4))
    with pytest.raises(InvalidArgumentError, match="channels"):
        NeuralCDE(5, 4, 1)(path)
    with pytest.raises(InvalidArgumentError, match="control path"):
        NeuralCDE(3, 4, 1)(torch.zeros(2, 4, 3))
    with pytest.raises(UnknownNameError, match="interpolation"):
        control_path(torch.randn(2, 4, 2), torch.linspace(0, 1, 4), "quintic")


@pytest.mark.parametrize("kind", ["linear", "hermite"])
def test_per_sample_mode_matches_shared_and_ignores_the_batch(kind):
    times, values, lengths = ragged()
    torch.manual_seed(0)
    model = NeuralCDE(3, 5, 2, rtol=1e-6, atol=1e-8, batch_mode="per_sample").double()
    shared = NeuralCDE(3, 5, 2, rtol=1e-6, atol=1e-8).double()
    shared.load_state_dict(model.state_dict())
    path = control_path(values, times, kind)
    out = model(path)
    torch.testing.assert_close(out, shared(path), rtol=1e-4, atol=1e-5)
    for b, n in enumerate(lengths):
        alone = model(control_path(values[b : b + 1, :n], times[b : b + 1, :n], kind))
        torch.testing.assert_close(out[b : b + 1], alone, rtol=1e-12, atol=1e-12)


def test_a_false_mask_entry_is_a_missing_value():
    times, values, _ = ragged()
    mask = ~torch.isnan(values)
    mask[0, 2, 1] = False
    zeros = torch.nan_to_num(values, nan=0.0)
    with_nan = values.clone()
    with_nan[0, 2, 1] = float("nan")
    model = make_model()
    expected = model(control_path(with_nan, times))
    torch.testing.assert_close(
        model(control_path(zeros, times, mask=mask)), expected, rtol=0, atol=0
    )


@pytest.mark.slow
def test_learns_spiral_chirality_with_missing_values():
    # torchcde's toy (shared/reference/published_results.md), shrunk: spirals that turn one way
    # or the other, 30% of the values dropped; time is a channel.
    import math

    g = torch.Generator().manual_seed(0)
    t = torch.linspace(0, 4 * math.pi, 25)
    start = torch.rand(64, 1, generator=g) * 2 * math.pi
    x, y = torch.cos(start + t) / (1 + 0.5 * t), torch.sin(start + t) / (1 + 0.5 * t)
    labels = (torch.arange(64) % 2).float()
    x = torch.where(labels[:, None] == 1, -x, x)
    values = torch.stack([x, y], dim=-1) + 0.01 * torch.randn(64, 25, 2, generator=g)
    values[torch.rand(64, 25, generator=g) < 0.3] = float("nan")
    values[:, 0] = torch.stack([x[:, 0], y[:, 0]], dim=-1)  # keep the first point of each
    train, test = slice(0, 48), slice(48, 64)
    path_train = control_path(values[train], t)
    path_test = control_path(values[test], t)
    torch.manual_seed(0)
    model = NeuralCDE(3, 8, 1, method="rk4")
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    for _ in range(40):
        opt.zero_grad()
        logits = model(path_train).squeeze(-1)
        torch.nn.functional.binary_cross_entropy_with_logits(logits, labels[train]).backward()
        opt.step()
    with torch.no_grad():
        accuracy = ((model(path_test).squeeze(-1) > 0).float() == labels[test]).float().mean()
    assert accuracy >= 0.9
