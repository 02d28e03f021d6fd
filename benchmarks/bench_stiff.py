"""Stiff problems: kutta's implicit methods against scipy's Radau, BDF and LSODA (issue 4).

Part ``problems``: ROBER (to t = 1e11), HIRES, OREGO and VDPOL (mu = 1000) from the IVP Test Set
(Mazzia et al., Bari, release 2.3; reference solutions in ../shared/reference/stiff_problems.md),
all at rtol = 1e-8 with per-component atol = min(1e-10, 1e-10 * |y_ref|) (ROBER's y1 and y2
end near 2e-8 and 8e-14, so a flat atol would leave them uncontrolled). float64, one thread.
Reported per problem and solver: significant correct digits (scd = -log10 max relative error at
the end point), NFE, Jacobian evaluations, LU factorizations, steps, wall and CPU time (medians
of round-robin repeats), CPU time per step, and CPU time relative to scipy's BDF (issue 4's
target: kutta's fastest method at most 1). scipy gets a numpy vector field and its own finite-difference
Jacobians; kutta gets a torch vector field and autograd Jacobians (kutta's NFE include the one
evaluation each autograd Jacobian makes; scipy's include its finite-difference evaluations).
Rosenbrock methods are told the problems are autonomous (``autonomous=True``), which spares them
the two evaluations per step that differencing ``f`` in ``t`` costs; the other methods never
need ``df/dt``.

``kutta bdf compile`` is ``bdf`` with ``options={"compile": True}``: each step (prediction, Newton
with the field inlined, error estimates, order and step choice), each Jacobian and each
factorization is a ``torch.compile``-d graph. ``kutta rodas5 compile`` is ``rodas5`` with
``options={"compile": True}``: each step (Jacobian, factorization, the eight stages, error
estimate and error norm) is one graph. Their times are warm (the graphs compiled before
timing); the "first solve" column is the wall time of its first solve, compilation included,
with an empty inductor cache (a fresh temporary ``TORCHINDUCTOR_CACHE_DIR`` per run, so that
the number does not depend on earlier runs; ``--reuse-compile-cache`` keeps torch's default).

Part ``batch``: 128 Robertson problems, each rate constant scaled by a factor drawn log-uniformly
from [0.5, 2] (seeded), to t = 1e5 at rtol = 1e-6, atol = (1e-10, 1e-14, 1e-10): one
``kutta.solve(batch_mode="per_sample")`` against a Python loop of scipy Radau solves. Every
sample is checked against scipy's Radau at rtol = 1e-10, atol = (1e-14, 1e-18, 1e-14).

    .venv/bin/python benchmarks/bench_stiff.py                 # full run (several minutes)
    .venv/bin/python benchmarks/bench_stiff.py --part batch    # one part
    .venv/bin/python benchmarks/bench_stiff.py --quick         # smoke test (seconds, no compile)
"""

from __future__ import annotations

import atexit
import functools
import math
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import (  # noqa: E402
    base_parser,
    pin_one_thread,
    print_machine_notes,
    table,
    time_interleaved,
    write_json,
)

pin_one_thread()

import numpy as np  # noqa: E402
import scipy.integrate  # noqa: E402
import torch  # noqa: E402

import kutta  # noqa: E402
from kutta.controllers import PIController  # noqa: E402
from kutta.solvers.implicit import IMPLICIT_METHODS  # noqa: E402

RTOL = 1e-8
KUTTA_METHODS = ("rodas5", "kvaerno5", "bdf", "bdf compile", "rodas5 compile")
SCIPY_METHODS = ("Radau", "BDF", "LSODA")


def rober_torch(t, y):
    y1, y2, y3 = y.unbind(-1)
    return torch.stack(
        [-0.04 * y1 + 1e4 * y2 * y3, 0.04 * y1 - 1e4 * y2 * y3 - 3e7 * y2**2, 3e7 * y2**2], -1
    )


def rober_np(t, y):
    y1, y2, y3 = y
    return [-0.04 * y1 + 1e4 * y2 * y3, 0.04 * y1 - 1e4 * y2 * y3 - 3e7 * y2**2, 3e7 * y2**2]


