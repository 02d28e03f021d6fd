"""What the neural-operator experiments share: the model section of the config, input/output splits, the relative-L2 loss, errors
at the training resolution and zero-shot on a finer grid, and the metrics built from them."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from kutta.errors import InvalidArgumentError
from kutta.experiments.base import Experiment
from kutta.pde.fno import relative_l2
from kutta.train.trainer import StepOutput

Pairs = tuple[torch.Tensor, torch.Tensor]


def solve_once(solve: Callable[[Any, torch.dtype], Pairs], data: Any, dtype: torch.dtype) -> Pairs:
    """``solve(data, dtype)`` for a data-settings dataclass, solved once per process for the same
    settings and dtype: evaluating or plotting a run in the process that trained it reuses its
    data (the same tensors; nothing writes into them). The solves are seeded by the settings, so
    a resumed run's new process solves the same values.

    Example:
        >>> @dataclasses.dataclass
        ... class Settings:
        ...     n: int = 2
        >>> def solve(d, dtype):
        ...     return torch.zeros(d.n, dtype=dtype), torch.ones(d.n, dtype=dtype)
        >>> solve_once(solve, Settings(), torch.float64) is solve_once(solve, Settings(), torch.float64)
        True
    """
    return _solved(solve, type(data), tuple(dataclasses.asdict(data).items()), dtype)


@functools.lru_cache(maxsize=1)  # one data set per process: the default Darcy one is 80 MB
def _solved(
    solve: Callable[[Any, torch.dtype], Pairs],
    data_type: type,
    settings: tuple[tuple[str, Any], ...],
    dtype: torch.dtype,
) -> Pairs:
    return solve(data_type(**dict(settings)), dtype)


@dataclasses.dataclass
class OperatorModel:
    """The ``model`` section of the FNO experiments: the operator's size."""

    modes: int = 12
    width: int = 32
    num_layers: int = 4
    projection_width: int = 128
    #: zero padding of each axis before the Fourier layers, as a fraction of its points
    #: (for non-periodic domains; see :class:`kutta.pde.FNO1d`)
    padding: float = 0.0

    def __post_init__(self) -> None:
        if min(self.modes, self.width, self.num_layers, self.projection_width) < 1:
            raise InvalidArgumentError(
                "model.modes, width, num_layers, projection_width must be >= 1"
            )
        if not 0 <= self.padding <= 1:
            raise InvalidArgumentError(f"model.padding must be in [0, 1], got {self.padding}")

    def sizes(self) -> dict[str, Any]:
        """The keyword arguments of :class:`~kutta.pde.FNO1d` / ``FNO2d`` after ``modes, width``."""
        return {
            "num_layers": self.num_layers,
            "projection_width": self.projection_width,
            "padding": self.padding,
        }


class OperatorTask:
    """A Task over ``splits``: name -> (inputs, targets), with ``"train"``, ``"test"`` (both at
    the training resolution) and ``"test_super"`` (the test set on the finer grid).

    Subclasses set ``splits``, ``model``, ``num_examples`` and may lower ``error_batch_size``
    (errors are computed in batches to bound memory on fine grids).
    """

    splits: dict[str, tuple[torch.Tensor, torch.Tensor]]
    model: nn.Module
    num_examples: int
    error_batch_size = 100

    def nfe(self) -> int:
        return 0  # no ODE solver inside the model

    def loss(self, model: nn.Module, indices: torch.Tensor) -> StepOutput:
        inputs, targets = self.splits["train"]
        indices = indices.to(inputs.device)
        return StepOutput(loss=relative_l2(model(inputs[indices]), targets[indices]))

    def error(self, model: nn.Module, split: str) -> float:
        """Mean relative L2 error over a split."""
        inputs, targets = self.splits[split]
        size = self.error_batch_size
        total = sum(
            relative_l2(model(inputs[i : i + size]), targets[i : i + size])
            * len(inputs[i : i + size])
            for i in range(0, len(inputs), size)
        )
        return float(total) / len(inputs)

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        test = self.error(model, "test")
        return {"val_loss": test, "test_relative_l2": test}


class OperatorExperiment(Experiment):
    """Final metrics of an operator experiment whose config has ``data.resolution`` and
    ``data.super_resolution``."""

    def final_metrics(self, task: OperatorTask, config: Any) -> dict[str, float]:
        model = task.model.eval()
        with torch.no_grad():
            return {
                "train_relative_l2": task.error(model, "train"),
                "test_relative_l2": task.error(model, "test"),
                "test_relative_l2_super_resolution": task.error(model, "test_super"),
                "resolution": config.data.resolution,
                "super_resolution": config.data.super_resolution,
                "num_parameters": sum(p.numel() for p in model.parameters()),
            }
