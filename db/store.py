"""Writing records: the one function that turns record dicts into rows.

A record is a dict keyed by ``completions`` column names (see ``db.models.Completion``).
``insert_records`` inserts those whose ``id`` is not stored yet (replays never duplicate) and adds
their sums to ``rollup_hourly`` in the same transaction. The writer, the spool replay, the demo
backfill and ``rebuild_rollups`` all go through here.

Poison never spreads (issue 12):

- Text is cleaned on the way in (``clean_record``: no lone surrogate, no NUL, within the
  column's length), whoever built the record: PostgreSQL refuses NUL and over-long values, both
  backends refuse lone surrogates.
- ``insert_isolating`` stores what can be stored: a batch that fails because of a record
  (``is_record_error``: a value no column takes) is split in halves, each in its own savepoint,
  down to the records at fault, which it hands back with the reason instead of failing the rest.
- A rollup row never overflows its columns (int64 on SQLite, pico-dollars included: 9,223,372 USD;
  NUMERIC(30, 12) and BIGINT on PostgreSQL). When an hour's sums for one key would pass them, the
  rest goes into another row for the same key whose ``bucket`` is the hour plus 1 µs (2 µs, ...):
  readers sum rows per group anyway and take the hour of a bucket with ``floor_hour``.

Prices (issue 14): ``insert_records`` prices the records first (``db.estimate.price_records``: an
estimate for a call with tokens and no upstream cost, a list price for every call it can price),
and the rollup carries ``billed_cost_usd``, ``estimated_cost_usd`` and ``list_cost_usd`` beside
``cost_usd``. ``rollup_delta`` turns re-priced rows into the rollup corrections ``reprice`` adds.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import String, and_, delete, insert, literal_column, or_, select
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, InterfaceError, ProgrammingError, StatementError
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from .errors import StorageError
from .models import MONEY_MEASURES, ROLLUP_DIMENSIONS, ROLLUP_MEASURES, Completion, RollupHourly
from .types import MONEY_SCALE, from_pico

__all__ = ["COLUMNS", "insert_records", "insert_isolating", "is_record_error", "clean_record", "clean_text",
           "rollup_rows", "rollup_limits", "rollup_delta", "add_to_rollups", "rebuild_rollups", "is_error",
           "is_error_clause"]

COLUMNS: tuple[str, ...] = tuple(c.name for c in Completion.__table__.columns)
_TOKEN_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens", "reasoning_tokens")
_DEFAULTS = {"stream": False, "cost_source": "missing"}
# every text column but the id (a bad id is the record's fault: it is quarantined, never rewritten)
_TEXT_COLUMNS = tuple(sorted(((c.name, c.type.length or sys.maxsize) for c in Completion.__table__.columns
                             if isinstance(c.type, String) and c.name != "id"), key=lambda c: c[1]))
_TEXT_NAMES = tuple(name for name, _ in _TEXT_COLUMNS)
_INT64_MAX = 2**63 - 1
_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(value: str, limit: int | None = None) -> str:
    """``value`` as every backend stores it: a lone surrogate (e.g. from bytes decoded with
    surrogateescape) becomes U+FFFD, NUL is removed, and it is cut to ``limit``. The same rule as
    the capture's ``spendlog.capture.clean_text``, so a value is stored alike whoever cleaned it."""
    if not value.isascii():
        value = _SURROGATE.sub("\ufffd", value)
    if "\x00" in value:
        value = value.replace("\x00", "")
    return value if limit is None else value[:limit]


def _clean_json(value):
    """``value`` (tags: JSON) with every string in it cleaned; the same object when nothing changes."""
    if isinstance(value, str):
        return clean_text(value) if not value.isascii() or "\x00" in value else value
    if isinstance(value, dict):
        items = [(_clean_json(k) if isinstance(k, str) else k, _clean_json(v)) for k, v in value.items()]
        if all(k is k0 and v is v0 for (k, v), (k0, v0) in zip(items, value.items())):
            return value
        return dict(items)
    if isinstance(value, list):
        items = [_clean_json(v) for v in value]
        return value if all(a is b for a, b in zip(items, value)) else items
    return value


def _plain_text(value) -> bool:
    """Whether every string in ``value`` (tags) is ASCII without NUL: the usual case, checked fast."""
    if type(value) is dict:
        parts = []
        for k, v in value.items():
            if type(v) is not str or type(k) is not str:
                return False  # nested or unusual: the careful path decides
            parts.append(k)
            parts.append(v)
        joined = "".join(parts)
        return joined.isascii() and "\x00" not in joined
    return False


def _text_is_clean(record: dict) -> bool:
    """The usual case, checked fast: every text column ASCII, no NUL, within its length."""
    get = record.get
    texts = [v for v in map(get, _TEXT_NAMES) if v.__class__ is str]
    joined = "".join(texts)
    if not joined.isascii() or "\x00" in joined:
        return False
    longest = max(map(len, texts), default=0)
    for name, limit in _TEXT_COLUMNS:  # shortest limit first: only those below the longest value
        if limit >= longest:
            return True
        value = get(name)
        if value.__class__ is str and len(value) > limit:
            return False
    return True


