"""Per-sample stepping: 256 Van der Pol oscillators with mu spread over [0.1, 10] (issue 2).

    x' = v,  v' = mu (1 - x^2) v - x,  (x, v)(0) = (2, 0),  t in [0, T] (T = 10),  float64,
    dopri5, rtol 1e-6, atol 1e-8, outputs at 11 evenly spaced times.

mu = linspace(0.1, 10, 256) is carried in the state (mu' = 0), because kutta's per-sample mode
drops finished samples from the batch it hands to the vector field, so per-sample parameters must
travel with the state. Every library gets the same 3-component state and the same counting field.

Compared: kutta.solve(batch_mode="per_sample") with the I- and PI-controllers against torchode
(its per-sample solver: ``AutoDiffAdjoint(Dopri5, IntegralController | PIDController)``), with the
same gains; and, for reference, the shared-step solvers (kutta "shared", torchdiffeq), where the
stiffest sample sets every sample's step. Reported: NFE per sample (mean / max), batched field
calls, wall and CPU time (medians of interleaved repeats), and the max error at T against scipy's
DOP853 at rtol = atol = 1e-12. Also checks that a sample's result does not depend on its batch.

    .venv/bin/python benchmarks/bench_per_sample.py            # full run (about a minute)
    .venv/bin/python benchmarks/bench_per_sample.py --quick    # smoke test (seconds)
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import (  # noqa: E402
    CountingField,
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
PI_GAINS = {"pcoeff": 0.2, "icoeff": 0.65}  # kutta.PIController's defaults (Hairer's dopri5 PI)


def van_der_pol(t, y):
    """Van der Pol with mu as the state's third component; works on any batch of rows."""
    x, v, mu = y.unbind(-1)
    return torch.stack([v, mu * (1 - x * x) * v - x, torch.zeros_like(mu)], dim=-1)


def initial_states(batch: int, mu_max: float) -> torch.Tensor:
    mu = torch.linspace(0.1, mu_max, batch, dtype=torch.float64)
    return torch.stack([torch.full_like(mu, 2.0), torch.zeros_like(mu), mu], dim=-1)


def reference(y0: torch.Tensor, t_end: float) -> np.ndarray:
    """y(t_end) of every sample from one vectorized DOP853 solve at rtol = atol = 1e-12."""
    batch = y0.shape[0]

    def f(t, y):
        return van_der_pol(t, torch.from_numpy(y).view(batch, 3)).numpy().reshape(-1)

    sol = scipy.integrate.solve_ivp(
        f, (0.0, t_end), y0.numpy().reshape(-1), method="DOP853", rtol=1e-12, atol=1e-12
    )
    if sol.status != 0:
        raise RuntimeError(f"reference solve failed: {sol.message}")
    return sol.y[:, -1].reshape(batch, 3)


def make_solvers(field, y0: torch.Tensor, t_eval: torch.Tensor) -> dict:
    """Zero-argument solves returning ``(y at t_eval[-1] (B, 3), stats)`` where ``stats`` holds
    per-sample ``nfe`` and ``steps`` (attempted steps) as ``(B,)`` tensors, or is None."""
    batch = y0.shape[0]

    def kutta_solve(batch_mode: str, controller) -> tuple:
        sol = kutta.solve(
            field, y0, t_eval, method=kutta.Dopri5(), controller=controller, batch_mode=batch_mode
        )
        per_sample = {}
        for key, name in (("nfe", "nfe"), ("steps", "n_steps")):
            value = torch.as_tensor(sol.stats[name])
            per_sample[key] = value if value.dim() == 1 else value.expand(batch)
        return sol.ys[-1], per_sample

    def torchode_solve(controller_cls, **gains) -> tuple:
        term = torchode.ODETerm(field)
        solver = torchode.AutoDiffAdjoint(
            torchode.Dopri5(term=term), controller_cls(atol=ATOL, rtol=RTOL, term=term, **gains)
        )
        problem = torchode.InitialValueProblem(y0=y0, t_eval=t_eval.expand(batch, -1))

        def run():
            sol = solver.solve(problem)
            if bool((sol.status != 0).any()):
                raise RuntimeError(f"torchode failed: status {sol.status.unique().tolist()}")
            return sol.ys[:, -1], {"nfe": sol.stats["n_f_evals"], "steps": sol.stats["n_steps"]}

        return run

    def torchdiffeq_solve() -> tuple:
        y = torchdiffeq.odeint(field, y0, t_eval, rtol=RTOL, atol=ATOL, method="dopri5")
        return y[-1], None

    return {
        "kutta per_sample I": lambda: kutta_solve("per_sample", kutta.IController(RTOL, ATOL)),
        "kutta per_sample PI": lambda: kutta_solve(
            "per_sample", kutta.PIDController(rtol=RTOL, atol=ATOL, **PI_GAINS)
        ),
        "torchode I": torchode_solve(torchode.IntegralController),
        "torchode PI": torchode_solve(torchode.PIDController, dcoeff=0.0, **PI_GAINS),
        "kutta shared I": lambda: kutta_solve("shared", kutta.IController(RTOL, ATOL)),
        "torchdiffeq shared I": torchdiffeq_solve,
    }


