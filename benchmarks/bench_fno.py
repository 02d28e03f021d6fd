"""FNO training on 1-D Burgers: kutta's FNO1d against neuraloperator's FNO, one process, one thread.

Both models learn Li et al.'s Burgers map u0 -> u(., 1) (nu = 0.1, u0 from the zero-mean GRF
alpha 2, tau 5, sigma 25; kutta's spectral solver, :func:`kutta.pde.burgers.burgers_data`) from
the same data, with the same architecture: coordinate channel appended, one linear lifting to
``width`` channels, ``layers`` Fourier layers (``modes`` complex modes, a pointwise linear skip,
GELU between layers), projection through 4 x width channels. For neuralop that is
``FNO(n_modes=(2 modes - 2,), hidden_channels=width, lifting_channel_ratio=0,
projection_channel_ratio=4, use_channel_mlp=False)`` (its last axis keeps n_modes // 2 + 1 rfft
modes; checked below). Both train with Adam (lr 1e-3, weight decay 1e-4, cosine schedule) on the
relative L2 loss, the same batches in the same order, from their own seeded initializations.

Epochs alternate between the libraries (kutta, neuralop, kutta, ...), so load changes hit both
alike; the time per epoch (forward + backward + optimizer step over the training set) is the median
over epochs after the first. Reported errors: mean relative L2 on the test set at the training
resolution and zero-shot at ``--super-resolution``.

    .venv/bin/python benchmarks/bench_fno.py            # 1000 train, s = 256, width 64, 25 epochs
    .venv/bin/python benchmarks/bench_fno.py --quick    # smoke test (seconds; kutta only if
                                                        # neuralop is not installed)
"""

from __future__ import annotations

import math
import os
import statistics
import sys
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
from common import (  # noqa: E402
    base_parser,
    pin_one_thread,
    print_machine_notes,
    ratio,
    table,
    time_once,
    write_json,
)
from torch import nn  # noqa: E402

from kutta.pde.burgers import burgers_data  # noqa: E402
from kutta.pde.fno import FNO1d, relative_l2  # noqa: E402

FULL = dict(
    num_train=1000,
    num_test=100,
    resolution=256,
    super_resolution=1024,
    width=64,
    modes=16,
    layers=4,
    epochs=25,
    batch_size=20,
)
QUICK = dict(
    num_train=40,
    num_test=20,
    resolution=32,
    super_resolution=64,
    width=8,
    modes=4,
    layers=2,
    epochs=3,
    batch_size=10,
)


def neuralop_fno(modes: int, width: int, layers: int) -> nn.Module | None:
    """neuraloperator's FNO configured as Li et al.'s (None when neuralop is not installed)."""
    try:
        from neuralop.models import FNO
    except ImportError:
        return None
    model = FNO(
        n_modes=(2 * modes - 2,),
        in_channels=1,
        out_channels=1,
        hidden_channels=width,
        n_layers=layers,
        lifting_channel_ratio=0,
        projection_channel_ratio=4,
        use_channel_mlp=False,
    )
    kept = model.fno_blocks.convs[0].weight.shape[-1]
    if kept != modes:
        raise RuntimeError(f"neuralop keeps {kept} modes, expected {modes}")
    return model


class Trainee:
    """One model with its optimizer and schedule, trained one epoch at a time on shared batches."""

    def __init__(self, model: nn.Module, steps: int):
        self.model = model
        self.optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
        self.schedule = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=steps)
        self.epoch_walls: list[float] = []
        self.epoch_cpus: list[float] = []

    def epoch(self, x: torch.Tensor, y: torch.Tensor, batches: list[torch.Tensor]) -> None:
        def run() -> None:
            self.model.train()
            for rows in batches:
                loss = relative_l2(self.model(x[rows]), y[rows])
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                self.schedule.step()

        wall, cpu, _ = time_once(run)
        self.epoch_walls.append(wall)
        self.epoch_cpus.append(cpu)

    @torch.no_grad()
    def error(self, x: torch.Tensor, y: torch.Tensor) -> float:
        self.model.eval()
        return relative_l2(self.model(x), y).item()


