"""kutta.sde against torchsde, side by side in one process, one thread.

Workloads (issue 5):
- neural SDE with diagonal noise (MLP drift and diffusion, state 32, batch 256), Euler–Maruyama
  and SRK, dt = 1e-2 on [0, 1]: the solve (no grad) with each library's default Brownian motion,
  and with Brownian intervals given the step as ``dt`` hint (by sdeint, and by ``kutta.solve``
  with an ``SDETerm``); the adjoint gradient (forward + backward, each library's default adjoint
  method);
- 10,000 sequential and 10,000 random queries of a BrownianInterval of shape (256, 32).

Each timing is the median of ``--repeats`` runs, the two libraries alternating. The ratio is of
wall times (the target); in brackets the ratio of this thread's CPU times, which other processes on
a loaded machine disturb less. Also printed: the number of drift/diffusion evaluations (NFE) and
the error at t = 1 against a fine-step (dt = 1e-4) reference solution on the same Brownian path.

Rows marked ``compile=True`` time kutta with ``options={"compile": True}`` (Euler–Maruyama steps,
the stochastic adjoint's backward midpoint steps, reversible Heun's steps each one
``torch.compile``-d graph) after its first call; that first call's wall time, mostly the one-time
compile, is in the notes. Inductor caches compiled kernels on disk, so the first call of a later
process is faster: set ``TORCHINDUCTOR_CACHE_DIR`` to an empty directory for the cold cost.

Run:  .venv/bin/python benchmarks/bench_sde.py [--repeats 5] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torchsde

import kutta
import kutta.sde as ksde
from kutta.terms import SDETerm

STATE, BATCH, HIDDEN = 32, 256, 64


class NeuralSDE(torch.nn.Module):
    """Itô SDE with MLP drift and a positive MLP diagonal diffusion; counts evaluations."""

    noise_type, sde_type = "diagonal", "ito"

    def __init__(self):
        super().__init__()
        self.drift = torch.nn.Sequential(
            torch.nn.Linear(STATE + 1, HIDDEN), torch.nn.Tanh(), torch.nn.Linear(HIDDEN, STATE)
        )
        self.diffusion = torch.nn.Sequential(
            torch.nn.Linear(STATE + 1, HIDDEN),
            torch.nn.Tanh(),
            torch.nn.Linear(HIDDEN, STATE),
            torch.nn.Sigmoid(),
        )
        self.nfe = 0

    def _input(self, t, y):
        return torch.cat([y, t.expand(y.shape[0], 1)], dim=1)

    def f(self, t, y):
        self.nfe += 1
        return self.drift(self._input(t, y))

    def g(self, t, y):
        self.nfe += 1
        return 0.3 * self.diffusion(self._input(t, y))


class Timing(float):
    """A median wall time that also carries the median CPU time of the same runs."""

    cpu: float


def _timed(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.thread_time()
    fn()
    return time.perf_counter() - wall, time.thread_time() - cpu


def _interleaved(fn_kutta, fn_torchsde, repeats):
    runs_k, runs_t = [], []
    for _ in range(repeats):
        runs_k.append(_timed(fn_kutta))
        runs_t.append(_timed(fn_torchsde))
    medians = []
    for runs in (runs_k, runs_t):
        timing = Timing(statistics.median(wall for wall, _ in runs))
        timing.cpu = statistics.median(cpu for _, cpu in runs)
        medians.append(timing)
    return tuple(medians)


def _row(name, t_kutta, t_torchsde, extra=""):
    ratio = t_kutta / t_torchsde
    verdict = "ok" if ratio <= 0.5 else "above target"
    cpu_ratio = f" ({t_kutta.cpu / t_torchsde.cpu:.2f})" if isinstance(t_kutta, Timing) else ""
    print(
        f"| {name} | {t_kutta * 1e3:.1f} ms | {t_torchsde * 1e3:.1f} ms | {ratio:.2f}{cpu_ratio} "
        f"| {verdict} | {extra} |"
    )


def bench_default_brownian(repeats: int) -> None:
    """sdeint with bm=None: each library builds its default Brownian motion (torchsde's gets no dt hint)."""
    torch.manual_seed(0)
    sde = NeuralSDE()
    y0 = torch.full((BATCH, STATE), 0.1)
    ts = torch.tensor([0.0, 1.0])
    for method in ("euler", "srk"):

        def solve(lib, method=method):
            with torch.no_grad():
                return lib.sdeint(sde, y0, ts, method=method, dt=1e-2)

        solve(ksde), solve(torchsde)
        t_k, t_t = _interleaved(lambda: solve(ksde), lambda: solve(torchsde), repeats)
        _row(f"neural SDE solve, {method}, default bm (bm=None)", t_k, t_t)


def bench_neural_sde(repeats: int, methods=("euler", "srk")) -> None:
    torch.manual_seed(0)
    sde = NeuralSDE()
    y0 = torch.full((BATCH, STATE), 0.1)
    ts = torch.tensor([0.0, 1.0])
    for method in methods:
        levy = "space-time" if method == "srk" else "none"

        def make_bms(entropy=0, levy=levy):
            # Both get the step as their `dt` hint (torchsde documents it as a speed-up).
            kwargs = {
                "size": (BATCH, STATE),
                "levy_area_approximation": levy,
                "entropy": entropy,
                "dt": 1e-2,
            }
            return ksde.BrownianInterval(0.0, 1.0, **kwargs), torchsde.BrownianInterval(
                0.0, 1.0, **kwargs
            )

        def solve_kutta(method=method, options=None):
            with torch.no_grad():
                return ksde.sdeint(
                    sde, y0, ts, bm=make_bms()[0], method=method, dt=1e-2, options=options
                )

        def solve_torchsde(method=method):
            with torch.no_grad():
                return torchsde.sdeint(sde, y0, ts, bm=make_bms()[1], method=method, dt=1e-2)

        solve_kutta(), solve_torchsde()  # warm-up
        t_k, t_t = _interleaved(solve_kutta, solve_torchsde, repeats)
        # Error on one Brownian path: the measured solve and the reference share the bm object.
        with torch.no_grad():
            bm_k, bm_t = make_bms()
            sde.nfe = 0
            ys_k = ksde.sdeint(sde, y0, ts, bm=bm_k, method=method, dt=1e-2)
            nfe_k = sde.nfe
            sde.nfe = 0
            ys_t = torchsde.sdeint(sde, y0, ts, bm=bm_t, method=method, dt=1e-2)
            nfe_t = sde.nfe
            ref_k = ksde.sdeint(sde, y0, ts, bm=bm_k, method=method, dt=1e-4)
            ref_t = torchsde.sdeint(sde, y0, ts, bm=bm_t, method=method, dt=1e-4)
        err_k = (ys_k[-1] - ref_k[-1]).abs().mean().item()
        err_t = (ys_t[-1] - ref_t[-1]).abs().mean().item()
        _row(
            f"neural SDE solve, {method}",
            t_k,
            t_torchsde=t_t,
            extra=f"NFE {nfe_k} vs {nfe_t}; mean abs error vs dt=1e-4 reference {err_k:.2e} vs {err_t:.2e}",
        )

        if method in COMPILED_METHODS:
            _compiled_row(
                f"neural SDE solve, {method}, compile=True",
                lambda method=method: solve_kutta(method, COMPILE),
                solve_torchsde,
                repeats,
                lambda m=method, ys=ys_k: (solve_kutta(m, COMPILE) - ys).abs().max().item(),
            )

        def solve_native(method=method, bm=None, options=None):
            # The same solve through kutta.solve: an SDE term in the shared loop.
            term = SDETerm(sde.f, sde.g, noise_type="diagonal", bm=bm or make_bms()[0])
            sde_method = ksde.SDEMethod(method, options=options)
            with torch.no_grad():
                return kutta.solve(term, y0, ts, method=sde_method, step_size=1e-2).ys

        solve_native()
        t_k, t_t = _interleaved(solve_native, solve_torchsde, repeats)
        gap = (solve_native(bm=bm_k) - ys_k).abs().max().item()
        _row(
            f"neural SDE solve through kutta.solve(SDETerm), {method}",
            t_k,
            t_t,
            extra=f"max difference from kutta.sde.sdeint on the same path: {gap:.1e}",
        )

        if method in COMPILED_METHODS:
            _compiled_row(
                f"neural SDE solve through kutta.solve(SDETerm), {method}, compile=True",
                lambda method=method: solve_native(method, options=COMPILE),
                solve_torchsde,
                repeats,
                lambda m=method, bm=bm_k, ys=ys_k: (
                    (solve_native(m, bm=bm, options=COMPILE) - ys).abs().max().item()
                ),
            )

        def grad_kutta(method=method, options=None, adjoint_options=None):
            sde.zero_grad()
            ys = ksde.sdeint_adjoint(
                sde,
                y0,
                ts,
                bm=make_bms()[0],
                method=method,
                dt=1e-2,
                options=options,
                adjoint_options=adjoint_options,
            )
            ys[-1].pow(2).mean().backward()
            return [p.grad.clone() for p in sde.parameters()]

        def grad_torchsde(method=method):
            sde.zero_grad()
            ys = torchsde.sdeint_adjoint(sde, y0, ts, bm=make_bms()[1], method=method, dt=1e-2)
            ys[-1].pow(2).mean().backward()

        grad_kutta(), grad_torchsde()
        t_k, t_t = _interleaved(grad_kutta, grad_torchsde, repeats)
        sde.nfe = 0
        grad_kutta()
        nfe_k = sde.nfe
        sde.nfe = 0
        grad_torchsde()
        nfe_t = sde.nfe
        _row(f"neural SDE adjoint gradient, {method}", t_k, t_t, extra=f"NFE {nfe_k} vs {nfe_t}")
        # Methods without a compiled step still get the compiled backward (midpoint) step.
        options, adjoint_options = (
            (COMPILE, None) if method in COMPILED_METHODS else (None, COMPILE)
        )
        label = "compile=True" if options else "adjoint_options compile=True"

        def gap(method=method, options=options, adjoint_options=adjoint_options):
            eager, compiled = grad_kutta(method), grad_kutta(method, options, adjoint_options)
            return max(
                ((a - b).abs().max() / a.abs().max()).item() for a, b in zip(eager, compiled)
            )

        _compiled_row(
            f"neural SDE adjoint gradient, {method}, {label}",
            lambda method=method, o=options, a=adjoint_options: grad_kutta(method, o, a),
            grad_torchsde,
            repeats,
            gap,
            what="relative gradient difference from eager",
        )


# sdeint methods with a compiled step here (options={"compile": True}; reversible Heun's is
# timed in its adjoint row)
COMPILED_METHODS = ("euler",)
COMPILE = {"compile": True}


def _compiled_row(name, fn_kutta, fn_torchsde, repeats, difference, what=None):
    """A row of the compiled variant: the first call's wall time (mostly the one-time
    torch.compile cost, once per process) is reported apart from the warm medians."""
    start = time.perf_counter()
    fn_kutta()
    first = time.perf_counter() - start
    t_k, t_t = _interleaved(fn_kutta, fn_torchsde, repeats)
    what = what or "max difference from the eager solve on the same path"
    _row(name, t_k, t_t, extra=f"first call (compiles) {first:.1f} s; {what}: {difference():.1e}")


class StratonovichNeuralSDE(NeuralSDE):
    sde_type = "stratonovich"


def bench_reversible_heun(repeats: int) -> None:
    """Stratonovich neural SDE, reversible Heun with its exact adjoint, in both libraries."""
    torch.manual_seed(0)
    sde = StratonovichNeuralSDE()
    y0 = torch.full((BATCH, STATE), 0.1)
    ts = torch.tensor([0.0, 1.0])

    def grad(lib, options=None):
        sde.zero_grad()
        bm = lib.BrownianInterval(0.0, 1.0, size=(BATCH, STATE), entropy=0, dt=1e-2)
        ys = lib.sdeint_adjoint(
            sde,
            y0,
            ts,
            bm=bm,
            method="reversible_heun",
            adjoint_method="adjoint_reversible_heun",
            dt=1e-2,
            options=options,
        )
        ys[-1].pow(2).mean().backward()
        return [p.grad.clone() for p in sde.parameters()]

    grads_k, _ = grad(ksde), grad(torchsde)
    sde.zero_grad()
    bm = ksde.BrownianInterval(0.0, 1.0, size=(BATCH, STATE), entropy=0, dt=1e-2)
    ksde.sdeint(sde, y0, ts, bm=bm, method="reversible_heun", dt=1e-2)[-1].pow(2).mean().backward()
    backprop = [p.grad.clone() for p in sde.parameters()]
    t_k, t_t = _interleaved(lambda: grad(ksde), lambda: grad(torchsde), repeats)
    sde.nfe = 0
    grad(ksde)
    nfe_k = sde.nfe
    sde.nfe = 0
    grad(torchsde)
    nfe_t = sde.nfe
    agree = max(((a - b).abs().max() / b.abs().max()).item() for a, b in zip(grads_k, backprop))
    _row(
        "neural SDE adjoint gradient, reversible Heun (Stratonovich)",
        t_k,
        t_t,
        extra=f"NFE {nfe_k} vs {nfe_t}; kutta adjoint vs kutta backprop: {agree:.1e} relative (float32)",
    )

    def gap():
        compiled = grad(ksde, COMPILE)
        return max(((a - b).abs().max() / b.abs().max()).item() for a, b in zip(compiled, backprop))

    _compiled_row(
        "neural SDE adjoint gradient, reversible Heun (Stratonovich), compile=True",
        lambda: grad(ksde, COMPILE),
        lambda: grad(torchsde),
        repeats,
        gap,
        what="relative difference from kutta backprop (float32)",
    )


def bench_brownian(repeats: int, queries: int) -> None:
    grid = torch.linspace(0, 1, queries + 1).tolist()
    sequential = list(zip(grid[:-1], grid[1:]))
    generator = torch.Generator().manual_seed(0)
    random_pairs = (
        torch.rand(queries, 2, generator=generator, dtype=torch.float64).sort(dim=1).values.tolist()
    )
    for levy in ("none", "space-time"):
        for name, pairs in (("sequential", sequential), ("random", random_pairs)):

            def run(cls, pairs=pairs, levy=levy):
                bm = cls(0.0, 1.0, size=(BATCH, STATE), entropy=0, levy_area_approximation=levy)
                want_u = levy != "none"
                for ta, tb in pairs:
                    bm(ta, tb, return_U=want_u) if want_u else bm(ta, tb)

            t_k, t_t = _interleaved(
                lambda run=run: run(ksde.BrownianInterval),
                lambda run=run: run(torchsde.BrownianInterval),
                repeats,
            )
            _row(f"BrownianInterval {queries} {name} queries, {levy}", t_k, t_t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--brownian-repeats", type=int, default=1)
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--skip-brownian", action="store_true")
    parser.add_argument(
        "--skip-default-bm", action="store_true", help="skip the bm=None solves (slow in torchsde)"
    )
    parser.add_argument("--only-brownian", action="store_true")
    parser.add_argument(
        "--methods", nargs="+", default=["euler", "srk"], help="neural SDE methods to time"
    )
    parser.add_argument("--skip-reversible-heun", action="store_true")
    parser.add_argument("--quick", action="store_true", help="a seconds-long smoke run")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.quick:
        global BATCH
        BATCH, args.repeats, args.brownian_repeats, args.queries = 8, 1, 1, 200
    print(f"torch {torch.__version__}, torchsde {torchsde.__version__}, 1 thread; medians")
    print("| workload | kutta | torchsde | ratio (CPU) | target <= 0.5 | notes |")
    print("| --- | --- | --- | --- | --- | --- |")
    if not args.only_brownian:
        if not args.skip_default_bm:
            bench_default_brownian(args.repeats)
        bench_neural_sde(args.repeats, args.methods)
        if not args.skip_reversible_heun:
            bench_reversible_heun(args.repeats)
    if not args.skip_brownian:
        bench_brownian(args.brownian_repeats, args.queries)


if __name__ == "__main__":
    main()
