"""Training machinery: configs from TOML, a small Trainer with hooks, checkpoints, DDP, and
:func:`fit` for a model with a ``loss(batch, target)`` method (such as the Latent ODE)."""

from kutta.train.checkpoint import load_checkpoint, save_checkpoint, seed_everything
from kutta.train.config import (
    SolverConfig,
    TrainConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_toml,
    to_toml,
    valid_keys,
)
from kutta.train.distributed import BatchSchedule, DistInfo, init_distributed
from kutta.train.fitting import SeriesTask, TrainableModel, fit
from kutta.train.trainer import Hook, StepOutput, Task, Trainer, TrainingDivergedError

__all__ = [
    "BatchSchedule",
    "DistInfo",
    "Hook",
    "SeriesTask",
    "SolverConfig",
    "StepOutput",
    "Task",
    "TrainConfig",
    "TrainableModel",
    "Trainer",
    "TrainingDivergedError",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "fit",
    "init_distributed",
    "load_checkpoint",
    "load_toml",
    "save_checkpoint",
    "seed_everything",
    "to_toml",
    "valid_keys",
]
