"""Optional TensorBoard logging, used only when the ``tensorboard`` package is installed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kutta.train.trainer import Hook, Trainer


def tensorboard_available() -> bool:
    """Whether ``torch.utils.tensorboard`` can be used (it needs the ``tensorboard`` package)."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


class TensorBoardHook(Hook):
    """Write every logged scalar to ``RUN_DIR/tensorboard`` (main process only).

    Example:
        >>> hooks = [TensorBoardHook("runs/x")] if tensorboard_available() else []
    """

    def __init__(self, run_dir: str | Path):
        self.log_dir = Path(run_dir) / "tensorboard"
        self.writer: Any = None

    def on_start(self, trainer: Trainer) -> None:
        if trainer.dist.is_main:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.log_dir))

    def on_log(self, trainer: Trainer, record: dict[str, Any]) -> None:
        if self.writer is None:
            return
        for key, value in record.items():
            if key != "step" and isinstance(value, int | float):
                self.writer.add_scalar(key, value, record["step"])

    def on_end(self, trainer: Trainer) -> None:
        if self.writer is not None:
            self.writer.close()
