"""The ``kutta`` command: list, train, eval, plot and solve.

Every command turns kutta's own errors (bad names, bad files, bad values) into one readable line
and exit code 1; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from kutta.errors import KuttaError

app = typer.Typer(
    name="kutta",
    help="Neural differential equations: train, evaluate and plot continuous-time models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
error_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def _readable_errors(command: F) -> F:
    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (KuttaError, FileNotFoundError, PermissionError, IsADirectoryError) as exc:
            error_console.print(f"[bold red]error:[/bold red] {exc}", highlight=False, markup=True)
            raise typer.Exit(code=1) from None

    return wrapper  # type: ignore[return-value]


@app.command("list")
@_readable_errors
def list_experiments() -> None:
    """List the built-in experiments."""
    from kutta.experiments import available

    table = Table("experiment", "description", box=None)
    for name, experiment in available().items():
        table.add_row(f"[bold]{name}[/bold]", experiment.description)
    console.print(table)


@app.command()
@_readable_errors
def train(
    experiment: Annotated[str, typer.Argument(help="name of the experiment (see `kutta list`)")],
    config: Annotated[
        Path | None, typer.Option("--config", help="TOML file with config overrides")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="override one config key, e.g. --set train.lr=1e-3 (repeatable)"
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="run directory (default runs/EXPERIMENT)")
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="seed for data, initialization and batches")
    ] = None,
    device: Annotated[str | None, typer.Option(help="cpu or cuda")] = None,
    resume: Annotated[
        Path | None,
        typer.Option(help="continue the run in this directory from its last checkpoint"),
    ] = None,
    data: Annotated[Path | None, typer.Option(help="CSV file with your trajectory")] = None,
    time_col: Annotated[str | None, typer.Option(help="time column of --data")] = None,
    value_cols: Annotated[
        str | None, typer.Option(help="comma-separated state columns of --data")
    ] = None,
) -> None:
    """Train an experiment and write a run directory (config, metrics, checkpoints, plots)."""
    from kutta.cli.progress import ProgressHook
    from kutta.experiments import get_experiment
    from kutta.experiments import run as runs
    from kutta.train.config import valid_keys

    overrides = []
    data_options = {"data.path": data, "data.time_col": time_col, "data.value_cols": value_cols}
    given = {key: value for key, value in data_options.items() if value is not None}
    if given:
        keys = valid_keys(get_experiment(experiment).config_class)
        unsupported = [key for key in given if key not in keys]
        if unsupported:
            raise KuttaError(
                f"experiment {experiment!r} does not read a data file; --data, --time-col and "
                "--value-cols are for `kutta train neural-ode`"
            )
        overrides += [f"{key}={json.dumps(str(value))}" for key, value in given.items()]
    if seed is not None:
        overrides.append(f"train.seed={seed}")
    if device is not None:
        overrides.append(f"train.device={json.dumps(device)}")
    overrides += set_ or []

    progress = ProgressHook(console)
    result = runs.train(
        experiment,
        config_file=config,
        overrides=overrides,
        out=out,
        resume=resume,
        hooks=[progress],
    )
    if not result.is_main:
        return
    _print_metrics(result.metrics["metrics"], title=f"{experiment}: final metrics")
    training = result.metrics["training"]
    stopped = " (stopped early)" if training["stopped_early"] else ""
    console.print(
        f"trained {training['steps']} steps in {training['train_time_s']:.1f} s{stopped}; "
        f"run directory: [bold]{result.run_dir}[/bold]"
    )
    console.print(
        f"plots: [bold]{result.run_dir / runs.PLOTS_DIR}[/bold]/ ({_names(result.plots)})"
    )
    if result.summary:
        console.print(result.summary)


@app.command("eval")
@_readable_errors
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="a run directory written by `kutta train`")],
    data: Annotated[
        Path | None, typer.Option(help="CSV file with new data (default: the run's own data)")
    ] = None,
) -> None:
    """Evaluate a trained run on its own data or on new data."""
    from kutta.experiments import run as runs

    metrics = runs.evaluate(run_dir, data)
    _print_metrics(metrics, title=f"{run_dir}: " + (f"on {data}" if data else "evaluation"))


@app.command()
@_readable_errors
def plot(
    run_dir: Annotated[Path, typer.Argument(help="a run directory written by `kutta train`")],
) -> None:
    """Regenerate a run's figures: learned trajectories vs data, loss, NFE over training."""
    from kutta.experiments import run as runs

    paths = runs.plot(run_dir)
    for path in paths:
        console.print(str(path), highlight=False)


@app.command()
@_readable_errors
def solve(
    rhs: Annotated[
        str,
        typer.Argument(
            help="right-hand side: 'dy/dt = -y + sin(t)', '[y[1], -y[0]]' or 'pkg.module:func'"
        ),
    ],
    y0: Annotated[str, typer.Option("--y0", help="initial value(s), e.g. 1 or 1,0")] = "1",
    t: Annotated[str, typer.Option("--t", help="START:END or START:END:POINTS")] = "0:10",
    method: Annotated[str, typer.Option(help="solver, e.g. dopri5, tsit5, rk4")] = "dopri5",
    rtol: Annotated[float, typer.Option(help="relative tolerance")] = 1e-7,
    atol: Annotated[float, typer.Option(help="absolute tolerance")] = 1e-9,
    out: Annotated[Path, typer.Option(help="where to write the plot")] = Path("solution.png"),
) -> None:
    """Integrate an ODE given on the command line and plot it."""
    import torch

    from kutta import odeint
    from kutta.cli.expression import parse_rhs, parse_time_span, parse_vector
    from kutta.experiments import plotting

    func = parse_rhs(rhs)
    initial = torch.tensor(parse_vector(y0), dtype=torch.float64)
    dimension = getattr(func, "dimension", None)
    if dimension is not None and dimension != initial.numel():
        raise KuttaError(
            f"the right-hand side has {dimension} components but --y0 has {initial.numel()}"
        )
    start, end, points = parse_time_span(t)
    times = torch.linspace(start, end, points, dtype=torch.float64)
    calls = 0

    def counted(time: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        nonlocal calls
        calls += 1
        return func(time, y)

    with torch.no_grad():
        ys = odeint(counted, initial, times, rtol=rtol, atol=atol, method=method)
    path = plotting.solution_plot(out, times, ys, title=rhs)
    final = ", ".join(f"{v:.6g}" for v in ys[-1].reshape(-1).tolist())
    console.print(f"y({end:g}) = [{final}]  ({method}, {calls} evaluations)", highlight=False)
    console.print(f"plot: [bold]{path}[/bold]")


def _print_metrics(metrics: dict[str, Any], title: str) -> None:
    table = Table("metric", "value", title=title, box=None, title_justify="left")
    for key, value in metrics.items():
        table.add_row(key, f"{value:.6g}" if isinstance(value, float) else str(value))
    console.print(table)


def _names(paths: list[Path]) -> str:
    return ", ".join(path.name for path in paths)


def main() -> None:
    """Entry point of the ``kutta`` script (and of ``python -m kutta``)."""
    app()
