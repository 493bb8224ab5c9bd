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

from sqlalchemy import and_, not_, or_

from .models import Completion, RollupHourly
from .store import is_error_clause

__all__ = ["Filters", "STATUSES", "FILTER_DIMENSIONS", "where_clauses", "tag_clauses"]

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


def tag_clauses(tags: tuple[tuple[str, str], ...]) -> list:
    """Conditions on ``completions.tags`` (JSON on SQLite, JSONB on PostgreSQL): the call's tag
    ``key`` equals ``value``, for every pair. Bound parameters, never SQL text."""
    return [Completion.tags[key].as_string() == value for key, value in tags]


def where_clauses(filters: Filters, *, raw: bool, ranges: Sequence[tuple[datetime | None, datetime | None]]) -> list:
    """SQL conditions for ``filters`` on ``completions`` (``raw``) or ``rollup_hourly``, with
    the time condition taken from ``ranges`` ([start, end) pairs, ``None`` = open, OR-ed)."""
    table = Completion if raw else RollupHourly
    when = Completion.created_at if raw else RollupHourly.bucket
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
        error = is_error_clause() if raw else RollupHourly.is_error.is_(True)
        clauses.append(error if filters.status == "errors" else not_(error))
    return clauses
