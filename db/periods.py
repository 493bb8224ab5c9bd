"""Dates, timezones and reporting periods for the read layer.

People ask for spend per *their* day, week or month, so a period is a local calendar span in an
IANA timezone (``zoneinfo``, DST-correct), stored and queried as UTC instants:

- ``date_bounds`` turns inclusive local dates into a half-open ``[start, end)`` pair of aware UTC
  datetimes (a local day may be 23, 24 or 25 hours long).
- ``period_keys`` maps a UTC bucket start to its local ``day`` / ``week`` (ISO, starting Monday)
  / ``month`` (first day), as ``datetime.date``; ``period_start`` and ``next_period_start`` are the
  calendar arithmetic behind it (also for FOCUS's charge periods and the dashboard's month), and
  ``local_midnight`` the UTC instant a local date starts. Budgets (issue 16) also use ``quarter`` and
  ``year``, and weeks that start on another day (``week_start``: 0 = Monday ... 6 = Sunday);
  ``budget_period`` gives the ``[start, end)`` UTC instants of the period holding an instant.
- ``floor_hour``/``ceil_hour`` and ``floor_day``/``ceil_day`` round to whole UTC hours and days
  (the hourly and daily rollups' buckets).
- ``period_boundaries`` lists the UTC instants where local periods start in a range;
  ``split_hours`` the UTC hours such a boundary cuts (none in whole-hour zones, one per day in
  Asia/Kolkata); ``bucket_minutes`` the coarsest UTC bucket no boundary cuts (60, 15 or 0 =
  none), so that every time bucket lies inside one local period.
"""

from __future__ import annotations

import re

from collections.abc import Callable, Sequence
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "PERIODS",
    "get_zone",
    "date_bounds",
    "floor_hour",
    "ceil_hour",
    "floor_day",
    "ceil_day",
    "period_boundaries",
    "split_hours",
    "bucket_minutes",
    "period_keys",
    "period_start",
    "next_period_start",
    "local_midnight",
    "BUDGET_PERIODS",
    "WEEKDAYS",
    "parse_week_start",
    "budget_period",
]

PERIODS = ("day", "week", "month")
BUDGET_PERIODS = ("day", "week", "month", "quarter", "year")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
UTC = timezone.utc
_ONE_DAY = timedelta(days=1)


def get_zone(tz: str) -> ZoneInfo:
    """The ``ZoneInfo`` for an IANA name; ``ValueError`` with a readable message when unknown."""
    if not isinstance(tz, str) or not tz.strip():
        raise ValueError("timezone must be an IANA name such as UTC or Europe/Berlin")
    try:
        return ZoneInfo(tz.strip())
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ValueError(f"unknown timezone {tz!r}: use an IANA name such as UTC or Europe/Berlin") from exc


_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_day(value: str | None) -> date | None:
    """A ``YYYY-MM-DD`` day (None stays None); ``ValueError`` naming the value otherwise. The one
    date rule: the CLI's options (``--from``, ``--to``, ``--before``) and the dashboard read days with it."""
    if value is None:
        return None
    try:
        if not isinstance(value, str) or not _DAY.match(value):
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a date: use YYYY-MM-DD") from None


def date_bounds(
    from_date: date | None, to_date: date | None, tz: str = "UTC"
) -> tuple[datetime | None, datetime | None]:
    """Inclusive local dates -> ``(start, end)``: aware UTC datetimes, ``end`` exclusive.

    ``None`` leaves that side open (also for dates at the ends of the calendar, 0001-01-01 and
    9999-12-31, whose bounds ``datetime`` cannot hold). A local midnight that DST skips maps to the instant the day
    really starts; a repeated one to its first occurrence. ``ValueError`` if ``to_date`` is before
    ``from_date`` or the zone is unknown."""
    zone = get_zone(tz)
    if from_date is not None and to_date is not None and to_date < from_date:
        raise ValueError(f"the end date {to_date.isoformat()} is before the start date {from_date.isoformat()}")
    start = local_midnight(from_date, zone) if from_date is not None else None
    end = local_midnight(to_date + _ONE_DAY, zone) if to_date is not None and to_date < date.max else None
    return start, end


def local_midnight(day: date, zone: ZoneInfo) -> datetime | None:
    """The instant (aware UTC) the local ``day`` starts in ``zone``; ``None`` (no bound) beyond
    what ``datetime`` holds (year 1, 9999)."""
    try:
        return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
    except OverflowError:
        return None


