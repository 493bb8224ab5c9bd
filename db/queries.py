"""The read layer: every money figure the dashboard, the export and ``spendlog summary`` show.

One place computes money, so two readers never disagree:

- ``Filters``: the date range (aware UTC, ``[start, end)``) and the dimension/status filters.
  A dimension filter value ``""`` selects calls where that dimension is unknown.
- ``grouped_totals``: sums per period (``day``/``week``/``month`` in a timezone) and/or
  dimension (``model``, ``provider``, ``app``, ``user``, ``key`` = API key hint).
- ``iter_calls`` / ``count_calls``: the per-call rows behind those sums.

How ``grouped_totals`` reads (``plan_grouped`` shows it): SQL groups by UTC time bucket and the
requested dimensions, Python maps each bucket to its local period (``db.periods``) and adds up.
Whole UTC days come from ``rollup_daily`` where no local period starts inside a UTC day (no
period grouping, UTC, a zone at offset 0 throughout), the other whole hours from
``rollup_hourly`` (``db.plan``; a read by one tag from the tag rollups, its days from
``rollup_tag_days`` when it names no model or app); the only raw ``completions`` read are partial hours at the
range's ends and, in :30/:45 zones such as Asia/Kolkata, the one hour a day that a local midnight
cuts, grouped by 15-minute UTC buckets. Money is summed as exact ``Decimal``, so every
path gives the same figures to the last digit. On SQLite money is integer pico-dollars, whose
``SUM`` would overflow int64 past 9,223,372 USD: it is summed as two parts that cannot (the high
and the low 32 bits of each value, over up to 2^31 rows per group), put together exactly in
Python. Rollup rows for one hour (day) and key may be several (``db.store``: bucket = hour or
midnight + n µs); they are summed like any others. Filter values are bound parameters, never SQL text
(``db.filters``); per-call rows live in ``db.calls``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import datetime
from decimal import Decimal

from sqlalchemy import case, func, select
from sqlalchemy.engine import Connection

from .buckets import raw_bucket
from .calls import iter_call_chunks, iter_calls
from .filters import STATUSES, Filters, tag_value, where_clauses
from .groups import GROUPS, tag_key
from .models import Completion, RollupTagDays, RollupTags, RollupTagsDaily
from .periods import PERIODS, ceil_hour, date_bounds, floor_hour, period_keys
from .plan import TABLES, Part, check_groups, plan_grouped, reads_calls, whole_days
from .split_hours import SplitHours
from .store import is_error_clause
from .sums import MEASURES, TOKENS, add_measures, join_measures, money_sums, negated, zero_measures

__all__ = [
    "GROUPS",
    "STATUSES",
    "DIMENSIONS",
    "MEASURES",
    "Filters",
    "date_bounds",
    "grouped_totals",
    "plan_grouped",
    "reads_calls",
    "iter_calls",
    "iter_call_chunks",
    "count_calls",
    "distinct_values",
    "total_spend",
    "call_span",
    "bucket_sums",
    "zero_measures",
    "add_measures",
]

DIMENSIONS = {"model": "model", "provider": "provider", "app": "app", "user": "user", "key": "api_key_hint"}


# ---------------------------------------------------------------- grouped SQL


def _grouped_select(dialect: str, part: Part, filters: Filters, dims: Sequence[str]):
    """The part's SQL: its time bucket and ``dims`` as keys, then the measures. A ``rollup`` or
    ``daily`` part leaves tag dimensions out (its rows are all calls: ``(none)`` until the tag part,
    whose keys hold the tag's value, takes the tagged ones away)."""
    raw = part.source == "raw"
    table = TABLES[part.source]
    tagged = table in (RollupTags, RollupTagsDaily, RollupTagDays)
    keys = []
    if part.bucket is not None:
        keys.append(raw_bucket(dialect, part.bucket) if raw else table.bucket)
    for d in dims:
        key = tag_key(d)
        if key is not None:
            if raw:
                keys.append(func.coalesce(tag_value(key), ""))
            elif tagged:
                keys.append(table.tag_value)
        else:
            column = DIMENSIONS[d]
            keys.append(func.coalesce(getattr(Completion, column), "") if raw else getattr(table, column))
    if raw:
        c = Completion
        measures = [
            func.count(),
            *(func.sum(getattr(c, t)) for t in TOKENS),
            *money_sums(dialect, c.cost_usd),
            func.sum(case((c.cost_usd.is_(None), 1), else_=0)),
            # the rollup's split (db.rollups): a cost is an estimate or else the upstream's bill
            *money_sums(dialect, case((c.cost_source == "estimated", None), else_=c.cost_usd)),
            *money_sums(dialect, case((c.cost_source == "estimated", c.cost_usd), else_=None)),
            *money_sums(dialect, c.list_cost_usd),
            func.sum(case((is_error_clause(), 1), else_=0)),
            func.sum(c.latency_ms),
            func.count(c.latency_ms),
        ]
    else:
        r = table
        errors = func.sum(r.errors) if tagged else func.sum(case((r.is_error.is_(True), r.requests), else_=0))
        measures = [
            func.sum(r.requests),
            *(func.sum(getattr(r, t)) for t in TOKENS),
            *money_sums(dialect, r.cost_usd),
            func.sum(r.calls_missing_cost),
            *money_sums(dialect, r.billed_cost_usd),
            *money_sums(dialect, r.estimated_cost_usd),
            *money_sums(dialect, r.list_cost_usd),
            errors,
            func.sum(r.latency_ms_sum),
            func.sum(r.latency_count),
        ]
    where = where_clauses(filters, raw=raw, ranges=part.ranges, table=None if raw else table)
    if part.tag is not None:
        where.append(table.tag_key == part.tag)
    stmt = select(*keys, *measures).where(*where)
    if keys:
        stmt = stmt.group_by(*keys)
    return stmt, len(keys)


def bucket_sums(conn: Connection, source: str, ranges: Sequence[tuple[datetime, datetime]], filters: Filters,
                dims: Sequence[str], minutes: int = 60) -> Iterator[tuple[tuple, list]]:
    """``(keys, MEASURES)`` per UTC bucket (``minutes``; the rollup's are its hour rows) and ``dims``,
    summed exactly over the [start, end) ``ranges`` from one ``source`` ("rollup", "daily", "tags",
    "tags_daily", "tag_days" or "raw")."""
    stmt, nkeys = _grouped_select(conn.dialect.name, Part(source, tuple(ranges), minutes), filters, dims)
    for row in conn.execute(stmt):
        yield tuple(row[:nkeys]), join_measures(conn.dialect.name, row[nkeys:])


class _Groups:
    """The sums of ``grouped_totals``, one list of ``MEASURES`` per output group.

    A group's key holds its values in ``by`` order: each period as the local start date of the
    time bucket's period, each dimension as its value (``None`` for unknown)."""

    def __init__(self, by: tuple[str, ...], tz: str):
        self.by = by
        self.periods = [g for g in by if g in PERIODS]
        self.dims = [g for g in by if g not in PERIODS]
        self._to_periods = period_keys(tz, self.periods) if self.periods else None
        self.sums: dict[tuple, list] = {}

    def key(self, instant: datetime | None, dim_values: Sequence) -> tuple:
        """The group of a time bucket starting at ``instant`` (None: no time grouping) with
        these dimension values (the rollup's ``""`` and the raw rows' ``coalesce`` read as None)."""
        named = {d: value or None for d, value in zip(self.dims, dim_values)}
        if instant is not None:
            named.update(zip(self.periods, self._to_periods(instant)))
        return tuple(named[g] for g in self.by)

    def add(self, instant: datetime | None, dim_values: Sequence, values: Sequence) -> None:
        key = self.key(instant, dim_values)
        acc = self.sums.get(key)
        if acc is None:
            acc = self.sums[key] = zero_measures()
        add_measures(acc, values)


def grouped_totals(
    conn: Connection, filters: Filters, by: Sequence[str], tz: str = "UTC", *, source: str = "auto"
) -> Iterator[dict]:
    """Sums per group: one dict per group with the group names (in ``by`` order; periods as
    ``datetime.date`` of the local period start, dimensions as ``str`` or ``None`` for unknown)
    and then ``MEASURES`` (ints; the money sums ``cost_usd`` = ``billed_cost_usd`` +
    ``estimated_cost_usd`` and ``list_cost_usd`` exact ``Decimal``s). ``by=[]`` gives one totals
    row (zeros when nothing matches). Sorted by the group columns, unknown dimension last."""
    by = check_groups(by)
    groups = _Groups(by, tz)
    split = SplitHours()
    dialect = conn.dialect.name
    tag_at = [i for i, d in enumerate(groups.dims) if tag_key(d) is not None]
    subtracted = False
    for part in plan_grouped(conn, filters, by, tz, source=source):
        stmt, nkeys = _grouped_select(dialect, part, filters, groups.dims)
        split_hours = split.start_part(part)
        subtracted |= part.tag is not None
        for row in conn.execute(stmt):
            values = join_measures(dialect, row[nkeys:])
            if part.bucket is None:  # no time grouping: the keys are the dimensions
                bucket, dim_values = None, tuple(row[:nkeys])
            else:
                bucket, dim_values = row[0], tuple(row[1:nkeys])
            for dims, sums in _contributions(part, tag_at, dim_values, values):
                if split_hours and bucket is not None and (hour := floor_hour(bucket)) in split_hours:
                    if split.take(part, hour, dims, sums):
                        continue
                groups.add(bucket, dims, sums)
    split.settle(groups)
    if subtracted:  # a (none) group that every call left for a value: no calls, no row
        groups.sums = {k: v for k, v in groups.sums.items() if any(v)}
    if not by and not groups.sums:
        groups.sums[()] = zero_measures()
    for key in sorted(groups.sums, key=_sort_key):
        out = dict(zip(by, key))
        out.update(zip(MEASURES, groups.sums[key]))
        yield out


def _contributions(part: Part, tag_at: list[int], dim_values: tuple, values: list) -> list[tuple[tuple, list]]:
    """What one row adds: to its group; a ``rollup`` row of a tag grouping to ``(none)`` (its SQL
    has no tag keys); a ``tags`` row of one also against ``(none)``, which thus keeps the untagged."""
    if not tag_at or part.source == "raw":
        return [(dim_values, values)]
    if part.source in ("rollup", "daily"):
        it = iter(dim_values)
        return [(tuple(None if i in tag_at else next(it) for i in range(len(dim_values) + len(tag_at))), values)]
    if part.tag is None:
        return [(dim_values, values)]
    untagged = tuple(None if i in tag_at else v for i, v in enumerate(dim_values))
    return [(dim_values, values), (untagged, negated(values))]


def _sort_key(key: tuple) -> tuple:
    return tuple((v is None, v if v is not None else "") for v in key)


def count_calls(conn: Connection, filters: Filters) -> int:
    """How many calls match (from the rollups where they can answer exactly)."""
    return next(grouped_totals(conn, filters, ()))["requests"]


def total_spend(conn: Connection, filters: Filters) -> Decimal:
    """Exact total ``cost_usd`` of the matching calls (calls without a cost add nothing)."""
    return next(grouped_totals(conn, filters, ()))["cost_usd"]


def distinct_values(conn: Connection, column: str, filters: Filters | None = None) -> list[str]:
    """The known values of ``model``/``provider``/``app``/``user``/``key`` (sorted, unknown left
    out), from the rollups (the whole UTC days from ``rollup_daily``), within the filters' range
    widened to whole hours. Pass filters without this column's own filter to offer every choice."""
    if column not in DIMENSIONS:
        raise ValueError(f"unknown column {column!r}: choose from {', '.join(DIMENSIONS)}")
    filters = filters or Filters()
    start = floor_hour(filters.start) if filters.start is not None else None
    end = ceil_hour(filters.end) if filters.end is not None else None
    if filters.tags or filters.arrived_after is not None:  # not in the rollup: every value it knows in the range
        filters = replace(filters, tags=(), arrived_after=None)
    values: set[str] = set()
    for source, ranges in zip(("daily", "rollup"), whole_days(start, end)):
        if ranges:
            table = TABLES[source]
            col = getattr(table, DIMENSIONS[column])
            clauses = where_clauses(filters, raw=False, ranges=ranges, table=table)
            values.update(conn.scalars(select(col).where(*clauses, col != "").group_by(col)))
    return sorted(values)


def call_span(conn: Connection, filters: Filters) -> tuple[datetime | None, datetime | None]:
    """When the first and the last matching call started (aware UTC), or ``(None, None)``."""
    created = Completion.created_at
    clauses = where_clauses(filters, raw=True, ranges=[(filters.start, filters.end)])
    first, last = conn.execute(select(func.min(created), func.max(created)).where(*clauses)).one()
    return first, last
