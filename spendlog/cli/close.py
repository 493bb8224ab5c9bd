"""`spendlog close`: close a month (its totals kept with a checksum), list the closes, reopen one."""

from __future__ import annotations

import sys

import click

from ._common import db_option, fail, reading, storage_errors

__all__ = ["close_cmd", "closed_month", "parse_month_option"]


def parse_month_option(value: str, option: str) -> str:
    """``YYYY-MM`` for ``option`` by ``db.closes.parse_month``'s rule; a mistake is one line, exit 2."""
    from spendlog.db.closes import parse_month

    try:
        return parse_month(value).strftime("%Y-%m")
    except ValueError as exc:
        fail(f"{option} {exc}")
    return ""  # unreachable


def closed_month(conn, month: str, option: str):
    """The close in force for ``month``, or one line (exit 2) when the month is not closed."""
    from sqlalchemy import inspect

    from spendlog.db.closes import current_close

    entry = current_close(conn, month) if inspect(conn).has_table("month_closes") else None
    if entry is None:
        fail(f"{option} {month} is not closed (`spendlog close --list` shows the closes)")
    return entry


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name (a container without a passwd entry)
        return "unknown"


@click.command("close")
@click.argument("month", required=False, metavar="[MONTH]")
@click.option("--tz", default="UTC", envvar="SPENDLOG_TZ", show_default=True, metavar="ZONE",
              help="IANA timezone whose month is closed (default: $SPENDLOG_TZ, else UTC).")
@click.option("--note", metavar="TEXT", help="Why: kept with the close or reopen in the history.")
@click.option("--list", "list_", is_flag=True, help="Show every close and reopen, with what arrived late since.")
@click.option("--reopen", is_flag=True, help="Reopen a closed month (recorded in the history; its totals stay).")
@db_option
def close_cmd(month, tz, note, list_, reopen, db_url) -> None:
    """Close a month (YYYY-MM): keep its totals and a checksum; later records for it are late."""
    if list_:
        if month or reopen:
            fail("--list takes no MONTH and no --reopen")
        from sqlalchemy import inspect

        from spendlog.report.closes import history_lines

        with reading(db_url) as conn:
            if not inspect(conn).has_table("month_closes"):
                click.echo("No month has been closed.")
                return
            click.echo("\n".join(history_lines(conn)))
        return
    if not month:
        fail("give a MONTH (YYYY-MM), or --list")
    month = parse_month_option(month, "MONTH")
    from spendlog.db.closes import CloseError, close_month, reopen_month
    from spendlog.db.engine import make_engine, resolve_url
    from spendlog.db.migrate import ensure_schema
    from spendlog.db.periods import get_zone
    from spendlog.report.money import money_exact

    if not reopen:
        try:
            get_zone(tz)
        except ValueError as exc:
            fail(f"--tz: {exc}")
    url = resolve_url(db_url)
    with reading(db_url):  # a ledger that is not there (a wrong --db) is one line, never a new empty one
        pass
    engine = make_engine(url)
    try:
        with storage_errors("close a month in", url):
            ensure_schema(engine)
            try:
                if reopen:
                    reopen_month(engine, month, by=_user(), note=note)
                    click.echo(f"reopened {month}: its close stays in the history (`spendlog close --list`)")
                    return
                if sys.stderr.isatty():  # seconds on a big ledger, writers waiting: say what is going on
                    click.echo(f"closing {month}: reading its totals (writers wait until it is done)...", err=True)
                entry, rows = close_month(engine, month, tz, by=_user(), note=note)
            except CloseError as exc:
                fail(str(exc))
            with engine.connect() as conn:
                from spendlog.db.closes import closed_totals

                total = next(closed_totals(conn, entry, ()))
        click.echo(f"closed {month} ({tz}): {total['requests']:,} calls, {money_exact(total['cost_usd'])} USD "
                   f"in {rows:,} total rows; checksum {entry.checksum}")
    finally:
        engine.dispose()

