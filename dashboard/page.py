"""The overview page: headline metrics, charts, tables and downloads for the sidebar's view.

``main()`` is the whole app (``app.py`` only calls it). The page asks ``dashboard.data`` for
rows, ``dashboard.frames`` turns them into frames and strings, ``dashboard.charts`` draws.
"""

from __future__ import annotations

import time
from pathlib import Path
from datetime import date, timedelta
from zoneinfo import ZoneInfo

import altair as alt
import streamlit as st

from dataclasses import replace

from spendlog.dashboard import (auth, budgets_view, cache_panel, changes, charts, closes_view, data, downloads, frames,
                                prices, reads, request_log_view, tag_scan, tags_view, whatif)
from spendlog.dashboard.empty import show_empty
from spendlog.dashboard.filters import sidebar, today_in
from spendlog.dashboard.params import ALL_TIME_START, HOURLY_DAYS, PRESETS, View, previous_period, tag_text
from spendlog.report.money import money_display
from spendlog.db.engine import mask_url
from spendlog.db.groups import tag_group
from spendlog.db.errors import DatabaseUnavailableError, DatabaseURLError
from spendlog.db.insights import LATENCY_SAMPLE
from spendlog.db.queries import Filters, date_bounds
from spendlog.db.status import ledger_warnings

__all__ = ["main", "overview", "filters_for", "LIVE_SECONDS"]

LIVE_SECONDS = 5
RECONCILE_PAGE = Path(__file__).with_name("reconcile_page.py")  # dashboard.reconcile_view
MAX_BARS = 400  # periods on the x axis before day granularity switches to week
LATENCY_MODELS = 12
# Two breakdowns feed the whole page (and, unfiltered, the sidebar's choices): per day x model
# (x provider, which follows the model) and per app x user (x key, which follows the user) x model
# (x provider): the change tables and the caching panel need app x model, and the previous period's
# read of it gives the headline's previous total too (dashboard.changes.SHARED).
BY_DAY = ("day", "model", "provider")
# with a tag filter the page's rows come from rollup_tags, which has no provider (the sidebar's
# provider choices come from the unfiltered BY_DAY)
BY_DAY_TAGGED = ("day", "model")
BY_WHO = changes.SHARED


def filters_for(view: View, start: date, end: date) -> Filters:
    """The query filters for ``view`` over inclusive local dates ``start``..``end``."""
    lo, hi = date_bounds(start, end, view.tz)
    return Filters(start=lo, end=hi, models=view.models, providers=view.providers, apps=view.apps,
                   users=view.users, key_hints=view.key_hints, status=view.status, tags=view.tags)


def filters_for_dates(start: date, end: date, tz: str) -> Filters:
    """The whole ledger (no dimension or status filter) over inclusive local dates."""
    lo, hi = date_bounds(start, end, tz)
    return Filters(start=lo, end=hi)


def main() -> None:
    # an emoji icon is drawn in the page; a :material/...: one is fetched from fonts.gstatic.com on every visit
    st.set_page_config(page_title="spendlog", page_icon="💵", layout="wide", initial_sidebar_state="auto")
    if not auth.gate():  # sign-in (docs/auth.md): nothing below runs for a visitor it refuses
        return
    st.navigation([st.Page(overview, title="Overview", icon="💵", default=True),
                   st.Page(RECONCILE_PAGE, title="Reconciliation", icon="🧾", url_path="reconciliation")]).run()


def overview() -> None:
    """The overview page (the navigation's default)."""
    st.html(LAYOUT_CSS)
    url = data.db_url()
    try:
        masked = mask_url(url)
        state = data.state(url)
        _warnings(url)
        if state == "empty":
            st.fragment(_empty_until_calls, run_every=LIVE_SECONDS)(url, masked)
            return
        view = sidebar(lambda start, end, tz: _choices(url, start, end, tz))
    except (DatabaseUnavailableError, DatabaseURLError) as exc:
        _unreadable(exc)
        return
    run_every = LIVE_SECONDS if view.live else None
    st.fragment(_live_overview, run_every=run_every)(url, view)


