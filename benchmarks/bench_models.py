"""Time per training epoch of two of issue 7's models, on one thread.

**periodic (Latent ODE)**: Rubanova et al.'s periodic toy, but with a time grid *per series*
(``t = {0}`` plus 99 sorted draws from U(0, 5) for each series; y = sin(2 pi f t) + 1 + e0 plus
0.01 U[0, 1) noise), interpolation: each series shows 50 of its 100 points and the ELBO scores
all 100. One epoch is the 800 training series in batches of 50, with Adam (lr 1e-2), the same
initial weights, batch order and posterior draws for every variant; ``z0`` lives at t = 0, the
series' common start. Compared, all with dopri5 at the Latent ODE's default tolerances (rtol
1e-3, atol 1e-4), float32:

* ``per_sample``: each series on its own times, ``batch_mode="per_sample"`` (own steps per
  series, encoder and decoder);
* ``union``: ``LatentODE(union_grid=True)``: the decoder solves once over the union of the
  batch's target times and each series reads its own times back; the encoder follows each
  series' own times (shared steps);
* ``shared spans`` (kutta's default): each series on its own times, every span between two of
  its times mapped onto [0, 1] and solved with steps shared by the batch;
* ``union batch``: the batches themselves put on their union grid with a mask
  (:func:`kutta.data.to_union_grid`), so the encoder too walks every time of the union.

The first three give the same loss on the same batch to solver tolerance (see the first-batch
column); ``union batch`` differs slightly, because its encoder also runs from the union's last
time to each series' last observation.

**cnf-2d (CNF)**: the experiment's flow (concatsquash MLP 64-64-64, exact trace, dopri5 at
rtol = atol = 1e-4, float32) on 8gaussians, 20000 training points in batches of 256, Adam
(lr 3e-3), from its initial weights: kutta against the same model (same weights, data, batches,
solver and tolerances) solved with ``torchdiffeq.odeint``. NFE = calls of the flow's vector
field; with backprop the backward pass differentiates through the solver and calls no field.

Times are medians of interleaved repeats (A B C A B C ...), each repeat a full epoch from the
same starting point, after one untimed warm-up step per variant.

    .venv/bin/python benchmarks/bench_models.py                   # full run (~15 min of CPU)
    .venv/bin/python benchmarks/bench_models.py --only cnf        # one of: periodic, cnf
    .venv/bin/python benchmarks/bench_models.py --quick           # smoke test (seconds)
"""

from __future__ import annotations

