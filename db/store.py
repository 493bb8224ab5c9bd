"""Writing records: the one function that turns record dicts into rows.

A record is a dict keyed by ``completions`` column names (see ``db.models.Completion``).
``insert_records`` inserts those whose ``id`` is not stored yet (replays never duplicate) and adds
their sums to ``rollup_hourly`` in the same transaction. The writer, the spool replay, the demo
backfill and ``rebuild_rollups`` all go through here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal

from sqlalchemy import and_, delete, insert, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from .models import ROLLUP_DIMENSIONS, ROLLUP_MEASURES, Completion, RollupHourly

__all__ = ["COLUMNS", "insert_records", "rollup_rows", "rebuild_rollups", "is_error", "is_error_clause"]

COLUMNS: tuple[str, ...] = tuple(c.name for c in Completion.__table__.columns)
_TOKEN_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens", "reasoning_tokens")
_DEFAULTS = {"stream": False, "cost_source": "missing"}


def is_error(record: dict) -> bool:
    """An error is a transport failure, an HTTP status >= 400, or a recorded error other than a
    caller's own cancellation. ``is_error_clause`` is the same rule in SQL."""
    status = record.get("status_code")
    if status is None or status >= 400:
        return True
    error_type = record.get("error_type")
    return error_type is not None and error_type != "cancelled"


def is_error_clause(table=Completion):
    return or_(
        table.status_code.is_(None),
        table.status_code >= 400,
        and_(table.error_type.is_not(None), table.error_type != "cancelled"),
    )


def _hour(ts: datetime) -> datetime:
    return ts.replace(minute=0, second=0, microsecond=0)


def rollup_rows(records: Iterable[dict]) -> list[dict]:
    """Sum records per rollup key. Unknown token counts add nothing; rows sorted by key."""
    sums: dict[tuple, dict] = {}
    for r in records:
        key = (
            _hour(r["created_at"]),
            r.get("model") or "",
            r.get("provider") or "",
            r.get("app") or "",
            r.get("user") or "",
            r.get("api_key_hint") or "",
            is_error(r),
        )
        row = sums.get(key)
        if row is None:
            row = dict(zip(ROLLUP_DIMENSIONS, key))
            row.update({m: 0 for m in ROLLUP_MEASURES})
            row["cost_usd"] = Decimal(0)
            sums[key] = row
        row["requests"] += 1
        for f in _TOKEN_FIELDS:
            v = r.get(f)
            if v is not None:
                row[f] += v
        cost = r.get("cost_usd")
        if cost is None:
            row["calls_missing_cost"] += 1
        else:
            row["cost_usd"] += cost
        latency = r.get("latency_ms")
        if latency is not None:
            row["latency_ms_sum"] += latency
            row["latency_count"] += 1
    return [sums[k] for k in sorted(sums)]


def _upsert_rollups(conn: Connection, rows: Sequence[dict]) -> None:
    if not rows:
        return
    table = RollupHourly.__table__
    stmt = (sqlite_insert if conn.dialect.name == "sqlite" else pg_insert)(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=list(ROLLUP_DIMENSIONS),
        set_={m: table.c[m] + stmt.excluded[m] for m in ROLLUP_MEASURES},
    )
    conn.execute(stmt, list(rows))


def _complete(record: dict) -> dict:
    row = {c: record.get(c, _DEFAULTS.get(c)) for c in COLUMNS}
    return row


def insert_records(conn: Connection, records: Sequence[dict]) -> int:
    """Insert the records not stored yet and update the rollup; returns how many were new.

    Runs inside the caller's transaction (``engine.begin()``)."""
    by_id: dict[str, dict] = {}
    for r in records:
        by_id.setdefault(r["id"], r)
    if not by_id:
        return 0
    table = Completion.__table__
    rows = [_complete(r) for r in by_id.values()]
    try:
        with conn.begin_nested():  # the usual case: every id is new (ids are made on the client)
            conn.execute(insert(table), rows)
        new = list(by_id.values())
    except IntegrityError:
        # Some are stored already (a spool replay): skip those and learn which rows were added.
        # No lookup first: on a large table PostgreSQL can plan "id IN (...)" as a scan.
        stmt = (sqlite_insert if conn.dialect.name == "sqlite" else pg_insert)(table)
        stmt = stmt.on_conflict_do_nothing(index_elements=["id"]).returning(table.c.id)
        added = set(conn.scalars(stmt, rows))
        new = [r for k, r in by_id.items() if k in added]
    if not new:
        return 0
    _upsert_rollups(conn, rollup_rows(new))
    return len(new)


def rebuild_rollups(conn: Connection, *, chunk_size: int = 50_000, progress=None) -> int:
    """Recompute ``rollup_hourly`` from ``completions``; returns the number of rows read."""
    conn.execute(delete(RollupHourly.__table__))
    cols = [Completion.__table__.c[c] for c in ("created_at", "model", "provider", "app", "user",
                                                "api_key_hint", "status_code", "error_type",
                                                *_TOKEN_FIELDS, "cost_usd", "latency_ms")]
    result = conn.execute(select(*cols).order_by(Completion.created_at), execution_options={"yield_per": chunk_size})
    total = 0
    pending: dict[tuple, dict] = {}
    for part in result.mappings().partitions(chunk_size):
        for row in rollup_rows(part):
            key = tuple(row[d] for d in ROLLUP_DIMENSIONS)
            acc = pending.get(key)
            if acc is None:
                pending[key] = row
            else:
                for m in ROLLUP_MEASURES:
                    acc[m] += row[m]
        total += len(part)
        if progress is not None:
            progress(len(part))
        if len(pending) > 200_000:
            _upsert_rollups(conn, [pending[k] for k in sorted(pending)])
            pending.clear()
    _upsert_rollups(conn, [pending[k] for k in sorted(pending)])
    return total
