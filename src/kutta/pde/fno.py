"""Fourier neural operators (Li et al. 2021, "Fourier Neural Operator for Parametric Partial
Differential Equations", ICLR).

A Fourier layer multiplies the lowest ``modes`` Fourier coefficients of its input by learned
complex channel-mixing matrices and drops the rest (:class:`SpectralConv1d`, :class:`SpectralConv2d`);
the FNO lifts the input pointwise to ``width`` channels, applies ``num_layers`` of
``gelu(spectral(h) + pointwise(h))`` (no activation after the last) and projects pointwise to the
output. The weights act on Fourier modes, not grid points, so a trained FNO evaluates on any grid
fine enough to hold ``modes`` (zero-shot super-resolution). On a non-periodic domain the Fourier
layers see the field as periodic, jump included; ``padding`` extends the grid by zeros before
them and crops after, as Li et al.'s Darcy script does. Tensors are channel-first:
``(batch, channels, n)`` in 1-D and ``(batch, channels, n1, n2)`` in 2-D.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

from kutta.errors import InvalidArgumentError, UnknownNameError

GRIDS = ("periodic", "closed")


def _check_modes(modes: int, size: int, axis: str) -> None:
    if modes > size // 2:
        raise InvalidArgumentError(
            f"{modes} Fourier modes along {axis} need a grid of at least {2 * modes} points "
            f"(modes <= n // 2), got n = {size}"
        )


def _complex_weight(*shape: int) -> nn.Parameter:
    # stored as real pairs (..., 2) so every optimizer and DDP treats it as an ordinary tensor;
    # Li et al.'s initialization: real and imaginary parts uniform in [0, 1 / (in * out)]
    return nn.Parameter(torch.rand(*shape, 2) / (shape[0] * shape[1]))


class SpectralConv1d(nn.Module):
    """Fourier layer: ``irfft(W_k rfft(x)_k for k < modes, 0 above)`` with complex ``W_k`` (in x out).

    The imaginary part of the zero mode's output is discarded by ``irfft`` (the field is real),
    as in Li et al.'s code.

    Example:
        >>> layer = SpectralConv1d(3, 5, modes=4)
        >>> tuple(layer(torch.randn(2, 3, 16)).shape)
        (2, 5, 16)
    """

    def __init__(self, in_channels: int, out_channels: int, modes: int):
        super().__init__()
        if min(in_channels, out_channels, modes) < 1:
            raise InvalidArgumentError(
                f"channels and modes must be >= 1, got {in_channels}, {out_channels}, {modes}"
            )
        self.in_channels, self.out_channels, self.modes = in_channels, out_channels, modes
        self.weight = _complex_weight(in_channels, out_channels, modes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or x.shape[1] != self.in_channels:
            raise InvalidArgumentError(
                f"SpectralConv1d expects (batch, {self.in_channels}, n), got {tuple(x.shape)}"
            )
        n, m = x.shape[-1], self.modes
        _check_modes(m, n, "the grid")
        x_ft = torch.fft.rfft(x)
        out_ft = x_ft.new_zeros(x.shape[0], self.out_channels, n // 2 + 1)
        weight = torch.view_as_complex(self.weight)
        out_ft[..., :m] = torch.einsum("bik,iok->bok", x_ft[..., :m], weight)
        return torch.fft.irfft(out_ft, n=n)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, modes={self.modes}"


class SpectralConv2d(nn.Module):
    """2-D Fourier layer on the modes ``|k1| < modes[0]``, ``0 <= k2 < modes[1]`` (the others
    follow by conjugate symmetry); one complex weight block for k1 >= 0 and one for k1 < 0.

    Example:
        >>> layer = SpectralConv2d(3, 5, modes=(4, 3))
        >>> tuple(layer(torch.randn(2, 3, 16, 8)).shape)
        (2, 5, 16, 8)
    """

    def __init__(self, in_channels: int, out_channels: int, modes: int | tuple[int, int]):
        super().__init__()
        modes = (modes, modes) if isinstance(modes, int) else tuple(modes)
        if len(modes) != 2 or min(in_channels, out_channels, *modes) < 1:
            raise InvalidArgumentError(
                f"need channels >= 1 and two modes >= 1, got {in_channels}, {out_channels}, {modes}"
            )
        self.in_channels, self.out_channels, self.modes = in_channels, out_channels, modes
        self.weight_positive = _complex_weight(in_channels, out_channels, *modes)
        self.weight_negative = _complex_weight(in_channels, out_channels, *modes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise InvalidArgumentError(
                f"SpectralConv2d expects (batch, {self.in_channels}, n1, n2), got {tuple(x.shape)}"
            )
        (n1, n2), (m1, m2) = x.shape[-2:], self.modes
        _check_modes(m1, n1, "axis 1")
        _check_modes(m2, n2, "axis 2")
        x_ft = torch.fft.rfft2(x)
        out_ft = x_ft.new_zeros(x.shape[0], self.out_channels, n1, n2 // 2 + 1)
        for rows, weight in (
            (slice(0, m1), self.weight_positive),
            (slice(n1 - m1, n1), self.weight_negative),
        ):
            out_ft[:, :, rows, :m2] = torch.einsum(
                "bixy,ioxy->boxy", x_ft[:, :, rows, :m2], torch.view_as_complex(weight)
            )
        return torch.fft.irfft2(out_ft, s=(n1, n2))

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, modes={self.modes}"


def grid_coordinates(size: int, kind: str, like: torch.Tensor) -> torch.Tensor:
    """Coordinates of ``size`` grid points on [0, 1]: ``j / size`` (periodic) or ``j / (size - 1)``
    (closed, boundary included), in ``like``'s dtype and device.

    Example:
        >>> grid_coordinates(4, "periodic", torch.zeros(1))
        tensor([0.0000, 0.2500, 0.5000, 0.7500])
    """
    steps = torch.arange(size, dtype=like.dtype, device=like.device)
    return steps / size if kind == "periodic" else steps / max(size - 1, 1)


class _FNO(nn.Module):
    """Lifting, Fourier layers with pointwise skips, projection; the dimension comes from the
    subclass (its spectral layer and ``nn.ConvNd`` with kernel 1)."""

    spatial_dims: int
    spectral_class: type[nn.Module]
    pointwise_class: type[nn.Module]

    def __init__(
        self,
        modes: int | tuple[int, ...],
        width: int,
        *,
        in_channels: int,
        out_channels: int,
        num_layers: int,
        projection_width: int,
        grid: str | None,
        padding: float,
    ):
        super().__init__()
        if grid is not None and grid not in GRIDS:
            raise UnknownNameError("grid", grid, GRIDS)
        if not 0 <= padding <= 1:
            raise InvalidArgumentError(
                f"padding is a fraction of the grid size in [0, 1], got {padding}"
            )
        # A fraction, not a point count, so that a finer grid gets the same padded extent.
        self.padding = padding
        if min(width, in_channels, out_channels, num_layers, projection_width) < 1:
            raise InvalidArgumentError(
                "width, in_channels, out_channels, num_layers and projection_width must be >= 1"
            )
        self.in_channels, self.out_channels, self.grid = in_channels, out_channels, grid
        coordinate_channels = self.spatial_dims if grid is not None else 0
        conv = self.pointwise_class
        self.lift = conv(in_channels + coordinate_channels, width, 1)
        self.spectral = nn.ModuleList(
            self.spectral_class(width, width, modes) for _ in range(num_layers)
        )
        self.pointwise = nn.ModuleList(conv(width, width, 1) for _ in range(num_layers))
        self.project = nn.Sequential(
            conv(width, projection_width, 1), nn.GELU(), conv(projection_width, out_channels, 1)
        )

    def _coordinates(self, x: torch.Tensor) -> list[torch.Tensor]:
        sizes = x.shape[2:]
        channels = []
        for axis, size in enumerate(sizes):
            shape = [1] * len(sizes)
            shape[axis] = size
            coordinate = grid_coordinates(size, self.grid, x).reshape(1, 1, *shape)
            channels.append(coordinate.expand(x.shape[0], 1, *sizes))
        return channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        expected = 2 + self.spatial_dims
        if x.ndim != expected or x.shape[1] != self.in_channels:
            grid = ", ".join(f"n{i + 1}" for i in range(self.spatial_dims))
            raise InvalidArgumentError(
                f"{type(self).__name__} expects (batch, {self.in_channels}, {grid}), "
                f"got {tuple(x.shape)}"
            )
        if self.grid is not None:
            x = torch.cat([x, *self._coordinates(x)], dim=1)
        h = self.lift(x)
        sizes = h.shape[2:]
        pads = [round(self.padding * size) for size in sizes]
        if any(pads):
            # functional.pad lists (before, after) pairs from the last axis backwards
            h = functional.pad(h, [amount for pad in reversed(pads) for amount in (0, pad)])
        last = len(self.spectral) - 1
        for i, (spectral, pointwise) in enumerate(zip(self.spectral, self.pointwise)):
            h = spectral(h) + pointwise(h)
            if i < last:
                h = functional.gelu(h)
        if any(pads):
            h = h[(..., *(slice(0, size) for size in sizes))]
        return self.project(h)


class FNO1d(_FNO):
    """Fourier neural operator on a 1-D grid: ``(batch, in_channels, n) -> (batch, out_channels, n)``.

    ``grid`` appends the coordinate of each point as an input channel: ``"periodic"`` (x_j = j / n),
    ``"closed"`` (x_j = j / (n - 1)) or None (then the FNO commutes with periodic shifts).
    ``padding`` (a fraction of each axis, e.g. 0.1) appends zeros to the lifted field along each
    axis before the Fourier layers and crops them after: for non-periodic data.
    Defaults follow Li et al.'s Burgers script (4 layers, projection through 128 channels).

    Example:
        >>> model = FNO1d(modes=8, width=16)
        >>> tuple(model(torch.randn(4, 1, 64)).shape), tuple(model(torch.randn(4, 1, 256)).shape)
        ((4, 1, 64), (4, 1, 256))
    """

    spatial_dims = 1
    spectral_class = SpectralConv1d
    pointwise_class = nn.Conv1d

    def __init__(
        self,
        modes: int,
        width: int,
        *,
        in_channels: int = 1,
        out_channels: int = 1,
        num_layers: int = 4,
        projection_width: int = 128,
        grid: str | None = "periodic",
        padding: float = 0.0,
    ):
        super().__init__(
            modes,
            width,
            in_channels=in_channels,
            out_channels=out_channels,
            num_layers=num_layers,
            projection_width=projection_width,
            grid=grid,
            padding=padding,
        )


class FNO2d(_FNO):
    """Fourier neural operator on a 2-D grid: ``(batch, in, n1, n2) -> (batch, out, n1, n2)``.

    ``modes`` is one number or a pair; ``grid`` and ``padding`` as in :class:`FNO1d` (default
    grid ``"closed"``: Darcy's grid includes the boundary).

    Example:
        >>> model = FNO2d(modes=4, width=8)
        >>> tuple(model(torch.randn(2, 1, 17, 17)).shape)
        (2, 1, 17, 17)
    """

    spatial_dims = 2
    spectral_class = SpectralConv2d
    pointwise_class = nn.Conv2d

    def __init__(
        self,
        modes: int | tuple[int, int],
        width: int,
        *,
        in_channels: int = 1,
        out_channels: int = 1,
        num_layers: int = 4,
        projection_width: int = 128,
        grid: str | None = "closed",
        padding: float = 0.0,
    ):
        super().__init__(
            modes,
            width,
            in_channels=in_channels,
            out_channels=out_channels,
            num_layers=num_layers,
            projection_width=projection_width,
            grid=grid,
            padding=padding,
        )


def relative_l2(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over the batch (dim 0) of ``||prediction - target|| / ||target||`` (the FNO loss).

    Example:
        >>> relative_l2(torch.tensor([[3.0, 4.0]]), torch.tensor([[0.0, 5.0]]))
        tensor(0.6325)
    """
    if prediction.shape != target.shape or prediction.ndim < 2:
        raise InvalidArgumentError(
            "prediction and target must have the same shape (batch, ...), got "
            f"{tuple(prediction.shape)} and {tuple(target.shape)}"
        )
    difference = (prediction - target).flatten(1).norm(dim=1)
    return (difference / target.flatten(1).norm(dim=1)).mean()
