"""Run every benchmark in bench/ (each prints its own table) and print a closing summary.

    python bench/run_all.py            # all of them, default sizes
    python bench/run_all.py writer     # only bench_writer.py
A script listed in ``ARGS`` runs with those arguments instead of its defaults: ``bench_pg_year.py``
loads 50M calls by default (about an hour here); run_all runs it small, in a database of its own.
Figures are recorded, with the machine they came from, in docs/benchmarks.md.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ARGS = {"bench_pg_year.py": ["--rows", "100000", "--database", "spendlog_year_small", "--verify-rollups"]}


def main(argv: list[str]) -> int:
    wanted = set(argv)
    scripts = sorted(p for p in HERE.glob("bench_*.py") if not wanted or p.stem.removeprefix("bench_") in wanted)
    results = []
    for script in scripts:
        print(f"\n=== {script.name}", flush=True)
        started = time.monotonic()
        code = subprocess.call([sys.executable, str(script), *ARGS.get(script.name, [])], cwd=HERE.parent)
        results.append((script.name, code, time.monotonic() - started))
    print("\n| benchmark | exit | seconds |\n|---|---|---|")
    for name, code, secs in results:
        print(f"| {name} | {code} | {secs:.1f} |")
    return 0 if all(code == 0 for _, code, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
