"""Month close (issue 17): a month's totals kept as they were reported, and the records that came later.

``close_month`` stores, for one month in one zone, its exact totals per local day x model x provider x
app x user x key (``grouped_totals``, the figures every reader shows) with a SHA-256 checksum of them,
and who closed it, when and why. ``reopen_month`` adds a reopen to the history; nothing is ever
updated or deleted, so ``history`` shows every close and reopen. A month is closed while its latest
history row is a close.

Late rows. A call belongs to the month by ``created_at``; it is *late* when it reached the ledger
after the close: ``completions.ingested_at > recorded_at``. The id cannot say it (a UUIDv7 made on
the client when the call started: a record spooled for a week has an old id), nor can
``created_at``. ``ingested_at`` is stamped by the insert itself (``db.store``); the close takes the
writers' lock while it reads (``<db>.write.lock`` with ``BEGIN IMMEDIATE`` on SQLite,
``LOCK TABLE completions IN SHARE ROW EXCLUSIVE MODE`` on PostgreSQL, whose inserts stamp
``clock_timestamp()`` after they get their lock), so every row is either in the closed totals or
late, never both or neither. Rows stored before revision 0006 have ``ingested_at`` NULL and are never
late: they predate every close.

``closed_totals`` answers any grouping of the closed month over ``CLOSED_GROUPS`` from the stored
rows alone (after checking their checksum), so an as-closed export is the same bytes whatever arrives
or is repriced or pruned later; ``late_filters`` selects the late rows for the adjustments.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

from sqlalchemy import func, insert, select, text
from sqlalchemy.engine import Connection, Engine

from .engine import file_lock, lock_timeout, write_lock_path
from .filters import Filters
from .models import CLOSE_DIMENSIONS, SPEND_MEASURES, MonthClose, MonthCloseTotal
from .periods import date_bounds, get_zone
from .queries import grouped_totals
from .types import quantize_money

__all__ = ["CLOSED_GROUPS", "Close", "CloseError", "ChecksumError", "parse_month", "month_bounds", "history",
           "current_close", "closed_months", "close_month", "reopen_month", "closed_totals", "late_filters",
           "late_totals", "checksum"]

# what an as-closed read may group by: the stored grain (day x dimensions) and the month itself
CLOSED_GROUPS = ("day", "month", "model", "provider", "app", "user", "key")
_DIMENSION_OF = {"model": "model", "provider": "provider", "app": "app", "user": "user", "key": "api_key_hint"}
_GRAIN = ("day", "model", "provider", "app", "user", "key")
_MONTH = re.compile(r"(\d{4})-(\d{2})")
_MONEY = frozenset({"cost_usd", "billed_cost_usd", "estimated_cost_usd", "list_cost_usd"})


class CloseError(ValueError):
    """A close or reopen that cannot be done as asked (closed already, not closed, not over yet)."""


class ChecksumError(Exception):
    """A close's stored totals do not match the checksum taken when it was made."""


@dataclass(frozen=True)
class Close:
    """One history row: a close (``action`` 'close') or a reopen ('reopen', ``reopens`` its close)."""

    id: int
    month: str
    action: str
    tz: str
    start: datetime
    end: datetime
    recorded_at: datetime
    recorded_by: str
    note: str | None
    checksum: str | None
    reopens: int | None


def parse_month(value: str) -> date:
    """``YYYY-MM`` -> the month's first day; ``ValueError`` says what is wrong (no option named)."""
    match = _MONTH.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None or not 1 <= int(match[2]) <= 12 or int(match[1]) < 1:
        raise ValueError(f"must be a month as YYYY-MM, like 2026-11, not {value!r}")
    return date(int(match[1]), int(match[2]), 1)


