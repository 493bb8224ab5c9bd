"""Reconcile speed: a year of router activity (365 days x 50 models) against a 10M-call ledger.

    python bench/bench_reconcile.py                    # 10M calls (the ledger is generated once, kept)
    python bench/bench_reconcile.py --calls 200000     # a quick run

    python bench/bench_reconcile.py --users 20         # the export benchmark's 20 users: a 14x larger rollup

The ledger (SQLite) comes from ``bench_export.generate_sqlite`` with 50 models over 365 days: the
rows are made in SQL (INSERT ... SELECT from a recursive CTE) and the rollup is computed in SQL
with the writer's rule, because ``db.store.insert_records`` takes ~9k calls/s here (about 19
minutes for 10M). ~3% errors, ~1% calls without cost; ``--users`` users (default 1), each with one
app and one key. The reconcile reads the rollup, so its cost follows the rollup's rows in the
range, not the calls: with one user a year holds about one row per hour x model (~450k for 50
models, whatever the call count); with 20 users most calls get a row of their own (~7M at 10M
calls), and the ledger read takes ~14x longer. The script prints the rollup's size. The activity file is the ledger's
own answered calls per UTC day x model, summed from ``completions`` (not from the rollup, so it
also checks the rollup), in OpenRouter's JSON shape, with 20 rows changed on purpose: 5 day x model
rows left out (missing_in_router), 5 the ledger lacks (missing_in_ledger), 5 with one request more
(count_differs), 5 with $0.01 more (cost_differs), so the likely-cause queries run too; the bench
checks that exactly those are found.

Timed, best of ``--repeat``: ``spendlog reconcile FILE --format json -o OUT`` in a subprocess (wall,
CPU and peak RSS, start-up and imports included), and in process its two parts: reading the file
(``read_activity``) and ``reconcile()`` (ledger sums through ``grouped_totals`` from the rollup, the
comparison, the causes). Target: the command under 5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGET_SECONDS = 5.0
AROUND = "openai/gpt-4o-around-spendlog"  # a model only the router knows


def models(n: int) -> list[tuple]:
    """n models with the export benchmark's prices: its 8, then variants of them."""
    sys.path.insert(0, str(HERE))
    from bench_export import PRICES

    out = []
    for k in range(n):
        name, provider, p_in, p_out = PRICES[k % len(PRICES)]
        out.append((name if k < len(PRICES) else f"{name}-v{k // len(PRICES) + 1}", provider, p_in, p_out))
    return out


def ensure_ledger(calls: int, days: int, n_models: int, users: int, workdir: Path) -> Path:
    from bench_export import generate_sqlite

    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / f"bench-reconcile-{calls}-{days}d-{n_models}m-{users}u.db"
    marker = Path(f"{db}.ok")
    if not marker.exists():
        started = time.perf_counter()
        generate_sqlite(db, calls, days=days, models=models(n_models), users=users)
        marker.write_text(time.strftime("%Y-%m-%d"))
        print(f"  generated {calls:,} calls in {time.perf_counter() - started:.0f} s -> {db}", flush=True)
    return db


_ACTIVITY_SQL = """
SELECT substr(created_at, 1, 10), model, count(*), coalesce(sum(prompt_tokens), 0),
       coalesce(sum(completion_tokens), 0), coalesce(sum(reasoning_tokens), 0), coalesce(sum(cost_usd), 0)
FROM completions
WHERE NOT (status_code IS NULL OR status_code >= 400 OR (error_type IS NOT NULL AND error_type != 'cancelled'))
GROUP BY 1, 2 ORDER BY 1, 2
"""


