"""A small training loop with plain hooks: optimizer, schedule, clipping, NFE regularizer,
early stopping, metrics logging, atomic checkpoints and DDP.

What to train is a :class:`Task`: a model, a number of training examples, a loss over a batch of
example indices, an evaluation, and a counter of vector-field evaluations. The Trainer knows
nothing else about experiments, and nothing about terminals or plots (those are hooks).
"""

from __future__ import annotations

import copy
import dataclasses
import gc
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from kutta.errors import KuttaError
from kutta.train.checkpoint import (
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
    write_text_atomic,
)
from kutta.train.config import TrainConfig
from kutta.train.distributed import BatchSchedule, DistInfo, mean_over_processes

CHECKPOINT_NAME = "checkpoints/last.pt"
METRICS_LOG_NAME = "metrics.jsonl"


class TrainingDivergedError(KuttaError, RuntimeError):
    """The loss became NaN or infinite."""


@dataclasses.dataclass
class StepOutput:
    """What a task's loss returns for one batch.

    ``regularizer`` is a differentiable penalty on solver cost (e.g. the kinetic energy of the
    vector field), or a function computing it (then called only when ``TrainConfig.nfe_weight >
    0``, so an unused penalty costs nothing); the Trainer adds ``nfe_weight`` times it to the loss.
    """

    loss: torch.Tensor
    regularizer: torch.Tensor | Callable[[], torch.Tensor] | None = None


class Task(Protocol):
    """What the Trainer trains. ``evaluate`` returns metrics; ``val_loss`` drives early stopping.

    ``nfe()`` counts vector-field evaluations since the model's last forward call began, so the
    Trainer reads it after the forward pass and again after the backward pass.

    A task whose loss follows a schedule (a KL weight that anneals, a growing time horizon) may
    define ``begin_step(step: int)``: the Trainer calls it before every loss evaluation with the
    number of optimizer steps taken so far, which a resumed run restores, so the schedule
    resumes where it stopped instead of restarting.
    """

    model: nn.Module
    num_examples: int

    def loss(self, model: nn.Module, indices: torch.Tensor) -> StepOutput: ...

    def evaluate(self, model: nn.Module) -> dict[str, float]: ...

    def nfe(self) -> int: ...


class Hook:
    """Override what you need. Hooks run on every process; check ``trainer.dist.is_main``."""

    def on_start(self, trainer: Trainer) -> None: ...

    def on_step(self, trainer: Trainer, step: int) -> None: ...

    def on_log(self, trainer: Trainer, record: dict[str, Any]) -> None: ...

    def on_end(self, trainer: Trainer) -> None: ...


