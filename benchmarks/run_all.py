"""Run every ``benchmarks/bench_*.py`` present, in name order, one after another (``make bench``).

Each script runs in its own process (so one script's memory or thread state cannot colour the
next one's numbers), with one thread for torch and the BLAS libraries. Extra arguments, such as
``--quick``, are passed on to every script. Exits non-zero if any script failed.

    .venv/bin/python benchmarks/run_all.py                 # everything
    .venv/bin/python benchmarks/run_all.py --quick         # every script's smoke configuration
    .venv/bin/python benchmarks/run_all.py --only detest   # scripts whose name contains "detest"
    .venv/bin/python benchmarks/run_all.py --only models   # bench_models.py: Latent ODE, CNF epochs
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def discover(only: list[str] | None = None) -> list[Path]:
    """The benchmark scripts to run, in name order."""
    scripts = sorted(HERE.glob("bench_*.py"))
    if only:
        scripts = [s for s in scripts if any(word in s.stem for word in only)]
    return scripts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", help="run only scripts whose name contains a word")
    args, passthrough = parser.parse_known_args(argv)
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = "1"
    failed = []
    scripts = discover(args.only)
    if not scripts:
        print("no benchmark scripts matched", file=sys.stderr)
        return 1
    for script in scripts:
        print(f"\n===== {script.name} {' '.join(passthrough)}", flush=True)
        start = time.perf_counter()
        code = subprocess.call([sys.executable, str(script), *passthrough], env=env)
        print(f"===== {script.name}: exit {code}, {time.perf_counter() - start:.1f} s", flush=True)
        if code != 0:
            failed.append(script.name)
    if failed:
        print(f"\nFAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"\nall {len(scripts)} benchmark scripts finished")
    return 0


if __name__ == "__main__":
    sys.exit(main())
