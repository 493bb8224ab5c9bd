"""The read layer: every money figure the dashboard, the export and ``spendlog summary`` show.

One place computes money, so two readers never disagree:

- ``Filters``: the date range (aware UTC, ``[start, end)``) and the dimension/status filters.
  A dimension filter value ``""`` selects calls where that dimension is unknown.
- ``grouped_totals``: sums per period (``day``/``week``/``month`` in a timezone) and/or
  dimension (``model``, ``provider``, ``app``, ``user``, ``key`` = API key hint).
- ``iter_calls`` / ``count_calls``: the per-call rows behind those sums.

How ``grouped_totals`` reads (``plan_grouped`` shows it): SQL groups by UTC time bucket and the
requested dimensions, Python maps each bucket to its local period (``db.periods``) and adds up.
Full hours come from ``rollup_hourly`` when every UTC offset of the zone in the range is a whole
hour; a range edge that is not on the hour, and zones with :30/:45 offsets, read ``completions``
grouped by 15-minute (or hourly) UTC buckets. Money is summed as exact ``Decimal`` (integer
pico-dollars on SQLite), so every path gives the same figures to the last digit. Filter values
are bound parameters, never SQL text.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import NamedTuple

from sqlalchemy import BigInteger, Integer, String, Text, and_, case, cast, func, literal_column, not_, or_, select, type_coerce
from sqlalchemy.engine import Connection

from .models import Completion, RollupHourly
from .periods import (
    PERIODS,
    bucket_minutes,
    ceil_hour,
    date_bounds,
    floor_hour,
    get_zone,
    period_boundaries,
    period_keys,
    split_hours,
)
from .store import is_error_clause
from .types import UTCDateTime

__all__ = [
    "GROUPS",
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
]

GROUPS = ("day", "week", "month", "model", "provider", "app", "user", "key")
DIMENSIONS = {"model": "model", "provider": "provider", "app": "app", "user": "user", "key": "api_key_hint"}
MEASURES = (
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "cost_usd",
    "calls_missing_cost",
    "errors",
    "latency_ms_sum",
    "latency_count",
)
_TOKENS = ("prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens", "reasoning_tokens")
_COST = MEASURES.index("cost_usd")
_STATUSES = ("all", "ok", "errors")
_SOURCES = ("auto", "raw", "rows", "rollup")
_RANGES_PER_QUERY = 200  # split hours read from raw rows per query (an OR of indexed ranges)
_FILTER_DIMS = {"models": "model", "providers": "provider", "apps": "app", "users": "user", "key_hints": "api_key_hint"}


@dataclass(frozen=True)
class Filters:
    """What to read. ``start``/``end`` are aware datetimes (``end`` exclusive), ``None`` = open.
    Empty tuples mean "all"; ``""`` inside a tuple matches unknown values. ``status``: ``"all"``,
    ``"ok"`` or ``"errors"`` (the ``db.store.is_error`` rule). Hashable, so usable as a cache key."""

    start: datetime | None = None
    end: datetime | None = None
    models: tuple[str, ...] = ()
    providers: tuple[str, ...] = ()
    apps: tuple[str, ...] = ()
    users: tuple[str, ...] = ()
    key_hints: tuple[str, ...] = ()
    status: str = "all"

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if value is not None:
                if value.tzinfo is None or value.utcoffset() is None:
                    raise ValueError(f"Filters.{name} must be timezone-aware")
                object.__setattr__(self, name, value.astimezone(timezone.utc))
        for name in _FILTER_DIMS:
            value = getattr(self, name)
            if isinstance(value, str):
                value = (value,)
            object.__setattr__(self, name, tuple(str(v) for v in value))
        if self.status not in _STATUSES:
            raise ValueError(f"status must be one of {', '.join(_STATUSES)}, not {self.status!r}")


class _Part(NamedTuple):
    source: str  # "rollup" | "raw"
    ranges: tuple[tuple[datetime | None, datetime | None], ...]  # [start, end) pairs, None = open
    bucket: int | None  # minutes per UTC time bucket (0 = per row); None = no time grouping
    skip: frozenset = frozenset()  # rollup hours to leave out (read from raw rows instead)

    @property
    def start(self) -> datetime | None:
        return self.ranges[0][0]

    @property
    def end(self) -> datetime | None:
        return self.ranges[-1][1]


# ---------------------------------------------------------------- WHERE clauses


def _dimension_clause(column, values: tuple[str, ...], raw: bool):
    if not raw:  # the rollup stores unknown as ''
        return column.in_(values)
    named = [v for v in values if v != ""]
    parts = [column.in_(named)] if named else []
    if len(named) != len(values):
        parts.append(or_(column.is_(None), column == ""))
    return or_(*parts)


def _range_clause(when, start: datetime | None, end: datetime | None):
    parts = []
    if start is not None:
        parts.append(when >= start)
    if end is not None:
        parts.append(when < end)
    return and_(*parts) if parts else None


def _where(filters: Filters, raw: bool, start: datetime | None, end: datetime | None, ranges=None) -> list:
    table = Completion if raw else RollupHourly
    when = Completion.created_at if raw else RollupHourly.bucket
    clauses = []
    if ranges is not None and len(ranges) > 1:
        clauses.append(or_(*(_range_clause(when, a, b) for a, b in ranges)))
    else:
        if ranges is not None:
            start, end = ranges[0]
        if start is not None:
            clauses.append(when >= start)
        if end is not None:
            clauses.append(when < end)
    for attr, column in _FILTER_DIMS.items():
        values = getattr(filters, attr)
        if values:
            clauses.append(_dimension_clause(getattr(table, column), values, raw))
    if filters.status != "all":
        error = is_error_clause() if raw else RollupHourly.is_error.is_(True)
        clauses.append(error if filters.status == "errors" else not_(error))
    return clauses


# ---------------------------------------------------------------- grouped SQL


def _raw_bucket(dialect: str, minutes: int):
    created = Completion.created_at
    if minutes == 0:
        return created
    if dialect == "sqlite":  # created_at is 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC) text
        if minutes == 60:
            expr = func.substr(created, 1, 13).op("||")(literal_column("':00'"))
        else:
            minute = cast(func.substr(created, 15, 2), Integer)
            step = literal_column(str(minutes))
            expr = func.substr(created, 1, 14).op("||")(func.printf(literal_column("'%02d'"), (minute / step) * step))
        return type_coerce(expr, UTCDateTime())
    seconds = literal_column(str(minutes * 60))
    expr = func.to_timestamp(func.floor(func.extract("epoch", created) / seconds) * seconds)
    return type_coerce(expr, UTCDateTime())


def _grouped_select(dialect: str, part: _Part, filters: Filters, dims: Sequence[str]):
    raw = part.source == "raw"
    keys = []
    if part.bucket is not None:
        keys.append(_raw_bucket(dialect, part.bucket) if raw else RollupHourly.bucket)
    for d in dims:
        column = DIMENSIONS[d]
        keys.append(func.coalesce(getattr(Completion, column), "") if raw else getattr(RollupHourly, column))
    if raw:
        c = Completion
        measures = [
            func.count(),
            *(func.sum(getattr(c, t)) for t in _TOKENS),
            func.sum(c.cost_usd),
            func.sum(case((c.cost_usd.is_(None), 1), else_=0)),
            func.sum(case((is_error_clause(), 1), else_=0)),
            func.sum(c.latency_ms),
            func.count(c.latency_ms),
        ]
    else:
        r = RollupHourly
        measures = [
            func.sum(r.requests),
            *(func.sum(getattr(r, t)) for t in _TOKENS),
            func.sum(r.cost_usd),
            func.sum(r.calls_missing_cost),
            func.sum(case((r.is_error.is_(True), r.requests), else_=0)),
            func.sum(r.latency_ms_sum),
            func.sum(r.latency_count),
        ]
    stmt = select(*keys, *measures).where(*_where(filters, raw, None, None, part.ranges))
    if keys:
        stmt = stmt.group_by(*keys)
    return stmt, len(keys)


def _data_span(conn: Connection) -> tuple[datetime | None, datetime | None]:
    lo = conn.scalar(select(func.min(RollupHourly.bucket)))
    hi = conn.scalar(select(func.max(RollupHourly.bucket)))
    if lo is None:  # no rollup rows: ask the raw table (indexed)
        lo = conn.scalar(select(func.min(Completion.created_at)))
        hi = conn.scalar(select(func.max(Completion.created_at)))
    return lo, (hi + timedelta(hours=1) if hi is not None else None)


def plan_grouped(
    conn: Connection, filters: Filters, by: Sequence[str], tz: str = "UTC", *, source: str = "auto"
) -> list[_Part]:
    """How ``grouped_totals`` will read: a list of parts (source, [start, end) ranges, bucket
    minutes, rollup hours to skip).

    ``"auto"``: whole hours from the rollup, except the hours a local period boundary cuts
    (:30/:45 zones); those hours and partial hours at the range's ends from raw rows in
    15-minute (or finer) UTC buckets. ``"raw"``: only ``completions``, coarsest exact buckets.
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
    splits: list[datetime] = []
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
        splits = split_hours(boundaries)

    def raw(*ranges: tuple) -> _Part:
        return _Part("raw", tuple(ranges), minutes)

    first = ceil_hour(start) if start is not None else None
    last = floor_hour(end) if end is not None else None
    if source in ("raw", "rows") or (first is not None and last is not None and first >= last):
        if source == "rollup":
            raise ValueError("the rollup cannot answer this exactly: the range is not in whole hours")
        return [raw((start, end))]
    splits = [h for h in splits if (first is None or h >= first) and (last is None or h < last)]
    parts = [_Part("rollup", ((first, last),), 60 if periods else None, frozenset(splits))]
    edges = []
    if start is not None and first != start:
        edges.append((start, first))
    if end is not None and last != end:
        edges.append((last, end))
    hours = [(h, h + timedelta(hours=1)) for h in splits]
    if source == "rollup" and (edges or hours):
        raise ValueError("the rollup cannot answer this exactly: the range or the zone's offset is not in whole hours")
    pending = edges + hours
    for i in range(0, len(pending), _RANGES_PER_QUERY):
        parts.append(raw(*pending[i : i + _RANGES_PER_QUERY]))
    return parts


