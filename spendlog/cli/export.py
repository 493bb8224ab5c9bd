"""`spendlog export` and `spendlog summary`."""

from __future__ import annotations

import click

from ._common import db_option


@click.command("export")
@db_option
def export_cmd(db_url: str | None) -> None:
    """Export spend as CSV, JSON lines or FinOps FOCUS for finance."""
    raise click.ClickException("not implemented yet")


@click.command("summary")
@db_option
def summary_cmd(db_url: str | None) -> None:
    """Print spend totals per model and app as a terminal table."""
    raise click.ClickException("not implemented yet")
