"""The Reconciliation page: the router's activity against the ledger per UTC day x model (issue 17).

The activity is an uploaded file (JSON or CSV, what ``spendlog reconcile FILE`` reads:
``db.activity.read_activity``) or, only when ``$SOLROUTER_MANAGEMENT_KEY`` is set, the router's own
``GET /activity`` (``db.activity_upstream``; the key is read from the environment, never shown or
put in a cache key). The comparison is ``db.reconcile.reconcile``, the CSV download
``spendlog.report.reconcile.report_csv`` (cells neutralised by ``report/table.py``), money as text
``report.money``. The page builds no SQL.
"""

from __future__ import annotations

import io
import os
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation

import altair as alt
import pandas as pd
import streamlit as st

from spendlog.dashboard import data
from spendlog.db.activity import ActivityError, read_activity
from spendlog.db.activity_upstream import KEY_ENV, UpstreamError, activity_url, default_range, fetch_activity, management_key
from spendlog.db.engine import resolve_url
from spendlog.db.errors import DatabaseUnavailableError, DatabaseURLError
from spendlog.db.reconcile import Report, reconcile
from spendlog.report.money import money_display, money_exact
from spendlog.report.reconcile import report_csv, status_counts

__all__ = ["page", "difference_frame", "difference_chart"]

UPLOAD, UPSTREAM = "Upload an activity file", "Ask the router (GET /activity)"
MAX_DAYS = 366


def page() -> None:
    """The whole page (a ``st.Page`` of the dashboard's navigation)."""
    st.title("Reconciliation")
    st.caption("The router's figures against the ledger per UTC day x model (whatever the dashboard's zone): "
               "requests, tokens and exact cost. The same comparison as `spendlog reconcile`.")
    url = data.db_url()
    sources = [UPLOAD, UPSTREAM] if os.environ.get(KEY_ENV) else [UPLOAD]
    source = st.radio("Activity", sources, horizontal=True, key="rec_source")
    tolerance = _tolerance(st.text_input("Tolerance (USD per day x model)", value="0", key="rec_tolerance"))
    if tolerance is None:
        return
    try:
        report = _from_file(url, tolerance) if source == UPLOAD else _from_router(url, tolerance)
    except (DatabaseUnavailableError, DatabaseURLError) as exc:
        st.error(f"**The database cannot be read.** {exc}")
        return
    if report is not None:
        show(report)


def _tolerance(text: str) -> Decimal | None:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        value = None
    if value is None or not value.is_finite() or value < 0:
        st.error("The tolerance is an amount in USD, such as 0.01.")
        return None
    return value


@st.cache_data(ttl=data.TTL_SECONDS, max_entries=8, show_spinner=False)
def _file_report(url: str, name: str, content: bytes, tolerance: Decimal) -> Report | str:
    """The report for an uploaded file, or the file's one-line mistake."""
    try:
        activity = read_activity(io.BytesIO(content), name=name)
    except ActivityError as exc:
        return str(exc)
    if activity.span is None:
        return f"{name} has no activity rows."
    first, last = activity.span
    return data.read(url, lambda conn: reconcile(conn, activity, first, last, tolerance=tolerance, url=resolve_url(url)))


def _from_file(url: str, tolerance: Decimal) -> Report | None:
    upload = st.file_uploader("The router's activity (JSON or CSV, OpenRouter's columns)", type=["json", "csv"],
                              key="rec_file")
    if upload is None:
        st.info("Upload the router's activity export to compare it with the ledger.")
        return None
    result = _file_report(url, upload.name, upload.getvalue(), tolerance)
    if isinstance(result, str):
        st.error(result)
        return None
    return result


@st.cache_data(ttl=60, max_entries=8, show_spinner="Reading the router's activity...")
def _router_report(url: str, first: date, last: date, tolerance: Decimal) -> Report | str:
    """The report for the router's own activity over ``first``..``last``; the key comes from the
    environment inside, so it is never an argument (nor a cache key)."""
    try:
        activity = fetch_activity(activity_url(None), management_key(), first, last)
    except (UpstreamError, ActivityError) as exc:
        return str(exc)
    return data.read(url, lambda conn: reconcile(conn, activity, first, last, tolerance=tolerance, url=resolve_url(url)))


