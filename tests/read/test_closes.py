"""Month close on SQLite and PostgreSQL (issue 17): `spendlog close` keeps a month's totals with a
checksum; rows that arrive after it are late; `export --as-closed` stays byte-identical after they
arrive and `export --adjustments` lists exactly them; reopening is recorded; mistakes are one line."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from click.testing import CliRunner
from helpers import make_record
from sqlalchemy import update

from spendlog.cli import cli
from spendlog.db.closes import closed_totals, current_close, history, late_totals
from spendlog.db.engine import make_engine
from spendlog.db.migrate import upgrade
from spendlog.db.models import MonthCloseTotal
from spendlog.db.store import insert_records

BERLIN = "Europe/Berlin"


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout_bytes.decode(), result.stderr


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=timezone.utc)


def october() -> list[dict]:
    """October 2026 in Berlin, with its edges: 2026-09-30 22:30 UTC is October 1st there, 2026-10-31
    23:30 UTC is November 1st (CET, +01:00); unknown app, an unpriced call, an estimate, an error."""
    return [
        make_record(created_at=at(2026, 9, 30, 22, 30), cost_usd=Decimal("0.000000000001")),
        make_record(created_at=at(2026, 10, 5, 9), model="anthropic/claude-3.5-sonnet", app=None,
                    cost_usd=Decimal("1.234567890123")),
        make_record(created_at=at(2026, 10, 5, 9, 30), cost_usd=None, cost_source="missing",
                    model="fake/unknown-model", prompt_tokens=None, completion_tokens=None, total_tokens=None),
        make_record(created_at=at(2026, 10, 17, 12), user="=cmd|' /C calc'!A0", status_code=500,
                    error_type="http_500", cost_usd=None, cost_source="missing", prompt_tokens=None,
                    completion_tokens=None, total_tokens=None),
        make_record(created_at=at(2026, 10, 31, 22, 59, 59), cost_usd=Decimal("0.5")),
        make_record(created_at=at(2026, 10, 31, 23, 30), cost_usd=Decimal("7")),  # November in Berlin
        make_record(created_at=at(2026, 9, 30, 21, 59), cost_usd=Decimal("9")),  # September in Berlin
    ]


def late() -> list[dict]:
    return [
        make_record(created_at=at(2026, 10, 12, 8), cost_usd=Decimal("0.000148"), app="late-app"),
        make_record(created_at=at(2026, 10, 31, 22, 0), cost_usd=Decimal("2.5"), model="openai/gpt-4o"),
    ]


def seed(db_url: str, records: list[dict]) -> None:
    engine = make_engine(db_url)
    upgrade(engine)
    with engine.begin() as conn:
        insert_records(conn, records)
    engine.dispose()


def export(db_url: str, *args: str) -> str:
    code, out, err = run("export", "--db", db_url, *args)
    assert (code, err) == (0, ""), out
    return out


OCTOBER = ("--from", "2026-10-01", "--to", "2026-10-31", "--tz", BERLIN)


def test_a_closed_month_exports_the_same_bytes_after_late_rows_arrive(db_url):
    seed(db_url, october())
    grouped = {by: export(db_url, *OCTOBER, "--by", by) for by in ("day,model", "model,app,user,key", "month")}
    focus = export(db_url, *OCTOBER, "--by", "day,model,app", "--format", "focus")
    code, out, err = run("close", "2026-10", "--tz", BERLIN, "--note", "October report", "--db", db_url)
    assert (code, err) == (0, ""), out
    assert "closed 2026-10 (Europe/Berlin): 5 calls, 1.734567890124 USD" in out
    as_closed = {by: export(db_url, "--as-closed", "2026-10", "--by", by) for by in grouped}
    assert as_closed == grouped  # right after the close: the month's grouped export, byte for byte
    assert export(db_url, "--as-closed", "2026-10") == grouped["day,model"]  # --by's default

    arrivals = late()
    assert export(db_url, "--as-closed", "2026-10", "--by", "day,model,app", "--format", "focus") == focus
    seed(db_url, arrivals)  # a spool replayed after the close, a late writer
    for by, text in grouped.items():
        assert export(db_url, "--as-closed", "2026-10", "--by", by) == text
    assert export(db_url, "--as-closed", "2026-10", "--by", "day,model,app", "--format", "focus") == focus
    assert export(db_url, *OCTOBER, "--by", "day,model,app", "--format", "focus") != focus
    assert export(db_url, *OCTOBER, "--by", "month") != grouped["month"]  # the ledger itself moved

    calls = list(csv.DictReader(io.StringIO(export(db_url, "--adjustments", "2026-10"))))
    assert sorted(r["id"] for r in calls) == sorted(r["id"] for r in arrivals)
    adjust = list(csv.DictReader(io.StringIO(export(db_url, "--adjustments", "2026-10", "--by", "month"))))
    now = list(csv.DictReader(io.StringIO(export(db_url, *OCTOBER, "--by", "month"))))
    closed = list(csv.DictReader(io.StringIO(grouped["month"])))
    assert Decimal(adjust[0]["cost_usd"]) == Decimal("2.500148")
    assert Decimal(now[0]["cost_usd"]) == Decimal(closed[0]["cost_usd"]) + Decimal(adjust[0]["cost_usd"])
    assert int(now[0]["requests"]) == int(closed[0]["requests"]) + 2
    lines = [json.loads(line) for line in export(db_url, "--adjustments", "2026-10", "--format", "jsonl").splitlines()]
    assert {r["cost_usd"] for r in lines} == {"0.000148", "2.5"}

    code, out, _ = run("close", "--list", "--db", db_url)
    assert code == 0
    (row,) = [line for line in out.splitlines() if line.startswith("2026-10")]
    assert row.split()[:3] == ["2026-10", "close", BERLIN]
    assert "1.734567890124" in row and "2.500148" in row and "October report" in row


def test_the_checksum_catches_totals_changed_after_the_close(db_url):
    seed(db_url, october())
    assert run("close", "2026-10", "--tz", BERLIN, "--db", db_url)[0] == 0
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(update(MonthCloseTotal).where(MonthCloseTotal.requests == 1).values(requests=2))
    engine.dispose()
    code, out, err = run("export", "--as-closed", "2026-10", "--db", db_url)
    assert code == 1 and out == ""
    assert err.strip().endswith("do not match the checksum taken at its close "
                                f"(changed since {_closed_at(db_url)})")


def _closed_at(db_url: str) -> str:
    engine = make_engine(db_url)
    with engine.connect() as conn:
        entry = current_close(conn, "2026-10")
    engine.dispose()
    return f"{entry.recorded_at:%Y-%m-%d %H:%M} UTC"


def test_reopen_is_recorded_and_a_new_close_takes_the_late_rows_in(db_url):
    seed(db_url, october())
    assert run("close", "2026-10", "--tz", BERLIN, "--db", db_url)[0] == 0
    seed(db_url, late())
    code, out, err = run("close", "2026-10", "--reopen", "--note", "late spool", "--db", db_url)
    assert (code, err) == (0, ""), out
    code, _, err = run("export", "--as-closed", "2026-10", "--db", db_url)
    assert code == 2 and err.count("\n") == 1 and "2026-10 is not closed" in err
    assert run("close", "2026-10", "--tz", BERLIN, "--db", db_url)[0] == 0
    engine = make_engine(db_url)
    with engine.connect() as conn:
        entries = history(conn, "2026-10")
        assert [(e.action, e.note) for e in entries] == [("close", None), ("reopen", "late spool"), ("close", None)]
        assert entries[1].reopens == entries[0].id
        assert next(closed_totals(conn, entries[0], ()))["requests"] == 5  # the first close's totals stay
        assert next(closed_totals(conn, entries[2], ()))["requests"] == 7
        assert late_totals(conn, entries[2])["requests"] == 0
    engine.dispose()
    assert export(db_url, "--adjustments", "2026-10", "--by", "month").count("\n") == 1  # the header alone


@pytest.mark.parametrize("args, message", [
    (("close", "2026-13"), "MONTH must be a month as YYYY-MM, like 2026-11, not '2026-13'"),
    (("close", "October"), "MONTH must be a month as YYYY-MM"),
    (("close", "2026-10", "--tz", "Mars/Olympus"), "--tz: "),
    (("close", "2999-01"), "2999-01 has not ended yet in UTC"),
    (("close",), "give a MONTH (YYYY-MM), or --list"),
    (("close", "2026-09", "--reopen"), "2026-09 is not closed"),
    (("export", "--as-closed", "2026-09"), "--as-closed 2026-09 is not closed"),
    (("export", "--adjustments", "2026-9x"), "--adjustments must be a month as YYYY-MM"),
    (("export", "--as-closed", "2026-10", "--from", "2026-10-01"), "--as-closed is a whole closed month"),
    (("export", "--as-closed", "2026-10", "--by", "week"), "--as-closed groups by day, month, model"),
    (("export", "--as-closed", "2026-10", "--adjustments", "2026-10"), "ask for one"),
    (("export", "--as-closed", "2026-10", "--by", "model", "--format", "focus"), "needs exactly one of day or month"),
])
def test_mistakes_are_one_line_and_exit_2(sqlite_url, args, message):
    seed(sqlite_url, october())
    code, _, err = run(*args, "--db", sqlite_url)
    assert code == 2, err
    assert err.count("\n") == 1 and message in err


def test_closing_in_a_ledger_that_is_not_there_creates_none(tmp_path):
    missing = tmp_path / "typo.db"
    code, _, err = run("close", "2026-10", "--db", f"sqlite:///{missing}")
    assert code == 2 and err.count("\n") == 1 and "no spendlog database at" in err
    assert not missing.exists()


def test_closing_a_closed_month_or_in_another_zone_is_one_line(db_url):
    seed(db_url, october())
    assert run("close", "2026-10", "--tz", BERLIN, "--db", db_url)[0] == 0
    code, _, err = run("close", "2026-10", "--db", db_url)
    assert code == 2 and err.count("\n") == 1 and "2026-10 is closed already" in err
    code, _, err = run("export", "--as-closed", "2026-10", "--tz", "UTC", "--db", db_url)
    assert code == 2 and "--tz: 2026-10 was closed in Europe/Berlin" in err


def test_a_spool_replayed_after_the_close_is_late(db_url):
    from helpers import spool_line

    from spendlog.db.engine import resolve_url
    from spendlog.db.writer import get_writer, spool_path

    seed(db_url, october())
    waiting = make_record(created_at=at(2026, 10, 20, 10), cost_usd=Decimal("0.03"), app="spooled")
    spool_path(resolve_url(db_url)).write_text(spool_line(waiting))  # written during an outage in October
    assert run("close", "2026-10", "--tz", BERLIN, "--db", db_url)[0] == 0
    writer = get_writer(db_url)
    writer.submit(make_record())  # today's call: its batch replays the spool before it counts as done
    assert writer.flush(10)
    assert [r["id"] for r in csv.DictReader(io.StringIO(export(db_url, "--adjustments", "2026-10")))] == [waiting["id"]]
    closed = list(csv.DictReader(io.StringIO(export(db_url, "--as-closed", "2026-10", "--by", "app"))))
    assert "spooled" not in {r["app"] for r in closed}


def test_a_close_beside_a_busy_writer_puts_every_row_in_the_totals_or_in_the_late_rows(db_url):
    """Inserts of October rows run while the month is closed: each row is in the closed totals or
    late, never both and never neither (the close takes the writers' lock while it reads)."""
    import threading

    from spendlog.db.closes import close_month
    from spendlog.db.engine import file_lock, write_lock_path

    seed(db_url, october())
    engine = make_engine(db_url)
    stop = threading.Event()
    written = []

    def write():
        while not stop.is_set():
            batch = [make_record(created_at=at(2026, 10, 9, 10), cost_usd=Decimal("0.01")) for _ in range(5)]
            with file_lock(write_lock_path(engine.url), optional=True, timeout=30), engine.begin() as conn:
                insert_records(conn, batch)
            written.extend(batch)

    thread = threading.Thread(target=write)
    thread.start()
    try:
        while len(written) < 50:
            stop.wait(0.01)
        entry, _ = close_month(engine, "2026-10", BERLIN, by="test")
        count = len(written)
        while len(written) < count + 50:
            stop.wait(0.01)
    finally:
        stop.set()
        thread.join()
    with engine.connect() as conn:
        closed = next(closed_totals(conn, entry, ()))["requests"]
        late_calls = late_totals(conn, entry)["requests"]
    engine.dispose()
    assert late_calls >= 50 and closed >= 5 + 50
    assert closed + late_calls == 5 + len(written)


def test_the_demo_closes_the_past_month_and_two_records_arrive_late(sqlite_url):
    from spendlog.demo.closes import LATE_RECORDS, close_past_month
    from spendlog.demo.run import backfill

    end = at(2026, 11, 3, 12)
    backfill(sqlite_url, 5, per_day=60, end=end)
    assert close_past_month(sqlite_url, 2, end=end) is None  # the backfill of 2 days stays in November
    assert close_past_month(sqlite_url, 5, end=end) == "2026-10"
    late_calls = list(csv.DictReader(io.StringIO(export(sqlite_url, "--adjustments", "2026-10"))))
    assert len(late_calls) == LATE_RECORDS
    assert all(r["created_at"].startswith("2026-10-31") and Decimal(r["cost_usd"]) > 0 for r in late_calls)
    code, out, _ = run("close", "--list", "--db", sqlite_url)
    assert code == 0 and "spendlog demo" in out
