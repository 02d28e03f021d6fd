"""Bring your own data: fit an autonomous neural ODE to one trajectory from a CSV file.

``kutta train neural-ode --data my.csv --time-col t --value-cols x,y``. Time stamps may be
irregular. The first ``1 - data.test_fraction`` of the series trains (random windows of
``data.window`` consecutive observations); the rest is the test split, predicted by running the
model on from the last training observation. Values are standardized with the training part's
mean and standard deviation; times are divided by a tenth of the training span.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kutta.errors import InvalidArgumentError
from kutta.experiments.base import Experiment
from kutta.experiments.registry import register
from kutta.experiments.trajectory import TrajectoryODE, read_trajectory_csv
from kutta.models import AutonomousMLP
from kutta.train.config import SolverConfig, TrainConfig
from kutta.train.trainer import StepOutput


@dataclasses.dataclass
class CsvData:
    #: the CSV file (a header row, then one row per time stamp)
    path: str = ""
    #: the time column ("" means the first column)
    time_col: str = ""
    #: the state columns (empty means every column but the time column)
    value_cols: list[str] = dataclasses.field(default_factory=list)
    window: int = 10
    test_fraction: float = 0.2

    def __post_init__(self) -> None:
        if self.window < 2:
            raise InvalidArgumentError(f"data.window must be >= 2, got {self.window}")
        if not 0 <= self.test_fraction < 1:
            raise InvalidArgumentError(
                f"data.test_fraction must be in [0, 1), got {self.test_fraction}"
            )


@dataclasses.dataclass
class FieldModel:
    hidden: int = 64
    layers: int = 2

    def __post_init__(self) -> None:
        if self.hidden < 1 or self.layers < 1:
            raise InvalidArgumentError("model.hidden and model.layers must be >= 1")


def _default_train() -> TrainConfig:
    return TrainConfig(
        steps=1000, batch_size=16, lr=3e-3, schedule="cosine", eval_every=100, restore_best=True
    )


@dataclasses.dataclass
class NeuralODEConfig:
    data: CsvData = dataclasses.field(default_factory=CsvData)
    model: FieldModel = dataclasses.field(default_factory=FieldModel)
    solver: SolverConfig = dataclasses.field(default_factory=SolverConfig)
    train: TrainConfig = dataclasses.field(default_factory=_default_train)


class CsvTrajectoryTask:
    """Windows of a user's trajectory, solved together on the union of their relative times."""

    def __init__(self, config: NeuralODEConfig, device: torch.device, dtype: torch.dtype):
        data = config.data
        if not data.path:
            raise InvalidArgumentError(
                "the neural-ode experiment needs a data file: --data FILE.csv (or data.path)"
            )
        t, values = read_trajectory_csv(data.path, data.time_col or None, data.value_cols or None)
        num_train = len(t) - int(len(t) * data.test_fraction)
        if num_train < data.window:
            raise InvalidArgumentError(
                f"{data.path}: {num_train} training rows, fewer than data.window = {data.window}"
            )
        train_values = values[:num_train]
        self.mean = train_values.mean(0)
        self.scale = (
            train_values.std(0).clamp_min(1e-12) if num_train > 1 else torch.ones_like(self.mean)
        )
        self.t0 = float(t[0])
        self.time_scale = max(float(t[num_train - 1] - t[0]) / 10, 1e-12)
        self.t = self.to_model_time(t).to(device=device, dtype=dtype)
        self.y = self.to_model_values(values).to(device=device, dtype=dtype)
        self.num_train = num_train
        self.window = data.window
        self.num_examples = num_train - data.window + 1
        dim = values.shape[1]
        func = AutonomousMLP(dim, hidden=(config.model.hidden,) * config.model.layers)
        self.model = TrajectoryODE(func, config.solver).to(device=device, dtype=dtype)
        self._offsets = torch.arange(data.window, device=device)

    def to_model_time(self, t: torch.Tensor) -> torch.Tensor:
        return (t - self.t0) / self.time_scale

    def to_model_values(self, values: torch.Tensor) -> torch.Tensor:
        return (values - self.mean) / self.scale

    def nfe(self) -> int:
        return self.model.nfe

    def loss(self, model: nn.Module, indices: torch.Tensor) -> StepOutput:
        rows = indices.to(self._offsets.device)[:, None] + self._offsets  # (batch, window)
        relative = self.t[rows] - self.t[rows[:, :1]]  # each window starts at 0
        grid, position = torch.unique(relative, sorted=True, return_inverse=True)
        solution = model(self.y[rows[:, 0]], grid)  # (len(grid), batch, dim)
        batch = torch.arange(len(rows), device=rows.device)[:, None]
        prediction = solution[position, batch]  # (batch, window, dim)
        loss = (prediction - self.y[rows]).pow(2).mean()

        def kinetic_energy() -> torch.Tensor:
            # of the field along the prediction (as in RNODE): small fields take few steps
            return self.model.func(grid[0], prediction).pow(2).sum(-1).mean()

        return StepOutput(loss=loss, regularizer=kinetic_energy)

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """MSE (standardized units) of the training part solved from its first observation."""
        prediction = model(self.y[0], self.t[: self.num_train])
        mse = (prediction - self.y[: self.num_train]).pow(2).mean().item()
        return {"val_loss": mse, "train_mse": mse, "nfe": model.nfe}


