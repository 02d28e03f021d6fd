"""Work-precision and step-size control on DETEST problems (Hull, Enright, Fellen, Sedgwick 1972).

Problems (all on t in [0, 20], float64):

- A2: y' = -y^3 / 2, y(0) = 1; exact y = 1 / sqrt(1 + t).
- B5: Euler's rigid body without external forces: y1' = y2 y3, y2' = -y1 y3, y3' = -0.51 y1 y2,
  y(0) = (0, 1, 1).
- D5: the two-body orbit with eccentricity 0.9: x'' = -x / r^3, y'' = -y / r^3,
  (x, y, x', y')(0) = (0.1, 0, 0, sqrt(19)); exact from Kepler's equation u - e sin u = t.

The reference y(20) of every problem is scipy's DOP853 at rtol = atol = 1e-13 (float64); for A2 and
D5 it is checked against the exact solution. The error reported is max |y(20) - reference|.

Part 1 (work-precision): kutta's dopri5, tsit5, dopri8 (through ``kutta.odeint``) against
torchdiffeq (dopri5, dopri8; it has no tsit5), torchode (Dopri5, Tsit5, integral controller) and
scipy's solve_ivp (RK45, DOP853) at rtol = atol = tol: error vs NFE and vs wall time. Every library
calls the same torch vector field through one counting module (scipy through a numpy wrapper).

Part 2 (step-size control): attempted steps (accepted + rejected) of kutta's default controller,
its I-controller (pcoeff 0, icoeff 1) and PI-controller (pcoeff 0.2, icoeff 0.65), against
torchdiffeq's I-controller and torchode's. Issue 2 requires kutta's default to take no more steps
than torchdiffeq's on these problems.

    .venv/bin/python benchmarks/bench_detest.py            # full run (a few minutes)
    .venv/bin/python benchmarks/bench_detest.py --quick    # smoke test (seconds)
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import sys
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import (  # noqa: E402
    CountingField,
    base_parser,
    fmt,
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
import torchdiffeq  # noqa: E402
import torchode  # noqa: E402

import kutta  # noqa: E402
import kutta.controllers  # noqa: E402

T_END = 20.0
D5_ECCENTRICITY = 0.9


def _a2(t, y):
    return -0.5 * y**3


def _b5(t, y):
    y1, y2, y3 = y.unbind(-1)
    return torch.stack([y2 * y3, -y1 * y3, -0.51 * y1 * y2], dim=-1)


def _d5(t, y):
    x, yy, vx, vy = y.unbind(-1)
    r3 = (x * x + yy * yy) ** 1.5
    return torch.stack([vx, vy, -x / r3, -yy / r3], dim=-1)


def _kepler_orbit(t: float, e: float) -> np.ndarray:
    """Exact D-class state at ``t`` (unit semi-major axis and mean motion)."""
    u = t if e < 0.8 else math.pi
    for _ in range(100):  # Newton on u - e sin u - t = 0
        du = (u - e * math.sin(u) - t) / (1 - e * math.cos(u))
        u -= du
        if abs(du) < 1e-16:
            break
    rate = 1.0 / (1 - e * math.cos(u))
    s = math.sqrt(1 - e * e)
    return np.array([math.cos(u) - e, s * math.sin(u), -math.sin(u) * rate, s * math.cos(u) * rate])


@dataclasses.dataclass
class Detest:
    name: str
    field: Callable
    y0: tuple[float, ...]
    exact: Callable[[float], np.ndarray] | None = None


PROBLEMS = [
    Detest("A2", _a2, (1.0,), lambda t: np.array([1.0 / math.sqrt(1.0 + t)])),
    Detest("B5", _b5, (0.0, 1.0, 1.0)),
    Detest(
        "D5",
        _d5,
        (1 - D5_ECCENTRICITY, 0.0, 0.0, math.sqrt((1 + D5_ECCENTRICITY) / (1 - D5_ECCENTRICITY))),
        lambda t: _kepler_orbit(t, D5_ECCENTRICITY),
    ),
]


def _numpy_field(field: Callable) -> Callable:
    def f(t, y):
        with torch.no_grad():
            return field(t, torch.from_numpy(y)).numpy()

    return f


def reference(problem: Detest, t_end: float) -> np.ndarray:
    sol = scipy.integrate.solve_ivp(
        _numpy_field(problem.field),
        (0.0, t_end),
        np.array(problem.y0),
        method="DOP853",
        rtol=1e-13,
        atol=1e-13,
    )
    if sol.status != 0:
        raise RuntimeError(f"reference solve of {problem.name} failed: {sol.message}")
    return sol.y[:, -1]


class StepCountingField(CountingField):
    """Counts calls, and (through torchdiffeq's callbacks) accepted and rejected steps."""

    def __init__(self, field):
        super().__init__(field)
        self.accepted = self.rejected = 0

    def reset(self) -> None:
        self.calls = self.accepted = self.rejected = 0

    def callback_accept_step(self, t0, y0, dt):
        self.accepted += 1

    def callback_reject_step(self, t0, y0, dt):
        self.rejected += 1


@contextlib.contextmanager
def counting_kutta_steps(counts: dict):
    """Counts kutta's accepted/rejected steps by wrapping its controller's ``adapt`` (benchmark
    instrumentation only; kutta's ``odeint`` returns no statistics)."""
    original = kutta.controllers.PIDController.adapt

    def adapt(self, scale, h, state):
        accept, h_next, new_state = original(self, scale, h, state)
        n_accept = int(torch.as_tensor(accept).sum())
        counts["accepted"] += n_accept
        counts["rejected"] += torch.as_tensor(accept).numel() - n_accept
        return accept, h_next, new_state

    kutta.controllers.PIDController.adapt = adapt
    try:
        yield counts
    finally:
        kutta.controllers.PIDController.adapt = original


def make_solver(
    t_end: float,
    library: str,
    method: str,
    field: Callable,
    y0: torch.Tensor,
    tol: float,
    options: dict | None = None,
) -> Callable[[], np.ndarray]:
    """A zero-argument solve returning y(t_end) as numpy.

    With a :class:`StepCountingField`, attempted steps land in ``run.steps``; with a plain field
    nothing is counted (for timing, so that no library pays for the instrumentation)."""
    t = torch.tensor([0.0, t_end], dtype=torch.float64)
    counting = isinstance(field, StepCountingField)
    if library == "kutta":

        def run():
            counts = {"accepted": 0, "rejected": 0}
            with counting_kutta_steps(counts) if counting else contextlib.nullcontext():
                y = kutta.odeint(field, y0, t, rtol=tol, atol=tol, method=method, options=options)
            run.steps = counts if counting else None
            return y[-1].numpy()

    elif library == "torchdiffeq":

        def run():
            if counting:
                field.accepted = field.rejected = 0
            y = torchdiffeq.odeint(field, y0, t, rtol=tol, atol=tol, method=method)
            if counting:
                run.steps = {"accepted": field.accepted, "rejected": field.rejected}
            return y[-1].numpy()

    elif library == "torchode":
        term = torchode.ODETerm(field)
        step = {"dopri5": torchode.Dopri5, "tsit5": torchode.Tsit5}[method](term=term)
        solver = torchode.AutoDiffAdjoint(
            step, torchode.IntegralController(atol=tol, rtol=tol, term=term)
        )
        problem = torchode.InitialValueProblem(y0=y0[None], t_eval=t[None])

        def run():
            sol = solver.solve(problem)
            if int(sol.status[0]) != 0:
                raise RuntimeError(f"torchode {method} failed with status {int(sol.status[0])}")
            n_steps, n_acc = int(sol.stats["n_steps"][0]), int(sol.stats["n_accepted"][0])
            run.steps = {"accepted": n_acc, "rejected": n_steps - n_acc}
            return sol.ys[0, -1].numpy()

    elif library == "scipy":
        f = _numpy_field(field)
        y0_np = y0.numpy()

        def run():
            sol = scipy.integrate.solve_ivp(
                f, (0.0, t_end), y0_np, method=method, rtol=tol, atol=tol
            )
            if sol.status != 0:
                raise RuntimeError(f"scipy {method} failed: {sol.message}")
            run.steps = None  # scipy reports no step counts
            return sol.y[:, -1]

    else:
        raise ValueError(library)
    return run


WORK_PRECISION_SOLVERS = [
    ("dopri5", "kutta", "dopri5"),
    ("dopri5", "torchdiffeq", "dopri5"),
    ("dopri5", "torchode", "dopri5"),
    ("dopri5", "scipy", "RK45"),
    ("tsit5", "kutta", "tsit5"),
    ("tsit5", "torchode", "tsit5"),
    ("dopri8", "kutta", "dopri8"),
    ("dopri8", "torchdiffeq", "dopri8"),
    ("dopri8", "scipy", "DOP853"),
]

# "kutta default" is whatever kutta.odeint does without options; the others are candidates for it.
# (p 0.2, i 0.65) are kutta.PIController's gains, i.e. kutta.solve's default controller.
CONTROLLERS = {
    "kutta default": None,
    "kutta I (p 0, i 1)": {"pcoeff": 0.0, "icoeff": 1.0},
    "kutta PI (p 0.2, i 0.65)": {"pcoeff": 0.2, "icoeff": 0.65},
    "kutta PI (p 0.1, i 0.9)": {"pcoeff": 0.1, "icoeff": 0.9},
    "kutta PI (p 0.2, i 0.8)": {"pcoeff": 0.2, "icoeff": 0.8},
}


def work_precision(
    problem: Detest, ref: np.ndarray, t_end: float, tols, repeats: int
) -> list[dict]:
    rows = []
    y0 = torch.tensor(problem.y0, dtype=torch.float64)
    for tol in tols:
        fields, timed, counted = {}, {}, {}
        for _family, library, method in WORK_PRECISION_SOLVERS:
            key = f"{library} {method}"
            fields[key] = StepCountingField(problem.field)
            timed[key] = make_solver(t_end, library, method, problem.field, y0, tol)
            counted[key] = make_solver(t_end, library, method, fields[key], y0, tol)
        timings = time_interleaved(timed, repeats=repeats, warmup=1)
        for family, library, method in WORK_PRECISION_SOLVERS:
            key = f"{library} {method}"
            fields[key].reset()
            y_end = counted[key]()
            steps = counted[key].steps
            rows.append(
                {
                    "problem": problem.name,
                    "family": family,
                    "library": library,
                    "method": method,
                    "tol": tol,
                    "nfe": fields[key].calls,
                    "steps": None if steps is None else steps["accepted"] + steps["rejected"],
                    "error": float(np.max(np.abs(y_end - ref))),
                    "wall_s": timings[key].wall,
                    "cpu_s": timings[key].cpu,
                }
            )
    return rows


def controller_steps(
    problem: Detest, t_end: float, tols, methods=("dopri5", "dopri8")
) -> list[dict]:
    rows = []
    y0 = torch.tensor(problem.y0, dtype=torch.float64)
    for method in methods:
        for tol in tols:
            row = {"problem": problem.name, "method": method, "tol": tol}
            field = StepCountingField(problem.field)
            run = make_solver(t_end, "torchdiffeq", method, field, y0, tol)
            run()
            row["torchdiffeq I"] = run.steps
            if method in ("dopri5", "tsit5"):
                run = make_solver(t_end, "torchode", method, field, y0, tol)
                run()
                row["torchode I"] = run.steps
            for name, options in CONTROLLERS.items():
                run = make_solver(t_end, "kutta", method, field, y0, tol, options=options)
                run()
                row[name] = run.steps
            rows.append(row)
    return rows


def _steps(s: dict | None) -> str:
    return "-" if s is None else f"{s['accepted'] + s['rejected']} ({s['rejected']} rej)"


def report_work_precision(refs: dict, t_end: float, tols: list[float], repeats: int) -> list[dict]:
    print(f"\n### work-precision (wall = median of {repeats} interleaved repeats)")
    wp_rows = []
    for problem in PROBLEMS:
        rows = work_precision(problem, refs[problem.name], t_end, tols, repeats)
        wp_rows += rows
        print(f"\n#### {problem.name}")
        print(
            table(
                [
                    "family",
                    "library method",
                    "tol",
                    "NFE",
                    "steps",
                    "error",
                    "wall [ms]",
                    "cpu [ms]",
                ],
                [
                    [
                        r["family"],
                        f"{r['library']} {r['method']}",
                        r["tol"],
                        r["nfe"],
                        r["steps"],
                        fmt(r["error"], 2),
                        r["wall_s"] * 1e3,
                        r["cpu_s"] * 1e3,
                    ]
                    for r in sorted(rows, key=lambda r: (r["family"], -r["tol"]))
                ],
            )
        )

    return wp_rows


def report_controllers(
    t_end: float, ctl_tols: list[float]
) -> tuple[list[dict], list[dict], list[dict]]:
    print("\n### step-size control: attempted steps (rejected in parentheses)")
    ctl_rows = []
    verdicts = []
    for problem in PROBLEMS:
        rows = controller_steps(problem, t_end, ctl_tols)
        ctl_rows += rows
        names = ["torchdiffeq I", "torchode I", *CONTROLLERS]
        print(f"\n#### {problem.name}")
        print(
            table(
                ["method", "tol", *names],
                [[r["method"], r["tol"], *(_steps(r.get(n)) for n in names)] for r in rows],
            )
        )
        for method in ("dopri5", "dopri8"):
            mine = [r for r in rows if r["method"] == method]

            def total(name, mine=mine):
                return sum(r[name]["accepted"] + r[name]["rejected"] for r in mine)

            worse = [
                r["tol"]
                for r in mine
                if sum(r["kutta default"].values()) > sum(r["torchdiffeq I"].values())
            ]
            verdicts.append(
                {
                    "problem": problem.name,
                    "method": method,
                    "torchdiffeq": total("torchdiffeq I"),
                    **{name: total(name) for name in CONTROLLERS},
                    "default_worse_at": worse,
                }
            )
    print("\n### totals over all tolerances (issue 2: kutta default <= torchdiffeq)")
    print(
        table(
            ["problem", "method", "torchdiffeq I", *CONTROLLERS, "default > torchdiffeq at tol"],
            [
                [
                    v["problem"],
                    v["method"],
                    v["torchdiffeq"],
                    *(v[n] for n in CONTROLLERS),
                    ", ".join(f"{t:g}" for t in v["default_worse_at"]) or "none",
                ]
                for v in verdicts
            ],
        )
    )
    totals_hold = all(v["kutta default"] <= v["torchdiffeq"] for v in verdicts)
    pointwise_hold = all(not v["default_worse_at"] for v in verdicts)
    print(
        f"- {'HOLDS' if totals_hold else 'MISSED'}: kutta default takes no more steps than "
        "torchdiffeq in total over the tolerances, on every problem and method"
    )
    print(
        f"- {'HOLDS' if pointwise_hold else 'MISSED'}: kutta default takes no more steps than "
        "torchdiffeq at every single problem, method and tolerance"
    )
    print("\n### controller candidates against torchdiffeq's I-controller (all problems, methods)")
    summary = []
    for name in CONTROLLERS:
        points = [sum(r[name].values()) - sum(r["torchdiffeq I"].values()) for r in ctl_rows]
        summary.append(
            {
                "controller": name,
                "total_steps": sum(v[name] for v in verdicts),
                "torchdiffeq_total_steps": sum(v["torchdiffeq"] for v in verdicts),
                "totals_not_above": sum(v[name] <= v["torchdiffeq"] for v in verdicts),
                "n_totals": len(verdicts),
                "points_above": sum(d > 0 for d in points),
                "n_points": len(points),
                "worst_excess": max(points),
            }
        )
    print(
        table(
            [
                "controller",
                "steps, all runs",
                "torchdiffeq steps, all runs",
                "problem/method totals <= torchdiffeq",
                "runs with more steps than torchdiffeq",
                "largest excess (steps)",
            ],
            [
                [
                    c["controller"],
                    c["total_steps"],
                    c["torchdiffeq_total_steps"],
                    f"{c['totals_not_above']} of {c['n_totals']}",
                    f"{c['points_above']} of {c['n_points']}",
                    c["worst_excess"],
                ]
                for c in summary
            ],
        )
    )
    return ctl_rows, verdicts, summary


def plot_work_precision(rows: list[dict], path: str) -> None:
    """Error vs NFE and error vs CPU time, one panel pair per problem, log-log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    problems = sorted({r["problem"] for r in rows})
    fig, axes = plt.subplots(2, len(problems), figsize=(5 * len(problems), 8), squeeze=False)
    styles = {
        "kutta": ("-", "o"),
        "torchdiffeq": ("--", "s"),
        "torchode": (":", "^"),
        "scipy": ("-.", "x"),
    }
    colors = {"dopri5": "C0", "tsit5": "C2", "dopri8": "C3"}
    for col, name in enumerate(problems):
        for _family, library, method in WORK_PRECISION_SOLVERS:
            mine = sorted(
                (
                    r
                    for r in rows
                    if r["problem"] == name and r["library"] == library and r["method"] == method
                ),
                key=lambda r: r["tol"],
            )
            if not mine:
                continue
            err = [max(r["error"], 1e-16) for r in mine]
            ls, marker = styles[library]
            kw = {"ls": ls, "marker": marker, "color": colors[mine[0]["family"]], "mfc": "none"}
            label = f"{library} {method}"
            axes[0, col].loglog([r["nfe"] for r in mine], err, label=label, **kw)
            axes[1, col].loglog([r["cpu_s"] * 1e3 for r in mine], err, label=label, **kw)
        axes[0, col].set_title(f"DETEST {name}")
        axes[0, col].set_xlabel("NFE")
        axes[1, col].set_xlabel("CPU time [ms]")
        for row in range(2):
            axes[row, col].xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            axes[row, col].set_ylabel("max |y(T) - reference|")
            axes[row, col].grid(True, which="both", alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)
    print(f"work-precision plot: {path}")


def main(argv: list[str] | None = None) -> dict:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("all", "work-precision", "controllers"), default="all")
    parser.add_argument("--plot", default=None, help="write a work-precision PNG to this path")
    args = parser.parse_args(argv)
    if args.quick:
        t_end, tols, ctl_tols, repeats = 2.0, [1e-4], [1e-4], args.repeats or 1
    else:
        t_end = T_END
        tols = [1e-4, 1e-6, 1e-8, 1e-10]
        ctl_tols = [1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9, 1e-10, 1e-11]
        repeats = args.repeats or 5
    print(f"## DETEST A2, B5, D5 on [0, {t_end:g}], float64, rtol = atol = tol")
    print_machine_notes()
    refs = {}
    for problem in PROBLEMS:
        refs[problem.name] = reference(problem, t_end)
        if problem.exact is not None:
            gap = float(np.max(np.abs(refs[problem.name] - problem.exact(t_end))))
            print(
                f"reference {problem.name}: DOP853 1e-13 vs exact solution: max abs diff {gap:.1e}"
            )

    wp_rows, ctl_rows, verdicts, summary = [], [], [], []
    if args.part in ("all", "work-precision"):
        wp_rows = report_work_precision(refs, t_end, tols, repeats)
        if args.plot:
            plot_work_precision(wp_rows, args.plot)
    if args.part in ("all", "controllers"):
        ctl_rows, verdicts, summary = report_controllers(t_end, ctl_tols)
    out = {
        "work_precision": wp_rows,
        "controllers": ctl_rows,
        "totals": verdicts,
        "candidates": summary,
    }
    write_json(args.json, out)
    return out


if __name__ == "__main__":
    main()
