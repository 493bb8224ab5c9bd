"""CSV downloads of what is on screen, written by the same code as ``spendlog export``.

Files are built only when a button is clicked (Streamlit's deferred ``data`` callable, run on its
own thread with its own short-lived read-only connection, ``read_connection``), never on every rerun.
"""

from __future__ import annotations

from datetime import date

import streamlit as st

from spendlog.db.engine import read_connection
from spendlog.db.queries import Filters
from spendlog.report import files

__all__ = ["buttons", "grouped_csv", "calls_csv", "RAW_ROW_LIMIT"]

RAW_ROW_LIMIT = 200_000  # larger raw downloads belong to `spendlog export --by call -o FILE`


def grouped_csv(url: str, filters: Filters, by: tuple[str, ...], tz: str) -> bytes:
    """``spendlog export --by <by>`` of ``filters`` as CSV bytes."""
    with read_connection(url) as conn:
        return files.grouped_csv(conn, filters, list(by), tz)


def calls_csv(url: str, filters: Filters) -> bytes:
    """``spendlog export --by call`` of ``filters`` as CSV bytes."""
    with read_connection(url) as conn:
        return files.calls_csv(conn, filters)


def buttons(url: str, filters: Filters, granularity: str, tz: str, start: date, end: date, calls: int) -> None:
    """Two download buttons: the by-period-by-model view, and the filtered raw calls."""
    stem = f"spendlog_{start.isoformat()}_{end.isoformat()}"
    left, right = st.columns(2)
    by = (granularity, "model")
    left.download_button(
        f"Download spend per {granularity} per model (CSV)", data=lambda: grouped_csv(url, filters, by, tz),
        file_name=f"{stem}_{granularity}_model.csv", mime="text/csv", on_click="ignore",
        icon=":material/download:", key="dl_grouped",
        help=f"Same file as `spendlog export --by {granularity},model`, with the sidebar's filters.")
    too_many = calls > RAW_ROW_LIMIT
    right.download_button(
        "Download raw calls (CSV)", data=(lambda: calls_csv(url, filters)) if not too_many else b"",
        file_name=f"{stem}_calls.csv", mime="text/csv", on_click="ignore", icon=":material/download:",
        key="dl_calls", disabled=too_many,
        help=(f"{calls:,} calls: more than {RAW_ROW_LIMIT:,}; use `spendlog export --by call -o FILE`."
              if too_many else "Same file as `spendlog export --by call`, with the sidebar's filters."))
