"""Spend files for finance: CSV, JSON lines and FinOps FOCUS, from the shared read layer.

``spendlog export`` and the dashboard's downloads both call this module, and it reads only
through ``spendlog.db.queries`` (no SQL here), so every file agrees with every screen.

Cells, the same in every file:

- money (``cost_usd``, FOCUS costs): the exact decimal value, plain notation (never an
  exponent), trailing zeros dropped: ``0.000148``, ``12.5``, ``0``. Stored amounts have at most
  12 decimal places, so nothing is ever rounded.
- instants: ISO 8601 in UTC with microseconds, ``2024-05-01T23:30:00.000000Z``; period columns
  (``day``, ``week``, ``month``): the local start date, ``2024-05-01``.
- unknown values: an empty cell (JSON ``null``); ``stream``: ``true`` / ``false``; ``tags``: JSON.

CSV and FOCUS files are RFC 4180 (UTF-8, comma, ``"`` quoting, CRLF). Model, app, user and tag
values arrive in request headers and are untrusted: a text cell that begins with ``=``, ``+``,
``-``, ``@``, tab or carriage return (or their full-width forms) gets a leading ``'`` so
spreadsheets show it as text instead of running it (OWASP "CSV Injection"); the header row goes
through the same function. JSON lines keep the exact values, since no spreadsheet evaluates them.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime, timezone
from decimal import ROUND_HALF_UP, Decimal
from itertools import chain
from operator import itemgetter
from typing import TextIO

from spendlog.db.models import SPEND_MEASURES
from spendlog.db.queries import Filters, grouped_totals, iter_call_chunks

__all__ = [
    "FORMATS",
    "GROUP_MEASURES",
    "CALL_COLUMNS",
    "neutralise",
    "format_money",
    "display_money",
    "format_instant",
    "grouped_columns",
    "write_table",
    "export_grouped",
    "export_calls",
    "grouped_csv",
    "calls_csv",
]

FORMATS = ("csv", "jsonl", "focus")
GROUP_MEASURES = SPEND_MEASURES  # the grouped file's measure columns: the rollup's spend sums
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
    "latency_ms",
    "ttft_ms",
)
_CALL_TEXT = ("id", "request_id", "model", "requested_model", "provider", "app", "user", "api_key_hint",
              "error_type", "finish_reason", "cost_source")

# ---------------------------------------------------------------- cells

_TRIGGERS = "=+-@\t\r\uff1d\uff0b\uff0d\uff20"  # OWASP's list plus the full-width =, +, -, @
_TRIGGER_SET = frozenset(_TRIGGERS)
_first_char = itemgetter(0)


def neutralise(cell: str) -> str:
    """Make a text cell inert in spreadsheets: prefix ``'`` when it starts with a formula
    trigger. The one place the CSV, FOCUS and dashboard downloads do this."""
    if cell and cell[0] in _TRIGGERS:
        return "'" + cell
    return cell


def format_money(amount: Decimal) -> str:
    """Exact, plain notation, no trailing zeros: ``Decimal('1.2500')`` -> ``'1.25'``."""
    text = format(amount, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def display_money(amount: Decimal) -> str:
    """Money for people (the dashboard, ``spendlog summary``): ``$1,234.56``; under $0.10 three
    significant digits, so a small sum never reads as zero (``$0.000148``). Files keep
    ``format_money``'s exact digits."""
    sign = "-" if amount < 0 else ""
    amount = abs(amount)
    if amount == 0:
        return "$0.00"
    # adjusted() is the exponent of the first significant digit: 0.000148 -> -4
    places = 2 if amount >= Decimal("0.1") else max(2, -amount.adjusted() + 2)
    text = format(amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP), "f")
    if places > 2:  # small amounts: drop trailing zeros, keep two places (0.0990 -> 0.099; 0.09999 -> 0.10)
        text = text.rstrip("0")
        if len(text.partition(".")[2]) < 2:
            text = text.ljust(len(text.partition(".")[0]) + 3, "0")
    whole, _, frac = text.partition(".")
    return f"{sign}${int(whole):,}.{frac}"


def format_instant(value: datetime) -> str:
    """An aware datetime as ISO 8601 UTC with microseconds and ``Z``."""
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _json(value) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=_json_default)


def _text_form(value) -> str | None:
    """The text of a money amount, an instant or a date, or None for any other type. One mapping
    for CSV cells and JSON values alike, so the files never disagree on a value."""
    if isinstance(value, Decimal):
        return format_money(value)
    if isinstance(value, datetime):  # before date: a datetime is also a date
        return format_instant(value)
    if isinstance(value, date):
        return value.isoformat()
    return None


def _json_default(value):
    """What ``json.dumps`` calls for a type it cannot write itself."""
    text = _text_form(value)
    if text is None:
        raise TypeError(f"cannot write {type(value).__name__} to JSON")
    return text


def _csv_cell(value):
    """Any value -> what csv.writer should write (ints and None pass through)."""
    if value is None or type(value) is int:
        return value
    if isinstance(value, str):
        return neutralise(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    text = _text_form(value)
    if text is not None:
        return text
    if isinstance(value, (dict, list)):
        return neutralise(_json(value))
    return neutralise(str(value))


def _json_line(names: list[str], row: Sequence) -> str:
    """One JSON object, keys in column order; money, instants and dates go through
    ``_json_default`` (the encoder calls it only for those cells)."""
    record = dict(zip(names, row))
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=_json_default) + "\n"


# ---------------------------------------------------------------- writing


