"""What changed: the same view over the previous period of the same length, per dimension value.

- ``previous_filters(filters, tz)``: the same filters over the range of the same length that ends
  where this one starts. When both ends are local midnights of ``tz`` the length is counted in
  local days (a DST day is 23 or 25 hours; the previous period is still whole local days, as the
  dashboard's date picker means it), else as a plain duration.
- ``compare(conn, filters, dim, tz)``: per value of ``dim`` (any ``grouped_totals`` group that is not
  a period: ``model``, ``app``, ``user``, ...), the spend now and in the previous period, the change
  and the change in percent (``None``, shown as "new", when there was no spend before).
- ``movers(conn, filters, dims, tz)``: across a *list* of dimensions, the values whose spend moved
  most up and most down. The dimensions are passed through to ``grouped_totals`` as they are, so a
  new kind of group (``tag:KEY``) joins without a change here.

Money is exact ``Decimal``: both periods are ``grouped_totals`` sums, the figures every reader shows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal

from sqlalchemy.engine import Connection

from .filters import Filters
from .groups import GROUPS
from .periods import PERIODS, get_zone, local_midnight
from .queries import grouped_totals

__all__ = ["Change", "Movers", "previous_filters", "period_days", "compare", "changes_by", "changes_from", "fold",
           "movers_from", "movers"]

_ZERO = Decimal(0)


@dataclass(frozen=True)
class Change:
    """One value of one dimension (``value`` None: unknown) in both periods."""

    dim: str
    value: str | None
    current: Decimal
    previous: Decimal

    @property
    def change(self) -> Decimal:
        return self.current - self.previous

    @property
    def is_new(self) -> bool:
        """Spend now and none before: its percent is not a number, it is "new"."""
        return self.previous == 0 and self.current != 0

    @property
    def percent(self) -> Decimal | None:
        """The change in percent of the previous spend; None when there was none before."""
        return None if self.previous == 0 else self.change * 100 / self.previous


@dataclass(frozen=True)
class Movers:
    """The biggest rises (largest first) and falls (largest fall first); ties by dimension, value."""

    up: tuple[Change, ...]
    down: tuple[Change, ...]


def _whole_local_days(filters: Filters, tz: str) -> tuple[date, date] | None:
    zone = get_zone(tz)
    start, end = filters.start, filters.end
    first, after = start.astimezone(zone).date(), end.astimezone(zone).date()
    if local_midnight(first, zone) == start and local_midnight(after, zone) == end:
        return first, after
    return None


def period_days(filters: Filters, tz: str) -> int | None:
    """The range's length in local days when it is whole local days of ``tz``, else None."""
    days = _whole_local_days(_closed(filters), tz)
    return None if days is None else (days[1] - days[0]).days


def previous_filters(filters: Filters, tz: str = "UTC") -> Filters:
    """``filters`` over the previous period of the same length (see the module docstring).
    ``ValueError`` for an open range (no length to repeat)."""
    filters = _closed(filters)
    days = _whole_local_days(filters, tz)
    if days is not None:
        zone = get_zone(tz)
        length = days[1] - days[0]
        return replace(filters, start=local_midnight(days[0] - length, zone), end=filters.start)
    return replace(filters, start=filters.start - (filters.end - filters.start), end=filters.start)


def _closed(filters: Filters) -> Filters:
    if filters.start is None or filters.end is None:
        raise ValueError("a comparison needs a range with a start and an end")
    return filters


def _spend_by(conn: Connection, filters: Filters, dims: Sequence[str], tz: str) -> dict[str, dict]:
    """{dim: {value: spend}} for each of ``dims``: the known groups (``db.groups.GROUPS``) in one read
    grouped by all of them, any other kind of group (``tag:KEY``) in a read of its own."""
    plain = [d for d in dims if d in GROUPS]
    reads = ([tuple(plain)] if plain else []) + [(d,) for d in dims if d not in GROUPS]
    out: dict[str, dict] = {d: {} for d in dims}
    for by in reads:
        for dim, spend in fold(grouped_totals(conn, filters, by, tz), by).items():
            out[dim] = spend
    return out


def fold(rows: Iterable[dict], dims: Sequence[str]) -> dict[str, dict]:
    """``grouped_totals`` rows (grouped by at least ``dims``) as {dim: {value: spend}}, exact."""
    out: dict[str, dict] = {d: {} for d in dims}
    for row in rows:
        if not row["requests"]:
            continue
        for d in dims:
            cell = out[d]
            cell[row[d]] = cell.get(row[d], _ZERO) + row["cost_usd"]
    return out


def changes_from(now_rows: Iterable[dict], then_rows: Iterable[dict], dims: Sequence[str]) -> dict[str, list[Change]]:
    """``changes_by``'s result from rows already read: both periods' ``grouped_totals`` rows, grouped
    by at least ``dims`` (the dashboard shares one read with the caching panel)."""
    now, then = fold(now_rows, dims), fold(list(then_rows), dims)
    return {dim: _changes(dim, now[dim], then[dim]) for dim in dims}


def _changes(dim: str, now: dict, then: dict) -> list[Change]:
    out = [Change(dim, v, now.get(v, _ZERO), then.get(v, _ZERO)) for v in {*now, *then}]
    out.sort(key=lambda c: (-c.current, -c.previous, c.value is None, c.value or ""))
    return out


def compare(conn: Connection, filters: Filters, dim: str, tz: str = "UTC",
            previous: Filters | None = None) -> list[Change]:
    """Per value of ``dim`` seen in either period: its spend now and before (``previous``: the
    previous period's filters, default ``previous_filters``). Biggest current spend first."""
    return changes_by(conn, filters, (dim,), tz, previous)[dim]


def changes_by(conn: Connection, filters: Filters, dims: Sequence[str], tz: str = "UTC",
               previous: Filters | None = None) -> dict[str, list[Change]]:
    """``compare`` for each dimension of ``dims``: ``{dim: [Change, ...]}``, in one read per period
    for the known groups (and one per period for each other kind)."""
    dims = tuple(dict.fromkeys(dims))
    for dim in dims:
        if dim in PERIODS:
            raise ValueError(f"{dim!r} is a period: compare by a dimension such as model, app or user")
    before = previous if previous is not None else previous_filters(filters, tz)
    now, then = _spend_by(conn, filters, dims, tz), _spend_by(conn, before, dims, tz)
    return {dim: _changes(dim, now[dim], then[dim]) for dim in dims}


def movers_from(changes: dict[str, list[Change]], limit: int = 5) -> Movers:
    """The ``limit`` biggest rises and falls among ``changes_by``'s results (no read)."""
    every = [c for rows in changes.values() for c in rows]

    def tie(c: Change) -> tuple:
        return (c.dim, c.value is None, c.value or "")

    up = sorted((c for c in every if c.change > 0), key=lambda c: (-c.change, tie(c)))
    down = sorted((c for c in every if c.change < 0), key=lambda c: (c.change, tie(c)))
    return Movers(tuple(up[:limit]), tuple(down[:limit]))


def movers(conn: Connection, filters: Filters, dims: Sequence[str], tz: str = "UTC", *, limit: int = 5,
           previous: Filters | None = None) -> Movers:
    """The ``limit`` values (of every dimension in ``dims``) whose spend rose most, and the ``limit``
    that fell most, against the previous period. Values that did not move are in neither list."""
    return movers_from(changes_by(conn, filters, dims, tz, previous), limit)
