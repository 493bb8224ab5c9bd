"""What tags a range holds, for the dashboard's tag filter and tag-key picker (issue 15).

Read from ``rollup_tag_days`` (one row per UTC day x key x value, revision 0008) for the range's
whole UTC days and ``rollup_tags`` (one row per hour x key x value x model x app) for the hours left, within the filters' range widened to whole
hours like ``queries.distinct_values``, one ``GROUP BY`` per table (``tag_choices``): the keys, the key on most calls first (among equals the one with fewer values,
then by name), and the ``(key, value)`` pairs, most calls first (then by key and value), at most
``limit`` of them (a range may hold 10,000 customers). Bound parameters only; spend figures
themselves come from ``queries.grouped_totals``.
"""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from .filters import Filters
from .models import RollupTagDays, RollupTags
from .periods import ceil_hour, floor_hour
from .plan import whole_days

__all__ = ["tag_choices", "tag_keys", "tag_pairs", "MAX_PAIRS"]

MAX_PAIRS = 2_000


def tag_choices(conn: Connection, filters: Filters | None = None, *,
                limit: int = MAX_PAIRS) -> tuple[list[str], list[tuple[str, str]]]:
    """``(keys, pairs)`` of the range's calls, ordered as the module docstring says."""
    filters = filters or Filters()
    start = floor_hour(filters.start) if filters.start is not None else None
    end = ceil_hour(filters.end) if filters.end is not None else None
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for table, ranges in zip((RollupTagDays, RollupTags), whole_days(start, end)):
        for lo, hi in ranges:
            bounds = [] if lo is None else [table.bucket >= lo]
            if hi is not None:
                bounds.append(table.bucket < hi)
            stmt = (select(table.tag_key, table.tag_value, func.sum(table.requests)).where(*bounds)
                    .group_by(table.tag_key, table.tag_value))
            for key, value, n in conn.execute(stmt):
                counts[(key, value)] += n
    calls: dict[str, int] = defaultdict(int)
    values: dict[str, int] = defaultdict(int)
    pairs = []
    for (key, value), n in counts.items():
        calls[key] += n
        values[key] += 1
        pairs.append((-n, key, value))
    keys = sorted(calls, key=lambda k: (-calls[k], values[k], k))
    pairs.sort()
    return keys, [(k, v) for _, k, v in pairs[:limit]]


def tag_keys(conn: Connection, filters: Filters | None = None) -> list[str]:
    """The range's tag keys (``tag_choices``' order)."""
    return tag_choices(conn, filters, limit=0)[0]


def tag_pairs(conn: Connection, filters: Filters | None = None, *, limit: int = MAX_PAIRS) -> list[tuple[str, str]]:
    """The range's ``(key, value)`` tags, most calls first, at most ``limit``."""
    return tag_choices(conn, filters, limit=limit)[1]
