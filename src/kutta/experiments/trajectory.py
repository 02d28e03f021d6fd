"""Pieces shared by experiments that fit one trajectory: the model wrapper, the fit error and a
validated CSV reader."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from kutta.errors import InvalidArgumentError
from kutta.models import NeuralODE
from kutta.train.config import SolverConfig


class TrajectoryODE(nn.Module):
    """``forward(y0, t)`` returns the whole solution ``(len(t), *y0.shape)`` of ``dy/dt = func``.

    A thin wrapper of :class:`kutta.models.NeuralODE` whose ``forward`` is the trajectory, so that
    DistributedDataParallel (which wraps ``forward``) sees one call per training step.

    Example:
        >>> from kutta.models import TimeMLP
        >>> model = TrajectoryODE(TimeMLP(2, hidden=(8,)), SolverConfig(method="rk4", step_size=0.1))
        >>> model(torch.zeros(3, 2), torch.linspace(0, 1, 5)).shape
        torch.Size([5, 3, 2])
    """

    def __init__(self, func: nn.Module, solver: SolverConfig):
        super().__init__()
        kwargs = solver.odeint_kwargs()
        self.node = NeuralODE(
            func,
            method=kwargs["method"],
            rtol=kwargs["rtol"],
            atol=kwargs["atol"],
            options=kwargs["options"],
            gradient=solver.gradient,
        )

    @property
    def func(self) -> nn.Module:
        return self.node.func

    @property
    def nfe(self) -> int:
        """Vector-field evaluations since the last call began (an adjoint backward included)."""
        return self.node.nfe

    def forward(self, y0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.node.trajectory(y0, t)


def trajectory_mse(
    model: nn.Module, y0: torch.Tensor, t: torch.Tensor, target: torch.Tensor
) -> tuple[float, int]:
    """Solve from ``y0`` over ``t``; the MSE against ``target`` (T, D) and the NFE it took."""
    prediction = model(y0, t)
    nfe = model.nfe
    return (prediction - target).pow(2).mean().item(), nfe


def read_trajectory_csv(
    path: str | Path,
    time_col: str | None = None,
    value_cols: Sequence[str] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Read one trajectory from a CSV file with a header row; float64 ``(t (T,), values (T, D))``.

    ``time_col`` defaults to the first column and ``value_cols`` to all other columns. Time
    stamps may be irregular but must be strictly increasing. Every problem (missing columns, rows
    with the wrong number of fields, non-numbers, NaN/inf, non-increasing time) is reported with
    its line number.

    Example:
        >>> t, y = read_trajectory_csv("my.csv", time_col="t", value_cols=["x", "y"])  # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidArgumentError(f"data file not found: {path}")
    try:
        with path.open(newline="") as file:
            rows = list(csv.reader(file))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InvalidArgumentError(f"{path}: not a readable CSV file ({exc})") from None
    numbered = [(i + 1, row) for i, row in enumerate(rows) if any(cell.strip() for cell in row)]
    if not numbered:
        raise InvalidArgumentError(f"{path}: the file is empty")
    _, header = numbered[0]
    header = [name.strip() for name in header]
    time_col = time_col if time_col is not None else header[0]
    if value_cols is None:
        value_cols = [name for name in header if name != time_col]
    value_cols = list(value_cols)
    missing = [name for name in [time_col, *value_cols] if name not in header]
    if missing:
        raise InvalidArgumentError(
            f"{path}: column(s) {', '.join(map(repr, missing))} not in the header "
            f"(columns: {', '.join(header)})"
        )
    if not value_cols:
        raise InvalidArgumentError(f"{path}: no value columns besides the time column {time_col!r}")
    columns = [header.index(name) for name in [time_col, *value_cols]]
    problems: list[str] = []
    data: list[list[float]] = []
    previous_time, previous_line = -math.inf, 0
    for line, row in numbered[1:]:
        if len(row) != len(header):
            problems.append(f"line {line}: {len(row)} fields, expected {len(header)}")
            continue
        try:
            values = [float(row[c]) for c in columns]
        except ValueError:
            bad = next(row[c] for c in columns if not _is_float(row[c]))
            problems.append(f"line {line}: {bad.strip()!r} is not a number")
            continue
        named = zip([time_col, *value_cols], values)
        not_finite = [name for name, v in named if not math.isfinite(v)]
        if not_finite:
            problems.append(f"line {line}: NaN or inf in {', '.join(not_finite)}")
            continue
        if values[0] <= previous_time:
            problems.append(
                f"line {line}: time {values[0]:g} is not after {previous_time:g} (line {previous_line})"
            )
        previous_time, previous_line = values[0], line
        data.append(values)
    if problems:
        shown = problems[:10] + (
            [f"... and {len(problems) - 10} more"] if len(problems) > 10 else []
        )
        raise InvalidArgumentError(f"{path}: bad rows:\n  " + "\n  ".join(shown))
    if len(data) < 2:
        raise InvalidArgumentError(f"{path}: need at least 2 data rows, found {len(data)}")
    table = torch.tensor(data, dtype=torch.float64)
    return table[:, 0], table[:, 1:]


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
