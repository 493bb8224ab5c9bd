"""The demo's budgets: three lines set against the backfilled history, so the dashboard's Budgets
section has something to show (one of them close to its line, one a hard limit with room left)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import ROUND_UP, Decimal

from spendlog.db.budget_status import budget_status
from spendlog.db.budgets import BudgetSpec, add_budget, scope_filters
from spendlog.db.engine import make_engine
from spendlog.db.queries import total_spend

__all__ = ["add_demo_budgets"]


def _line(spent: Decimal, factor: str) -> Decimal:
    """``spent * factor``, rounded up to the micro-dollar (at least one)."""
    step = Decimal("0.000001")
    return max((spent * Decimal(factor)).quantize(step, rounding=ROUND_UP), step)


def add_demo_budgets(url: str) -> None:
    """``support-bot monthly`` at ~95% of its line (forecast over it), ``all monthly`` with room,
    ``code-review daily`` hard at twice its usual day (live demo calls never reach it); then one
    check fires their alerts."""
    from spendlog.alerts import check_budgets

    now = datetime.now(timezone.utc)
    engine = make_engine(url)
    try:
        plans = [("support-bot monthly", "month", {"apps": ["support-bot"]}, "1.05", False, True),
                 ("all monthly", "month", {}, "1.6", False, True),
                 ("code-review daily", "day", {"apps": ["code-review"]}, "2", True, False)]
        with engine.begin() as conn:
            for name, period, scope, factor, hard, forecast in plans:
                probe = BudgetSpec(name=name, amount_usd=Decimal(1), period=period, scope=scope)
                spent = budget_status(conn, probe, now).spent
                if hard or not spent:  # from the last week: the line does not depend on the hour or the day
                    week = total_spend(conn, scope_filters(scope, now - timedelta(days=7), now))
                    spent = max(spent, week / 7 if hard else week)
                add_budget(conn, BudgetSpec(name=name, amount_usd=_line(spent, factor), period=period, scope=scope,
                                            hard=hard, forecast=forecast), now)
        check_budgets(engine, now, deliver=False)
    finally:
        engine.dispose()
