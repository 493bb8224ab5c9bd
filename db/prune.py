"""Retention: delete raw calls older than a date, keep the hourly rollups.

``prune_before(engine, cutoff)`` deletes ``completions`` rows created before ``cutoff`` (an
aware datetime; the CLI passes a UTC midnight) in batches of ``batch`` rows, each batch its own
short transaction, so apps keep writing meanwhile (a writer waits at most one batch for the lock).
``rollup_hourly`` and ``rollup_tags`` (and their daily tables, ``db.daily``) are not touched: every grouped total the dashboard and the
grouped exports read from them (whole hours, tag groups included) stays exactly what it was. What is gone is the per-call detail: the request
log, per-call exports, latency percentiles, "most expensive calls" over pruned hours.

``pruned_until(conn)`` says where the pruned history ends (rollup hours older than the oldest raw
call exist only because their calls were pruned), and ``range_pruned(conn, start, end)`` whether
a per-call read of ``[start, end)`` would miss pruned calls, so a per-call export can say so
instead of returning a silently short file.

``spendlog db rebuild-rollups`` on a pruned ledger (``db.rebuild.rebuild_rollups``) recomputes the
hours from the oldest call's on and keeps the pruned hours' rows as they are; the daily tables are
then summed again from the hourly ones, so a pruned day keeps its figures. ``pruned_until`` and
``range_pruned`` read the hourly rollup only (hours, not days, say where the calls begin).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from sqlalchemy import delete, func, select
from sqlalchemy.engine import Connection, Engine

from .models import Completion, RollupHourly
from .periods import floor_hour

__all__ = ["BATCH", "count_before", "oldest", "prune_before", "pruned_until", "range_pruned"]

BATCH = 5_000


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("the cutoff must be an aware datetime (UTC)")
    return moment.astimezone(timezone.utc)


def count_before(conn: Connection, cutoff: datetime) -> int:
    """Raw calls created before ``cutoff``."""
    return conn.scalar(select(func.count()).select_from(Completion).where(Completion.created_at < _aware(cutoff)))


def oldest(conn: Connection) -> tuple[datetime | None, datetime | None]:
    """The oldest raw call's time and the oldest rollup hour (None when there is none)."""
    return (conn.scalar(select(func.min(Completion.created_at))), conn.scalar(select(func.min(RollupHourly.bucket))))


def prune_before(engine: Engine, cutoff: datetime, *, batch: int = BATCH,
                 progress: Callable[[int], None] | None = None) -> int:
    """Delete raw calls created before ``cutoff``, ``batch`` at a time; returns how many."""
    cutoff = _aware(cutoff)
    if batch < 1:
        raise ValueError("batch must be at least 1")
    done = 0
    while True:
        with engine.begin() as conn:
            ids = select(Completion.id).where(Completion.created_at < cutoff).limit(batch).scalar_subquery()
            n = conn.execute(delete(Completion).where(Completion.id.in_(ids))).rowcount
        done += n
        if progress is not None and n:
            progress(n)
        if n < batch:
            return done


def pruned_until(conn: Connection) -> datetime | None:
    """The hour before which raw calls were pruned, or None when nothing was: rollup hours only
    come from stored calls, so rollup hours before the oldest call's hour are pruned ones."""
    first_call, first_hour = oldest(conn)
    if first_hour is None:
        return None
    if first_call is None:  # every call pruned: the whole rollup is history
        last = conn.scalar(select(func.max(RollupHourly.bucket)))
        return floor_hour(last) + timedelta(hours=1)
    boundary = floor_hour(first_call)
    return boundary if first_hour < boundary else None


def range_pruned(conn: Connection, start: datetime | None, end: datetime | None) -> bool:
    """Would a per-call read of ``[start, end)`` (None: open) miss pruned calls? True when rollup
    hours of pruned calls fall in the range."""
    until = pruned_until(conn)
    if until is None or (start is not None and _aware(start) >= until):
        return False
    hi = until if end is None else min(until, _aware(end))
    query = select(RollupHourly.bucket).where(RollupHourly.bucket < hi)
    if start is not None:
        query = query.where(RollupHourly.bucket >= floor_hour(_aware(start)))
    return conn.scalar(query.limit(1)) is not None
