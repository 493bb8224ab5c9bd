"""Bringing a database to the newest schema, safely when several processes start at once.

Alembic runs programmatically from the installed package (no alembic.ini needed). Concurrent
upgrades are serialised by an exclusive lock: a file lock beside a SQLite file, a transaction-level
advisory lock on PostgreSQL.
"""

from __future__ import annotations

import fcntl
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from .engine import sqlite_path

__all__ = ["alembic_config", "head_revision", "current_revision", "upgrade", "ensure_schema"]

_PG_LOCK_KEY = 0x5350454E444C4F47  # "SPENDLOG"


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_migrations_dir()))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _migrations_dir() -> Path:
    import spendlog.migrations

    return Path(spendlog.migrations.__file__).resolve().parent


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


@contextmanager
def _migration_lock(engine: Engine):
    path = sqlite_path(engine.url)
    if engine.dialect.name == "sqlite":
        if path is None:
            yield
            return
        lock_path = path.with_name(path.name + ".migrate.lock")
        with open(lock_path, "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
    else:
        yield  # PostgreSQL locks inside the migration transaction, see upgrade()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate ``engine``'s database to ``revision`` (default: the newest)."""
    with _migration_lock(engine):
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
            if current_revision(conn) == head_revision() and revision == "head":
                return
            command.upgrade(alembic_config(conn), revision)


def ensure_schema(engine: Engine) -> None:
    """Upgrade to head if the database is new or older; cheap when it is already current."""
    with engine.connect() as conn:
        if current_revision(conn) == head_revision():
            return
    upgrade(engine)
