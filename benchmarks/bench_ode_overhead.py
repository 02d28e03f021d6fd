"""Per-step overhead of kutta's ODE core against torchdiffeq, torchode and scipy (issue 2).

Workload: the neural vector field MLP 2 -> 64 -> 2 (tanh), dopri5, rtol 1e-6, atol 1e-8,
t from 0 to 10 (only the end point is output), float32, random seeded y0 at batch 16 and 1024.

    overhead = wall / (NFE x time of one bare call of the field at that batch, same grad mode)

1.0 is the physical limit: everything above it is the solver's own cost. Measured twice: under
``torch.no_grad()`` (inference) and with gradients enabled (forward only; the parameters require
grad, so every call records the autograd graph). "kutta" is the drop-in ``kutta.odeint`` and
"kutta compile=True" the same with ``options={"compile": True}`` (each step one torch.compile-d
graph; compiled before timing, full runs only); the issue's targets are checked on both.
"kutta.solve PI" is the native API with its default
``PIController`` gains, shown for reference. scipy's RK45 runs on the flattened state through
a numpy wrapper (inference only). All libraries run in one process, timed round-robin, one thread;
the bare field calls (as many as kutta's NFE) are one more entry in that round-robin, so machine
load changes the numerator and the denominator of the overhead alike. A last table times batch 16
with 2, 100 and 1000 output times (outputs inside one step are interpolated together).

    .venv/bin/python benchmarks/bench_ode_overhead.py            # full run (about a minute)
    .venv/bin/python benchmarks/bench_ode_overhead.py --quick    # smoke test (seconds)
"""

from __future__ import annotations

import contextlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import (  # noqa: E402
    CountingField,
    MLPField,
    base_parser,
    fmt,
    pin_one_thread,
    print_machine_notes,
    ratio,
    table,
    time_interleaved,
    write_json,
)

pin_one_thread()

import numpy as np  # noqa: E402
import scipy.integrate  # noqa: E402
import torch  # noqa: E402
import torchdiffeq  # noqa: E402
import torchode  # noqa: E402

import kutta  # noqa: E402

RTOL, ATOL = 1e-6, 1e-8
TARGETS = {16: 1.5, 1024: 1.1}  # kutta overhead targets per batch size (issue 2)
WALL_TARGET_VS_TORCHDIFFEQ = 0.35  # at batch 16
BARE = "bare field calls"
COMPILED = "kutta compile=True"


def _solvers(
    field: torch.nn.Module,
    y0: torch.Tensor,
    t: torch.Tensor,
    rtol: float,
    atol: float,
    compiled: bool,
):
    """One zero-argument callable per library, each returning the final state as a tensor."""
    batch = y0.shape[0]

    def run_kutta():
        return kutta.odeint(field, y0, t, rtol=rtol, atol=atol, method="dopri5")[-1]

    def run_kutta_compiled():
        options = {"compile": True}
        return kutta.odeint(field, y0, t, rtol=rtol, atol=atol, method="dopri5", options=options)[
            -1
        ]

    def run_kutta_solve():
        controller = kutta.PIController(rtol=rtol, atol=atol)
        return kutta.solve(field, y0, t, method=kutta.Dopri5(), controller=controller).ys[-1]

    def run_torchdiffeq():
        return torchdiffeq.odeint(field, y0, t, rtol=rtol, atol=atol, method="dopri5")[-1]

    # torchode's solver is a module one builds once and reuses, so it is built outside the timing.
    term = torchode.ODETerm(field)
    solver = torchode.AutoDiffAdjoint(
        torchode.Dopri5(term=term), torchode.IntegralController(atol=atol, rtol=rtol, term=term)
    )
    problem = torchode.InitialValueProblem(y0=y0, t_eval=t.expand(batch, -1))

    def run_torchode():
        return solver.solve(problem).ys[:, -1]

    y0_np = y0.detach().numpy().reshape(-1).astype(np.float64)
    dtype = y0.dtype

    def numpy_field(tt, y):
        with torch.no_grad():
            out = field(tt, torch.from_numpy(y).to(dtype).view(batch, -1))
        return out.numpy().reshape(-1)

    def run_scipy():
        sol = scipy.integrate.solve_ivp(
            numpy_field, (float(t[0]), float(t[-1])), y0_np, method="RK45", rtol=rtol, atol=atol
        )
        if sol.status != 0:
            raise RuntimeError(f"scipy RK45 failed: {sol.message}")
        return torch.from_numpy(sol.y[:, -1]).view(batch, -1)

    return {
        "kutta": run_kutta,
        **({COMPILED: run_kutta_compiled} if compiled else {}),
        "kutta.solve PI": run_kutta_solve,
        "torchdiffeq": run_torchdiffeq,
        "torchode": run_torchode,
        "scipy RK45": run_scipy,
    }