def hires_torch(t, y):
    y1, y2, y3, y4, y5, y6, y7, y8 = y.unbind(-1)
    return torch.stack(_hires(y1, y2, y3, y4, y5, y6, y7, y8), -1)


def hires_np(t, y):
    return _hires(*y)


def _hires(y1, y2, y3, y4, y5, y6, y7, y8):
    return [
        -1.71 * y1 + 0.43 * y2 + 8.32 * y3 + 0.0007,
        1.71 * y1 - 8.75 * y2,
        -10.03 * y3 + 0.43 * y4 + 0.035 * y5,
        8.32 * y2 + 1.71 * y3 - 1.12 * y4,
        -1.745 * y5 + 0.43 * y6 + 0.43 * y7,
        -280 * y6 * y8 + 0.69 * y4 + 1.71 * y5 - 0.43 * y6 + 0.69 * y7,
        280 * y6 * y8 - 1.81 * y7,
        -280 * y6 * y8 + 1.81 * y7,
    ]


def _orego(y1, y2, y3):
    return [
        77.27 * (y2 + y1 * (1 - 8.375e-6 * y1 - y2)),
        (y3 - (1 + y1) * y2) / 77.27,
        0.161 * (y1 - y3),
    ]


def orego_torch(t, y):
    return torch.stack(_orego(*y.unbind(-1)), -1)


def orego_np(t, y):
    return _orego(*y)


def vdpol_torch(t, y):
    y1, y2 = y.unbind(-1)
    return torch.stack([y2, 1000 * (1 - y1**2) * y2 - y1], -1)


def vdpol_np(t, y):
    return [y[1], 1000 * (1 - y[0] ** 2) * y[1] - y[0]]


# name: (torch field, numpy field, y0, t_end, reference y(t_end)), IVP Test Set release 2.3.
PROBLEMS = {
    "ROBER": (
        rober_torch,
        rober_np,
        [1.0, 0.0, 0.0],
        1e11,
        [2.083340149701255e-8, 8.333360770334713e-14, 0.9999999791665050],
    ),
    "HIRES": (
        hires_torch,
        hires_np,
        [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0057],
        321.8122,
        [
            7.371312573325668e-4,
            1.442485726316185e-4,
            5.888729740967575e-5,
            1.175651343283149e-3,
            2.386356198831331e-3,
            6.238968252742796e-3,
            2.849998395185769e-3,
            2.850001604814231e-3,
        ],
    ),
    "OREGO": (
        orego_torch,
        orego_np,
        [1.0, 2.0, 3.0],
        360.0,
        [1.000814870318523, 1228.178521549917, 132.0554942846706],
    ),
    "VDPOL": (
        vdpol_torch,
        vdpol_np,
        [2.0, 0.0],
        2000.0,
        [1.706167732170469, -8.928097010248125e-4],
    ),
}


def scd(y: np.ndarray, ref: np.ndarray) -> float:
    return float(-np.log10(np.max(np.abs((y - ref) / ref))))


def problem_atol(ref: np.ndarray) -> np.ndarray:
    return np.minimum(np.abs(ref) * 1e-10, 1e-10)


def kutta_method(method: str):
    """The method with what a user knows of these problems: they are autonomous, so a Rosenbrock
    method need not difference ``f`` in ``t`` (two evaluations per step)."""
    name, _, compiled = method.partition(" ")
    options = {"compile": True} if compiled == "compile" else {}
    if name in ("rodas5", "rosenbrock23"):
        options["autonomous"] = True
    return IMPLICIT_METHODS[name](**options)


def kutta_run(method: str, f, y0, t_end: float, atol: np.ndarray):
    m = kutta_method(method)
    with torch.no_grad():
        sol = kutta.solve(
            f,
            torch.tensor(y0, dtype=torch.float64),
            span=(0.0, t_end),
            method=m,
            controller=PIController(rtol=RTOL, atol=torch.tensor(atol)),
            max_steps=200_000,
        )
    return sol.ys[-1].numpy(), {
        "nfe": int(sol.stats["nfe"]),
        "n_jac": m.stats["n_jac"],
        "n_lu": m.stats["n_lu"],
        "steps": int(sol.stats["n_steps"]),
    }


