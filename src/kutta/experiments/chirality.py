"""Neural CDE on spiral chirality: does a 2-D spiral turn clockwise or anticlockwise?

The toy of torchcde's example: ``t = linspace(0, 4 pi, 100)``,
``x = cos(s + t) / (1 + 0.5 t)``, ``y = sin(s + t) / (1 + 0.5 t)`` with ``s ~ U(0, 2 pi)``;
half of the series have ``x`` negated (label 1: they turn the other way); noise
``N(0, 0.01^2)``. Train, validation and test sets are separate draws of ``data.num_series``
series each. The control path is a Hermite cubic with backward differences through the
observations, with time as a channel.

Two Neural CDEs train side by side: ``full`` sees all points, ``dropped`` sees each series with
``data.drop_fraction`` of its points removed at random (different points per series), which
makes the times irregular and different across the batch.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kutta.errors import InvalidArgumentError
from kutta.experiments.base import Experiment
from kutta.experiments.registry import register
from kutta.models import CDEVectorField, NeuralCDE, control_path
from kutta.train.config import SolverConfig, TrainConfig
from kutta.train.trainer import StepOutput

TARGET_ACCURACY = 0.98
SPLITS = ("train", "val", "test")


@dataclasses.dataclass
class ChiralityData:
    #: series per split (train, validation and test are independent draws)
    num_series: int = 128
    num_points: int = 100
    noise: float = 0.01
    #: fraction of each series' points removed for the ``dropped`` model
    drop_fraction: float = 0.3

    def __post_init__(self) -> None:
        if self.num_series < 2 or self.num_points < 3:
            raise InvalidArgumentError("data.num_series must be >= 2 and data.num_points >= 3")
        if not 0 <= self.drop_fraction < 1 or self.noise < 0:
            raise InvalidArgumentError("data.drop_fraction must be in [0, 1), data.noise >= 0")
        if self.num_points - round(self.drop_fraction * self.num_points) < 2:
            raise InvalidArgumentError("data.drop_fraction leaves fewer than 2 points per series")


@dataclasses.dataclass
class ChiralityModel:
    hidden_dim: int = 8
    #: width of the CDE vector field's hidden layer
    width: int = 64
    interpolation: str = "hermite"


def _default_solver() -> SolverConfig:
    # rk4 without a step size: one step per interval between observations.
    return SolverConfig(method="rk4")


def _default_train() -> TrainConfig:
    # torchcde's example: 30 epochs of batches of 32 (4 batches per epoch).
    return TrainConfig(steps=120, batch_size=32, lr=1e-2, eval_every=20, log_every=4)


@dataclasses.dataclass
class ChiralityConfig:
    data: ChiralityData = dataclasses.field(default_factory=ChiralityData)
    model: ChiralityModel = dataclasses.field(default_factory=ChiralityModel)
    solver: SolverConfig = dataclasses.field(default_factory=_default_solver)
    train: TrainConfig = dataclasses.field(default_factory=_default_train)


def spiral_chirality_data(
    num_series: int, num_points: int, noise: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(t (T,), values (N, T, 2), labels (N,))``; label 1 marks the mirrored spirals.

    Example:
        >>> t, xy, labels = spiral_chirality_data(4, 10, 0.0, torch.Generator().manual_seed(0))
        >>> xy.shape, labels.tolist()
        (torch.Size([4, 10, 2]), [1.0, 1.0, 0.0, 0.0])
    """
    t = torch.linspace(0, 4 * math.pi, num_points, dtype=torch.float64)
    start = torch.rand(num_series, 1, generator=generator, dtype=torch.float64) * 2 * math.pi
    x = torch.cos(start + t) / (1 + 0.5 * t)
    y = torch.sin(start + t) / (1 + 0.5 * t)
    labels = torch.zeros(num_series, dtype=torch.float64)
    labels[: num_series // 2] = 1.0
    x = torch.where(labels[:, None] == 1, -x, x)
    values = torch.stack([x, y], dim=-1)
    values = values + noise * torch.randn(values.shape, generator=generator, dtype=torch.float64)
    return t, values, labels


def drop_points(
    t: torch.Tensor, values: torch.Tensor, fraction: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Remove ``round(fraction * T)`` random points from each series: times (N, K), values (N, K, C)."""
    num_series, num_points = values.shape[:2]
    keep = num_points - round(fraction * num_points)
    scores = torch.rand(num_series, num_points, generator=generator)
    kept = scores.argsort(dim=1)[:, :keep].sort(dim=1).values
    times = t[kept]
    return times, values.gather(1, kept.unsqueeze(-1).expand(-1, -1, values.shape[-1]))


class CountingCDEField(nn.Module):
    """A CDE vector field that counts its evaluations (``nfe``)."""

    def __init__(self, field: nn.Module):
        super().__init__()
        self.field = field
        self.nfe = 0

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        self.nfe += 1
        return self.field(z)


class ChiralityTask:
    """Observations of each split for both models (``full`` and ``dropped``) and two Neural CDEs."""

    def __init__(self, config: ChiralityConfig, device: torch.device, dtype: torch.dtype):
        data, model = config.data, config.model
        self.interpolation = model.interpolation
        generator = torch.Generator().manual_seed(config.train.seed)
        # (times (N, T), values (N, T, 2)) per model and split
        self.series: dict[str, dict[str, tuple[torch.Tensor, torch.Tensor]]] = {
            "full": {},
            "dropped": {},
        }
        self.labels: dict[str, torch.Tensor] = {}
        to = dict(device=device, dtype=dtype)
        for split in SPLITS:
            t, values, labels = spiral_chirality_data(
                data.num_series, data.num_points, data.noise, generator
            )
            times, kept = drop_points(t, values, data.drop_fraction, generator)
            self.labels[split] = labels.to(**to)
            full_times = t.expand(data.num_series, -1)
            self.series["full"][split] = (full_times.to(**to), values.to(**to))
            self.series["dropped"][split] = (times.to(**to), kept.to(**to))
        kwargs = config.solver.odeint_kwargs()
        self.model = nn.ModuleDict(
            {
                name: NeuralCDE(
                    3,
                    model.hidden_dim,
                    1,
                    CountingCDEField(CDEVectorField(model.hidden_dim, 3, width=model.width)),
                    method=kwargs["method"],
                    rtol=kwargs["rtol"],
                    atol=kwargs["atol"],
                    options=kwargs["options"],
                    gradient=config.solver.gradient,
                )
                for name in self.series
            }
        ).to(device=device, dtype=dtype)
        self.num_examples = data.num_series

    def nfe(self) -> int:
        return sum(cde.vector_field.nfe for cde in self.model.values())

    def _logits(
        self, model: nn.Module, split: str, indices: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        logits = {}
        for name, cde in model.items():
            cde.vector_field.nfe = 0
            times, values = self.series[name][split]
            if indices is not None:
                times, values = times[indices], values[indices]
            logits[name] = cde(control_path(values, times, self.interpolation)).squeeze(-1)
        return logits

    def loss(self, model: nn.Module, indices: torch.Tensor) -> StepOutput:
        target = self.labels["train"][indices]
        logits = self._logits(model, "train", indices)
        loss = sum(
            nn.functional.binary_cross_entropy_with_logits(value, target)
            for value in logits.values()
        )
        return StepOutput(loss=loss)

    def scores(self, model: nn.Module, split: str) -> dict[str, float]:
        target = self.labels[split]
        metrics = {}
        for name, logits in self._logits(model, split).items():
            correct = (logits > 0) == (target > 0.5)
            metrics[f"{split}_accuracy_{name}"] = correct.double().mean().item()
            metrics[f"{split}_loss_{name}"] = nn.functional.binary_cross_entropy_with_logits(
                logits, target
            ).item()
            metrics[f"nfe_{name}"] = model[name].vector_field.nfe
        return metrics

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        metrics = self.scores(model, "val")
        return {"val_loss": metrics["val_loss_full"] + metrics["val_loss_dropped"], **metrics}


@register
class Chirality(Experiment):
    name = "chirality"
    description = "Neural CDE tells clockwise from anticlockwise spirals (all points, 30% dropped)"
    config_class = ChiralityConfig

    def build(
        self, config: ChiralityConfig, device: torch.device, dtype: torch.dtype
    ) -> ChiralityTask:
        return ChiralityTask(config, device, dtype)

    def final_metrics(self, task: ChiralityTask, config: ChiralityConfig) -> dict[str, float]:
        with torch.no_grad():
            return task.scores(task.model.eval(), "test")

    def plot(self, task: ChiralityTask, config: ChiralityConfig, plots_dir: Path) -> list[Path]:
        from kutta.experiments import plotting

        values = task.series["full"]["test"][1].cpu()
        kept = task.series["dropped"]["test"][1].cpu()
        labels = task.labels["test"].cpu()
        with torch.no_grad():
            predicted = (task._logits(task.model.eval(), "test")["dropped"] > 0).cpu()
        figure, axes = plotting.plt.subplots(1, 2, figsize=(10, 4.5))
        for ax, label in zip(axes, (0, 1)):
            rows = (labels == label).nonzero().flatten()[:6]
            for k, row in enumerate(rows):
                style = "-" if bool(predicted[row]) == bool(label) else ":"
                ax.plot(values[row, :, 0], values[row, :, 1], style, color=f"C{k}", lw=1)
                ax.plot(kept[row, :, 0], kept[row, :, 1], ".", color=f"C{k}", ms=3)
            ax.set_title(f"label {label}: dots = points kept (solid = classified right)")
            ax.set_aspect("equal")
        return [plotting._save(figure, plots_dir / "spirals.png")]

    def summary(self, metrics: dict[str, Any]) -> str:
        full, dropped = metrics["test_accuracy_full"], metrics["test_accuracy_dropped"]
        verdict = "meets" if min(full, dropped) >= TARGET_ACCURACY else "misses"
        return (
            f"Neural CDE test accuracy: {full:.2%} on all points, {dropped:.2%} with points "
            f"dropped ({verdict} the {TARGET_ACCURACY:.0%} target)"
        )
