"""ODE-RNN (Rubanova et al. 2019): a GRU that updates at observations and follows an ODE between.

Between consecutive observation times of a series the hidden state solves ``dh/dt = f(t, h)``;
at an observation a GRU cell takes the observed values and the mask. Each series follows its
own times (see :func:`kutta.models._solver.evolve`), so a series' result does not depend on the
padding or on the other series of the batch (exactly for fixed-step methods; to solver
tolerance for adaptive ones, whose step sizes are shared by the batch).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
from torch import nn

from kutta.errors import InvalidArgumentError
from kutta.models._series import Series, as_series, reverse_series
from kutta.models._solver import SolverOptions, evolve, evolve_through, make_solver_options
from kutta.models.layers import AutonomousMLP


class ODERNNOutput(NamedTuple):
    """Hidden states at every time step.

    ``prior[:, j]`` is the state evolved to ``times[:, j]`` before seeing observation j (use it
    to predict observation j); ``posterior[:, j]`` after the update; ``last`` is the posterior
    at each series' last (non-padding) time.
    """

    prior: torch.Tensor  # (B, T, H)
    posterior: torch.Tensor  # (B, T, H)
    last: torch.Tensor  # (B, H)


def _check_no_step_size(solver: SolverOptions) -> None:
    if solver.batch_mode == "shared" and solver.options and "step_size" in solver.options:
        raise InvalidArgumentError(
            "options['step_size'] needs batch_mode='per_sample' here: with shared steps a "
            "fixed-step method takes one step per interval between consecutive times"
        )


def run_ode_rnn(
    cell: nn.GRUCell,
    func: nn.Module,
    series: Series,
    h0: torch.Tensor,
    solver: SolverOptions,
) -> ODERNNOutput:
    """The ODE-RNN recursion over ``series`` (times may decrease: a series run backwards)."""
    priors, posteriors = [], []
    h = h0
    for j in range(series.times.shape[1]):
        if j > 0:
            h = evolve(func, h, series.times[:, j - 1], series.times[:, j], solver)
        priors.append(h)
        mask = series.mask[:, j]
        updated = cell(torch.cat([series.values[:, j], mask], dim=-1), h)
        observed = mask.amax(dim=-1, keepdim=True)
        h = observed * updated + (1 - observed) * h
        posteriors.append(h)
    return ODERNNOutput(torch.stack(priors, 1), torch.stack(posteriors, 1), h)


class ODERNN(nn.Module):
    """ODE-RNN: GRU updates at the observations, ODE evolution in between.

    Args:
        input_channels: channels C of the observed values.
        hidden_dim: size H of the hidden state.
        output_channels: if given, a linear readout H -> output_channels used by
            :meth:`predict` and :meth:`forecast`.
        func: the hidden vector field ``f(t, h)``, ``t`` of shape (B,) (default: a tanh MLP
            of width H, autonomous).
        method, rtol, atol, options, gradient, batch_mode: solver settings (see
            :class:`~kutta.models.SolverOptions`). With ``batch_mode="shared"`` a fixed-step
            method takes one step per interval between consecutive times.

    Example:
        >>> from types import SimpleNamespace
        >>> from kutta.models import ODERNN
        >>> batch = SimpleNamespace(times=torch.tensor([[0.0, 0.4, 1.0], [0.0, 0.7, 0.7]]),
        ...                         values=torch.randn(2, 3, 2), lengths=torch.tensor([3, 2]))
        >>> model = ODERNN(2, hidden_dim=8, output_channels=2, method="rk4")
        >>> model(batch).prior.shape, model.predict(batch).shape
        (torch.Size([2, 3, 8]), torch.Size([2, 3, 2]))
    """

    def __init__(
        self,
        input_channels: int,
        hidden_dim: int,
        output_channels: int | None = None,
        func: nn.Module | None = None,
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
        self.hidden_dim = hidden_dim
        self.cell = nn.GRUCell(2 * input_channels, hidden_dim)
        self.func = func if func is not None else AutonomousMLP(hidden_dim, (hidden_dim,))
        self.readout = nn.Linear(hidden_dim, output_channels) if output_channels else None

    def _series(self, batch: Any) -> Series:
        series = as_series(batch)
        if series.values.shape[-1] != self.input_channels:
            raise InvalidArgumentError(
                f"expected {self.input_channels} channels, got {series.values.shape[-1]}"
            )
        return series

    def forward(self, batch: Any, reverse: bool = False) -> ODERNNOutput:
        """Run over the batch (an IrregularBatch-like object); ``reverse`` runs backwards in time
        (then ``prior``/``posterior`` are in reversed order and ``last`` is at the first time)."""
        series = self._series(batch)
        if reverse:
            series = reverse_series(series)
        h0 = series.values.new_zeros(series.values.shape[0], self.hidden_dim)
        return run_ode_rnn(self.cell, self.func, series, h0, self.solver)

    def _readout(self) -> nn.Module:
        if self.readout is None:
            raise InvalidArgumentError("this ODERNN has no readout: pass output_channels")
        return self.readout

    def predict(self, batch: Any) -> torch.Tensor:
        """One-step-ahead predictions at every time, from the prior states: (B, T, out)."""
        return self._readout()(self(batch).prior)

    def forecast(self, batch: Any, query_times: torch.Tensor) -> torch.Tensor:
        """Evolve each series' last state to ``query_times`` ((Q,) or (B, Q), after the
        series' last time) and read out: (B, Q, out)."""
        series = self._series(batch)
        last = run_ode_rnn(
            self.cell,
            self.func,
            series,
            series.values.new_zeros(series.values.shape[0], self.hidden_dim),
            self.solver,
        ).last
        query = query_times.to(last).expand(last.shape[0], -1)
        states = evolve_through(self.func, last, series.last_time, query, self.solver)
        return self._readout()(states)
