"""Spend files for finance: per-call and grouped CSV, JSON lines and FinOps FOCUS.

``spendlog export`` and the dashboard's downloads both call this module, and it reads only
through ``spendlog.db.queries`` (no SQL here), so every file agrees with every screen. The cell
rules (money, instants, unknowns, spreadsheet-safe text) are ``spendlog.report.table``'s.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from itertools import chain
from operator import itemgetter
from typing import TextIO

from spendlog.db.models import MONEY_MEASURES, SPEND_MEASURES
from spendlog.db.queries import Filters, grouped_totals, iter_call_chunks

from .focus import export_focus_calls, export_focus_grouped
from .table import TABLE_FORMATS, TRIGGERS, chunked, neutralise, write_chunks, write_table

__all__ = [
    "FORMATS",
    "GROUP_MEASURES",
    "CALL_COLUMNS",
    "grouped_columns",
    "export_grouped",
    "export_calls",
    "grouped_csv",
    "calls_csv",
]

FORMATS = TABLE_FORMATS
# The grouped file's measure columns: the rollup's spend sums (``cost_usd`` = ``billed_cost_usd`` +
# ``estimated_cost_usd``), then ``calls_unpriced``: the calls with no cost (``cost_source = 'missing'``),
# the same count as ``calls_missing_cost``, which stays for the scripts that read it.
GROUP_MEASURES = (*SPEND_MEASURES, "calls_unpriced")
_GROUP_SOURCE = {"calls_unpriced": "calls_missing_cost"}  # file column -> read-layer measure
CALL_COLUMNS = (
    "id",
    "created_at",
    "request_id",
    "model",
    "requested_model",
    "provider",
    "app",
    "user",
    "tags",
    "api_key_hint",
    "status_code",
    "error_type",
    "finish_reason",
    "stream",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "cost_usd",
    "cost_source",
    "list_cost_usd",
    "price_source",
    "latency_ms",
    "ttft_ms",
)
_CALL_TEXT = ("id", "request_id", "model", "requested_model", "provider", "app", "user", "tags", "api_key_hint",
              "error_type", "finish_reason", "cost_source", "price_source")
_first_char = itemgetter(0)


def grouped_columns(by: Sequence[str]) -> list[str]:
    """The header of a grouped export: the groups in the order given, then the measures."""
    return [*by, *GROUP_MEASURES]


def export_grouped(
    conn, filters: Filters, by: Sequence[str], tz: str, fmt: str, out: TextIO, *, progress=None
) -> int:
    """Totals per group (``by`` from ``queries.GROUPS``, periods in ``tz``) as ``fmt``."""
    if fmt == "focus":
        return export_focus_grouped(conn, filters, by, tz, out, progress=progress)
    columns = grouped_columns(by)
    sources = [_GROUP_SOURCE.get(c, c) for c in columns]
    rows = ([r[c] for c in sources] for r in grouped_totals(conn, filters, by, tz))
    kinds = ["any"] * len(by) + ["money" if m in MONEY_MEASURES else "int" for m in GROUP_MEASURES]
    return write_table(chunked(rows), columns, fmt, out, kinds=kinds, progress=progress)


def export_calls(conn, filters: Filters, fmt: str, out: TextIO, *, progress=None, chunk_size: int = 10_000) -> int:
    """One row per call (``CALL_COLUMNS``), streamed, as ``fmt``."""
    if fmt == "focus":
        return export_focus_calls(conn, filters, out, progress=progress, chunk_size=chunk_size)
    if fmt == "jsonl":
        chunks = iter_call_chunks(conn, filters, CALL_COLUMNS, chunk_size=chunk_size)
        return write_table(chunks, CALL_COLUMNS, fmt, out, progress=progress)
    if fmt != "csv":
        raise ValueError(f"unknown format {fmt!r}: choose from {', '.join(FORMATS)}")
    # The bulk path: the database renders timestamps, money, tags and flags as text (plain=True),
    # so a chunk goes to csv.writer as fetched unless one of its text cells needs neutralising.
    chunks = iter_call_chunks(conn, filters, CALL_COLUMNS, chunk_size=chunk_size, plain=True)
    text_columns = [i for i, c in enumerate(CALL_COLUMNS) if c in _CALL_TEXT]
    writer = csv.writer(out)
    writer.writerow([neutralise(c) for c in CALL_COLUMNS])
    return write_chunks(chunks, lambda chunk: writer.writerows(_neutralise_rows(chunk, text_columns)), progress)


def _neutralise_rows(rows: list, columns: Sequence[int]) -> list:
    """``rows`` with the text cells at ``columns`` neutralised. One pass of C-level iteration
    proves the common case (nothing to do); only rows with a trigger are copied and patched."""
    pick = itemgetter(*columns)
    cells = filter(None, chain.from_iterable(map(pick, rows)))
    if TRIGGERS.isdisjoint(map(_first_char, cells)):
        return rows
    rows = list(rows)
    for i in columns:
        values = list(map(itemgetter(i), rows))
        if TRIGGERS.isdisjoint(map(_first_char, filter(None, values))):
            continue
        for k, value in enumerate(values):
            if value and value[0] in TRIGGERS:
                row = rows[k]
                if not isinstance(row, list):
                    row = rows[k] = list(row)
                row[i] = neutralise(value)
    return rows


def grouped_csv(conn, filters: Filters, by: Sequence[str], tz: str = "UTC") -> bytes:
    """The grouped CSV as UTF-8 bytes (the dashboard's download button)."""
    buf = io.StringIO(newline="")
    export_grouped(conn, filters, by, tz, "csv", buf)
    return buf.getvalue().encode("utf-8")


def calls_csv(conn, filters: Filters) -> bytes:
    """The per-call CSV as UTF-8 bytes (the dashboard's download button; held in memory, so
    the caller should bound the range)."""
    buf = io.StringIO(newline="")
    export_calls(conn, filters, "csv", buf)
    return buf.getvalue().encode("utf-8")
