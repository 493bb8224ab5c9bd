"""The dashboard's reads: one read-only engine per URL, short-lived cached query results.

The engine lives in ``st.cache_resource``; results live in ``st.cache_data`` keyed on their real
arguments only (URL, ``Filters``, groups, timezone), with a short TTL and a bounded number of
entries. ``as_of`` is the live view's refresh tick (``None`` otherwise): a new tick reads fresh
rows without waiting for the TTL, and sessions watching the same view in one tick share them.
It is keyword-only and required: Streamlit keys the cache on the arguments as passed (a default
left out is not the same key as the same value passed), so every call spells it out. Every money figure comes from ``spendlog.db.queries`` (shared with ``spendlog export``);
non-money reads come from ``spendlog.db.insights``. Connections come from the readers' one helper,
``spendlog.db.engine.read_connection``: database failures become one ``DatabaseUnavailableError``
naming the URL with its password masked.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import streamlit as st
from sqlalchemy.engine import Engine
from streamlit.runtime.scriptrunner import add_script_run_ctx, get_script_run_ctx

from spendlog.db import insights, queries, tag_reads
from spendlog.db import whatif as whatifs
from spendlog.db.engine import NoLedgerError, default_db_url, make_engine, read_connection, read_error
from spendlog.db.errors import DatabaseUnavailableError, DatabaseURLError
from spendlog.db.queries import Filters

__all__ = [
    "TTL_SECONDS",
    "db_url",
    "engine",
    "state",
    "totals",
    "latency",
    "expensive_calls",
    "recent_errors",
    "whatif",
    "tag_choices",
    "read",
    "prefetch",
    "EAGER_SCAN_CALLS",
]

TTL_SECONDS = 10  # the live toggle refreshes at about this pace
EAGER_SCAN_CALLS = 300_000  # above this many calls in the range, a read of every call waits for a click
_MAX_ENTRIES = 256
T = TypeVar("T")


def db_url() -> str:
    """The database the dashboard reads: ``$SPENDLOG_DB_URL`` (the CLI sets it), else the default."""
    return os.environ.get("SPENDLOG_DB_URL") or default_db_url()


@st.cache_resource(show_spinner=False, max_entries=8)
def engine(url: str) -> Engine:
    """A read-only engine (SQLite ``mode=ro``, PostgreSQL read-only transactions), one per URL."""
    return make_engine(url, readonly=True)


def read(url: str, fn: Callable[..., T], *args) -> T:
    """Run ``fn(conn, *args)`` on a pooled read-only connection; failures name the masked URL."""
    try:
        with read_connection(url, engine=engine(url), check_schema=False) as conn:
            return fn(conn, *args)
    except (DatabaseUnavailableError, DatabaseURLError, ValueError):
        raise
    except Exception as exc:  # translated once, here, for the page
        raise read_error(url, exc) from exc


def state(url: str) -> str:
    """``"ready"`` (calls to show), ``"empty"`` (a ledger with no calls, or no ledger file yet).

    Raises ``DatabaseUnavailableError`` / ``DatabaseURLError`` when the database cannot be read."""
    try:
        with read_connection(url, engine=engine(url)) as conn:
            return "ready" if insights.has_calls(conn) else "empty"
    except NoLedgerError:
        return "empty"


def _grouped(conn, filters: Filters, by: tuple[str, ...], tz: str) -> list[dict]:
    return list(queries.grouped_totals(conn, filters, by, tz))


@st.cache_data(ttl=TTL_SECONDS, max_entries=_MAX_ENTRIES, show_spinner=False)
def totals(url: str, filters: Filters, by: tuple[str, ...], tz: str, *, as_of: int | None) -> list[dict]:
    """``queries.grouped_totals`` as a list (cached; see ``as_of`` in the module docstring)."""
    return read(url, _grouped, filters, by, tz)


@st.cache_data(ttl=TTL_SECONDS, max_entries=_MAX_ENTRIES, show_spinner=False)
def latency(url: str, filters: Filters, models: tuple[str | None, ...], *, as_of: int | None) -> list[dict]:
    return read(url, insights.latency_by_model, filters, models)


@st.cache_data(ttl=TTL_SECONDS, max_entries=_MAX_ENTRIES, show_spinner=False)
def expensive_calls(url: str, filters: Filters, *, as_of: int | None) -> list[dict]:
    return read(url, insights.most_expensive_calls, filters)


@st.cache_data(ttl=TTL_SECONDS, max_entries=_MAX_ENTRIES, show_spinner=False)
def recent_errors(url: str, filters: Filters, *, as_of: int | None) -> list[dict]:
    return read(url, insights.recent_errors, filters)


@st.cache_data(ttl=TTL_SECONDS, max_entries=_MAX_ENTRIES, show_spinner=False)
def tag_choices(url: str, filters: Filters, *, as_of: int | None) -> tuple[list[str], list[tuple[str, str]]]:
    """The range's tag keys and (key, value) pairs, most calls first (``db.tag_reads``; cached)."""
    return read(url, tag_reads.tag_choices, filters)


def _whatif(conn, filters: Filters, target: str):
    from spendlog.db.estimate import price_book  # the writer's price book: genai-prices + $SPENDLOG_PRICES

    return whatifs.whatif(conn, price_book(), target, filters)


@st.cache_data(ttl=TTL_SECONDS, max_entries=32, show_spinner=False)
def whatif(url: str, filters: Filters, target: str, *, as_of: int | None):
    """``db.whatif.whatif`` for the view's filters, all of them (reads the matching calls one by
    one, so the page asks only once a model is picked). ``WhatIfError`` for a model nothing prices."""
    return read(url, _whatif, filters, target)


def prefetch(*calls: tuple[Callable, tuple, dict]) -> None:
    """Run cached reads side by side, so the page's own calls (same arguments) find them cached.

    The database does the work in C, outside the GIL, so two reads overlap on two cores. The
    threads carry the script's context (Streamlit's documented ``add_script_run_ctx``) so the
    cache is the page's cache. A failure is left for the page's own call to raise and show."""
    ctx = get_script_run_ctx()

    def run(call: tuple[Callable, tuple, dict]) -> None:
        fn, args, kwargs = call
        add_script_run_ctx(threading.current_thread(), ctx)
        try:
            fn(*args, **kwargs)
        except Exception:  # noqa: BLE001 - the page repeats the call and reports the error
            pass

    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="spendlog-prefetch") as pool:
        list(pool.map(run, calls))
