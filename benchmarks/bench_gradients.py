"""Gradients through solvers (issue 3): memory, backward NFE and time, kutta vs torchdiffeq.

Three parts, all on one thread, kutta and torchdiffeq side by side:

- ``memory``: peak resident memory (MiB above the process's resident size before the call) of
  one forward + backward of an MLP field 32 -> 256 -> 32 (tanh), batch 256, float32, over 10 and
  300 fixed rk4 steps on t in [0, 1]. Every case runs in a fresh subprocess, so memory freed by
  an earlier case cannot hide a later one's growth. Compared: kutta's odeint_adjoint,
  ``kutta.solve`` with Adjoint / RecursiveCheckpoint / Backprop, kutta's odeint (backprop), and
  torchdiffeq's odeint_adjoint and odeint.
- ``nfe``: backward NFE of the adjoint with the full norm and with the seminorm, on a neural
  field 16 -> 64 -> 16 (tanh), batch 8, t in [0, 2], dopri5, rtol 1e-8, atol 1e-9, float64.
- ``training``: time per epoch (20 Adam iterations) fitting a neural ODE to torchdiffeq's
  ode_demo spiral, kutta vs torchdiffeq, with backprop and with the adjoint.
- ``time``: a full seminorm-adjoint gradient (forward + backward) in float32 on the same field,
  dopri5, rtol 1e-5, atol 1e-6: wall and CPU medians of interleaved repeats, and the ratio to
  torchdiffeq's.

    .venv/bin/python benchmarks/bench_gradients.py            # full run (a few minutes)
    .venv/bin/python benchmarks/bench_gradients.py --quick    # smoke test (seconds)
    .venv/bin/python benchmarks/bench_gradients.py --part nfe
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import (  # noqa: E402
    base_parser,
    fmt,
    peak_rss_mib,
    pin_one_thread,
    print_machine_notes,
    ratio,
    table,
    time_interleaved,
    write_json,
)

pin_one_thread()

import torch  # noqa: E402
import torchdiffeq  # noqa: E402
from torch import nn  # noqa: E402

import kutta  # noqa: E402
from kutta.adjoint import odeint_adjoint  # noqa: E402
from kutta.gradients import Adjoint, RecursiveCheckpoint  # noqa: E402

MEMORY_CASES = (
    "kutta odeint_adjoint",
    "kutta.solve Adjoint",
    "kutta.solve RecursiveCheckpoint",
    "kutta.solve Backprop",
    "kutta odeint (backprop)",
    "torchdiffeq odeint_adjoint",
    "torchdiffeq odeint (backprop)",
)


class Field(nn.Module):
    """``y -> Linear(dim, hidden) -> tanh -> Linear(hidden, dim)``, counting its calls."""

    def __init__(self, dim: int, hidden: int, dtype: torch.dtype, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, dim))
        self.net.to(dtype)
        self.calls = 0

    def forward(self, t, y):
        self.calls += 1
        return self.net(y)


# ------------------------------------------------------------------------------------------
# memory
# ------------------------------------------------------------------------------------------


def memory_case(case: str, steps: int, dim: int, hidden: int, batch: int) -> dict:
    """One forward + backward; returns the peak resident memory above the start, in MiB."""
    field = Field(dim, hidden, torch.float32)
    y0 = torch.randn(batch, dim, requires_grad=True)
    t = torch.tensor([0.0, 1.0])

    def run(n_steps: int):
        h = 1.0 / n_steps
        opts = dict(step_size=h)
        if case == "kutta odeint_adjoint":
            ys = odeint_adjoint(field, y0, t, method="rk4", options=opts)
        elif case == "kutta odeint (backprop)":
            ys = kutta.odeint(field, y0, t, method="rk4", options=opts)
        elif case == "torchdiffeq odeint_adjoint":
            ys = torchdiffeq.odeint_adjoint(field, y0, t, method="rk4", options=opts)
        elif case == "torchdiffeq odeint (backprop)":
            ys = torchdiffeq.odeint(field, y0, t, method="rk4", options=opts)
        else:
            strategy = {
                "kutta.solve Adjoint": Adjoint(),
                "kutta.solve RecursiveCheckpoint": RecursiveCheckpoint(),
                "kutta.solve Backprop": kutta.Backprop(),
            }[case]
            ys = kutta.solve(field, y0, t, method="rk4", step_size=h, gradient=strategy).ys
        ys[-1].pow(2).sum().backward()

    # Warm up kernels and allocator pools on a 1-step solve; its memory is part of the baseline.
    run(1)
    field.zero_grad()
    y0.grad = None
    start = _current_rss_mib()
    _, peak, exact = peak_rss_mib(lambda: run(steps))
    return {
        "case": case,
        "steps": steps,
        "peak_mib": peak,
        "baseline_mib": start,
        "added_mib": peak - start,
        "exact": exact,
    }


def _current_rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def run_memory(quick: bool) -> list[dict]:
    dim, hidden, batch = (8, 32, 16) if quick else (32, 256, 256)
    step_counts = (2, 8) if quick else (10, 300)
    rows = []
    for case in MEMORY_CASES:
        for steps in step_counts:
            cmd = [sys.executable, os.path.abspath(__file__), "--memory-case", case]
            cmd += ["--steps", str(steps), "--dims", f"{dim},{hidden},{batch}"]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
    return rows


def memory_table(rows: list[dict]) -> str:
    by = {(r["case"], r["steps"]): r for r in rows}
    steps = sorted({r["steps"] for r in rows})
    lo, hi = steps[0], steps[-1]
    body = []
    for case in MEMORY_CASES:
        a, b = by[(case, lo)]["added_mib"], by[(case, hi)]["added_mib"]
        body.append([case, round(a, 1), round(b, 1), round(b - a, 1)])
    headers = ["case", f"+MiB at {lo} steps", f"+MiB at {hi} steps", f"growth {lo} -> {hi}"]
    return table(headers, body)


# ------------------------------------------------------------------------------------------
# NFE
# ------------------------------------------------------------------------------------------


def run_nfe(quick: bool) -> list[dict]:
    dtype = torch.float64
    rtol, atol = (1e-6, 1e-6) if quick else (1e-8, 1e-9)  # atol: torchdiffeq's default
    field = Field(16, 64, dtype, seed=1)
    y0 = torch.randn(8, 16, dtype=dtype, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([0.0, 2.0], dtype=dtype)
    rows = []
    for lib in ("kutta odeint_adjoint", "kutta.solve Adjoint (dopri5)", "torchdiffeq"):
        for seminorm in (False, True):
            field.zero_grad()
            field.calls = 0
            if lib == "kutta odeint_adjoint":
                ys = odeint_adjoint(
                    field,
                    y0,
                    t,
                    rtol=rtol,
                    atol=atol,
                    method="dopri5",
                    adjoint_options=dict(norm="seminorm") if seminorm else None,
                )
            elif lib == "torchdiffeq":
                ys = torchdiffeq.odeint_adjoint(
                    field,
                    y0,
                    t,
                    rtol=rtol,
                    atol=atol,
                    method="dopri5",
                    adjoint_options=dict(norm="seminorm") if seminorm else None,
                )
            else:
                ys = kutta.solve(
                    field,
                    y0,
                    t,
                    method="dopri5",
                    controller=kutta.IController(rtol=rtol, atol=atol),
                    gradient=Adjoint(seminorm=seminorm),
                ).ys
            forward = field.calls
            ys[-1].pow(2).sum().backward()
            grad = torch.cat([p.grad.reshape(-1) for p in field.parameters()])
            rows.append(
                {
                    "library": lib,
                    "seminorm": seminorm,
                    "forward_nfe": forward,
                    "backward_nfe": field.calls - forward,
                    "grad": grad,
                }
            )
    ref = rows[-2]["grad"]  # torchdiffeq, full norm
    for r in rows:
        r["grad_rel_diff_vs_torchdiffeq"] = float((r.pop("grad") - ref).norm() / ref.norm())
    return rows


def nfe_table(rows: list[dict]) -> str:
    body = []
    for lib in dict.fromkeys(r["library"] for r in rows):
        full = next(r for r in rows if r["library"] == lib and not r["seminorm"])
        semi = next(r for r in rows if r["library"] == lib and r["seminorm"])
        cut = 1 - semi["backward_nfe"] / full["backward_nfe"]
        body.append(
            [
                lib,
                full["forward_nfe"],
                full["backward_nfe"],
                semi["backward_nfe"],
                f"{100 * cut:.0f}%",
                f"{semi['grad_rel_diff_vs_torchdiffeq']:.1e}",
            ]
        )
    headers = [
        "library",
        "forward NFE",
        "backward NFE (full norm)",
        "backward NFE (seminorm)",
        "seminorm cut",
        "grad rel. diff vs torchdiffeq",
    ]
    return table(headers, body)


# ------------------------------------------------------------------------------------------
# time
# ------------------------------------------------------------------------------------------


def run_time(quick: bool, repeats: int) -> dict:
    field = Field(16, 64, torch.float32, seed=1)
    y0 = torch.randn(8, 16, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([0.0, 2.0])
    tol = dict(rtol=1e-5, atol=1e-6, method="dopri5", adjoint_options=dict(norm="seminorm"))

    def gradient(odeint_fn):
        def run():
            field.zero_grad()
            odeint_fn(field, y0, t, **tol)[-1].pow(2).sum().backward()

        return run

    def native():
        field.zero_grad()
        sol = kutta.solve(
            field,
            y0,
            t,
            method="dopri5",
            controller=kutta.IController(rtol=1e-5, atol=1e-6),
            gradient=Adjoint(seminorm=True),
        )
        sol.ys[-1].pow(2).sum().backward()

    fns = {
        "kutta odeint_adjoint": gradient(odeint_adjoint),
        "kutta.solve Adjoint": native,
        "torchdiffeq odeint_adjoint": gradient(torchdiffeq.odeint_adjoint),
    }
    timings = time_interleaved(fns, repeats=repeats, warmup=1)
    td = timings["torchdiffeq odeint_adjoint"]
    return {
        name: {
            "wall": tm.wall,
            "cpu": tm.cpu,
            "wall_ratio": ratio(tm.wall, td.wall),
            "cpu_ratio": ratio(tm.cpu, td.cpu),
        }
        for name, tm in timings.items()
    }


def time_table(res: dict) -> str:
    body = [
        [
            name,
            f"{1e3 * r['wall']:.1f}",
            f"{1e3 * r['cpu']:.1f}",
            fmt(r["wall_ratio"]),
            fmt(r["cpu_ratio"]),
        ]
        for name, r in res.items()
    ]
    headers = ["library", "wall ms", "cpu ms", "wall / torchdiffeq", "cpu / torchdiffeq"]
    return table(headers, body)


# ------------------------------------------------------------------------------------------
# training
# ------------------------------------------------------------------------------------------


def spiral_data(n_points: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The spiral of torchdiffeq's ode_demo: y' = (y^3) A, y(0) = (2, 0), t in [0, 25]."""
    A = torch.tensor([[-0.1, 2.0], [-2.0, -0.1]])
    t = torch.linspace(0.0, 25.0, n_points)
    with torch.no_grad():
        ys = kutta.odeint(lambda tt, y: (y**3) @ A, torch.tensor([[2.0, 0.0]]), t, rtol=1e-8)
    return t, ys


