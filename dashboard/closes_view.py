"""Closed months on the overview (issue 17): which months of the view are closed, their totals as
closed, and the spend that arrived after the close (late rows: ``db.closes``). The totals are the
whole ledger's (a close keeps them per model, app, user and key, but not per filter of the view)."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import streamlit as st
from sqlalchemy import inspect

from spendlog.dashboard import data
from spendlog.db.closes import closed_months, closed_totals, late_totals
from spendlog.db.queries import Filters
from spendlog.report.money import money_display

__all__ = ["closes_in", "section"]


def _closes(conn, start: datetime | None, end: datetime | None) -> list[dict]:
    if not inspect(conn).has_table("month_closes"):  # a ledger from before revision 0006
        return []
    out = []
    for month, entry in closed_months(conn).items():
        if (end is not None and entry.start >= end) or (start is not None and entry.end <= start):
            continue
        closed, late = next(closed_totals(conn, entry, ())), late_totals(conn, entry)
        out.append({"month": month, "tz": entry.tz, "at": entry.recorded_at, "by": entry.recorded_by,
                    "note": entry.note, "requests": closed["requests"], "cost": closed["cost_usd"],
                    "late_requests": late["requests"], "late_cost": late["cost_usd"]})
    return out


@st.cache_data(ttl=data.TTL_SECONDS, max_entries=64, show_spinner=False)
def closes_in(url: str, filters: Filters, *, as_of: int | None) -> list[dict]:
    """The closed months overlapping the filters' range, with closed and late totals (cached)."""
    return data.read(url, _closes, filters.start, filters.end)


def section(url: str, current: Filters, tick: int | None) -> None:
    """A table of the view's closed months; nothing when none is closed."""
    rows = closes_in(url, current, as_of=tick)
    if not rows:
        return
    st.subheader("Closed months")
    frame = pd.DataFrame([{
        "Month": f"🔒 {r['month']}", "Zone": r["tz"], "Closed (UTC)": r["at"].strftime("%Y-%m-%d %H:%M"),
        "By": r["by"], "Calls as closed": f"{r['requests']:,}", "Spend as closed": money_display(r["cost"]),
        "Late calls": f"{r['late_requests']:,}", "Late spend": money_display(r["late_cost"]),
        "Note": r["note"] or ""} for r in rows])
    st.dataframe(frame, hide_index=True, width="stretch", key="closed_months")
    late = [r for r in rows if r["late_requests"]]
    if late:
        st.caption("Arrived after the close (an adjustment for the next report: `spendlog export --adjustments "
                   "MONTH`): " + " · ".join(f"{r['month']}: {r['late_requests']:,} calls, "
                                           f"{money_display(r['late_cost'])}" for r in late).replace("$", "\\$"))
    else:
        st.caption("Nothing arrived after these closes: the figures above are as reported.")