def floor_hour(ts: datetime) -> datetime:
    """The start of the UTC hour holding ``ts``."""
    ts = ts.astimezone(UTC)
    return ts.replace(minute=0, second=0, microsecond=0)


def ceil_hour(ts: datetime) -> datetime:
    """``ts`` if it is on a whole UTC hour, else the start of the next one."""
    floored = floor_hour(ts)
    return floored if floored == ts else floored + timedelta(hours=1)


def floor_day(ts: datetime) -> datetime:
    """The UTC midnight starting the UTC day holding ``ts`` (the daily rollups' bucket)."""
    return ts.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def ceil_day(ts: datetime) -> datetime:
    """``ts`` if it is a UTC midnight, else the next one."""
    floored = floor_day(ts)
    return floored if floored == ts else floored + _ONE_DAY


def period_boundaries(tz: str, periods: Sequence[str], lo: datetime, hi: datetime) -> list[datetime]:
    """The UTC instants in ``(lo, hi)`` where a local ``day``/``week``/``month`` of ``tz`` starts
    (only the kinds in ``periods``), ascending."""
    zone = get_zone(tz)
    wanted = tuple(periods)
    day = lo.astimezone(zone).date()
    last = hi.astimezone(zone).date() + _ONE_DAY
    out = []
    while day <= last:
        if any(period_start(day, p) == day for p in wanted):
            instant = local_midnight(day, zone)
            if instant is not None and lo < instant < hi:
                out.append(instant)
        day += _ONE_DAY
    return out


def split_hours(boundaries: Sequence[datetime]) -> list[datetime]:
    """The UTC hours that a boundary cuts in two (zones with :30/:45 offsets): the hourly rollup
    cannot place them, so the read layer reads those hours from raw rows."""
    return sorted({floor_hour(b) for b in boundaries if b != floor_hour(b)})


def bucket_minutes(boundaries: Sequence[datetime]) -> int:
    """60, 15 or 0: the coarsest UTC bucket (minutes; 0 = none) that no boundary cuts."""
    if all(b.minute == 0 and b.second == 0 and b.microsecond == 0 for b in boundaries):
        return 60
    if all(b.minute % 15 == 0 and b.second == 0 and b.microsecond == 0 for b in boundaries):
        return 15
    return 0


def period_start(day: date, period: str, week_start: int = 0) -> date:
    """The first date of the ``day``/``week``/``month``/``quarter``/``year`` holding ``day``. Weeks
    start on ``week_start`` (0 = Monday, ISO; 6 = Sunday)."""
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=(day.weekday() - week_start) % 7)
    if period == "month":
        return day.replace(day=1)
    if period == "quarter":
        return day.replace(month=(day.month - 1) // 3 * 3 + 1, day=1)
    if period == "year":
        return day.replace(month=1, day=1)
    raise ValueError(f"unknown period {period!r}")


def next_period_start(day: date, period: str, week_start: int = 0) -> date:
    """The first date of the period after the one holding ``day`` (see ``period_start``)."""
    start = period_start(day, period, week_start)
    if period == "day":
        return start + _ONE_DAY
    if period == "week":
        return start + timedelta(days=7)
    if period == "year":
        return start.replace(year=start.year + 1)
    months = 3 if period == "quarter" else 1
    month = start.month - 1 + months
    return start.replace(year=start.year + month // 12, month=month % 12 + 1)


def parse_week_start(value: str | int) -> int:
    """``monday`` ... ``sunday`` (or ``mon``..``sun``, or 0-6) -> 0 (Monday) ... 6 (Sunday)."""
    if isinstance(value, int) and 0 <= value <= 6:
        return value
    text = str(value).strip().lower()
    for i, name in enumerate(WEEKDAYS):
        if text in (name, name[:3]):
            return i
    raise ValueError(f"{value!r} is not a weekday: use monday ... sunday")


def budget_period(instant: datetime, period: str, tz: str, week_start: int = 0) -> tuple[datetime, datetime]:
    """The ``[start, end)`` UTC instants of the local ``period`` of ``tz`` holding ``instant``:
    from a local midnight to a local midnight (DST-safe: a day may be 23 or 25 hours)."""
    if period not in BUDGET_PERIODS:
        raise ValueError(f"unknown period {period!r}: choose from {', '.join(BUDGET_PERIODS)}")
    zone = get_zone(tz)
    day = instant.astimezone(zone).date()
    start = local_midnight(period_start(day, period, week_start), zone)
    end = local_midnight(next_period_start(day, period, week_start), zone)
    return start, end


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
