"""The writer's cost on the caller's thread and its throughput into SQLite and PostgreSQL.

    python bench/bench_writer.py [--records 50000]
Prints a table: µs per submit() on the caller's thread (median and p99 of batches of 1,000), and
rows/s from the first submit until flush() returns.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from helpers import make_record
from sqlalchemy import create_engine, text

from spendlog.db.writer import Writer

PG = os.environ.get("SPENDLOG_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def run(url: str, n: int) -> tuple[float, float, float]:
    writer = Writer(url)
    writer.submit(make_record())
    writer.flush(30)  # schema ready, thread started
    records = [make_record() for _ in range(n)]
    per_batch = []
    started = time.perf_counter()
    for i in range(0, n, 1000):
        t = time.perf_counter_ns()
        for r in records[i : i + 1000]:
            writer.submit(r)
        per_batch.append((time.perf_counter_ns() - t) / 1000 / 1000)
    writer.flush(300)
    elapsed = time.perf_counter() - started
    writer.close()
    per_batch.sort()
    return statistics.median(per_batch), per_batch[int(len(per_batch) * 0.99) - 1], n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000, help="records per backend")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["SPENDLOG_DATA_DIR"] = tmp
        rows.append(("sqlite", *run(f"sqlite:///{tmp}/bench.db", args.records)))
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine(PG)
        try:
            with admin.begin() as c:
                c.execute(text(f"CREATE SCHEMA {schema}"))
            rows.append(("postgresql", *run(f"{PG}?options=-csearch_path%3D{schema}", args.records)))
        except Exception as exc:  # noqa: BLE001
            print(f"postgresql skipped: {exc}", file=sys.stderr)
        finally:
            with admin.begin() as c:
                c.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
    print(f"\nwriter: {args.records:,} records per backend, {os.cpu_count()} cores")
    print("| backend | submit() µs median | submit() µs p99 | rows/s to disk |")
    print("|---|---|---|---|")
    for name, med, p99, rate in rows:
        print(f"| {name} | {med:.2f} | {p99:.2f} | {rate:,.0f} |")


if __name__ == "__main__":
    main()
