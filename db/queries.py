"""The read layer: every money figure the dashboard, the export and ``spendlog summary`` show.

One place computes money, so two readers never disagree:

- ``Filters``: the date range (aware UTC, ``[start, end)``) and the dimension/status filters.
  A dimension filter value ``""`` selects calls where that dimension is unknown.
- ``grouped_totals``: sums per period (``day``/``week``/``month`` in a timezone) and/or
  dimension (``model``, ``provider``, ``app``, ``user``, ``key`` = API key hint).
- ``iter_calls`` / ``count_calls``: the per-call rows behind those sums.

How ``grouped_totals`` reads (``plan_grouped`` shows it): SQL groups by UTC time bucket and the
requested dimensions, Python maps each bucket to its local period (``db.periods``) and adds up.
Whole hours come from ``rollup_hourly``; the only raw ``completions`` read are partial hours at
the range's ends and, in :30/:45 zones such as Asia/Kolkata, the one hour a day that a local
midnight cuts, grouped by 15-minute UTC buckets. Money is summed as exact ``Decimal``, so every
path gives the same figures to the last digit. On SQLite money is integer pico-dollars, whose
``SUM`` would overflow int64 past 9,223,372 USD: it is summed as two parts that cannot (the high
and the low 32 bits of each value, over up to 2^31 rows per group), put together exactly in
Python. Rollup rows for one hour and key may be several (``db.store``: bucket = hour + n µs);
they are summed like any others. Filter values are bound parameters, never SQL text
(``db.filters``); per-call rows live in ``db.calls``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import NamedTuple

from sqlalchemy import BigInteger, case, func, literal_column, select, type_coerce
from sqlalchemy.engine import Connection

from .buckets import raw_bucket
from .calls import iter_call_chunks, iter_calls
from .filters import STATUSES, Filters, where_clauses
from .groups import GROUPS, parse_groups
from .models import MONEY_MEASURES, SPEND_MEASURES, Completion, RollupHourly
from .periods import (
    PERIODS,
    bucket_minutes,
    ceil_hour,
    date_bounds,
    floor_hour,
    get_zone,
    period_boundaries,
    period_keys,
)
from .store import is_error_clause
from .types import from_pico

__all__ = [
    "GROUPS",
    "STATUSES",
    "DIMENSIONS",
    "MEASURES",
    "Filters",
    "date_bounds",
    "grouped_totals",
    "plan_grouped",
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
MEASURES = (*SPEND_MEASURES, "errors", "latency_ms_sum", "latency_count")
_TOKENS = ("prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens", "reasoning_tokens")
_MONEY = frozenset(i for i, m in enumerate(MEASURES) if m in MONEY_MEASURES)  # exact Decimal sums
_SOURCES = ("auto", "raw", "rows", "rollup")
_RANGES_PER_QUERY = 200  # split hours read from raw rows per query (an OR of indexed ranges)


class _Part(NamedTuple):
    source: str  # "rollup" | "raw"
    ranges: tuple[tuple[datetime | None, datetime | None], ...]  # [start, end) pairs, None = open
    bucket: int | None  # minutes per UTC time bucket (0 = per row); None = no time grouping
    # (hour, boundary) of the hours a local period boundary cuts. The rollup part holds those
    # hours back; the raw part reads the smaller side of each; the other side is the difference.
    split: tuple[tuple[datetime, datetime], ...] = ()


# ---------------------------------------------------------------- grouped SQL


def _money_sums(dialect: str, column) -> list:
    """``SUM(column)``; on SQLite two sums that cannot overflow (see the module docstring)."""
    if dialect != "sqlite":
        return [func.sum(column)]
    pico = type_coerce(column, BigInteger)
    return [func.sum(pico.op(">>")(literal_column("32"))), func.sum(pico.op("&")(literal_column("4294967295")))]


def _measures(dialect: str, values: Sequence) -> list:
    """A result row's measure columns as ``MEASURES`` (SQLite's two sums per money measure joined)."""
    if dialect != "sqlite":
        return list(values)
    out: list = []
    it = iter(values)
    for i in range(len(MEASURES)):
        value = next(it)
        if i in _MONEY:
            low = next(it)
            value = None if value is None and low is None else from_pico((value or 0) * 2**32 + (low or 0))
        out.append(value)
    return out


def _grouped_select(dialect: str, part: _Part, filters: Filters, dims: Sequence[str]):
    raw = part.source == "raw"
    keys = []
    if part.bucket is not None:
        keys.append(raw_bucket(dialect, part.bucket) if raw else RollupHourly.bucket)
    for d in dims:
        column = DIMENSIONS[d]
        keys.append(func.coalesce(getattr(Completion, column), "") if raw else getattr(RollupHourly, column))
    if raw:
        c = Completion
        measures = [
            func.count(),
            *(func.sum(getattr(c, t)) for t in _TOKENS),
            *_money_sums(dialect, c.cost_usd),
            func.sum(case((c.cost_usd.is_(None), 1), else_=0)),
            # the rollup's split (db.rollups): a cost is an estimate or else the upstream's bill
            *_money_sums(dialect, case((c.cost_source == "estimated", None), else_=c.cost_usd)),
            *_money_sums(dialect, case((c.cost_source == "estimated", c.cost_usd), else_=None)),
            *_money_sums(dialect, c.list_cost_usd),
            func.sum(case((is_error_clause(), 1), else_=0)),
            func.sum(c.latency_ms),
            func.count(c.latency_ms),
        ]
    else:
        r = RollupHourly
        measures = [
            func.sum(r.requests),
            *(func.sum(getattr(r, t)) for t in _TOKENS),
            *_money_sums(dialect, r.cost_usd),
            func.sum(r.calls_missing_cost),
            *_money_sums(dialect, r.billed_cost_usd),
            *_money_sums(dialect, r.estimated_cost_usd),
            *_money_sums(dialect, r.list_cost_usd),
            func.sum(case((r.is_error.is_(True), r.requests), else_=0)),
            func.sum(r.latency_ms_sum),
            func.sum(r.latency_count),
        ]
    stmt = select(*keys, *measures).where(*where_clauses(filters, raw=raw, ranges=part.ranges))
    if keys:
        stmt = stmt.group_by(*keys)
    return stmt, len(keys)


def bucket_sums(conn: Connection, source: str, ranges: Sequence[tuple[datetime, datetime]], filters: Filters,
                dims: Sequence[str], minutes: int = 60) -> Iterator[tuple[tuple, list]]:
    """``(keys, MEASURES)`` per UTC bucket (``minutes``; the rollup's are its hour rows) and ``dims``,
    summed exactly over the [start, end) ``ranges`` from one ``source`` ("rollup" or "raw")."""
    stmt, nkeys = _grouped_select(conn.dialect.name, _Part(source, tuple(ranges), minutes), filters, dims)
    for row in conn.execute(stmt):
        yield tuple(row[:nkeys]), _measures(conn.dialect.name, row[nkeys:])


def _data_span(conn: Connection) -> tuple[datetime | None, datetime | None]:
    lo = conn.scalar(select(func.min(RollupHourly.bucket)))
    hi = conn.scalar(select(func.max(RollupHourly.bucket)))
    if lo is None:  # no rollup rows: ask the raw table (indexed)
        lo = conn.scalar(select(func.min(Completion.created_at)))
        hi = conn.scalar(select(func.max(Completion.created_at)))
        return lo, (hi + timedelta(hours=1) if hi is not None else None)
    return lo, floor_hour(hi) + timedelta(hours=1)  # a bucket may be its hour + n µs (db.store)


def plan_grouped(
    conn: Connection, filters: Filters, by: Sequence[str], tz: str = "UTC", *, source: str = "auto"
) -> list[_Part]:
    """How ``grouped_totals`` will read: a list of parts (source, [start, end) ranges, bucket
    minutes, split hours).

    ``"auto"``: whole hours from the rollup; partial hours at the range's ends from raw rows; an
    hour that a local period boundary cuts (one a day in :30/:45 zones) from the rollup minus its
    smaller side, which is read from raw rows in 15-minute (or finer) UTC buckets. ``"raw"``: only ``completions``, coarsest exact buckets.
    ``"rows"``: ``completions`` with no time bucketing (the slow reference the tests compare
    with). ``"rollup"``: ``ValueError`` unless the rollup alone answers exactly."""
    by = _check_groups(by)
    get_zone(tz)
    if source not in _SOURCES:
        raise ValueError(f"source must be one of {', '.join(_SOURCES)}, not {source!r}")
    start, end = filters.start, filters.end
    if start is not None and end is not None and start >= end:
        return []
    periods = [g for g in by if g in PERIODS]
    boundaries: list[datetime] = []
    minutes = None  # no time grouping
    if periods:
        lo, hi = start, end
        if lo is None or hi is None:
            data_lo, data_hi = _data_span(conn)
            if data_lo is None:
                return []  # nothing stored at all
            lo, hi = lo or data_lo, hi or data_hi
        boundaries = period_boundaries(tz, periods, lo, hi) if lo < hi else []
        minutes = 0 if source == "rows" else bucket_minutes(boundaries)

    def raw(*ranges: tuple) -> _Part:
        return _Part("raw", tuple(ranges), minutes)

    first = ceil_hour(start) if start is not None else None
    last = floor_hour(end) if end is not None else None
    if filters.tags or filters.arrived_after is not None:  # not in rollup_hourly: read the calls themselves
        if source == "rollup":
            raise ValueError("the rollup cannot answer this exactly: it has no tags or arrival times")
        source = "raw" if source == "auto" else source
    if source in ("raw", "rows") or (first is not None and last is not None and first >= last):
        if source == "rollup":
            raise ValueError("the rollup cannot answer this exactly: the range is not in whole hours")
        return [raw((start, end))]
    cut = [(floor_hour(b), b) for b in boundaries if b != floor_hour(b)] if periods else []
    cut = [(h, b) for h, b in cut if (first is None or h >= first) and (last is None or h < last)]
    parts = [_Part("rollup", ((first, last),), 60 if periods else None, tuple(cut))]
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
        parts.append(_Part("raw", tuple(_smaller_side(h, b) for h, b in chunk), minutes, chunk))
    return parts


def _smaller_side(hour: datetime, boundary: datetime) -> tuple[datetime, datetime]:
    if boundary - hour <= timedelta(minutes=30):
        return hour, boundary
    return boundary, hour + timedelta(hours=1)


def _check_groups(by: Sequence[str]) -> tuple[str, ...]:
    return parse_groups((by,) if isinstance(by, str) else by)


def zero_measures() -> list:
    """A row of ``MEASURES`` at zero (money as ``Decimal(0)``), to add rows to with ``add_measures``."""
    return [Decimal(0) if i in _MONEY else 0 for i in range(len(MEASURES))]


def add_measures(acc: list, values: Sequence, sign: int = 1) -> None:
    """Add one result row's ``MEASURES`` to ``acc`` (``sign`` -1 subtracts them)."""
    for i, value in enumerate(values):
        if value is not None:
            acc[i] += sign * (value if i in _MONEY else int(value))


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


class _SplitHours:
    """The split-hour correction, for zones whose local midnight falls inside a UTC hour.

    In Asia/Kolkata (+05:30) a local day starts at hh:30 UTC, so the hourly rollup cannot say
    which day each half of that hour belongs to. ``plan_grouped`` marks such hours (a part's
    ``split``: (hour, boundary) pairs): the rollup part's rows for them are *held* here instead
    of being added, and a raw part reads the smaller side of each hour from ``completions`` (added
    to its period like any row, and subtracted here). What is held at the end is the other side
    of the hour, added to that side's period by ``settle``.

    A rollup row's bucket may be its hour plus 1 µs (2 µs, ...): ``db.store`` spills a full
    rollup row into another one for the same key (docs/reliability.md). Rows are matched to their
    hour with ``floor_hour``, so the spill rows are held with their hour."""

    def __init__(self):
        self._held: dict[tuple[datetime, tuple], list] = {}  # (hour, dimension values) -> sums
        self._other_side: dict[datetime, datetime] = {}  # hour -> an instant in its unread side

    def start_part(self, part: _Part) -> set[datetime]:
        """Note what a part reads of the split hours; returns the hours it touches."""
        if part.source == "raw":
            for (hour, boundary), (lo, _) in zip(part.split, part.ranges):
                self._other_side[hour] = boundary if lo == hour else hour
        return {hour for hour, _ in part.split}

    def take(self, part: _Part, hour: datetime, dim_values: tuple, values: Sequence) -> bool:
        """Account for one row of a split ``hour``. True when the row is held (a rollup row:
        not to be added yet); False for a raw row, which is then added to its period as usual."""
        held = self._held.setdefault((hour, dim_values), zero_measures())
        if part.source == "rollup":
            add_measures(held, values)
            return True
        add_measures(held, values, -1)
        return False

    def settle(self, groups: _Groups) -> None:
        """Add each split hour's unread side (its rollup sums minus the side read raw)."""
        for (hour, dim_values), rest in self._held.items():
            if any(rest):
                groups.add(self._other_side[hour], dim_values, rest)


def grouped_totals(
    conn: Connection, filters: Filters, by: Sequence[str], tz: str = "UTC", *, source: str = "auto"
) -> Iterator[dict]:
    """Sums per group: one dict per group with the group names (in ``by`` order; periods as
    ``datetime.date`` of the local period start, dimensions as ``str`` or ``None`` for unknown)
    and then ``MEASURES`` (ints; the money sums ``cost_usd`` = ``billed_cost_usd`` +
    ``estimated_cost_usd`` and ``list_cost_usd`` exact ``Decimal``s). ``by=[]`` gives one totals
    row (zeros when nothing matches). Sorted by the group columns, unknown dimension last."""
    by = _check_groups(by)
    groups = _Groups(by, tz)
    split = _SplitHours()
    dialect = conn.dialect.name
    for part in plan_grouped(conn, filters, by, tz, source=source):
        stmt, nkeys = _grouped_select(dialect, part, filters, groups.dims)
        split_hours = split.start_part(part)
        for row in conn.execute(stmt):
            values = _measures(dialect, row[nkeys:])
            if part.bucket is None:  # no time grouping: the keys are the dimensions
                groups.add(None, row[:nkeys], values)
                continue
            bucket, dim_values = row[0], tuple(row[1:nkeys])
            if split_hours and (hour := floor_hour(bucket)) in split_hours:
                if split.take(part, hour, dim_values, values):
                    continue
            groups.add(bucket, dim_values, values)
    split.settle(groups)
    if not by and not groups.sums:
        groups.sums[()] = zero_measures()
    for key in sorted(groups.sums, key=_sort_key):
        out = dict(zip(by, key))
        out.update(zip(MEASURES, groups.sums[key]))
        yield out


def _sort_key(key: tuple) -> tuple:
    return tuple((v is None, v if v is not None else "") for v in key)


def count_calls(conn: Connection, filters: Filters) -> int:
    """How many calls match (from the rollup where it can answer exactly)."""
    return next(grouped_totals(conn, filters, ()))["requests"]


def total_spend(conn: Connection, filters: Filters) -> Decimal:
    """Exact total ``cost_usd`` of the matching calls (calls without a cost add nothing)."""
    return next(grouped_totals(conn, filters, ()))["cost_usd"]


def distinct_values(conn: Connection, column: str, filters: Filters | None = None) -> list[str]:
    """The known values of ``model``/``provider``/``app``/``user``/``key`` (sorted, unknown left
    out), from the rollup, within the filters' range widened to whole hours. Pass filters without
    this column's own filter to offer every choice."""
    if column not in DIMENSIONS:
        raise ValueError(f"unknown column {column!r}: choose from {', '.join(DIMENSIONS)}")
    filters = filters or Filters()
    start = floor_hour(filters.start) if filters.start is not None else None
    end = ceil_hour(filters.end) if filters.end is not None else None
    if filters.tags or filters.arrived_after is not None:  # not in the rollup: every value it knows in the range
        filters = replace(filters, tags=(), arrived_after=None)
    col = getattr(RollupHourly, DIMENSIONS[column])
    clauses = where_clauses(filters, raw=False, ranges=[(start, end)])
    stmt = select(col).where(*clauses, col != "").group_by(col).order_by(col)
    return list(conn.scalars(stmt))



def call_span(conn: Connection, filters: Filters) -> tuple[datetime | None, datetime | None]:
    """When the first and the last matching call started (aware UTC), or ``(None, None)``."""
    created = Completion.created_at
    clauses = where_clauses(filters, raw=True, ranges=[(filters.start, filters.end)])
    first, last = conn.execute(select(func.min(created), func.max(created)).where(*clauses)).one()
    return first, last
