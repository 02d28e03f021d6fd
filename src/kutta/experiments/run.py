"""Runs: train an experiment into a run directory, and load, evaluate or re-plot it later.

A run directory holds ``config.toml`` (fully resolved, with the experiment's name),
``metrics.jsonl`` (one line per logged step), ``metrics.json`` (final), ``checkpoints/last.pt``
and ``plots/*.png``. Everything here is usable from Python; the ``kutta`` command is a thin
layer over it.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from kutta.errors import InvalidArgumentError
from kutta.experiments.base import Experiment
from kutta.experiments.registry import get_experiment
from kutta.train.checkpoint import load_checkpoint, seed_everything, write_text_atomic
from kutta.train.config import apply_overrides, config_from_dict, config_to_dict, load_toml, to_toml
from kutta.train.distributed import init_distributed, shutdown_distributed
from kutta.train.tensorboard import TensorBoardHook, tensorboard_available
from kutta.train.trainer import CHECKPOINT_NAME, Hook, Task, Trainer, read_metrics_log

CONFIG_NAME = "config.toml"
FINAL_METRICS_NAME = "metrics.json"
PLOTS_DIR = "plots"
_DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclasses.dataclass
class RunResult:
    """What a finished run produced (``metrics`` and ``plots`` are empty on non-main processes)."""

    run_dir: Path
    metrics: dict[str, Any]
    plots: list[Path]
    summary: str
    is_main: bool = True


def resolve_config(
    experiment: Experiment,
    config_file: str | Path | None = None,
    overrides: Sequence[str] = (),
) -> Any:
    """Defaults, then the TOML file, then ``key=value`` overrides; unknown keys are errors.

    Example:
        >>> config = resolve_config(get_experiment("spiral"), overrides=["train.steps=10"])
        >>> config.train.steps
        10
    """
    config = experiment.default_config()
    if config_file is not None:
        data = load_toml(config_file)
        named = data.pop("experiment", experiment.name)
        if named != experiment.name:
            raise InvalidArgumentError(
                f"{config_file} is a config for experiment {named!r}, not {experiment.name!r}"
            )
        merged = _merge(config_to_dict(config), data)
        config = config_from_dict(experiment.config_class, merged)
    return apply_overrides(config, list(overrides))


def train(
    name: str,
    *,
    config_file: str | Path | None = None,
    overrides: Sequence[str] = (),
    out: str | Path | None = None,
    resume: str | Path | None = None,
    hooks: Sequence[Hook] = (),
) -> RunResult:
    """Train experiment ``name`` into ``out`` (or continue the run in ``resume``).

    Under ``torchrun`` every process calls this; they train together with DDP and only the
    first process writes files.

    Example:
        >>> result = train("spiral", overrides=["train.steps=20"], out="runs/tiny")  # doctest: +SKIP
        >>> result.metrics["mse_over_variance"]  # doctest: +SKIP
    """
    experiment = get_experiment(name)
    if resume is not None:
        run_dir = Path(resume)
        if config_file is not None:
            raise InvalidArgumentError(
                "--config cannot be combined with --resume: the run's own config.toml is used"
            )
        if out is not None and Path(out).resolve() != run_dir.resolve():
            raise InvalidArgumentError("--out and --resume name different directories")
        if not (run_dir / CHECKPOINT_NAME).is_file():
            raise InvalidArgumentError(f"cannot resume: {run_dir / CHECKPOINT_NAME} does not exist")
        saved = load_toml(run_dir / CONFIG_NAME)
        if saved.get("experiment") != name:
            raise InvalidArgumentError(
                f"{run_dir} is a run of experiment {saved.get('experiment')!r}, not {name!r}"
            )
        config = resolve_config(experiment, run_dir / CONFIG_NAME, overrides)
    else:
        run_dir = Path(out) if out is not None else Path("runs") / name
        config = resolve_config(experiment, config_file, overrides)

    dist_info, device_name = init_distributed(config.train.device)
    try:
        device = _device(device_name)
        if config.train.num_threads:
            torch.set_num_threads(config.train.num_threads)
        seed_everything(config.train.seed)
        # Built before anything is written, so bad data never leaves a half-made run behind.
        task = experiment.build(config, device, _DTYPES[config.train.dtype])
        if dist_info.is_main:
            if resume is None:
                _clear_run_files(run_dir)
            run_dir.mkdir(parents=True, exist_ok=True)
            write_text_atomic(
                run_dir / CONFIG_NAME, to_toml({"experiment": name, **config_to_dict(config)})
            )
        all_hooks = list(hooks)
        if config.train.tensorboard and tensorboard_available():
            all_hooks.append(TensorBoardHook(run_dir))
        trainer = Trainer(
            task,
            config.train,
            run_dir=run_dir,
            hooks=all_hooks,
            dist_info=dist_info,
            resume=resume is not None,
        )
        summary = trainer.fit()
        if not dist_info.is_main:
            return RunResult(run_dir, {}, [], "", is_main=False)
        metrics = experiment.final_metrics(task, config)
        report = {"experiment": name, "metrics": metrics, "training": summary}
        write_text_atomic(run_dir / FINAL_METRICS_NAME, json.dumps(report, indent=2) + "\n")
        plots = _plot(experiment, task, config, run_dir)
        return RunResult(run_dir, report, plots, experiment.summary(metrics))
    finally:
        shutdown_distributed()


@dataclasses.dataclass
class LoadedRun:
    experiment: Experiment
    config: Any
    task: Task


def load_run(run_dir: str | Path) -> LoadedRun:
    """Rebuild a run's experiment, config, data and trained model from its directory."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InvalidArgumentError(f"run directory not found: {run_dir}")
    if not (run_dir / CONFIG_NAME).is_file():
        raise InvalidArgumentError(f"{run_dir} is not a run directory (no {CONFIG_NAME})")
    name = load_toml(run_dir / CONFIG_NAME).get("experiment")
    if not isinstance(name, str):
        raise InvalidArgumentError(f"{run_dir / CONFIG_NAME} does not name its experiment")
    experiment = get_experiment(name)
    config = resolve_config(experiment, run_dir / CONFIG_NAME)
    device = _device(config.train.device)
    seed_everything(config.train.seed)
    task = experiment.build(config, device, _DTYPES[config.train.dtype])
    state = load_checkpoint(run_dir / CHECKPOINT_NAME, map_location=device)
    task.model.load_state_dict(state["model"])
    task.model.eval()
    return LoadedRun(experiment, config, task)


