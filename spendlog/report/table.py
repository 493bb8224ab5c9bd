"""Tables as files: the cell rules every spendlog file shares, and the writer that applies them.

Cells, the same in every file (per-call and grouped exports, FOCUS, the reconcile report):

- money: ``money.money_exact``'s text, the exact decimal value in plain notation (never an
  exponent), trailing zeros dropped: ``0.000148``, ``12.5``, ``0``. Stored amounts have at most
  12 decimal places, so nothing is ever rounded.
- instants: ISO 8601 in UTC with microseconds, ``2024-05-01T23:30:00.000000Z``; dates (period
  columns ``day``, ``week``, ``month``): the local start date, ``2024-05-01``.
- unknown values: an empty cell (JSON ``null``); booleans: ``true`` / ``false``; dicts and lists
  (``tags``): JSON.

CSV files are RFC 4180 (UTF-8, comma, ``"`` quoting, CRLF). Model, app, user and tag values arrive
in request headers and are untrusted: a text cell that begins with ``=``, ``+``, ``-``, ``@``, tab or
carriage return (or their full-width forms) gets a leading ``'`` so spreadsheets show it as text
instead of running it (OWASP "CSV Injection"); the header row goes through the same function. JSON
lines keep the exact values, since no spreadsheet evaluates them.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import TextIO

from .money import money_exact

__all__ = ["TABLE_FORMATS", "TRIGGERS", "neutralise", "format_instant", "write_table", "write_chunks", "chunked"]

TABLE_FORMATS = ("csv", "jsonl", "focus")  # "focus" is CSV with FOCUS columns
TRIGGERS = frozenset("=+-@\t\r\uff1d\uff0b\uff0d\uff20")  # OWASP's list plus the full-width =, +, -, @


def neutralise(cell: str) -> str:
    """Make a text cell inert in spreadsheets: prefix ``'`` when it starts with a formula
    trigger. The one place the CSV, FOCUS and dashboard downloads do this."""
    if cell and cell[0] in TRIGGERS:
        return "'" + cell
    return cell


def format_instant(value: datetime) -> str:
    """An aware datetime as ISO 8601 UTC with microseconds and ``Z``."""
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _json(value) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=_json_default)


def _text_form(value) -> str | None:
    """The text of a money amount, an instant or a date, or None for any other type. One mapping
    for CSV cells and JSON values alike, so the files never disagree on a value."""
    if isinstance(value, Decimal):
        return money_exact(value)
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


def _column_csv(values: tuple, kind: str) -> Sequence:
    """Format one column of a chunk for CSV: ``int`` passes through, ``money`` is a Decimal
    column, anything else is formatted cell by cell by type."""
    if kind == "int":
        return values
    if kind == "money":
        return [None if v is None else money_exact(v) for v in values]
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

        return write_chunks(chunks, write_lines, progress)
    if fmt not in ("csv", "focus"):
        raise ValueError(f"unknown format {fmt!r}: choose from {', '.join(TABLE_FORMATS)}")
    writer = csv.writer(out)
    writer.writerow([neutralise(c) for c in columns])
    kinds = list(kinds) if kinds is not None else ["any"] * len(columns)

    def write_chunk(chunk: Sequence[Sequence]) -> None:
        cols = [_column_csv(col, kind) for col, kind in zip(zip(*chunk), kinds)]
        writer.writerows(zip(*cols))

    return write_chunks(chunks, write_chunk, progress)


def write_chunks(
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


def chunked(rows: Iterable, size: int = 10_000) -> Iterable[list]:
    """``rows`` as lists of at most ``size`` (what ``write_table`` takes)."""
    chunk: list = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