import copy
import math
import os
import sys
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import (  # noqa: E402
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

import torch  # noqa: E402
import torchdiffeq  # noqa: E402
from torch import nn  # noqa: E402

from kutta.data import IrregularBatch, select_steps, to_union_grid  # noqa: E402
from kutta.experiments.cnf_2d import sample_toy  # noqa: E402
from kutta.models import CNF, LatentODE  # noqa: E402

PERIODIC_VARIANTS = {  # name: (batch_mode, LatentODE(union_grid=...), batches on the union grid)
    "per_sample": ("per_sample", False, False),
    "union": ("shared", True, False),
    "shared spans": ("shared", False, False),
    "union batch": ("shared", False, True),
}


class CallCounter:
    """Counts forward calls of some modules (batched vector-field evaluations)."""

    def __init__(self, modules: list[nn.Module]):
        self.calls = 0
        self.handles = [m.register_forward_pre_hook(self._count) for m in modules]

    def _count(self, module: nn.Module, args: Any) -> None:
        self.calls += 1

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


# ---------------------------------------------------------------- periodic (Latent ODE)


def periodic_per_series(
    num_series: int, num_points: int, t_end: float, seed: int, dtype: torch.dtype
) -> IrregularBatch:
    """Rubanova et al.'s periodic series, each on its own grid {0} + sorted U(0, t_end) draws."""
    generator = torch.Generator().manual_seed(seed)
    draws = torch.rand(num_series, num_points - 1, generator=generator, dtype=torch.float64)
    zero = torch.zeros(num_series, 1, dtype=torch.float64)
    t = torch.cat([zero, (draws * t_end).sort(dim=1).values], dim=1)
    frequency = 0.4 + 0.4 * torch.rand(num_series, 1, generator=generator, dtype=torch.float64)
    offset = 0.1 * torch.randn(num_series, 1, generator=generator, dtype=torch.float64)
    noise = 0.01 * torch.rand(num_series, num_points, generator=generator, dtype=torch.float64)
    noise[:, 0] = 0
    y = (torch.sin(2 * math.pi * frequency * t) + 1 + offset + noise).unsqueeze(-1)
    mask = torch.ones_like(y, dtype=torch.bool)
    lengths = torch.full((num_series,), num_points, dtype=torch.long)
    return IrregularBatch(t.to(dtype), y.to(dtype), mask, lengths)


def interpolation_split(
    full: IrregularBatch, observed: int, seed: int
) -> tuple[IrregularBatch, IrregularBatch]:
    """(observed: a random ``observed`` points per series, target: every point)."""
    generator = torch.Generator().manual_seed(seed)
    scores = torch.rand(full.times.shape, generator=generator)
    keep = torch.zeros_like(scores, dtype=torch.bool)
    keep.scatter_(1, scores.argsort(dim=1)[:, :observed], True)
    return select_steps(full, keep), full


def periodic_batches(
    observed: IrregularBatch, target: IrregularBatch, batch_size: int, union: bool, seed: int
) -> list[tuple[IrregularBatch, IrregularBatch]]:
    """One epoch of (observed, target) batches in a fixed random order, on the union grid of
    each batch when ``union`` (converted here, like a collate function would)."""
    order = torch.randperm(len(observed), generator=torch.Generator().manual_seed(seed))
    batches = []
    for start in range(0, len(order) - batch_size + 1, batch_size):
        rows = order[start : start + batch_size]
        pair = (observed[rows], target[rows])
        if union:
            pair = (to_union_grid(pair[0])[0], to_union_grid(pair[1])[0])
        batches.append(pair)
    return batches


def latent_ode(
    batch_mode: str, union_grid: bool, dtype: torch.dtype, rtol: float, atol: float
) -> LatentODE:
    """The periodic experiment's Latent ODE (latent 6, encoder 20, decoder 20, obs std 0.01),
    with ``z0`` at t = 0, the series' common start; the same weights for every variant."""
    torch.manual_seed(0)
    model = LatentODE(
        1,
        6,
        20,
        20,
        obs_std=0.01,
        z0_time=0.0,
        method="dopri5",
        rtol=rtol,
        atol=atol,
        batch_mode=batch_mode,
        union_grid=union_grid,
    )
    return model.to(dtype)


def latent_ode_epoch(model: LatentODE, batches: list, lr: float) -> Callable[[], dict[str, Any]]:
    """A zero-argument epoch: each call trains a fresh copy of ``model`` over ``batches``."""

    def run() -> dict[str, Any]:
        net = copy.deepcopy(model)
        counter = CallCounter([net.encoder_func, net.dynamics])
        optimizer = torch.optim.Adam(net.parameters(), lr=lr)
        losses = []
        for step, (observed, target) in enumerate(batches):
            torch.manual_seed(step)  # the same posterior draws for every variant
            loss = net.elbo(observed, target).loss()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        counter.remove()
        return {"losses": losses, "field_calls": counter.calls}

    return run


def time_epochs(epochs: dict, repeats: int) -> tuple[dict, dict]:
    """Interleaved timings of zero-argument epoch runs, and each one's result from its last run."""
    results = {}
    timings = time_interleaved(
        {name: lambda name=name: results.__setitem__(name, epochs[name]()) for name in epochs},
        repeats,
        warmup=0,
    )
    return timings, results


def first_batch_losses(models: dict[str, LatentODE], batches: dict[str, list]) -> dict[str, float]:
    """Each variant's loss on the first batch with the initial weights and the same draws."""
    out = {}
    with torch.no_grad():
        for name, model in models.items():
            torch.manual_seed(0)
            observed, target = batches[name][0]
            out[name] = model.elbo(observed, target).loss().item()
    return out


def bench_periodic(quick: bool, repeats: int) -> dict[str, Any]:
    if quick:
        num_series, num_points, observed, batch_size = 8, 12, 6, 4
    else:
        num_series, num_points, observed, batch_size = 1000, 100, 50, 50
    dtype, rtol, atol, lr = torch.float32, 1e-3, 1e-4, 1e-2
    num_train = int(round(0.8 * num_series))
    print(
        f"\n## periodic, Latent ODE: {num_train} training series with their own {num_points}-point"
        f" grids, {observed} observed, batches of {batch_size}; dopri5 rtol {rtol:g} atol {atol:g},"
        " float32"
    )
    full = periodic_per_series(num_series, num_points, 5.0, seed=0, dtype=dtype)
    seen, target = interpolation_split(full[:num_train], observed, seed=1)
    models, batches = {}, {}
    for name, (batch_mode, union_grid, union_batch) in PERIODIC_VARIANTS.items():
        models[name] = latent_ode(batch_mode, union_grid, dtype, rtol, atol)
        batches[name] = periodic_batches(seen, target, batch_size, union_batch, seed=2)
    first = first_batch_losses(models, batches)
    for name in models:  # one-time costs (first calls, allocations) stay out of the timings
        latent_ode_epoch(models[name], batches[name][:1], lr)()
    epochs = {name: latent_ode_epoch(models[name], batches[name], lr) for name in models}
    timings, results = time_epochs(epochs, repeats)
    base, base_cpu = timings["per_sample"].wall, timings["per_sample"].cpu
    rows = []
    for name, (batch_mode, union_grid, union_batch) in PERIODIC_VARIANTS.items():
        grid = (
            [b[0].times.shape[1] for b in batches[name]],
            [b[1].times.shape[1] for b in batches[name]],
        )
        rows.append(
            {
                "variant": name,
                "batch_mode": batch_mode,
                "union_grid": union_grid,
                "union_batch": union_batch,
                "mean_observed_grid": sum(grid[0]) / len(grid[0]),
                "mean_target_grid": sum(grid[1]) / len(grid[1]),
                "epoch_wall_s": timings[name].wall,
                "epoch_cpu_s": timings[name].cpu,
                "walls_s": timings[name].walls,
                "field_calls_per_epoch": results[name]["field_calls"],
                "first_batch_loss": first[name],
                "mean_epoch_loss": sum(results[name]["losses"]) / len(results[name]["losses"]),
            }
        )
    print(f"medians of {repeats} interleaved epochs ({len(batches['union'])} steps each)")
    print(
        table(
            [
                "variant",
                "batch_mode",
                "time points per batch (observed / target)",
                "epoch wall [s]",
                "epoch cpu [s]",
                "wall / per_sample",
                "cpu / per_sample",
                "field calls / epoch",
                "first-batch loss",
                "mean loss over the epoch",
            ],
            [
                [
                    r["variant"],
                    r["batch_mode"],
                    f"{r['mean_observed_grid']:.0f} / {r['mean_target_grid']:.0f}",
                    r["epoch_wall_s"],
                    r["epoch_cpu_s"],
                    ratio(r["epoch_wall_s"], base),
                    ratio(r["epoch_cpu_s"], base_cpu),
                    r["field_calls_per_epoch"],
                    fmt(r["first_batch_loss"], 6),
                    fmt(r["mean_epoch_loss"], 4),
                ]
                for r in rows
            ],
        )
    )
    same_model = [first[name] for name in ("per_sample", "union", "shared spans")]
    spread = (max(same_model) - min(same_model)) / abs(first["per_sample"])
    print(f"first-batch loss, relative spread of per_sample, union, shared spans: {spread:.2g}")
    return {
        "num_train": num_train,
        "num_points": num_points,
        "observed": observed,
        "batch_size": batch_size,
        "repeats": repeats,
        "first_batch_relative_spread": spread,
        "rows": rows,
    }


# ---------------------------------------------------------------- cnf-2d (CNF vs torchdiffeq)


def cnf_log_prob_torchdiffeq(model: CNF, x: torch.Tensor) -> torch.Tensor:
    """``model.log_prob(x)`` with the flow solved by torchdiffeq (the same augmented field
    ``model.dynamics``, span and post-processing as :meth:`kutta.models.CNF.forward`)."""
    start = torch.cat([x, x.new_zeros(x.shape[0], 3)], dim=-1)
    span = torch.tensor([0.0, model.t1], dtype=x.dtype)
    solver = model.solver
    end = torchdiffeq.odeint(
        model.dynamics, start, span, rtol=solver.rtol, atol=solver.atol, method=solver.method
    )[-1]
    return model.base_log_prob(end[:, : model.dim]) - end[:, model.dim]


CNF_LIBRARIES: dict[str, Callable[[CNF, torch.Tensor], torch.Tensor]] = {
    "kutta": lambda model, x: model.log_prob(x),
    "torchdiffeq": cnf_log_prob_torchdiffeq,
}


def cnf_epoch(
    model: CNF, log_prob: Callable, data: torch.Tensor, batch_size: int, lr: float
) -> Callable[[], dict[str, Any]]:
    """A zero-argument epoch: each call trains a fresh copy of ``model`` over ``data``."""
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(3))
    batches = [
        data[order[s : s + batch_size]] for s in range(0, len(data) - batch_size + 1, batch_size)
    ]

    def run() -> dict[str, Any]:
        net = copy.deepcopy(model)
        counter = CallCounter([net.func])
        optimizer = torch.optim.Adam(net.parameters(), lr=lr)
        losses, forward_calls = [], 0
        for x in batches:
            before = counter.calls
            loss = -log_prob(net, x).mean()
            forward_calls += counter.calls - before
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        counter.remove()
        return {
            "losses": losses,
            "nfe_forward": forward_calls / len(batches),
            "nfe_backward": (counter.calls - forward_calls) / len(batches),
            "steps": len(batches),
        }

    return run


