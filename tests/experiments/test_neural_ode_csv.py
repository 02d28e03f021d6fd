"""Bring your own data: CSV validation with line numbers, irregular times, a short fit."""

import math

import pytest
import torch

from kutta.errors import InvalidArgumentError
from kutta.experiments import run as runs
from kutta.experiments.trajectory import read_trajectory_csv


def write(path, text):
    path.write_text(text)
    return path


def damped_oscillator_csv(path, times):
    """x'' = -x - 0.2 x' from (1, 0): the exact solution, sampled at the given times."""
    w = math.sqrt(1 - 0.01)
    rows = ["t,x,v"]
    for t in times:
        x = math.exp(-0.1 * t) * (math.cos(w * t) + 0.1 / w * math.sin(w * t))
        v = -math.exp(-0.1 * t) * (1 / w) * math.sin(w * t)
        rows.append(f"{t},{x},{v}")
    return write(path, "\n".join(rows) + "\n")


def test_reads_selected_columns_in_order(tmp_path):
    path = write(tmp_path / "d.csv", "a,t,b\n1,0,2\n3,0.5,4\n5,2,6\n")
    t, values = read_trajectory_csv(path, time_col="t", value_cols=["b", "a"])
    assert t.tolist() == [0.0, 0.5, 2.0]
    assert values.tolist() == [[2.0, 1.0], [4.0, 3.0], [6.0, 5.0]]
    t, values = read_trajectory_csv(path)  # defaults: first column is time, the rest values
    assert t.tolist() == [1.0, 3.0, 5.0] and values.shape == (3, 2)


@pytest.mark.parametrize(
    "text, message",
    [
        ("t,x\n0,1\n1,nan\n2,3\n", "line 3: NaN or inf in x"),
        ("t,x\n0,1\n1,2\n1,3\n", r"line 4: time 1 is not after 1 \(line 3\)"),
        ("t,x\n0,1\n2,2\n1,3\n", "line 4: time 1 is not after 2"),
        ("t,x\n0,1\n1,abc\n", "line 3: 'abc' is not a number"),
        ("t,x\n0,1\n1,2,3\n", "line 3: 3 fields, expected 2"),
        ("t,x\n0,1\n", "at least 2 data rows"),
        ("", "empty"),
    ],
)
def test_bad_files_are_reported_with_line_numbers(tmp_path, text, message):
    with pytest.raises(InvalidArgumentError, match=message):
        read_trajectory_csv(write(tmp_path / "bad.csv", text))


def test_every_bad_row_is_listed(tmp_path):
    path = write(tmp_path / "bad.csv", "t,x\n0,1\n1,nan\n2,3\n2,4\nx,1\n")
    with pytest.raises(InvalidArgumentError) as info:
        read_trajectory_csv(path)
    assert all(f"line {n}" in str(info.value) for n in (3, 5, 6))


def test_missing_columns_and_files(tmp_path):
    path = write(tmp_path / "d.csv", "t,x\n0,1\n1,2\n")
    with pytest.raises(InvalidArgumentError, match=r"'y' not in the header \(columns: t, x\)"):
        read_trajectory_csv(path, time_col="t", value_cols=["x", "y"])
    with pytest.raises(InvalidArgumentError, match="not found"):
        read_trajectory_csv(tmp_path / "nope.csv")


def test_union_grid_batches_equal_separate_solves(tmp_path):
    """Windows with different irregular times, solved together, match solving each alone."""
    times = sorted({round(0.3 * k + 0.2 * math.sin(k), 3) for k in range(40)})
    path = damped_oscillator_csv(tmp_path / "osc.csv", times)
    config = runs.resolve_config(
        runs.get_experiment("neural-ode"),
        overrides=[f"data.path={str(path)!r}", "solver.rtol=1e-9", "solver.atol=1e-11"],
    )
    task = runs.get_experiment("neural-ode").build(config, torch.device("cpu"), torch.float64)
    indices = torch.tensor([0, 7, 13])
    batched = task.loss(task.model, indices).loss
    separate = torch.stack(
        [task.loss(task.model, indices[i : i + 1]).loss for i in range(len(indices))]
    ).mean()
    torch.testing.assert_close(batched, separate, rtol=1e-6, atol=1e-9)


def test_short_fit_on_irregular_data_improves_and_evaluates_new_files(tmp_path):
    generator = torch.Generator().manual_seed(0)
    times = torch.sort(torch.rand(80, generator=generator, dtype=torch.float64) * 20).values
    path = damped_oscillator_csv(tmp_path / "osc.csv", times.tolist())
    overrides = [
        f"data.path={str(path)!r}",
        "data.time_col=t",
        "data.value_cols=x,v",
        "model.hidden=16",
        "train.steps=30",
        "train.lr=0.01",
        "train.eval_every=10",
        "train.log_every=5",
    ]
    result = runs.train("neural-ode", overrides=overrides, out=tmp_path / "run")
    records = runs.read_metrics_log(tmp_path / "run")
    assert records[-1]["loss"] < records[0]["loss"]
    metrics = result.metrics["metrics"]
    assert {"train_mse", "test_mse", "nfe"} <= set(metrics)
    assert metrics["num_train"] == 64  # the last 20% are the test split
    on_file = runs.evaluate(tmp_path / "run", data=path)
    assert on_file["num_points"] == 80 and math.isfinite(on_file["mse_standardized"])
    wrong = write(tmp_path / "wrong.csv", "t,x\n0,1\n1,2\n")
    with pytest.raises(InvalidArgumentError, match="column"):
        runs.evaluate(tmp_path / "run", data=wrong)


def test_neural_ode_needs_a_data_file(tmp_path):
    with pytest.raises(InvalidArgumentError, match="--data"):
        runs.train("neural-ode", overrides=["train.steps=1"], out=tmp_path / "run")
    assert not (tmp_path / "run").exists()  # nothing written for a run that cannot start
