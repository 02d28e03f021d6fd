"""The `kutta` command through typer's test runner: every command, and bad input of every kind
ending in one readable line and a non-zero exit code (never a traceback)."""

import json

import pytest
from typer.testing import CliRunner

from kutta.cli.app import app

runner = CliRunner()

TINY = [
    "--set", "data.num_points=200",
    "--set", "train.steps=4",
    "--set", "train.batch_size=8",
    "--set", "train.eval_every=2",
    "--set", "train.log_every=2",
    "--set", "solver.rtol=1e-4",
    "--set", "solver.atol=1e-6",
]  # fmt: skip


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_fails_readably(result, *fragments):
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    text = " ".join(result.output.split())  # rich wraps long lines
    for fragment in fragments:
        assert fragment in text, result.output


@pytest.fixture(scope="module")
def spiral_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("cli") / "spiral"
    result = invoke("train", "spiral", "--out", run_dir, "--seed", 3, *TINY)
    assert result.exit_code == 0, result.output
    return run_dir, result


def test_list_shows_the_experiments():
    result = invoke("list")
    assert result.exit_code == 0
    assert "spiral" in result.output and "neural-ode" in result.output


def test_train_writes_the_run_and_says_where_the_plots_are(spiral_run):
    run_dir, result = spiral_run
    text = " ".join(result.output.split())
    assert "plots:" in text and "trajectories.png" in text and "fit error" in text
    assert "mse_over_variance" in text
    config = (run_dir / "config.toml").read_text()
    assert 'experiment = "spiral"' in config and "seed = 3" in config
    final = json.loads((run_dir / "metrics.json").read_text())
    assert final["training"]["steps"] == 4
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 2


def test_eval_and_plot_a_run(spiral_run, tmp_path):
    run_dir, _ = spiral_run
    result = invoke("eval", run_dir)
    assert result.exit_code == 0 and "mse_over_variance" in result.output
    (run_dir / "plots" / "loss.png").unlink()
    result = invoke("plot", run_dir)
    assert result.exit_code == 0 and (run_dir / "plots" / "loss.png").is_file()
    data = tmp_path / "spiral.csv"
    data.write_text("t,a,b\n0,2,0\n0.1,1.9,0.5\n0.2,1.5,1.0\n")
    result = invoke("eval", run_dir, "--data", data)
    assert result.exit_code == 0 and "mse" in result.output


def test_resume_continues_a_run(spiral_run, tmp_path):
    run_dir, _ = spiral_run
    result = invoke("train", "spiral", "--resume", run_dir, "--set", "train.steps=6")
    assert result.exit_code == 0, result.output
    assert json.loads((run_dir / "metrics.json").read_text())["training"]["steps"] == 6
    assert_fails_readably(invoke("train", "neural-ode", "--resume", run_dir), "not 'neural-ode'")
    assert_fails_readably(invoke("train", "spiral", "--resume", tmp_path), "cannot resume")


def test_solve_writes_a_plot(tmp_path):
    out = tmp_path / "solution.png"
    result = invoke(
        "solve", "dy/dt = -y + sin(t)", "--y0", "1", "--t", "0:10", "--method", "tsit5",
        "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert out.is_file() and "y(10)" in result.output
    # y' = -y + sin t, y(0) = 1: y = (sin t - cos t)/2 + 1.5 e^-t
    import math

    exact = (math.sin(10) - math.cos(10)) / 2 + 1.5 * math.exp(-10)
    assert f"{exact:.5g}"[:6] in result.output
    system = invoke("solve", "[y[1], -y[0]]", "--y0", "1,0", "--t", "0:3:50", "--out", out)
    assert system.exit_code == 0, system.output


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["train", "spirall"], ["unknown experiment 'spirall'", "spiral"]),
        (["train", "spiral", "--set", "train.lr"], ["bad override", "key=value"]),
        (
            ["train", "spiral", "--set", "train.lrr=1"],
            ["unknown config key 'train.lrr'", "train.lr"],
        ),
        (["train", "spiral", "--set", "train.steps=many"], ["train.steps", "expects int"]),
        (["train", "spiral", "--config", "missing.toml"], ["config file not found"]),
        (["train", "spiral", "--device", "tpu"], ["train.device"]),
        (["train", "spiral", "--data", "x.csv"], ["does not read a data file"]),
        (["train", "neural-ode", "--data", "missing.csv"], ["data file not found"]),
        (["eval", "no-such-run"], ["run directory not found"]),
        (["plot", "no-such-run"], ["run directory not found"]),
        (["solve", "import os"], ["cannot parse"]),
        (["solve", "y.__class__"], ["not allowed"]),
        (["solve", "dy/dt = -y", "--t", "0-10"], ["bad time span"]),
        (["solve", "dy/dt = -y", "--method", "nope"], ["nope"]),
        (["solve", "[y[1], -y[0]]", "--y0", "1"], ["2 components", "--y0 has 1"]),
    ],
)
def test_bad_input_fails_readably(args, fragments):
    assert_fails_readably(invoke(*args), *fragments)


def test_bad_config_file_and_malformed_csv(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('experiment = "neural-ode"\n')
    assert_fails_readably(
        invoke("train", "spiral", "--config", config), "for experiment 'neural-ode'"
    )
    config.write_text("[train]\nsteps = 4\nspeed = 3\n")
    assert_fails_readably(invoke("train", "spiral", "--config", config), "train.speed")
    csv = tmp_path / "bad.csv"
    csv.write_text("t,x,y\n0,1,2\n1,nan,3\n2,1,1\n1.5,1,1\n")
    result = invoke("train", "neural-ode", "--data", csv, "--time-col", "t", "--value-cols", "x,y")
    assert_fails_readably(result, "line 3: NaN", "line 5: time 1.5 is not after 2")
    result = invoke("train", "neural-ode", "--data", csv, "--value-cols", "x,z")
    assert_fails_readably(result, "'z' not in the header")


def test_config_file_sets_values(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(
        'experiment = "spiral"\n[train]\nsteps = 2\nlog_every = 1\n[data]\nnum_points = 100\n'
    )
    result = invoke(
        "train",
        "spiral",
        "--config",
        config,
        "--out",
        tmp_path / "run",
        "--set",
        "train.batch_size=4",
    )
    assert result.exit_code == 0, result.output
    written = (tmp_path / "run" / "config.toml").read_text()
    assert "steps = 2" in written and "num_points = 100" in written and "batch_size = 4" in written