def measure(
    batch: int, grad: bool, repeats: int, t_end: float, rtol: float, atol: float, compiled: bool
) -> dict:
    """Time every library on one configuration; returns rows of results."""
    torch.manual_seed(0)
    field_module = MLPField()
    for p in field_module.parameters():
        p.requires_grad_(grad)
    field = CountingField(field_module)
    y0 = torch.randn(batch, 2)
    t = torch.tensor([0.0, t_end])
    mode = contextlib.nullcontext() if grad else torch.no_grad()
    with mode:
        # Timed runs call the bare field, so the counting wrapper's own cost is not charged to
        # the solvers; NFE and final states come from separate runs through the counting wrapper.
        fns = _solvers(field_module, y0, t, rtol, atol, compiled)
        counted = _solvers(field, y0, t, rtol, atol, compiled)
        if grad:
            del fns["scipy RK45"]  # scipy cannot carry gradients
        finals, nfes = {}, {}
        for name in fns:
            field.calls = 0
            finals[name] = counted[name]().detach().double()
            nfes[name] = field.calls

        # The bare calls are timed in the same round-robin as the solves (as many calls as
        # kutta's NFE), so a change in machine load affects the denominator and the numerators
        # alike.
        n_bare = max(nfes["kutta"], 1)

        def bare_calls():
            for _ in range(n_bare):
                field_module(t[0], y0)

        timings = time_interleaved({**fns, BARE: bare_calls}, repeats=repeats, warmup=1)
        bare = timings.pop(BARE)
        bare_wall, bare_cpu = bare.wall / n_bare, bare.cpu / n_bare
    reference = finals["scipy RK45"] if "scipy RK45" in finals else finals["torchdiffeq"]
    rows = []
    for name, timing in timings.items():
        rows.append(
            {
                "library": name,
                "wall_s": timing.wall,
                "cpu_s": timing.cpu,
                "nfe": nfes[name],
                "overhead": ratio(timing.wall, nfes[name] * bare_wall),
                "overhead_cpu": ratio(timing.cpu, nfes[name] * bare_cpu),
                "own_us_per_nfe": (timing.cpu / nfes[name] - bare_cpu) * 1e6,
                "max_abs_diff": float((finals[name] - reference).abs().max()),
            }
        )
    return {
        "batch": batch,
        "grad": grad,
        "bare_call_s": bare_wall,
        "bare_call_cpu_s": bare_cpu,
        "rows": rows,
    }


def measure_output_grid(
    counts: list[int], repeats: int, t_end: float, rtol: float, atol: float
) -> list[dict]:
    """Batch 16, inference, with ``count`` output times: the cost of dense outputs."""
    torch.manual_seed(0)
    field = MLPField()
    y0 = torch.randn(16, 2)
    rows = []
    with torch.no_grad():
        for count in counts:
            t = torch.linspace(0.0, t_end, count)
            fns = _solvers(field, y0, t, rtol, atol, compiled=False)
            fns = {name: fns[name] for name in ("kutta", "torchdiffeq", "torchode")}
            timings = time_interleaved(fns, repeats=repeats, warmup=1)
            rows.append({"outputs": count, **{name: tm.wall for name, tm in timings.items()}})
    return rows


def report_output_grid(rows: list[dict]) -> None:
    print("\n### batch 16, torch.no_grad(), many output times (wall ms; ratio kutta / peer)")
    print(
        table(
            ["output times", "kutta", "torchdiffeq", "torchode", "kutta / torchdiffeq"],
            [
                [
                    r["outputs"],
                    r["kutta"] * 1e3,
                    r["torchdiffeq"] * 1e3,
                    r["torchode"] * 1e3,
                    ratio(r["kutta"], r["torchdiffeq"]),
                ]
                for r in rows
            ],
        )
    )


