"""sdeint_adjoint: gradients against backpropagation through the solver and finite differences
(float64), for every noise type; reversible Heun's adjoint equals backprop to round-off."""

import pytest
import torch

import kutta.sde as ksde
from kutta.errors import InvalidArgumentError
from kutta.sde.adjoint import _AdjointMidpoint, _AdjointSDE, _SDEViewOf
from kutta.sde.base import SDEView
from kutta.sde.methods import Midpoint

NOISE_CHANNELS = {"diagonal": 3, "scalar": 1, "additive": 2, "general": 2}


class Nonlinear(ksde.BaseSDE):
    def __init__(self, noise_type, sde_type):
        super().__init__(noise_type=noise_type, sde_type=sde_type)
        self.a = torch.nn.Parameter(torch.tensor([-0.5, 0.2, -0.3], dtype=torch.float64))
        self.b = torch.nn.Parameter(torch.tensor(0.3, dtype=torch.float64))

    def f(self, t, y):
        return self.a * torch.tanh(y) + 0.1 * torch.sin(t)

    def g(self, t, y):
        if self.noise_type == "diagonal":
            return self.b * torch.cos(y)  # g_i depends on y_i only
        if self.noise_type == "scalar":
            return (self.b * torch.cos(y)).unsqueeze(-1)
        if self.noise_type == "additive":
            return self.b * torch.ones(y.shape[0], 3, 2, dtype=y.dtype) * (1 + t)
        return torch.stack([self.b * torch.cos(y + k) for k in range(2)], dim=-1)


def _gradients(solver, sde, noise_type, method, dt, levy="none"):
    y0 = torch.full((4, 3), 0.4, dtype=torch.float64, requires_grad=True)
    bm = ksde.BrownianInterval(
        0.0,
        1.0,
        size=(4, NOISE_CHANNELS[noise_type]),
        dtype=torch.float64,
        entropy=1,
        levy_area_approximation=levy,
    )
    ys = solver(sde, y0, [0.0, 0.5, 1.0], bm=bm, method=method, dt=dt)
    loss = (ys**2).sum()
    return torch.autograd.grad(loss, [y0, *sde.parameters()])


def _relative_error(first, second):
    return max(((a - b).abs().max() / b.abs().max()).item() for a, b in zip(first, second))


@pytest.mark.parametrize("noise_type", ["diagonal", "scalar", "additive", "general"])
def test_reversible_heun_adjoint_equals_backprop_to_round_off(noise_type):
    sde = Nonlinear(noise_type, "stratonovich")
    backprop = _gradients(ksde.sdeint, sde, noise_type, "reversible_heun", 2.0**-6)
    adjoint = _gradients(ksde.sdeint_adjoint, sde, noise_type, "reversible_heun", 2.0**-6)
    assert _relative_error(adjoint, backprop) < 1e-12


@pytest.mark.parametrize("noise_type", ["diagonal", "scalar", "additive", "general"])
def test_reversible_heun_adjoint_passes_gradcheck(noise_type):
    sde = Nonlinear(noise_type, "stratonovich")
    bm = ksde.BrownianInterval(
        0.0, 1.0, size=(2, NOISE_CHANNELS[noise_type]), dtype=torch.float64, entropy=4
    )
    y0 = torch.full((2, 3), 0.3, dtype=torch.float64, requires_grad=True)

    def loss(y0, a, b):
        sde.a, sde.b = a, b  # plain tensors: gradcheck perturbs them directly
        ys = ksde.sdeint_adjoint(
            sde, y0, [0.0, 0.5], bm=bm, method="reversible_heun", dt=0.125, adjoint_params=(a, b)
        )
        return ys

    a = torch.tensor([-0.5, 0.2, -0.3], dtype=torch.float64, requires_grad=True)
    b = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    del sde.a, sde.b
    assert torch.autograd.gradcheck(loss, (y0, a, b))


CONTINUOUS = [
    ("stratonovich", "midpoint", "none"),
    ("ito", "euler", "none"),
    ("ito", "milstein", "none"),
    ("ito", "srk", "space-time"),
]


