"""Pieces shared by the CLI's commands."""

from __future__ import annotations

import io
import os
import re
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import click

__all__ = ["db_option", "fail", "first_line", "output_file", "parse_date", "reading", "storage_errors"]

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def db_option(f):
    """``--db URL``: every command takes it; the default is $SPENDLOG_DB_URL, else the user's ledger."""
    return click.option(
        "--db",
        "db_url",
        metavar="URL",
        default=None,
        help="Database URL (SQLAlchemy form). Default: $SPENDLOG_DB_URL, else spendlog.db in the user data dir.",
    )(f)


def fail(message: str) -> None:
    """Stop with a one-line usage error (exit code 2)."""
    raise click.UsageError(message)


@contextmanager
def storage_errors(action: str, url) -> Iterator[None]:
    """Turn any database failure inside the block into one line naming the URL (password masked)."""
    from spendlog.db.engine import mask_url
    from spendlog.db.errors import DatabaseUnavailableError, StorageError

    try:
        yield
    except (StorageError, click.ClickException):
        raise
    except Exception as exc:  # noqa: BLE001 - e.g. OperationalError, OSError: shown as one line
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DatabaseUnavailableError(f"cannot {action} {mask_url(url)}: {detail}") from exc


def parse_date(value: str | None, option: str) -> date | None:
    """``YYYY-MM-DD`` for ``option`` (None stays None); anything else is a one-line usage error."""
    if value is None:
        return None
    try:
        if not _DATE.match(value):
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        fail(f"{option} {value!r} is not a date: use YYYY-MM-DD")
    return None  # unreachable


@contextmanager
def reading(db_url: str | None):
    """A read-only connection, with database trouble turned into one clear line."""
    from sqlalchemy import inspect
    from sqlalchemy.exc import SQLAlchemyError

    from spendlog.db.engine import make_engine, mask_url, resolve_url, sqlite_path

    url = resolve_url(db_url)  # a bad URL raises DatabaseURLError -> one line, exit 2
    where = mask_url(url)
    path = sqlite_path(url)
    if path is not None and not path.exists():
        fail(f"no spendlog database at {path} (nothing recorded yet, or a wrong --db)")
    # PostgreSQL: read-only per connection, because make_engine(readonly=True) sets its own libpq
    # `options` and so drops any `options` in the URL (e.g. -csearch_path=...); SQLite: mode=ro.
    postgres = url.get_backend_name() == "postgresql"
    engine = make_engine(url, readonly=not postgres, pool=False)
    try:
        conn = engine.connect()
        if postgres:
            conn = conn.execution_options(postgresql_readonly=True)
        has_tables = inspect(conn).has_table("completions")
    except SQLAlchemyError as exc:
        engine.dispose()
        fail(f"cannot read the database {where}: {first_line(exc)}")
    if not has_tables:
        conn.close()
        engine.dispose()
        fail(f"{where} has no spendlog tables: run `spendlog db upgrade --db URL` or check --db")
    try:
        yield conn
    except SQLAlchemyError as exc:
        fail(f"reading {where} failed: {first_line(exc)}")
    finally:
        conn.close()
        engine.dispose()


def first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextmanager
def output_file(path: str):
    """Where a command's file goes (``-o``): stdout; a regular file, written beside its final name
    and renamed into place on success, so a failed write never leaves a truncated file that looks complete;
    or an existing device or pipe (``-o /dev/stdout``), written as it is. A write that fails (a
    full disk) ends in one line, exit 2."""
    if path == "-":
        stream = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="", line_buffering=False)
        try:
            with _write_errors("stdout"):
                yield stream, None
                stream.flush()
        finally:
            stream.detach()
        return
    target = Path(path)
    if target.is_dir():
        fail(f"-o {path!r} is a directory")
    where = f"-o {path!r}"
    if target.exists() and not target.is_file():
        with _write_errors(where):
            with open(target, "w", encoding="utf-8", newline="") as stream:
                yield stream, target
        return
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.partial")
    try:  # created like any new file (0666 minus the umask), not mkstemp's 0600
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        fail(f"cannot write {where}: {exc.strerror or exc}")
    ok = False
    try:
        with _write_errors(where):
            with open(fd, "w", encoding="utf-8", newline="") as stream:
                yield stream, target
            os.replace(tmp, target)
        ok = True
    finally:
        if not ok:
            Path(tmp).unlink(missing_ok=True)


@contextmanager
def _write_errors(where: str):
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as exc:
        fail(f"cannot write {where}: {exc.strerror or exc}")