def report(result: dict) -> list[tuple[str, bool]]:
    """Print one configuration's table; returns the issue's targets checked on it."""
    batch, rows = result["batch"], {r["library"]: r for r in result["rows"]}
    label = "grad enabled (forward only)" if result["grad"] else "torch.no_grad() (inference)"
    print(
        f"\n### batch {batch}, {label}: one bare field call = "
        f"{result['bare_call_s'] * 1e6:.1f} us wall, {result['bare_call_cpu_s'] * 1e6:.1f} us cpu"
    )
    ref = "scipy RK45" if "scipy RK45" in rows else "torchdiffeq"
    k = rows["kutta"]
    print(
        table(
            [
                "library",
                "wall [ms]",
                "cpu [ms]",
                "NFE",
                "overhead",
                "overhead (cpu)",
                "solver's own cpu us / NFE",
                "kutta wall / this",
                f"max abs diff vs {ref}",
            ],
            [
                [
                    name,
                    r["wall_s"] * 1e3,
                    r["cpu_s"] * 1e3,
                    r["nfe"],
                    r["overhead"],
                    r["overhead_cpu"],
                    r["own_us_per_nfe"],
                    ratio(k["wall_s"], r["wall_s"]),
                    fmt(r["max_abs_diff"], 2),
                ]
                for name, r in rows.items()
            ],
        )
    )
    checks = []
    for name in ("kutta", COMPILED):
        if name not in rows:
            continue
        k = rows[name]
        if batch in TARGETS:
            checks.append(
                (
                    f"batch {batch}, {label}: {name} overhead {k['overhead']:.2f} "
                    f"<= {TARGETS[batch]} (cpu-time overhead {k['overhead_cpu']:.2f})",
                    k["overhead"] <= TARGETS[batch],
                )
            )
        if batch == 16:
            r = ratio(k["wall_s"], rows["torchdiffeq"]["wall_s"])
            r_cpu = ratio(k["cpu_s"], rows["torchdiffeq"]["cpu_s"])
            checks.append(
                (
                    f"batch 16, {label}: {name} wall / torchdiffeq wall {r:.2f} "
                    f"<= {WALL_TARGET_VS_TORCHDIFFEQ} (cpu-time ratio {r_cpu:.2f})",
                    r <= WALL_TARGET_VS_TORCHDIFFEQ,
                )
            )
    return checks


def main(argv: list[str] | None = None) -> dict:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=None)
    args = parser.parse_args(argv)
    if args.quick:
        batches, repeats, t_end, rtol, atol = (
            args.batches or [4],
            args.repeats or 1,
            1.0,
            1e-3,
            1e-5,
        )
    else:
        batches, repeats, t_end, rtol, atol = (
            args.batches or [16, 1024],
            args.repeats or 15,
            10.0,
            RTOL,
            ATOL,
        )
    print(
        f"## ODE overhead: MLP 2-64-2 tanh, dopri5, rtol {rtol:g}, atol {atol:g}, t in [0, {t_end:g}]"
    )
    print(f"medians of {repeats} interleaved repeats; overhead = wall / (NFE x bare call)")
    print_machine_notes()
    results, checks = [], []
    for grad in (False, True):
        for batch in batches:
            result = measure(batch, grad, repeats, t_end, rtol, atol, compiled=not args.quick)
            results.append(result)
            checks += report(result)
    grid_rows = measure_output_grid(
        [5] if args.quick else [2, 100, 1000], repeats, t_end, rtol, atol
    )
    report_output_grid(grid_rows)
    if not args.quick:
        print("\n### issue 2 targets")
        for text, ok in checks:
            print(f"- {'HOLDS' if ok else 'MISSED'}: {text}")
    out = {
        "results": results,
        "output_grid": grid_rows,
        "targets": [{"check": c, "holds": ok} for c, ok in checks],
    }
    write_json(args.json, out)
    return out


if __name__ == "__main__":
    main()