def evaluate(run_dir: str | Path, data: str | Path | None = None) -> dict[str, Any]:
    """Metrics of a trained run on its own data, or on the trajectory in the CSV file ``data``."""
    run = load_run(run_dir)
    if data is None:
        return run.experiment.final_metrics(run.task, run.config)
    return run.experiment.evaluate_file(run.task, run.config, Path(data))


def plot(run_dir: str | Path) -> list[Path]:
    """Regenerate a run's figures; returns their paths."""
    run = load_run(run_dir)
    return _plot(run.experiment, run.task, run.config, Path(run_dir))


def _plot(experiment: Experiment, task: Task, config: Any, run_dir: Path) -> list[Path]:
    from kutta.experiments import plotting

    plots_dir = run_dir / PLOTS_DIR
    paths = experiment.plot(task, config, plots_dir)
    records = [r for r in read_metrics_log(run_dir) if "loss" in r]
    if records:
        paths.append(plotting.loss_curve(plots_dir / "loss.png", records))
        # Models without a differential-equation solve (FNO, PINN) log zero evaluations.
        if any(r.get("nfe_forward") or r.get("nfe_backward") for r in records):
            paths.append(plotting.nfe_curve(plots_dir / "nfe.png", records))
    return paths


def _device(name: str) -> torch.device:
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidArgumentError("device 'cuda' was requested, but CUDA is not available here")
    return torch.device(name)


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``update`` over ``base``, recursively for sections; unknown keys are kept (and rejected later)."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _clear_run_files(run_dir: Path) -> None:
    """A fresh run in an old directory replaces that run's files (and only those)."""
    for name in (CONFIG_NAME, FINAL_METRICS_NAME, "metrics.jsonl"):
        (run_dir / name).unlink(missing_ok=True)
    (run_dir / CHECKPOINT_NAME).unlink(missing_ok=True)
    for plot_file in (run_dir / PLOTS_DIR).glob("*.png"):
        plot_file.unlink()
    if (run_dir / "tensorboard").is_dir():
        shutil.rmtree(run_dir / "tensorboard")
