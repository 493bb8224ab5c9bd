"""Issue 12, finding 9: a ledger migrated by a newer spendlog, and what the user is told.

The writer says so in one warning line and spools (retrying now and then, not per batch);
``db status`` says so; ``db upgrade`` refuses to downgrade (one line, exit 2); the dashboard
shows a banner. The same banner tells of rejected, spooled and dropped records.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

from sqlalchemy import text
from streamlit.testing.v1 import AppTest

from helpers import make_record, spool_line
from spendlog.db.engine import make_engine, resolve_url
from spendlog.db.migrate import current_revision, upgrade
from spendlog.db.status import database_status
from spendlog.db.store import insert_records
from spendlog.db.writer import Writer, spool_path, spooled_count

FUTURE = "9999_from_the_future"
APP = Path(__file__).resolve().parents[2] / "dashboard" / "app.py"


def _newer_ledger(url: str, rows: int = 0) -> None:
    engine = make_engine(url, pool=False)
    upgrade(engine)
    with engine.begin() as conn:
        insert_records(conn, [make_record() for _ in range(rows)])
        conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": FUTURE})
    engine.dispose()


def _revision(url: str) -> str | None:
    engine = make_engine(url, pool=False)
    with engine.connect() as conn:
        rev = current_revision(conn)
    engine.dispose()
    return rev


def spendlog(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spendlog", *args], capture_output=True, text=True, timeout=60)


def test_a_ledger_upgraded_by_a_newer_spendlog_spools_with_one_clear_warning(db_url, caplog):
    _newer_ledger(db_url)
    caplog.set_level(logging.WARNING, logger="spendlog")
    writer = Writer(db_url)
    for batch in range(5):
        for _ in range(10):
            writer.submit(make_record())
        assert writer.flush(30)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "newer spendlog" in warnings[0] and FUTURE in warnings[0] and "upgrade spendlog" in warnings[0]
    assert spooled_count(writer.url) == 50 and writer.status()["spooled"] == 50
    status = database_status(db_url)
    assert status["schema"] == "newer" and status["revision"] == FUTURE
    assert _revision(db_url) == FUTURE, "the writer touched the newer schema"
    writer.close()


def test_db_status_and_db_upgrade_on_a_newer_ledger(sqlite_url):
    _newer_ledger(sqlite_url, rows=3)
    status = spendlog("db", "status", "--db", sqlite_url)
    assert status.returncode == 0, status.stderr
    assert FUTURE in status.stdout and "newer spendlog" in status.stdout, status.stdout
    as_json = json.loads(spendlog("db", "status", "--json", "--db", sqlite_url).stdout)
    assert as_json["schema"] == "newer" and as_json["rows"] == 3
    refused = spendlog("db", "upgrade", "--db", sqlite_url)
    assert refused.returncode == 2, refused
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "newer spendlog" in lines[0] and "Traceback" not in refused.stderr, refused.stderr
    assert _revision(sqlite_url) == FUTURE


def _banner(monkeypatch, url: str) -> list[str]:
    monkeypatch.setenv("SPENDLOG_DB_URL", url)
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return [w.value for w in at.warning]


def test_the_dashboard_shows_a_newer_ledger_and_records_not_in_it(monkeypatch, sqlite_url):
    engine = make_engine(sqlite_url, pool=False)
    upgrade(engine)
    with engine.begin() as conn:
        insert_records(conn, [make_record() for _ in range(3)])
    engine.dispose()
    assert _banner(monkeypatch, sqlite_url) == [], "a banner on a healthy ledger"

    url = resolve_url(sqlite_url)
    spool_path(url).write_text("".join(spool_line(make_record()) for _ in range(4)))
    Path(f"{spool_path(url)}.rejected").write_text('{"reason": "test", "line": "x"}\n')
    [banner] = _banner(monkeypatch, sqlite_url)
    assert "4 records" in banner and "spooled" in banner and "1 record" in banner and "rejected" in banner, banner

    _newer_ledger(sqlite_url)
    [banner] = _banner(monkeypatch, sqlite_url)
    assert "newer spendlog" in banner and FUTURE in banner, banner
