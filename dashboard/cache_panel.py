"""The prompt-caching panel (issue 15): per model and app, the cache hit rate (cached / prompt
tokens) and what caching saved at list prices (``spendlog.db.caching``: the dated genai-prices
price of each call's day; a model nothing prices says "no price", never $0).

Cached like ``dashboard.data``; the text comes from ``spendlog.report.changes`` (money by
``report.money``), ledger values through ``formatting.label``. No SQL here.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import streamlit as st

from spendlog.dashboard import data
from spendlog.dashboard.changes import SHARED
from spendlog.dashboard.formatting import format_count, label
from spendlog.db.caching import CacheRow, cache_savings, cache_total
from spendlog.db.queries import Filters
from spendlog.report.changes import hit_rate_text, saved_text

__all__ = ["rows", "cache_table", "panel"]

COLUMNS = ["Model", "App", "Prompt tokens", "Cached tokens", "Hit rate", "Saved"]


def _read(conn, filters: Filters, shared: list[dict]) -> list[CacheRow]:
    from spendlog.db.estimate import price_book  # the writer's price book: genai-prices + $SPENDLOG_PRICES

    return cache_savings(conn, filters, price_book(), rows=shared)


@st.cache_data(ttl=data.TTL_SECONDS, max_entries=64, show_spinner=False)
def rows(url: str, filters: Filters, tz: str, *, as_of: int | None) -> list[CacheRow]:
    """``db.caching.cache_savings`` for the view, from the read the change tables share
    (``changes.SHARED``); a model whose price changes in the range is read again per day."""
    shared = data.totals(url, filters, SHARED, tz, as_of=as_of)
    return data.read(url, _read, filters, shared)


def cache_table(found: Sequence[CacheRow]) -> pd.DataFrame:
    """The pairs that sent prompt tokens, most saved first."""
    records = [{"Model": label(r.model), "App": label(r.app), "Prompt tokens": format_count(r.prompt_tokens),
                "Cached tokens": format_count(r.cached_tokens), "Hit rate": hit_rate_text(r), "Saved": saved_text(r)}
               for r in found]
    return pd.DataFrame(records, columns=COLUMNS)


def panel(url: str, current: Filters, tz: str, tick: int | None, scan) -> None:
    """The section: the range's total, then the table per model and app. ``scan``
    (``dashboard.tag_scan.Scan``): under a tag filter it may wait (it prices by provider)."""
    st.subheader("Prompt caching")
    if not scan.answers("provider"):
        scan.waits_for("Caching under a tag filter (priced by provider)")
        return
    found = rows(url, current, tz, as_of=tick)
    total = cache_total(found)
    st.text(f"{format_count(total.cached_tokens)} of {format_count(total.prompt_tokens)} prompt tokens were cached "
            f"({hit_rate_text(total)}); caching saved {saved_text(total)} at list prices.")
    if found:
        st.dataframe(cache_table(found), hide_index=True, width="stretch", key="cache_table")
    st.caption("Saved: the cached tokens at the model's uncached list input price minus their cost at its cached "
               "price, at the price of each call's day. \"no price\": nothing prices the model.")
