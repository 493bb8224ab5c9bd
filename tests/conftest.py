"""Tests own their world: every test gets its own data dir and SQLite ledger, PostgreSQL tests get
a fresh schema, and servers bind port 0 on 127.0.0.1. Nothing touches the user's real data dir.

PostgreSQL: ``SPENDLOG_TEST_PG_URL`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``).
When it is unreachable the ``pg`` tests skip with the reason, except under ``CI=true``, where
they fail.
"""

from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

pytest_plugins = ["fixture_upstream", "fixture_proxy", "fixture_dashboard", "fixture_oidc", "fixture_browser"]

PG_URL = os.environ.get("SPENDLOG_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

_pg_state: dict = {}


def pg_available() -> str | None:
    """None when PostgreSQL answers, else the reason it does not."""
    if "reason" not in _pg_state:
        try:
            engine = create_engine(PG_URL, connect_args={"connect_timeout": 3})
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            engine.dispose()
            _pg_state["reason"] = None
        except Exception as exc:  # noqa: BLE001
            _pg_state["reason"] = f"PostgreSQL at {make_url(PG_URL).render_as_string(hide_password=True)} unreachable: {str(exc).splitlines()[0]}"
    return _pg_state["reason"]


def require_pg() -> None:
    reason = pg_available()
    if reason:
        if IN_CI:
            pytest.fail(f"CI=true and {reason}")
        pytest.skip(reason)


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path, monkeypatch):
    data = tmp_path / "spendlog-data"
    data.mkdir()
    monkeypatch.setenv("SPENDLOG_DATA_DIR", str(data))
    monkeypatch.setenv("SPENDLOG_DB_URL", f"sqlite:///{data / 'spendlog.db'}")
    monkeypatch.delenv("SOLROUTER_API_KEY", raising=False)
    monkeypatch.delenv("SOLROUTER_BASE_URL", raising=False)
    monkeypatch.delenv("SPENDLOG_UPSTREAM", raising=False)
    monkeypatch.delenv("SPENDLOG_TZ", raising=False)
    monkeypatch.delenv("SPENDLOG_ALLOWED", raising=False)
    from spendlog.db import log, registry

    log.reset_for_tests()
    yield data
    # the test's writers stop with it: a writer left retrying an unreachable ledger would otherwise
    # work (and allocate) inside the next tests' measurements
    registry.reset_for_tests(timeout=2)


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.db'}"


@pytest.fixture
def pg_url():
    """A fresh, empty PostgreSQL schema for this test, dropped afterwards."""
    require_pg()
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    yield url.render_as_string(hide_password=False)
    from spendlog.db import registry

    registry.reset_for_tests(contains=schema)
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """Runs the test once on a SQLite file and once on a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def ledger_conn(db_url):
    """A connection to a fresh, migrated ledger on each backend (``db_url``)."""
    from spendlog.db.engine import make_engine
    from spendlog.db.migrate import upgrade

    engine = make_engine(db_url, pool=False)
    upgrade(engine)
    with engine.connect() as c:
        yield c
    engine.dispose()