class Trainer:
    """Train ``task.model`` for ``config.steps`` optimizer steps.

    Writes (on the main process, when ``run_dir`` is given) ``metrics.jsonl`` and
    ``checkpoints/last.pt``; ``resume=True`` continues from that checkpoint.

    Example:
        >>> trainer = Trainer(task, TrainConfig(steps=100, lr=1e-2), run_dir="runs/x")  # doctest: +SKIP
        >>> result = trainer.fit()  # doctest: +SKIP
    """

    def __init__(
        self,
        task: Task,
        config: TrainConfig,
        run_dir: str | Path | None = None,
        hooks: Sequence[Hook] = (),
        dist_info: DistInfo | None = None,
        resume: bool = False,
    ):
        self.task, self.config, self.hooks = task, config, list(hooks)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.dist = dist_info or DistInfo()
        self.model = task.model
        self.train_model: nn.Module = self.model
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            device = next(self.model.parameters()).device
            device_ids = [device.index] if device.type == "cuda" else None
            self.train_model = DistributedDataParallel(self.model, device_ids=device_ids)
        self.optimizer = _make_optimizer(self.model.parameters(), config)
        self.scheduler = _make_scheduler(self.optimizer, config)
        self.batches = BatchSchedule(task.num_examples, config.batch_size, config.seed, self.dist)
        self.step = 0
        self.best_value = math.inf
        self.best_step = -1
        self.bad_evals = 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.stopped_early = False
        self.elapsed = 0.0
        self.last_record: dict[str, Any] = {}
        #: the steps since the last log line, which that line averages over
        self.log_window = _LogWindow(_device_of(self.model))
        if resume:
            self._load(self._path(CHECKPOINT_NAME))

    @property
    def steps_per_epoch(self) -> int:
        return self.batches.steps_per_epoch

    def fit(self) -> dict[str, Any]:
        """Run the loop; returns a summary (steps, final loss, best evaluation, time)."""
        config = self.config
        writes = self.dist.is_main and self.run_dir is not None
        if writes:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            _truncate_log(self._path(METRICS_LOG_NAME), self.step)
        for hook in self.hooks:
            hook.on_start(self)
        started = time.perf_counter() - self.elapsed
        window = self.log_window
        grad_norm = torch.zeros(())
        while self.step < config.total_steps and not self.stopped_early:
            self.train_model.train()
            if isinstance(self.optimizer, torch.optim.LBFGS):
                out, nfe_forward, nfe_backward = self._lbfgs_step()
            else:
                indices = self.batches.indices(self.step)
                out, nfe_forward, nfe_backward = self._loss_and_gradient(indices)
                if config.grad_clip > 0:
                    grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip)
                self.optimizer.step()
            self.scheduler.step()
            window.add(out.loss, nfe_forward, nfe_backward)
            self.step += 1
            if self.step == config.steps and config.lbfgs_steps:
                self._start_lbfgs()
            for hook in self.hooks:
                hook.on_step(self, self.step)

            last = self.step == config.total_steps
            evaluate = config.eval_every and (self.step % config.eval_every == 0 or last)
            if self.step % config.log_every == 0 or last or evaluate:
                mean_loss = mean_over_processes(window.mean_loss(), self.dist).item()
                if not math.isfinite(mean_loss):
                    raise TrainingDivergedError(
                        f"training diverged at step {self.step}: loss is {mean_loss}; "
                        "try a smaller train.lr, train.grad_clip > 0 or tighter solver tolerances"
                    )
                self.elapsed = time.perf_counter() - started
                record = {
                    "step": self.step,
                    "epoch": self.step / self.steps_per_epoch,
                    "loss": mean_loss,
                    "lr": self.optimizer.param_groups[0]["lr"],
                    "nfe_forward": window.nfe_forward / window.steps,
                    "nfe_backward": window.nfe_backward / window.steps,
                    "time": round(self.elapsed, 3),
                }
                if config.grad_clip > 0:
                    record["grad_norm"] = float(grad_norm)
                if evaluate:
                    record.update(self._evaluate())
                self.last_record = record
                if writes:
                    with self._path(METRICS_LOG_NAME).open("a") as file:
                        file.write(json.dumps(record) + "\n")
                for hook in self.hooks:
                    hook.on_log(self, record)
                window.clear()
            if self.step % config.checkpoint_every == 0 and self.step < config.total_steps:
                self.save()
        self.elapsed = time.perf_counter() - started
        if config.restore_best and self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        self.save()
        for hook in self.hooks:
            hook.on_end(self)
        if self.dist.enabled:
            # Free DDP's reducer now, while the process group is still registered. Freed later
            # (after destroy_process_group), it would drop the group's last reference from a
            # destructor that holds the GIL, and gloo's worker threads, which need the GIL to
            # free Python-owned tensors, can then never be joined: a hang at exit (pytorch#56297).
            self.train_model = self.model
            gc.collect()
        return {
            "steps": self.step,
            "final_loss": self.last_record.get("loss", math.nan),
            "best_val_loss": self.best_value if self.best_step >= 0 else None,
            "best_step": self.best_step if self.best_step >= 0 else None,
            "stopped_early": self.stopped_early,
            "train_time_s": round(self.elapsed, 3),
        }

    def _loss_and_gradient(self, indices: torch.Tensor) -> tuple[StepOutput, int, int]:
        """The batch's loss (plus the NFE penalty) and its gradient in ``.grad``; the forward and
        backward NFE."""
        begin_step = getattr(self.task, "begin_step", None)
        if begin_step is not None:
            begin_step(self.step)
        out = self.task.loss(self.train_model, indices)
        loss = out.loss
        if self.config.nfe_weight > 0:
            if out.regularizer is None:
                raise KuttaError("train.nfe_weight > 0, but this experiment has no regularizer")
            penalty = out.regularizer
            loss = loss + self.config.nfe_weight * (penalty() if callable(penalty) else penalty)
        nfe_forward = self.task.nfe()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        return out, nfe_forward, self.task.nfe() - nfe_forward

    def _start_lbfgs(self) -> None:
        """Switch to L-BFGS for the last ``lbfgs_steps`` steps (one iteration per step, so that
        logging, evaluation and checkpoints work as before)."""
        # max_eval bounds the line search of the iteration (torch's default, 1.25 * max_iter,
        # would allow it no evaluation beyond the first): 25 as in the line search's own default
        self.optimizer = torch.optim.LBFGS(
            self.model.parameters(),
            lr=1.0,
            max_iter=1,
            max_eval=1 + 25,
            history_size=50,
            line_search_fn="strong_wolfe",
        )
        self.scheduler = torch.optim.lr_scheduler.ConstantLR(self.optimizer, 1.0, total_iters=0)
        self._lbfgs_closure = _MemoizedClosure(
            self._loss_and_gradient, self.model, torch.arange(self.task.num_examples)
        )

    def _lbfgs_step(self) -> tuple[StepOutput, int, int]:
        closure = self._lbfgs_closure
        nfe_before = closure.nfe_forward, closure.nfe_backward
        loss = self.optimizer.step(closure)
        out = StepOutput(loss=loss)
        return out, closure.nfe_forward - nfe_before[0], closure.nfe_backward - nfe_before[1]

    def _evaluate(self) -> dict[str, float]:
        """Evaluate (on every process: the parameters are identical, so are the decisions)."""
        self.model.eval()
        with torch.no_grad():
            metrics = {f"val/{k}": v for k, v in self.task.evaluate(self.model).items()}
        value = metrics.get("val/val_loss")
        if value is None:
            return metrics
        if value < self.best_value - self.config.min_delta:
            self.best_value, self.best_step, self.bad_evals = value, self.step, 0
            if self.config.restore_best:
                self.best_state = copy.deepcopy(self.model.state_dict())
        else:
            self.bad_evals += 1
            if self.config.patience and self.bad_evals >= self.config.patience:
                self.stopped_early = True
        return metrics

    def save(self) -> None:
        """Write ``checkpoints/last.pt`` atomically (main process only)."""
        if not self.dist.is_main or self.run_dir is None:
            return
        state = {
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng_state(),
            "elapsed": self.elapsed,
            "early_stopping": {
                "best_value": self.best_value,
                "best_step": self.best_step,
                "bad_evals": self.bad_evals,
                "stopped_early": self.stopped_early,
            },
            "best_model": self.best_state,
            "log_window": self.log_window.state_dict(),
            # L-BFGS's first evaluation after a resume is then recalled, not recomputed
            "lbfgs_memo": self._lbfgs_closure.memo
            if isinstance(self.optimizer, torch.optim.LBFGS)
            else None,
        }
        save_checkpoint(state, self._path(CHECKPOINT_NAME))

    def _load(self, path: Path) -> None:
        state = load_checkpoint(path, map_location=_device_of(self.model))
        self.model.load_state_dict(state["model"])
        if state["step"] >= self.config.steps and self.config.lbfgs_steps:
            self._start_lbfgs()
            self._lbfgs_closure.memo = state.get("lbfgs_memo")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        self.step, self.elapsed = state["step"], state["elapsed"]
        early = state["early_stopping"]
        self.best_value, self.best_step = early["best_value"], early["best_step"]
        self.bad_evals, self.stopped_early = early["bad_evals"], early["stopped_early"]
        self.best_state = state["best_model"]
        if "log_window" in state:  # checkpoints from before the window was saved lack it
            self.log_window.load_state_dict(state["log_window"])

    def _path(self, name: str) -> Path:
        assert self.run_dir is not None
        return self.run_dir / name


