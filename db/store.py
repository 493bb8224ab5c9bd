"""Writing records: the one function that turns record dicts into rows.

A record is a dict keyed by ``completions`` column names (see ``db.models.Completion``).
``insert_records`` inserts those whose ``id`` is not stored yet (replays never duplicate) and adds
their sums to ``rollup_hourly`` and ``rollup_tags`` (``db.tag_rollup``), and those hourly rows to
``rollup_daily`` and ``rollup_tags_daily`` (``db.daily``), the tag rows also to ``rollup_tag_days``
(model and app summed away, revision 0008), in the same transaction. The writer, the
spool replay, the demo backfill and ``rebuild_rollups`` all go through here.

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
  readers sum rows per group anyway and take the hour of a bucket with ``floor_hour``. The daily
  rollups spill the same way, from the day's midnight.

Prices (issue 14): ``insert_records`` prices the records first (``db.estimate.price_records``: an
estimate for a call with tokens and no upstream cost, a list price for every call it can price),
and the rollup carries ``billed_cost_usd``, ``estimated_cost_usd`` and ``list_cost_usd`` beside
``cost_usd``. ``rollup_delta`` turns re-priced rows into the rollup corrections ``reprice`` adds.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from datetime import datetime, timezone

from sqlalchemy import String, func, insert
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, InterfaceError, ProgrammingError, StatementError
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from .errors import StorageError, describe
from .daily import upsert_daily
from .models import Completion, RollupHourly, RollupTags
from .tag_limits import bound_tags, within_limits
from .rebuild import rebuild_rollups
from .rollups import (add_to_rollups, is_error, is_error_clause, rollup_delta, rollup_limits, rollup_rows,
                      upsert_rollups)
from .tag_rollup import tag_rollup_limits, tag_rollup_rows, upsert_tag_rollups

__all__ = ["COLUMNS", "insert_records", "insert_isolating", "is_record_error", "clean_record", "clean_text",
           "rollup_rows", "rollup_limits", "rollup_delta", "add_to_rollups", "rebuild_rollups", "is_error",
           "is_error_clause"]

# what a record may carry; ``ingested_at`` is the insert's own (``_arrival``), never the record's
COLUMNS: tuple[str, ...] = tuple(c.name for c in Completion.__table__.columns if c.name != "ingested_at")
_DEFAULTS = {"stream": False, "cost_source": "missing"}
# every text column but the id (a bad id is the record's fault: it is quarantined, never rewritten)
_TEXT_COLUMNS = tuple(sorted(((c.name, c.type.length or sys.maxsize) for c in Completion.__table__.columns
                             if isinstance(c.type, String) and c.name != "id"), key=lambda c: c[1]))
_TEXT_NAMES = tuple(name for name, _ in _TEXT_COLUMNS)
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
    tags cleaned and bounded (``db.tag_limits.bound_tags``, flag kept); the record itself when nothing needs it, else a cleaned copy."""
    out = None
    if not _text_is_clean(record):
        out = dict(record)
        for name, limit in _TEXT_COLUMNS:
            value = record.get(name)
            if isinstance(value, str):
                out[name] = clean_text(value, limit)
    tags = record.get("tags")
    if tags and not (_plain_text(tags) and within_limits(tags, keep_flag=True)):
        cleaned = bound_tags(_clean_json(tags), keep_flag=True)
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


def _complete(record: dict) -> dict:
    row = {c: record.get(c, _DEFAULTS.get(c)) for c in COLUMNS}
    return row


def _arrival(conn: Connection):
    """``ingested_at`` for the rows an insert adds (issue 17: what makes a row late for a closed
    month). On PostgreSQL the database's ``clock_timestamp()``, evaluated per row after the insert
    got its table lock, so a ``spendlog close`` (which locks the table against inserts while it
    reads) always sees a row stamped before its instant and never one stamped after; on SQLite the
    writer's clock, read here inside the write transaction that ``<db>.write.lock`` serialises
    with the close's."""
    if conn.dialect.name == "postgresql":
        return func.clock_timestamp()
    return datetime.now(timezone.utc)


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
    arrival = _arrival(conn)
    try:
        with conn.begin_nested():  # the usual case: every id is new (ids are made on the client)
            conn.execute(insert(table).values(ingested_at=arrival), rows)
        new = list(by_id.values())
    except IntegrityError:
        # Some are stored already (a spool replay): skip those and learn which rows were added.
        # No lookup first: on a large table PostgreSQL can plan "id IN (...)" as a scan.
        stmt = (sqlite_insert if conn.dialect.name == "sqlite" else pg_insert)(table).values(ingested_at=arrival)
        stmt = stmt.on_conflict_do_nothing(index_elements=["id"]).returning(table.c.id)
        added = set(conn.scalars(stmt, rows))
        new = [r for k, r in by_id.items() if k in added]
    if not new:
        return 0
    hourly = rollup_rows(new, rollup_limits(conn.dialect.name))
    upsert_rollups(conn, hourly)
    upsert_daily(conn, RollupHourly.__table__, hourly)
    if any(r.get("tags") for r in new):
        tagged = tag_rollup_rows(new, tag_rollup_limits(conn.dialect.name))
        upsert_tag_rollups(conn, tagged)
        upsert_daily(conn, RollupTags.__table__, tagged)  # and on to rollup_tag_days
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
                rejected.append((records[0], describe(exc)))
                return 0
    middle = len(records) // 2
    return insert_isolating(conn, records[:middle], rejected) + insert_isolating(conn, records[middle:], rejected)
