"""The Budgets section: each budget's spend against its line and its forecast for the period,
status colours, and the alerts fired with their delivery state.

Shown only when the ledger has budgets (``spendlog budget add``). The figures are
``spendlog budget check``'s (``db.budget_status``: spend through the shared read layer, the same
forecast); cached like every read of the page (``as_of`` the live tick). No SQL here.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pandas as pd
import streamlit as st

from spendlog.dashboard import charts, data
from spendlog.dashboard.formatting import format_count
from spendlog.db.budget_status import budgets_overview
from spendlog.db.budgets import scope_text
from spendlog.report.budgets import period_text
from spendlog.report.money import money_display

__all__ = ["section", "overview", "budgets_table", "budgets_chart_frame", "alerts_table"]

_STATUS = {"ok": "🟢 ok", "warning": "🟠 warning", "over": "🔴 over"}


@st.cache_data(ttl=data.TTL_SECONDS, max_entries=16, show_spinner=False)
def overview(url: str, *, as_of: int | None):
    """Every budget's status now and the latest alerts (``db.budget_status.budgets_overview``)."""
    return data.read(url, lambda conn: budgets_overview(conn, datetime.now(timezone.utc)))


def budgets_chart_frame(statuses) -> pd.DataFrame:
    return pd.DataFrame([{
        "budget": s.budget.name,
        "spent_pct": float(s.spent * 100 / s.amount),  # bar length only; the tooltip is exact
        "forecast_pct": float(s.forecast * 100 / s.amount),
        "status": s.status,
        "spent": money_display(s.spent, exact=True),
        "amount": money_display(s.amount, exact=True),
        "forecast": money_display(s.forecast, exact=True),
    } for s in statuses])


def budgets_table(statuses) -> pd.DataFrame:
    return pd.DataFrame([{
        "Budget": s.budget.name,
        "Status": _STATUS[s.status],
        "Spent": money_display(s.spent),
        "Line": money_display(s.amount),
        "Used": f"{s.percent}%",
        "Forecast": money_display(s.forecast),
        "Period": period_text(s.budget),
        "Resets": s.period_end.isoformat(timespec="minutes"),
        "Scope": scope_text(s.budget.scope),
        "Kind": "hard" if s.budget.hard else "soft",
    } for s in statuses])


def alerts_table(alerts) -> pd.DataFrame:
    return pd.DataFrame([{
        "Fired": a.created_at.isoformat(timespec="seconds"),
        "Budget": a.budget,
        "Alert": a.alert_key.replace("threshold:", "") + ("%" if a.alert_key.startswith("threshold:") else ""),
        "Delivery": a.state,
        "Attempts": format_count(a.attempts),
        "Last error": a.last_error or "",
    } for a in alerts])


def section(url: str, tick: int | None, draw) -> None:
    """The section (nothing when the ledger has no budgets); ``draw``: the page's way to draw a chart."""
    statuses, alerts = overview(url, as_of=tick)
    if not statuses:
        return
    st.subheader("Budgets")
    over = sum(s.status == "over" for s in statuses)
    warning = sum(s.status == "warning" for s in statuses)
    st.caption(f"{len(statuses)} budgets: {over} over the line, {warning} warning. Bars: spent this period as a "
               "percent of the line; black tick: the period-end forecast; dashed: the line.")
    draw(charts.budget_lines(budgets_chart_frame(statuses)))
    st.dataframe(budgets_table(statuses), hide_index=True, width="stretch")
    if alerts:
        st.caption("Alerts fired (newest first) and their delivery")
        st.dataframe(alerts_table(alerts), hide_index=True, width="stretch")