def scipy_run(method: str, f, y0, t_end: float, atol: np.ndarray):
    sol = scipy.integrate.solve_ivp(f, (0.0, t_end), y0, method=method, rtol=RTOL, atol=atol)
    return sol.y[:, -1], {
        "nfe": sol.nfev,
        "n_jac": sol.njev,
        "n_lu": sol.nlu,
        "steps": sol.t.size - 1,
    }


def _record(results: dict, label: str, runner, *args) -> None:
    results[label] = runner(*args)


def part_problems(names, repeats: int, kutta_methods=KUTTA_METHODS) -> list[dict]:
    rows = []
    for name in names:
        f_torch, f_np, y0, t_end, ref = PROBLEMS[name]
        ref = np.array(ref)
        atol = problem_atol(ref)
        runs = {f"kutta {m}": (kutta_run, m, f_torch) for m in kutta_methods}
        runs |= {f"scipy {m}": (scipy_run, m, f_np) for m in SCIPY_METHODS}
        results: dict = {}
        fns = {
            label: functools.partial(_record, results, label, runner, method, f, y0, t_end, atol)
            for label, (runner, method, f) in runs.items()
        }
        first_solve = {}
        for label in fns:
            if label.endswith("compile"):  # compiles this field's graphs: not timed below
                start = time.perf_counter()
                fns[label]()
                first_solve[label] = time.perf_counter() - start
        timings = time_interleaved(fns, repeats, warmup=0)
        for label in runs:
            y_end, counts = results[label]
            rows.append(
                {
                    "problem": name,
                    "solver": label,
                    "scd": scd(y_end, ref),
                    **counts,
                    "wall_s": timings[label].wall,
                    "cpu_s": timings[label].cpu,
                    "cpu_us_per_step": 1e6 * timings[label].cpu / max(counts["steps"], 1),
                    "cpu_vs_scipy_bdf": timings[label].cpu / timings["scipy BDF"].cpu,
                    "first_solve_wall_s": first_solve.get(label, math.nan),
                }
            )
    return rows


