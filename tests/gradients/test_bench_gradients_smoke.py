"""benchmarks/bench_gradients.py runs in its quick configuration, and what it measures is sane."""

import importlib.util
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_gradients.py"


def _load():
    sys.path.insert(0, str(BENCH.parent))
    spec = importlib.util.spec_from_file_location("kutta_bench_gradients", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_quick_nfe_and_time_parts_run_and_agree_with_torchdiffeq():
    bench = _load()
    results = bench.main(["--quick", "--part", "nfe"])
    rows = results["nfe"]
    for lib in {r["library"] for r in rows}:
        full = next(r for r in rows if r["library"] == lib and not r["seminorm"])
        semi = next(r for r in rows if r["library"] == lib and r["seminorm"])
        assert semi["backward_nfe"] <= full["backward_nfe"]
    assert all(r["grad_rel_diff_vs_torchdiffeq"] < 1e-4 for r in rows)
    timing = bench.main(["--quick", "--part", "time"])["time"]
    assert set(timing) == {
        "kutta odeint_adjoint",
        "kutta.solve Adjoint",
        "torchdiffeq odeint_adjoint",
    }