def month_bounds(first: date, tz: str) -> tuple[datetime, datetime]:
    """The month starting ``first`` as aware UTC [start, end) in ``tz``."""
    last = (first.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
    return date_bounds(first, last, tz)


def _close(row) -> Close:
    return Close(row.id, row.month, row.action, row.tz, row.period_start, row.period_end, row.recorded_at,
                 row.recorded_by, row.note, row.checksum, row.reopens)


def history(conn: Connection, month: str | None = None) -> list[Close]:
    """Every close and reopen (of ``month``, or all), oldest first."""
    stmt = select(MonthClose.__table__).order_by(MonthClose.id)
    if month is not None:
        stmt = stmt.where(MonthClose.month == month)
    return [_close(row) for row in conn.execute(stmt)]


def closed_months(conn: Connection) -> dict[str, Close]:
    """The months closed now (their latest history row is a close) -> that close."""
    latest: dict[str, Close] = {}
    for entry in history(conn):
        latest[entry.month] = entry
    return {month: entry for month, entry in sorted(latest.items()) if entry.action == "close"}


def current_close(conn: Connection, month: str) -> Close | None:
    """The close in force for ``month`` (``YYYY-MM``), or None when it is open."""
    entries = history(conn, month)
    return entries[-1] if entries and entries[-1].action == "close" else None


def checksum(month: str, tz: str, start: datetime, end: datetime, rows: Sequence[dict]) -> str:
    """SHA-256 (hex) of a canonical text of the totals: a header line (month, zone, UTC bounds), then
    one JSON array per row, sorted by day and dimensions ('' for unknown): ints as digits, money as
    its 12-place decimal text. Independent of the backend and of the order rows are read in."""
    lines = [json.dumps(["spendlog month close v1", month, tz, start.isoformat(), end.isoformat()])]
    cells = []
    for r in rows:
        key = [r["day"].isoformat(), *(r[d] or "" for d in CLOSE_DIMENSIONS)]
        values = [format(quantize_money(r[m]), "f") if m in _MONEY else str(int(r[m])) for m in SPEND_MEASURES]
        cells.append(key + values)
    lines.extend(json.dumps(c, ensure_ascii=False, separators=(",", ":")) for c in sorted(cells))
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def _now(conn: Connection) -> datetime:
    """The close's instant, on the clock the inserts stamp ``ingested_at`` with (``db.store``)."""
    if conn.dialect.name == "postgresql":
        return conn.scalar(select(func.clock_timestamp()))
    return datetime.now(timezone.utc)


@contextmanager
def _locked(engine: Engine) -> Iterator[Connection]:
    """A write transaction no insert runs beside (see the module docstring)."""
    with file_lock(write_lock_path(engine.url), optional=True, timeout=lock_timeout()):
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":  # a constant statement: no value in it
                conn.execute(text("LOCK TABLE completions IN SHARE ROW EXCLUSIVE MODE"))
            yield conn


def close_month(engine: Engine, month: str, tz: str, *, by: str, note: str | None = None) -> tuple[Close, int]:
    """Close ``month`` (``YYYY-MM``) in ``tz``: store its totals and their checksum. Returns the
    close and how many total rows it keeps. ``ValueError`` for a bad month or zone; ``CloseError``
    when it is closed already or has not ended yet."""
    first = parse_month(month)
    get_zone(tz)
    month = first.strftime("%Y-%m")
    start, end = month_bounds(first, tz)
    with _locked(engine) as conn:
        now = _now(conn)
        if end > now:
            raise CloseError(f"{month} has not ended yet in {tz} (it ends {end:%Y-%m-%d %H:%M} UTC)")
        entry = current_close(conn, month)
        if entry is not None:
            raise CloseError(f"{month} is closed already (since {entry.recorded_at:%Y-%m-%d %H:%M} UTC by "
                             f"{entry.recorded_by}): `spendlog close {month} --reopen` first")
        rows = [_stored(r) for r in grouped_totals(conn, Filters(start=start, end=end), _GRAIN, tz)]
        digest = checksum(month, tz, start, end, rows)
        close_id = conn.execute(insert(MonthClose).returning(MonthClose.id), {
            "month": month, "action": "close", "tz": tz, "period_start": start, "period_end": end,
            "recorded_at": now, "recorded_by": by, "note": note, "checksum": digest}).scalar_one()
        if rows:
            conn.execute(insert(MonthCloseTotal), [{"close_id": close_id, **r} for r in rows])
        return current_close(conn, month), len(rows)


def _stored(row: dict) -> dict:
    out = {"day": row["day"], **{column: row[group] or "" for group, column in _DIMENSION_OF.items()}}
    out.update((m, row[m]) for m in SPEND_MEASURES)
    return out


def reopen_month(engine: Engine, month: str, *, by: str, note: str | None = None) -> Close:
    """Reopen a closed month: a reopen row in the history (its close and totals stay)."""
    month = parse_month(month).strftime("%Y-%m")
    with _locked(engine) as conn:
        entry = current_close(conn, month)
        if entry is None:
            raise CloseError(f"{month} is not closed")
        conn.execute(insert(MonthClose), {
            "month": month, "action": "reopen", "tz": entry.tz, "period_start": entry.start,
            "period_end": entry.end, "recorded_at": _now(conn), "recorded_by": by, "note": note,
            "checksum": entry.checksum, "reopens": entry.id})
        return history(conn, month)[-1]


def _stored_rows(conn: Connection, entry: Close) -> list[dict]:
    t = MonthCloseTotal.__table__
    rows = [dict(r._mapping) for r in conn.execute(select(t).where(t.c.close_id == entry.id))]
    if checksum(entry.month, entry.tz, entry.start, entry.end, rows) != entry.checksum:
        raise ChecksumError(f"the stored totals of {entry.month} do not match the checksum taken at its close "
                            f"(changed since {entry.recorded_at:%Y-%m-%d %H:%M} UTC)")
    return rows


def closed_totals(conn: Connection, entry: Close, by: Sequence[str]) -> Iterator[dict]:
    """The closed month's sums per group, from the stored totals only (checksum checked first): one
    dict per group with the groups (``day``/``month`` as local dates, dimensions ``None`` for unknown)
    and ``SPEND_MEASURES``, sorted like ``grouped_totals`` (unknown last). ``by=()``: one totals row."""
    for g in by:
        if g not in CLOSED_GROUPS:
            raise ValueError(f"{g!r} is not kept by a close: group by {', '.join(CLOSED_GROUPS)}")
    sums: dict[tuple, list] = {}
    for row in _stored_rows(conn, entry):
        key = tuple(row["day"] if g == "day" else row["day"].replace(day=1) if g == "month"
                    else row[_DIMENSION_OF[g]] or None for g in by)
        acc = sums.get(key)
        if acc is None:
            acc = sums[key] = [0] * len(SPEND_MEASURES)
        for i, m in enumerate(SPEND_MEASURES):
            acc[i] += row[m]
    if not by and not sums:
        sums[()] = [0] * len(SPEND_MEASURES)
    for key in sorted(sums, key=lambda k: tuple((v is None, v if v is not None else "") for v in k)):
        out = dict(zip(by, key))
        out.update((m, quantize_money(Decimal(v)) if m in _MONEY else v) for m, v in zip(SPEND_MEASURES, sums[key]))
        yield out


def late_filters(entry: Close) -> Filters:
    """The calls of a closed month that reached the ledger after its close."""
    return Filters(start=entry.start, end=entry.end, arrived_after=entry.recorded_at)


def late_totals(conn: Connection, entry: Close) -> dict:
    """The late calls' sums (``queries.MEASURES``: requests, cost_usd, ...)."""
    return next(grouped_totals(conn, late_filters(entry), ()))
