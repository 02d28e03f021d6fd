"""Augmented neural ODEs on the 1-D map g(+1) = -1, g(-1) = +1 (Dupont et al. 2019).

A 1-D neural ODE's flow is an increasing map: trajectories cannot cross, so it cannot send +1
below -1. Whatever it learns, ``phi(+1) >= phi(-1)``, and the mean squared error of the two
points is then at least 1 (reached when both land on 0). Appending one zero dimension lets the
two trajectories pass around each other, and the loss can go to zero.

Both models are trained side by side on the same two points; the output of each is the first
coordinate of the (augmented) state at t = 1, with no readout layer that could undo the flow.
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
from kutta.models import NeuralODE, TimeMLP
from kutta.train.config import SolverConfig, TrainConfig
from kutta.train.trainer import StepOutput

#: a 1-D flow's squared error on g(+-1) = -+1 can never go below this
PLAIN_LOSS_FLOOR = 1.0


@dataclasses.dataclass
class AnodeModel:
    hidden: int = 32
    #: zero dimensions appended for the augmented model
    augment_dim: int = 1

    def __post_init__(self) -> None:
        if self.hidden < 1:
            raise InvalidArgumentError(f"model.hidden must be >= 1, got {self.hidden}")
        if self.augment_dim < 1:
            raise InvalidArgumentError(f"model.augment_dim must be >= 1, got {self.augment_dim}")


def _default_solver() -> SolverConfig:
    return SolverConfig(method="dopri5", rtol=1e-5, atol=1e-7)


def _default_train() -> TrainConfig:
    return TrainConfig(steps=300, batch_size=2, lr=1e-2, log_every=10, checkpoint_every=100)


@dataclasses.dataclass
class Anode1DConfig:
    model: AnodeModel = dataclasses.field(default_factory=AnodeModel)
    solver: SolverConfig = dataclasses.field(default_factory=_default_solver)
    train: TrainConfig = dataclasses.field(default_factory=_default_train)


def _node(dim: int, augment_dim: int, hidden: int, solver: SolverConfig) -> NeuralODE:
    kwargs = solver.odeint_kwargs()
    return NeuralODE(
        TimeMLP(dim + augment_dim, hidden=(hidden, hidden)),
        augment_dim=augment_dim,
        method=kwargs["method"],
        rtol=kwargs["rtol"],
        atol=kwargs["atol"],
        options=kwargs["options"],
        gradient=solver.gradient,
    )


class Anode1DTask:
    """The two points and the two models (``plain`` and ``augmented``), trained together.

    The models share no parameters, so summing their losses trains each exactly as alone.
    """

    def __init__(self, config: Anode1DConfig, device: torch.device, dtype: torch.dtype):
        self.x = torch.tensor([[1.0], [-1.0]], device=device, dtype=dtype)
        self.y = -self.x
        hidden = config.model.hidden
        self.model = nn.ModuleDict(
            {
                "plain": _node(1, 0, hidden, config.solver),
                "augmented": _node(1, config.model.augment_dim, hidden, config.solver),
            }
        ).to(device=device, dtype=dtype)
        self.num_examples = 2

    def nfe(self) -> int:
        return sum(node.nfe for node in self.model.values())

    def losses(self, model: nn.Module, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        x, y = self.x[indices], self.y[indices]
        return {name: (node(x)[:, :1] - y).pow(2).mean() for name, node in model.items()}

    def loss(self, model: nn.Module, indices: torch.Tensor) -> StepOutput:
        return StepOutput(loss=sum(self.losses(model, indices).values()))

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        losses = self.losses(model, torch.arange(2, device=self.x.device))
        metrics = {f"loss_{name}": value.item() for name, value in losses.items()}
        return {"val_loss": metrics["loss_augmented"], **metrics}


@register
class Anode1D(Experiment):
    name = "anode-1d"
    description = "g(+-1) = -+1: a plain neural ODE cannot fit it, an augmented one can"
    config_class = Anode1DConfig

    def build(self, config: Anode1DConfig, device: torch.device, dtype: torch.dtype) -> Anode1DTask:
        return Anode1DTask(config, device, dtype)

    def final_metrics(self, task: Anode1DTask, config: Anode1DConfig) -> dict[str, float]:
        model = task.model.eval()
        with torch.no_grad():
            metrics = task.evaluate(model)
            ends = {name: node(task.x)[:, 0] for name, node in model.items()}
        del metrics["val_loss"]
        for name, end in ends.items():
            metrics[f"{name}_g(+1)"] = end[0].item()
            metrics[f"{name}_g(-1)"] = end[1].item()
        metrics["nfe_plain"] = model["plain"].nfe
        metrics["nfe_augmented"] = model["augmented"].nfe
        return metrics

    def plot(self, task: Anode1DTask, config: Anode1DConfig, plots_dir: Path) -> list[Path]:
        from kutta.experiments import plotting

        t = torch.linspace(0, 1, 50, device=task.x.device, dtype=task.x.dtype)
        with torch.no_grad():
            paths = {name: node.trajectory(task.x, t) for name, node in task.model.items()}
        figure, axes = plotting.plt.subplots(1, 2, figsize=(10, 4))
        for ax, (name, path) in zip(axes, paths.items()):
            for i, start in enumerate((+1, -1)):
                ax.plot(t.cpu(), path[:, i, 0].cpu(), color=f"C{i}", label=f"from x = {start:+d}")
                ax.plot(1.0, -start, "x", color=f"C{i}", ms=9)
            ax.set_xlabel("t")
            ax.set_ylabel("first state coordinate")
            ax.set_title(f"{name} (crosses: targets)")
            ax.legend(fontsize=8)
            ax.grid(alpha=0.3)
        return [plotting._save(figure, plots_dir / "trajectories.png")]

    def summary(self, metrics: dict[str, Any]) -> str:
        return (
            f"plain neural ODE loss {metrics['loss_plain']:.4g} (cannot go below "
            f"{PLAIN_LOSS_FLOOR:g}); augmented loss {metrics['loss_augmented']:.3g} "
            f"(target < 1e-3)"
        )
