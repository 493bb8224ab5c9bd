"""A PostgreSQL role with only `spendlog db grant-readonly`'s GRANTs runs the dashboard and the
export, and cannot write: a throwaway LOGIN role (trust auth on 127.0.0.1), dropped afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ProgrammingError
from test_dashboard import RANGE, assert_shows, expect, open_app, seed, seed_records

pytestmark = pytest.mark.pg


def _spendlog(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spendlog", *args], capture_output=True, text=True,
                          env=dict(os.environ), timeout=120)


@pytest.fixture
def reader(pg_url):
    """A new role that may log in and holds no privilege; dropped (with its grants) afterwards."""
    role = f"spendlog_ro_{uuid.uuid4().hex[:10]}"
    admin = create_engine(pg_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE ROLE "{role}" LOGIN'))
    try:
        yield role, make_url(pg_url).set(username=role).render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP OWNED BY "{role}"'))  # its grants and default privileges
            conn.execute(text(f'DROP ROLE "{role}"'))
        admin.dispose()


def test_grant_readonly_prints_the_grants_for_the_schema(pg_url, reader):
    role, _url = reader
    schema = make_url(pg_url).query["options"].removeprefix("-csearch_path=")
    assert _spendlog("db", "upgrade", "--db", pg_url).returncode == 0
    out = _spendlog("db", "grant-readonly", role, "--db", pg_url)
    assert out.returncode == 0, out.stderr
    statements = [line for line in out.stdout.splitlines() if not line.startswith("--")]
    assert statements == [
        f'GRANT CONNECT ON DATABASE "test" TO "{role}";',
        f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}";',
        f'GRANT SELECT ON ALL TABLES IN SCHEMA "{schema}" TO "{role}";',
        f'ALTER DEFAULT PRIVILEGES IN SCHEMA "{schema}" GRANT SELECT ON TABLES TO "{role}";',
        f'REVOKE ALL ON TABLE "{schema}"."budget_webhooks" FROM "{role}";',  # webhook URLs are secrets
    ]


def test_a_role_name_is_quoted_not_pasted(pg_url):
    out = _spendlog("db", "grant-readonly", 'bob"; DROP TABLE completions; --', "--db", pg_url)
    assert out.returncode == 0, out.stderr
    assert 'GRANT USAGE ON SCHEMA' in out.stdout
    assert all(line.endswith(' TO "bob""; DROP TABLE completions; --";') for line in out.stdout.splitlines()
               if not line.startswith("--"))


def test_a_role_with_only_the_grants_runs_the_dashboard_and_cannot_write(monkeypatch, pg_url, reader):
    role, role_url = reader
    records = seed_records()
    seed(pg_url, records)
    ro = create_engine(role_url)
    try:
        schema = make_url(pg_url).query["options"].removeprefix("-csearch_path=")
        with pytest.raises(ProgrammingError, match="permission denied for schema"), ro.connect() as conn:
            conn.execute(text(f'SELECT count(*) FROM "{schema}".completions'))  # no grant yet: the control

        out = _spendlog("db", "grant-readonly", role, "--run", "--db", pg_url)
        assert out.returncode == 0, out.stderr

        with ro.connect() as conn:
            assert conn.scalar(text("SELECT count(*) FROM completions")) == len(records)
        with pytest.raises(ProgrammingError, match="permission denied"), ro.connect() as conn:
            conn.execute(text("SELECT url FROM budget_webhooks"))  # webhook URLs are secrets
        with ro.connect() as conn:
            assert conn.scalar(text("SELECT count(*) FROM budgets")) == 0
        for statement in ("INSERT INTO completions (id) VALUES ('x')", "DELETE FROM completions",
                          "UPDATE rollup_hourly SET requests = 0", "CREATE TABLE intruder (x int)"):
            with pytest.raises(ProgrammingError, match="permission denied"), ro.begin() as conn:
                conn.execute(text(statement))
    finally:
        ro.dispose()

    at = open_app(monkeypatch, role_url, RANGE)  # the dashboard's whole read path, as the role
    from spendlog.db.estimate import price_book, price_record

    assert_shows(at, expect([price_record(price_book(), r) for r in records]))  # as the store keeps them
    # every chart drew (the seven of the overview and "Spend by tag": the calls carry tags), so every
    # read they make (the tag rollup's too) works with SELECT alone
    assert not at.error and len(at.get("vega_lite_chart")) == 8

    export = _spendlog("export", "--db", role_url, "--from", "2025-03-10", "--to", "2025-03-17", "--by", "model")
    assert export.returncode == 0, export.stderr
    assert "deepseek/deepseek-r1" in export.stdout


def test_tables_a_later_migration_creates_are_readable_too(pg_url, reader):
    role, role_url = reader
    seed(pg_url, [])
    assert _spendlog("db", "grant-readonly", role, "--run", "--db", pg_url).returncode == 0
    admin = create_engine(pg_url)
    with admin.begin() as conn:
        conn.execute(text("CREATE TABLE later_table (x int)"))
        conn.execute(text("INSERT INTO later_table VALUES (7)"))
    admin.dispose()
    ro = create_engine(role_url)
    try:
        with ro.connect() as conn:
            assert conn.scalar(text("SELECT x FROM later_table")) == 7
    finally:
        ro.dispose()


def test_grant_readonly_on_sqlite_is_one_line_exit_2(sqlite_url):
    out = _spendlog("db", "grant-readonly", "reader", "--db", sqlite_url)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "spendlog: error: grant-readonly is for PostgreSQL; a SQLite ledger is read-only for whoever may only read "
        "its file"]