def robertson_rates(batch: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    factors = np.exp(rng.uniform(np.log(0.5), np.log(2.0), size=(batch, 3)))
    return np.array([0.04, 1e4, 3e7]) * factors


def robertson_batch_torch(t, y):
    """Robertson kinetics with the rate constants carried as constant state components: the
    per-sample loop drops finished samples, so per-sample parameters travel with the state."""
    y1, y2, y3, k1, k2, k3 = y.unbind(-1)
    flux = k1 * y1 - k2 * y2 * y3
    zero = torch.zeros_like(k1)
    return torch.stack([-flux, flux - k3 * y2**2, k3 * y2**2, zero, zero, zero], -1)


def scipy_robertson(k: np.ndarray, t_end: float, rtol: float, atol) -> np.ndarray:
    def f(t, y):
        flux = k[0] * y[0] - k[1] * y[1] * y[2]
        return [-flux, flux - k[2] * y[1] ** 2, k[2] * y[1] ** 2]

    sol = scipy.integrate.solve_ivp(
        f, (0.0, t_end), [1.0, 0.0, 0.0], method="Radau", rtol=rtol, atol=atol
    )
    return sol.y[:, -1]


def part_batch(batch: int, t_end: float, repeats: int, method: str = "rodas5") -> dict:
    rates = robertson_rates(batch)
    rtol, atol = 1e-6, np.array([1e-10, 1e-14, 1e-10])
    reference = np.stack([scipy_robertson(k, t_end, 1e-10, [1e-14, 1e-18, 1e-14]) for k in rates])
    y0 = torch.cat(
        [
            torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64).repeat(batch, 1),
            torch.tensor(rates),
        ],
        1,
    )
    kutta_atol = torch.tensor([*atol, 1.0, 1.0, 1.0], dtype=torch.float64)
    out = {}

    def kutta_batch():
        with torch.no_grad():
            sol = kutta.solve(
                robertson_batch_torch,
                y0,
                span=(0.0, t_end),
                method=kutta_method(method),
                controller=PIController(rtol=rtol, atol=kutta_atol),
                batch_mode="per_sample",
                max_steps=200_000,
            )
        out["kutta"] = sol.ys[-1, :, :3].numpy()
        out["kutta_steps"] = sol.stats["n_steps"]

    def scipy_loop():
        out["scipy"] = np.stack([scipy_robertson(k, t_end, rtol, atol) for k in rates])

    timings = time_interleaved({"kutta": kutta_batch, "scipy": scipy_loop}, repeats, warmup=0)
    rel = {
        key: float(np.max(np.abs(out[key] - reference) / np.abs(reference)))
        for key in ("kutta", "scipy")
    }
    return {
        "batch": batch,
        "t_end": t_end,
        "method": method,
        "kutta_wall_s": timings["kutta"].wall,
        "kutta_cpu_s": timings["kutta"].cpu,
        "scipy_wall_s": timings["scipy"].wall,
        "scipy_cpu_s": timings["scipy"].cpu,
        "speedup_wall": timings["scipy"].wall / timings["kutta"].wall,
        "speedup_cpu": timings["scipy"].cpu / timings["kutta"].cpu,
        "kutta_max_rel_err": rel["kutta"],
        "scipy_max_rel_err": rel["scipy"],
        "kutta_steps_max": int(out["kutta_steps"].max()),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("problems", "batch", "all"), default="all")
    parser.add_argument(
        "--reuse-compile-cache",
        action="store_true",
        help="use torch's inductor cache (first solves then time cache loads, not compiles)",
    )
    args = parser.parse_args(argv)
    if not args.reuse_compile_cache:
        cache = tempfile.mkdtemp(prefix="bench_stiff_inductor_")
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache
        atexit.register(shutil.rmtree, cache, ignore_errors=True)
    repeats = args.repeats or (1 if args.quick else 3)
    print_machine_notes()
    results: dict = {}
    if args.part in ("problems", "all"):
        names = ["ROBER"] if args.quick else list(PROBLEMS)
        if args.quick:  # a short ROBER: the same code paths in seconds
            f_torch, f_np, y0, _, _ = PROBLEMS["ROBER"]
            ref = scipy.integrate.solve_ivp(
                f_np, (0.0, 40.0), y0, method="Radau", rtol=1e-12, atol=[1e-16, 1e-20, 1e-16]
            ).y[:, -1]
            PROBLEMS["ROBER"] = (f_torch, f_np, y0, 40.0, list(ref))
        # --quick is a smoke test in seconds: no compilation (tests/solvers/implicit cover it)
        methods = [m for m in KUTTA_METHODS if not (args.quick and m.endswith("compile"))]
        rows = part_problems(names, repeats, methods)
        results["problems"] = rows
        print(f"\nIVP Test Set problems at rtol {RTOL:g} (medians of {repeats} interleaved runs)")
        headers = ["problem", "solver", "scd", "NFE", "Jac", "LU", "steps", "wall [s]", "cpu [s]"]
        headers += ["cpu/step [us]", "cpu / scipy BDF", "first solve [s]"]
        print(
            table(
                headers,
                [
                    [
                        r["problem"],
                        r["solver"],
                        r["scd"],
                        r["nfe"],
                        r["n_jac"],
                        r["n_lu"],
                        r["steps"],
                        r["wall_s"],
                        r["cpu_s"],
                        r["cpu_us_per_step"],
                        r["cpu_vs_scipy_bdf"],
                        r["first_solve_wall_s"],
                    ]
                    for r in rows
                ],
            )
        )
    if args.part in ("batch", "all"):
        batch, t_end = (8, 1e2) if args.quick else (128, 1e5)
        res = part_batch(batch, t_end, repeats)
        results["batch"] = res
        print(f"\n{batch} Robertson problems, per-sample {res['method']} vs a loop of scipy Radau")
        print(
            table(
                ["", "kutta per_sample", "scipy Radau loop", "speedup"],
                [
                    ["wall [s]", res["kutta_wall_s"], res["scipy_wall_s"], res["speedup_wall"]],
                    ["cpu [s]", res["kutta_cpu_s"], res["scipy_cpu_s"], res["speedup_cpu"]],
                    [
                        "max rel. error vs tight Radau",
                        res["kutta_max_rel_err"],
                        res["scipy_max_rel_err"],
                        math.nan,
                    ],
                ],
            )
        )
    write_json(args.json, results)
    return results


if __name__ == "__main__":
    main()