def _check_groups(by: Sequence[str]) -> tuple[str, ...]:
    if isinstance(by, str):
        by = (by,)
    by = tuple(by)
    for g in by:
        if g not in GROUPS:
            raise ValueError(f"unknown group {g!r}: choose from {', '.join(GROUPS)}")
    if len(set(by)) != len(by):
        raise ValueError("a group is listed twice")
    return by


def _zero() -> list:
    row: list = [0] * len(MEASURES)
    row[_COST] = Decimal(0)
    return row


def grouped_totals(
    conn: Connection, filters: Filters, by: Sequence[str], tz: str = "UTC", *, source: str = "auto"
) -> Iterator[dict]:
    """Sums per group: one dict per group with the group names (in ``by`` order; periods as
    ``datetime.date`` of the local period start, dimensions as ``str`` or ``None`` for unknown)
    and then ``MEASURES`` (ints; ``cost_usd`` an exact ``Decimal``). ``by=[]`` gives one totals
    row (zeros when nothing matches). Sorted by the group columns, unknown dimension last."""
    by = _check_groups(by)
    periods = [g for g in by if g in PERIODS]
    dims = [g for g in by if g not in PERIODS]
    to_periods = period_keys(tz, periods) if periods else None
    # where each output column comes from: ("p", i) period i, ("d", j) dimension j
    layout = [("p", periods.index(g)) if g in PERIODS else ("d", dims.index(g)) for g in by]
    sums: dict[tuple, list] = {}
    dialect = conn.dialect.name
    for part in plan_grouped(conn, filters, by, tz, source=source):
        stmt, nkeys = _grouped_select(dialect, part, filters, dims)
        timed = part.bucket is not None
        skip = part.skip
        for row in conn.execute(stmt):
            if timed:
                if skip and row[0] in skip:
                    continue
                pkeys = to_periods(row[0])
                dkeys = row[1:nkeys]
            else:
                pkeys = ()
                dkeys = row[:nkeys]
            key = tuple(pkeys[i] if kind == "p" else (dkeys[i] or None) for kind, i in layout)
            acc = sums.get(key)
            if acc is None:
                acc = sums[key] = _zero()
            for i, value in enumerate(row[nkeys:]):
                if value is not None:
                    acc[i] += value if i == _COST else int(value)
    if not by and not sums:
        sums[()] = _zero()
    for key in sorted(sums, key=_sort_key):
        out = dict(zip(by, key))
        out.update(zip(MEASURES, sums[key]))
        yield out


