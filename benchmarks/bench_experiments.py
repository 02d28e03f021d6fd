"""Acceptance checks of the built-in experiments (issue 7): train each with its full config on
one thread and print its metric against the target. The full config is the experiment's
default (what ``kutta train NAME`` runs) plus the longer training listed in ``CHECKS``
(periodic 1000 steps, spiral-latent 1500, checkerboard 2500), which the defaults keep short.

| experiment | check |
| --- | --- |
| anode-1d | plain neural ODE loss stays >= 1 (a 1-D flow cannot cross); augmented loss < 1e-3 |
| digits | ODE-Net test accuracy >= 95 % (NFE reported; same-width ResNet for comparison) |
| chirality | Neural CDE test accuracy >= 98 % on all points and with 30 % dropped |
| periodic | Latent ODE < ODE-RNN < GRU-dt on test MSE, interpolation and extrapolation |
| spiral-latent | Latent ODE test reconstruction RMSE <= 0.2 (paper: 0.13-0.16) |
| latent-sde | posterior 90 % band covers >= 90 % of the data, median within 0.1; log-likelihood reported |
| cnf-2d | test NLL within 0.15 nats of the entropy on 8gaussians (2.831); checkerboard reported |

    .venv/bin/python benchmarks/bench_experiments.py                      # all (long: ~1 h)
    .venv/bin/python benchmarks/bench_experiments.py --only digits chirality
    .venv/bin/python benchmarks/bench_experiments.py --quick              # smoke (tiny configs)

Runs are written to ``--out`` (default: a temporary directory), one folder per check.
"""

from __future__ import annotations

import dataclasses
import os
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
        "periodic", "periodic", _periodic, ("train.steps=1000",),
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


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", help="checks whose label contains one of these words")
    parser.add_argument("--out", default=None, help="directory for the runs (default: temporary)")
    parser.add_argument("--set", nargs="+", default=[], help="extra key=value overrides for all")
    args = parser.parse_args(argv)
    checks = [c for c in CHECKS if not args.only or any(w in c.label for w in args.only)]
    print_machine_notes()
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="kutta-bench-exp-"))
    results, rows = [], []
    for check in checks:
        overrides = [*check.overrides, "train.num_threads=1", "train.tensorboard=false"]
        if args.quick:
            overrides += check.quick
        overrides += args.set
        started = time.perf_counter(), time.process_time()
        run_dir = out / check.label.replace(" ", "-")
        result = runs.train(check.experiment, overrides=overrides, out=run_dir)
        wall, cpu = time.perf_counter() - started[0], time.process_time() - started[1]
        judged = check.judge(result.metrics["metrics"])
        for metric, value, target, passed in judged:
            rows.append([check.label, metric, value, target, passed])
        print(f"{check.label}: {result.summary} (wall {wall:.0f} s, CPU {cpu:.0f} s)", flush=True)
        results.append(
            {
                "check": check.label,
                "overrides": overrides,
                "metrics": result.metrics["metrics"],
                "wall_s": wall,
                "cpu_s": cpu,
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
