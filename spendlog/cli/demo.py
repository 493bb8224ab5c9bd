"""`spendlog demo`."""

from __future__ import annotations

import click

from ._common import db_option


@click.command("demo")
@db_option
def demo_cmd(db_url: str | None) -> None:
    """Show a living dashboard on generated demo data."""
    raise click.ClickException("not implemented yet")
