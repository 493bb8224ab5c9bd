"""`spendlog db ...`: migrate, inspect and maintain the ledger."""

from __future__ import annotations

import sys

import click

from ._common import db_option, storage_errors


@click.group("db")
def db_group() -> None:
    """Migrate, inspect and maintain the ledger database."""


@db_group.command("upgrade")
@db_option
@click.option("--revision", default="head", show_default=True, help="Target Alembic revision.")
def upgrade_cmd(db_url: str | None, revision: str) -> None:
    """Migrate the database to the newest schema (or --revision); never downgrades."""
    from spendlog.db.engine import make_engine, mask_url
    from spendlog.db.migrate import current_revision, upgrade

    engine = make_engine(db_url, pool=False)
    try:
        with storage_errors("migrate", engine.url):
            upgrade(engine, revision)
            with engine.connect() as conn:
                rev = current_revision(conn)
    finally:
        engine.dispose()
    click.echo(f"{mask_url(engine.url)} is at revision {rev}")


@db_group.command("status")
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status_cmd(db_url: str | None, as_json: bool) -> None:
    """Show the database URL, schema revision, row count, and spooled, rejected or dropped records."""
    import json

    from spendlog.db.migrate import newer_schema_message
    from spendlog.db.status import database_status

    info = database_status(db_url)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    rev = info["revision"] or "(none: run `spendlog db upgrade`)"
    if info["schema"] == "older":
        rev += f" (newest is {info['head']}: run `spendlog db upgrade`)"
    elif info["schema"] == "newer":
        rev += f" (upgraded by a newer spendlog; this one knows up to {info['head']})"
    elif info["schema"] == "current":
        rev += " (the newest)"
    click.echo(f"database:  {info['url']}")
    click.echo(f"revision:  {rev}")
    click.echo(f"rows:      {info['rows'] if info['rows'] is not None else 0:,}")
    click.echo(f"oldest:    call {info['oldest_call'] or '-'}; rollup hour {info['oldest_rollup_hour'] or '-'}")
    click.echo(f"spooled:   {info['spooled']:,} waiting in {info['spool']}")
    click.echo(f"rejected:  {info['rejected']:,}" + (f" set aside in {info['rejected_file']}" if info["rejected"] else ""))
    click.echo(f"dropped:   {info['dropped']:,}")
    if info["schema"] == "newer":
        click.echo(f"warning: {newer_schema_message(db_url or info['url'], info['revision'])}; until then "
                   "records are spooled", err=True)
    if info["rejected"]:
        click.echo("warning: records no column could take were set aside; they are not in the totals", err=True)
    if info["dropped"]:
        click.echo("warning: records were dropped because neither the database nor the spool could be written", err=True)


@db_group.command("rebuild-rollups")
@db_option
def rebuild_rollups_cmd(db_url: str | None) -> None:
    """Recompute the hourly, tag and daily rollup tables from the raw completions."""
    from sqlalchemy import func, select

    from spendlog.db.engine import make_engine
    from spendlog.db.migrate import ensure_schema
    from spendlog.db.models import Completion
    from spendlog.db.store import rebuild_rollups

    engine = make_engine(db_url, pool=False)
    try:
        with storage_errors("rebuild the rollups of", engine.url):
            ensure_schema(engine)
            with engine.begin() as conn:
                total = conn.scalar(select(func.count()).select_from(Completion))
                with click.progressbar(length=total or 0, label="rebuilding rollups", file=sys.stderr,
                                       hidden=not sys.stderr.isatty()) as bar:
                    n = rebuild_rollups(conn, progress=bar.update)
    finally:
        engine.dispose()
    click.echo(f"rebuilt rollups from {n:,} calls")


@db_group.command("grant-readonly")
@db_option
@click.argument("role")
@click.option("--run", "run", is_flag=True, help="Run the GRANTs (as the --db user) instead of printing them.")
def grant_readonly_cmd(db_url: str | None, role: str, run: bool) -> None:
    """Print (or --run) the PostgreSQL GRANTs that let ROLE read the ledger and nothing else."""
    from sqlalchemy import text

    from spendlog.db.engine import make_engine, mask_url, resolve_url
    from spendlog.db.grants import readonly_grants

    from ._common import fail

    url = resolve_url(db_url)
    if url.get_backend_name() != "postgresql":
        fail("grant-readonly is for PostgreSQL; a SQLite ledger is read-only for whoever may only read its file")
    engine = make_engine(url, pool=False)
    try:
        with storage_errors("grant read-only access on", engine.url):
            with engine.begin() as conn:
                try:
                    statements = readonly_grants(conn, role)
                except ValueError as exc:
                    fail(str(exc))
                if run:
                    for statement in statements:
                        conn.execute(text(statement))
    finally:
        engine.dispose()
    if run:
        click.echo(f"{role} may now read {mask_url(engine.url)} and nothing else")
        return
    click.echo(f"-- read-only access for {role} (run as the role that runs `spendlog db upgrade`; "
               "the role must exist: CREATE ROLE ... LOGIN PASSWORD '...')")
    for statement in statements:
        click.echo(statement + ";")


@db_group.command("prune")
@db_option
@click.option("--before", "before", required=True, metavar="YYYY-MM-DD",
              help="Delete raw calls created before this date (00:00 UTC); hourly rollups are kept.")
@click.option("--yes", is_flag=True, help="Delete (without it, only say how many calls would go).")
def prune_cmd(db_url: str | None, before: str, yes: bool) -> None:
    """Delete raw calls before a date in batches, keeping the hourly rollups (totals stay exact)."""
    from datetime import datetime, time, timezone

    from spendlog.db.engine import make_engine
    from spendlog.db.migrate import ensure_schema
    from spendlog.db.prune import count_before, prune_before

    from ._common import parse_date

    day = parse_date(before, "--before")
    cutoff = datetime.combine(day, time(0), tzinfo=timezone.utc)
    engine = make_engine(db_url, pool=False)
    try:
        with storage_errors("prune", engine.url):
            ensure_schema(engine)
            with engine.connect() as conn:
                n = count_before(conn, cutoff)
            if not yes:
                click.echo(f"{n:,} calls were created before {day.isoformat()} 00:00 UTC; run again with --yes to "
                           "delete them (the hourly rollups, and so every total, stay)")
                return
            with click.progressbar(length=n, label="pruning", file=sys.stderr, hidden=not sys.stderr.isatty()) as bar:
                done = prune_before(engine, cutoff, progress=bar.update)
    finally:
        engine.dispose()
    click.echo(f"deleted {done:,} calls created before {day.isoformat()} 00:00 UTC; hourly rollups kept "
               "(rebuild-rollups leaves the pruned hours as they are)")
