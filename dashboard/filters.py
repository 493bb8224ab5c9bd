"""The sidebar: date range, timezone, granularity, dimension and tag filters, status and the live toggle.

On a session's first run the widgets start from the URL's query params; on every run the view is
written back to the URL, so the address bar always holds a shareable link to what is on screen.

Text built from URL values is drawn with ``st.text`` (never parsed as Markdown or HTML: a link
cannot make the page fetch an image or show a link); choices are shown through
``formatting.label`` / ``safe_hint``, widget options are plain text.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo, available_timezones

import streamlit as st

from spendlog.dashboard.formatting import label, safe_hint
from spendlog.dashboard.params import (
    DIMENSIONS,
    GRANULARITIES,
    PRESETS,
    STATUSES,
    View,
    default_tz,
    parse_params,
    preset_dates,
    tag_text,
    to_params,
)
from spendlog.db.filters import parse_tag

__all__ = ["sidebar", "today_in"]

_LOADED = "_spendlog_view_loaded"
_NOTES = "_spendlog_url_notes"


def today_in(tz: str) -> date:
    return datetime.now(ZoneInfo(tz)).date()


@lru_cache(maxsize=1)
def _zones() -> list[str]:
    return sorted(z for z in available_timezones() if "/" in z or z == "UTC")


def _url_params() -> dict[str, list[str]]:
    return {key: st.query_params.get_all(key) for key in st.query_params.keys()}


def _seed_from_url() -> None:
    """First run of a session: put the URL's view into the widgets' session state."""
    ss = st.session_state
    view = parse_params(_url_params(), today_in=today_in)
    ss["f_range"] = view.preset
    if view.preset == "custom":
        ss["f_dates"] = (view.start, view.end)
    ss["f_tz"] = view.tz
    ss["f_by"] = view.granularity
    for key, (fieldname, _col, _label) in DIMENSIONS.items():
        ss[f"f_{key}"] = list(getattr(view, fieldname))
    ss["f_status"] = view.status
    ss["f_live"] = view.live
    ss["log_q"] = view.q
    ss["log_sort"] = view.sort
    ss["log_page"] = view.page + 1
    ss["log_call"] = view.call
    ss["f_tags"] = [tag_text(p) for p in view.tags]
    ss["f_tagby"] = view.tag_key
    ss[_NOTES] = view.notes
    ss[_LOADED] = True


def sidebar(options: Callable[[date, date, str], dict[str, list[str]]]) -> View:
    """Draw the filters and return the chosen view. ``options(start, end, tz)`` lists each
    dimension's values in the chosen dates (keyed model, provider, app, user, key) and the tags
    (``"tags"``: ``key=value`` texts)."""
    ss = st.session_state
    if not ss.get(_LOADED):
        _seed_from_url()
    side = st.sidebar
    side.header("Filters")
    preset = side.selectbox("Date range", list(PRESETS), format_func=PRESETS.__getitem__, key="f_range")
    zones = _zones()
    if ss.get("f_tz") not in zones:
        zones = [ss["f_tz"], *zones]
    tz = side.selectbox("Timezone", zones, key="f_tz", help="Where day, week and month boundaries fall.")
    today = today_in(tz)
    if preset == "custom":
        if "f_dates" not in ss:
            ss["f_dates"] = preset_dates("30d", today)
        picked = side.date_input("From / to (inclusive)", key="f_dates", format="YYYY-MM-DD")
        picked = tuple(picked) if isinstance(picked, (tuple, list)) else (picked,)
        start = picked[0] if picked else today
        end = picked[1] if len(picked) > 1 else start
    else:
        start, end = preset_dates(preset, today)
        side.text(f"Every recorded call, to {end.isoformat()} ({tz})" if preset == "all"
                  else f"{start.isoformat()} – {end.isoformat()} ({tz})")
    granularity = side.radio("Granularity", GRANULARITIES, key="f_by", horizontal=True,
                             format_func=str.capitalize)

    choices = options(start, end, tz)
    chosen: dict[str, tuple[str, ...]] = {}
    for key, (fieldname, column, title) in DIMENSIONS.items():
        current = ss.get(f"f_{key}") or []
        values = list(dict.fromkeys([*choices.get(column, []), *current]))
        shown = safe_hint if key == "key" else label
        picked = side.multiselect(title, values, key=f"f_{key}", format_func=shown,
                                  placeholder="All")
        chosen[fieldname] = tuple(picked)
    current = ss.get("f_tags") or []
    tag_choices = list(dict.fromkeys([*choices.get("tags", []), *current]))
    picked = side.multiselect("Tags", tag_choices, key="f_tags", format_func=label, placeholder="All",
                              help="Calls carrying every tag picked (key=value), as --tag does.")
    tags = []
    for text in picked:
        try:
            tags.append(parse_tag(text))
        except ValueError:  # a choice the ledger offered always parses; a stale one is dropped
            continue
    status = side.radio("Status", STATUSES, key="f_status", horizontal=True, format_func=str.capitalize)
    live = side.toggle("Live (refresh every few seconds)", key="f_live")
    for note in ss.get(_NOTES, ()):  # notes quote the URL's values: plain text, never Markdown
        side.text(f"Ignored in the link: {note}")

    page = ss.get("log_page") or 1
    view = View(preset=preset, start=start, end=end, tz=tz, granularity=granularity, status=status,
                live=live, q=str(ss.get("log_q") or "")[:200], sort=ss.get("log_sort") or "time",
                page=max(0, int(page) - 1), call=str(ss.get("log_call") or ""), tags=tuple(tags),
                tag_key=str(ss.get("f_tagby") or ""), **chosen)
    params = to_params(view, tz_default=default_tz())
    multi = {*DIMENSIONS, "tag"}
    if params != {k: (v if len(v) > 1 or k in multi else v[0]) for k, v in _url_params().items()}:
        st.query_params.from_dict(params)
    return view