# Layout from 800 to 1920 px: side-by-side charts and tables go one under the other when a column
# would be narrower than 22rem (at 800 px a chart beside another had no room for its axes), headline
# cards wrap in a grid and show their whole label and figure, buttons wrap their text, the sidebar is
# narrower on narrow screens. A fixed stylesheet (no ledger text).
LAYOUT_CSS = """<style>
[class*="st-key-pair_"] [data-testid="stHorizontalBlock"] { flex-wrap: wrap; }
[class*="st-key-pair_"] [data-testid="stColumn"] { flex: 1 1 22rem !important; min-width: min(22rem, 100%) !important; }
.st-key-kpis [data-testid="stHorizontalBlock"] { flex-wrap: wrap; gap: 0.75rem; }
.st-key-kpis [data-testid="stColumn"] { flex: 1 1 11.5rem !important; min-width: 11.5rem !important;
  width: auto !important; }
[data-testid="stMetricValue"], [data-testid="stMetricValue"] * { overflow: visible !important;
  text-overflow: clip !important; }
[data-testid="stMetricValue"] { font-size: clamp(1.35rem, 1.9vw, 2rem) !important; }
[data-testid="stMetricLabel"], [data-testid="stMetricLabel"] * { white-space: normal !important;
  overflow: visible !important; text-overflow: clip !important; }
.st-key-downloads button, .st-key-downloads button * { white-space: normal !important; overflow: visible !important;
  text-overflow: clip !important; }
@media (max-width: 1100px) {
  section[data-testid="stSidebar"] { width: 15rem !important; min-width: 15rem !important; }
}
</style>"""


def _empty_until_calls(url: str, masked: str) -> None:
    """The empty-ledger page, re-checked every few seconds: the first call reloads the app."""
    try:
        ready = data.state(url) == "ready"
    except (DatabaseUnavailableError, DatabaseURLError):
        ready = False
    if ready:
        st.rerun(scope="app")
    show_empty(masked)


def _warnings(url: str) -> None:
    """One line when the ledger lacks records (rejected, spooled, dropped) or is newer than us."""
    lines = ledger_warnings(url, data.engine(url))
    if lines:
        st.warning(" · ".join(lines), icon=":material/warning:")


def _unreadable(exc: Exception) -> None:
    st.error(f"**The database cannot be read.** {exc}", icon=":material/error:")
    st.caption("Check `--db` / `SPENDLOG_DB_URL`, that the server is running, and `spendlog db status`.")


def _live_overview(url: str, view: View) -> None:
    """The overview as a fragment (the live toggle reruns just this); a database that goes away
    between two refreshes shows the same error as at start."""
    if not auth.still_allowed():  # a live refresh skips main(): a lapsed sign-in goes back to the gate
        st.rerun()
    try:
        _overview(url, view)
    except (DatabaseUnavailableError, DatabaseURLError) as exc:
        _unreadable(exc)


def _now() -> float:
    return time.time()


