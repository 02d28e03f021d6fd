"""The stiff, SDE and gradient benchmarks run end to end in their --quick configuration.

Each runs in its own process, as `make bench` runs it, so a benchmark that rots fails here.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

BENCH_DIR = pathlib.Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.mark.parametrize(
    "script",
    [
        "bench_stiff.py",
        pytest.param("bench_sde.py", marks=pytest.mark.slow),  # its dt = 1e-4 reference takes ~40 s
        pytest.param("bench_gradients.py", marks=pytest.mark.slow),
    ],
)
def test_benchmark_runs_quickly(script):
    done = subprocess.run(
        [sys.executable, str(BENCH_DIR / script), "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, (
        f"{script} --quick failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    )
    assert "kutta" in done.stdout