def bench_cnf(quick: bool, repeats: int) -> dict[str, Any]:
    if quick:
        num_train, batch_size, hidden = 64, 32, (8,)
    else:
        num_train, batch_size, hidden = 20000, 256, (64, 64, 64)
    dtype, rtol, atol, lr = torch.float32, 1e-4, 1e-4, 3e-3
    print(
        f"\n## cnf-2d, CNF: 8gaussians, {num_train} points, batches of {batch_size}, concatsquash"
        f" {hidden}, exact trace, dopri5 rtol {rtol:g} atol {atol:g}, float32"
    )
    data = sample_toy("8gaussians", num_train, torch.Generator().manual_seed(0)).to(dtype)
    torch.manual_seed(0)
    model = CNF(2, hidden=hidden, trace="exact", method="dopri5", rtol=rtol, atol=atol).to(dtype)
    probe = data[:batch_size]
    with torch.no_grad():
        first = {name: fn(model, probe) for name, fn in CNF_LIBRARIES.items()}
    gap = float((first["kutta"] - first["torchdiffeq"]).abs().max())
    for fn in CNF_LIBRARIES.values():  # one-time costs stay out of the timings
        cnf_epoch(model, fn, data[:batch_size], batch_size, lr)()
    epochs = {
        name: cnf_epoch(model, fn, data, batch_size, lr) for name, fn in CNF_LIBRARIES.items()
    }
    timings, results = time_epochs(epochs, repeats)
    base, base_cpu = timings["torchdiffeq"].wall, timings["torchdiffeq"].cpu
    rows = [
        {
            "library": name,
            "epoch_wall_s": timings[name].wall,
            "epoch_cpu_s": timings[name].cpu,
            "walls_s": timings[name].walls,
            "steps": results[name]["steps"],
            "nfe_forward_per_step": results[name]["nfe_forward"],
            "nfe_backward_per_step": results[name]["nfe_backward"],
            "first_loss": results[name]["losses"][0],
            "last_loss": results[name]["losses"][-1],
        }
        for name in CNF_LIBRARIES
    ]
    print(f"medians of {repeats} interleaved epochs ({rows[0]['steps']} steps each)")
    print(
        table(
            [
                "library",
                "epoch wall [s]",
                "epoch cpu [s]",
                "wall / torchdiffeq",
                "cpu / torchdiffeq",
                "NFE / step (forward)",
                "NFE / step (backward)",
                "first-step loss",
                "last-step loss",
            ],
            [
                [
                    r["library"],
                    r["epoch_wall_s"],
                    r["epoch_cpu_s"],
                    ratio(r["epoch_wall_s"], base),
                    ratio(r["epoch_cpu_s"], base_cpu),
                    r["nfe_forward_per_step"],
                    r["nfe_backward_per_step"],
                    fmt(r["first_loss"], 6),
                    fmt(r["last_loss"], 4),
                ]
                for r in rows
            ],
        )
    )
    print(f"log p(x) on the first batch, initial weights: max |kutta - torchdiffeq| = {gap:.2g}")
    return {
        "num_train": num_train,
        "batch_size": batch_size,
        "hidden": list(hidden),
        "repeats": repeats,
        "first_batch_log_prob_max_diff": gap,
        "rows": rows,
    }


BENCHMARKS = {"periodic": bench_periodic, "cnf": bench_cnf}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), default=None)
    args = parser.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)
    print("# time per epoch: Latent ODE on per-series grids, CNF against torchdiffeq")
    print_machine_notes()
    out = {name: BENCHMARKS[name](args.quick, repeats) for name in args.only or BENCHMARKS}
    write_json(args.json, out)
    return out


if __name__ == "__main__":
    main()