def _column_csv(values: tuple, kind: str) -> Sequence:
    """Format one column of a chunk for CSV: ``int`` passes through, ``money`` is a Decimal
    column, anything else is formatted cell by cell by type."""
    if kind == "int":
        return values
    if kind == "money":
        return [None if v is None else format_money(v) for v in values]
    return [_csv_cell(v) for v in values]


def write_table(
    chunks: Iterable[Sequence[Sequence]],
    columns: Sequence[str],
    fmt: str,
    out: TextIO,
    *,
    kinds: Sequence[str] | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write a header and rows (given as chunks of row sequences aligned with ``columns``) as
    ``csv`` (also used for FOCUS) or ``jsonl`` to the text stream ``out``; returns the row
    count. ``kinds`` (per column: ``int``, ``money`` or ``any``) lets CSV skip the per-cell
    work for integer columns; without it every cell is formatted by its type. ``out`` should
    be opened with ``newline=""``."""
    if fmt == "jsonl":
        names = list(columns)

        def write_lines(chunk: Sequence[Sequence]) -> None:
            out.write("".join(_json_line(names, row) for row in chunk))

        return _write_chunks(chunks, write_lines, progress)
    if fmt not in ("csv", "focus"):
        raise ValueError(f"unknown format {fmt!r}: choose from {', '.join(FORMATS)}")
    writer = csv.writer(out)
    writer.writerow([neutralise(c) for c in columns])
    kinds = list(kinds) if kinds is not None else ["any"] * len(columns)

    def write_chunk(chunk: Sequence[Sequence]) -> None:
        cols = [_column_csv(col, kind) for col, kind in zip(zip(*chunk), kinds)]
        writer.writerows(zip(*cols))

    return _write_chunks(chunks, write_chunk, progress)


def _write_chunks(
    chunks: Iterable[Sequence], write_chunk: Callable[[Sequence], None], progress: Callable[[int], None] | None
) -> int:
    """Write each non-empty chunk and return the row count. Every format counts and reports
    progress here, chunk by chunk, so a progress bar moves the same way whatever the format."""
    count = 0
    for chunk in chunks:
        if not chunk:
            continue
        write_chunk(chunk)
        count += len(chunk)
        if progress is not None:
            progress(len(chunk))
    return count


def grouped_columns(by: Sequence[str]) -> list[str]:
    """The header of a grouped export: the groups in the order given, then the measures."""
    return [*by, *GROUP_MEASURES]


def _chunked(rows: Iterable, size: int = 10_000) -> Iterable[list]:
    chunk: list = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def export_grouped(
    conn, filters: Filters, by: Sequence[str], tz: str, fmt: str, out: TextIO, *, progress=None
) -> int:
    """Totals per group (``by`` from ``queries.GROUPS``, periods in ``tz``) as ``fmt``."""
    if fmt == "focus":
        from spendlog.focus import export_focus_grouped

        return export_focus_grouped(conn, filters, by, tz, out, progress=progress)
    columns = grouped_columns(by)
    rows = ([r[c] for c in columns] for r in grouped_totals(conn, filters, by, tz))
    kinds = ["any"] * len(by) + ["int"] * len(GROUP_MEASURES)
    kinds[len(by) + GROUP_MEASURES.index("cost_usd")] = "money"
    return write_table(_chunked(rows), columns, fmt, out, kinds=kinds, progress=progress)


def export_calls(conn, filters: Filters, fmt: str, out: TextIO, *, progress=None, chunk_size: int = 10_000) -> int:
    """One row per call (``CALL_COLUMNS``), streamed, as ``fmt``."""
    if fmt == "focus":
        from spendlog.focus import export_focus_calls

        return export_focus_calls(conn, filters, out, progress=progress, chunk_size=chunk_size)
    if fmt == "jsonl":
        chunks = iter_call_chunks(conn, filters, CALL_COLUMNS, chunk_size=chunk_size)
        return write_table(chunks, CALL_COLUMNS, fmt, out, progress=progress)
    if fmt != "csv":
        raise ValueError(f"unknown format {fmt!r}: choose from {', '.join(FORMATS)}")
    # The bulk path: the database renders timestamps, money, tags and flags as text (plain=True),
    # so a chunk goes to csv.writer as fetched unless one of its text cells needs neutralising.
    chunks = iter_call_chunks(conn, filters, CALL_COLUMNS, chunk_size=chunk_size, plain=True)
    text_columns = [i for i, c in enumerate(CALL_COLUMNS) if c in _CALL_TEXT or c == "tags"]
    writer = csv.writer(out)
    writer.writerow([neutralise(c) for c in CALL_COLUMNS])
    return _write_chunks(chunks, lambda chunk: writer.writerows(_neutralise_rows(chunk, text_columns)), progress)


def _neutralise_rows(rows: list, columns: Sequence[int]) -> list:
    """``rows`` with the text cells at ``columns`` neutralised. One pass of C-level iteration
    proves the common case (nothing to do); only rows with a trigger are copied and patched."""
    pick = itemgetter(*columns)
    cells = filter(None, chain.from_iterable(map(pick, rows)))
    if _TRIGGER_SET.isdisjoint(map(_first_char, cells)):
        return rows
    rows = list(rows)
    for i in columns:
        values = list(map(itemgetter(i), rows))
        if _TRIGGER_SET.isdisjoint(map(_first_char, filter(None, values))):
            continue
        for k, value in enumerate(values):
            if value and value[0] in _TRIGGER_SET:
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
