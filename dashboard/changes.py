"""What changed (issue 15): the spend chart's previous-period overlay and spike marks, the spike
lines under it, the change tables per model / app / user and the biggest movers.

Every figure comes from the read layer (``spendlog.db.changes``, ``spendlog.db.spikes``, the page's
``grouped_totals`` rows), cached like ``dashboard.data`` (real arguments, ``as_of`` the live tick).
Ledger values are shown through ``formatting.label`` and as text (``st.text``, tables), never as
Markdown or HTML. No SQL here.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from zoneinfo import ZoneInfo

import pandas as pd
import streamlit as st

from spendlog.dashboard import data, frames, reads
from spendlog.dashboard.change_charts import spend_spec
from spendlog.dashboard.formatting import label, safe_hint
from spendlog.dashboard.params import View
from spendlog.db import changes as db_changes
from spendlog.db import spikes as db_spikes
from spendlog.db.changes import Change
from spendlog.db.periods import period_start
from spendlog.db.queries import Filters
from spendlog.report.changes import change_text, percent_text, spike_line
from spendlog.report.money import money_display

__all__ = ["CHANGE_DIMS", "SHARED", "OVERLAY_KEY", "MOVERS", "spikes", "changes", "previous_rows", "spike_rows",
           "change_table", "movers_table", "spend_chart", "section"]

# The dimensions compared and searched for movers: a list, so tag dimensions (tag:KEY) join it as they are
CHANGE_DIMS = ("model", "app", "user")
# The page's per-app x user breakdown (``page.BY_WHO``), with model and provider: one read per period
# serves the page, the change tables, the movers and the caching panel (no period grouping: a
# day x dimension grouping costs about ten times as much on a big ledger)
SHARED = ("app", "user", "key", "model", "provider")
TITLES = {"model": "Model", "app": "App", "user": "User", "provider": "Provider", "key": "API key"}
OVERLAY_KEY = "overlay_previous"
MOVERS = 5
SPIKE_LINES = 12  # spike lines listed under the chart (a long range can have many)
CHART_RIGHT_PAD = 28  # as dashboard.page draws its charts (legends and edge labels not cut)
RULE = (f"A spike is a day (in the chosen timezone) whose spend is more than {db_spikes.MADS} median "
        f"absolute deviations above the median of its {db_spikes.WINDOW} previous days with calls (at least "
        f"{db_spikes.MIN_DAYS} of them; the deviation counts as at least 20% of the median and $0.01).")


def _spikes(conn, filters: Filters, tz: str, known: tuple) -> list:
    return db_spikes.spend_spikes(conn, filters, tz, known=dict(known))


@st.cache_data(ttl=data.TTL_SECONDS, max_entries=64, show_spinner=False)
def spikes(url: str, filters: Filters, tz: str, known: tuple, *, as_of: int | None) -> list:
    """``db.spikes.spend_spikes`` for the view (driven by its (app, model) pairs); ``known``: the
    range's (day, spend) pairs from the page's own by-day read, so only the days before it are read."""
    return data.read(url, _spikes, filters, tz, known)


def changes(url: str, filters: Filters, previous: Filters, tz: str, dims: tuple[str, ...], *,
            as_of: int | None, shared: tuple[str, ...]) -> dict[str, list[Change]]:
    """``db.changes.changes_from`` over the two periods' cached reads: the plain dimensions from one
    read per period grouped by ``shared`` (``SHARED``, which the caching panel reads too, or what
    the tag rollup holds of it: ``dashboard.tag_scan``), any other kind of group (``tag:KEY``)
    from a read of its own."""
    plain = tuple(d for d in dims if d in shared)
    out = {}
    if plain:
        now = data.totals(url, filters, shared, tz, as_of=as_of)
        then = data.totals(url, previous, shared, tz, as_of=as_of)
        out.update(db_changes.changes_from(now, then, plain))
    for dim in dims:
        if dim not in shared:
            out.update(db_changes.changes_from(data.totals(url, filters, (dim,), tz, as_of=as_of),
                                               data.totals(url, previous, (dim,), tz, as_of=as_of), (dim,)))
    return {dim: out[dim] for dim in dims}


def _title(dim: str) -> str:
    """"Model", "App", ... and "Tag team" for a ``tag:team`` group (the key as plain text)."""
    return TITLES.get(dim) or (f"Tag {label(dim[4:])}" if dim.startswith("tag:") else dim)


def _show(dim: str, value: str | None) -> str:
    return safe_hint(value) if dim == "key" else label(value)


def previous_rows(url: str, view: View, previous: Filters, granularity: str, hourly: bool,
                  tick: int | None) -> list[dict]:
    """The previous period's spend per period of the chart, each placed on the current period it
    lines up with (shifted by the range's length): ``{period, cost, cost_exact, previous_period}``."""
    sums: dict[str, list] = {}
    if hourly:
        shift = timedelta(days=(view.end - view.start).days + 1)
        zone = ZoneInfo(view.tz)
        for r in reads.hourly_totals(url, previous, as_of=tick):
            then = r["hour"].astimezone(zone)
            now = (r["hour"] + shift).astimezone(zone)
            cell = sums.setdefault(frames.period_label(now, "hour"), [0, frames.period_label(then, "hour")])
            cell[0] += r["cost_usd"]
    else:
        days = (view.end - view.start).days + 1
        for r in data.totals(url, previous, ("day",), view.tz, as_of=tick):
            if not r["requests"]:
                continue
            shifted = period_start(r["day"] + timedelta(days=days), granularity)
            then = frames.period_label(period_start(r["day"], granularity), granularity)
            cell = sums.setdefault(frames.period_label(shifted, granularity), [0, then])
            cell[0] += r["cost_usd"]
    return [{"period": p, "cost": float(c), "cost_exact": money_display(c, exact=True), "previous_period": then}
            for p, (c, then) in sorted(sums.items())]


def spike_rows(found: Sequence, granularity: str) -> list[dict]:
    """The spike marks of a per-day chart: ``{period, cost, cost_exact, explanation}``."""
    if granularity != "day":
        return []
    return [{"period": frames.period_label(s.day, "day"), "cost": float(s.spend),
             "cost_exact": money_display(s.spend, exact=True), "explanation": spike_line(s, label)} for s in found]


def _draw(frame: pd.DataFrame, spec: dict) -> None:
    spec["autosize"] = {"type": "fit-x", "contains": "padding"}
    spec["padding"] = {"left": 5, "top": 5, "bottom": 5, "right": CHART_RIGHT_PAD}
    st.vega_lite_chart(frame, spec, width="stretch")


def spend_chart(url: str, view: View, current: Filters, previous: Filters, rows: list[dict], day_rows: list[dict],
                granularity: str, hourly: bool, tick: int | None, shared: tuple[str, ...]) -> None:
    """The spend-per-period chart (the page's first), with the overlay toggle, the spike marks
    (per-day charts) and the spike lines under it. ``day_rows``: the page's by-day read of the view;
    ``shared``: the page's shared grouping (``changes``), whose previous-period read has its total."""
    overlay = st.toggle("Overlay the previous period", key=OVERLAY_KEY,
                        help="The previous period of the same length, as a dashed line over the bars.")
    known = tuple((r["day"], r["cost_usd"]) for r in frames.regroup(day_rows, "day") if r["requests"])
    found = spikes(url, current, view.tz, known, as_of=tick)
    before = previous_rows(url, view, previous, granularity, hourly, tick) if overlay else []
    frame = frames.spend_frame(rows, granularity)
    _draw(frame, spend_spec(frame, before, spike_rows(found, granularity)))
    if overlay:
        total = frames.sum_rows(data.totals(url, previous, shared, view.tz, as_of=tick))["cost_usd"]
        st.text(f"Dashed: the previous period ({_span(previous, view)}), {money_display(total)} in all.")
    for s in found[-SPIKE_LINES:]:  # the most recent ones; every spike is marked on a per-day chart
        st.text(spike_line(s, label))  # ledger values: plain text
    if len(found) > SPIKE_LINES:
        st.caption(f"{len(found) - SPIKE_LINES} earlier spikes in this range are marked on the chart, not listed.")
    st.caption(RULE if found else f"No spend spikes in this range. {RULE}")


def _span(previous: Filters, view: View) -> str:
    zone = ZoneInfo(view.tz)
    first = previous.start.astimezone(zone).date()
    last = (previous.end.astimezone(zone) - timedelta(microseconds=1)).date()
    return f"{first.isoformat()} – {last.isoformat()}"


def change_table(rows: Sequence[Change], dim: str) -> pd.DataFrame:
    """One dimension's values: spend now, before, the change and its percent ("new": none before)."""
    records = [{_title(dim): _show(dim, c.value), "Spend": money_display(c.current),
                "Previous period": money_display(c.previous), "Change": change_text(c), "Change %": percent_text(c)}
               for c in rows]
    return pd.DataFrame(records, columns=[_title(dim), "Spend", "Previous period", "Change", "Change %"])


def movers_table(movers: db_changes.Movers) -> pd.DataFrame:
    """The biggest rises then the biggest falls: which dimension, which value, by how much."""
    records = [{"Moved": way, "Dimension": _title(c.dim), "Value": _show(c.dim, c.value),
                "Change": change_text(c), "Change %": percent_text(c), "Spend": money_display(c.current),
                "Previous period": money_display(c.previous)}
               for way, group in (("up", movers.up), ("down", movers.down)) for c in group]
    return pd.DataFrame(records, columns=["Moved", "Dimension", "Value", "Change", "Change %", "Spend",
                                          "Previous period"])


def section(url: str, view: View, current: Filters, previous: Filters, tick: int | None,
            dims: Sequence[str], scan) -> None:
    """"What changed": the biggest movers, then a change table per dimension (in tabs). ``scan``
    (``dashboard.tag_scan.Scan``): the dimensions it holds back are left out, and said so."""
    held = [d for d in dims if not scan.answers(d)]
    dims = [d for d in dims if d not in held]
    found = changes(url, current, previous, view.tz, tuple(dims), as_of=tick, shared=scan.shared)
    st.subheader("What changed")
    st.text(f"Against the previous period of the same length, {_span(previous, view)}.")
    movers = db_changes.movers_from(found, MOVERS)
    st.markdown("**Biggest movers**")
    if movers.up or movers.down:
        st.dataframe(movers_table(movers), hide_index=True, width="stretch", key="movers_table")
    else:
        st.caption("No spend moved.")
    for tab, dim in zip(st.tabs([f"Per {_title(d).lower()}" for d in dims]), dims):
        with tab:
            st.dataframe(change_table(found[dim], dim), hide_index=True, width="stretch", key=f"change_{dim}")
    if held:
        scan.waits_for("The change per user and per other tag key")
