"""The demo's month close (issue 17): the last whole UTC month the backfill covers is closed, then
two records for it arrive late (as a spool replayed after the close would bring them), so the
dashboard shows a closed month with late spend and `spendlog export --adjustments` has rows."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from itertools import islice

from spendlog.db import writer
from spendlog.db.closes import close_month
from spendlog.db.engine import make_engine

from .traffic import generate_records

__all__ = ["close_past_month"]

LATE_RECORDS = 2


def close_past_month(url: str, days: int, *, seed: int = 7, end: datetime | None = None) -> str | None:
    """Close the month before ``end``'s (UTC) when the ``days`` of backfill reach into it, then write
    ``LATE_RECORDS`` records of its last day after the close. Returns the month, or None."""
    end = (end or datetime.now(timezone.utc)).astimezone(timezone.utc)
    month_end = end.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if end - timedelta(days=days) >= month_end:
        return None  # the backfill does not reach the previous month
    month = (month_end - timedelta(days=1)).strftime("%Y-%m")
    engine = make_engine(url)
    try:
        close_month(engine, month, "UTC", by="spendlog demo", note="demo: closed after the backfill")
    finally:
        engine.dispose()
    # the month's last day again, with another seed: other calls (their own ids), arriving now
    w = writer.get_writer(url)
    for record in islice((r for r in generate_records(1, seed + 1, 400, end=month_end) if r.get("cost_usd")),
                         LATE_RECORDS):
        record["tags"] = {**(record.get("tags") or {}), "via": "late-spool"}
        w.submit(record)
    w.flush()
    return month
