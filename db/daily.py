"""The daily rollups (revision 0007): ``rollup_daily`` and ``rollup_tags_daily``; and
``rollup_tag_days`` (revision 0008), ``rollup_tags_daily`` summed over model and app.

Each is its hourly table summed per UTC day: the same keys with ``bucket`` = the day's midnight,
the same sums, the same spill rule (a key whose day would pass a column, int64 pico-dollars on
SQLite, continues in a row at midnight + 1 µs, 2 µs, ...). They are kept from the hourly rows
themselves, never from a second reading of the calls, so a day is always the sum of its hours:

- ``daily_rows``: hourly rows (dicts) -> their daily rows, merged within the limits
  (``db.rollups.merge_into``). ``db.store.insert_records`` adds the batch's hourly rows to both
  (``upsert_daily``), and the tag ones' daily rows on to ``rollup_tag_days``
  (``DAILY[rollup_tags_daily]``: its keys are a subset of those, so they sum into it the same).
- ``fill_daily``: delete a daily table and sum it again from its hourly table, streaming the hourly
  rows in bucket order, one day at a time (revision 0007's upgrade, ``db.rebuild``). Pruned hours
  stay in the hourly tables (``db.prune``), so their days come back right. ``fill_days``: that,
  then the tables derived from the one filled (``rollup_tags`` -> ``rollup_tags_daily`` ->
  ``rollup_tag_days``), for ``db.rebuild``.
- ``db.reprice`` adds the same corrections to the day's first row as to the hour's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import delete, select
from sqlalchemy.engine import Connection

from .models import (ROLLUP_DIMENSIONS, ROLLUP_MEASURES, TAG_DAY_DIMENSIONS, TAG_DIMENSIONS, TAG_MEASURES,
                     RollupDaily, RollupHourly, RollupTagDays, RollupTags, RollupTagsDaily)
from .periods import floor_day
from .rollups import merge_into, rollup_limits, upsert_rollups

__all__ = ["DAILY", "daily_rows", "fill_daily", "fill_days", "upsert_daily"]

# a rollup table -> (the daily table summed from it, that table's key columns, measures)
DAILY = {
    RollupHourly.__table__: (RollupDaily.__table__, ROLLUP_DIMENSIONS, ROLLUP_MEASURES),
    RollupTags.__table__: (RollupTagsDaily.__table__, TAG_DIMENSIONS, TAG_MEASURES),
    RollupTagsDaily.__table__: (RollupTagDays.__table__, TAG_DAY_DIMENSIONS, TAG_MEASURES),
}
_FLUSH_KEYS = 200_000  # pending daily rows held before they are written


def daily_rows(rows: Iterable[dict], dims: Sequence[str], limits: dict) -> list[dict]:
    """The daily rows of hourly ``rows`` (each within ``limits``): per key (``dims``; other keys of
    the rows are summed away) with the bucket floored to its UTC day, the rows summed; a key whose
    day would pass ``limits`` is merged row by row instead (``merge_into``), continuing in the next
    row of that key where one is full. Each row holds ``dims`` and the measures only."""
    rows = list(rows)
    sums: dict[tuple, dict] = {}
    days: dict = {}  # bucket -> its day (a batch holds few buckets)
    measures = list(limits)
    for row in rows:
        bucket = row["bucket"]
        day = days.get(bucket)
        if day is None:
            day = days[bucket] = floor_day(bucket)
        key = (day, *(row[d] for d in dims[1:]))
        acc = sums.get(key)
        if acc is None:
            sums[key] = acc = dict(zip(dims, key))
            acc.update((m, row[m]) for m in measures)
        else:
            for m in measures:
                acc[m] += row[m]
    over = {k for k, acc in sums.items() if any(acc[m] > limit for m, limit in limits.items())}
    pieces: dict[tuple, list[dict]] = {}
    for row in rows if over else ():
        key = (days[row["bucket"]], *(row[d] for d in dims[1:]))
        if key in over:
            day = dict(zip(dims, key))
            day.update((m, row[m]) for m in measures)
            merge_into(pieces.setdefault(key, []), day, limits)
    return [row for key in sorted(sums) for row in pieces.get(key, [sums[key]])]


def upsert_daily(conn: Connection, source, rows: Sequence[dict]) -> None:
    """Add ``rows`` (just added to ``source``) to the daily table summed from ``source``
    (``DAILY``), and those daily rows to the table summed from that one, and so on, in the caller's
    transaction: ``rollup_tags`` -> ``rollup_tags_daily`` -> ``rollup_tag_days``."""
    while source in DAILY:
        daily, dims, measures = DAILY[source]
        rows = daily_rows(rows, dims, rollup_limits(conn.dialect.name, measures))
        upsert_rollups(conn, rows, daily)
        source = daily


def fill_daily(conn: Connection, hourly_table, *, chunk_size: int = 50_000) -> int:
    """Replace ``hourly_table``'s daily table by the sums of its hourly rows; returns how many
    hourly rows were read. Exact on both backends: summed in Python within the columns' limits."""
    daily, dims, measures = DAILY[hourly_table]
    limits = rollup_limits(conn.dialect.name, measures)
    conn.execute(delete(daily))
    query = select(*(hourly_table.c[c] for c in (*dims, *measures))).order_by(hourly_table.c.bucket)
    result = conn.execute(query, execution_options={"yield_per": chunk_size})
    pieces: dict[tuple, list[dict]] = {}
    total = 0
    for part in result.mappings().partitions(chunk_size):
        total += len(part)
        for row in daily_rows(part, dims, limits):  # a day across two parts: merged here
            merge_into(pieces.setdefault(tuple(row[d] for d in dims), []), row, limits)
        if len(pieces) > _FLUSH_KEYS:  # a day written in two goes adds up the same (upsert_rollups)
            _flush(conn, daily, pieces)
    _flush(conn, daily, pieces)
    return total


def fill_days(conn: Connection, table, *, chunk_size: int = 50_000) -> None:
    """``fill_daily`` for ``table``'s daily table, then for each table summed from that one."""
    while table in DAILY:
        fill_daily(conn, table, chunk_size=chunk_size)
        table = DAILY[table][0]


def _flush(conn: Connection, table, pieces: dict[tuple, list[dict]]) -> None:
    upsert_rollups(conn, [row for key in sorted(pieces) for row in pieces[key]], table)
    pieces.clear()
