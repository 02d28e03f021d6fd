"""benchmarks/bench_models.py: its --quick run, and the claims its tables rest on.

The periodic table compares three ways of solving a Latent ODE on per-series time grids; they
are the same model, so on the same batch (same weights, same posterior draws) their losses must
agree to solver tolerance. The CNF table runs the same flow through torchdiffeq; that replica
must compute what ``CNF.log_prob`` computes.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from kutta.models import CNF, LatentODE

BENCH_DIR = Path(__file__).resolve().parents[2] / "benchmarks"


def load_bench():
    if str(BENCH_DIR) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR))
    name = "kutta_bench_bench_models"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, BENCH_DIR / "bench_models.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def ragged_periodic(num_series=5, num_points=9, observed=4):
    """Per-series grids (every series starts at t = 0), half of each series observed."""
    bench = load_bench()
    full = bench.periodic_per_series(num_series, num_points, 5.0, seed=3, dtype=torch.float64)
    return bench.interpolation_split(full, observed, seed=4)


def latent_ode(batch_mode="shared", union_grid=False, poisson=False, z0_time=0.0, tol=1e-9):
    torch.manual_seed(0)
    return LatentODE(
        1,
        latent_dim=3,
        encoder_hidden=6,
        decoder_hidden=6,
        poisson=poisson,
        z0_time=z0_time,
        rtol=tol,
        atol=tol,
        batch_mode=batch_mode,
        union_grid=union_grid,
    ).double()


def loss_of(model, observed, target):
    torch.manual_seed(1)  # the same posterior draw for every model
    return model.loss(observed, target, n_samples=2).item()


@pytest.mark.parametrize("poisson", [False, True])
def test_per_sample_union_and_shared_spans_give_the_same_loss(poisson):
    observed, target = ragged_periodic()
    assert not bool((target.times == target.times[:1]).all())  # the grids really differ
    losses = {
        (mode, union): loss_of(latent_ode(mode, union, poisson), observed, target)
        for mode in ("per_sample", "shared")
        for union in (False, True)
    }
    reference = losses[("per_sample", False)]
    for key, value in losses.items():
        assert value == pytest.approx(reference, rel=1e-8), key
    # and at a loose tolerance they still agree to about that tolerance
    loose = [
        loss_of(latent_ode(mode, union, poisson, tol=1e-4), observed, target)
        for mode, union in (("per_sample", False), ("shared", True))
    ]
    assert loose[1] == pytest.approx(loose[0], rel=1e-3)


def count_field_calls(model, observed, target):
    calls = []
    handle = model.dynamics.register_forward_pre_hook(lambda *_: calls.append(1))
    loss_of(model, observed, target)
    handle.remove()
    return len(calls)


def test_union_grid_decodes_in_one_solve_and_falls_back_without_a_common_start():
    observed, target = ragged_periodic(num_series=6, num_points=12, observed=6)
    own = count_field_calls(latent_ode(tol=1e-6), observed, target)
    union = count_field_calls(latent_ode(union_grid=True, tol=1e-6), observed, target)
    # own grids: one solve per span (11 spans, >= 6 calls each); the union: one solve
    assert union < own / 3
    # z0 at each series' first observation: the starts differ, so the series' own grids are used
    assert observed.times[:, 0].unique().numel() > 1
    models = [latent_ode(union_grid=union, z0_time=None) for union in (False, True)]
    assert count_field_calls(models[0], observed, target) == count_field_calls(
        models[1], observed, target
    )
    assert loss_of(models[1], observed, target) == loss_of(models[0], observed, target)


def test_union_grid_predictions_match_the_own_grid_ones():
    observed, _ = ragged_periodic()
    query = torch.tensor(
        [[0.5, 1.0, 4.0], [0.2, 2.0, 4.5], [0.1, 1.0, 3.0], [1.0, 2, 3], [3.0, 4, 5]]
    )
    predictions = []
    for union in (False, True):
        torch.manual_seed(2)
        mean, std = latent_ode(union_grid=union).predict(observed, query.double(), n_samples=3)
        predictions.append((mean, std))
    torch.testing.assert_close(predictions[1], predictions[0], rtol=1e-7, atol=1e-9)


def test_the_torchdiffeq_replica_computes_the_models_log_prob():
    bench = load_bench()
    torch.manual_seed(0)
    flow = CNF(2, hidden=(8,), rtol=1e-9, atol=1e-9).double()
    x = torch.randn(6, 2, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(
            bench.cnf_log_prob_torchdiffeq(flow, x), flow.log_prob(x), rtol=1e-7, atol=1e-7
        )


def test_quick_run(capsys):
    out = load_bench().main(["--quick"])
    periodic = {r["variant"]: r for r in out["periodic"]["rows"]}
    assert set(periodic) == {"per_sample", "union", "shared spans", "union batch"}
    for row in periodic.values():
        assert row["epoch_wall_s"] > 0 and row["field_calls_per_epoch"] > 0
    assert out["periodic"]["first_batch_relative_spread"] < 1e-3  # float32, rtol 1e-3
    cnf = {r["library"]: r for r in out["cnf"]["rows"]}
    assert set(cnf) == {"kutta", "torchdiffeq"}
    assert cnf["kutta"]["first_loss"] == pytest.approx(cnf["torchdiffeq"]["first_loss"], rel=1e-4)
    assert cnf["kutta"]["nfe_forward_per_step"] > 0
    assert out["cnf"]["first_batch_log_prob_max_diff"] < 1e-3
    printed = capsys.readouterr().out
    assert "cnf-2d" in printed and "periodic" in printed


def test_run_all_finds_it():
    load_bench()
    spec = importlib.util.spec_from_file_location("kutta_bench_run_all_m", BENCH_DIR / "run_all.py")
    run_all = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_all)
    assert [p.name for p in run_all.discover(["models"])] == ["bench_models.py"]
