"""Figures for runs (matplotlib with the Agg backend: files only, never a window)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import torch  # noqa: E402


def _save(fig: Any, path: Path) -> Path:
    """Write the figure atomically (temporary file, then rename); no suffix means PNG."""
    if not path.suffix:
        path = path.with_suffix(".png")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, dpi=120, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    os.replace(tmp, path)
    return path


def phase_portrait(
    path: Path,
    *,
    t_data: torch.Tensor,
    y_data: torch.Tensor,
    t_model: torch.Tensor,
    y_model: torch.Tensor,
    t_true: torch.Tensor | None = None,
    y_true: torch.Tensor | None = None,
    title: str = "",
    names: Sequence[str] = ("y1", "y2"),
    boundary: float | None = None,
) -> Path:
    """Left: the phase plane (first two states); right: every state against time.

    Data are dots, the learned solution a line, the true continuation (if given) dashed; a dotted
    vertical line marks ``boundary`` (default: the end of the data), e.g. where training data end.
    """
    fig, (phase, series) = plt.subplots(1, 2, figsize=(11, 4.5))
    y_data, y_model = y_data.reshape(len(t_data), -1), y_model.reshape(len(t_model), -1)
    if y_data.shape[1] >= 2:
        phase.plot(y_data[:, 0], y_data[:, 1], ".", ms=2, color="0.3", label="data")
        if y_true is not None:
            y_true = y_true.reshape(len(y_true), -1)
            phase.plot(y_true[:, 0], y_true[:, 1], "--", color="0.6", label="true continuation")
        phase.plot(y_model[:, 0], y_model[:, 1], color="C3", lw=1.2, label="learned")
        phase.set_xlabel(names[0])
        phase.set_ylabel(names[1])
        phase.set_title("phase portrait")
        phase.legend(loc="upper right", fontsize=8)
    else:
        phase.axis("off")
    for i in range(y_data.shape[1]):
        color = f"C{i}"
        label = names[i] if i < len(names) else f"y{i + 1}"
        series.plot(t_data, y_data[:, i], ".", ms=2, color=color, alpha=0.5)
        if y_true is not None and t_true is not None:
            series.plot(t_true, y_true[:, i], "--", color=color, alpha=0.4)
        series.plot(t_model, y_model[:, i], color=color, lw=1.2, label=f"{label} learned")
    series.axvline(float(t_data[-1]) if boundary is None else boundary, color="0.5", lw=0.8, ls=":")
    series.set_xlabel("t")
    series.set_title(
        "states over time (dots: data; dotted line: end of "
        + ("data)" if boundary is None else "training data)")
    )
    series.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def loss_curve(path: Path, records: list[dict[str, Any]]) -> Path:
    """Training loss (log scale) and, where present, the validation loss against the step."""
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.semilogy([r["step"] for r in records], [r["loss"] for r in records], label="train loss")
    evals = [r for r in records if "val/val_loss" in r]
    if evals:
        ax.semilogy(
            [r["step"] for r in evals],
            [r["val/val_loss"] for r in evals],
            "o-",
            ms=3,
            label="validation loss",
        )
    ax.set_xlabel("step")
    ax.set_title("loss")
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, path)


def nfe_curve(path: Path, records: list[dict[str, Any]]) -> Path:
    """Vector-field evaluations per training step (forward and backward) against the step."""
    fig, ax = plt.subplots(figsize=(6, 4))
    steps = [r["step"] for r in records]
    ax.plot(steps, [r["nfe_forward"] for r in records], label="forward")
    if any(r["nfe_backward"] for r in records):
        ax.plot(steps, [r["nfe_backward"] for r in records], label="backward (adjoint)")
    ax.set_xlabel("step")
    ax.set_ylabel("NFE per step")
    ax.set_title("solver cost over training")
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, path)


def solution_plot(path: Path, t: torch.Tensor, y: torch.Tensor, title: str = "") -> Path:
    """Every state against time; for two or more states also the phase plane of the first two."""
    y = y.reshape(len(t), -1)
    columns = 2 if y.shape[1] >= 2 else 1
    fig, axes = plt.subplots(1, columns, figsize=(5.5 * columns, 4), squeeze=False)
    series = axes[0][0]
    for i in range(y.shape[1]):
        series.plot(t, y[:, i], label=f"y[{i}]" if y.shape[1] > 1 else "y")
    series.set_xlabel("t")
    series.legend()
    series.grid(alpha=0.3)
    if columns == 2:
        axes[0][1].plot(y[:, 0], y[:, 1])
        axes[0][1].set_xlabel("y[0]")
        axes[0][1].set_ylabel("y[1]")
        axes[0][1].set_title("phase plane")
    if title:
        fig.suptitle(title)
    return _save(fig, Path(path))
