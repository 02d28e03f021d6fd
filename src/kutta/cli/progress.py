"""A live progress bar for training: epoch, step, loss, NFE per step and time remaining.

Loss, NFE and the latest validation value refresh at every logged step (``train.log_every``).
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from kutta.train.trainer import Hook, Trainer


class ProgressHook(Hook):
    """Shows a rich progress bar on the main process while the Trainer runs."""

    def __init__(self, console: Console | None = None):
        self.console = console
        self.progress: Progress | None = None
        self.bar: Any = None

    def on_start(self, trainer: Trainer) -> None:
        if not trainer.dist.is_main:
            return
        self.progress = Progress(
            TextColumn("epoch {task.fields[epoch]}"),
            BarColumn(bar_width=16),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("NFE/step {task.fields[nfe]}"),
            TextColumn("{task.fields[extra]}"),
            TextColumn("ETA"),
            TimeRemainingColumn(compact=True),
            console=self.console,
            transient=False,
        )
        self.progress.start()
        self.bar = self.progress.add_task(
            "train",
            total=trainer.config.total_steps,
            completed=trainer.step,
            epoch=self._epoch(trainer, trainer.step),
            loss="-",
            nfe="-",
            extra="",
        )

    def on_step(self, trainer: Trainer, step: int) -> None:
        if self.progress is not None:
            self.progress.update(self.bar, completed=step, epoch=self._epoch(trainer, step))

    def on_log(self, trainer: Trainer, record: dict[str, Any]) -> None:
        if self.progress is None:
            return
        nfe = record["nfe_forward"] + record["nfe_backward"]
        extra = f"val {record['val/val_loss']:.4g}" if "val/val_loss" in record else None
        fields = {"loss": f"{record['loss']:.4g}", "nfe": f"{nfe:.0f}"}
        if extra is not None:
            fields["extra"] = extra
        self.progress.update(self.bar, **fields)

    def on_end(self, trainer: Trainer) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    @staticmethod
    def _epoch(trainer: Trainer, step: int) -> str:
        total = -(-trainer.config.total_steps // trainer.steps_per_epoch)
        return f"{min(step // trainer.steps_per_epoch + 1, total)}/{total}"
