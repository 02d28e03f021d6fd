import pytest
import torch

from kutta.errors import InvalidArgumentError, UnknownNameError
from kutta.models import (
    NeuralODE,
    ODEBlock,
    ODENetClassifier,
    ResidualStack,
    SolverOptions,
    TimeMLP,
)

FIXED = {"method": "rk4", "options": {"step_size": 0.25}}


def test_augmented_output_shapes():
    model = NeuralODE(TimeMLP(5, hidden=(8,)), augment_dim=2, **FIXED)
    x = torch.randn(4, 3)
    assert model(x).shape == (4, 5)
    assert model.trajectory(x, torch.linspace(0, 1, 7)).shape == (7, 4, 5)


def test_nfe_counts_fixed_steps():
    model = NeuralODE(TimeMLP(2, hidden=(8,)), method="rk4", options={"step_size": 0.25})
    model(torch.randn(3, 2))
    assert model.nfe == 4 * 4  # four rk4 steps, four evaluations each


def test_augmented_starts_with_zeros_in_the_extra_dimensions():
    model = NeuralODE(TimeMLP(3, hidden=(4,)), augment_dim=2, **FIXED)
    x = torch.randn(6, 1)
    start = model.trajectory(x, torch.tensor([0.0, 1.0]))[0]
    assert torch.equal(start[:, :1], x) and torch.equal(start[:, 1:], torch.zeros(6, 2))


@pytest.mark.parametrize("n", [1, 3, 8])
def test_euler_ode_block_equals_weight_tied_resnet(n):
    torch.manual_seed(1)
    func = TimeMLP(4, hidden=(16,)).double()
    t1 = 0.7
    block = ODEBlock(func, t1=t1, method="euler", options={"step_size": t1 / n}).double()
    stack = ResidualStack.tied(func, depth=n, t1=t1)
    h = torch.randn(5, 4, dtype=torch.float64)
    torch.testing.assert_close(block(h), stack(h), rtol=1e-13, atol=1e-13)
    assert block.nfe == n


def test_outputs_do_not_depend_on_batch_composition():
    model = NeuralODE(TimeMLP(3, hidden=(8,)), **FIXED).double()
    x = torch.randn(6, 3, dtype=torch.float64)
    torch.testing.assert_close(model(x)[:2], model(x[:2]), rtol=1e-12, atol=1e-12)


def test_gradient_step_reduces_loss_and_reaches_every_parameter(
    one_step_reduces_loss, assert_every_parameter_gets_gradient
):
    model = NeuralODE(TimeMLP(3, hidden=(8,)), augment_dim=1, **FIXED)
    x, target = torch.randn(16, 2), torch.randn(16, 3)

    def loss():
        return ((model(x) - target) ** 2).mean()

    before, after = one_step_reduces_loss(model, loss)
    assert after < before
    assert_every_parameter_gets_gradient(model, loss())


def test_state_dict_round_trip(round_trip):
    def make():
        return NeuralODE(TimeMLP(3, hidden=(8,)), augment_dim=1, **FIXED)

    model = make()
    x = torch.randn(4, 2)
    assert torch.equal(round_trip(model, make)(x), model(x))


def test_dopri5_matches_fixed_step_solution():
    torch.manual_seed(2)
    func = TimeMLP(2, hidden=(8,)).double()
    x = torch.randn(3, 2, dtype=torch.float64)
    with torch.no_grad():
        adaptive = NeuralODE(func, rtol=1e-9, atol=1e-10)(x)
        fine = NeuralODE(func, method="rk4", options={"step_size": 1e-3})(x)
    torch.testing.assert_close(adaptive, fine, rtol=1e-8, atol=1e-8)


@pytest.mark.slow
def test_one_dimensional_flow_cannot_reverse_the_line_but_augmented_can():
    # Dupont et al. 2019: g(1) = -1, g(-1) = 1. A 1-D flow is monotone, so the mean squared
    # error is at least 1 (both points sent to 0); one extra dimension lets them pass.
    x = torch.tensor([[1.0], [-1.0]])
    target = -x
    losses = {}
    for augment_dim, steps in [(0, 150), (1, 300)]:
        torch.manual_seed(0)
        model = NeuralODE(
            TimeMLP(1 + augment_dim, hidden=(32,)),
            augment_dim=augment_dim,
            method="rk4",
            options={"step_size": 0.1},
        )
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(steps):
            opt.zero_grad()
            loss = ((model(x)[:, :1] - target) ** 2).mean()
            loss.backward()
            opt.step()
        with torch.no_grad():
            losses[augment_dim] = float(((model(x)[:, :1] - target) ** 2).mean())
    assert losses[0] > 0.99
    assert losses[1] < 1e-3


def test_bad_arguments_are_named():
    with pytest.raises(UnknownNameError, match="gradient mode"):
        NeuralODE(TimeMLP(2), gradient="magic")
    with pytest.raises(InvalidArgumentError, match="augment_dim"):
        NeuralODE(TimeMLP(2), augment_dim=-1)
    with pytest.raises(InvalidArgumentError, match="rtol"):
        SolverOptions(rtol=0.0)
    with pytest.raises(InvalidArgumentError, match="t1"):
        ODEBlock(TimeMLP(2), t1=0.0)
    with pytest.raises(UnknownNameError, match="body"):
        ODENetClassifier(4, 2, body="transformer")


@pytest.mark.slow
def test_digits_classifier_learns():
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    y = torch.tensor(digits.target)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    train, test = perm[:1400], perm[1400:]
    model = ODENetClassifier(
        64, 10, width=32, hidden=(32,), method="rk4", options={"step_size": 0.5}
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x[train]), y[train]).backward()
        opt.step()
    with torch.no_grad():
        accuracy = (model(x[test]).argmax(-1) == y[test]).float().mean()
    assert accuracy > 0.9
    assert model.nfe == 8


@pytest.mark.parametrize("body", ["ode", "resnet"])
def test_classifier_gradient_step_parameters_and_round_trip(
    body, one_step_reduces_loss, assert_every_parameter_gets_gradient, round_trip
):
    def make():
        torch.manual_seed(0)
        return ODENetClassifier(6, 3, width=8, hidden=(8,), body=body, depth=3, **FIXED)

    model = make()
    x, y = torch.randn(20, 6), torch.randint(0, 3, (20,))

    def loss():
        return torch.nn.functional.cross_entropy(model(x), y)

    before, after = one_step_reduces_loss(model, loss, lr=0.1)
    assert after < before
    assert_every_parameter_gets_gradient(model, loss())
    assert torch.equal(round_trip(model, make)(x), model(x))
    assert model.nfe == (16 if body == "ode" else 3)
