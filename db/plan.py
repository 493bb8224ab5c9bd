"""How ``db.queries.grouped_totals`` reads: ``plan_grouped`` and its parts.

A plan is a list of parts, each one SQL statement over one table (``SOURCES``):

- ``"daily"`` (``rollup_daily``) / ``"tags_daily"`` (``rollup_tags_daily``) / ``"tag_days"``
  (``rollup_tag_days``, revision 0008): the whole UTC days of the range. Used only when no local period starts inside one of those days (no period grouping;
  UTC; a zone at offset 0 then; a week or month grouping whose boundaries fall outside them), so
  that each day, counted at its midnight, lies inside one period. An open end is the data's span
  widened to whole days: a day's midnight may come before its first call.
- ``"rollup"`` (``rollup_hourly``) / ``"tags"`` (``rollup_tags``): the whole hours left, at the
  range's ends when days are used, else all of them.
- ``"raw"`` (``completions``): the partial hours at the ends, and the side of each hour that a
  local period boundary cuts (:30/:45 zones, ``db.split_hours``).

With one tag filter the rollup parts are the tag tables; with a ``tag:KEY`` grouping every rollup
part has a tag twin (``tag``: its rows count for their value and against ``(none)``). A tag read
that neither groups nor filters by model or app (``_tag_days``) takes its days' twin from
``rollup_tag_days``, one row per day and value, instead of ``rollup_tags_daily``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from .filters import Filters, tag_rollup_answers
from .groups import parse_groups, tag_key
from .models import Completion, RollupDaily, RollupHourly, RollupTagDays, RollupTags, RollupTagsDaily
from .periods import PERIODS, bucket_minutes, ceil_day, ceil_hour, floor_day, floor_hour, get_zone, period_boundaries

__all__ = ["Part", "SOURCES", "TABLES", "plan_grouped", "check_groups", "data_span", "whole_days", "reads_calls"]

SOURCES = ("auto", "raw", "rows", "rollup")
# a part's source -> its table
TABLES = {"raw": Completion, "rollup": RollupHourly, "daily": RollupDaily, "tags": RollupTags,
          "tags_daily": RollupTagsDaily, "tag_days": RollupTagDays}
_TAG_TWIN = {"rollup": "tags", "daily": "tags_daily"}
_TAG_DAYS_TWIN = {"rollup": "tags", "daily": "tag_days"}  # no model or app in the read (``_tag_days``)
_RANGES_PER_QUERY = 200  # split hours read from raw rows per query (an OR of indexed ranges)


class Part(NamedTuple):
    """One statement of a plan."""

    source: str  # "rollup" | "daily" | "tags" | "tags_daily" | "tag_days" | "raw" (``TABLES``)
    ranges: tuple[tuple[datetime | None, datetime | None], ...]  # [start, end) pairs, None = open
    bucket: int | None  # minutes per UTC time bucket (0 = per row); None = no time grouping
    # (hour, boundary) of the hours a local period boundary cuts. The rollup part holds those
    # hours back; the raw part reads the smaller side of each; the other side is the difference.
    split: tuple[tuple[datetime, datetime], ...] = ()
    # a "tags" part of a tag:KEY grouping: its rows count for their value and against (none)
    tag: str | None = None


def data_span(conn: Connection) -> tuple[datetime | None, datetime | None]:
    """The hours the ledger holds, ``[first, end)`` (None, None when empty)."""
    lo = conn.scalar(select(func.min(RollupHourly.bucket)))
    hi = conn.scalar(select(func.max(RollupHourly.bucket)))
    if lo is None:  # no rollup rows: ask the raw table (indexed)
        lo = conn.scalar(select(func.min(Completion.created_at)))
        hi = conn.scalar(select(func.max(Completion.created_at)))
        return lo, (hi + timedelta(hours=1) if hi is not None else None)
    return lo, floor_hour(hi) + timedelta(hours=1)  # a bucket may be its hour + n µs (db.store)


def check_groups(by: Sequence[str]) -> tuple[str, ...]:
    """``by`` checked and normalised (``db.groups.parse_groups``; one string is one group)."""
    return parse_groups((by,) if isinstance(by, str) else by)


def plan_grouped(
    conn: Connection, filters: Filters, by: Sequence[str], tz: str = "UTC", *, source: str = "auto"
) -> list[Part]:
    """How ``grouped_totals`` will read: a list of parts (source, [start, end) ranges, bucket
    minutes, split hours).

    ``"auto"``: whole UTC days from the daily rollup where every period boundary is a UTC
    midnight, the other whole hours from the hourly rollup; partial hours at the range's ends from
    raw rows; an hour that a local period boundary cuts (one a day in :30/:45 zones) from the rollup
    minus its smaller side, which is read from raw rows in 15-minute (or finer) UTC buckets.
    ``"raw"``: only ``completions``, coarsest exact buckets. ``"rows"``: ``completions`` with no
    time bucketing (the slow reference the tests compare with). ``"rollup"``: ``ValueError``
    unless the rollups alone answer exactly."""
    by = check_groups(by)
    get_zone(tz)
    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, not {source!r}")
    start, end = filters.start, filters.end
    if start is not None and end is not None and start >= end:
        return []
    periods = [g for g in by if g in PERIODS]
    boundaries: list[datetime] = []
    minutes = None  # no time grouping
    data_lo = data_hi = None
    if periods:
        lo, hi = start, end
        if lo is None or hi is None:
            data_lo, data_hi = data_span(conn)
            if data_lo is None:
                return []  # nothing stored at all
            lo, hi = lo or data_lo, hi or data_hi
        boundaries = period_boundaries(tz, periods, lo, hi) if lo < hi else []
        minutes = 0 if source == "rows" else bucket_minutes(boundaries)

    def raw(*ranges: tuple) -> Part:
        return Part("raw", tuple(ranges), minutes)

    first = ceil_hour(start) if start is not None else None
    last = floor_hour(end) if end is not None else None
    tags = "raw" if reads_calls(filters, by) else _tag_plan(filters, by)  # arrival times: the calls only
    if tags == "raw":  # more than the rollups hold: the calls themselves
        if source == "rollup":
            raise ValueError("the rollup cannot answer this exactly: "
                             + ("arrival times are in the calls only" if filters.arrived_after is not None
                                else "rollup_tags holds one tag by model and app"))
        source = "raw" if source == "auto" else source
    if source in ("raw", "rows") or (first is not None and last is not None and first >= last):
        if source == "rollup":
            raise ValueError("the rollup cannot answer this exactly: the range is not in whole hours")
        return [raw((start, end))]
    cut = [(floor_hour(b), b) for b in boundaries if b != floor_hour(b)] if periods else []
    cut = [(h, b) for h, b in cut if (first is None or h >= first) and (last is None or h < last)]
    bucket = 60 if periods else None
    parts = []
    days, hours = whole_days(first, last)
    if days and periods:  # a day's rows count for the period of its midnight: no period may start inside one
        (lo, hi), = days
        lo, hi = lo or floor_day(data_lo), hi or ceil_day(data_hi)
        if any(b != floor_day(b) for b in period_boundaries(tz, periods, lo, hi)):
            days, hours = (), ((first, last),)
    twin = _TAG_DAYS_TWIN if tags and _tag_days(filters, by) else _TAG_TWIN
    for kind, ranges, split in (("daily", days, ()), ("rollup", hours, tuple(cut))):
        if not ranges:
            continue
        if tags == "filter":  # one tag=value: its rows of the tag rollups
            parts.append(Part(twin[kind], ranges, bucket, split))
        elif tags:  # by tag:KEY: every call (none), then the tagged ones move to their value
            parts += [Part(kind, ranges, bucket, split), Part(twin[kind], ranges, bucket, split, tag=tags)]
        else:
            parts.append(Part(kind, ranges, bucket, split))
    edges = []
    if start is not None and first != start:
        edges.append((start, first))
    if end is not None and last != end:
        edges.append((last, end))
    if source == "rollup" and (edges or cut):
        raise ValueError("the rollup cannot answer this exactly: the range or the zone's offset is not in whole hours")
    if edges:
        parts.append(raw(*edges))
    for i in range(0, len(cut), _RANGES_PER_QUERY):
        chunk = tuple(cut[i : i + _RANGES_PER_QUERY])
        parts.append(Part("raw", tuple(_smaller_side(h, b) for h, b in chunk), minutes, chunk))
    return parts


def reads_calls(filters: Filters, by: Sequence[str]) -> bool:
    """Whether ``plan_grouped`` reads these filters and groups from the calls alone (the range's
    every call, tags from their JSON), because no rollup holds them: two tags, a tag with a provider,
    user, key or status, arrival times (the rule ``plan_grouped`` itself follows)."""
    return filters.arrived_after is not None or _tag_plan(filters, check_groups(by)) == "raw"


def whole_days(first: datetime | None, last: datetime | None) -> tuple:
    """The whole hours ``[first, last)`` (None = open) as ``(days, hours)``: the [start, end)
    range of the whole UTC days in them, for the daily rollups (one, or none), and the ranges of
    hours left at both ends, for the hourly ones."""
    lo = ceil_day(first) if first is not None else None
    hi = floor_day(last) if last is not None else None
    if lo is not None and hi is not None and lo >= hi:
        return (), ((first, last),)
    hours = []
    if first is not None and first != lo:
        hours.append((first, lo))
    if last is not None and last != hi:
        hours.append((hi, last))
    return ((lo, hi),), tuple(hours)


def _tag_plan(filters: Filters, by: Sequence[str]) -> str | None:
    """How a read with tags uses ``rollup_tags``: None (no tags), ``"filter"`` (one tag=value, and
    maybe a ``tag:KEY`` group of that same key), the key of its one ``tag:KEY`` group, or ``"raw"``
    (two tags, or dimensions it lacks)."""
    keys = [k for k in map(tag_key, by) if k is not None]
    if not keys and not filters.tags:
        return None
    if len(filters.tags) == 1 and keys and set(keys) == {filters.tags[0][0]}:
        keys = []  # grouped by the key it filters on: every matching call holds the filter's value
    if len(keys) + len(filters.tags) != 1 or not tag_rollup_answers(filters):
        return "raw"
    if any(g not in PERIODS and g not in ("model", "app") and tag_key(g) is None for g in by):
        return "raw"
    return keys[0] if keys else "filter"


def _tag_days(filters: Filters, by: Sequence[str]) -> bool:
    """Whether a read that ``rollup_tags`` answers (``_tag_plan``) needs no model or app either, so
    that ``rollup_tag_days`` answers its whole days: no model or app filter, only periods and the tag
    grouped (provider, user, key, status and arrival already send it elsewhere)."""
    return not (filters.models or filters.apps) and all(g in PERIODS or tag_key(g) is not None for g in by)


def _smaller_side(hour: datetime, boundary: datetime) -> tuple[datetime, datetime]:
    if boundary - hour <= timedelta(minutes=30):
        return hour, boundary
    return boundary, hour + timedelta(hours=1)
