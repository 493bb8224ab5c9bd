"""Dates, timezones and reporting periods for the read layer.

People ask for spend per *their* day, week or month, so a period is a local calendar span in an
IANA timezone (``zoneinfo``, DST-correct), stored and queried as UTC instants:

- ``date_bounds`` turns inclusive local dates into a half-open ``[start, end)`` pair of aware UTC
  datetimes (a local day may be 23, 24 or 25 hours long).
- ``period_keys`` maps a UTC bucket start to its local ``day`` / ``week`` (ISO, starting Monday)
  / ``month`` (first day), as ``datetime.date``.
- ``bucket_minutes`` says how coarse a UTC time bucket may be so that every bucket falls inside
  a single local period: 60 when every UTC offset the zone uses in the range is a whole hour
  (then the hourly rollup is exact), 15 for :30 / :45 zones (Asia/Kolkata, Asia/Kathmandu), 0
  (per row) for the odd historical local-mean-time offsets. It assumes, as tzdata does for the
  zones in use today, that offsets change at most once in a day and at a whole quarter hour.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "PERIODS",
    "get_zone",
    "date_bounds",
    "floor_hour",
    "ceil_hour",
    "bucket_minutes",
    "period_keys",
    "period_start",
]

PERIODS = ("day", "week", "month")
UTC = timezone.utc
_ONE_DAY = timedelta(days=1)
_QUARTER = timedelta(minutes=15)


def get_zone(tz: str) -> ZoneInfo:
    """The ``ZoneInfo`` for an IANA name; ``ValueError`` with a readable message when unknown."""
    if not isinstance(tz, str) or not tz.strip():
        raise ValueError("timezone must be an IANA name such as UTC or Europe/Berlin")
    try:
        return ZoneInfo(tz.strip())
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ValueError(f"unknown timezone {tz!r}: use an IANA name such as UTC or Europe/Berlin") from exc


def date_bounds(
    from_date: date | None, to_date: date | None, tz: str = "UTC"
) -> tuple[datetime | None, datetime | None]:
    """Inclusive local dates -> ``(start, end)``: aware UTC datetimes, ``end`` exclusive.

    ``None`` leaves that side open. A local midnight that DST skips maps to the instant the day
    really starts; a repeated one to its first occurrence. ``ValueError`` if ``to_date`` is before
    ``from_date`` or the zone is unknown."""
    zone = get_zone(tz)
    if from_date is not None and to_date is not None and to_date < from_date:
        raise ValueError(f"the end date {to_date.isoformat()} is before the start date {from_date.isoformat()}")
    start = _local_midnight(from_date, zone) if from_date is not None else None
    end = _local_midnight(to_date + _ONE_DAY, zone) if to_date is not None else None
    return start, end


def _local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def floor_hour(ts: datetime) -> datetime:
    ts = ts.astimezone(UTC)
    return ts.replace(minute=0, second=0, microsecond=0)


def ceil_hour(ts: datetime) -> datetime:
    floored = floor_hour(ts)
    return floored if floored == ts else floored + timedelta(hours=1)


def bucket_minutes(tz: str, lo: datetime | None, hi: datetime | None) -> int:
    """60, 15 or 0: the coarsest UTC bucket (minutes; 0 = none) that never straddles a local
    period boundary of ``tz`` between ``lo`` and ``hi`` (see the module docstring)."""
    if lo is None or hi is None:
        return 60
    return _bucket_minutes(tz, lo.astimezone(UTC).date() - _ONE_DAY, hi.astimezone(UTC).date() + _ONE_DAY)


@lru_cache(maxsize=256)
def _bucket_minutes(tz: str, first: date, last: date) -> int:
    zone = get_zone(tz)
    offsets: set[timedelta] = set()
    at = datetime.combine(first, time(0), tzinfo=UTC)
    stop = datetime.combine(last, time(0), tzinfo=UTC)
    previous = None
    while at <= stop:
        offset = at.astimezone(zone).utcoffset()
        if previous is not None and offset != previous:
            t = at - _ONE_DAY
            while t < at:  # the offset changed during the last day: look at it closely
                offsets.add(t.astimezone(zone).utcoffset())
                t += _QUARTER
        offsets.add(offset)
        previous = offset
        at += _ONE_DAY
    seconds = [int(o.total_seconds()) for o in offsets]
    if all(s % 3600 == 0 for s in seconds):
        return 60
    if all(s % 900 == 0 for s in seconds):
        return 15
    return 0


def period_start(day: date, period: str) -> date:
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    if period == "month":
        return day.replace(day=1)
    raise ValueError(f"unknown period {period!r}")


def period_keys(tz: str, periods: Sequence[str]) -> Callable[[datetime], tuple[date, ...]]:
    """A function: UTC instant -> the local start date of each requested period (memoised per
    instant; the read layer calls it once per time bucket, not per row)."""
    zone = get_zone(tz)
    wanted = tuple(periods)
    for p in wanted:
        if p not in PERIODS:
            raise ValueError(f"unknown period {p!r}")
    seen: dict[datetime, tuple[date, ...]] = {}

    def keys(instant: datetime) -> tuple[date, ...]:
        found = seen.get(instant)
        if found is None:
            day = instant.astimezone(zone).date()
            found = tuple(period_start(day, p) for p in wanted)
            seen[instant] = found
        return found

    return keys
