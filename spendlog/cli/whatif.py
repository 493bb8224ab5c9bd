"""`spendlog whatif`: what the same calls would have cost on another model."""

from __future__ import annotations

import dataclasses
import io
import json
from decimal import Decimal

import click

from spendlog.report.table import write_table
from spendlog.report.terminal import printable, text_table

from ._common import db_option, fail, reading
from .export import _filters, _range_options, _tag_option, _tz_option
from .reprice import load_book, prices_option

__all__ = ["whatif_cmd"]

_COLUMNS = ("model", "requests", "actual_cost_usd", "calls_unpriced", "cost_as_usd", "difference_usd",
            "calls_not_priced_as")


def _cells(row, money) -> list:
    return [row.model, row.requests, money(row.actual_cost_usd), row.unpriced, money(row.cost_as_usd),
            money(row.difference_usd), row.not_priced_as]


@click.command("whatif")
@click.option("--as", "target", required=True, metavar="MODEL", help="The model to price the same calls on.")
@_range_options
@_tag_option
@_tz_option
@click.option("--model", "models", metavar="SRC", multiple=True, help="Only calls to this model id (repeatable).")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True,
              help="Output format.")
@prices_option
@db_option
def whatif_cmd(target, from_value, to_value, tags, tz, models, fmt, prices_path, db_url) -> None:
    """Show what the same calls (same tokens) would have cost on another model, per source model."""
    from spendlog.db.whatif import WhatIfError, whatif
    from spendlog.report.money import money_display, money_exact

    filters = _filters(from_value, to_value, tz, tags)
    book = load_book(prices_path)
    if book.resolve(target.strip()) is None:
        fail(f"--as {target!r}: no price for this model (use an id genai-prices or your prices file knows, "
             "e.g. openai/gpt-4o-mini)")
    with reading(db_url) as conn:
        try:
            result = whatif(conn, book, target, dataclasses.replace(filters, models=tuple(models)))
        except WhatIfError as exc:
            fail(f"--as: {exc}")
    rows = [*result.rows, result.total]
    if fmt == "json":
        click.echo(json.dumps({"as": result.target, "price_entry": result.target_entry,
                               "models": [dict(zip(_COLUMNS, _cells(r, money_exact))) for r in result.rows],
                               "total": dict(zip(_COLUMNS, _cells(result.total, money_exact)))}, indent=2))
    elif fmt == "csv":
        # the shared CSV writer: a model id like =HYPERLINK(...) is written as text, never a formula
        out = io.StringIO(newline="")
        write_table([[_cells(r, Decimal) for r in rows]], _COLUMNS, "csv", out,
                    kinds=("any", "int", "money", "int", "money", "money", "int"))
        click.echo(out.getvalue(), nl=False)
    else:
        header = ["model", "requests", "actual cost", "unpriced", f"cost as {printable(target)}", "difference"]
        body = [[printable(r.model) if r.model else "(none)", f"{r.requests:,}", money_display(r.actual_cost_usd),
                 f"{r.unpriced:,}", money_display(r.cost_as_usd), money_display(r.difference_usd)] for r in rows]
        lines = text_table(f"What if these calls had gone to {printable(target)} ({result.target_entry})",
                           header, body, right={1, 2, 3, 4, 5})
        if result.total.not_priced_as:
            lines.append(f"{result.total.not_priced_as:,} calls without token counts are not priced on "
                         f"{printable(target)}")
        click.echo("\n".join(lines))
