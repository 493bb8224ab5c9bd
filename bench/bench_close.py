"""Month close speed (issue 17): how long `spendlog close` holds the writers' lock, and the reads after it.

    python bench/bench_close.py                      # 1M calls over 90 days, 8 models x 20 users
    python bench/bench_close.py --calls 200000       # a quick run

The ledger (SQLite) comes from ``bench_export.generate_sqlite`` (SQL-generated calls and rollup). The
month before the ledger's last one is closed in UTC, in process, timed: ``close_month`` is the time
the writers wait (it holds ``<db>.write.lock`` and the write transaction while it reads the month's
totals per day x model x provider x app x user x key and stores them). Then 100 late calls are
written through ``insert_records``, and timed: the as-closed export (``--by day,model``, from the
stored totals, checksum checked), the adjustments (the late calls, one row each; a raw read of the
month's calls filtered on ``ingested_at``) and the same month's ordinary grouped export, for scale.
No target in the issue; the figures go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import io
import os
import sqlite3
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def _timed(fn):
    t0 = time.perf_counter()
    value = fn()
    return time.perf_counter() - t0, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000_000, help="calls in the ledger (default 1M)")
    parser.add_argument("--days", type=int, default=90, help="days of calls (default 90)")
    parser.add_argument("--workdir", default=tempfile.gettempdir(), help="where the ledger goes (/tmp)")
    args = parser.parse_args(argv)

    from bench_export import generate_sqlite
    from helpers import make_record

    from spendlog.db.closes import close_month, late_filters
    from spendlog.db.engine import make_engine
    from spendlog.db.queries import Filters
    from spendlog.db.store import insert_records
    from spendlog.report.closes import export_closed
    from spendlog.report.files import export_calls, export_grouped

    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, Python {sys.version.split()[0]}, "
          f"SQLite {sqlite3.sqlite_version}")
    db = Path(args.workdir) / f"spendlog-bench-close-{args.calls}.db"
    end = datetime.now(timezone.utc).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    t, _ = _timed(lambda: generate_sqlite(db, args.calls, days=args.days, end=end))
    print(f"  ledger: {args.calls:,} calls over {args.days} days before {end:%Y-%m-%d} in {t:.0f} s")
    month_start = (end - timedelta(days=1)).replace(day=1)
    month = month_start.strftime("%Y-%m")
    engine = make_engine(f"sqlite:///{db}")
    close_s, (entry, stored) = _timed(lambda: close_month(engine, month, "UTC", by="bench"))
    late = [make_record(created_at=month_start + timedelta(hours=i), cost_usd=Decimal("0.001")) for i in range(100)]
    with engine.begin() as conn:
        insert_records(conn, late)
    figures = {}
    with engine.connect() as conn:
        figures["as-closed export, day x model"] = _timed(
            lambda: export_closed(conn, entry, ("day", "model"), "csv", io.StringIO()))
        figures["adjustments, per call"] = _timed(lambda: export_calls(conn, late_filters(entry), "csv", io.StringIO()))
        month_filters = Filters(start=entry.start, end=entry.end)
        figures["the month's grouped export, day x model"] = _timed(
            lambda: export_grouped(conn, month_filters, ("day", "model"), "UTC", "csv", io.StringIO()))
    engine.dispose()
    if figures["adjustments, per call"][1] != 100:
        raise SystemExit(f"expected 100 late calls, found {figures['adjustments, per call'][1]}")
    print(f"\n| step ({month}, {args.calls:,}-call ledger) | s | rows |")
    print("|---|---:|---:|")
    print(f"| close (writers wait this long) | {close_s:.2f} | {stored:,} stored total rows |")
    for name, (seconds, rows) in figures.items():
        print(f"| {name} | {seconds:.2f} | {rows:,} |")
    for suffix in ("", "-wal", "-shm", ".write.lock", ".migrate.lock"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
