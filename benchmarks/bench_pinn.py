"""kutta.pde.pinn against DeepXDE (PyTorch backend) on the Burgers forward problem, one process, one thread.

Problem (Raissi, Perdikaris & Karniadakis 2019): u_t + u u_x = (0.01 / pi) u_xx on
x in [-1, 1], t in [0, 0.99], u(x, 0) = -sin(pi x), u(+-1, t) = 0; float64.

Both libraries get the same everything: the same points (Latin hypercube collocation points,
initial points at t = 0, boundary points at x = +-1, drawn by kutta and given to DeepXDE as
anchors; the PDE term is the mean squared residual over all of them, as DeepXDE defines it), the
same network (8 x 20 tanh, kutta's Xavier-normal initial weights copied into DeepXDE's FNN), the
same loss (sum of the three mean squares, weights 1) and the same schedule (Adam, lr 1e-3, then
torch.optim.LBFGS with strong Wolfe line search, history 50, gtol 1e-8, no ftol, chunks of 1000
iterations with at most 1.25 evaluations per iteration). Reported: seconds per Adam step and per
L-BFGS iteration (medians over interleaved repeats, the library order alternating), their ratio
kutta / DeepXDE, L-BFGS evaluations per iteration, and the final relative L2 error against the
exact Cole-Hopf solution on Raissi's 256 x 100 grid.

Run:  DDE_BACKEND=pytorch nice -n 19 .venv/bin/python benchmarks/bench_pinn.py [--repeats 3]
      [--adam 1000] [--lbfgs 2000] [--collocation 2000] [--quick] [--json out.json]
Without DeepXDE installed only kutta runs.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from typing import Any

import numpy as np
from common import base_parser, fmt, pin_one_thread, print_machine_notes, ratio, table, write_json

os.environ.setdefault("DDE_BACKEND", "pytorch")

import torch  # noqa: E402

from kutta.pde.burgers_exact import burgers_exact, raissi_grid  # noqa: E402
from kutta.pde.pinn import (  # noqa: E402
    DirichletBC,
    InitialCondition,
    Interval,
    PINNProblem,
    SpaceTime,
    fit,
    mlp,
)

NU = 0.01 / math.pi
T_END = 0.99
LBFGS_CHUNK = 1000  # DeepXDE's iterations per torch LBFGS.step call
HISTORY = 50


def load_deepxde() -> Any | None:
    """DeepXDE with the PyTorch backend in float64, or None when it is not installed."""
    try:
        import deepxde
    except ImportError:
        return None
    if deepxde.backend.backend_name != "pytorch":
        raise SystemExit("DeepXDE must use the PyTorch backend: set DDE_BACKEND=pytorch")
    deepxde.config.set_default_float("float64")
    return deepxde


def make_points(n_collocation: int, n_initial: int, n_boundary: int, seed: int) -> dict:
    domain = SpaceTime(Interval(-1.0, 1.0), 0.0, T_END)
    kw = {"method": "lhs", "dtype": torch.float64}
    return {
        "domain": domain,
        "interior": domain.sample_interior(n_collocation, seed=seed, **kw),
        "initial": domain.sample_initial(n_initial, seed=seed + 1, **kw),
        "boundary": domain.sample_boundary(n_boundary, seed=seed + 2, **kw),
    }


def initial_network(depth: int, hidden: int, seed: int) -> torch.nn.Sequential:
    torch.manual_seed(seed)
    return mlp(2, 1, hidden=hidden, depth=depth).double()


def grid_points() -> tuple[torch.Tensor, np.ndarray]:
    x, t = raissi_grid()
    grid_x, grid_t = np.meshgrid(x, t, indexing="ij")
    points = np.stack([grid_x.ravel(), grid_t.ravel()], axis=1)
    return torch.as_tensor(points), burgers_exact(points[:, 0], points[:, 1])


def relative_l2(predict, grid: torch.Tensor, exact: np.ndarray) -> float:
    with torch.no_grad():
        u = np.asarray(predict(grid)).reshape(-1)
    return float(np.linalg.norm(u - exact) / np.linalg.norm(exact))


def run_kutta(points: dict, network: torch.nn.Module, adam: int, lbfgs: int, grid, exact) -> dict:
    domain = points["domain"]
    # the PDE term over every training point, as DeepXDE evaluates it
    collocation = torch.cat([points["interior"], points["initial"], points["boundary"]])

    def residual(x, u, ops):
        return ops.partial(1) + u[:, 0] * ops.partial(0) - NU * ops.partial(0, 0)

    problem = PINNProblem(
        network,
        residual,
        domain,
        collocation,
        {
            "boundary": DirichletBC(domain, points["boundary"], 0.0),
            "initial": InitialCondition(
                domain, points["initial"], lambda x: -torch.sin(math.pi * x[:, 0])
            ),
        },
    )
    history = fit(
        problem,
        adam_steps=adam,
        lr=1e-3,
        lbfgs_steps=lbfgs,
        history_size=HISTORY,
        log_every=LBFGS_CHUNK,
    )
    return {
        "adam_s_per_step": history.adam_time_s / max(adam, 1),
        "lbfgs_s_per_iteration": history.lbfgs_time_s / max(history.lbfgs_iterations, 1),
        "lbfgs_iterations": history.lbfgs_iterations,
        "lbfgs_evaluations": history.lbfgs_evaluations,
        "final_loss": history.final_loss,
        "relative_l2": relative_l2(lambda g: problem.network(g).numpy(), grid, exact),
    }


def run_deepxde(
    dde: Any, points: dict, network: torch.nn.Module, adam: int, lbfgs: int, grid, exact
) -> dict:
    geometry = dde.geometry.GeometryXTime(
        dde.geometry.Interval(-1.0, 1.0), dde.geometry.TimeDomain(0.0, T_END)
    )

    def pde(x, y):
        u_x = dde.grad.jacobian(y, x, i=0, j=0)
        u_t = dde.grad.jacobian(y, x, i=0, j=1)
        u_xx = dde.grad.hessian(y, x, i=0, j=0)
        return u_t + y * u_x - NU * u_xx

    boundary = dde.icbc.DirichletBC(geometry, lambda x: 0.0, lambda _, on: on)
    initial = dde.icbc.IC(geometry, lambda x: -np.sin(np.pi * x[:, 0:1]), lambda _, on: on)
    anchors = torch.cat([points["interior"], points["initial"], points["boundary"]]).numpy()
    data = dde.data.TimePDE(
        geometry, pde, [boundary, initial], num_domain=0, num_boundary=0, num_initial=0,
        anchors=anchors,
    )  # fmt: skip
    layers = [m for m in network if isinstance(m, torch.nn.Linear)]
    net = dde.nn.FNN(
        [2] + [layers[0].out_features] * (len(layers) - 1) + [1], "tanh", "Glorot normal"
    )
    with torch.no_grad():
        for theirs, ours in zip(net.linears, layers):
            theirs.weight.copy_(ours.weight)
            theirs.bias.copy_(ours.bias)
    model = dde.Model(data, net)
    model.compile("adam", lr=1e-3)
    started = time.perf_counter()
    model.train(iterations=adam, display_every=max(adam, 1), verbose=0)
    adam_time = time.perf_counter() - started
    options = dde.optimizers.config.LBFGS_options
    dde.optimizers.config.set_LBFGS_options(maxcor=HISTORY, ftol=0, gtol=1e-8, maxiter=lbfgs)
    # DeepXDE derives its iterations per LBFGS.step call from maxiter only once, at import
    # (from the default 15,000); redo that derivation for this maxiter as its import does
    options["iter_per_step"] = min(LBFGS_CHUNK, options["maxiter"])
    options["fun_per_step"] = options["maxfun"] * options["iter_per_step"] // options["maxiter"]
    model.compile("L-BFGS")
    evaluations = _count_evaluations(model, net)
    started = time.perf_counter()
    model.train(verbose=0)
    lbfgs_time = time.perf_counter() - started
    iterations = model.train_state.step - adam
    net.eval()
    return {
        "adam_s_per_step": adam_time / max(adam, 1),
        "lbfgs_s_per_iteration": lbfgs_time / max(iterations, 1),
        "lbfgs_iterations": iterations,
        "lbfgs_evaluations": evaluations["calls"],
        "final_loss": float(np.sum(model.train_state.loss_train)),
        "relative_l2": relative_l2(lambda g: net(g).numpy(), grid, exact),
    }


def _count_evaluations(model: Any, net: torch.nn.Module) -> dict:
    """Count DeepXDE's loss evaluations: network calls, less the two of each progress test
    (training and test losses, which ``model._test`` computes after every chunk)."""
    counter = {"calls": 0}
    test = model._test

    def counted_test(*args, **kwargs):
        counter["calls"] -= 2
        return test(*args, **kwargs)

    def count_forward(*_):
        counter["calls"] += 1

    model._test = counted_test
    net.register_forward_pre_hook(count_forward)
    return counter


def main(argv: list[str] | None = None) -> dict:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--adam", type=int, default=None, help="Adam steps")
    parser.add_argument("--lbfgs", type=int, default=None, help="L-BFGS iterations")
    parser.add_argument("--collocation", type=int, default=None)
    parser.add_argument("--depth", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kutta-only", action="store_true")
    args = parser.parse_args(argv)
    pin_one_thread()
    # the first optimizer built in a process imports torch._dynamo (seconds): not a step's cost
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    default_dtype = torch.get_default_dtype()
    try:
        return _run(args)
    finally:  # DeepXDE's float64 setting is torch's global default: leave it as it was
        torch.set_default_dtype(default_dtype)


def _run(args: Any) -> dict:
    quick = args.quick
    adam = args.adam if args.adam is not None else (20 if quick else 1000)
    lbfgs = args.lbfgs if args.lbfgs is not None else (20 if quick else 2000)
    n_collocation = args.collocation or (100 if quick else 2000)
    repeats = args.repeats or (1 if quick else 3)
    depth, hidden = (3, 10) if quick else (args.depth, args.hidden)
    dde = None if args.kutta_only else load_deepxde()
    # DeepXDE in float64 makes float64 torch's default, which changes the initial weights'
    # random draws: set it either way, so kutta's numbers do not depend on DeepXDE being there
    torch.set_default_dtype(torch.float64)
    points = make_points(n_collocation, 50, 50, args.seed)
    grid, exact = grid_points()
    print(
        f"## PINN, Burgers forward problem: {depth} x {hidden} tanh, {n_collocation} collocation "
        f"+ 50 initial + 50 boundary points, Adam {adam} (lr 1e-3) then L-BFGS {lbfgs}, float64"
    )
    print(f"medians of {repeats} interleaved repeats, one thread")
    print_machine_notes()
    print(f"deepxde: {dde.__version__ if dde else 'not installed (kutta only)'}")
    runners = {"kutta": lambda net: run_kutta(points, net, adam, lbfgs, grid, exact)}
    if dde is not None:
        runners["deepxde"] = lambda net: run_deepxde(dde, points, net, adam, lbfgs, grid, exact)
    runs: dict[str, list[dict]] = {name: [] for name in runners}
    for repeat in range(repeats):
        order = list(runners) if repeat % 2 == 0 else list(reversed(runners))
        for name in order:
            runs[name].append(runners[name](initial_network(depth, hidden, args.seed)))
    summary = {}
    for name, results in runs.items():
        summary[name] = {
            "adam_s_per_step": statistics.median(r["adam_s_per_step"] for r in results),
            "lbfgs_s_per_iteration": statistics.median(r["lbfgs_s_per_iteration"] for r in results),
            **{
                k: results[0][k]
                for k in ("lbfgs_iterations", "lbfgs_evaluations", "final_loss", "relative_l2")
            },
        }
    rows = []
    for name, s in summary.items():
        evaluations = s["lbfgs_evaluations"]
        rows.append(
            [
                name,
                f"{1e3 * s['adam_s_per_step']:.2f}",
                f"{1e3 * s['lbfgs_s_per_iteration']:.2f}",
                s["lbfgs_iterations"],
                "-" if evaluations is None else fmt(evaluations / max(s["lbfgs_iterations"], 1)),
                fmt(s["final_loss"]),
                fmt(s["relative_l2"]),
            ]
        )
    print(
        table(
            ["library", "ms / Adam step", "ms / L-BFGS iteration", "L-BFGS iterations",
             "evaluations / iteration", "final loss", "relative L2"],
            rows,
        )
    )  # fmt: skip
    if "deepxde" in summary:
        k, d = summary["kutta"], summary["deepxde"]
        print(
            f"\nkutta / DeepXDE time: Adam step {fmt(ratio(k['adam_s_per_step'], d['adam_s_per_step']))}, "
            f"L-BFGS iteration {fmt(ratio(k['lbfgs_s_per_iteration'], d['lbfgs_s_per_iteration']))}"
        )
    out = {"summary": summary, "runs": runs, "config": vars(args) | {"adam": adam, "lbfgs": lbfgs}}
    write_json(args.json, out)
    return out


if __name__ == "__main__":
    main()
