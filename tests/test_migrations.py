"""Alembic: empty -> head matches the models, and concurrent first starts all succeed."""

from __future__ import annotations

import subprocess
import sys

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, inspect, select

from spendlog.db.engine import make_engine
from spendlog.db.migrate import current_revision, head_revision, upgrade
from spendlog.db.models import Base, Completion


def test_empty_database_upgrades_to_head_matching_the_models(db_url):
    engine = make_engine(db_url)
    upgrade(engine)
    with engine.connect() as conn:
        assert current_revision(conn) == head_revision()
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(ctx, Base.metadata) == []
        assert {"completions", "rollup_hourly", "alembic_version"} <= set(inspect(conn).get_table_names())
    upgrade(engine)  # a second upgrade is a no-op
    engine.dispose()


def test_downgrade_to_base_and_back(db_url):
    from alembic import command

    from spendlog.db.migrate import alembic_config

    engine = make_engine(db_url)
    upgrade(engine)
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "base")
    with engine.connect() as conn:
        assert "completions" not in inspect(conn).get_table_names()
    upgrade(engine)
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Completion)) == 0
    engine.dispose()


def test_four_processes_migrating_a_new_database_at_once(db_url):
    code = (
        "from spendlog.db.engine import make_engine\n"
        "from spendlog.db.migrate import ensure_schema\n"
        f"ensure_schema(make_engine({db_url!r}))\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True) for _ in range(4)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
    engine = make_engine(db_url)
    with engine.connect() as conn:
        assert current_revision(conn) == head_revision()
    engine.dispose()


def test_migrations_ship_inside_the_package():
    import spendlog.migrations
    from pathlib import Path

    folder = Path(spendlog.migrations.__file__).parent
    assert (folder / "env.py").exists() and (folder / "script.py.mako").exists()
    assert any(p.name.startswith("0001") for p in (folder / "versions").iterdir())
