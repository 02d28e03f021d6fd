"""A discrete baseline for irregular series: a GRU that is told the time gaps (RNN-Δt).

Rubanova et al. (2019) compare ODE-RNN and Latent ODE with a GRU whose input carries the time
since the previous step. Here ``h_j = GRU([x_j m_j, m_j, t_j - t_{j-1}], h_{j-1})``, and the
prediction for step j comes from ``GRU([0, 0, t_j - t_{j-1}], h_{j-1})``: the gap but not the
value, as :meth:`kutta.models.ODERNN.predict` uses the state evolved to ``t_j`` before the update.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from kutta.errors import InvalidArgumentError
from kutta.models._series import Series, as_series


class GRUDelta(nn.Module):
    """GRU with time-gap inputs, with one-step-ahead predictions and forecasts.

    Args:
        input_channels: channels C of the observed values.
        hidden_dim: size of the GRU state.
        output_channels: size of the linear readout.

    Example:
        >>> from types import SimpleNamespace
        >>> from kutta.models import GRUDelta
        >>> batch = SimpleNamespace(times=torch.tensor([0.0, 0.4, 1.0]), values=torch.randn(2, 3, 1))
        >>> model = GRUDelta(1, hidden_dim=8, output_channels=1)
        >>> model.predict(batch).shape, model.forecast(batch, torch.tensor([1.5, 2.0])).shape
        (torch.Size([2, 3, 1]), torch.Size([2, 2, 1]))
    """

    def __init__(self, input_channels: int, hidden_dim: int, output_channels: int):
        super().__init__()
        self.input_channels, self.hidden_dim = input_channels, hidden_dim
        self.cell = nn.GRUCell(2 * input_channels + 1, hidden_dim)
        self.readout = nn.Linear(hidden_dim, output_channels)

    def _series(self, batch: Any) -> Series:
        series = as_series(batch)
        if series.values.shape[-1] != self.input_channels:
            raise InvalidArgumentError(
                f"expected {self.input_channels} channels, got {series.values.shape[-1]}"
            )
        return series

    def _run(self, series: Series) -> tuple[torch.Tensor, torch.Tensor]:
        """Prior states (before seeing step j) at every step, and the last state."""
        b, t, c = series.values.shape
        h = series.values.new_zeros(b, self.hidden_dim)
        blank = series.values.new_zeros(b, 2 * c)
        valid = series.valid.to(h.dtype).unsqueeze(-1)
        priors = []
        for j in range(t):
            gap = (series.times[:, j] - series.times[:, max(j - 1, 0)]).unsqueeze(-1)
            priors.append(self.cell(torch.cat([blank, gap], dim=-1), h))
            seen = torch.cat([series.values[:, j], series.mask[:, j], gap], dim=-1)
            # Padding must leave the state alone (a GRU step with zero input would not).
            h = valid[:, j] * self.cell(seen, h) + (1 - valid[:, j]) * h
        return torch.stack(priors, dim=1), h

    def predict(self, batch: Any) -> torch.Tensor:
        """One-step-ahead predictions at every time: (B, T, out)."""
        return self.readout(self._run(self._series(batch))[0])

    def forecast(self, batch: Any, query_times: torch.Tensor) -> torch.Tensor:
        """Predictions at ``query_times`` ((Q,) or (B, Q), after each series' last time),
        stepping through them with no observations: (B, Q, out)."""
        series = self._series(batch)
        _, h = self._run(series)
        query = query_times.to(h).expand(h.shape[0], -1)
        blank = h.new_zeros(h.shape[0], 2 * self.input_channels)
        previous, outputs = series.last_time, []
        for q in range(query.shape[1]):
            gap = (query[:, q] - previous).unsqueeze(-1)
            h = self.cell(torch.cat([blank, gap], dim=-1), h)
            outputs.append(self.readout(h))
            previous = query[:, q]
        return torch.stack(outputs, dim=1)
