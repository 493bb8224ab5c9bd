"""The overview page: headline metrics, charts, tables and downloads for the sidebar's view.

``main()`` is the whole app (``app.py`` only calls it). The page asks ``dashboard.data`` for
rows, ``dashboard.frames`` turns them into frames and strings, ``dashboard.charts`` draws.
"""

from __future__ import annotations

import time
from datetime import date, timedelta
from zoneinfo import ZoneInfo

import streamlit as st

from spendlog.dashboard import charts, data, downloads, frames
from spendlog.dashboard.empty import show_empty
from spendlog.dashboard.filters import sidebar, today_in
from spendlog.dashboard.formatting import format_money, format_money_exact
from spendlog.dashboard.params import PRESETS, View, previous_period
from spendlog.db.engine import mask_url
from spendlog.db.errors import DatabaseUnavailableError, DatabaseURLError
from spendlog.db.queries import Filters, date_bounds

__all__ = ["main", "filters_for", "LIVE_SECONDS"]

LIVE_SECONDS = 5
MAX_BARS = 400  # periods on the x axis before day granularity switches to week
LATENCY_MODELS = 12


def filters_for(view: View, start: date, end: date) -> Filters:
    """The query filters for ``view`` over inclusive local dates ``start``..``end``."""
    lo, hi = date_bounds(start, end, view.tz)
    return Filters(start=lo, end=hi, models=view.models, providers=view.providers, apps=view.apps,
                   users=view.users, key_hints=view.key_hints, status=view.status)


def main() -> None:
    st.set_page_config(page_title="spendlog", page_icon=":material/payments:", layout="wide")
    url = data.db_url()
    try:
        masked = mask_url(url)
        if data.state(url) == "empty":
            show_empty(masked)
            return
        view = sidebar(lambda column: data.options(url, column))
        run_every = LIVE_SECONDS if view.live else None
        st.fragment(_overview, run_every=run_every)(url, view)
    except (DatabaseUnavailableError, DatabaseURLError) as exc:
        st.error(f"**The database cannot be read.** {exc}", icon=":material/error:")
        st.caption("Check `--db` / `SPENDLOG_DB_URL`, that the server is running, and `spendlog db status`.")


def _now() -> float:
    return time.time()


def _tick(view: View) -> int | None:
    """The live view's refresh tick (fresh rows each tick); None when not live (cache TTL)."""
    return int(_now() // LIVE_SECONDS) if view.live else None


def _overview(url: str, view: View) -> None:
    granularity = view.granularity
    if granularity == "day" and view.days > MAX_BARS:
        granularity = "week"
    current = filters_for(view, view.start, view.end)
    prev_start, prev_end = previous_period(view.start, view.end)
    previous = filters_for(view, prev_start, prev_end)

    tick = _tick(view)
    rows = data.totals(url, current, (granularity, "model"), view.tz, tick)
    total = frames.sum_rows(rows)
    prev_total = data.totals(url, previous, (), view.tz, tick)[0]

    st.title("LLM spend")
    span = PRESETS[view.preset] if view.preset != "custom" else "Custom range"
    st.caption(f"{span}: {view.start.isoformat()} – {view.end.isoformat()} ({view.tz}) · compared with "
               f"{prev_start.isoformat()} – {prev_end.isoformat()} · {mask_url(url)}")
    _metrics(total, prev_total)
    downloads.buttons(url, current, granularity, view.tz, view.start, view.end, total["requests"])
    if not total["requests"]:
        st.info("No calls match these filters in this date range.")
        return

    st.subheader(f"Spend per model per {granularity}")
    if granularity != view.granularity:
        st.caption(f"More than {MAX_BARS} days: shown per week.")
    st.altair_chart(charts.spend_by_model(frames.spend_frame(rows, granularity)), width="stretch")

    left, right = st.columns(2)
    with left:
        _month(url, view)
    with right:
        st.subheader(f"Tokens per {granularity}")
        st.altair_chart(charts.tokens_by_period(frames.tokens_frame(rows, granularity)), width="stretch")

    pairs = data.totals(url, current, ("app", "user"), view.tz, tick)
    left, right = st.columns(2)
    with left:
        st.subheader("Spend by app")
        st.altair_chart(charts.top_spenders(frames.top_frame(frames.regroup(pairs, "app"), "app"), "App"),
                        width="stretch")
    with right:
        st.subheader("Spend by user")
        st.altair_chart(charts.top_spenders(frames.top_frame(frames.regroup(pairs, "user"), "user"), "User"),
                        width="stretch")

    by_model = frames.regroup(rows, "model")
    ranked = sorted(by_model, key=lambda r: (-r["requests"], r["model"] or ""))[:LATENCY_MODELS]
    left, right = st.columns(2)
    with left:
        st.subheader("Latency per model")
        stats = data.latency(url, current, tuple(r["model"] for r in ranked), tick)
        st.altair_chart(charts.latency_by_model(frames.latency_frame(stats)), width="stretch")
        st.caption("p50 / p95 over each model's most recent 5,000 calls in the range.")
    with right:
        st.subheader("Error rate per model")
        st.altair_chart(charts.error_rate_by_model(frames.error_frame(ranked)), width="stretch")

    st.subheader("Per model")
    st.dataframe(frames.model_table(by_model), hide_index=True, width="stretch")

    zone = ZoneInfo(view.tz)
    st.subheader("Most expensive calls")
    st.dataframe(frames.calls_table(data.expensive_calls(url, current, tick), zone), hide_index=True, width="stretch")
    st.subheader("Recent errors")
    failed = data.recent_errors(url, current, tick)
    if failed:
        st.dataframe(frames.calls_table(failed, zone, errors=True), hide_index=True, width="stretch")
    else:
        st.caption("No errors in this range.")


def _metrics(total: dict, prev_total: dict) -> None:
    metrics = frames.headline(total, prev_total)
    for row in (metrics[:4], metrics[4:]):
        for column, m in zip(st.columns(4), row):
            column.metric(m.label, m.value, m.delta, delta_color=m.delta_color, help=m.help, border=True)
    st.caption(f"Total spend, exact: **{format_money_exact(total['cost_usd'])}**")


def _month(url: str, view: View) -> None:
    """Cumulative spend this (local) month with its dashed month-end projection."""
    today = today_in(view.tz)
    month_start = today.replace(day=1)
    first = min(month_start, today - timedelta(days=7))
    month_filters = filters_for(view, first, today)
    day_rows = data.totals(url, month_filters, ("day",), view.tz, _tick(view))
    df, spent, projected = frames.month_frame(day_rows, today)
    st.subheader(f"This month ({today.strftime('%B %Y')})")
    st.altair_chart(charts.cumulative_month(df), width="stretch")
    st.caption(f"Spent {format_money(spent)} so far; at the last 7 days' rate about "
               f"{format_money(projected)} by month end.")