@pytest.mark.parametrize(("sde_type", "method", "levy"), CONTINUOUS)
@pytest.mark.parametrize("noise_type", ["diagonal", "scalar", "additive", "general"])
def test_continuous_adjoint_converges_to_backprop(sde_type, method, levy, noise_type):
    if noise_type == "general" and method in ("milstein", "srk"):
        pytest.skip("method does not support general noise")
    sde = Nonlinear(noise_type, sde_type)
    # The adjoint SDE is discretised separately from the forward one, so the two gradients agree
    # to discretisation error, which must shrink with dt.
    errors = []
    for dt in (2.0**-4, 2.0**-7):
        backprop = _gradients(ksde.sdeint, sde, noise_type, method, dt, levy)
        adjoint = _gradients(ksde.sdeint_adjoint, sde, noise_type, method, dt, levy)
        errors.append(_relative_error(adjoint, backprop))
    assert errors[1] < 1e-2
    assert errors[1] < errors[0]


@pytest.mark.parametrize("noise_type", ["diagonal", "general"])
def test_continuous_adjoint_matches_finite_differences(noise_type):
    sde = Nonlinear(noise_type, "stratonovich")
    bm = ksde.BrownianInterval(
        0.0, 1.0, size=(4, NOISE_CHANNELS[noise_type]), dtype=torch.float64, entropy=2
    )
    y0 = torch.full((4, 3), 0.4, dtype=torch.float64)

    def loss():
        return (ksde.sdeint(sde, y0, [0.0, 1.0], bm=bm, method="midpoint", dt=2.0**-7) ** 2).sum()

    ys = ksde.sdeint_adjoint(sde, y0, [0.0, 1.0], bm=bm, method="midpoint", dt=2.0**-7)
    (grad_b,) = torch.autograd.grad((ys**2).sum(), [sde.b])
    eps = 1e-6
    with torch.no_grad():
        sde.b += eps
        up = loss()
        sde.b -= 2 * eps
        down = loss()
        sde.b += eps
    finite_difference = (up - down) / (2 * eps)
    assert abs(grad_b.item() - finite_difference.item()) < 1e-2 * abs(finite_difference.item())


def test_adjoint_errors_are_clear():
    sde = Nonlinear("diagonal", "stratonovich")
    y0 = torch.full((4, 3), 0.4, dtype=torch.float64)
    with pytest.raises(InvalidArgumentError, match="needs method='reversible_heun'"):
        ksde.sdeint_adjoint(
            sde, y0, [0.0, 1.0], method="midpoint", adjoint_method="adjoint_reversible_heun"
        )
    with pytest.raises(InvalidArgumentError, match="fixed steps only"):
        ksde.sdeint_adjoint(sde, y0, [0.0, 1.0], method="reversible_heun", adaptive=True)
    with pytest.raises(InvalidArgumentError, match="adjoint_method 'srk' is not supported"):
        ksde.sdeint_adjoint(sde, y0, [0.0, 1.0], method="midpoint", adjoint_method="srk")

    class NotAModule:
        noise_type, sde_type = "diagonal", "ito"

        def f(self, t, y):
            return y

        def g(self, t, y):
            return y

    with pytest.raises(InvalidArgumentError, match="adjoint_params"):
        ksde.sdeint_adjoint(NotAModule(), y0, [0.0, 1.0])


@pytest.mark.parametrize("noise_type", ["diagonal", "scalar", "general"])
@pytest.mark.parametrize("sde_type", ["ito", "stratonovich"])
def test_adjoint_midpoint_step_without_parameter_work_in_its_half_step_is_unchanged(
    noise_type, sde_type
):
    """The backward midpoint step skips the parameter part of its half step's vector-Jacobian
    product (the adjoint field never reads it): its result is bit for bit the plain step's."""
    sde = Nonlinear(noise_type, sde_type)
    params = tuple(sde.parameters())
    shape = torch.Size((4, 3))
    view = _SDEViewOf(_AdjointSDE(SDEView(sde), params, shape))
    bm = ksde.ReverseBrownian(
        ksde.BrownianInterval(
            0.0, 1.0, size=(4, NOISE_CHANNELS[noise_type]), dtype=torch.float64, entropy=3
        )
    )
    generator = torch.Generator().manual_seed(0)
    n_params = sum(p.numel() for p in params)
    state = torch.randn(2 * shape.numel() + n_params, dtype=torch.float64, generator=generator)
    plain, _ = Midpoint(view, bm, {}).step(-1.0, -0.875, state, ())
    fast, _ = _AdjointMidpoint(view, bm, {}).step(-1.0, -0.875, state, ())
    assert torch.equal(fast, plain)
    assert not torch.equal(plain[-n_params:], state[-n_params:])  # parameter gradients did move