class _LogWindow:
    """Sums of the loss and NFE over the steps since the last log line."""

    def __init__(self, device: torch.device):
        self.loss = torch.zeros((), device=device)
        self.steps = self.nfe_forward = self.nfe_backward = 0

    def add(self, loss: torch.Tensor, nfe_forward: int, nfe_backward: int) -> None:
        # a device tensor, not a float: no host sync on every step
        self.loss += loss.detach()
        self.steps += 1
        self.nfe_forward += nfe_forward
        self.nfe_backward += nfe_backward

    def mean_loss(self) -> torch.Tensor:
        return self.loss / self.steps

    def clear(self) -> None:
        self.loss = torch.zeros_like(self.loss)
        self.steps = self.nfe_forward = self.nfe_backward = 0

    def state_dict(self) -> dict[str, Any]:
        return {
            "loss": self.loss.clone(),
            "steps": self.steps,
            "nfe_forward": self.nfe_forward,
            "nfe_backward": self.nfe_backward,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loss = state["loss"].to(self.loss)
        self.steps = state["steps"]
        self.nfe_forward, self.nfe_backward = state["nfe_forward"], state["nfe_backward"]


class _MemoizedClosure:
    """L-BFGS's closure: the loss and gradient on the whole training set, remembering the last
    evaluation.

    Why the memo: every ``LBFGS.step`` (one iteration here) begins by evaluating the loss at the
    current parameters, which the previous step's line search has already evaluated, since the
    point it accepts is one it evaluated. Returning that evaluation saves a solve per iteration.
    """

    def __init__(
        self,
        loss_and_gradient: Callable[[torch.Tensor], tuple[StepOutput, int, int]],
        model: nn.Module,
        indices: torch.Tensor,
    ):
        self.loss_and_gradient, self.indices = loss_and_gradient, indices
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.memo: tuple[list[torch.Tensor], list[torch.Tensor | None], torch.Tensor] | None = None
        self.nfe_forward = self.nfe_backward = 0

    def __call__(self) -> torch.Tensor:
        if self.memo is not None:
            params, grads, loss = self.memo
            if all(torch.equal(p, q) for p, q in zip(self.params, params)):
                for p, g in zip(self.params, grads):
                    p.grad = None if g is None else g.clone()
                return loss
        out, nfe_forward, nfe_backward = self.loss_and_gradient(self.indices)
        self.nfe_forward += nfe_forward
        self.nfe_backward += nfe_backward
        loss = out.loss.detach()
        snapshot = [p.detach().clone() for p in self.params]
        grads = [None if p.grad is None else p.grad.clone() for p in self.params]
        self.memo = (snapshot, grads, loss)
        return loss


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _make_optimizer(params: Any, config: TrainConfig) -> torch.optim.Optimizer:
    kinds = {
        "adam": torch.optim.Adam,
        "adamw": torch.optim.AdamW,
        "sgd": torch.optim.SGD,
        "rmsprop": torch.optim.RMSprop,
    }
    return kinds[config.optimizer](params, lr=config.lr, weight_decay=config.weight_decay)


def _make_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig
) -> torch.optim.lr_scheduler.LRScheduler:
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.steps)
    if config.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, config.lr_step, config.lr_gamma)
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines past ``step``: a killed run may have logged beyond its last checkpoint."""
    if not path.exists():
        return
    kept = [r for r in _parse_lines(path.read_text()) if r["step"] <= step]
    write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in kept))


def read_metrics_log(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of ``metrics.jsonl`` (an empty list if there is none)."""
    path = Path(run_dir) / METRICS_LOG_NAME
    if not path.exists():
        return []
    return _parse_lines(path.read_text())


def _parse_lines(text: str) -> list[dict[str, Any]]:
    """JSON lines, skipping a torn last line left by a process killed mid-write."""
    records = []
    for line in text.splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