def _sort_key(key: tuple) -> tuple:
    return tuple((v is None, v if v is not None else "") for v in key)


# ---------------------------------------------------------------- per call


_PICO_SQL = literal_column("1000000000000")


def _strip_zeros(text):
    return func.rtrim(func.rtrim(text, literal_column("'0'")), literal_column("'.'"))


def _plain_column(dialect: str, name: str):
    """``completions.<name>`` in its plain form (see ``iter_call_chunks``), converted by the
    database so that no Python code runs per cell."""
    column = Completion.__table__.c[name]
    if name == "created_at":
        if dialect == "sqlite":  # stored as 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC)
            expr = func.substr(column, 1, 10).op("||")(literal_column("'T'")).op("||")(func.substr(column, 12))
            return type_coerce(expr.op("||")(literal_column("'Z'")), String).label(name)
        expr = func.to_char(func.timezone(literal_column("'UTC'"), column), literal_column("""'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'"""))
        return type_coerce(expr, String).label(name)
    if name == "cost_usd":  # exact decimal text, no exponent, no trailing zeros: 0.000148, 12.5, 0
        if dialect == "sqlite":  # stored as integer pico-dollars: whole part, point, 12 places
            pico = type_coerce(column, BigInteger)

            def decimal_text(amount):
                digits = func.printf(literal_column("'%d.%012d'"), amount / _PICO_SQL, amount % _PICO_SQL)
                return _strip_zeros(digits)

            text = case(
                (pico >= 0, decimal_text(pico)),
                (pico < 0, literal_column("'-'").op("||")(decimal_text(-pico))),
            )  # NULL matches neither: NULL
        else:  # NUMERIC(30, 12) prints all 12 places
            text = case((column.is_(None), None), else_=_strip_zeros(cast(column, Text)))
        return type_coerce(text, String).label(name)
    if name == "tags":  # JSON text; JSON null (how a missing dict is stored) becomes SQL NULL
        text = type_coerce(column, Text) if dialect == "sqlite" else cast(column, Text)
        return type_coerce(func.nullif(text, literal_column("'null'")), Text).label(name)
    if name == "stream":
        text = case((column.is_(None), None), (column, literal_column("'true'")), else_=literal_column("'false'"))
        return type_coerce(text, String).label(name)
    return column


