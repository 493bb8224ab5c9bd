"""Bringing a database to the newest schema, safely when several processes start at once.

Alembic runs programmatically from the installed package (no alembic.ini needed). Concurrent
upgrades are serialised by an exclusive lock: a file lock beside a SQLite file, a transaction-level
advisory lock on PostgreSQL. A database whose revision this spendlog does not know was migrated
by a newer spendlog: ``schema_state`` says ``"newer"`` and ``ensure_schema`` / ``upgrade`` raise
``NewerSchemaError`` (one line naming the database, its revision and this spendlog's version)
instead of trying to migrate it.
"""

from __future__ import annotations

import fcntl
from contextlib import contextmanager
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from .engine import flock_within, mask_url, sqlite_path
from .errors import NewerSchemaError

__all__ = ["alembic_config", "head_revision", "current_revision", "schema_state", "newer_schema_message",
           "upgrade", "ensure_schema"]

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


@lru_cache(maxsize=1)
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    return _scripts().get_current_head()


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _known(revision: str) -> bool:
    try:
        return _scripts().get_revision(revision) is not None
    except CommandError:  # alembic's ResolutionError is one
        return False


def schema_state(revision: str | None) -> str:
    """``"none"`` (no schema yet), ``"current"``, ``"older"`` (``upgrade`` brings it to head) or
    ``"newer"`` (migrated by a newer spendlog: a revision this one does not know)."""
    if revision is None:
        return "none"
    if revision == head_revision():
        return "current"
    return "older" if _known(revision) else "newer"


def _version() -> str:
    try:
        return metadata.version("spendlog")
    except metadata.PackageNotFoundError:
        return "(unknown version)"


def newer_schema_message(url, revision: str) -> str:
    return (f"database {mask_url(url)} was upgraded by a newer spendlog (revision {revision}); this spendlog "
            f"{_version()} knows revisions up to {head_revision()}: upgrade spendlog")


@contextmanager
def _migration_lock(engine: Engine, lock_timeout: float | None):
    path = sqlite_path(engine.url)
    if engine.dialect.name == "sqlite":
        if path is None:
            yield
            return
        lock_path = path.with_name(path.name + ".migrate.lock")
        with open(lock_path, "a+") as fh:
            flock_within(fh.fileno(), lock_timeout)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
    else:
        yield  # PostgreSQL locks inside the migration transaction, see upgrade()


def upgrade(engine: Engine, revision: str = "head", *, lock_timeout: float | None = None) -> None:
    """Migrate ``engine``'s database to ``revision`` (default: the newest). ``NewerSchemaError``
    when a newer spendlog migrated it. ``lock_timeout``: the longest wait for another process's
    migration (SQLite's file lock; ``LockTimeout`` after it); None waits as long as it takes."""
    with _migration_lock(engine, lock_timeout):
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SET LOCAL statement_timeout = 0"))  # a migration is never cut off midway
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
            current = current_revision(conn)
            if schema_state(current) == "newer":
                raise NewerSchemaError(newer_schema_message(engine.url, current))
            if current == head_revision() and revision == "head":
                return
            command.upgrade(alembic_config(conn), revision)


def ensure_schema(engine: Engine, *, lock_timeout: float | None = None) -> None:
    """Upgrade to head if the database is new or older; cheap when it is already current.
    ``NewerSchemaError`` when a newer spendlog migrated it (nothing is changed then)."""
    with engine.connect() as conn:
        current = current_revision(conn)
    state = schema_state(current)
    if state == "current":
        return
    if state == "newer":
        raise NewerSchemaError(newer_schema_message(engine.url, current))
    upgrade(engine, lock_timeout=lock_timeout)
