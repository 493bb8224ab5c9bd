"""Pieces shared by the CLI's commands."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click

__all__ = ["db_option", "fail", "storage_errors"]


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
