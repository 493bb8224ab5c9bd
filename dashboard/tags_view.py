"""The "Spend by tag" section: a tag-key picker and the spend of each of that key's values.

The figures are ``queries.grouped_totals`` by ``tag:KEY`` for the page's filters (the export's
``--by tag:KEY`` numbers, to the last digit); calls without the key are the ``(none)`` bar, so the
bars add up to the page's total. The key round-trips through the URL (``tagby``); keys and values
are shown through ``formatting.label`` as plain text (chart labels and widget options are never
Markdown or HTML).
"""

from __future__ import annotations

import streamlit as st

from spendlog.dashboard import charts, data, frames
from spendlog.dashboard.formatting import label
from spendlog.dashboard.params import View
from spendlog.db.groups import tag_group
from spendlog.db.queries import Filters

__all__ = ["spend_by_tag"]

TOP_VALUES = 15


def spend_by_tag(url: str, view: View, current: Filters, tick: int | None, draw, scan) -> None:
    """Draw the section (``draw``: the page's way to draw a chart), or nothing when no call of the
    range carries a tag. ``scan`` (``dashboard.tag_scan.Scan``): under a tag filter, another key's
    values may wait for its toggle."""
    ss = st.session_state
    everything = Filters(start=current.start, end=current.end)
    keys = data.tag_choices(url, everything, as_of=None)[0]
    if not keys:
        return
    if ss.get("f_tagby") not in keys:  # a key from the link that this range lacks: the biggest one
        ss["f_tagby"] = view.tag_key if view.tag_key in keys else keys[0]
    st.subheader("Spend by tag")
    key = st.selectbox("Tag key", keys, key="f_tagby", format_func=label,
                       help="Each value of this tag; calls without it are (none).")
    changed = ss.get("_tagby_drawn") not in (None, key)
    ss["_tagby_drawn"] = key
    if changed and view.tag_key != key:  # the link (the sidebar writes it from the run's view) follows the
        st.rerun()  # key set above; a picked one is in the view already (no second run of the page)
    group = tag_group(key)
    if not scan.answers(group):
        scan.waits_for("Another tag key's spend within the tag filter")
        return
    rows = data.totals(url, current, (group,), view.tz, as_of=tick)
    draw(charts.top_spenders(frames.top_frame(rows, group, top=TOP_VALUES), "Tag value"))
    st.caption(f"{len(rows):,} value{'s' if len(rows) != 1 else ''} of this tag in the view"
               + (f"; the {TOP_VALUES} biggest shown, the rest as other." if len(rows) > TOP_VALUES else "."))

