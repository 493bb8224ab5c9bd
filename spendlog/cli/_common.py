"""Pieces shared by the CLI's commands."""

from __future__ import annotations

import click

__all__ = ["db_option", "fail"]


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
