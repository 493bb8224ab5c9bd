"""Budgets as text and JSON: what ``budget list/show/check`` print, what the webhook body says and
what the dashboard's Budgets section shows. Money through ``spendlog.report.money`` only;
webhook URLs only masked (``db.budgets.mask_webhook`` did that before they got here)."""

from __future__ import annotations

from spendlog.db.budget_status import BudgetStatus
from spendlog.db.budgets import BudgetSpec, scope_text
from spendlog.db.periods import WEEKDAYS

from .money import money_display, money_exact

__all__ = ["budget_dict", "status_dict", "status_line", "alert_text", "period_text"]


def period_text(budget: BudgetSpec) -> str:
    """``month (America/New_York)``; ``week from sunday (UTC)``."""
    week = f" from {WEEKDAYS[budget.week_start]}" if budget.period == "week" and budget.week_start else ""
    return f"{budget.period}{week} ({budget.tz})"


def budget_dict(budget: BudgetSpec) -> dict:
    """A budget as JSON (``budget list --json``): exact amount as text, webhooks masked."""
    return {
        "name": budget.name,
        "amount_usd": money_exact(budget.amount_usd),
        "period": budget.period,
        "tz": budget.tz,
        "week_start": WEEKDAYS[budget.week_start],
        "scope": budget.scope,
        "scope_text": scope_text(budget.scope),
        "alert_at": list(budget.thresholds),
        "forecast": budget.forecast,
        "hard": budget.hard,
        "webhooks": list(budget.webhooks),
    }


def status_dict(status: BudgetStatus) -> dict:
    """One budget's standing as JSON (``budget check --json``): money exact, instants ISO UTC."""
    return {
        "budget": status.budget.name,
        "status": status.status,
        "hard": status.budget.hard,
        "scope": status.budget.scope,
        "period": status.budget.period,
        "tz": status.budget.tz,
        "period_start": status.period_start.isoformat(),
        "period_end": status.period_end.isoformat(),
        "amount_usd": money_exact(status.amount),
        "spent_usd": money_exact(status.spent),
        "percent": str(status.percent),
        "forecast_usd": money_exact(status.forecast),
        "forecast_percent": str(status.forecast_percent),
        "thresholds_crossed": list(status.crossed),
    }


def status_line(status: BudgetStatus) -> str:
    """``team-a  month  $80.00 of $100.00 (80.00%)  forecast $120.00  WARNING``."""
    return (f"{status.budget.name}: {money_display(status.spent)} of {money_display(status.amount)} "
            f"({status.percent}%) this {status.budget.period}, forecast {money_display(status.forecast)}, "
            f"resets {status.period_end.isoformat()} - {status.status.upper()}"
            + (" (hard)" if status.budget.hard else ""))


def alert_text(status: BudgetStatus, event: str, threshold: int | None) -> str:
    """The one-line ``text`` Slack and Teams show."""
    name, period = status.budget.name, period_text(status.budget)
    spent, amount = money_display(status.spent), money_display(status.amount)
    if event == "forecast_exceeded":
        return (f"spendlog: budget {name!r} is forecast to reach {money_display(status.forecast)} of {amount} "
                f"this {period} ({spent} spent so far)")
    return (f"spendlog: budget {name!r} reached {threshold}% of {amount} this {period}: {spent} spent "
            f"({status.percent}%), forecast {money_display(status.forecast)}")
