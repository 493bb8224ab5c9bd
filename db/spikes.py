"""Spend spikes: days whose spend stands well above their trailing norm, and what drove each one.

The rule (also in the README, "Spend spikes"):

- A day is a local calendar day in the chosen timezone (``db.periods``); its spend is the exact
  ``Decimal`` sum of ``cost_usd`` of the matching calls (``db.queries.grouped_totals``).
- Only days with at least one matching call are observed. A day without calls is neither judged
  nor part of a norm: a gap (a weekend without traffic, a proxy that was down) does not pull the
  norm to zero, and the first day after it is judged against the days before the gap.
- A day's norm is the **median** spend of the ``WINDOW`` (14) most recent earlier observed days
  within ``LOOKBACK_DAYS`` (56) calendar days before it; its spread is the **median absolute
  deviation** (MAD) of those days' spend from that median.
- With fewer than ``MIN_DAYS`` (7) such days the day is not judged (too little history: never a
  spike; the first week of a ledger has none).
- A day is a spike when its spend > median + ``MADS`` (3) x scale, where scale = max(MAD,
  ``FLOOR_SHARE`` (20%) of the median, ``FLOOR_USD`` ($0.01)). The floor stands in when the MAD is
  0 (a flat ledger: every day the same) or small: a day must then be more than 60% and more than 3
  cents above its usual, never a hair (with a 10% floor the demo's ordinary Mondays, +31%, were
  "spikes"). Where the MAD is at least 20% of the median the rule is exactly "more than 3 MADs
  above the trailing 14-day median".
- What drove it: for each value of the driver dimensions (default the (app, model) pair; any list
  of ``grouped_totals`` groups), its spend on the day minus its own usual, the mean of its spend
  over the same norm days (0 on a norm day it had no calls; rounded to 12 places). A mean, not a
  median, because it is read as one sum per value: a median per value needs the spend per day per
  value, ten times the read on a big ledger. The biggest rises (``MAX_DRIVERS``)
  explain the day in one line, e.g. ``2026-11-12: $48.10 against a usual $9.30; +$36.00 from app=etl on
  openai/gpt-4o``.

Everything is exact ``Decimal`` (a median of an even count is the mean of the middle two, exact).
The line's text is made in the read room (``spendlog.report.changes.spike_line``, money by
``spendlog.report.money``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from decimal import Decimal

from sqlalchemy.engine import Connection

from .filters import Filters
from .periods import PERIODS, get_zone, local_midnight
from .queries import grouped_totals
from .types import quantize_money

__all__ = ["WINDOW", "MADS", "MIN_DAYS", "LOOKBACK_DAYS", "FLOOR_SHARE", "FLOOR_USD", "MAX_DRIVERS",
           "Driver", "Spike", "Judged", "median", "judge_days", "drivers_of", "spend_spikes"]

WINDOW = 14
MADS = 3
MIN_DAYS = 7
LOOKBACK_DAYS = 56
FLOOR_SHARE = Decimal("0.2")
FLOOR_USD = Decimal("0.01")
MAX_DRIVERS = 2
DRIVERS = ("app", "model")
_ZERO = Decimal(0)


def median(values: Sequence[Decimal]) -> Decimal:
    """The exact median (the mean of the middle two for an even count); ``ValueError`` when empty."""
    if not values:
        raise ValueError("median of no values")
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


@dataclass(frozen=True)
class Driver:
    """One value of the driver dimensions: ``values`` = ((dimension, value or None), ...)."""

    values: tuple[tuple[str, str | None], ...]
    spend: Decimal
    usual: Decimal

    @property
    def rise(self) -> Decimal:
        return self.spend - self.usual

    def describe(self, show: Callable[[str | None], str] | None = None) -> str:
        """``app=etl on openai/gpt-4o`` (``show`` turns a ledger value into text; default: as stored,
        ``(none)`` for unknown)."""
        show = show or _plain
        named = dict(self.values)
        others = [f"{d}={show(v)}" for d, v in self.values if d != "model"]
        if "model" not in named:
            return ", ".join(others)
        if not others:
            return f"model={show(named['model'])}"
        return f"{', '.join(others)} on {show(named['model'])}"


@dataclass(frozen=True)
class Spike:
    """A spike day: its spend, its usual (the norm's median), the MAD, the threshold it passed and
    the drivers whose spend rose most against their own usual (biggest first, rises > 0 only).
    Its one line of text: ``spendlog.report.changes.spike_line``."""

    day: date
    spend: Decimal
    usual: Decimal
    mad: Decimal
    threshold: Decimal
    drivers: tuple[Driver, ...]


def _plain(value: str | None) -> str:
    return value if value else "(none)"


@dataclass(frozen=True)
class Judged:
    """A day found to be a spike, before its drivers are read: ``norm_days`` are the days its
    usual came from."""

    day: date
    spend: Decimal
    usual: Decimal
    mad: Decimal
    threshold: Decimal
    norm_days: tuple[date, ...]


def judge_days(totals: Mapping[date, Decimal], first: date | None = None) -> list[Judged]:
    """The spike days among observed days (``totals``: day -> spend; a day present is a day with
    calls), judged from ``first`` on (None: every day). Pure: the module's rule."""
    days = sorted(totals)
    out = []
    for i, day in enumerate(days):
        if first is not None and day < first:
            continue
        earliest = day - timedelta(days=LOOKBACK_DAYS)
        norm_days = [d for d in days[max(0, i - WINDOW):i] if d >= earliest]
        if len(norm_days) < MIN_DAYS:
            continue
        usual = median([totals[d] for d in norm_days])
        mad = median([abs(totals[d] - usual) for d in norm_days])
        threshold = usual + MADS * max(mad, FLOOR_SHARE * usual, FLOOR_USD)
        if totals[day] > threshold:
            out.append(Judged(day, totals[day], usual, mad, threshold, tuple(norm_days)))
    return out


def drivers_of(day_spend: Mapping[tuple, Decimal], norm_spend: Mapping[tuple, Decimal], norm_days: int,
               dims: Sequence[str]) -> tuple[Driver, ...]:
    """The ``MAX_DRIVERS`` values that rose most: ``day_spend`` (the spike day's spend per value)
    against each value's usual, its mean over the norm days (``norm_spend``: its spend summed over
    them; ``norm_days`` of them), rounded to the ledger's 12 places. Rises > 0 only."""
    found = []
    for key, spend in day_spend.items():
        usual = quantize_money(norm_spend.get(key, _ZERO) / norm_days)
        driver = Driver(tuple(zip(dims, key)), spend, usual)
        if driver.rise > 0:
            found.append(driver)
    found.sort(key=lambda d: (-d.rise, tuple((v is None, v or "") for _, v in d.values)))
    return tuple(found[:MAX_DRIVERS])


def spend_spikes(conn: Connection, filters: Filters, tz: str = "UTC", *, drivers: Sequence[str] = DRIVERS,
                 known: Mapping[date, Decimal] | None = None) -> list[Spike]:
    """The spike days in ``filters``' range (local days of ``tz``), oldest first, each with its
    drivers (values of ``drivers``, a list of ``grouped_totals`` groups).

    Reads: the day totals of the range and the ``WINDOW`` days before it (and of up to
    ``LOOKBACK_DAYS`` before it when those have days without calls), then, per spike day only,
    its spend per driver value and the sums over its norm days (no per-day grouping by driver,
    which costs about ten times the day totals on a big ledger). ``known``: the range's day totals
    when the caller has them (``grouped_totals`` by day with the same filters and timezone: the
    dashboard's page reads them anyway); then only the days before the range are read."""
    dims = tuple(drivers)
    if not dims or any(g in PERIODS for g in dims):
        raise ValueError("drivers must be one or more dimensions, not a period")
    zone = get_zone(tz)
    first = None
    if filters.start is None:
        totals = _day_totals(conn, filters, tz)
    else:
        first = filters.start.astimezone(zone).date()
        near = local_midnight(first - timedelta(days=WINDOW), zone)
        if known is None:
            totals = _day_totals(conn, replace(filters, start=near), tz)
        else:
            totals = _day_totals(conn, replace(filters, start=near, end=filters.start), tz)
            totals.update((d, v) for d, v in known.items() if d >= first)
        if sum(1 for d in totals if d < first) < WINDOW:  # gaps before the range: look further back
            far = replace(filters, start=local_midnight(first - timedelta(days=LOOKBACK_DAYS), zone), end=near)
            totals.update(_day_totals(conn, far, tz))
    out = []
    for j in judge_days(totals, first):
        day_start, day_end = local_midnight(j.day, zone), local_midnight(j.day + timedelta(days=1), zone)
        if filters.end is not None and (day_end is None or filters.end < day_end):
            day_end = filters.end  # the day's total stops where the range does
        norm = replace(filters, start=local_midnight(j.norm_days[0], zone), end=day_start)
        on_day = _spend_by(conn, replace(filters, start=day_start, end=day_end), dims, tz)
        found = drivers_of(on_day, _spend_by(conn, norm, dims, tz), len(j.norm_days), dims)
        out.append(Spike(j.day, j.spend, j.usual, j.mad, j.threshold, found))
    return out


def _day_totals(conn: Connection, filters: Filters, tz: str) -> dict[date, Decimal]:
    return {row["day"]: row["cost_usd"] for row in grouped_totals(conn, filters, ("day",), tz) if row["requests"]}


def _spend_by(conn: Connection, filters: Filters, dims: tuple[str, ...], tz: str) -> dict[tuple, Decimal]:
    return {tuple(row[d] for d in dims): row["cost_usd"] for row in grouped_totals(conn, filters, dims, tz)
            if row["requests"]}
