"""Small builders shared by tests (records, engines, subprocess scripts)."""

from __future__ import annotations

import os
import site
import subprocess
import sys
import textwrap
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

from spendlog.db.ids import uuid7

ROOT = Path(__file__).resolve().parent.parent


def make_record(**overrides) -> dict:
    record = {
        "id": uuid7(),
        "created_at": datetime.now(timezone.utc),
        "request_id": "chatcmpl-test",
        "endpoint": "/v1/chat/completions",
        "upstream": "api.solrouter.io",
        "requested_model": "openai/gpt-4o-mini",
        "model": "openai/gpt-4o-mini",
        "provider": "openai",
        "stream": False,
        "status_code": 200,
        "prompt_tokens": 15,
        "completion_tokens": 83,
        "total_tokens": 98,
        "cost_usd": Decimal("0.0000148"),
        "cost_source": "upstream",
        "finish_reason": "stop",
        "latency_ms": 120,
        "app": "billing-bot",
        "user": "alice",
        "tags": {"team": "core"},
        "api_key_hint": "sr_...abcd",
    }
    record.update(overrides)
    return record


def run_python(code: str, *, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (the project's venv) and return the finished process."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def install_wheel(tmp_path: Path) -> Path:
    """Build this checkout's wheel and install it into a fresh venv under ``tmp_path``; return the venv.
    Dependencies come from this environment (no network needed); spendlog itself only from the wheel."""
    dist = tmp_path / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next(dist.glob("spendlog-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    purelib = Path(subprocess.check_output([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                           text=True).strip())
    (purelib / "_deps_from_test_env.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    install = subprocess.run([str(py), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)],
                             capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr[-2000:]
    return venv


# -- the ledger and its side files, as the tests of the writer read them --------------------------

def ledger_rows(url: str | None = None, *, flush: bool = True) -> list:
    """Every row of the calls table (``Completion`` objects, oldest id first), after flushing this
    process's writers (``flush=False`` for a ledger another process writes); [] before the first
    write made the table. SQLite is read through a read-only engine, so the reader never competes
    with a writer for the write lock (a PostgreSQL test schema is chosen by ``options`` in its URL,
    which a read-only engine replaces)."""
    import spendlog
    from sqlalchemy import inspect, select
    from sqlalchemy.orm import Session

    from spendlog.db.engine import make_engine, resolve_url, sqlite_path
    from spendlog.db.models import Completion

    if flush:
        assert spendlog.flush(15), "the writers did not drain within 15 s"
    resolved = resolve_url(url)
    path = sqlite_path(resolved)
    if path is not None and not path.exists():
        return []
    engine = make_engine(resolved, readonly=path is not None, pool=False)
    try:
        with Session(engine) as session:
            if not inspect(session.connection()).has_table(Completion.__tablename__):
                return []
            return list(session.scalars(select(Completion).order_by(Completion.id)))
    finally:
        engine.dispose()


def stored(url: str) -> dict[str, dict]:
    """Every ``completions`` row of ``url`` as ``{id: row dict}`` (empty before the schema exists)."""
    from sqlalchemy import inspect, select

    from spendlog.db.engine import make_engine
    from spendlog.db.models import Completion

    engine = make_engine(url, pool=False)
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table(Completion.__tablename__):
                return {}
            return {r["id"]: dict(r) for r in conn.execute(select(Completion.__table__)).mappings()}
    finally:
        engine.dispose()


def spool_line(record: dict) -> str:
    """``record`` as one line of the spool (JSON; money and times as text), newline included."""
    import json

    def plain(value):
        if isinstance(value, Decimal):
            return str(value)
        if isinstance(value, datetime):
            return value.isoformat()
        return value

    return json.dumps({k: plain(v) for k, v in record.items()}, separators=(",", ":")) + "\n"


def rejected(url: str) -> list[dict]:
    """The quarantine file beside the spool of ``url`` (``<spool>.rejected``), one dict a line."""
    import json

    from spendlog.db.engine import resolve_url
    from spendlog.db.writer import spool_path

    path = Path(f"{spool_path(resolve_url(url))}.rejected")
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_for(predicate, timeout: float = 30, what: str = "the condition") -> None:
    """Poll ``predicate`` every 50 ms until it holds; AssertionError naming ``what`` after ``timeout`` s."""
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout} s"
        time.sleep(0.05)


def stored_columns(conn, table) -> list[str]:
    """The model's columns of ``table`` that the database has now, in the model's order (a ledger at an
    older revision lacks the later ones: an upgrade test compares the rows on these)."""
    from sqlalchemy import inspect

    present = {c["name"] for c in inspect(conn).get_columns(table.name)}
    return [c.name for c in table.columns if c.name in present]


def stored_rows(conn, table, columns: list[str] | None = None) -> list:
    """``table``'s rows as the database returns them (no type conversion), in key order, for
    ``columns`` (default: ``stored_columns``). Names are quoted from the model, never from data."""
    from sqlalchemy import text

    columns = stored_columns(conn, table) if columns is None else columns
    cols = ", ".join(f'"{c}"' for c in columns)
    keys = ", ".join(f'"{c.name}"' for c in table.primary_key.columns)
    return conn.execute(text(f"SELECT {cols} FROM {table.name} ORDER BY {keys}")).all()


def add_records(conn, records) -> None:
    """Insert ``records`` through the store (rollups kept) in one transaction on ``conn``."""
    from spendlog.db.store import insert_records

    if conn.in_transaction():  # a read before autobegan one
        conn.commit()
    with conn.begin():
        insert_records(conn, records)
