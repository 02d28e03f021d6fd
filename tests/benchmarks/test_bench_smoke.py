"""Smoke tests: every benchmark script of the ODE core runs end to end in its --quick configuration.

They keep the benchmarks from rotting as the API moves, and check that what the scripts measure is
sane (the solvers agree with each other and with the reference solutions they compute).
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH_DIR = Path(__file__).resolve().parents[2] / "benchmarks"


def load(name: str):
    """Import ``benchmarks/<name>.py`` as a module (the folder is not a package)."""
    if str(BENCH_DIR) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR))
    module_name = f"kutta_bench_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, BENCH_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def run_quick(module, *extra: str) -> dict:
    return module.main(["--quick", *extra])


def test_overhead_quick_runs_and_libraries_agree(capsys):
    results = run_quick(load("bench_ode_overhead"))["results"]
    assert {(r["grad"], r["batch"]) for r in results} == {(False, 4), (True, 4)}
    for result in results:
        assert result["bare_call_s"] > 0
        libraries = {row["library"] for row in result["rows"]}
        expected = {"kutta", "kutta.solve PI", "torchdiffeq", "torchode"} | (
            set() if result["grad"] else {"scipy RK45"}
        )
        assert libraries == expected
        for row in result["rows"]:
            assert row["nfe"] > 0 and row["wall_s"] > 0
            assert math.isfinite(row["overhead"]) and row["overhead"] > 0
            # rtol 1e-3 on an O(1) state over t in [0, 1]: all libraries land close together
            assert row["max_abs_diff"] < 1e-3, row
    assert "overhead" in capsys.readouterr().out


def test_detest_references_match_exact_solutions():
    bench = load("bench_detest")
    for problem in bench.PROBLEMS:
        if problem.exact is None:
            continue
        np.testing.assert_allclose(problem.exact(0.0), problem.y0, atol=1e-15)
        np.testing.assert_allclose(bench.reference(problem, 20.0), problem.exact(20.0), atol=1e-9)


def test_detest_quick_runs(tmp_path):
    plot = tmp_path / "work_precision.png"
    out = run_quick(load("bench_detest"), "--plot", str(plot))
    assert plot.stat().st_size > 0
    rows = out["work_precision"]
    assert {r["problem"] for r in rows} == {"A2", "B5", "D5"}
    assert len(rows) == 3 * len(load("bench_detest").WORK_PRECISION_SOLVERS)
    for r in rows:
        assert r["nfe"] > 0 and r["wall_s"] > 0
        assert r["error"] < 1e-2, r  # tol 1e-4 over t in [0, 2]
    for r in out["controllers"]:
        for name in (
            "torchdiffeq I",
            "kutta default",
            "kutta I (p 0, i 1)",
            "kutta PI (p 0.2, i 0.65)",
        ):
            assert r[name]["accepted"] > 0
    assert len(out["totals"]) == 6


def test_per_sample_quick_runs():
    out = run_quick(load("bench_per_sample"))
    names = {r["solver"] for r in out["rows"]}
    assert {"kutta per_sample I", "torchode I", "kutta shared I"} <= names
    for r in out["rows"]:
        assert r["nfe_max"] >= r["nfe_mean"] >= r["nfe_min"] > 0
        assert r["max_error"] < 1e-4, r
    # issue 2: a sample's result must not depend on what else is in the batch
    assert out["batch_independence_max_diff"] < 1e-12


def test_run_all_discovers_the_scripts_in_order():
    run_all = load("run_all")
    names = [p.name for p in run_all.discover()]
    assert names == sorted(names)
    assert {"bench_detest.py", "bench_ode_overhead.py", "bench_per_sample.py"} <= set(names)
    assert [p.name for p in run_all.discover(["overhead"])] == ["bench_ode_overhead.py"]
    assert run_all.main(["--only", "no-such-benchmark"]) == 1


@pytest.mark.parametrize("x, expected", [(0.5, "0.5"), (None, "-"), (float("nan"), "-"), (3, "3")])
def test_table_formatting(x, expected):
    common = load("common")
    assert common.fmt(x) == expected
    assert common.ratio(1.0, 0.0) != common.ratio(1.0, 0.0)  # NaN, not an exception


def test_peak_rss_sees_a_large_allocation():
    import torch

    common = load("common")
    _, idle_mib, _ = common.peak_rss_mib(lambda: None)
    _, peak_mib, exact = common.peak_rss_mib(lambda: torch.ones(64 * 2**20 // 4).sum())  # 64 MiB
    assert peak_mib >= 60
    if exact:  # the high-water mark was reset, so the allocation shows up above the idle peak
        assert peak_mib - idle_mib >= 60


def test_fno_quick_runs():
    out = run_quick(load("bench_fno"))
    rows = {r["library"]: r for r in out["rows"]}
    assert "kutta" in rows
    for r in rows.values():
        assert r["epoch_s"] > 0
        assert math.isfinite(r["test_rel_l2"]) and math.isfinite(r["test_rel_l2_super"])
    if "neuralop" in rows:  # the same architecture
        assert rows["neuralop"]["parameters"] == rows["kutta"]["parameters"]


def test_pinn_quick_runs_and_libraries_agree(capsys):
    summary = run_quick(load("bench_pinn"))["summary"]
    assert "kutta" in summary
    for row in summary.values():
        assert row["adam_s_per_step"] > 0 and row["lbfgs_s_per_iteration"] > 0
        assert row["lbfgs_iterations"] == 20 and 0 < row["relative_l2"] < 1.5
    if "deepxde" in summary:
        # same points, same initial weights, same losses and schedule: the same optimization
        assert summary["kutta"]["final_loss"] == pytest.approx(
            summary["deepxde"]["final_loss"], rel=1e-9
        )
    assert "relative L2" in capsys.readouterr().out