def _from_router(url: str, tolerance: Decimal) -> Report | None:
    _, end = default_range()  # the last completed UTC day; today (so far) may be picked too
    picked = st.date_input("UTC days", value=(end - timedelta(days=6), end), max_value=end + timedelta(days=1),
                           key="rec_days")
    if not isinstance(picked, (tuple, list)) or len(picked) != 2:
        st.info("Pick the first and the last day.")
        return None
    first, last = picked
    if (last - first).days + 1 > MAX_DAYS:
        st.error(f"At most {MAX_DAYS} days at a time.")
        return None
    if not st.toggle("Read from the router", key="rec_fetch"):
        st.caption(f"One request per day to the router's GET /activity, with the management key from ${KEY_ENV}.")
        return None
    result = _router_report(url, first, last, tolerance)
    if isinstance(result, str):
        st.error(result)
        return None
    return result


def difference_frame(report: Report) -> pd.DataFrame:
    """One row per day x model of the report: the statuses and the cost difference (router - ledger)."""
    rows = [{"Day": r.day.isoformat(), "Model": r.model, "Status": r.status,
             "Requests (router)": None if r.router is None else r.router.requests,
             "Requests (ledger)": None if r.ledger is None else r.ledger.requests,
             "Router": money_display(None if r.router is None else r.router.cost),
             "Ledger": money_display(None if r.ledger is None else r.ledger.cost),
             "Difference": money_display(r.difference("cost")),
             "difference_usd": float(r.difference("cost")),  # the chart's scale only; the table shows text
             "Likely causes": "; ".join(r.causes)} for r in report.rows]
    return pd.DataFrame(rows, columns=["Day", "Model", "Status", "Requests (router)", "Requests (ledger)", "Router",
                                       "Ledger", "Difference", "difference_usd", "Likely causes"])


def difference_chart(frame: pd.DataFrame) -> alt.Chart:
    """The cost difference (router - ledger) per UTC day, one bar segment per model."""
    return alt.Chart(frame).mark_bar().encode(
        x=alt.X("Day:T", title="UTC day", timeUnit="utcyearmonthdate"),
        y=alt.Y("difference_usd:Q", title="Router - ledger (USD)"),
        color=alt.Color("Model:N", legend=alt.Legend(orient="bottom", columns=2, labelLimit=240)),
        tooltip=["Day", "Model", "Status", "Router", "Ledger", "Difference"],
    ).properties(height=280)


def show(report: Report) -> None:
    """The verdict, the chart, the table and the CSV download of one report."""
    counts = status_counts(report)
    total = len(report.rows)
    if report.ok:
        st.success(f"All {total:,} day x model rows match ({report.first} – {report.last}, UTC).")
    else:
        parts = ", ".join(f"{n:,} {s}" for s, n in counts.items() if n and s != "match")
        st.warning(f"{total - counts['match']:,} of {total:,} day x model rows differ: {parts}.")
    months = pd.DataFrame([{"Month": m.month.strftime("%Y-%m"), "Router": money_display(m.router_cost, exact=True),
                            "Ledger": money_display(m.ledger_cost, exact=True),
                            "Difference": money_display(m.difference, exact=True),
                            "Unexplained": money_display(m.unexplained, exact=True)} for m in report.months])
    st.subheader("By month")
    st.dataframe(months, hide_index=True, width="stretch", key="rec_months")
    frame = difference_frame(report)
    st.subheader("Difference per day and model")
    st.altair_chart(difference_chart(frame), width="stretch")
    st.dataframe(frame.drop(columns=["difference_usd"]), hide_index=True, width="stretch", key="rec_rows")
    st.download_button("Download the comparison (CSV)", report_csv(report), file_name=f"reconcile-{report.first}-"
                       f"{report.last}.csv", mime="text/csv", key="rec_download")
    st.caption(f"Exact differences are in the CSV (money as decimal text, e.g. {money_exact(Decimal('0.000148'))}).")