def write_activity(db: Path, path: Path, seed: int = 7) -> tuple[list[dict], dict]:
    """The activity file (see the module docstring); returns its rows and the statuses expected."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    rows = []
    for day, model, n, p, c, r, pico in con.execute(_ACTIVITY_SQL):
        rows.append({"date": day, "model": model, "model_permaslug": model, "provider_name": "Bench",
                     "usage": Decimal(pico).scaleb(-12), "byok_usage_inference": 0, "requests": n,
                     "prompt_tokens": p, "completion_tokens": c, "reasoning_tokens": r})
    con.close()
    rng = random.Random(seed)
    picked = rng.sample(range(len(rows)), 15)
    expected = {}
    for i in picked[5:10]:
        rows[i]["requests"] += 1
        expected[(rows[i]["date"], rows[i]["model"])] = "count_differs"
    for i in picked[10:]:
        rows[i]["usage"] += Decimal("0.01")
        expected[(rows[i]["date"], rows[i]["model"])] = "cost_differs"
    for i in picked[:5]:
        expected[(rows[i]["date"], rows[i]["model"])] = "missing_in_router"
    kept = [r for k, r in enumerate(rows) if k not in set(picked[:5])]
    for day in rng.sample(sorted({r["date"] for r in kept}), 5):
        kept.append({**kept[0], "date": day, "model": AROUND, "model_permaslug": AROUND})
        expected[(day, AROUND)] = "missing_in_ledger"

    def literal(value) -> str:  # money as its exact decimal literal (json.dumps would go through float)
        return format(value, "f") if isinstance(value, Decimal) else json.dumps(value)

    with open(path, "w") as fh:
        fh.write('{"data":[')
        fh.write(",".join("{" + ",".join(f'"{k}":{literal(v)}' for k, v in r.items()) + "}" for r in kept))
        fh.write("]}")
    return kept, expected


def rollup_rows(db: Path) -> int:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute("SELECT count(*) FROM rollup_hourly").fetchone()[0]
    finally:
        con.close()


def _run(cmd: list[str]) -> tuple[float, float, float]:
    """Run ``cmd``; (wall seconds, CPU seconds, peak RSS in MB) of that process."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):
        raise SystemExit(f"reconcile failed ({code}): {proc.stderr.read().decode().strip()[-500:]}")
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def in_process(db: Path, activity_path: Path) -> tuple[float, float, object]:
    from spendlog.db.activity import read_activity
    from spendlog.db.engine import make_engine
    from spendlog.db.reconcile import reconcile

    t0 = time.perf_counter()
    with open(activity_path, "rb") as fh:
        activity = read_activity(fh, name="bench")
    t1 = time.perf_counter()
    engine = make_engine(f"sqlite:///{db}", readonly=True, pool=False)
    with engine.connect() as conn:
        report = reconcile(conn, activity, *activity.span)
    engine.dispose()
    return t1 - t0, time.perf_counter() - t1, report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10_000_000, help="calls in the ledger (default 10M)")
    parser.add_argument("--days", type=int, default=365, help="days of activity (default 365)")
    parser.add_argument("--models", type=int, default=50, help="models (default 50)")
    parser.add_argument("--users", type=int, default=1,
                        help="users, each with one app and one key (default 1; the rollup grows with them)")
    parser.add_argument("--repeat", type=int, default=3, help="runs; the best counts")
    parser.add_argument("--workdir", default=tempfile.gettempdir(), help="where the ledger and files go (/tmp)")
    args = parser.parse_args(argv)
    workdir = Path(args.workdir)
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}")
    db = ensure_ledger(args.calls, args.days, args.models, args.users, workdir)
    activity_path = Path(f"{db}.activity.json")
    out = Path(f"{db}.report.json")
    rows, expected = write_activity(db, activity_path)
    print(f"  activity: {len(rows):,} day x model rows ({activity_path.stat().st_size / 1e6:.1f} MB)", flush=True)
    cmd = [sys.executable, "-m", "spendlog", "reconcile", str(activity_path), "--db", f"sqlite:///{db}"]
    best = dict.fromkeys(("wall", "cpu", "json", "read", "compare"), float("inf"))
    best["rss"] = 0.0
    for _ in range(args.repeat):  # alternate, keep the best of each (the machine is shared and noisy)
        wall, cpu, rss = _run(cmd)  # the default: a table of the rows that differ
        best["wall"], best["cpu"], best["rss"] = min(best["wall"], wall), min(best["cpu"], cpu), max(best["rss"], rss)
        best["json"] = min(best["json"], _run([*cmd, "--format", "json", "-o", str(out)])[0])  # every row
        read, compare, report = in_process(db, activity_path)
        best["read"], best["compare"] = min(best["read"], read), min(best["compare"], compare)
    for found in ({(r.day.isoformat(), r.model): r.status for r in report.differing},
                  {(r["day"], r["model"]): r["status"] for r in json.loads(out.read_text())["rows"]
                   if r["status"] != "match"}):
        if found != expected:
            raise SystemExit(f"reconcile found {len(found)} differing rows, expected {len(expected)}: "
                             f"{sorted(set(found.items()) ^ set(expected.items()))[:6]}")
    explained = sum(1 for r in report.differing if r.causes)
    print(f"  found exactly the {len(expected)} rows changed on purpose ({explained} with a likely cause)")
    print("\n| calls | rollup rows | activity rows | command s (target < 5) | CPU s | peak RSS MB "
          "| --format json s | read file s | reconcile() s |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {args.calls:,} | {rollup_rows(db):,} | {len(rows):,} | {best['wall']:.2f} | {best['cpu']:.2f} | "
          f"{best['rss']:.0f} | {best['json']:.2f} | {best['read']:.2f} | {best['compare']:.2f} |")
    ok = best["wall"] < TARGET_SECONDS
    print("target met" if ok else "TARGET MISSED")
    out.unlink(missing_ok=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