def run(config: dict[str, Any], log: Callable[[str], None] = print) -> dict[str, Any]:
    c = config
    u0, u1 = burgers_data(
        c["num_train"] + c["num_test"],
        c["super_resolution"],
        generator=torch.Generator().manual_seed(0),
    )
    u0, u1 = u0[:, None], u1[:, None]
    stride, n = c["super_resolution"] // c["resolution"], c["num_train"]
    train = (u0[:n, :, ::stride], u1[:n, :, ::stride])
    test = (u0[n:, :, ::stride], u1[n:, :, ::stride])
    test_super = (u0[n:], u1[n:])

    torch.manual_seed(0)
    models = {
        "kutta": FNO1d(
            c["modes"], c["width"], num_layers=c["layers"], projection_width=4 * c["width"]
        )
    }
    torch.manual_seed(0)
    other = neuralop_fno(c["modes"], c["width"], c["layers"])
    if other is None:
        log("neuralop is not installed: kutta only")
    else:
        models["neuralop"] = other
    steps_per_epoch = math.ceil(n / c["batch_size"])
    trainees = {
        name: Trainee(model, c["epochs"] * steps_per_epoch) for name, model in models.items()
    }
    order = torch.Generator().manual_seed(1)
    for epoch in range(c["epochs"]):
        batches = list(torch.randperm(n, generator=order).split(c["batch_size"]))
        for trainee in trainees.values():  # interleaved: every epoch runs both libraries
            trainee.epoch(*train, batches)
        log(
            f"epoch {epoch + 1}/{c['epochs']}: "
            + ", ".join(
                f"{name} {t.epoch_walls[-1]:.2f} s, test {t.error(*test):.4f}"
                for name, t in trainees.items()
            )
        )
    rows = []
    for name, trainee in trainees.items():
        timed = trainee.epoch_walls[1:] or trainee.epoch_walls
        timed_cpu = trainee.epoch_cpus[1:] or trainee.epoch_cpus
        rows.append(
            {
                "library": name,
                # a complex weight is two real parameters (numel counts it once)
                "parameters": sum(
                    p.numel() * (2 if p.is_complex() else 1) for p in trainee.model.parameters()
                ),
                "epoch_s": statistics.median(timed),
                "epoch_cpu_s": statistics.median(timed_cpu),
                "test_rel_l2": trainee.error(*test),
                "test_rel_l2_super": trainee.error(*test_super),
            }
        )
    return {"config": c, "rows": rows}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--num-train", type=int, default=None)
    args = parser.parse_args(argv)
    pin_one_thread()
    config = dict(QUICK if args.quick else FULL)
    if args.epochs:
        config["epochs"] = args.epochs
    if args.num_train:
        config["num_train"] = args.num_train
    print("# FNO on 1-D Burgers: kutta vs neuraloperator, time per epoch and test error")
    print_machine_notes()
    print("config: " + ", ".join(f"{k}={v}" for k, v in config.items()))
    out = run(config)
    rows = out["rows"]
    print(
        table(
            [
                "library",
                "parameters",
                "epoch s (median)",
                "epoch CPU s",
                "test rel L2",
                f"zero-shot rel L2 (s = {config['super_resolution']})",
            ],
            [
                [
                    r["library"],
                    r["parameters"],
                    r["epoch_s"],
                    r["epoch_cpu_s"],
                    r["test_rel_l2"],
                    r["test_rel_l2_super"],
                ]
                for r in rows
            ],
        )
    )
    if len(rows) == 2:
        kutta, other = rows
        out["ratios"] = {
            "epoch_time_kutta_over_neuralop": ratio(kutta["epoch_s"], other["epoch_s"]),
            "test_error_kutta_over_neuralop": ratio(kutta["test_rel_l2"], other["test_rel_l2"]),
        }
        print(
            "ratios kutta / neuralop: time per epoch "
            f"{out['ratios']['epoch_time_kutta_over_neuralop']:.3f}, test error "
            f"{out['ratios']['test_error_kutta_over_neuralop']:.3f}"
        )
    write_json(args.json, out)
    return out


if __name__ == "__main__":
    main()
