"""The dashboard's request log: the view's calls one page at a time (sorted and searched on the
server by ``db.request_log`` through ``dashboard.reads``), and one call's full record on click.
``open_from`` opens the call picked in any of the page's call tables."""

from __future__ import annotations

from dataclasses import replace
from zoneinfo import ZoneInfo

import streamlit as st

from spendlog.dashboard import frames, reads
from spendlog.dashboard.params import SORTS, View
from spendlog.db.queries import Filters
from spendlog.db import request_log as log

__all__ = ["LOG_SORTS", "open_from", "request_log", "call_detail"]

LOG_SORTS = {"time": "Newest first", "cost": "Cost (highest first)", "tokens": "Tokens (most first)",
             "latency": "Latency (slowest first)"}


def open_from(key: str, df) -> None:
    """A row picked in table ``key`` opens that call (only when the pick changes)."""
    event = st.session_state.get(key)
    rows = list(getattr(getattr(event, "selection", None), "rows", None) or
                ((event or {}).get("selection", {}).get("rows", []) if isinstance(event, dict) else []))
    seen = st.session_state.get(f"_seen_{key}")
    if rows != seen:
        st.session_state[f"_seen_{key}"] = rows
        if rows and rows[0] < len(df):
            st.session_state["log_call"] = str(df.iloc[rows[0]]["Id"])
            st.rerun()


def request_log(url: str, view: View, current: Filters, total: dict, tick: int | None) -> None:
    """The request log: the view's calls one page at a time, sorted and searched on the server."""
    ss = st.session_state
    zone = ZoneInfo(view.tz)
    with st.container(key="request_log"):
        st.subheader("Request log")
        signature = (current, view.q, view.sort)
        if ss.get("_log_signature") not in (None, signature):
            ss["log_page"] = 1
            ss["log_search_all"] = False
            view = replace(view, page=0)
        ss["_log_signature"] = signature
        left, mid, right = st.columns([3, 2, 1])
        left.text_input("Search", key="log_q", placeholder="model, app, user, tag, request id, error …",
                        max_chars=200)
        mid.selectbox("Sort", list(SORTS), key="log_sort", format_func=LOG_SORTS.__getitem__)
        right.number_input("Page", min_value=1, max_value=1_000_000, step=1, key="log_page")
        found = reads.log_page(url, current, view.q, view.sort, view.page,
                               search_all=bool(ss.get("log_search_all")), as_of=tick)
        count = total["requests"] if not view.q else None
        pages = f" of {max(1, -(-count // found.size)):,}" if count is not None else ""
        shown = (f"{view.page * found.size + 1:,}–{view.page * found.size + len(found.rows):,}"
                 if found.rows else "none")
        st.caption(f"Page {view.page + 1:,}{pages}: calls {shown}"
                   + (f" of {count:,}" if count is not None else (" (more follow)" if found.has_next else ""))
                   + ". Click a row to open the call.")
        if found.searched_since is not None:
            since = found.searched_since.astimezone(zone).strftime("%Y-%m-%d %H:%M")
            note, more = st.columns([4, 1])
            note.caption(f"Searched the newest {log.SEARCH_WINDOW:,} calls of this view (since {since} {view.tz}): "
                         "a text search reads each call, so older calls are searched on request.")
            if more.button("Search all calls", key="log_search_all_button", icon=":material/manage_search:"):
                ss["log_search_all"] = True
                st.rerun()
        df = frames.log_table(found.rows, zone)
        st.dataframe(df, hide_index=True, width="stretch", key="log_table", on_select="rerun",
                     selection_mode="single-row")
        open_from("log_table", df)
        if view.call:
            call_detail(url, view.call, zone)


def call_detail(url: str, call_id: str, zone) -> None:
    record = reads.call(url, call_id)
    with st.container(border=True, key="call_detail"):
        head, close = st.columns([5, 1])
        if record is None:
            head.text(f"No call with id {call_id[:64]}")
        else:
            head.markdown("**Call**")
        if close.button("Close", key="close_call", icon=":material/close:"):
            st.session_state["log_call"] = ""
            st.rerun()
        if record is not None:
            shown = frames.call_record(record, zone)
            if shown.get("error_message"):
                st.text("Error message (in full):")
                st.code(shown["error_message"], language=None, wrap_lines=True)
            st.json(shown, expanded=True)
