"""Reconciliation: the router's activity against the ledger, per UTC day x model.

``reconcile(conn, activity, first, last)`` compares, for every UTC day from ``first`` to ``last``
(inclusive) and every model either side knows, the router's ``requests``, ``prompt_tokens``,
``completion_tokens`` and ``usage`` (``db.activity``) with the ledger's sums from the shared read
layer (``grouped_totals`` per UTC day by model, from the hourly rollup). Always UTC: the router
reports UTC days whatever the dashboard's zone.

The ledger side counts what the router bills: calls that got an answer. Error rows (the
``db.store.is_error`` rule: a transport failure, HTTP >= 400, a recorded error other than the
caller's own cancellation) are left out, as the router bills none of them; they are shown as a
likely cause instead. A call the caller cancelled counts (the router billed it). The ledger's cost
is its ``cost_usd`` sum, estimates included (what the dashboard shows).

Each ``Row`` has a status (``STATUSES``), in this order of precedence:
``missing_in_ledger`` (the router has the day x model, the ledger has no answered call),
``missing_in_router`` (the other way), ``count_differs`` (requests, prompt or completion tokens
differ: counts must agree exactly), ``cost_differs`` (|router - ledger| > ``tolerance`` USD),
``match``. A difference is router minus ledger. Rows that differ get likely causes
(``db.reconcile_causes``). Each ``Month`` line sums both sides' cost over the range's days in
that month, and the ``unexplained`` part of the difference: the cost differences of the month's
differing rows for which no likely cause was found.
"""

from __future__ import annotations

import decimal
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal

from sqlalchemy.engine import URL, Connection

from .activity import Activity, RouterFigures
from .queries import Filters, grouped_totals
from .reconcile_causes import explain
from .writer import dropped_count, spooled_count

__all__ = ["COMPARED", "STATUSES", "Figures", "Month", "Report", "Row", "day_bounds", "reconcile"]

_EXACT = decimal.Context(prec=120)  # router amounts may carry more digits than the default 28
STATUSES = ("match", "missing_in_ledger", "missing_in_router", "count_differs", "cost_differs")
COMPARED = ("requests", "prompt_tokens", "completion_tokens", "cost")
_COUNTS = COMPARED[:3]