def clean_record(record: dict) -> dict:
    """``record`` with every text value storable (``clean_text``, to the column's length) and its
    tags cleaned; the record itself when nothing needs it, else a cleaned copy."""
    out = None
    if not _text_is_clean(record):
        out = dict(record)
        for name, limit in _TEXT_COLUMNS:
            value = record.get(name)
            if isinstance(value, str):
                out[name] = clean_text(value, limit)
    tags = record.get("tags")
    if tags and not _plain_text(tags):
        cleaned = _clean_json(tags)
        if cleaned is not tags:
            if out is None:
                out = dict(record)
            out["tags"] = cleaned
    return record if out is None else out


def is_record_error(exc: BaseException) -> bool:
    """Whether a failed insert is the fault of a record (a value no column takes: SQLSTATE classes
    22 and 23, a value the driver cannot bind, a type or value error while building the row), not
    of the database being unreachable, locked, full, read-only or of another schema."""
    if isinstance(exc, StorageError):  # spendlog's own: the database, never a record
        return False
    if isinstance(exc, DBAPIError):
        if isinstance(exc, (DataError, IntegrityError)):
            return True
        if isinstance(exc, (ProgrammingError, InterfaceError)) and getattr(exc.orig, "sqlstate", None) is None:
            message = str(exc.orig).lower()  # raised by the driver itself, before the server saw it
            return any(word in message for word in ("bind", "adapt", "not supported"))
        return False
    if isinstance(exc, StatementError) and exc.orig is not None:
        exc = exc.orig
    return isinstance(exc, (ValueError, TypeError, KeyError, AttributeError, OverflowError, ArithmeticError))


def _reason(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {text}"[:300]


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


def rollup_limits(dialect: str) -> dict[str, int | Decimal]:
    """The largest sum each rollup measure holds on this backend (money measures in USD)."""
    money = from_pico(_INT64_MAX) if dialect == "sqlite" else Decimal(10**18) - Decimal(1).scaleb(-MONEY_SCALE)
    return {m: money if m in MONEY_MEASURES else _INT64_MAX for m in ROLLUP_MEASURES}


def _key(r: dict) -> tuple:
    return (
        _hour(r["created_at"]),
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
    for f in _TOKEN_FIELDS:
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


def _upsert_rollups(conn: Connection, rows: Sequence[dict]) -> None:
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


def _complete(record: dict) -> dict:
    row = {c: record.get(c, _DEFAULTS.get(c)) for c in COLUMNS}
    return row


def insert_records(conn: Connection, records: Sequence[dict]) -> int:
    """Insert the records not stored yet and update the rollup; returns how many were new.

    Runs inside the caller's transaction (``engine.begin()``). Text is cleaned first
    (``clean_record``)."""
    by_id: dict[str, dict] = {}
    for r in records:
        by_id.setdefault(r["id"], clean_record(r))
    if not by_id:
        return 0
    from .estimate import price_records  # imported on first use: genai-prices' data takes ~0.4 s to load

    by_id = price_records(by_id)
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
    _upsert_rollups(conn, rollup_rows(new, rollup_limits(conn.dialect.name)))
    return len(new)


def insert_isolating(conn: Connection, records: Sequence[dict], rejected: list[tuple[dict, str]], *,
                     failed: bool = False) -> int:
    """``insert_records``, except that the records at fault when a batch fails because of a
    record (``is_record_error``) are left out and appended to ``rejected`` as ``(record,
    reason)``; the rest is inserted. Halves are tried in savepoints: k bad records of n cost about
    2k·log2(n) small inserts, 2n at worst. Any other failure (the database) is raised.
    ``failed``: the whole batch is known to fail already, so start with its halves."""
    if not failed or len(records) == 1:
        try:
            with conn.begin_nested():
                return insert_records(conn, records)
        except Exception as exc:  # sorted below: the record's fault, or raised
            if not is_record_error(exc):
                raise
            if len(records) == 1:
                rejected.append((records[0], _reason(exc)))
                return 0
    middle = len(records) // 2
    return insert_isolating(conn, records[:middle], rejected) + insert_isolating(conn, records[middle:], rejected)


def rebuild_rollups(conn: Connection, *, chunk_size: int = 50_000, progress=None) -> int:
    """Recompute ``rollup_hourly`` from ``completions``; returns the number of rows read."""
    conn.execute(delete(RollupHourly.__table__))
    cols = [Completion.__table__.c[c] for c in ("created_at", "model", "provider", "app", "user",
                                                "api_key_hint", "status_code", "error_type",
                                                *_TOKEN_FIELDS, "cost_usd", "cost_source", "list_cost_usd",
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
            _upsert_rollups(conn, [row for k in sorted(pending) for row in pending[k]])
            pending.clear()
    _upsert_rollups(conn, [row for k in sorted(pending) for row in pending[k]])
    return total
