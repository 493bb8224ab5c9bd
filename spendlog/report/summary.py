"""``spendlog summary``'s text: the totals of a range and one table per breakdown.

Figures come from ``spendlog.db.queries.grouped_totals`` (the dashboard's numbers, to the last
digit); money reads as on the dashboard (``money_display``), the total also exactly
(``money_exact``, the files' form), split into the upstream's bills, spendlog's estimates and the
unpriced calls, beside the list price. After the breakdowns: prompt caching (hit rate, what it
saved at list prices, ``db.caching``) and the spend spikes (``db.spikes``), one line each. The header names the range's real local dates: the ones asked
for, else those of the first and the last matching call.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from sqlalchemy.engine import Connection

from spendlog.db.caching import cache_savings
from spendlog.db.periods import PERIODS, get_zone
from spendlog.db.queries import Filters, call_span, grouped_totals
from spendlog.db.spikes import spend_spikes

from .changes import cache_lines, spike_lines
from .money import money_display, money_exact
from .terminal import printable, text_table

__all__ = ["summary_lines"]

_HEADER = ["", "requests", "prompt tok", "completion tok", "spend", "share"]


def summary_lines(conn: Connection, filters: Filters, by: Sequence[str], tz: str,
                  first: date | None = None, last: date | None = None) -> list[str]:
    """The summary as lines: ``first``/``last`` are the local dates asked for (None: open)."""
    total = next(grouped_totals(conn, filters, []))
    breakdowns = {g: list(grouped_totals(conn, filters, [g], tz)) for g in by}
    out = [f"spendlog summary, {_span(conn, filters, tz, first, last)}", ""]
    requests = total["requests"]
    errors = total["errors"]
    rate = f"{errors / requests:.1%}" if requests else "0.0%"
    out += [
        f"Total spend   {money_display(total['cost_usd'])}   (exact: {money_exact(total['cost_usd'])} USD)"
        + (f"   incl. {money_display(total['estimated_cost_usd'])} estimated" if total["estimated_cost_usd"] else ""),
        f"Priced        billed {money_display(total['billed_cost_usd'])}, estimated "
        f"{money_display(total['estimated_cost_usd'])}, unpriced {total['calls_missing_cost']:,} calls;   "
        f"list price {money_display(total['list_cost_usd'])}",
        f"Requests      {requests:,}   errors {errors:,} ({rate})   without cost {total['calls_missing_cost']:,}",
        f"Tokens        {total['prompt_tokens']:,} prompt, {total['completion_tokens']:,} completion, "
        f"{total['total_tokens']:,} total",
    ]
    for group, rows in breakdowns.items():
        out.append("")
        out += _breakdown(group, rows, total["cost_usd"])
    if requests:  # prompt caching at list prices, and spend spikes (issue 15)
        from spendlog.db.estimate import price_book

        out += ["", *cache_lines(cache_savings(conn, filters, price_book())), ""]
        out += spike_lines(spend_spikes(conn, filters, tz))
    return out


def _span(conn: Connection, filters: Filters, tz: str, first: date | None, last: date | None) -> str:
    """``2026-11-01 .. 2026-11-30 (Europe/Berlin)``: open sides filled from the calls themselves."""
    if first is None or last is None:
        zone = get_zone(tz)
        first_call, last_call = call_span(conn, filters)
        if first is None and first_call is not None:
            first = first_call.astimezone(zone).date()
        if last is None and last_call is not None:
            last = last_call.astimezone(zone).date()
    if first is None and last is None:
        return f"no calls ({tz})"
    return f"{first or 'no calls'} .. {last or 'no calls'} ({tz})"


def _breakdown(group: str, rows: list[dict], total_cost) -> list[str]:
    if group not in PERIODS:  # dimensions: the largest spend first; periods stay in time order
        rows = sorted(rows, key=lambda r: r["cost_usd"], reverse=True)
    if not rows:
        return [f"By {printable(group)}: no calls"]
    body = []
    for r in rows:
        share = f"{r['cost_usd'] / total_cost * 100:.1f}%" if total_cost else "-"
        label = r[group].isoformat() if hasattr(r[group], "isoformat") else printable(r[group])
        body.append([label, f"{r['requests']:,}", f"{r['prompt_tokens']:,}", f"{r['completion_tokens']:,}",
                     money_display(r["cost_usd"]), share])
    return text_table(f"By {printable(group)}", [printable(group), *_HEADER[1:]], body, right={1, 2, 3, 4, 5})
