"""`spendlog dashboard`."""

from __future__ import annotations

import click

from ._common import db_option


@click.command("dashboard")
@db_option
def dashboard_cmd(db_url: str | None) -> None:
    """Open the spend dashboard in the browser."""
    raise click.ClickException("not implemented yet")
