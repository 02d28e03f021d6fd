"""Small building blocks for vector fields: time-conditioned MLPs and FFJORD's concatsquash layer."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from kutta.errors import UnknownNameError


def _time_column(t: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """``t`` (a scalar or one time per row) as a (B, 1) column matching ``x`` (B, D)."""
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    return t.reshape(-1, 1).expand(x.shape[0], 1)


class ConcatLinear(nn.Module):
    """``W [x, t] + b``: a linear layer that also sees the time.

    Example:
        >>> layer = ConcatLinear(3, 4)
        >>> layer(torch.tensor(0.5), torch.zeros(2, 3)).shape
        torch.Size([2, 4])
    """

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.linear = nn.Linear(in_features + 1, out_features)

    def forward(self, t: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
        return self.linear(torch.cat([x, _time_column(t, x)], dim=-1))


class ConcatSquashLinear(nn.Module):
    """FFJORD's concatsquash layer: ``(W x + b) * sigmoid(a t + c) + d t``.

    The time gates and shifts every output unit (Grathwohl et al. 2019).

    Example:
        >>> layer = ConcatSquashLinear(2, 8)
        >>> layer(torch.tensor(0.0), torch.zeros(5, 2)).shape
        torch.Size([5, 8])
    """

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        self.gate = nn.Linear(1, out_features)
        self.shift = nn.Linear(1, out_features, bias=False)

    def forward(self, t: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
        tc = _time_column(t, x)
        return self.linear(x) * torch.sigmoid(self.gate(tc)) + self.shift(tc)


_LAYERS = {"concat": ConcatLinear, "concatsquash": ConcatSquashLinear}


class TimeMLP(nn.Module):
    """A vector field ``f(t, x)``: an MLP whose every layer sees the time.

    Args:
        dim: state dimension (input and output).
        hidden: widths of the hidden layers.
        layer: ``"concat"`` (:class:`ConcatLinear`) or ``"concatsquash"``
            (:class:`ConcatSquashLinear`).
        activation: the nonlinearity between layers (a module instance; default Softplus,
            smooth so that solvers and traces behave).
        out_dim: output dimension if not ``dim``.

    Example:
        >>> f = TimeMLP(2, hidden=(16, 16))
        >>> f(torch.tensor(0.0), torch.randn(4, 2)).shape
        torch.Size([4, 2])
    """

    def __init__(
        self,
        dim: int,
        hidden: Sequence[int] = (64,),
        layer: str = "concat",
        activation: nn.Module | None = None,
        out_dim: int | None = None,
    ):
        super().__init__()
        if layer not in _LAYERS:
            raise UnknownNameError("layer", layer, tuple(_LAYERS))
        widths = [dim, *hidden, out_dim or dim]
        self.layers = nn.ModuleList(_LAYERS[layer](a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.activation = activation if activation is not None else nn.Softplus()

    def forward(self, t: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(t, x)
            if i < len(self.layers) - 1:
                x = self.activation(x)
        return x


class AutonomousMLP(nn.Module):
    """A time-independent vector field ``f(t, x) = MLP(x)`` (``t`` is accepted and ignored).

    Example:
        >>> f = AutonomousMLP(3, hidden=(8,))
        >>> f(torch.tensor(0.0), torch.zeros(2, 3)).shape
        torch.Size([2, 3])
    """

    def __init__(
        self,
        dim: int,
        hidden: Sequence[int] = (64,),
        activation: nn.Module | None = None,
        out_dim: int | None = None,
    ):
        super().__init__()
        widths = [dim, *hidden, out_dim or dim]
        act = activation if activation is not None else nn.Tanh()
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(widths) - 2:
                layers.append(act)
        self.net = nn.Sequential(*layers)

    def forward(self, t: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
