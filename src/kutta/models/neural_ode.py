"""Neural ODEs as layers: :class:`NeuralODE` (optionally augmented), :class:`ODEBlock`, and the
ResNet bridge (:class:`ResidualStack`, :class:`ODENetClassifier`).

A residual block ``h + dt f(t, h)`` is one explicit Euler step of ``dh/dt = f(t, h)``; a
weight-tied stack of ``n`` such blocks with ``dt = t1 / n`` is exactly ``ODEBlock`` solved with
Euler at step size ``t1 / n`` (tested to round-off).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from kutta.errors import InvalidArgumentError, UnknownNameError
from kutta.models._solver import integrate, make_solver_options
from kutta.models.layers import TimeMLP


class _CountingField(nn.Module):
    """Wraps a vector field and counts its evaluations (``nfe``)."""

    def __init__(self, func: nn.Module):
        super().__init__()
        self.func = func
        self.nfe = 0

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.nfe += 1
        return self.func(t, y)


def _as_time_grid(t: torch.Tensor | Sequence[float], name: str = "t") -> torch.Tensor:
    t = torch.as_tensor(t, dtype=torch.get_default_dtype()) if not torch.is_tensor(t) else t
    if t.dim() != 1 or t.numel() < 2:
        raise InvalidArgumentError(
            f"{name} must be a 1-D tensor of at least 2 times, got shape {tuple(t.shape)}"
        )
    return t


class NeuralODE(nn.Module):
    """``y(t) = y0 + int f(s, y(s)) ds``: a learnable flow, augmented when ``augment_dim > 0``.

    Augmented Neural ODEs (Dupont et al. 2019) append ``augment_dim`` zeros to the state, so
    trajectories can pass around each other in the extra dimensions; ``func`` then maps
    ``dim + augment_dim`` to ``dim + augment_dim``.

    Args:
        func: the vector field ``f(t, y)`` (``t`` a scalar tensor, ``y`` of shape (B, D + A)).
        augment_dim: number of zero dimensions appended to the input.
        t: the default time grid; :meth:`forward` returns the state at ``t[-1]``.
        method, rtol, atol, options: solver settings (see :class:`~kutta.models.SolverOptions`).
        gradient: ``"backprop"`` or ``"adjoint"``.

    Attributes:
        nfe: vector-field evaluations since the last call began (includes an adjoint backward).

    Example:
        >>> from kutta.models import NeuralODE, TimeMLP
        >>> model = NeuralODE(TimeMLP(3, hidden=(16,)), augment_dim=1, method="rk4",
        ...                   options={"step_size": 0.25})
        >>> model(torch.randn(5, 2)).shape
        torch.Size([5, 3])
    """

    def __init__(
        self,
        func: nn.Module,
        augment_dim: int = 0,
        t: torch.Tensor | Sequence[float] = (0.0, 1.0),
        *,
        method: str | None = "dopri5",
        rtol: float = 1e-3,
        atol: float = 1e-4,
        options: Mapping[str, Any] | None = None,
        gradient: str = "backprop",
    ):
        super().__init__()
        if augment_dim < 0:
            raise InvalidArgumentError(f"augment_dim must be >= 0, got {augment_dim}")
        self.field = _CountingField(func)
        self.augment_dim = augment_dim
        # Kept in float64 and cast per call, so that a float32 default dtype does not round
        # the grid of a float64 model.
        self.t = _as_time_grid(torch.as_tensor(t, dtype=torch.float64)).clone()
        self.solver = make_solver_options(method, rtol, atol, options, gradient)

    @property
    def func(self) -> nn.Module:
        return self.field.func

    @property
    def nfe(self) -> int:
        return self.field.nfe

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (B, D) with ``augment_dim`` zero columns appended: (B, D + A)."""
        if self.augment_dim == 0:
            return x
        return torch.cat([x, x.new_zeros(*x.shape[:-1], self.augment_dim)], dim=-1)

    def trajectory(self, x: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        """The (augmented) state at every time of ``t`` (default: the model's grid): (T, B, D + A)."""
        grid = self.t if t is None else _as_time_grid(t)
        self.field.nfe = 0
        return integrate(self.field, self.augment(x), grid.to(x), self.solver)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The (augmented) state at the last time of the grid: (B, D + A)."""
        return self.trajectory(x)[-1]


class ODEBlock(NeuralODE):
    """A residual block made continuous: ``h -> h(t1)`` where ``dh/dt = func(t, h)``, ``h(0) = h``.

    With ``method="euler"`` and ``options={"step_size": t1 / n}`` it equals ``n`` weight-tied
    residual blocks ``h + (t1 / n) func(t_k, h)`` (see :class:`ResidualStack`).

    Example:
        >>> from kutta.models import ODEBlock, TimeMLP
        >>> block = ODEBlock(TimeMLP(8, hidden=(8,)), method="euler", options={"step_size": 0.25})
        >>> block(torch.randn(3, 8)).shape
        torch.Size([3, 8])
    """

    def __init__(
        self,
        func: nn.Module,
        t1: float = 1.0,
        *,
        method: str | None = "dopri5",
        rtol: float = 1e-3,
        atol: float = 1e-4,
        options: Mapping[str, Any] | None = None,
        gradient: str = "backprop",
    ):
        if not t1 > 0:
            raise InvalidArgumentError(f"t1 must be positive, got {t1}")
        super().__init__(
            func,
            t=(0.0, float(t1)),
            method=method,
            rtol=rtol,
            atol=atol,
            options=options,
            gradient=gradient,
        )


class ResidualStack(nn.Module):
    """``n`` residual blocks ``h <- h + (t1 / n) f_k(t_k, h)`` with ``t_k = k t1 / n``.

    Pass the same module ``n`` times (or use :meth:`tied`) for a weight-tied ResNet, which is
    explicit Euler on ``dh/dt = f(t, h)``; distinct modules give an ordinary ResNet.

    Example:
        >>> from kutta.models import ResidualStack, TimeMLP
        >>> stack = ResidualStack.tied(TimeMLP(4, hidden=(8,)), depth=3)
        >>> stack(torch.randn(2, 4)).shape
        torch.Size([2, 4])
    """

    def __init__(self, blocks: Sequence[nn.Module], t1: float = 1.0):
        super().__init__()
        if len(blocks) == 0:
            raise InvalidArgumentError("ResidualStack needs at least one block")
        self.blocks = nn.ModuleList(blocks)
        self.t1 = float(t1)

    @classmethod
    def tied(cls, func: nn.Module, depth: int, t1: float = 1.0) -> ResidualStack:
        """A weight-tied stack: the same ``func`` in every one of ``depth`` blocks."""
        return cls([func] * depth, t1=t1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        dt = self.t1 / len(self.blocks)
        for k, block in enumerate(self.blocks):
            h = h + dt * block(torch.tensor(k * dt, dtype=h.dtype, device=h.device), h)
        return h


_BODIES = ("ode", "resnet")


class ODENetClassifier(nn.Module):
    """A classifier ``linear -> body -> linear``: the body is an :class:`ODEBlock` or a ResNet.

    Args:
        in_features, num_classes: input width and number of classes.
        width: the width of the hidden state the body evolves.
        hidden: hidden widths of the vector field :class:`TimeMLP` (or of each ResNet block).
        body: ``"ode"`` (an ODE block) or ``"resnet"`` (``depth`` untied residual blocks, the
            same-width baseline).
        depth: number of residual blocks when ``body="resnet"``.
        t1, method, rtol, atol, options, gradient: settings of the ODE block.

    Example:
        >>> from kutta.models import ODENetClassifier
        >>> clf = ODENetClassifier(64, 10, width=16, method="rk4", options={"step_size": 0.5})
        >>> clf(torch.randn(3, 64)).shape
        torch.Size([3, 10])
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        width: int = 64,
        hidden: Sequence[int] = (64,),
        body: str = "ode",
        depth: int = 4,
        t1: float = 1.0,
        *,
        method: str | None = "dopri5",
        rtol: float = 1e-3,
        atol: float = 1e-4,
        options: Mapping[str, Any] | None = None,
        gradient: str = "backprop",
    ):
        super().__init__()
        if body not in _BODIES:
            raise UnknownNameError("body", body, _BODIES)
        self.encode = nn.Linear(in_features, width)
        if body == "ode":
            self.body: nn.Module = ODEBlock(
                TimeMLP(width, hidden),
                t1=t1,
                method=method,
                rtol=rtol,
                atol=atol,
                options=options,
                gradient=gradient,
            )
        else:
            self.body = ResidualStack([TimeMLP(width, hidden) for _ in range(depth)], t1=t1)
        self.classify = nn.Sequential(nn.Softplus(), nn.Linear(width, num_classes))

    @property
    def nfe(self) -> int:
        """Vector-field evaluations of the last call (the ODE body), or the depth of a ResNet."""
        return self.body.nfe if isinstance(self.body, ODEBlock) else len(self.body.blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (B, num_classes) for inputs (B, in_features)."""
        return self.classify(self.body(self.encode(x)))