@register
class NeuralODEFromCSV(Experiment):
    name = "neural-ode"
    description = (
        "fit a neural ODE to your own trajectory: --data FILE.csv --time-col t --value-cols x,y"
    )
    config_class = NeuralODEConfig

    def build(
        self, config: NeuralODEConfig, device: torch.device, dtype: torch.dtype
    ) -> CsvTrajectoryTask:
        return CsvTrajectoryTask(config, device, dtype)

    def final_metrics(self, task: CsvTrajectoryTask, config: NeuralODEConfig) -> dict[str, float]:
        model = task.model.eval()
        with torch.no_grad():
            prediction = model(task.y[0], task.t)
        squared = (prediction - task.y).pow(2)
        train_mse = squared[: task.num_train].mean().item()
        metrics = {"train_mse": train_mse, "nfe": model.nfe, "num_train": task.num_train}
        if task.num_train < len(task.t):
            metrics["test_mse"] = squared[task.num_train :].mean().item()
        return metrics

    def evaluate_file(
        self, task: CsvTrajectoryTask, config: NeuralODEConfig, path: Path
    ) -> dict[str, float]:
        data = config.data
        t, values = read_trajectory_csv(path, data.time_col or None, data.value_cols or None)
        if values.shape[1] != task.y.shape[1]:
            raise InvalidArgumentError(
                f"{path}: {values.shape[1]} value columns, the model was trained on {task.y.shape[1]}"
            )
        dtype, device = task.y.dtype, task.y.device
        times = ((t - t[0]) / task.time_scale).to(device=device, dtype=dtype)
        target = task.to_model_values(values).to(device=device, dtype=dtype)
        with torch.no_grad():
            prediction = task.model.eval()(target[0], times)
        mse = (prediction - target).pow(2).mean().item()
        return {"mse_standardized": mse, "nfe": task.model.nfe, "num_points": len(t)}

    def plot(self, task: CsvTrajectoryTask, config: NeuralODEConfig, plots_dir: Path) -> list[Path]:
        from kutta.experiments import plotting

        fine = torch.linspace(0, float(task.t[-1]), 500, dtype=task.t.dtype, device=task.t.device)
        with torch.no_grad():
            learned = task.model.eval()(task.y[0], fine)

        def to_user(values: torch.Tensor) -> torch.Tensor:
            return values.cpu().double() * task.scale + task.mean

        def user_time(times: torch.Tensor) -> torch.Tensor:
            return times.cpu().double() * task.time_scale + task.t0

        names = config.data.value_cols or [f"y{i + 1}" for i in range(task.y.shape[1])]
        return [
            plotting.phase_portrait(
                plots_dir / "trajectories.png",
                t_data=user_time(task.t),
                y_data=to_user(task.y),
                t_model=user_time(fine),
                y_model=to_user(learned),
                title=f"neural ODE fit to {Path(config.data.path).name} "
                f"(trained on the first {task.num_train} rows)",
                names=names,
                boundary=float(user_time(task.t[task.num_train - 1])),
            )
        ]

    def summary(self, metrics: dict[str, Any]) -> str:
        text = f"train MSE (standardized units): {metrics['train_mse']:.4g}"
        if "test_mse" in metrics:
            text += f"; test MSE (extrapolation): {metrics['test_mse']:.4g}"
        return text