def _calls_select(filters: Filters, columns: Sequence[str] | None, plain_dialect: str | None = None):
    names = list(columns) if columns else [c.name for c in Completion.__table__.columns]
    if plain_dialect is None:
        cols = [Completion.__table__.c[name] for name in names]
    else:
        cols = [_plain_column(plain_dialect, name) for name in names]
    return (
        select(*cols)
        .where(*_where(filters, True, filters.start, filters.end))
        .order_by(Completion.created_at, Completion.id)
    )


def iter_call_chunks(
    conn: Connection,
    filters: Filters,
    columns: Sequence[str] | None = None,
    *,
    chunk_size: int = 10_000,
    plain: bool = False,
) -> Iterator[Sequence[tuple]]:
    """The matching calls as lists of up to ``chunk_size`` row tuples (``columns`` of
    ``completions``, default all), ordered by ``created_at, id``; streamed: a server-side cursor
    on PostgreSQL, chunked fetch on SQLite, so memory stays flat at any size.

    ``plain=True`` is the bulk form for files, converted inside the database: ``created_at`` as
    ISO 8601 UTC text (``2024-05-01T23:30:00.000000Z``), ``cost_usd`` as exact decimal text
    without exponent or trailing zeros (``0.000148``; ``spendlog.export.format_money``'s form),
    ``tags`` as JSON text (keys in stored order), ``stream`` as ``true``/``false``; the rest as
    usual. Each is exactly what ``spendlog.export`` writes for the typed value."""
    stmt = _calls_select(filters, columns, conn.dialect.name if plain else None)
    if plain and conn.dialect.name == "sqlite":
        # Plain columns need no result processing and SQLite steps rows lazily, so read the DBAPI
        # cursor of an ordinary (unbuffered) result directly: plain tuples, no Row objects.
        result = conn.execute(stmt)
        try:
            cursor = result.cursor
            while rows := cursor.fetchmany(chunk_size):
                yield rows
        finally:
            result.close()
        return
    result = conn.execution_options(yield_per=chunk_size).execute(stmt)  # server-side cursor on PostgreSQL
    try:
        yield from result.partitions()
    finally:
        result.close()


def iter_calls(conn: Connection, filters: Filters, *, chunk_size: int = 10_000) -> Iterator[dict]:
    """Every ``completions`` column of each matching call as a dict, ordered by ``created_at,
    id``; streamed like ``iter_call_chunks``."""
    names = [c.name for c in Completion.__table__.columns]
    for chunk in iter_call_chunks(conn, filters, names, chunk_size=chunk_size):
        for row in chunk:
            yield dict(zip(names, row))


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
    col = getattr(RollupHourly, DIMENSIONS[column])
    stmt = select(col).where(*_where(filters, False, start, end), col != "").group_by(col).order_by(col)
    return list(conn.scalars(stmt))

