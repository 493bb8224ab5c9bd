"""The hourly rollup: how records add up into ``rollup_hourly`` rows, and what an error is.

``rollup_rows`` sums records per key (hour, model, provider, app, user, key hint, error or not);
``upsert_rollups`` adds those sums to the stored rows in the insert's transaction, starting a spill
row (the hour plus 1 µs, 2 µs, ...) where a sum would pass its column (see ``db.store``);
``rollup_delta`` / ``add_to_rollups`` apply re-priced rows' corrections (``db.reprice``).
The tag rollup (``db.tag_rollup``) is summed, placed and corrected by the same functions;
``db.rebuild`` recomputes both from the raw calls.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import and_, literal_column, or_
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
from .types import MONEY_SCALE, from_pico

__all__ = ["is_error", "is_error_clause", "rollup_rows", "rollup_limits", "rollup_delta", "add_to_rollups",
           "upsert_rollups", "sum_rows", "merge_into", "TOKEN_FIELDS"]

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


def rollup_limits(dialect: str, measures: Sequence[str] = ROLLUP_MEASURES) -> dict[str, int | Decimal]:
    """The largest sum each rollup measure holds on this backend (money measures in USD)."""
    money = from_pico(_INT64_MAX) if dialect == "sqlite" else Decimal(10**18) - Decimal(1).scaleb(-MONEY_SCALE)
    return {m: money if m in MONEY_MEASURES else _INT64_MAX for m in measures}


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


def _new_row(key: tuple, dims: Sequence[str] = ROLLUP_DIMENSIONS, measures: Sequence[str] = ROLLUP_MEASURES) -> dict:
    row = dict(zip(dims, key))
    row.update({m: Decimal(0) if m in MONEY_MEASURES else 0 for m in measures})
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
    return all(row[m] + extra[m] <= limit for m, limit in limits.items())


def rollup_rows(records: Iterable[dict], limits: dict | None = None) -> list[dict]:
    """Sum records per rollup key. Unknown token counts add nothing; rows sorted by key.

    With ``limits`` (``rollup_limits``), a key whose sums would pass them gets several rows (in
    order), each within the limits."""
    return sum_rows(records, lambda r: (_key(r),), _new_row, _add, limits)


def sum_rows(records: Iterable[dict], keys_of, new_row, add, limits: dict | None) -> list[dict]:
    """The summing behind ``rollup_rows`` (and ``db.tag_rollup``): each record adds (``add(row,
    record)``) to the row of every key ``keys_of(record)`` gives; with ``limits``, split as above."""
    records = list(records) if limits is not None else records
    sums: dict[tuple, dict] = {}
    for r in records:
        for key in keys_of(r):
            row = sums.get(key)
            if row is None:
                row = sums[key] = new_row(key)
            add(row, r)
    pieces: dict[tuple, list[dict]] = {}
    if limits is not None:
        over = {k for k, row in sums.items() if any(row[m] > limit for m, limit in limits.items())}
        for r in records if over else ():
            for key in keys_of(r):
                if key in over:
                    one = new_row(key)
                    add(one, r)
                    merge_into(pieces.setdefault(key, []), one, limits)
    return [row for k in sorted(sums) for row in pieces.get(k, [sums[k]])]


def merge_into(pieces: list[dict], row: dict, limits: dict) -> None:
    """Add ``row`` to the last of ``pieces`` (one key's rows) if it fits there, else append it."""
    if pieces and _fits(pieces[-1], row, limits):
        for m in limits:
            pieces[-1][m] += row[m]
    else:
        pieces.append(dict(row))


def upsert_rollups(conn: Connection, rows: Sequence[dict], table=None) -> None:
    """Add ``rows`` to the rollup. A row goes to the first bucket of its hour (hour + n µs) that
    has room for all its sums; pieces of one key (``rollup_rows`` with limits) go one per round.
    The usual case, every row fitting its hour's first bucket, is one executemany (its rowcount
    says so); otherwise it is undone and the rows are placed with ``RETURNING``."""
    if not rows:
        return
    table = RollupHourly.__table__ if table is None else table  # or rollup_tags (db.tag_rollup)
    dims = [c.name for c in table.primary_key]
    measures = [c.name for c in table.columns if not c.primary_key]
    dialect = conn.dialect.name
    limits = rollup_limits(dialect, measures)
    stmt = (sqlite_insert if dialect == "sqlite" else pg_insert)(table)
    room = and_(*(table.c[m] <= literal_column(_sql_number(dialect, m, limits[m])) - stmt.excluded[m]
                  for m in measures))
    stmt = stmt.on_conflict_do_update(
        index_elements=dims,
        set_={m: table.c[m] + stmt.excluded[m] for m in measures},
        where=room,
    )
    queue: dict[tuple, list[dict]] = {}
    for row in rows:
        queue.setdefault(tuple(row[d] for d in dims), []).append(row)
    if len(queue) == len(rows) and conn.dialect.supports_sane_multi_rowcount:
        savepoint = conn.begin_nested()
        if conn.execute(stmt, list(rows)).rowcount == len(rows):
            savepoint.commit()
            return
        savepoint.rollback()  # a bucket was full: place each row below
    stmt = stmt.returning(*(table.c[d] for d in dims))
    slot = 0
    while queue:
        batch = {}
        for pieces in queue.values():
            piece = dict(pieces[0], bucket=pieces[0]["bucket"] + timedelta(microseconds=slot))
            batch[tuple(piece[d] for d in dims)] = piece
        placed = {tuple(r) for r in conn.execute(stmt, list(batch.values()))}
        for key in list(queue):
            sent = (queue[key][0]["bucket"] + timedelta(microseconds=slot), *key[1:])
            if sent in placed:
                queue[key].pop(0)
                if not queue[key]:
                    del queue[key]
        slot += 1


_PRICE_DELTA = ("cost_usd", "billed_cost_usd", "estimated_cost_usd", "list_cost_usd")


def rollup_delta(old: Iterable[dict], new: Iterable[dict], keys_of=None, new_row=_new_row) -> list[dict]:
    """What to add to the rollup when calls ``old`` are re-priced into ``new`` (the same calls: only
    ``cost_usd``, ``cost_source``, ``price_source`` and ``list_cost_usd`` differ): per key, the
    change of the cost measures and of ``calls_missing_cost``; keys with no change are left out.
    Measures may be negative; the others are 0. ``keys_of``/``new_row``: another rollup's keys (``db.tag_rollup``)."""
    keys_of = keys_of or (lambda r: (_key(r),))
    sums: dict[tuple, list] = {}
    for sign, rows in ((-1, old), (1, new)):
        for r in rows:
            cost, listed = r.get("cost_usd"), r.get("list_cost_usd")
            for key in keys_of(r):
                d = sums.get(key)
                if d is None:
                    d = sums[key] = [Decimal(0), Decimal(0), Decimal(0), Decimal(0), 0]
                if cost is None:
                    d[4] += sign
                else:
                    d[0] += cost if sign > 0 else -cost
                    d[2 if r.get("cost_source") == "estimated" else 1] += cost if sign > 0 else -cost
                if listed is not None:
                    d[3] += listed if sign > 0 else -listed
    out = []
    for key in sorted(sums):
        d = sums[key]
        if any(d):
            row = new_row(key)
            row.update(zip(_PRICE_DELTA, d))
            row["calls_missing_cost"] = d[4]
            out.append(row)
    return out


def add_to_rollups(conn: Connection, deltas: Sequence[dict], table=None) -> None:
    """Add ``rollup_delta`` rows to ``rollup_hourly``, in the caller's transaction. A delta goes to the
    first bucket of its hour, which always holds the key (its calls were counted there or in a
    continuation bucket of the same hour; readers sum the hour's buckets). No room check: a re-priced
    sum stays within the column unless that hour's key passes 9,223,372 USD, which then fails loudly
    (PostgreSQL refuses the value, the batch is rolled back)."""
    if not deltas:
        return
    table = RollupHourly.__table__ if table is None else table
    measures = [c.name for c in table.columns if not c.primary_key]
    stmt = (sqlite_insert if conn.dialect.name == "sqlite" else pg_insert)(table)
    stmt = stmt.on_conflict_do_update(index_elements=[c.name for c in table.primary_key],
                                      set_={m: table.c[m] + stmt.excluded[m] for m in measures})
    conn.execute(stmt, list(deltas))


def _sql_number(dialect: str, measure: str, limit) -> str:
    if measure in MONEY_MEASURES and dialect == "sqlite":
        return str(_INT64_MAX)  # stored as integer pico-dollars
    return str(limit)
