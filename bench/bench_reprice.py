"""How fast ``spendlog reprice`` re-prices a ledger (db/reprice.py) on SQLite.

    python bench/bench_reprice.py [--rows 1000000] [--batch 50000]

A SQLite ledger of ``--rows`` calls without cost to a self-hosted model nothing prices (cost_source
'missing'), spread over 60 days and six apps, is written directly (``sqlite3`` executemany, then
``rebuild_rollups``). Then ``reprice`` runs with a prices file that prices the model: every row
changes (an estimate, its list price, what priced it) and the rollup is corrected batch by batch,
the worst case. A second run with the same prices changes nothing (the usual case after an upgrade
that moved no price). Target: >= 50,000 rows/s. Prints wall and process CPU time for both.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sqlite3
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone

from sqlalchemy import func, select

from spendlog.db.engine import make_engine
from spendlog.db.migrate import upgrade
from spendlog.db.models import RollupHourly
from spendlog.db.pricing import load_price_book
from spendlog.db.reprice import BATCH_SIZE, reprice
from spendlog.db.store import rebuild_rollups

PRICES = '[[price]]\nmodel = "self-hosted/llama-70b"\ninput = "0.30"\noutput = "0.30"\ncached_input = "0.1"\n'


def build(path: str, rows: int) -> None:
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    start = datetime(2026, 10, 1, tzinfo=timezone.utc)
    step = 60 * 24 * 3600 / rows
    db = sqlite3.connect(path)
    cols = ("id, created_at, endpoint, upstream, model, stream, status_code, prompt_tokens, completion_tokens, "
            "total_tokens, cached_tokens, cost_source, latency_ms, app, user")

    def make(i: int):
        at = (start + timedelta(seconds=i * step)).strftime("%Y-%m-%d %H:%M:%S.%f")
        p, c = 200 + i % 3000, 20 + i % 700
        return (str(uuid.UUID(int=i)), at, "/v1/chat/completions", "10.0.0.5:8000", "self-hosted/llama-70b", 0,
                200, p, c, p + c, (i % 5) * 30, "missing", 100 + i % 900, f"app{i % 6}", f"user{i % 40}")

    chunk = 100_000
    for lo in range(0, rows, chunk):
        db.executemany(f"INSERT INTO completions ({cols}) VALUES ({', '.join('?' * 15)})",
                       [make(i) for i in range(lo, min(rows, lo + chunk))])
    db.commit()
    db.close()
    engine = make_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        rebuild_rollups(conn)
    engine.dispose()


def timed(engine, book, batch: int):
    w0, c0 = time.perf_counter(), time.process_time()
    result = reprice(engine, book, batch_size=batch)
    return result, time.perf_counter() - w0, time.process_time() - c0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=BATCH_SIZE, help=f"rows per batch (default reprice's own, {BATCH_SIZE:,})")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="spendlog-bench-reprice-")
    path = os.path.join(tmp, "ledger.db")
    t0 = time.perf_counter()
    build(path, args.rows)
    print(f"built {args.rows:,} missing rows in {time.perf_counter() - t0:.1f} s")
    prices = os.path.join(tmp, "prices.toml")
    with open(prices, "w") as f:
        f.write(PRICES)
    book = load_price_book(prices)
    engine = make_engine(f"sqlite:///{path}")
    first, wall1, cpu1 = timed(engine, book, args.batch)
    assert first.changed == first.rows == args.rows, first
    with engine.connect() as conn:
        assert conn.scalar(select(func.sum(RollupHourly.calls_missing_cost))) == 0
        assert conn.scalar(select(func.sum(RollupHourly.estimated_cost_usd))) == first.new_total
    second, wall2, cpu2 = timed(engine, book, args.batch)
    assert second.changed == 0 and second.new_total == first.new_total
    engine.dispose()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"SQLite {sqlite3.sqlite_version}; load average {os.getloadavg()[0]:.1f} (1 min) at the end")
    print("| run | rows | changed | wall s | rows/s (wall) | CPU s | rows/s (CPU) |")
    print("|---|---|---|---|---|---|---|")
    for name, r, wall, cpu in (("every row priced anew", first, wall1, cpu1), ("nothing to change", second, wall2, cpu2)):
        print(f"| {name} | {r.rows:,} | {r.changed:,} | {wall:.1f} | {r.rows / wall:,.0f} | {cpu:.1f} | "
              f"{r.rows / cpu:,.0f} |")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"new total {first.new_total} USD; batches of {args.batch:,}; peak RSS {peak:.0f} MB; target >= 50,000 rows/s")


if __name__ == "__main__":
    main()
