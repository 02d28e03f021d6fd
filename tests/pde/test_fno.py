"""Fourier neural operators: the spectral layers against explicit DFT sums, gradients, shift
equivariance, resolution invariance, state-dict round trips and input checks."""

import math

import pytest
import torch

from kutta.errors import InvalidArgumentError, UnknownNameError
from kutta.pde.fno import (
    FNO1d,
    FNO2d,
    SpectralConv1d,
    SpectralConv2d,
    grid_coordinates,
    relative_l2,
)


def dft_exponent(n: int, sign: float) -> torch.Tensor:
    """exp(sign 2 pi i k j / n) as an (n, n) matrix indexed [k, j]."""
    k = torch.arange(n, dtype=torch.float64)
    return torch.exp(sign * 2j * math.pi * k[:, None] * k[None, :] / n)


def spectral_conv_1d_reference(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """y_j = (1/n) Re[ sum_{k<m} c_k yhat_k e^{2 pi i k j / n} ], c_0 = 1, c_k = 2 (the real field
    whose modes k and -k are yhat_k and its conjugate), yhat_k = sum_i W_iok xhat_ik."""
    n, m = x.shape[-1], weight.shape[-1]
    x_hat = x.to(torch.complex128) @ dft_exponent(n, -1.0).T  # [b, i, k]
    y_hat = torch.zeros(x.shape[0], weight.shape[1], n, dtype=torch.complex128)
    for k in range(m):
        y_hat[:, :, k] = x_hat[:, :, k] @ weight[:, :, k]
    y_hat[:, :, 1:] *= 2
    return (y_hat @ dft_exponent(n, 1.0)).real / n


def test_spectral_conv_1d_matches_explicit_dft():
    torch.manual_seed(0)
    layer = SpectralConv1d(2, 3, modes=4).double()
    x = torch.randn(2, 2, 9, dtype=torch.float64)
    weight = torch.view_as_complex(layer.weight.detach())
    torch.testing.assert_close(layer(x), spectral_conv_1d_reference(x, weight))
    # and on an even grid with the largest admissible number of modes (n // 2)
    layer = SpectralConv1d(1, 2, modes=4).double()
    x = torch.randn(3, 1, 8, dtype=torch.float64)
    weight = torch.view_as_complex(layer.weight.detach())
    torch.testing.assert_close(layer(x), spectral_conv_1d_reference(x, weight))


def test_spectral_conv_2d_matches_explicit_dft():
    torch.manual_seed(1)
    n1, n2, (m1, m2) = 8, 7, (3, 2)
    layer = SpectralConv2d(2, 2, modes=(m1, m2)).double()
    x = torch.randn(2, 2, n1, n2, dtype=torch.float64)
    forward1, forward2 = dft_exponent(n1, -1.0), dft_exponent(n2, -1.0)
    x_hat = torch.einsum("aj,bl,nijl->niab", forward1, forward2, x.to(torch.complex128))
    y_hat = torch.zeros(2, 2, n1, n2, dtype=torch.complex128)
    blocks = [
        (range(m1), layer.weight_positive),
        (range(n1 - m1, n1), layer.weight_negative),
    ]
    for rows, weight in blocks:
        weight = torch.view_as_complex(weight.detach())
        for r, k1 in enumerate(rows):
            for k2 in range(m2):
                y_hat[:, :, k1, k2] = x_hat[:, :, k1, k2] @ weight[:, :, r, k2]
    y_hat[..., 1:] *= 2  # the conjugate partners (-k1, -k2) of the modes with k2 > 0
    inverse1, inverse2 = dft_exponent(n1, 1.0), dft_exponent(n2, 1.0)
    expected = torch.einsum("aj,bl,noab->nojl", inverse1, inverse2, y_hat).real / (n1 * n2)
    torch.testing.assert_close(layer(x), expected)


def test_spectral_conv_gradcheck():
    torch.manual_seed(2)
    layer = SpectralConv1d(2, 2, modes=3).double()
    x = torch.randn(1, 2, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, w: torch.func.functional_call(layer, {"weight": w}, x),
        (x, layer.weight.detach().clone().requires_grad_()),
    )
    layer2 = SpectralConv2d(1, 2, modes=2).double()
    x2 = torch.randn(1, 1, 5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer2, (x2,))


@pytest.mark.parametrize("model_class, shape", [(FNO1d, (3, 2, 32)), (FNO2d, (2, 2, 16, 12))])
def test_shapes_dtypes_and_gradients_reach_every_parameter(model_class, shape):
    torch.manual_seed(3)
    model = model_class(modes=4, width=6, in_channels=2, out_channels=3, num_layers=3).double()
    x = torch.randn(*shape, dtype=torch.float64)
    y = model(x)
    assert y.shape == (shape[0], 3, *shape[2:]) and y.dtype == torch.float64
    y.pow(2).mean().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_fno_without_grid_commutes_with_periodic_shifts():
    torch.manual_seed(4)
    model = FNO1d(modes=5, width=8, grid=None).double()
    x = torch.randn(2, 1, 24, dtype=torch.float64)
    for shift in (1, 7):
        torch.testing.assert_close(model(x.roll(shift, -1)), model(x).roll(shift, -1))
    model2 = FNO2d(modes=3, width=4, grid=None).double()
    x2 = torch.randn(1, 1, 12, 10, dtype=torch.float64)
    torch.testing.assert_close(model2(x2.roll((2, 3), (-2, -1))), model2(x2).roll((2, 3), (-2, -1)))
    # with the coordinate channels the model sees where it is, and shifts change the output
    gridded = FNO1d(modes=5, width=8).double()
    assert not torch.allclose(gridded(x.roll(3, -1)), gridded(x).roll(3, -1))


def test_padding_appends_zeros_to_the_lifted_field_and_crops_them():
    torch.manual_seed(6)
    model = FNO2d(modes=3, width=4, num_layers=2, padding=0.25).double()
    x = torch.randn(2, 1, 12, 8, dtype=torch.float64)
    # the same layers by hand: lift, 3 and 2 zero rows/columns after the field, crop, project
    h = model.lift(torch.cat([x, *model._coordinates(x)], dim=1))
    h = torch.nn.functional.pad(h, (0, 2, 0, 3))
    h = torch.nn.functional.gelu(model.spectral[0](h) + model.pointwise[0](h))
    h = model.spectral[1](h) + model.pointwise[1](h)
    torch.testing.assert_close(model(x), model.project(h[:, :, :12, :8]))
    # the zero band breaks the periodicity a plain Fourier layer assumes
    unpadded = FNO1d(modes=4, width=4, grid=None).double()
    padded = FNO1d(modes=4, width=4, grid=None, padding=0.5).double()
    padded.load_state_dict(unpadded.state_dict())
    y = torch.randn(1, 1, 16, dtype=torch.float64)
    torch.testing.assert_close(unpadded(y.roll(5, -1)), unpadded(y).roll(5, -1))
    assert not torch.allclose(padded(y.roll(5, -1)), padded(y).roll(5, -1))


def band_limited(n: int, highest_mode: int, channels: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    x = torch.arange(n, dtype=torch.float64) / n
    k = torch.arange(1, highest_mode + 1, dtype=torch.float64)
    a, b = (
        torch.randn(channels, highest_mode, 1, generator=generator, dtype=torch.float64)
        for _ in range(2)
    )
    waves = a * torch.cos(2 * math.pi * k[:, None] * x) + b * torch.sin(
        2 * math.pi * k[:, None] * x
    )
    return waves.sum(1)[None]


def test_spectral_layer_is_resolution_invariant():
    # a band-limited input sampled on 16 or 64 points: the layer's outputs sample one function
    torch.manual_seed(5)
    layer = SpectralConv1d(2, 3, modes=6).double()
    coarse, fine = band_limited(16, 5, 2, seed=0), band_limited(64, 5, 2, seed=0)
    torch.testing.assert_close(layer(fine)[..., ::4], layer(coarse))
    layer2 = SpectralConv2d(1, 1, modes=3).double()
    image = band_limited(32, 2, 1, 1)[0, 0]
    grid2 = image[:, None] * image[None, :]
    torch.testing.assert_close(
        layer2(grid2[None, None])[..., ::4, ::4], layer2(grid2[None, None, ::4, ::4])
    )


def test_grid_coordinates_are_nested_across_resolutions():
    fine, coarse = torch.zeros(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
    torch.testing.assert_close(
        grid_coordinates(64, "periodic", fine)[::4], grid_coordinates(16, "periodic", coarse)
    )
    torch.testing.assert_close(
        grid_coordinates(65, "closed", fine)[::4], grid_coordinates(17, "closed", coarse)
    )
    assert grid_coordinates(17, "closed", fine)[-1] == 1.0


def test_state_dict_round_trip():
    torch.manual_seed(6)
    model = FNO2d(modes=(3, 2), width=5)
    clone = FNO2d(modes=(3, 2), width=5)
    x = torch.randn(2, 1, 9, 9)
    assert not torch.equal(model(x), clone(x))
    clone.load_state_dict(model.state_dict())
    assert torch.equal(model(x), clone(x))


def test_relative_l2():
    prediction = torch.tensor([[3.0, 4.0], [1.0, 1.0]])
    target = torch.tensor([[0.0, 5.0], [1.0, 1.0]])
    # sample 1: |(3, -1)| / 5; sample 2: 0
    assert relative_l2(prediction, target).item() == pytest.approx(math.sqrt(10) / 5 / 2)
    with pytest.raises(InvalidArgumentError, match="same shape"):
        relative_l2(prediction, target[:1])


def test_bad_inputs_are_rejected_with_clear_errors():
    model = FNO1d(modes=8, width=4)
    with pytest.raises(InvalidArgumentError, match=r"\(batch, 1, n1\)"):
        model(torch.randn(2, 16))
    with pytest.raises(InvalidArgumentError, match=r"\(batch, 1, n1\)"):
        model(torch.randn(2, 3, 16))
    with pytest.raises(InvalidArgumentError, match="at least 16 points"):
        model(torch.randn(2, 1, 15))
    with pytest.raises(InvalidArgumentError, match="axis 2"):
        FNO2d(modes=(2, 6), width=4)(torch.randn(1, 1, 16, 8))
    with pytest.raises(UnknownNameError, match="periodic"):
        FNO1d(modes=4, width=4, grid="uniform")
    with pytest.raises(InvalidArgumentError, match="modes"):
        SpectralConv1d(2, 2, modes=0)
    with pytest.raises(InvalidArgumentError, match="padding"):
        FNO2d(modes=4, width=4, padding=-0.1)
