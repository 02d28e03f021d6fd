"""The fully connected networks PINNs use (tanh, Glorot/Xavier-normal weights, zero biases)."""

from __future__ import annotations

import torch
from torch import nn

from kutta.errors import InvalidArgumentError, UnknownNameError


class Sine(nn.Module):
    """``sin(x)``, an activation for oscillatory solutions."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.sin()


ACTIVATIONS = {"tanh": nn.Tanh, "sin": Sine, "silu": nn.SiLU, "gelu": nn.GELU}


def mlp(
    in_dim: int, out_dim: int, hidden: int = 20, depth: int = 8, activation: str = "tanh"
) -> nn.Sequential:
    """``depth`` hidden layers of ``hidden`` units; Xavier-normal weights, zero biases.

    This is Raissi et al.'s (2019) network: ``mlp(2, 1, 20, 8)`` is their Burgers model.
    Initialization draws from torch's global generator: seed it (``torch.manual_seed``) first.

    Example:
        >>> net = mlp(2, 1, hidden=20, depth=8)
        >>> sum(p.numel() for p in net.parameters())
        3021
    """
    if min(in_dim, out_dim, hidden, depth) < 1:
        raise InvalidArgumentError(
            f"in_dim, out_dim, hidden and depth must be >= 1, got {in_dim}, {out_dim}, {hidden}, {depth}"
        )
    if activation not in ACTIVATIONS:
        raise UnknownNameError("activation", activation, list(ACTIVATIONS))
    layers: list[nn.Module] = []
    sizes = [in_dim] + [hidden] * depth
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(fan_in, fan_out), ACTIVATIONS[activation]()]
    layers.append(nn.Linear(hidden, out_dim))
    for layer in layers:
        if isinstance(layer, nn.Linear):
            nn.init.xavier_normal_(layer.weight)
            nn.init.zeros_(layer.bias)
    return nn.Sequential(*layers)
