"""Classify scikit-learn's 8x8 digits with an ODE-Net, next to a same-width ResNet.

Data: ``sklearn.datasets.load_digits`` (1797 images, 64 pixels in 0..16, scaled to [0, 1]),
split by a seeded permutation into train / validation / test (``data.val_fraction``,
``data.test_fraction``). Both models are ``linear(64 -> width) -> body -> softplus -> linear``:
the ODE-Net's body is one ODE block, the baseline's ``model.resnet_depth`` untied residual blocks
of the same width (:class:`kutta.models.ODENetClassifier`). They train side by side on the same
batches (no shared parameters, so each trains exactly as it would alone).
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
from kutta.models import ODENetClassifier
from kutta.train.config import SolverConfig, TrainConfig
from kutta.train.trainer import StepOutput

TARGET_ACCURACY = 0.95


@dataclasses.dataclass
class DigitsData:
    val_fraction: float = 0.1
    test_fraction: float = 0.2

    def __post_init__(self) -> None:
        if not (self.val_fraction >= 0 and self.test_fraction > 0):
            raise InvalidArgumentError("data.val_fraction must be >= 0, data.test_fraction > 0")
        if self.val_fraction + self.test_fraction >= 0.9:
            raise InvalidArgumentError("data.val_fraction + data.test_fraction must be < 0.9")


@dataclasses.dataclass
class DigitsModel:
    width: int = 32
    hidden: int = 64
    resnet_depth: int = 4

    def __post_init__(self) -> None:
        if min(self.width, self.hidden, self.resnet_depth) < 1:
            raise InvalidArgumentError("model.width, model.hidden, model.resnet_depth must be >= 1")


def _default_solver() -> SolverConfig:
    return SolverConfig(method="dopri5", rtol=1e-3, atol=1e-4)


def _default_train() -> TrainConfig:
    return TrainConfig(
        steps=1500,
        batch_size=64,
        lr=3e-3,
        schedule="cosine",
        eval_every=100,
        restore_best=True,
        log_every=20,
        checkpoint_every=200,
    )


@dataclasses.dataclass
class DigitsConfig:
    data: DigitsData = dataclasses.field(default_factory=DigitsData)
    model: DigitsModel = dataclasses.field(default_factory=DigitsModel)
    solver: SolverConfig = dataclasses.field(default_factory=_default_solver)
    train: TrainConfig = dataclasses.field(default_factory=_default_train)


def load_split_digits(
    config: DigitsData, seed: int, dtype: torch.dtype
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{"train", "val", "test"}`` -> (images (N, 64) in [0, 1], labels (N,)), split by ``seed``."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.data, dtype=dtype) / 16.0
    labels = torch.tensor(digits.target, dtype=torch.long)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    num_test = int(round(config.test_fraction * len(labels)))
    num_val = int(round(config.val_fraction * len(labels)))
    parts = {
        "test": order[:num_test],
        "val": order[num_test : num_test + num_val],
        "train": order[num_test + num_val :],
    }
    return {name: (images[rows], labels[rows]) for name, rows in parts.items()}


class DigitsTask:
    """The ODE-Net (``ode``) and the ResNet baseline (``resnet``) on the same batches."""

    def __init__(self, config: DigitsConfig, device: torch.device, dtype: torch.dtype):
        splits = load_split_digits(config.data, config.train.seed, dtype)
        self.splits = {name: (x.to(device), y.to(device)) for name, (x, y) in splits.items()}
        m, solver = config.model, config.solver.odeint_kwargs()
        common = dict(width=m.width, hidden=(m.hidden,))
        self.model = nn.ModuleDict(
            {
                "ode": ODENetClassifier(
                    64,
                    10,
                    **common,
                    body="ode",
                    method=solver["method"],
                    rtol=solver["rtol"],
                    atol=solver["atol"],
                    options=solver["options"],
                    gradient=config.solver.gradient,
                ),
                "resnet": ODENetClassifier(64, 10, **common, body="resnet", depth=m.resnet_depth),
            }
        ).to(device=device, dtype=dtype)
        self.num_examples = len(self.splits["train"][1])

    def nfe(self) -> int:
        return self.model["ode"].nfe

    def loss(self, model: nn.Module, indices: torch.Tensor) -> StepOutput:
        x, y = self.splits["train"]
        x, y = x[indices], y[indices]
        loss = sum(nn.functional.cross_entropy(net(x), y) for net in model.values())
        return StepOutput(loss=loss)

    def accuracy(self, model: nn.Module, split: str) -> dict[str, float]:
        x, y = self.splits[split]
        metrics = {}
        for name, net in model.items():
            logits = net(x)
            metrics[f"{split}_accuracy_{name}"] = (logits.argmax(-1) == y).double().mean().item()
            metrics[f"{split}_loss_{name}"] = nn.functional.cross_entropy(logits, y).item()
        metrics["nfe"] = model["ode"].nfe
        return metrics

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        split = "val" if len(self.splits["val"][1]) else "train"
        metrics = self.accuracy(model, split)
        return {"val_loss": metrics[f"{split}_loss_ode"], **metrics}


@register
class Digits(Experiment):
    name = "digits"
    description = "ODE-Net vs same-width ResNet on sklearn's 8x8 digits (accuracy and NFE)"
    config_class = DigitsConfig

    def build(self, config: DigitsConfig, device: torch.device, dtype: torch.dtype) -> DigitsTask:
        return DigitsTask(config, device, dtype)

    def final_metrics(self, task: DigitsTask, config: DigitsConfig) -> dict[str, float]:
        model = task.model.eval()
        with torch.no_grad():
            metrics = task.accuracy(model, "test")
        metrics["nfe_test"] = metrics.pop("nfe")
        metrics["resnet_depth"] = config.model.resnet_depth
        metrics["num_test"] = len(task.splits["test"][1])
        return metrics

    def plot(self, task: DigitsTask, config: DigitsConfig, plots_dir: Path) -> list[Path]:
        from kutta.experiments import plotting

        x, y = task.splits["test"]
        with torch.no_grad():
            predicted = task.model["ode"].eval()(x).argmax(-1)
        confusion = torch.zeros(10, 10, dtype=torch.long)
        confusion.index_put_((y.cpu(), predicted.cpu()), torch.ones_like(y.cpu()), accumulate=True)
        figure, ax = plotting.plt.subplots(figsize=(5, 4.5))
        image = ax.imshow(confusion.numpy(), cmap="Blues")
        for i in range(10):
            for j in range(10):
                if confusion[i, j]:
                    ax.text(j, i, int(confusion[i, j]), ha="center", va="center", fontsize=7)
        ax.set_xticks(range(10))
        ax.set_yticks(range(10))
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title("ODE-Net confusion matrix (test)")
        figure.colorbar(image, ax=ax)
        return [plotting._save(figure, plots_dir / "confusion.png")]

    def summary(self, metrics: dict[str, Any]) -> str:
        accuracy = metrics["test_accuracy_ode"]
        verdict = "meets" if accuracy >= TARGET_ACCURACY else "misses"
        return (
            f"ODE-Net test accuracy {accuracy:.2%} ({verdict} the {TARGET_ACCURACY:.0%} target) "
            f"at {metrics['nfe_test']} NFE; ResNet ({metrics['resnet_depth']} blocks, same width) "
            f"{metrics['test_accuracy_resnet']:.2%}"
        )
