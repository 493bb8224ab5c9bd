"""Closed months as files and text: the as-closed export and ``spendlog close --list``.

``export_closed`` writes a closed month's stored totals (``db.closes.closed_totals``) with the grouped
export's columns and cell rules (``files.grouped_columns``, ``table.write_table``), so right after a
close it is byte for byte the grouped export of that month in the close's zone, and stays so whatever
arrives later. The adjustments (the late rows) are an ordinary export with ``db.closes.late_filters``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO

from spendlog.db.closes import Close, closed_totals, history, late_totals
from spendlog.db.models import MONEY_MEASURES

from .files import GROUP_MEASURES, grouped_columns
from .focus import export_focus_grouped
from .money import money_exact
from .table import chunked, format_instant, write_table
from .terminal import printable, text_table

__all__ = ["export_closed", "history_lines"]

_SOURCE = {"calls_unpriced": "calls_missing_cost"}


def export_closed(conn, entry: Close, by: Sequence[str], fmt: str, out: TextIO) -> int:
    """The closed month's totals per group (``by`` from ``db.closes.CLOSED_GROUPS``) as csv, jsonl or
    FOCUS (``by`` with day or month), periods in the close's zone."""
    totals = list(closed_totals(conn, entry, by))  # checksum checked before a byte is written
    if fmt == "focus":
        return export_focus_grouped(conn, None, by, entry.tz, out, totals=totals)
    if fmt not in ("csv", "jsonl"):
        raise ValueError(f"an as-closed export is csv, jsonl or focus, not {fmt!r}")
    columns = grouped_columns(by)
    sources = [_SOURCE.get(c, c) for c in columns]
    rows = ([r[c] for c in sources] for r in totals)
    kinds = ["any"] * len(by) + ["money" if m in MONEY_MEASURES else "int" for m in GROUP_MEASURES]
    return write_table(chunked(rows), columns, fmt, out, kinds=kinds)


def history_lines(conn) -> list[str]:
    """Every close and reopen, oldest first, with the closed totals and what arrived late since."""
    entries = history(conn)
    if not entries:
        return ["No month has been closed."]
    in_force = {e.month: e.id for e in entries}  # the latest row per month
    header = ["month", "action", "zone", "at (UTC)", "by", "requests", "cost_usd", "late calls", "late cost_usd",
              "checksum", "note"]
    rows = []
    for e in entries:
        requests = cost = late_calls = late_cost = ""
        if e.action == "close":
            total = next(closed_totals(conn, e, ()))
            requests, cost = f"{total['requests']:,}", money_exact(total["cost_usd"])
            if in_force[e.month] == e.id:  # late rows count against the close in force
                late = late_totals(conn, e)
                late_calls, late_cost = f"{late['requests']:,}", money_exact(late["cost_usd"])
        at = format_instant(e.recorded_at)[:19].replace("T", " ")
        rows.append([e.month, e.action, e.tz, at, printable(e.recorded_by), requests, cost, late_calls, late_cost,
                     (e.checksum or "")[:12], printable(e.note) if e.note else ""])
    return text_table("Month closes", header, rows, right={5, 6, 7, 8})
