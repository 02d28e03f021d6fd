"""Neural controlled differential equations (Kidger et al. 2020).

``z(t) = z(t0) + int f(z(s)) dX(s)``: a hidden state driven by a continuous path ``X`` built
from the observations (see :mod:`kutta.interpolate`). It is solved as the ODE
``dz/dt = f(z) X'(t)``. Irregular sampling and missing values (NaN) are handled by the path;
time should be one of its channels so that the model knows how fast the data arrives.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from kutta.errors import InvalidArgumentError, UnknownNameError
from kutta.interpolate import (
    ControlPath,
    HermiteCubic,
    LinearInterpolation,
    NaturalCubicSpline,
    RectilinearInterpolation,
    with_time_channel,
)
from kutta.models._solver import evolve, evolve_through, make_solver_options
from kutta.models.ode_rnn import _check_no_step_size

INTERPOLATIONS = ("linear", "rectilinear", "hermite", "natural")


def control_path(
    values: torch.Tensor,
    times: torch.Tensor,
    interpolation: str = "hermite",
    time_channel: bool = True,
    mask: torch.Tensor | None = None,
) -> ControlPath:
    """A control path through observations ``values`` (B, T, C) at ``times`` ((T,) or (B, T)).

    NaN marks a missing value, and so does ``mask == False`` if a mask is given (e.g. an
    ``IrregularBatch``'s, whose missing values are stored as 0). ``interpolation`` is ``"linear"``, ``"rectilinear"`` (causal,
    parametrised by knot index, time always a channel), ``"hermite"`` (Hermite cubic with
    backward differences, causal and smooth: the default) or ``"natural"`` (natural cubic
    spline: smooth but not causal). ``time_channel`` prepends time as channel 0.

    Example:
        >>> path = control_path(torch.randn(4, 10, 2), torch.linspace(0, 1, 10))
        >>> path.channels
        3
    """
    if interpolation not in INTERPOLATIONS:
        raise UnknownNameError("interpolation", interpolation, INTERPOLATIONS)
    if mask is not None:
        if mask.shape != values.shape:
            raise InvalidArgumentError(
                f"mask must have the shape of values {tuple(values.shape)}, got {tuple(mask.shape)}"
            )
        values = values.masked_fill(~mask.bool(), float("nan"))
    if interpolation == "rectilinear":
        return RectilinearInterpolation.from_values(values, times)
    if time_channel:
        values = with_time_channel(values, times)
    kind = {"linear": LinearInterpolation, "hermite": HermiteCubic, "natural": NaturalCubicSpline}
    return kind[interpolation].from_values(values, times)


class CDEVectorField(nn.Module):
    """``f(z)``: an MLP from the hidden state (H) to an H x C matrix, tanh-bounded.

    Example:
        >>> CDEVectorField(8, 3, width=16)(torch.zeros(2, 8)).shape
        torch.Size([2, 8, 3])
    """

    def __init__(self, hidden_dim: int, input_channels: int, width: int = 64, depth: int = 1):
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(hidden_dim, width), nn.Softplus()]
        for _ in range(depth - 1):
            layers += [nn.Linear(width, width), nn.Softplus()]
        layers += [nn.Linear(width, hidden_dim * input_channels), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.hidden_dim, self.input_channels = hidden_dim, input_channels

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(*z.shape[:-1], self.hidden_dim, self.input_channels)


class _CDEField(nn.Module):
    """``dz/dt = f(z) X'(t)``, optionally with the time held inside one piece ``(low, high]``.

    A piecewise-linear path has kinks at its knots, and it looks up the piece to the *left* of
    a knot; a step that starts at knot k must use piece k. Solving one knot interval at a time
    with the time held one float past its start (a round-off-sized shift) gets that right.
    In per-sample solves the loop passes only the unfinished ``rows`` of the batch; the path
    answers for the whole batch, so the other rows ask at ``idle_times`` (any valid times).
    """

    needs_rows = True

    def __init__(
        self,
        vector_field: nn.Module,
        path: ControlPath,
        idle_times: torch.Tensor,
        piece: tuple[torch.Tensor, torch.Tensor] | None = None,
    ):
        super().__init__()
        self.vector_field = vector_field
        self.path = path
        self.idle_times = idle_times
        self.piece = None
        if piece is not None:
            t_from, t_to = piece
            inside = torch.nextafter(t_from, t_to)
            self.piece = (torch.minimum(inside, t_to), torch.maximum(inside, t_to))

    def forward(
        self, t: torch.Tensor, z: torch.Tensor, rows: torch.Tensor | None = None
    ) -> torch.Tensor:
        if self.piece is not None:
            low, high = self.piece if rows is None else (p[rows] for p in self.piece)
            t = torch.minimum(torch.maximum(t, low), high)
        if rows is None:
            dx = self.path.derivative(t)
        else:
            dx = self.path.derivative(self.idle_times.index_put((rows,), t.to(self.idle_times)))
            dx = dx[rows]
        return (self.vector_field(z) @ dx.unsqueeze(-1)).squeeze(-1)


class NeuralCDE(nn.Module):
    """A Neural CDE with a linear initial map and a linear readout.

    ``z(t0) = W0 X(t0)``, ``dz = f(z) dX``, output ``readout(z(t_end))`` at the end of each
    series (its padding, which repeats its last time, is never used).

    Args:
        input_channels: channels C of the control path (including time if it is a channel).
        hidden_dim: size H of the hidden state.
        output_dim: size of the readout.
        vector_field: ``f(z) -> (B, H, C)`` (default: :class:`CDEVectorField`, width 64).
        method, rtol, atol, options, gradient, batch_mode: solver settings (see
            :class:`~kutta.models.SolverOptions`). The CDE is solved one knot interval at a
            time; with ``batch_mode="shared"`` a fixed-step method takes one step per interval.

    Example:
        >>> from kutta.models import NeuralCDE, control_path
        >>> path = control_path(torch.randn(4, 10, 2), torch.linspace(0, 1, 10))
        >>> NeuralCDE(3, hidden_dim=8, output_dim=1, method="rk4")(path).shape
        torch.Size([4, 1])
    """

    def __init__(
        self,
        input_channels: int,
        hidden_dim: int,
        output_dim: int,
        vector_field: nn.Module | None = None,
        *,
        method: str | None = "dopri5",
        rtol: float = 1e-3,
        atol: float = 1e-4,
        options: Mapping[str, Any] | None = None,
        gradient: str = "backprop",
        batch_mode: str = "shared",
    ):
        super().__init__()
        self.solver = make_solver_options(method, rtol, atol, options, gradient, batch_mode)
        _check_no_step_size(self.solver)
        self.input_channels = input_channels
        self.initial = nn.Linear(input_channels, hidden_dim)
        self.vector_field = (
            vector_field if vector_field is not None else CDEVectorField(hidden_dim, input_channels)
        )
        self.readout = nn.Linear(hidden_dim, output_dim)

    def _check(self, path: ControlPath) -> None:
        if not isinstance(path, ControlPath):
            raise InvalidArgumentError(
                f"expected a kutta.interpolate control path, got {type(path).__name__}"
            )
        if path.channels != self.input_channels:
            raise InvalidArgumentError(
                f"the path has {path.channels} channels but the model expects {self.input_channels}"
            )

    def states(self, path: ControlPath) -> torch.Tensor:
        """``z`` at every knot of the path (each observation): (B, T, H).

        A smooth (cubic) path is solved in one go, stepping on the knots (where its second
        derivative jumps: stepping over them costs accuracy). A piecewise-linear
        path is solved one knot interval at a time so that no step straddles a kink. Either
        way a fixed-step method in shared mode takes one step per interval, and padding knots
        (which repeat a series' last time) give empty intervals: the state stays put.
        """
        self._check(path)
        knots = path.grid_points.to(self.initial.weight).expand(path.batch_size, -1)
        start = knots[:, 0]
        z = self.initial(path.evaluate(start))
        if isinstance(path, (HermiteCubic, NaturalCubicSpline)):
            field = _CDEField(self.vector_field, path, start)
            later = evolve_through(field, z, start, knots[:, 1:], self.solver, land=True)
            return torch.cat([z.unsqueeze(1), later], dim=1)
        states = [z]
        for k in range(knots.shape[1] - 1):
            t_from, t_to = knots[:, k], knots[:, k + 1]
            field = _CDEField(self.vector_field, path, start, piece=(t_from, t_to))
            z = evolve(field, z, t_from, t_to, self.solver)
            states.append(z)
        return torch.stack(states, dim=1)

    def final_state(self, path: ControlPath) -> torch.Tensor:
        """``z`` at the end of each series: (B, H)."""
        return self.states(path)[:, -1]

    def forward(self, path: ControlPath) -> torch.Tensor:
        """The readout of the final state: (B, output_dim)."""
        return self.readout(self.final_state(path))
