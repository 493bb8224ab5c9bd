"""Pieces shared by the CLI's commands."""

from __future__ import annotations

import io
import os
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import click

__all__ = ["db_option", "fail", "need_demo_extra", "output_file", "parse_date", "reading", "storage_errors"]



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


def need_demo_extra(command: str) -> None:
    """``spendlog demo`` and ``spendlog fake-upstream`` serve the fake SolRouter, whose ASGI server
    (starlette, uvicorn) comes with the ``demo`` extra: without it, one line saying what to install."""
    import importlib.util

    missing = [name for name in ("starlette", "uvicorn") if importlib.util.find_spec(name) is None]
    if missing:
        fail(f"`spendlog {command}` needs {' and '.join(missing)}, which come with the demo extra: "
             "pip install 'spendlog[demo]'")


@contextmanager
def storage_errors(action: str, url) -> Iterator[None]:
    """Turn any database failure inside the block into one line naming the URL (password masked)."""
    from spendlog.db.engine import mask_url
    from spendlog.db.errors import DatabaseUnavailableError, StorageError, first_line

    try:
        yield
    except (StorageError, click.ClickException):
        raise
    except Exception as exc:  # e.g. OperationalError, OSError: shown as one line
        raise DatabaseUnavailableError(f"cannot {action} {mask_url(url)}: {first_line(exc)}") from exc


def parse_date(value: str | None, option: str) -> date | None:
    """``YYYY-MM-DD`` for ``option`` (None stays None), by ``db.periods.parse_day``'s rule; its
    ``ValueError`` becomes a one-line usage error naming the option."""
    from spendlog.db.periods import parse_day

    try:
        return parse_day(value)
    except ValueError as exc:
        fail(f"{option} {exc}")
    return None  # unreachable


@contextmanager
def reading(db_url: str | None):
    """A read-only connection (``db.engine.read_connection``), with database trouble turned into
    one clear line (exit 2)."""
    from spendlog.db.engine import NoLedgerError, mask_url, read_connection, resolve_url
    from spendlog.db.errors import DatabaseUnavailableError

    url = resolve_url(db_url)  # a bad URL raises DatabaseURLError -> one line, exit 2
    try:
        with read_connection(url) as conn:
            yield conn
    except NoLedgerError as exc:
        if exc.path is not None:
            fail(f"no spendlog database at {exc.path} (nothing recorded yet, or a wrong --db)")
        fail(f"{mask_url(url)} has no spendlog tables: run `spendlog db upgrade --db URL` or check --db")
    except DatabaseUnavailableError as exc:
        fail(str(exc))


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

