"""The hourly rollup: how records add up into ``rollup_hourly`` rows, and what an error is.

``rollup_rows`` sums records per key (hour, model, provider, app, user, key hint, error or not);
``upsert_rollups`` adds those sums to the stored rows in the insert's transaction, starting a spill
row (the hour plus 1 µs, 2 µs, ...) where a sum would pass its column (see ``db.store``);
``rollup_delta`` / ``add_to_rollups`` apply re-priced rows' corrections (``db.reprice``), and
``rebuild_rollups`` recomputes the table from the raw calls, leaving the hours of pruned calls
(``db.prune``) as they are: their calls are gone, so their rollup is the only record left.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import and_, delete, literal_column, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from .models import (
    MONEY_MEASURES,
    ROLLUP_DIMENSIONS,
    ROLLUP_MEASURES,
    Completion,
    RollupHourly,
)
from .periods import floor_hour
from .prune import pruned_until
from .types import MONEY_SCALE, from_pico

__all__ = ["is_error", "is_error_clause", "rollup_rows", "rollup_limits", "rollup_delta", "add_to_rollups",
           "rebuild_rollups", "upsert_rollups"]

TOKEN_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens", "reasoning_tokens")
_INT64_MAX = 2**63 - 1


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


def rollup_limits(dialect: str) -> dict[str, int | Decimal]:
    """The largest sum each rollup measure holds on this backend (money measures in USD)."""
    money = from_pico(_INT64_MAX) if dialect == "sqlite" else Decimal(10**18) - Decimal(1).scaleb(-MONEY_SCALE)
    return {m: money if m in MONEY_MEASURES else _INT64_MAX for m in ROLLUP_MEASURES}


def _key(r: dict) -> tuple:
    return (
        floor_hour(r["created_at"]),
        r.get("model") or "",
        r.get("provider") or "",
        r.get("app") or "",
        r.get("user") or "",
        r.get("api_key_hint") or "",
        is_error(r),
    )


def _new_row(key: tuple) -> dict:
    row = dict(zip(ROLLUP_DIMENSIONS, key))
    row.update({m: Decimal(0) if m in MONEY_MEASURES else 0 for m in ROLLUP_MEASURES})
    return row


def _add(row: dict, r: dict) -> None:
    row["requests"] += 1
    for f in TOKEN_FIELDS:
        v = r.get(f)
        if v is not None:
            row[f] += v
    cost = r.get("cost_usd")
    if cost is None:
        row["calls_missing_cost"] += 1
    else:
        row["cost_usd"] += cost
        row["estimated_cost_usd" if r.get("cost_source") == "estimated" else "billed_cost_usd"] += cost
    listed = r.get("list_cost_usd")
    if listed is not None:
        row["list_cost_usd"] += listed
    latency = r.get("latency_ms")
    if latency is not None:
        row["latency_ms_sum"] += latency
        row["latency_count"] += 1


def _fits(row: dict, extra: dict, limits: dict) -> bool:
    return all(row[m] + extra[m] <= limits[m] for m in ROLLUP_MEASURES)


def rollup_rows(records: Iterable[dict], limits: dict | None = None) -> list[dict]:
    """Sum records per rollup key. Unknown token counts add nothing; rows sorted by key.

    With ``limits`` (``rollup_limits``), a key whose sums would pass them gets several rows (in
    order), each within the limits."""
    records = list(records) if limits is not None else records
    sums: dict[tuple, dict] = {}
    for r in records:
        key = _key(r)
        row = sums.get(key)
        if row is None:
            row = sums[key] = _new_row(key)
        _add(row, r)
    pieces: dict[tuple, list[dict]] = {}
    if limits is not None:
        over = {k for k, row in sums.items() if any(row[m] > limits[m] for m in ROLLUP_MEASURES)}
        for r in records if over else ():
            key = _key(r)
            if key in over:
                one = _new_row(key)
                _add(one, r)
                _merge_into(pieces.setdefault(key, []), one, limits)
    return [row for k in sorted(sums) for row in pieces.get(k, [sums[k]])]


def _merge_into(pieces: list[dict], row: dict, limits: dict | None) -> None:
    """Add ``row`` to the last of ``pieces`` (one key's rows) if it fits there, else append it."""
    if pieces and (limits is None or _fits(pieces[-1], row, limits)):
        for m in ROLLUP_MEASURES:
            pieces[-1][m] += row[m]
    else:
        pieces.append(dict(row))


def upsert_rollups(conn: Connection, rows: Sequence[dict]) -> None:
    """Add ``rows`` to the rollup. A row goes to the first bucket of its hour (hour + n µs) that
    has room for all its sums; pieces of one key (``rollup_rows`` with limits) go one per round.
    The usual case, every row fitting its hour's first bucket, is one executemany (its rowcount
    says so); otherwise it is undone and the rows are placed with ``RETURNING``."""
    if not rows:
        return
    table = RollupHourly.__table__
    dialect = conn.dialect.name
    limits = rollup_limits(dialect)
    stmt = (sqlite_insert if dialect == "sqlite" else pg_insert)(table)
    room = and_(*(table.c[m] <= literal_column(_sql_number(dialect, m, limits[m])) - stmt.excluded[m]
                  for m in ROLLUP_MEASURES))
    stmt = stmt.on_conflict_do_update(
        index_elements=list(ROLLUP_DIMENSIONS),
        set_={m: table.c[m] + stmt.excluded[m] for m in ROLLUP_MEASURES},
        where=room,
    )
    queue: dict[tuple, list[dict]] = {}
    for row in rows:
        queue.setdefault(tuple(row[d] for d in ROLLUP_DIMENSIONS), []).append(row)
    if len(queue) == len(rows) and conn.dialect.supports_sane_multi_rowcount:
        savepoint = conn.begin_nested()
        if conn.execute(stmt, list(rows)).rowcount == len(rows):
            savepoint.commit()
            return
        savepoint.rollback()  # a bucket was full: place each row below
    stmt = stmt.returning(*(table.c[d] for d in ROLLUP_DIMENSIONS))
    slot = 0
    while queue:
        batch = {}
        for pieces in queue.values():
            piece = dict(pieces[0], bucket=pieces[0]["bucket"] + timedelta(microseconds=slot))
            batch[tuple(piece[d] for d in ROLLUP_DIMENSIONS)] = piece
        placed = {tuple(r) for r in conn.execute(stmt, list(batch.values()))}
        for key in list(queue):
            sent = (queue[key][0]["bucket"] + timedelta(microseconds=slot), *key[1:])
            if sent in placed:
                queue[key].pop(0)
                if not queue[key]:
                    del queue[key]
        slot += 1


_PRICE_DELTA = ("cost_usd", "billed_cost_usd", "estimated_cost_usd", "list_cost_usd")


def rollup_delta(old: Iterable[dict], new: Iterable[dict]) -> list[dict]:
    """What to add to the rollup when calls ``old`` are re-priced into ``new`` (the same calls: only
    ``cost_usd``, ``cost_source``, ``price_source`` and ``list_cost_usd`` differ): per key, the
    change of the cost measures and of ``calls_missing_cost``; keys with no change are left out.
    Measures may be negative; the others are 0."""
    sums: dict[tuple, list] = {}
    for sign, rows in ((-1, old), (1, new)):
        for r in rows:
            key = _key(r)
            d = sums.get(key)
            if d is None:
                d = sums[key] = [Decimal(0), Decimal(0), Decimal(0), Decimal(0), 0]
            cost = r.get("cost_usd")
            if cost is None:
                d[4] += sign
            else:
                cost = cost if sign > 0 else -cost
                d[0] += cost
                d[2 if r.get("cost_source") == "estimated" else 1] += cost
            listed = r.get("list_cost_usd")
            if listed is not None:
                d[3] += listed if sign > 0 else -listed
    out = []
    for key in sorted(sums):
        d = sums[key]
        if any(d):
            row = _new_row(key)
            row.update(zip(_PRICE_DELTA, d))
            row["calls_missing_cost"] = d[4]
            out.append(row)
    return out


def add_to_rollups(conn: Connection, deltas: Sequence[dict]) -> None:
    """Add ``rollup_delta`` rows to ``rollup_hourly``, in the caller's transaction. A delta goes to the
    first bucket of its hour, which always holds the key (its calls were counted there or in a
    continuation bucket of the same hour; readers sum the hour's buckets). No room check: a re-priced
    sum stays within the column unless that hour's key passes 9,223,372 USD, which then fails loudly
    (PostgreSQL refuses the value, the batch is rolled back)."""
    if not deltas:
        return
    table = RollupHourly.__table__
    stmt = (sqlite_insert if conn.dialect.name == "sqlite" else pg_insert)(table)
    stmt = stmt.on_conflict_do_update(index_elements=list(ROLLUP_DIMENSIONS),
                                      set_={m: table.c[m] + stmt.excluded[m] for m in ROLLUP_MEASURES})
    conn.execute(stmt, list(deltas))


def _sql_number(dialect: str, measure: str, limit) -> str:
    if measure in MONEY_MEASURES and dialect == "sqlite":
        return str(_INT64_MAX)  # stored as integer pico-dollars
    return str(limit)


def rebuild_rollups(conn: Connection, *, chunk_size: int = 50_000, progress=None) -> int:
    """Recompute ``rollup_hourly`` from ``completions``; returns the number of rows read.

    The hours before the oldest stored call's hour, when rollup rows hold them, are those of pruned
    calls (``db.prune.pruned_until``): they are kept as they are, the rest is rebuilt."""
    until = pruned_until(conn)
    table = RollupHourly.__table__
    conn.execute(delete(table) if until is None else delete(table).where(table.c.bucket >= until))
    cols = [Completion.__table__.c[c] for c in ("created_at", "model", "provider", "app", "user",
                                                "api_key_hint", "status_code", "error_type",
                                                *TOKEN_FIELDS, "cost_usd", "cost_source", "list_cost_usd",
                                                "latency_ms")]
    result = conn.execute(select(*cols).order_by(Completion.created_at), execution_options={"yield_per": chunk_size})
    limits = rollup_limits(conn.dialect.name)
    total = 0
    pending: dict[tuple, list[dict]] = {}  # key -> its rows, each within the limits
    for part in result.mappings().partitions(chunk_size):
        for row in rollup_rows(part, limits):
            _merge_into(pending.setdefault(tuple(row[d] for d in ROLLUP_DIMENSIONS), []), row, limits)
        total += len(part)
        if progress is not None:
            progress(len(part))
        if len(pending) > 200_000:
            upsert_rollups(conn, [row for k in sorted(pending) for row in pending[k]])
            pending.clear()
    upsert_rollups(conn, [row for k in sorted(pending) for row in pending[k]])
    return total
