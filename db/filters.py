"""What to read: ``Filters`` and the SQL conditions they become.

A filter is a date range (aware UTC, ``[start, end)``) plus dimension and status filters. The
conditions are SQLAlchemy expressions with bound parameters, never SQL text, so a filter value
like ``' OR 1=1 --`` matches nothing. Used by the grouped totals (``db.queries``) and the
per-call rows (``db.calls``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import String, and_, not_, or_
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from .models import Completion, RollupHourly, RollupTagDays, RollupTags, RollupTagsDaily
from .store import is_error_clause
from .tag_limits import MAX_KEY, MAX_VALUE

__all__ = ["Filters", "STATUSES", "FILTER_DIMENSIONS", "where_clauses", "tag_clauses", "tag_value", "parse_tag",
           "tag_rollup_answers"]

STATUSES = ("all", "ok", "errors")
# Filters attribute -> column (the same name in completions and rollup_hourly)
FILTER_DIMENSIONS = {"models": "model", "providers": "provider", "apps": "app", "users": "user", "key_hints": "api_key_hint"}


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
    # (key, value) pairs, AND-ed: a call matches when its tags hold every pair (issue 15)
    tags: tuple[tuple[str, str], ...] = ()
    # only calls that reached the ledger after this instant (``ingested_at``): a closed month's late
    # rows (issue 17, db.closes). Raw rows only: the rollup does not know when a call arrived
    arrived_after: datetime | None = None

    def __post_init__(self) -> None:
        for name in ("start", "end", "arrived_after"):
            value = getattr(self, name)
            if value is not None:
                if value.tzinfo is None or value.utcoffset() is None:
                    raise ValueError(f"Filters.{name} must be timezone-aware")
                object.__setattr__(self, name, value.astimezone(timezone.utc))
        for name in FILTER_DIMENSIONS:
            value = getattr(self, name)
            if isinstance(value, str):
                value = (value,)
            object.__setattr__(self, name, tuple(str(v) for v in value))
        pairs = self.tags.items() if isinstance(self.tags, dict) else self.tags
        object.__setattr__(self, "tags", tuple(sorted({(str(k), str(v)) for k, v in pairs})))
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, not {self.status!r}")


def parse_tag(text: str) -> tuple[str, str]:
    """The one tag filter rule: ``"team=core"`` -> ``("team", "core")`` (split at the first ``=``;
    key and value kept as typed, past the key's surrounding spaces). ``ValueError`` says what is
    wrong without naming an option (the CLI and the dashboard put theirs in front)."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key or not value:
        raise ValueError(f"{text!r} is not KEY=VALUE (as in team=core)")
    if len(key) > MAX_KEY or len(value) > MAX_VALUE:
        raise ValueError(f"{text[:40]!r}... is longer than a stored tag ({MAX_KEY}-character keys, "
                         f"{MAX_VALUE}-character values)")
    return key, value


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


class tag_value(FunctionElement):
    """The value of the call's tag ``key`` (text, NULL when it has none): ``tag_value(key)``.

    PostgreSQL: ``tags ->> key``. SQLite: the ``value`` of ``json_each(tags)`` whose ``key`` is the
    key, not ``json_extract`` with a path, which cannot name a key holding ``"`` or (stored as
    escapes) non-ASCII characters. The key is a bound parameter either way."""

    type = String()
    name = "tag_value"
    inherit_cache = True

    def __init__(self, key: str):
        from sqlalchemy import bindparam

        super().__init__(Completion.tags, bindparam(None, key, type_=String()))


@compiles(tag_value)
def _tag_value_pg(element, compiler, **kw):
    tags, key = element.clauses
    return f"({compiler.process(tags, **kw)} ->> CAST({compiler.process(key, **kw)} AS TEXT))"


@compiles(tag_value, "sqlite")
def _tag_value_sqlite(element, compiler, **kw):
    tags, key = element.clauses
    return (f"(SELECT tag_each.value FROM json_each({compiler.process(tags, **kw)}) AS tag_each "
            f"WHERE tag_each.key = {compiler.process(key, **kw)})")


def tag_clauses(tags: tuple[tuple[str, str], ...]) -> list:
    """Conditions on ``completions.tags`` (JSON on SQLite, JSONB on PostgreSQL): the call's tag
    ``key`` equals ``value``, for every pair. Bound parameters, never SQL text."""
    return [tag_value(key) == value for key, value in tags]


def tag_rollup_answers(filters: Filters) -> bool:
    """Whether ``rollup_tags`` holds the dimensions these filters name (model, app, one tag with a
    value; no status, provider, user or key filter)."""
    return (filters.status == "all" and not (filters.providers or filters.users or filters.key_hints)
            and len(filters.tags) <= 1 and all(v for _, v in filters.tags))


def where_clauses(filters: Filters, *, raw: bool, ranges: Sequence[tuple[datetime | None, datetime | None]],
                  table=None) -> list:
    """SQL conditions for ``filters`` on ``completions`` (``raw``) or ``rollup_hourly`` (or
    ``table``: ``RollupDaily``; ``RollupTags``, ``RollupTagsDaily`` or ``RollupTagDays`` where
    ``tag_rollup_answers``; the last has no model or app),
    with the time condition taken from ``ranges`` ([start, end) pairs, ``None`` = open, OR-ed)."""
    if table in (RollupTags, RollupTagsDaily, RollupTagDays):
        return _tag_rollup_clauses(filters, ranges, table)
    table = Completion if raw else table or RollupHourly
    when = Completion.created_at if raw else table.bucket
    clauses = []
    if len(ranges) > 1:
        clauses.append(or_(*(_range_clause(when, a, b) for a, b in ranges)))
    elif ranges:
        clause = _range_clause(when, *ranges[0])
        if clause is not None:
            clauses.append(clause)
    for attr, column in FILTER_DIMENSIONS.items():
        values = getattr(filters, attr)
        if values:
            clauses.append(_dimension_clause(getattr(table, column), values, raw))
    if filters.tags:
        if not raw:
            raise ValueError("tag filters read completions (raw=True): rollup_hourly has no tags")
        clauses.extend(tag_clauses(filters.tags))
    if filters.arrived_after is not None:
        if not raw:
            raise ValueError("arrival filters read completions (raw=True): rollup_hourly has no arrival time")
        clauses.append(Completion.ingested_at > filters.arrived_after)
    if filters.status != "all":
        error = is_error_clause() if raw else table.is_error.is_(True)
        clauses.append(error if filters.status == "errors" else not_(error))
    return clauses


def _tag_rollup_clauses(filters: Filters, ranges, table) -> list:
    if not tag_rollup_answers(filters):
        raise ValueError("rollup_tags holds model, app and one tag: these filters read completions")
    if table is RollupTagDays and (filters.models or filters.apps):
        raise ValueError("rollup_tag_days holds one tag by day, without model or app")
    parts = [_range_clause(table.bucket, a, b) for a, b in ranges]
    clauses = [or_(*parts)] if parts and all(p is not None for p in parts) else []  # an open range: no bound
    for attr in ("models", "apps"):
        values = getattr(filters, attr)
        if values:
            clauses.append(getattr(table, FILTER_DIMENSIONS[attr]).in_(values))
    for key, value in filters.tags:
        clauses += [table.tag_key == key, table.tag_value == value]
    return clauses