@dataclass(frozen=True, slots=True)
class Figures:
    """One side's sums for a day x model."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: Decimal = Decimal(0)


_NONE = Figures()


@dataclass(slots=True)
class Row:
    """One UTC day x model: both sides (None where a side has nothing), the status, and likely
    causes when it differs. ``model`` is None for ledger calls of unknown model."""

    day: date
    model: str | None
    router: Figures | None
    ledger: Figures | None
    status: str = "match"
    causes: list[str] = field(default_factory=list)
    byok: Decimal = Decimal(0)  # the router's byok_usage_inference (billed by the provider, not in usage)
    permaslugs: frozenset[str] = frozenset()

    def difference(self, name: str):
        """Router minus ledger for one of ``COMPARED`` (a missing side counts as zero), exact."""
        a, b = getattr(self.router or _NONE, name), getattr(self.ledger or _NONE, name)
        return _EXACT.subtract(a, b) if name == "cost" else a - b

    @property
    def unexplained(self) -> Decimal:
        """The cost difference of a row that differs with no likely cause found, else 0."""
        if self.status == "match" or self.causes:
            return Decimal(0)
        return self.difference("cost")

    def direction(self) -> int:
        """+1 when the router has more (requests, else cost), -1 when the ledger has, else 0."""
        d = self.difference("requests") or self.difference("cost")
        return (d > 0) - (d < 0)


@dataclass(slots=True)
class Month:
    """A month's cost on both sides, over the range's days in it (``first``..``last``)."""

    month: date  # the first of the month
    first: date
    last: date
    router_cost: Decimal = Decimal(0)
    ledger_cost: Decimal = Decimal(0)
    unexplained: Decimal = Decimal(0)
    rows: int = 0
    differing: int = 0

    @property
    def difference(self) -> Decimal:
        return _EXACT.subtract(self.router_cost, self.ledger_cost)


@dataclass(slots=True)
class Report:
    first: date
    last: date
    tolerance: Decimal
    rows: list[Row]
    months: list[Month]
    spooled: int = 0  # records waiting in the spool (not in the database yet)
    dropped: int = 0  # records the writer could not keep anywhere

    @property
    def differing(self) -> list[Row]:
        return [r for r in self.rows if r.status != "match"]

    @property
    def ok(self) -> bool:
        """Everything matches within the tolerance."""
        return all(r.status == "match" for r in self.rows)


def day_bounds(first: date, last: date) -> tuple[datetime, datetime]:
    """[start, end) in UTC of the days ``first`` to ``last`` (inclusive)."""
    start = datetime.combine(first, time(), timezone.utc)
    return start, datetime.combine(last + timedelta(days=1), time(), timezone.utc)


def _ledger(conn: Connection, days: Iterable[date], status: str) -> dict[tuple, dict]:
    """The ledger's sums per (UTC day, model) for ``days``: one ``grouped_totals`` call per day,
    grouped by model, so the database adds up a whole day of the hourly rollup and only days x
    models rows reach Python (grouping by day and model in one call brings every hour's row to
    Python, ~6x slower for a year)."""
    out = {}
    for day in days:
        start, end = day_bounds(day, day)
        for r in grouped_totals(conn, Filters(start=start, end=end, status=status), ("model",)):
            out[(day, r["model"])] = r
    return out


def _days(first: date, last: date) -> Iterator[date]:
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)


def _router(f: RouterFigures) -> Figures:
    return Figures(f.requests, f.prompt_tokens, f.completion_tokens, f.usage)


def _status(row: Row, tolerance: Decimal) -> str:
    if row.router is None:
        return "missing_in_router"
    if row.ledger is None and row.router != _NONE:
        return "missing_in_ledger"
    if any(row.difference(n) for n in _COUNTS):
        return "count_differs"
    if row.difference("cost").copy_abs() > tolerance:  # copy_abs: exact (abs() rounds to the context)
        return "cost_differs"
    return "match"


def _months(first: date, last: date) -> Iterator[Month]:
    day = first
    while day <= last:
        start = day.replace(day=1)
        following = (start + timedelta(days=32)).replace(day=1)
        end = min(last, following - timedelta(days=1))
        yield Month(start, day, end)
        day = following


def reconcile(conn: Connection, activity: Activity, first: date, last: date, *,
              tolerance: Decimal = Decimal(0), url: URL | None = None) -> Report:
    """Compare ``activity`` with the ledger on ``conn`` for the UTC days ``first``..``last``.
    ``url``: the ledger's URL, to count records still in its spool (a likely cause)."""
    if first > last:
        raise ValueError(f"the first day {first} is after the last day {last}")
    if tolerance < 0:
        raise ValueError("the tolerance must be zero or more")
    ok = _ledger(conn, _days(first, last), "ok")
    keys = {k for k in activity.sums if first <= k[0] <= last} | set(ok)
    rows = []
    for day, model in sorted(keys, key=lambda k: (k[0], k[1] is None, k[1] or "")):
        r = activity.sums.get((day, model)) if model is not None else None
        ledger = ok.get((day, model))
        row = Row(day, model, _router(r) if r else None,
                  Figures(ledger["requests"], ledger["prompt_tokens"], ledger["completion_tokens"],
                          ledger["cost_usd"]) if ledger else None)
        if r is not None:
            row.byok, row.permaslugs = r.byok_usage_inference, frozenset(r.permaslugs)
        row.status = _status(row, tolerance)
        rows.append(row)
    report = Report(first, last, tolerance, rows, list(_months(first, last)))
    if url is not None:
        report.spooled, report.dropped = spooled_count(url), dropped_count(url)
    errors = _ledger(conn, sorted({r.day for r in report.differing}), "errors")  # a likely cause
    explain(conn, report, errors)
    by_month = {m.month: m for m in report.months}
    for row in rows:
        month = by_month[row.day.replace(day=1)]
        month.rows += 1
        month.router_cost = _EXACT.add(month.router_cost, (row.router or _NONE).cost)
        month.ledger_cost = _EXACT.add(month.ledger_cost, (row.ledger or _NONE).cost)
        if row.status != "match":
            month.differing += 1
            month.unexplained = _EXACT.add(month.unexplained, row.unexplained)
    return report