class SpiralField(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(2, 50), nn.Tanh(), nn.Linear(50, 2))

    def forward(self, t, y):
        return self.net(y**3)


def run_training(quick: bool, repeats: int) -> dict:
    """Time per epoch of a neural ODE fitted to the spiral (ode_demo's setup: dopri5, windows of
    10 points, batch 20, Adam 1e-3); the same weights and batches for every library."""
    t, true_ys = spiral_data(200 if quick else 1000)
    iters, window, batch = (2, 10, 4) if quick else (20, 10, 20)
    gen = torch.Generator().manual_seed(0)
    starts = [torch.randint(0, len(t) - window, (batch,), generator=gen) for _ in range(iters)]
    initial = SpiralField().state_dict()
    solvers = {
        "kutta odeint (backprop)": kutta.odeint,
        "kutta odeint_adjoint": odeint_adjoint,
        "torchdiffeq odeint (backprop)": torchdiffeq.odeint,
        "torchdiffeq odeint_adjoint": torchdiffeq.odeint_adjoint,
    }
    losses: dict[str, float] = {}

    def epoch(name: str):
        def run():
            field = SpiralField()
            field.load_state_dict(initial)
            opt = torch.optim.Adam(field.parameters(), lr=1e-3)
            for idx in starts:
                opt.zero_grad()
                y0 = true_ys[idx, 0]  # (batch, 2)
                target = torch.stack([true_ys[idx + i, 0] for i in range(window)])
                pred = solvers[name](field, y0, t[:window], method="dopri5")
                loss = (pred - target).abs().mean()
                loss.backward()
                opt.step()
            losses[name] = float(loss.detach())

        return run

    timings = time_interleaved({name: epoch(name) for name in solvers}, repeats=repeats)
    out = {}
    for lib in ("odeint (backprop)", "odeint_adjoint"):
        k, td = timings[f"kutta {lib}"], timings[f"torchdiffeq {lib}"]
        out[lib] = {
            "kutta_wall": k.wall,
            "kutta_cpu": k.cpu,
            "torchdiffeq_wall": td.wall,
            "torchdiffeq_cpu": td.cpu,
            "wall_ratio": ratio(k.wall, td.wall),
            "cpu_ratio": ratio(k.cpu, td.cpu),
            "kutta_last_loss": losses[f"kutta {lib}"],
            "torchdiffeq_last_loss": losses[f"torchdiffeq {lib}"],
        }
    out["iterations_per_epoch"] = iters
    return out


