"""The page's reads beyond the totals: the request log, hourly sums, error kinds, one call.

Cached like ``dashboard.data`` (keyed on their real arguments, ``as_of`` the live tick) and run
through ``data.read`` (read-only engine, failures as one masked line). The queries live in
``spendlog.db.request_log`` and ``spendlog.db.hourly``: no SQL here.
"""

from __future__ import annotations

from datetime import date

import streamlit as st

from spendlog.dashboard import data
from spendlog.dashboard.params import ALL_TIME_START
from spendlog.db import hourly, request_log
from spendlog.db.periods import get_zone
from spendlog.db.queries import Filters

__all__ = ["log_page", "log_count", "call", "hourly_totals", "error_kinds", "first_day", "all_time_start"]

_TTL = data.TTL_SECONDS


@st.cache_data(ttl=_TTL, max_entries=64, show_spinner=False)
def log_page(url: str, filters: Filters, search: str, sort: str, page: int, *, search_all: bool = False,
             as_of: int | None):
    window = request_log.SEARCH_WINDOW  # read at call time (a test narrows it)
    return data.read(url, lambda conn: request_log.log_page(conn, filters, search=search, sort=sort, page=page,
                                                            search_all=search_all, window=window))


@st.cache_data(ttl=_TTL, max_entries=64, show_spinner=False)
def log_count(url: str, filters: Filters, search: str, *, as_of: int | None) -> int:
    return data.read(url, lambda conn: request_log.log_count(conn, filters, search=search))


@st.cache_data(ttl=_TTL, max_entries=64, show_spinner=False)
def call(url: str, call_id: str) -> dict | None:
    return data.read(url, request_log.get_call, call_id)


@st.cache_data(ttl=_TTL, max_entries=64, show_spinner=False)
def hourly_totals(url: str, filters: Filters, *, as_of: int | None) -> list[dict]:
    return data.read(url, lambda conn: list(hourly.hourly_totals(conn, filters)))


@st.cache_data(ttl=_TTL, max_entries=64, show_spinner=False)
def error_kinds(url: str, filters: Filters, minutes: int, *, as_of: int | None) -> list[dict]:
    return data.read(url, lambda conn: request_log.error_kinds(conn, filters, minutes=minutes))


@st.cache_data(ttl=_TTL, max_entries=8, show_spinner=False)
def first_day(url: str, tz: str, *, as_of: int | None) -> date | None:
    first = data.read(url, request_log.first_call_at)
    return first.astimezone(get_zone(tz)).date() if first is not None else None


def all_time_start(url: str, end: date, tz: str, *, as_of: int | None) -> date:
    """Where "All time" starts: the first call's local day (the preset's own start when none is older)."""
    first = first_day(url, tz, as_of=as_of)
    return first if first is not None and first <= end else ALL_TIME_START
