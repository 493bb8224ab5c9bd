"""The price figures the page shows (issue 14): the total's label and split, the markup over list price.

Inputs are ``spendlog.db.queries.grouped_totals`` rows (exact ``Decimal`` money). No Streamlit, no SQL.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from spendlog.dashboard.formatting import format_count
from spendlog.report.money import money_display

__all__ = ["total_label", "spend_split", "markup", "signed_percent"]


def total_label(total: dict) -> str:
    """``Total spend``, or ``Total spend (incl. $0.42 estimated)`` when estimates are in it."""
    estimated = total.get("estimated_cost_usd") or Decimal(0)
    return f"Total spend (incl. {money_display(estimated)} estimated)" if estimated else "Total spend"


def spend_split(total: dict) -> str:
    """What the total is made of: the upstream's bills, spendlog's estimates, the unpriced calls, and
    the list price of the same calls (``docs/pricing.md``)."""
    unpriced = total["calls_missing_cost"]
    return (f"billed {money_display(total['billed_cost_usd'])} · estimated "
            f"{money_display(total['estimated_cost_usd'])} · unpriced {format_count(unpriced)} "
            f"call{'' if unpriced == 1 else 's'} · list price {money_display(total['list_cost_usd'])}")


def markup(row: dict) -> Decimal | None:
    """The router's markup over list price for the upstream-billed calls of a row:
    ``(billed - list) / list``, None without billed calls that have a list price.

    The rollup keeps one list sum for bills and estimates, so the bills' list price is taken as
    ``list_cost_usd - estimated_cost_usd``: exact when the estimates are at list price (genai-prices
    priced them), approximate when a prices file gives the model a rate of its own."""
    listed = (row.get("list_cost_usd") or Decimal(0)) - (row.get("estimated_cost_usd") or Decimal(0))
    billed = row.get("billed_cost_usd") or Decimal(0)
    if listed <= 0 or not billed:
        return None
    return (billed - listed) / listed


def signed_percent(value: Decimal | None) -> str:
    """``+10.0%`` / ``-2.5%`` / ``0.0%``; ``–`` for None."""
    if value is None:
        return "–"
    pct = (value * 100).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
    return f"{'+' if pct > 0 else ''}{format(pct, 'f')}%"
