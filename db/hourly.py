"""Sums per UTC hour and model, for the dashboard's hourly view of short ranges (up to two days).

The same exact sums as ``db.queries.grouped_totals`` (its ``bucket_sums``): whole hours from
``rollup_hourly`` (with one tag filter ``rollup_tags``), the partial hours at the range's ends from
``completions``. Buckets are UTC hours; the page shows each at its local start time. The daily
rollups (``rollup_daily``) cannot answer per-hour sums, so this view never reads them.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

from sqlalchemy.engine import Connection

from .filters import Filters, tag_rollup_answers
from .periods import ceil_hour, floor_hour
from .queries import MEASURES, add_measures, bucket_sums, zero_measures

__all__ = ["hourly_totals", "MAX_HOURS"]

MAX_HOURS = 24 * 3 + 2  # two local days and their DST / offset slack, with room to spare


def hourly_totals(conn: Connection, filters: Filters) -> Iterator[dict]:
    """``{"hour": aware UTC datetime, "model": str | None, **MEASURES}`` per hour and model,
    ordered by hour then model. ``filters`` must have both ends, at most ``MAX_HOURS`` apart."""
    start, end = filters.start, filters.end
    if start is None or end is None or end - start > timedelta(hours=MAX_HOURS):
        raise ValueError(f"hourly sums need a range of at most {MAX_HOURS} hours")
    if start >= end:
        return
    first, last = ceil_hour(start), floor_hour(end)
    parts: list[tuple[str, tuple]] = []
    whole = "rollup"  # a tag filter: its rows of rollup_tags when they hold it, else the calls
    if filters.tags:
        whole = "tags" if len(filters.tags) == 1 and tag_rollup_answers(filters) else "raw"
    if first < last:
        parts.append((whole, ((first, last),)))
        edges = tuple(r for r in ((start, first), (last, end)) if r[0] < r[1])
        if edges:
            parts.append(("raw", edges))
    else:
        parts.append(("raw", ((start, end),)))
    sums: dict[tuple[datetime, str | None], list] = {}
    for source, ranges in parts:
        for (bucket, model), values in bucket_sums(conn, source, ranges, filters, ["model"], 60):
            add_measures(sums.setdefault((floor_hour(bucket), model or None), zero_measures()), values)
    for (hour, model) in sorted(sums, key=lambda k: (k[0], k[1] is None, k[1] or "")):
        out = {"hour": hour, "model": model}
        out.update(zip(MEASURES, sums[(hour, model)]))
        yield out
