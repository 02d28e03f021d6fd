"""Acceptance checks of the built-in experiments (issue 7): train each with its full config on
one thread and print its metric against the target. The full config is the experiment's
default (what ``kutta train NAME`` runs) plus the longer training listed in ``CHECKS``
(periodic 1500 steps, spiral-latent 1500, checkerboard 2500), which the defaults keep short.

| experiment | check |
| --- | --- |
| anode-1d | plain neural ODE loss stays >= 1 (a 1-D flow cannot cross); augmented loss < 1e-3 |
| digits | ODE-Net test accuracy >= 95 % (NFE reported; same-width ResNet for comparison) |
| chirality | Neural CDE test accuracy >= 98 % on all points and with 30 % dropped |
| periodic | Latent ODE < ODE-RNN < GRU-dt on the median test MSE over training seeds 0, 1, 2, interpolation and extrapolation (every seed's numbers printed) |
| spiral-latent | Latent ODE test reconstruction RMSE <= 0.2 (paper: 0.13-0.16) |
| latent-sde | posterior 90 % band covers >= 90 % of the data, median within 0.1; log-likelihood reported |
| cnf-2d | test NLL within 0.15 nats of the entropy on 8gaussians (2.831); checkerboard reported |

    .venv/bin/python benchmarks/bench_experiments.py                      # all (long: ~1 h)
    .venv/bin/python benchmarks/bench_experiments.py --only digits chirality
    .venv/bin/python benchmarks/bench_experiments.py --quick              # smoke (tiny configs)
    .venv/bin/python benchmarks/bench_experiments.py --only periodic --seeds 3   # one seed

A check with several training seeds (``Check.seeds``; ``--seeds`` overrides them for every
check) trains once per seed (``train.seed``: data, initialisation and batches) and is judged
on the median of each metric over the seeds; every seed's values are printed too, so that no
single lucky seed can carry a claim.

Runs are written to ``--out`` (default: a temporary directory), one folder per check and seed.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import base_parser, pin_one_thread, print_machine_notes, table, write_json  # noqa: E402

pin_one_thread()

from kutta.experiments import run as runs  # noqa: E402

Row = tuple[str, float, str, bool | None]  # metric, value, target, passed (None: reported only)


@dataclasses.dataclass
class Check:
    label: str
    experiment: str
    judge: Callable[[dict[str, Any]], list[Row]]
    overrides: tuple[str, ...] = ()
    #: a tiny configuration for --quick (the judgement is printed but meaningless)
    quick: tuple[str, ...] = ()
    #: training seeds; with more than one the check judges the median of each metric
    seeds: tuple[int, ...] = (0,)


def _anode(m: dict[str, Any]) -> list[Row]:
    return [
        ("plain loss", m["loss_plain"], ">= 1 (cannot fit)", m["loss_plain"] >= 1 - 1e-3),
        ("augmented loss", m["loss_augmented"], "< 1e-3", m["loss_augmented"] < 1e-3),
    ]


def _digits(m: dict[str, Any]) -> list[Row]:
    return [
        (
            "ODE-Net test accuracy",
            m["test_accuracy_ode"],
            ">= 0.95",
            m["test_accuracy_ode"] >= 0.95,
        ),
        ("ODE-Net NFE (test forward)", m["nfe_test"], "reported", None),
        ("ResNet test accuracy", m["test_accuracy_resnet"], "reported", None),
    ]


def _chirality(m: dict[str, Any]) -> list[Row]:
    return [
        (f"test accuracy, {name}", m[f"test_accuracy_{name}"], ">= 0.98",
         m[f"test_accuracy_{name}"] >= 0.98)
        for name in ("full", "dropped")
    ]  # fmt: skip


def _periodic(m: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for mode in ("interpolation", "extrapolation"):
        if f"test_mse_{mode}_latent" not in m:  # a run of one mode (data.mode=...)
            continue
        latent, odernn, gru = (m[f"test_mse_{mode}_{k}"] for k in ("latent", "odernn", "gru"))
        rows += [
            (f"{mode} MSE latent ODE", latent, "< ODE-RNN", latent < odernn),
            (f"{mode} MSE ODE-RNN", odernn, "< GRU-dt", odernn < gru),
            (f"{mode} MSE GRU-dt", gru, "reported", None),
        ]
        if mode == "interpolation":
            rows += [
                (f"{mode} MSE on unobserved points, {k}",
                 m[f"test_mse_unobserved_{mode}_{k}"], "reported", None)
                for k in ("latent", "odernn", "gru")
            ]  # fmt: skip
    return rows


def _spiral_latent(m: dict[str, Any]) -> list[Row]:
    return [
        ("test RMSE vs noiseless", m["test_rmse"], "<= 0.2", m["test_rmse"] <= 0.2),
        ("test RMSE vs observed", m["test_rmse_vs_observed"], "reported (noise 0.3)", None),
    ]


def _latent_sde(m: dict[str, Any]) -> list[Row]:
    return [
        ("data inside the posterior 90% band", m["coverage_90"], ">= 0.9", m["coverage_90"] >= 0.9),
        ("posterior median - data, mean abs", m["median_abs_error"], "< 0.1",
         m["median_abs_error"] < 0.1),
        ("log-likelihood (Laplace 0.05, 16 points)", m["log_likelihood"], "reported", None),
        ("ELBO", m["elbo"], "reported", None),
    ]  # fmt: skip


def _cnf(target: float | None) -> Callable[[dict[str, Any]], list[Row]]:
    def judge(m: dict[str, Any]) -> list[Row]:
        passed = None if target is None else m["gap_nats"] < target
        return [
            ("test NLL (nats)", m["test_nll"], f"entropy {m['entropy']:.3f}", None),
            ("NLL - entropy", m["gap_nats"], f"< {target}" if target else "reported", passed),
        ]

    return judge


_TINY_TRAIN = ("train.steps=2", "train.eval_every=2", "train.log_every=1")
CHECKS = [
    Check("anode-1d", "anode-1d", _anode, quick=("model.hidden=8", *_TINY_TRAIN)),
    Check("digits", "digits", _digits, quick=("model.width=8", *_TINY_TRAIN)),
    Check(
        "chirality", "chirality", _chirality,
        quick=("data.num_series=8", "data.num_points=12", "train.batch_size=4", *_TINY_TRAIN),
    ),
    Check(
        "periodic", "periodic", _periodic, ("train.steps=1500",), seeds=(0, 1, 2),
        quick=("data.num_series=20", "data.num_points=10", "data.observed=5",
               "train.batch_size=4", *_TINY_TRAIN),
    ),
    Check(
        "spiral-latent", "spiral-latent", _spiral_latent, ("train.steps=1500",),
        quick=("data.num_series=20", "data.window=10", "train.batch_size=4", *_TINY_TRAIN),
    ),
    Check(
        "latent-sde", "latent-sde", _latent_sde,
        quick=("model.hidden=8", "model.eval_samples=32", "train.batch_size=8", *_TINY_TRAIN),
    ),
    Check(
        "cnf-2d 8gaussians", "cnf-2d", _cnf(0.15), ("data.dataset=8gaussians",),
        quick=("data.num_train=64", "data.num_val=32", "data.num_test=32", "model.hidden=[8]",
               "train.batch_size=16", *_TINY_TRAIN),
    ),
    Check(
        "cnf-2d checkerboard", "cnf-2d", _cnf(None), ("data.dataset=checkerboard", "train.steps=2500"),
        quick=("data.num_train=64", "data.num_val=32", "data.num_test=32", "model.hidden=[8]",
               "train.batch_size=16", *_TINY_TRAIN),
    ),
]  # fmt: skip


def _seed_list(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise SystemExit(f"--seeds takes integers separated by commas, got {text!r}") from None
    if len(set(seeds)) != len(seeds):
        raise SystemExit(f"--seeds has a repeated seed: {text!r}")
    return seeds


def median_metrics(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """The median over seeds of every numeric metric the runs share."""
    shared = set.intersection(*(set(m) for m in per_seed))
    return {
        key: statistics.median(m[key] for m in per_seed)
        for key in sorted(shared)
        if all(isinstance(m[key], (int, float)) and not isinstance(m[key], bool) for m in per_seed)
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", help="checks whose label contains one of these words")
    parser.add_argument("--out", default=None, help="directory for the runs (default: temporary)")
    parser.add_argument("--set", nargs="+", default=[], help="extra key=value overrides for all")
    parser.add_argument(
        "--seeds",
        type=_seed_list,
        default=None,
        help="training seeds for every check, e.g. 0,1,2 (default: each check's own; periodic "
        "0,1,2); with several, each metric is judged on its median over the seeds",
    )
    args = parser.parse_args(argv)
    if any(item.startswith("train.seed=") for item in args.set):
        raise SystemExit("set the training seeds with --seeds, not --set train.seed=...")
    checks = [c for c in CHECKS if not args.only or any(w in c.label for w in args.only)]
    print_machine_notes()
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="kutta-bench-exp-"))
    results, rows = [], []
    for check in checks:
        seeds = args.seeds or check.seeds
        per_seed = []
        for seed in seeds:
            overrides = [*check.overrides, "train.num_threads=1", "train.tensorboard=false"]
            if args.quick:
                overrides += check.quick
            overrides += [*args.set, f"train.seed={seed}"]
            started = time.perf_counter(), time.process_time()
            run_dir = out / check.label.replace(" ", "-")
            if len(seeds) > 1:
                run_dir = run_dir / f"seed-{seed}"
            result = runs.train(check.experiment, overrides=overrides, out=run_dir)
            wall, cpu = time.perf_counter() - started[0], time.process_time() - started[1]
            metrics = result.metrics["metrics"]
            print(
                f"{check.label}, seed {seed}: {result.summary} (wall {wall:.0f} s, CPU {cpu:.0f} s)",
                flush=True,
            )
            per_seed.append(
                {"seed": seed, "overrides": overrides, "metrics": metrics, "wall_s": wall,
                 "cpu_s": cpu}
            )  # fmt: skip
        if len(seeds) > 1:
            for run in per_seed:
                for metric, value, _, _ in check.judge(run["metrics"]):
                    rows.append([check.label, f"seed {run['seed']}: {metric}", value, "", None])
            judged_on = median_metrics([run["metrics"] for run in per_seed])
            prefix = f"median of {len(seeds)} seeds: "
        else:
            judged_on, prefix = per_seed[0]["metrics"], ""
        judged = check.judge(judged_on)
        for metric, value, target, passed in judged:
            rows.append([check.label, prefix + metric, value, target, passed])
        results.append(
            {
                "check": check.label,
                "seeds": list(seeds),
                "runs": per_seed,
                "judged_metrics": judged_on,
                "judged": [dict(zip(("metric", "value", "target", "passed"), r)) for r in judged],
            }
        )
    print(table(["experiment", "metric", "value", "target", "passed"], rows))
    print(f"runs in {out}")
    summary = {"quick": args.quick, "results": results}
    write_json(args.json, summary)
    return summary


if __name__ == "__main__":
    main()
