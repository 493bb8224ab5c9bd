"""`spendlog fake-upstream`."""

from __future__ import annotations

import click

from ._common import db_option


@click.command("fake-upstream")
@db_option
def fake_upstream_cmd(db_url: str | None) -> None:
    """Run a local fake SolRouter for tests and demos."""
    raise click.ClickException("not implemented yet")
