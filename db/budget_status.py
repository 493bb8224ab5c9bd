"""Where a budget stands: spend so far in its period, the forecast, the status.

Spend is billed plus estimated cost (``cost_usd``), read through the shared read layer
(``db.queries.total_spend``), so a budget, the dashboard and the export never disagree.

**The forecast** (the period-end spend, projected from the recent daily run rate, in the
budget's own window and zone). With the period ``[S, E)``, the check's instant ``t`` and the
spend so far ``X`` (calls in ``[S, t)``):

    W = min(7 days, t - S)                      the trailing window, never before the period's start
    R = spend of the calls in [t - W, t)        the window's spend
    forecast = X + R * (E - t) / W              (= X when W = 0, at the period's first instant)

Durations are exact microseconds (real elapsed time: a DST day counts 23 or 25 hours), the
arithmetic is ``Decimal`` (60 digits), and the result is rounded half-even to the money scale
(12 places). A day budget's window is the day so far; a month's, its last 7 days.

**Status**: ``over`` when spend has reached the line (``budget check`` exits 1), ``warning``
when a threshold is crossed or the forecast passes the line, else ``ok``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Decimal, localcontext

from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from .budget_alerts import AlertRow, list_alerts
from .budgets import BudgetSpec, list_budgets, scope_filters
from .models import Budget
from .periods import budget_period
from .queries import total_spend
from .types import quantize_money

__all__ = ["BudgetStatus", "budget_status", "forecast_spend", "budgets_overview", "TRAILING_WINDOW", "STATUSES"]

TRAILING_WINDOW = timedelta(days=7)
STATUSES = ("ok", "warning", "over")
_US = timedelta(microseconds=1)


@dataclass(frozen=True)
class BudgetStatus:
    """One budget at one instant (``now``)."""

    budget: BudgetSpec
    now: datetime
    period_start: datetime
    period_end: datetime  # also when the budget resets
    spent: Decimal
    window_start: datetime
    window_spent: Decimal
    forecast: Decimal

    @property
    def amount(self) -> Decimal:
        return self.budget.amount_usd

    @property
    def percent(self) -> Decimal:
        """Spend as a percent of the line, cut (not rounded) to 2 places: 99.999% shows 99.99."""
        return (self.spent * 100 / self.amount).quantize(Decimal("0.01"), rounding=ROUND_DOWN)

    @property
    def forecast_percent(self) -> Decimal:
        return (self.forecast * 100 / self.amount).quantize(Decimal("0.01"), rounding=ROUND_DOWN)

    @property
    def crossed(self) -> tuple[int, ...]:
        """The thresholds the spend has reached (exact: spent * 100 >= amount * percent)."""
        return tuple(p for p in self.budget.thresholds if self.spent * 100 >= self.amount * p)

    @property
    def forecast_over(self) -> bool:
        return self.forecast > self.amount

    @property
    def exhausted(self) -> bool:
        return self.spent >= self.amount

    @property
    def status(self) -> str:
        if self.exhausted:
            return "over"
        if self.crossed or self.forecast_over:
            return "warning"
        return "ok"


def forecast_spend(spent: Decimal, window_spent: Decimal, window: timedelta, remaining: timedelta) -> Decimal:
    """``spent + window_spent * remaining / window`` (the module docstring's formula), exact."""
    window_us, remaining_us = window // _US, max(remaining // _US, 0)
    if window_us <= 0:
        return quantize_money(spent)
    with localcontext() as ctx:
        ctx.prec = 60
        return quantize_money(spent + window_spent * remaining_us / window_us)


def budget_status(conn: Connection, budget: BudgetSpec, now: datetime) -> BudgetStatus:
    """``budget`` at ``now`` (aware): its period, spend so far, trailing window and forecast."""
    start, end = budget_period(now, budget.period, budget.tz, budget.week_start)
    spent = total_spend(conn, scope_filters(budget.scope, start, now))
    window_start = max(start, now - TRAILING_WINDOW)
    if window_start == start:
        window_spent = spent
    else:
        window_spent = total_spend(conn, scope_filters(budget.scope, window_start, now))
    forecast = forecast_spend(spent, window_spent, now - window_start, end - now)
    return BudgetStatus(budget, now, start, end, spent, window_start, window_spent, forecast)


def budgets_overview(conn: Connection, now: datetime, *, alerts: int = 50) -> tuple[list[BudgetStatus], list[AlertRow]]:
    """Every budget's status at ``now`` and the latest ``alerts`` (the dashboard's Budgets section);
    nothing for a ledger without the budget tables. Webhooks are left out (the read-only role may
    not read them)."""
    if not inspect(conn).has_table(Budget.__tablename__):
        return [], []
    statuses = [budget_status(conn, b, now) for b in list_budgets(conn, webhooks=False)]
    return statuses, list_alerts(conn, limit=alerts)
