"""Dashboard reads that are not money totals: latency percentiles, single calls, recent errors.

Money totals come from ``db.queries`` (shared with the export); these queries list or sample
individual calls and are bounded so they stay fast at millions of rows:

- ``latency_by_model``: p50 / p95 per model over the matching calls among that model's most
  recent calls in the range (a bounded index walk on ``(model, created_at)``), nearest rank.
- ``most_expensive_calls``: the top ``limit`` calls by ``cost_usd`` in the range.
- ``recent_errors``: the newest ``limit`` failed calls (``db.store.is_error`` rule).
- ``has_calls``: whether the ledger holds any call at all.

Every filter value is a bound parameter (SQLAlchemy Core), never SQL text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from sqlalchemy import func, inspect, not_, or_, select
from sqlalchemy.engine import Connection

from .models import Completion
from .queries import Filters
from .store import is_error_clause

__all__ = [
    "LATENCY_SAMPLE",
    "LATENCY_WINDOW",
    "CALL_COLUMNS",
    "has_calls",
    "has_schema",
    "call_conditions",
    "latency_by_model",
    "percentile",
    "most_expensive_calls",
    "recent_errors",
]

LATENCY_SAMPLE = 2_000
LATENCY_WINDOW = 5_000
MESSAGE_CHARS = 300
_DIMS = {"models": "model", "providers": "provider", "apps": "app", "users": "user", "key_hints": "api_key_hint"}
_WINDOW_COLUMNS = ("created_at", "model", "provider", "app", "user", "api_key_hint", "status_code", "error_type",
                   "latency_ms")
CALL_COLUMNS = ("id", "created_at", "model", "provider", "app", "user", "api_key_hint", "status_code",
                "error_type", "total_tokens", "cost_usd", "latency_ms")


def has_schema(conn: Connection) -> bool:
    """Whether the ledger's tables exist (a new database has none until the first write)."""
    return inspect(conn).has_table(Completion.__tablename__)


def has_calls(conn: Connection) -> bool:
    return conn.scalar(select(Completion.id).limit(1)) is not None


def call_conditions(filters: Filters, cols=Completion) -> list:
    """WHERE clauses on ``completions`` (or ``cols``: any object with its columns as attributes,
    e.g. a subquery's ``.c``) for ``filters``, with the read layer's meaning: an empty tuple is
    "all", ``""`` matches an unknown value."""
    clauses = []
    if filters.start is not None:
        clauses.append(cols.created_at >= filters.start)
    if filters.end is not None:
        clauses.append(cols.created_at < filters.end)
    for attr, column in _DIMS.items():
        values = getattr(filters, attr)
        if not values:
            continue
        col = getattr(cols, column)
        named = [v for v in values if v != ""]
        parts = [col.in_(named)] if named else []
        if len(named) != len(values):
            parts.append(or_(col.is_(None), col == ""))
        clauses.append(or_(*parts))
    if filters.status != "all":
        error = is_error_clause(cols)
        clauses.append(error if filters.status == "errors" else not_(error))
    return clauses


def percentile(sorted_values: Sequence[int], pct: float) -> int | None:
    """Nearest-rank percentile of already sorted values (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def latency_by_model(conn: Connection, filters: Filters, models: Sequence[str | None],
                     sample: int = LATENCY_SAMPLE, window: int = LATENCY_WINDOW) -> list[dict]:
    """``{model, p50, p95, sample}`` per model: the calls matching ``filters`` among that model's
    ``window`` most recent calls in the date range (at most ``sample`` of them).

    The window walks the ``(model, created_at)`` index backwards, so the cost stays bounded even
    when the other filters (status, app, user, key) match few calls."""
    span = call_conditions(Filters(start=filters.start, end=filters.end))
    others = replace(filters, start=None, end=None, models=())
    out = []
    for model in models:
        match = Completion.model.is_(None) if model is None else Completion.model == model
        if others == Filters():  # nothing else to match: the newest ``sample`` calls, directly
            stmt = (select(Completion.latency_ms)
                    .where(*span, match, Completion.latency_ms.is_not(None))
                    .order_by(Completion.created_at.desc())
                    .limit(sample))
        else:
            recent = (select(*(getattr(Completion, c) for c in _WINDOW_COLUMNS))
                      .where(*span, match)
                      .order_by(Completion.created_at.desc())
                      .limit(window)
                      .subquery())
            stmt = (select(recent.c.latency_ms)
                    .where(*call_conditions(others, recent.c), recent.c.latency_ms.is_not(None))
                    .limit(sample))
        values = sorted(conn.scalars(stmt))
        out.append({"model": model, "p50": percentile(values, 50), "p95": percentile(values, 95),
                    "sample": len(values)})
    return out


def _call_columns():
    cols = [getattr(Completion, c) for c in CALL_COLUMNS]
    return [*cols, func.substr(Completion.error_message, 1, MESSAGE_CHARS).label("error_message")]


def most_expensive_calls(conn: Connection, filters: Filters, limit: int = 50) -> list[dict]:
    stmt = (
        select(*_call_columns())
        .where(*call_conditions(filters), Completion.cost_usd.is_not(None))
        .order_by(Completion.cost_usd.desc(), Completion.id)
        .limit(limit)
    )
    return [dict(r) for r in conn.execute(stmt).mappings()]


def recent_errors(conn: Connection, filters: Filters, limit: int = 50) -> list[dict]:
    stmt = (
        select(*_call_columns())
        .where(*call_conditions(filters), is_error_clause())
        .order_by(Completion.created_at.desc(), Completion.id.desc())
        .limit(limit)
    )
    return [dict(r) for r in conn.execute(stmt).mappings()]
