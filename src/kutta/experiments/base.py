"""What an experiment is: a config, data + model (a Task), final metrics, plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch

from kutta.errors import InvalidArgumentError
from kutta.train.trainer import Task


class Experiment:
    """Base class of experiments. Subclasses set ``name``, ``description``, ``config_class``.

    ``config_class`` is a dataclass with a ``train`` section (:class:`kutta.train.TrainConfig`)
    and any experiment sections (``data``, ``model``, ``solver``).

    Example:
        >>> @register  # doctest: +SKIP
        ... class Pendulum(Experiment):
        ...     name, description, config_class = "pendulum", "fit a pendulum", PendulumConfig
        ...     def build(self, config, device, dtype): ...
    """

    name: ClassVar[str]
    description: ClassVar[str]
    config_class: ClassVar[type]

    def default_config(self) -> Any:
        return self.config_class()

    def build(self, config: Any, device: torch.device, dtype: torch.dtype) -> Task:
        """Make the data and the model on ``device``; deterministic given ``config``."""
        raise NotImplementedError

    def final_metrics(self, task: Task, config: Any) -> dict[str, float]:
        """The metrics written to ``metrics.json`` after training."""
        return task.evaluate(task.model)

    def evaluate_file(self, task: Task, config: Any, path: Path) -> dict[str, float]:
        """Metrics of the trained model on new data from ``path`` (``kutta eval --data``)."""
        raise InvalidArgumentError(f"experiment {self.name!r} cannot evaluate on a data file")

    def plot(self, task: Task, config: Any, plots_dir: Path) -> list[Path]:
        """Experiment-specific figures (the Trainer's curves are drawn separately)."""
        return []

    def summary(self, metrics: dict[str, float]) -> str:
        """One line for the terminal after training, e.g. the fit error."""
        return ""
