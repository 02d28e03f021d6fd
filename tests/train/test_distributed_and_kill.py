"""Real processes: a run killed with SIGKILL resumes to the same result, and 2-process DDP
(torchrun, gloo) trains exactly like one process with the same global batch."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from kutta.experiments import run as runs
from kutta.train.checkpoint import load_checkpoint

# A fixed-step solver makes the arithmetic of a sharded batch identical to the whole batch's
# (an adaptive solver would pick its steps from the local batch), so only summation order differs.
SMALL = [
    "data.num_points=200",
    "train.dtype=float64",
    "train.batch_size=8",
    "train.log_every=5",
    "train.eval_every=0",
    "train.restore_best=false",
    "solver.method=rk4",
    "solver.step_size=0.025",
]


def kutta_command(*args):
    return [sys.executable, "-m", "kutta", *map(str, args)]


def overrides_as_options(overrides):
    return [option for item in overrides for option in ("--set", item)]


def final_state(run_dir):
    return load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"]


def final_loss(run_dir):
    return runs.read_metrics_log(run_dir)[-1]["loss"]


@pytest.mark.slow
def test_sigkilled_run_resumes_to_the_uninterrupted_result(tmp_path):
    settings = [*SMALL, "train.steps=300", "train.checkpoint_every=20", "train.schedule=cosine"]
    runs.train("spiral", overrides=settings, out=tmp_path / "whole")

    run_dir = tmp_path / "killed"
    process = subprocess.Popen(
        kutta_command("train", "spiral", "--out", run_dir, *overrides_as_options(settings)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    checkpoint = run_dir / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()
    killed_at = load_checkpoint(checkpoint)["step"]
    assert 0 < killed_at < 300
    assert not (run_dir / "metrics.json").exists()

    resumed = subprocess.run(
        kutta_command("train", "spiral", "--resume", run_dir),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert final_loss(run_dir) == pytest.approx(final_loss(tmp_path / "whole"), rel=1e-9)
    whole = final_state(tmp_path / "whole")
    for key, value in final_state(run_dir).items():
        torch.testing.assert_close(value, whole[key], rtol=1e-9, atol=1e-12)
    steps = [r["step"] for r in runs.read_metrics_log(run_dir)]
    assert steps == list(range(5, 301, 5))


@pytest.mark.slow
def test_two_process_ddp_matches_one_process(tmp_path):
    settings = [*SMALL, "train.steps=12", "train.lr=0.01"]
    runs.train("spiral", overrides=settings, out=tmp_path / "single")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "kutta", "train", "spiral", "--out", tmp_path / "ddp", *overrides_as_options(settings),
    ]  # fmt: skip
    # a timeout: a process-group teardown that deadlocks must fail this test, not hang the suite
    done = subprocess.run(
        list(map(str, command)), capture_output=True, text=True, env=env, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert final_loss(tmp_path / "ddp") == pytest.approx(final_loss(tmp_path / "single"), rel=1e-9)
    single = final_state(tmp_path / "single")
    for key, value in final_state(tmp_path / "ddp").items():
        torch.testing.assert_close(value, single[key], rtol=1e-9, atol=1e-12)
    # and training did move the model, so the agreement is not vacuous
    records = runs.read_metrics_log(tmp_path / "ddp")
    assert records[-1]["loss"] < records[0]["loss"]
    assert json.loads((tmp_path / "ddp" / "metrics.json").read_text())["training"]["steps"] == 12
