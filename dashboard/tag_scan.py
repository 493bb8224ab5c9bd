"""Under a tag filter on a big ledger, what the tag rollup cannot answer waits for a click.

``rollup_tags`` holds one tag by model and app (``db.plan``). With one tag filter, the page's
totals, its spend chart, per-model and per-app figures read it (a fraction of a second at 10M
calls). Per user and API key, another tag key's values ("Spend by tag", the change tables) and
the caching panel (which prices by provider) need the calls themselves: every call of the range,
its tags read from their JSON, about 10 s at 10M calls x 3 tags. Past ``data.EAGER_SCAN_CALLS``
calls in the range those wait for this module's toggle, as the most-expensive-calls scan waits
for its own; the rest of the page is drawn meanwhile and each held-back part says why.
"""

from __future__ import annotations

import streamlit as st

from spendlog.dashboard import data
from spendlog.dashboard.changes import SHARED
from spendlog.db.queries import Filters, reads_calls

__all__ = ["SCAN_KEY", "Scan", "scan"]

SCAN_KEY = "scan_tagged"


class Scan:
    """The view's state: ``offered`` (a tag filter over a big range, whose shared breakdown needs the
    calls: the toggle is drawn), ``waiting`` (offered and not turned on), ``calls`` (in the range),
    ``shared`` (the grouping the page shares: ``changes.SHARED``, or while waiting the part of it the
    rollups hold, ``("app", "model")`` under one tag filter)."""

    def __init__(self, current: Filters, offered: bool, calls: int):
        self.current, self.offered, self.calls = current, offered, calls
        self.waiting = offered and not st.session_state.get(SCAN_KEY, False)
        self.shared = tuple(d for d in SHARED if self.answers(d)) if self.waiting else SHARED

    def answers(self, group: str) -> bool:
        """Whether a read grouped by ``group`` (a dimension or ``tag:KEY``) is drawn now: always
        once asked for, else when the rollups hold it (``db.queries.reads_calls``)."""
        return not self.waiting or not reads_calls(self.current, (group,))

    def toggle(self) -> None:
        """The toggle (drawn on every run while offered, so turning it on keeps it on)."""
        if self.offered:  # a short label (a long one is cut at 800 px), what it costs under it
            st.toggle("By user, key and other tags", key=SCAN_KEY)
            st.caption(f"With a tag filter these read all {self.calls:,} calls of the range (several seconds), "
                       "so they wait for this switch.")

    @staticmethod
    def waits_for(what: str) -> None:
        """The line a held-back part shows in its place (``what``: the page's words, no ledger value)."""
        st.caption(f"{what} waits for the toggle under \"Spend by user\": with a tag filter it reads every "
                   "call of the range.")


def scan(url: str, current: Filters) -> Scan:
    """The view's ``Scan``: offered when ``current`` has a tag filter that the rollups answer by
    day, its shared breakdown (``changes.SHARED``) needs the calls, and its range holds more than
    ``data.EAGER_SCAN_CALLS`` calls (a rollup read)."""
    if not current.tags or reads_calls(current, ("day",)) or not reads_calls(current, SHARED):
        return Scan(current, False, 0)
    everything = Filters(start=current.start, end=current.end)
    calls = data.totals(url, everything, (), "UTC", as_of=None)[0]["requests"]
    return Scan(current, calls > data.EAGER_SCAN_CALLS, calls)
