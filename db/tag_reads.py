"""What tags a range holds, for the dashboard's tag filter and tag-key picker (issue 15).

Read from ``rollup_tags`` (one row per hour x key x value x model x app), within the filters'
range widened to whole hours like ``queries.distinct_values``: ``tag_keys`` lists the keys by
calls, ``tag_pairs`` the ``(key, value)`` pairs by calls, at most ``limit`` of them (a range may
hold 10,000 customers). Bound parameters only; spend figures themselves come from
``queries.grouped_totals``.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from .filters import Filters
from .models import RollupTags
from .periods import ceil_hour, floor_hour

__all__ = ["tag_keys", "tag_pairs", "MAX_PAIRS"]

MAX_PAIRS = 2_000


def _range(filters: Filters) -> list:
    t = RollupTags
    out = []
    if filters.start is not None:
        out.append(t.bucket >= floor_hour(filters.start))
    if filters.end is not None:
        out.append(t.bucket < ceil_hour(filters.end))
    return out


def tag_keys(conn: Connection, filters: Filters | None = None) -> list[str]:
    """The tag keys of the range's calls, the most calls first (then by key)."""
    t = RollupTags
    calls = func.sum(t.requests)
    stmt = (select(t.tag_key).where(*_range(filters or Filters())).group_by(t.tag_key)
            .order_by(calls.desc(), t.tag_key))
    return list(conn.scalars(stmt))


def tag_pairs(conn: Connection, filters: Filters | None = None, *, limit: int = MAX_PAIRS) -> list[tuple[str, str]]:
    """The range's ``(key, value)`` tags, the most calls first (then by key and value), at most ``limit``."""
    t = RollupTags
    calls = func.sum(t.requests)
    stmt = (select(t.tag_key, t.tag_value).where(*_range(filters or Filters())).group_by(t.tag_key, t.tag_value)
            .order_by(calls.desc(), t.tag_key, t.tag_value).limit(limit))
    return [(k, v) for k, v in conn.execute(stmt)]