def batch_independence(y0: torch.Tensor, t_eval: torch.Tensor) -> float:
    """Max difference between samples solved alone and the same samples inside the batch."""
    controller = kutta.PIDController(rtol=RTOL, atol=ATOL, **PI_GAINS)
    together = kutta.solve(
        van_der_pol,
        y0,
        t_eval,
        method=kutta.Dopri5(),
        controller=controller,
        batch_mode="per_sample",
    ).ys
    gap = 0.0
    for i in (0, y0.shape[0] // 2, y0.shape[0] - 1):
        alone = kutta.solve(
            van_der_pol,
            y0[i : i + 1],
            t_eval,
            method=kutta.Dopri5(),
            controller=controller,
            batch_mode="per_sample",
        ).ys
        gap = max(gap, float((alone[:, 0] - together[:, i]).abs().max()))
    return gap


def main(argv: list[str] | None = None) -> dict:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        batch, mu_max, t_end, repeats = args.batch or 4, 2.0, 1.0, args.repeats or 1
    else:
        batch, mu_max, t_end, repeats = args.batch or 256, 10.0, 10.0, args.repeats or 5
    y0 = initial_states(batch, mu_max)
    t_eval = torch.linspace(0.0, t_end, 11, dtype=torch.float64)
    print(
        f"## per-sample stepping: {batch} Van der Pol, mu in [0.1, {mu_max:g}], t in [0, {t_end:g}],"
        f" dopri5, rtol {RTOL:g}, atol {ATOL:g}, float64"
    )
    print_machine_notes()
    ref = reference(y0, t_end)
    field = CountingField(van_der_pol)
    with torch.no_grad():
        # Time with the bare field; count batched calls in separate runs through the wrapper.
        timings = time_interleaved(make_solvers(van_der_pol, y0, t_eval), repeats, warmup=1)
        rows = []
        for name, run in make_solvers(field, y0, t_eval).items():
            field.calls = 0
            y_end, stats = run()
            calls = field.calls
            nfe = torch.full((batch,), calls) if stats is None else stats["nfe"]
            steps = None if stats is None else stats["steps"]
            rows.append(
                {
                    "solver": name,
                    "nfe_mean": float(nfe.double().mean()),
                    "nfe_max": int(nfe.max()),
                    "nfe_min": int(nfe.min()),
                    "steps_mean": None if steps is None else float(steps.double().mean()),
                    "steps_max": None if steps is None else int(steps.max()),
                    "field_calls": calls,
                    "wall_s": timings[name].wall,
                    "cpu_s": timings[name].cpu,
                    "max_error": float(np.abs(y_end.numpy() - ref).max()),
                }
            )
        gap = batch_independence(y0, t_eval)
    base = {r["solver"]: r for r in rows}["torchode I"]
    print(f"\nmedians of {repeats} interleaved repeats")
    print(
        table(
            [
                "solver",
                "NFE/sample mean",
                "NFE/sample max",
                "NFE/sample min",
                "steps/sample mean",
                "steps/sample max",
                "batched field calls",
                "wall [ms]",
                "cpu [ms]",
                "wall / torchode I",
                "max error at T",
            ],
            [
                [
                    r["solver"],
                    r["nfe_mean"],
                    r["nfe_max"],
                    r["nfe_min"],
                    r["steps_mean"],
                    r["steps_max"],
                    r["field_calls"],
                    r["wall_s"] * 1e3,
                    r["cpu_s"] * 1e3,
                    ratio(r["wall_s"], base["wall_s"]),
                    fmt(r["max_error"], 2),
                ]
                for r in rows
            ],
        )
    )
    print(
        f"\nbatch independence (kutta per_sample, 3 samples alone vs in the batch): max diff {gap:.1e}"
    )
    out = {"rows": rows, "batch_independence_max_diff": gap}
    write_json(args.json, out)
    return out


if __name__ == "__main__":
    main()
