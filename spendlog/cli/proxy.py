"""`spendlog proxy`."""

from __future__ import annotations

import click

from ._common import db_option


@click.command("proxy")
@db_option
def proxy_cmd(db_url: str | None) -> None:
    """Run the local OpenAI-compatible logging proxy."""
    raise click.ClickException("not implemented yet")
