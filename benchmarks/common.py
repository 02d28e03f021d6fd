"""Shared helpers for kutta's benchmarks: one-thread pinning, counting vector fields, interleaved
timing with medians, ratios, peak-RSS measurement, tables and machine notes.

Every benchmark script calls :func:`pin_one_thread` before doing any work, so torch, and the
BLAS behind numpy/scipy, use one thread and the comparison measures the libraries, not the
thread pool.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import importlib.metadata
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from typing import Any

# Set before torch/numpy load their thread pools; harmless if they already have.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import torch  # noqa: E402
from torch import nn  # noqa: E402


def pin_one_thread() -> None:
    """Make torch use one intra-op and (when still possible) one inter-op thread."""
    torch.set_num_threads(1)
    # Only settable before the first parallel work; the intra-op count is what matters.
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)


class CountingField(nn.Module):
    """Wraps a vector field ``f(t, y)`` and counts its calls (the NFE), the same for every library.

    Example:
        >>> f = CountingField(lambda t, y: -y)
        >>> _ = f(0.0, torch.ones(2)); f.calls
        1
    """

    def __init__(self, field: Callable):
        super().__init__()
        self.field = field
        self.calls = 0

    def forward(self, t, y):
        self.calls += 1
        return self.field(t, y)


class MLPField(nn.Module):
    """The issue's neural vector field: ``y -> Linear(2, 64) -> tanh -> Linear(64, 2)``."""

    def __init__(self, dim: int = 2, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, dim))

    def forward(self, t, y):
        return self.net(y)


@dataclasses.dataclass
class Timing:
    """Wall-clock and CPU seconds of repeated runs; medians are what the tables report."""

    walls: list[float]
    cpus: list[float]

    @property
    def wall(self) -> float:
        return statistics.median(self.walls)

    @property
    def cpu(self) -> float:
        return statistics.median(self.cpus)


def time_once(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """``(wall seconds, process CPU seconds, result)`` of one call."""
    c0, w0 = time.process_time(), time.perf_counter()
    out = fn()
    w1, c1 = time.perf_counter(), time.process_time()
    return w1 - w0, c1 - c0, out


def time_interleaved(
    fns: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1
) -> dict[str, Timing]:
    """Time several callables round-robin (A B C A B C ...), so a change in machine load
    during the run affects all of them alike. Warm-up calls are not timed."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    timings = {name: Timing([], []) for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            wall, cpu, _ = time_once(fn)
            timings[name].walls.append(wall)
            timings[name].cpus.append(cpu)
    return timings


def per_call_seconds(
    fn: Callable[[], Any], repeats: int = 7, min_batch_seconds: float = 0.05
) -> tuple[float, float]:
    """Median ``(wall, CPU)`` seconds of one call of a fast ``fn``, timed in batches of calls
    long enough for the clock.

    Example:
        >>> wall, cpu = per_call_seconds(lambda: None, repeats=3, min_batch_seconds=0.001)
        >>> wall < 1e-3
        True
    """

    def calls(n: int) -> None:
        for _ in range(n):
            fn()

    fn()
    n = 1
    while True:  # find a batch size that takes at least min_batch_seconds
        wall, _, _ = time_once(functools.partial(calls, n))
        if wall >= min_batch_seconds:
            break
        n *= 2
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu, _ = time_once(functools.partial(calls, n))
        walls.append(wall / n)
        cpus.append(cpu / n)
    return statistics.median(walls), statistics.median(cpus)


def ratio(a: float, b: float) -> float:
    """``a / b``, NaN when ``b`` is zero or missing (never a ZeroDivisionError in a table)."""
    if b is None or a is None or b == 0 or not math.isfinite(b):
        return math.nan
    return a / b


def _read_vm_hwm_kib() -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_vm_hwm() -> bool:
    # Linux >= 4.0: writing 5 to clear_refs resets the peak-RSS high-water mark of this process.
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_rss_mib(fn: Callable[[], Any]) -> tuple[Any, float, bool]:
    """Run ``fn`` and return ``(result, peak resident memory in MiB, exact)``.

    On Linux the peak is measured for ``fn`` alone (the high-water mark is reset first), so
    ``exact`` is True. Elsewhere it falls back to the process-lifetime peak (``ru_maxrss``),
    which also includes everything before the call; then ``exact`` is False.
    """
    exact = _reset_vm_hwm()
    out = fn()
    hwm = _read_vm_hwm_kib() if exact else None
    if hwm is None:
        exact = False
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        hwm = maxrss // 1024 if platform.system() == "Darwin" else maxrss  # bytes on macOS
    return out, hwm / 1024.0, exact


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _git_state() -> str:
    """The commit benchmarked, with ``+dirty`` when the source tree had uncommitted changes."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return "unknown"
    return (commit or "unknown") + ("+dirty(src)" if dirty else "")


def machine_notes() -> dict[str, Any]:
    """What a reader needs to compare numbers across machines."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            names = [ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "versions": {
            d: _version(d) for d in ("torch", "numpy", "scipy", "torchdiffeq", "torchode", "kutta")
        },
        "kutta_commit": _git_state(),
        "load_average_1m": round(load[0], 2),
        "utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
    }


def print_machine_notes() -> None:
    notes = machine_notes()
    versions = ", ".join(f"{k} {v}" for k, v in notes.pop("versions").items())
    print("machine: " + ", ".join(f"{k}={v}" for k, v in notes.items()))
    print("versions: " + versions)


def fmt(x: Any, digits: int = 3) -> str:
    """Numbers for tables: significant digits, ``-`` for missing."""
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "NO"
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        if math.isnan(x):
            return "-"
        return f"{x:.{digits}g}"
    return str(x)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (pastes straight into benchmarks/README.md).

    Example:
        >>> print(table(["a", "b"], [[1, 0.5]]))
        | a | b |
        | --- | --- |
        | 1 | 0.5 |
    """
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def base_parser(description: str) -> argparse.ArgumentParser:
    """The options every benchmark script shares."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a tiny configuration that runs in seconds (smoke test)",
    )
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per measurement")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    return parser


def write_json(path: str | None, results: Any) -> None:
    if path:
        with open(path, "w") as fh:
            json.dump(results, fh, indent=2, default=float)