def training_table(res: dict) -> str:
    body = [
        [
            lib,
            f"{r['kutta_wall']:.3f} ({r['kutta_cpu']:.3f})",
            f"{r['torchdiffeq_wall']:.3f} ({r['torchdiffeq_cpu']:.3f})",
            f"{fmt(r['wall_ratio'])} ({fmt(r['cpu_ratio'])})",
            f"{r['kutta_last_loss']:.4f} / {r['torchdiffeq_last_loss']:.4f}",
        ]
        for lib, r in res.items()
        if isinstance(r, dict)
    ]
    headers = [
        "gradient",
        "kutta s/epoch wall (cpu)",
        "torchdiffeq s/epoch wall (cpu)",
        "kutta / torchdiffeq wall (cpu)",
        "last loss kutta / torchdiffeq",
    ]
    return table(headers, body)


def main(argv: list[str] | None = None) -> dict:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--part", choices=("all", "memory", "nfe", "time", "training"), default="all"
    )
    parser.add_argument("--memory-case", default=None, help=argparse_hidden())
    parser.add_argument("--steps", type=int, default=10, help=argparse_hidden())
    parser.add_argument("--dims", default="32,256,256", help=argparse_hidden())
    args = parser.parse_args(argv)
    if args.memory_case:
        dim, hidden, batch = (int(x) for x in args.dims.split(","))
        print(json.dumps(memory_case(args.memory_case, args.steps, dim, hidden, batch)))
        return {}
    print_machine_notes()
    results: dict = {}
    if args.part in ("all", "memory"):
        results["memory"] = run_memory(args.quick)
        print("\npeak resident memory added by one forward + backward (rk4, fixed steps)")
        print(memory_table(results["memory"]))
    if args.part in ("all", "nfe"):
        results["nfe"] = run_nfe(args.quick)
        print("\nadjoint NFE, full norm vs seminorm (dopri5)")
        print(nfe_table(results["nfe"]))
    if args.part in ("all", "time"):
        repeats = args.repeats or (1 if args.quick else 7)
        results["time"] = run_time(args.quick, repeats)
        print("\nseminorm adjoint gradient, float32 (medians of interleaved repeats)")
        print(time_table(results["time"]))
    if args.part in ("all", "training"):
        repeats = args.repeats or (1 if args.quick else 3)
        results["training"] = run_training(args.quick, repeats)
        print(
            f"\nspiral neural ODE, time per epoch ({results['training']['iterations_per_epoch']} "
            "iterations, dopri5, float32; medians of interleaved repeats)"
        )
        print(training_table(results["training"]))
    write_json(args.json, results)
    return results


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
