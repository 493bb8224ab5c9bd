"""`spendlog db prune --before DATE`: raw calls before the date go, in batches; the hourly and daily
rollups stay byte for byte, so every grouped total over pruned months is what it was (SQLite and
PostgreSQL); apps writing meanwhile lose nothing; `db status` shows the oldest call and rollup hour;
``db.prune.range_pruned`` tells a per-call reader that a range was pruned."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from helpers import make_record
from sqlalchemy import func, select

from spendlog.db.engine import make_engine
from spendlog.db.migrate import upgrade
from spendlog.db.models import Completion, RollupDaily, RollupHourly, RollupTagDays, RollupTags, RollupTagsDaily
from spendlog.db.periods import floor_hour
from spendlog.db.prune import prune_before, pruned_until, range_pruned
from spendlog.db.queries import Filters, grouped_totals, plan_grouped
from spendlog.db.store import insert_records

UTC = timezone.utc
START = datetime(2025, 1, 1, tzinfo=UTC)
CUTOFF = datetime(2025, 3, 1, tzinfo=UTC)
MONTHS = [(datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 2, 1, tzinfo=UTC)),
          (datetime(2025, 2, 1, tzinfo=UTC), datetime(2025, 3, 1, tzinfo=UTC)),
          (datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 4, 1, tzinfo=UTC))]


def _records(n: int = 600) -> list[dict]:
    """Calls spread over January to March 2025, every few hours, varied models, apps, costs."""
    out = []
    for i in range(n):
        ok = i % 9 != 4
        out.append(make_record(
            created_at=START + timedelta(hours=3.6 * i, minutes=i % 60), model=f"m{i % 3}", app=f"app{i % 4}",
            user=f"u{i % 5}", status_code=200 if ok else 500, error_type=None if ok else "http_500",
            cost_usd=Decimal(i + 1) * Decimal("0.000001234567") if ok else None, prompt_tokens=10 + i,
            completion_tokens=i, total_tokens=10 + 2 * i, latency_ms=100 + i,
            tags={"team": f"t{i % 3}", "customer": f"c{i % 7}"} if i % 4 else None))
    return out


def _ledger(url: str, records: list[dict]):
    engine = make_engine(url, pool=False)
    upgrade(engine)
    with engine.begin() as conn:
        insert_records(conn, records)
    return engine


def _rollup(conn) -> list[list[tuple]]:
    """The hourly and the daily rollups, the tag ones too, every row as stored, in key order."""
    return [[tuple(r) for r in conn.execute(select(table).order_by(*table.primary_key.columns))]
            for table in (RollupHourly.__table__, RollupDaily.__table__, RollupTags.__table__,
                          RollupTagsDaily.__table__, RollupTagDays.__table__)]


def _month_totals(conn) -> list[list[dict]]:
    return [list(grouped_totals(conn, Filters(start=lo, end=hi), by, "UTC"))
            for lo, hi in MONTHS for by in (["day", "model", "app", "user"], ["week", "tag:customer"])]


def test_prune_keeps_every_pruned_months_totals_exactly(db_url):
    records = _records()
    engine = _ledger(db_url, records)
    try:
        with engine.connect() as conn:
            rollup, totals = _rollup(conn), _month_totals(conn)
            assert pruned_until(conn) is None and not range_pruned(conn, MONTHS[0][0], MONTHS[0][1])
        old = sum(1 for r in records if r["created_at"] < CUTOFF)
        assert prune_before(engine, CUTOFF, batch=37) == old  # many batches, one short last one
        with engine.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(Completion)) == len(records) - old
            assert conn.scalar(select(func.min(Completion.created_at))) >= CUTOFF
            assert _rollup(conn) == rollup  # byte for byte, the daily rollup too
            assert len(rollup[1]) > 0 and len(rollup[4]) > 0
            # the pruned months' tag totals by week come from rollup_tag_days
            assert "tag_days" in {p.source for p in plan_grouped(conn, Filters(start=MONTHS[0][0], end=MONTHS[0][1]),
                                                                 ["week", "tag:customer"])}
            after = _month_totals(conn)
            assert repr(after) == repr(totals) and sum(len(m) for m in after[:2]) > 0
            first_kept = min(r["created_at"] for r in records if r["created_at"] >= CUTOFF)
            assert pruned_until(conn) == floor_hour(first_kept)  # where the raw calls now begin
            assert range_pruned(conn, MONTHS[0][0], MONTHS[0][1]) and range_pruned(conn, None, None)
            assert range_pruned(conn, datetime(2025, 2, 28, 23, 30, tzinfo=UTC), datetime(2025, 3, 2, tzinfo=UTC))
            assert not range_pruned(conn, CUTOFF, MONTHS[2][1])
            assert not range_pruned(conn, datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 12, 1, tzinfo=UTC))
        assert prune_before(engine, CUTOFF) == 0  # again: nothing left to delete
    finally:
        engine.dispose()


def test_prune_while_an_app_writes_loses_nothing(db_url):
    records = _records(400)
    engine = _ledger(db_url, records)
    written: list[str] = []
    done = threading.Event()

    def app() -> None:  # new calls, each in its own transaction, while the prune runs
        writer = make_engine(db_url, pool=False)
        try:
            while not done.is_set() or len(written) < 20:
                rec = make_record(created_at=datetime.now(UTC), cost_usd=Decimal("0.01"))
                with writer.begin() as conn:
                    insert_records(conn, [rec])
                written.append(rec["id"])
        finally:
            writer.dispose()

    thread = threading.Thread(target=app)
    thread.start()
    try:
        pruned = prune_before(engine, CUTOFF, batch=10)
    finally:
        done.set()
        thread.join(60)
    try:
        with engine.connect() as conn:
            ids = set(conn.scalars(select(Completion.id)))
        assert set(written) <= ids
        kept = {r["id"] for r in records if r["created_at"] >= CUTOFF}
        assert ids == kept | set(written)
        assert pruned == len(records) - len(kept)
    finally:
        engine.dispose()


def _spendlog(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spendlog", *args], capture_output=True, text=True,
                          env=dict(os.environ), timeout=120)


def test_the_command_asks_first_then_prunes_and_status_shows_the_oldest(sqlite_url):
    records = _records()
    _ledger(sqlite_url, records).dispose()
    old = sum(1 for r in records if r["created_at"] < CUTOFF)

    ask = _spendlog("db", "prune", "--before", "2025-03-01", "--db", sqlite_url)
    assert ask.returncode == 0, ask.stderr
    assert ask.stdout.startswith(f"{old:,} calls were created before 2025-03-01 00:00 UTC; run again with --yes")
    status = json.loads(_spendlog("db", "status", "--json", "--db", sqlite_url).stdout)
    assert status["rows"] == len(records)  # asking deleted nothing

    out = _spendlog("db", "prune", "--before", "2025-03-01", "--yes", "--db", sqlite_url)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"deleted {old:,} calls created before 2025-03-01 00:00 UTC; hourly rollups kept")
    status = json.loads(_spendlog("db", "status", "--json", "--db", sqlite_url).stdout)
    first_kept = min(r["created_at"] for r in records if r["created_at"] >= CUTOFF)
    assert status["rows"] == len(records) - old
    assert datetime.fromisoformat(status["oldest_call"]) == first_kept
    assert datetime.fromisoformat(status["oldest_rollup_hour"]) == START
    text = _spendlog("db", "status", "--db", sqlite_url).stdout
    assert f"oldest:    call {first_kept.isoformat()}; rollup hour {START.isoformat()}" in text


@pytest.mark.parametrize("value", ["2025-13-01", "March", ""])
def test_a_bad_date_is_one_line_exit_2(sqlite_url, value):
    out = _spendlog("db", "prune", "--before", value, "--db", sqlite_url)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spendlog: error: --before") and "YYYY-MM-DD" in lines[0]


def test_rebuild_rollups_after_a_prune_keeps_the_pruned_hours(db_url):
    """`db rebuild-rollups` recomputes the hours it still has calls for and leaves the pruned hours'
    rollup as it was: their calls are gone, so the rollup is their only record."""
    from spendlog.db.store import rebuild_rollups

    records = _records()
    engine = _ledger(db_url, records)
    try:
        prune_before(engine, CUTOFF, batch=100)
        with engine.connect() as conn:
            rollup, totals = _rollup(conn), _month_totals(conn)
        with engine.begin() as conn:
            assert rebuild_rollups(conn, chunk_size=50) == sum(1 for r in records if r["created_at"] >= CUTOFF)
        with engine.connect() as conn:
            assert _rollup(conn) == rollup
            assert _month_totals(conn) == totals
            assert sum(t["requests"] for t in totals[0]) > 0  # January is still there, from the rollup alone
    finally:
        engine.dispose()


def test_a_per_call_export_over_a_pruned_range_says_so_in_one_line(sqlite_url):
    """The per-call file over pruned months lacks those calls: the export says so on stderr (one line)
    instead of handing over a short file silently; a range after the cutoff, or a grouped export, says nothing."""
    from click.testing import CliRunner

    from spendlog.cli import cli

    records = _records()
    engine = _ledger(sqlite_url, records)
    prune_before(engine, CUTOFF, batch=100)
    engine.dispose()

    def export(*args):
        result = CliRunner().invoke(cli, ["export", "--db", sqlite_url, *args])
        assert result.exit_code == 0, result.output
        return result.stderr

    said = export("--by", "call", "--from", "2025-01-15", "--to", "2025-03-15")
    lines = [line for line in said.splitlines() if line.strip()]
    with make_engine(sqlite_url).connect() as conn:
        kept_from = floor_hour(conn.scalar(select(func.min(Completion.created_at))))
    assert kept_from >= CUTOFF
    assert len(lines) == 1 and "pruned" in lines[0] and f"{kept_from:%Y-%m-%d %H:%M} UTC" in lines[0], said
    assert export("--by", "call", "--from", "2025-03-02") == ""
    assert export("--by", "day,model", "--from", "2025-01-15", "--to", "2025-03-15") == ""
