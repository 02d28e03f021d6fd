"""Train a model on a batch of series with the Trainer, without writing an experiment.

The layers point one way (engine <- models <- train <- cli), so a model cannot call the Trainer
itself. Instead the model states what to minimise, through a small protocol,
:class:`TrainableModel`: a ``loss(batch, target=None)`` method (and, optionally,
``vector_fields()``, the modules the solvers call, to count NFE). :func:`fit` lives here, in the
train layer: it turns the model and its data into a :class:`SeriesTask` (the Trainer's
:class:`~kutta.train.Task`) and runs the :class:`~kutta.train.Trainer`, which brings
checkpoints (written atomically), resuming, logging, schedules and early stopping.
:class:`kutta.models.LatentODE` implements the protocol, so ``fit(latent_ode, batch)`` is "fit a
Latent ODE through the Trainer"; any model with such a ``loss`` can be fitted the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from kutta.errors import InvalidArgumentError
from kutta.train.checkpoint import seed_everything
from kutta.train.config import TrainConfig
from kutta.train.trainer import Hook, StepOutput, Trainer


@runtime_checkable
class TrainableModel(Protocol):
    """A model :func:`fit` can train: ``loss(batch, target)`` is a scalar to minimise, where
    ``batch`` holds some of the series (``data[indices]``) and ``target`` the same series'
    targets (or None when the batch is scored on itself)."""

    def loss(self, batch: Any, target: Any | None = None) -> torch.Tensor: ...


class SeriesTask:
    """The Trainer's task for a :class:`TrainableModel` and indexable data.

    ``data`` (and ``target``, ``val_data``, ``val_target``) are anything that ``len()`` and
    indexing by a tensor of rows understand, such as :class:`kutta.data.IrregularBatch`.
    ``evaluate`` reports the mean validation loss as ``val_loss`` (empty without ``val_data``).

    Example:
        >>> task = SeriesTask(model, batch)  # doctest: +SKIP
        >>> Trainer(task, TrainConfig(steps=50, batch_size=8)).fit()  # doctest: +SKIP
    """

    def __init__(
        self,
        model: nn.Module,
        data: Any,
        target: Any | None = None,
        val_data: Any | None = None,
        val_target: Any | None = None,
        loss_kwargs: Mapping[str, Any] | None = None,
    ):
        if not isinstance(model, TrainableModel):
            raise InvalidArgumentError(
                f"{type(model).__name__} cannot be fitted: it needs a method "
                "loss(batch, target=None) returning a scalar tensor (see kutta.train.fit)"
            )
        _check_pair(data, target, "data", "target")
        if val_data is not None:
            _check_pair(val_data, val_target, "val_data", "val_target")
        elif val_target is not None:
            raise InvalidArgumentError("val_target was given without val_data")
        self.model = model
        self.data, self.target = data, target
        self.val_data, self.val_target = val_data, val_target
        self.loss_kwargs = dict(loss_kwargs or {})
        self.num_examples = len(data)
        self._calls = 0
        fields = model.vector_fields() if hasattr(model, "vector_fields") else ()
        self._hooks = [field.register_forward_pre_hook(self._count_call) for field in fields]

    def _count_call(self, module: nn.Module, args: Any) -> None:
        self._calls += 1

    def nfe(self) -> int:
        return self._calls

    def close(self) -> None:
        """Stop counting the model's vector-field calls (removes the hooks)."""
        for hook in self._hooks:
            hook.remove()

    def loss(self, model: nn.Module, indices: torch.Tensor) -> StepOutput:
        self._calls = 0
        batch = _rows(self.data, indices)
        target = None if self.target is None else _rows(self.target, indices)
        return StepOutput(loss=model.loss(batch, target, **self.loss_kwargs))

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        if self.val_data is None:
            return {}
        value = model.loss(self.val_data, self.val_target, **self.loss_kwargs)
        return {"val_loss": value.item()}


def _check_pair(data: Any, target: Any | None, data_name: str, target_name: str) -> None:
    try:
        size = len(data)
    except TypeError:
        raise InvalidArgumentError(
            f"{data_name} must have a length and be indexable by rows "
            f"(e.g. a kutta.data.IrregularBatch), got {type(data).__name__}"
        ) from None
    if size < 1:
        raise InvalidArgumentError(f"{data_name} holds no series")
    if target is not None and len(target) != size:
        raise InvalidArgumentError(
            f"{target_name} must hold the same {size} series as {data_name}, got {len(target)}"
        )


def _rows(data: Any, indices: torch.Tensor) -> Any:
    """``data[indices]`` with the indices on the data's device (the schedule's are on the CPU)."""
    device = getattr(getattr(data, "values", None), "device", indices.device)
    return data[indices.to(device)]


def fit(
    model: nn.Module,
    data: Any,
    config: TrainConfig | None = None,
    *,
    target: Any | None = None,
    val_data: Any | None = None,
    val_target: Any | None = None,
    run_dir: str | Path | None = None,
    resume: bool = False,
    hooks: Sequence[Hook] = (),
    loss_kwargs: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Train ``model`` (in place) on ``data`` with the :class:`~kutta.train.Trainer`.

    Each step draws ``config.batch_size`` series (``data[rows]``, and the same rows of
    ``target``) and minimises ``model.loss(batch, target, **loss_kwargs)``. With ``run_dir``
    the Trainer writes ``metrics.jsonl`` and, atomically, ``checkpoints/last.pt``;
    ``resume=True`` continues from that checkpoint (build ``model`` as before, and pass the
    same data and config) and ends exactly where an uninterrupted run would.

    Torch, numpy and ``random`` are seeded with ``config.seed`` first, as ``kutta train`` does.
    The data stay where they are: put the model and the data on the device and dtype you want
    (``config.device``, ``dtype``, ``num_threads`` and ``tensorboard`` are the command line's
    business and are ignored here). One process; for DDP use an experiment.

    Returns the Trainer's summary (``steps``, ``final_loss``, ``best_val_loss``, ...).

    Example:
        >>> from kutta.data import IrregularBatch
        >>> from kutta.models import LatentODE
        >>> times = torch.linspace(0, 1, 6).expand(8, 6)
        >>> values = torch.sin(3 * times).unsqueeze(-1)
        >>> mask = torch.ones_like(values, dtype=torch.bool)
        >>> batch = IrregularBatch(times, values, mask, torch.full((8,), 6))
        >>> model = LatentODE(1, latent_dim=2, encoder_hidden=4, method="rk4", obs_std=0.1)
        >>> fit(model, batch, TrainConfig(steps=3, batch_size=4, log_every=1))["steps"]
        3
    """
    config = config if config is not None else TrainConfig()
    if resume and run_dir is None:
        raise InvalidArgumentError("resume=True needs the run_dir of the run to continue")
    task = SeriesTask(model, data, target, val_data, val_target, loss_kwargs)
    try:
        seed_everything(config.seed)
        return Trainer(task, config, run_dir=run_dir, hooks=hooks, resume=resume).fit()
    finally:
        task.close()