def _tick(view: View) -> int | None:
    """The live view's refresh tick (fresh rows each tick); None when not live (cache TTL)."""
    return int(_now() // LIVE_SECONDS) if view.live else None


def _choices(url: str, start: date, end: date, tz: str) -> dict[str, list[str]]:
    """The sidebar's choices: every model, provider, app, user and key seen in the date range.

    The same cached queries the page makes when no dimension filter is set, so the first render
    reads the rollup once for both."""
    if start == ALL_TIME_START:  # the page's range (_overview): one read for both
        start = reads.all_time_start(url, end, tz, as_of=None)
    everything = filters_for_dates(start, end, tz)
    data.prefetch(*((data.totals, (url, everything, by, tz), {"as_of": None}) for by in (BY_DAY, BY_WHO)))
    rows = [row for by in (BY_DAY, BY_WHO) for row in data.totals(url, everything, by, tz, as_of=None)]
    out = {column: sorted({r[column] for r in rows if r.get(column)})
           for column in ("model", "provider", "app", "user", "key")}
    out["tags"] = [tag_text(p) for p in data.tag_choices(url, everything, as_of=None)[1]]
    return out


def _overview(url: str, view: View) -> None:
    tick = _tick(view)
    if view.preset == "all":
        view = view.with_dates(reads.all_time_start(url, view.end, view.tz, as_of=tick), view.end)
    granularity = view.granularity
    hourly = view.days <= HOURLY_DAYS and granularity in ("hour", "day")
    if hourly:
        granularity = "hour"
    elif granularity == "hour":
        granularity = "day"
    if granularity == "day" and view.days > MAX_BARS:
        granularity = "week"
    current = filters_for(view, view.start, view.end)
    prev_start, prev_end = previous_period(view.start, view.end)
    previous = filters_for(view, prev_start, prev_end)

    by_day = BY_DAY_TAGGED if view.tags else BY_DAY
    scan = tag_scan.scan(url, current)  # per user, key and other tags wait under a tag filter (big range)
    data.prefetch((data.totals, (url, current, by_day, view.tz), {"as_of": tick}),
                  (data.totals, (url, current, scan.shared, view.tz), {"as_of": tick}),
                  (data.totals, (url, previous, scan.shared, view.tz), {"as_of": tick}))
    day_rows = data.totals(url, current, by_day, view.tz, as_of=tick)
    if hourly:
        rows = frames.hourly_rows(reads.hourly_totals(url, current, as_of=tick), ZoneInfo(view.tz))
    else:
        rows = frames.by_period(day_rows, granularity)
    total = frames.sum_rows(day_rows)
    prev_total = frames.sum_rows(data.totals(url, previous, scan.shared, view.tz, as_of=tick))
    base = prev_base = None
    if view.status != "all":  # rates are over every call of the view, whatever its status
        base = data.totals(url, replace(current, status="all"), (), view.tz, as_of=tick)[0]
        prev_base = data.totals(url, replace(previous, status="all"), (), view.tz, as_of=tick)[0]

    st.title("LLM spend")
    span = PRESETS[view.preset] if view.preset != "custom" else "Custom range"
    st.text(f"{span}: {view.start.isoformat()} – {view.end.isoformat()} ({view.tz}) · compared with "
            f"{prev_start.isoformat()} – {prev_end.isoformat()} · {mask_url(url)}")  # a URL's zone: plain text
    _metrics(total, prev_total, base, prev_base)
    with st.container(key="downloads"):
        downloads.buttons(url, current, "day" if hourly else granularity, view.tz, view.start, view.end,
                          total["requests"])
    budgets_view.section(url, tick, _chart)  # only when the ledger has budgets
    if not total["requests"]:
        st.info("No calls match these filters in this date range.")
        return

    if view.status == "errors":
        _errors_view(url, view, current, granularity, tick)
        request_log_view.request_log(url, view, current, total, tick)
        _calls(url, view, current, total, tick)
        return
    st.subheader(f"Spend per model per {granularity}")
    if hourly and view.granularity != "hour":
        st.caption(f"Up to {HOURLY_DAYS} days: shown per hour ({view.tz}).")
    elif granularity != view.granularity:
        st.caption(f"More than {MAX_BARS} days: shown per week." if granularity == "week"
                   else f"Per hour only for ranges up to {HOURLY_DAYS} days: shown per day.")
    changes.spend_chart(url, view, current, previous, rows, day_rows, granularity, hourly, tick, scan.shared)  # overlay, spikes
    closes_view.section(url, current, tick)

    left, right = _pair("month_tokens")
    with left:
        _month(url, view, day_rows, tick)
    with right:
        st.subheader(f"Tokens per {granularity}")
        _chart(charts.tokens_by_period(frames.tokens_frame(rows, granularity)))

    combos = data.totals(url, current, scan.shared, view.tz, as_of=tick)
    left, right = _pair("app_user")
    with left:
        st.subheader("Spend by app")
        _chart(charts.top_spenders(frames.top_frame(frames.regroup(combos, "app"), "app"), "App"))
    with right:
        st.subheader("Spend by user")
        scan.toggle()
        if scan.answers("user"):
            _chart(charts.top_spenders(frames.top_frame(frames.regroup(combos, "user"), "user"), "User"))

    tags_view.spend_by_tag(url, view, current, tick, _chart, scan)

    by_model = frames.regroup(rows, "model")
    ranked = sorted(by_model, key=lambda r: (-r["requests"], r["model"] or ""))[:LATENCY_MODELS]
    left, right = _pair("latency_errors")
    with left:
        st.subheader("Latency per model")
        stats = data.latency(url, current, tuple(r["model"] for r in ranked), as_of=tick)
        _chart(charts.latency_by_model(frames.latency_frame(stats)))
        st.caption(f"p50 / p95 of up to {LATENCY_SAMPLE:,} of each model's most recent matching calls in the range.")
    with right:
        st.subheader("Error rate per model")
        _chart(charts.error_rate_by_model(frames.error_frame(ranked)))

    st.subheader("Per model")
    st.dataframe(frames.model_table(frames.regroup(day_rows, "model")), hide_index=True, width="stretch")
    st.caption(MONEY_RULE)
    whatif.panel(url, current, [r["model"] for r in by_model if r["model"]], tick)
    # what changed, biggest movers (issue 15): model, app, user and the tag key picked in "Spend by tag"
    tag_by = st.session_state.get("f_tagby")
    changes.section(url, view, current, previous, tick,
                    (*changes.CHANGE_DIMS, tag_group(tag_by)) if tag_by else changes.CHANGE_DIMS, scan)
    cache_panel.panel(url, current, view.tz, tick, scan)
    request_log_view.request_log(url, view, current, total, tick)
    _calls(url, view, current, total, tick)


MONEY_RULE = ("Money in tables: to the cent from $0.10, three significant digits below ($0.000148). "
              "Exact figures: a call's record (click its row) and the CSV downloads.")


def _errors_view(url: str, view: View, current: Filters, granularity: str, tick: int | None) -> None:
    """With ``status=errors``: errors over time by type and status, and error rates per model and
    per app against every call of the view (the same filters without the status one)."""
    from spendlog.db.periods import date_bounds, period_boundaries, bucket_minutes

    everything = replace(current, status="all")
    day_all = data.totals(url, everything, BY_DAY, view.tz, as_of=tick)
    who_all = data.totals(url, everything, BY_WHO, view.tz, as_of=tick)
    calls = frames.sum_rows(day_all)["requests"]
    heading = st.empty()
    # error types are not in the rollup: the breakdown reads the range's calls (waits for a click when many)
    if calls <= data.EAGER_SCAN_CALLS or st.toggle(
            f"Break the errors down by type and status (reads all {calls:,} calls in the range)", key="scan_errors"):
        lo, hi = date_bounds(view.start, view.end, view.tz)
        minutes = bucket_minutes(period_boundaries(view.tz, ["day"], lo, hi)) if lo and hi else 60
        kinds = reads.error_kinds(url, current, minutes, as_of=tick)
        df = frames.errors_time_frame(kinds, granularity, view.tz)
        heading.subheader(f"Errors per {granularity}, by error and status")
    else:
        heading.subheader(f"Errors per {'day' if granularity == 'hour' else granularity}")
        df = frames.errors_total_frame(frames.by_period(day_all, "week" if granularity == "week" else
                                                        "month" if granularity == "month" else "day"),
                                       "week" if granularity == "week" else "month" if granularity == "month"
                                       else "day")
    _chart(charts.errors_over_time(df))
    left, right = _pair("error_rates")
    with left:
        st.subheader("Error rate per model")
        _chart(charts.errors_by(frames.rate_frame(frames.regroup(day_all, "model"), "model"), "model", "Model"))
    with right:
        st.subheader("Error rate per app")
        _chart(charts.errors_by(frames.rate_frame(frames.regroup(who_all, "app"), "app"), "app", "App"))
    st.caption("Rates are errors over all calls of the view (same filters, any status). "
               "A call's full error message: open it in the request log below.")


def _calls(url: str, view: View, current: Filters, total: dict, tick: int | None) -> None:
    """The 50 most expensive calls and the most recent errors (a row opens its call)."""
    zone = ZoneInfo(view.tz)
    st.subheader("Most expensive calls")
    # finding them reads every call in the date range (no index orders calls by cost)
    everything = data.totals(url, filters_for_dates(view.start, view.end, view.tz), BY_DAY, view.tz, as_of=None)
    calls = frames.sum_rows(everything)["requests"]
    if calls <= data.EAGER_SCAN_CALLS or st.toggle(
            f"Scan all {calls:,} calls in the range for the 50 most expensive (takes a few seconds)",
            key="scan_expensive"):
        df = frames.calls_table(data.expensive_calls(url, current, as_of=tick), zone)
        st.dataframe(df, hide_index=True, width="stretch", key="expensive_table", on_select="rerun",
                     selection_mode="single-row")
        request_log_view.open_from("expensive_table", df)
    st.subheader("Recent errors")
    failed = data.recent_errors(url, current, as_of=tick) if total["errors"] else []
    if failed:
        df = frames.calls_table(failed, zone, errors=True)
        st.dataframe(df, hide_index=True, width="stretch", key="errors_table", on_select="rerun",
                     selection_mode="single-row")
        request_log_view.open_from("errors_table", df)
    else:
        st.caption("No errors in this range.")


# Streamlit sizes a chart to its column and the last x label, the legend and the axis title stood a
# little past it, cut off (measured in Chromium at 800 and 1400 px): keep that much room on the right
CHART_RIGHT_PAD = 28


def _pair(name: str):
    """Two columns side by side that go one under the other on a narrow page (``LAYOUT_CSS``)."""
    with st.container(key=f"pair_{name}"):
        return st.columns(2)


def _chart(chart) -> None:
    """Draw one of ``dashboard.charts``' Altair charts.

    Our chart functions build known-good specs, so the page skips what makes ``st.altair_chart``
    slow (Altair re-validating the spec against the Vega-Lite JSON schema and turning the frame
    into JSON records): the spec goes without its data and the DataFrame goes to Streamlit,
    which ships it as Arrow."""
    frame = chart.data
    spec = chart.properties(data=alt.Data(name="frame")).to_dict(validate=False)
    spec.pop("config", None)  # Altair's default theme (fixed 300 px views); Streamlit themes the chart
    spec.pop("data", None)
    spec.pop("datasets", None)
    # the column's width with the axis labels, titles and legend inside it (Streamlit's default fit
    # drew the plot that wide and cut what stood beside it), and the plot's own height above the axes
    # and legend (a long legend no longer squeezes the bars)
    spec["autosize"] = {"type": "fit-x", "contains": "padding"}
    spec["padding"] = {"left": 5, "top": 5, "bottom": 5, "right": CHART_RIGHT_PAD}
    st.vega_lite_chart(frame, spec, width="stretch")


def _metrics(total: dict, prev_total: dict, base: dict | None = None, prev_base: dict | None = None) -> None:
    metrics = frames.headline(total, prev_total, base, prev_base)
    with st.container(key="kpis"):
        for column, m in zip(st.columns(len(metrics)), metrics):
            column.metric(m.label, m.value, m.delta, delta_color=m.delta_color, help=m.help, border=True)
    st.caption(f"Total spend, exact: **{money_display(total['cost_usd'], exact=True)}**")
    st.caption("Of it: " + prices.spend_split(total).replace("$", "\\$"))  # \$: not LaTeX


def _month(url: str, view: View, day_rows: list[dict], tick: int | None) -> None:
    """Cumulative spend this (local) month with its dashed month-end projection.

    ``day_rows`` (the page's by-day rows) are reused when they cover the month so far and the
    week before today; otherwise the month is read on its own."""
    today = today_in(view.tz)
    month_start = today.replace(day=1)
    first = min(month_start, today - timedelta(days=7))
    if view.start > first or view.end < today:
        day_rows = data.totals(url, filters_for(view, first, today), ("day",), view.tz, as_of=tick)
    else:
        day_rows = frames.regroup(day_rows, "day")
    df, spent, projected = frames.month_frame(day_rows, today)
    st.subheader(f"This month ({today.strftime('%B %Y')})")
    _chart(charts.cumulative_month(df))
    st.caption(f"Spent {money_display(spent)} so far; at the last 7 days' rate about "
               f"{money_display(projected)} by month end.")
