"""The what-if panel: what the view's calls would have cost on another model (``db.whatif``).

The table is ``spendlog whatif``'s: per source model, requests, actual cost (billed plus
estimated), cost on the chosen model, the difference. Reading it prices every call of the range
again, so nothing is read until a model is picked. No SQL here: ``dashboard.data.whatif``.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import streamlit as st

from spendlog.dashboard import data
from spendlog.dashboard.formatting import format_count, label
from spendlog.db.queries import Filters
from spendlog.db.whatif import WhatIfError
from spendlog.report.money import money_display

__all__ = ["whatif_table", "panel"]

KEY = "whatif_model"


def whatif_table(result) -> pd.DataFrame:
    """``db.whatif.whatif``'s result as display rows: each source model, then the total."""
    records = []
    for r in [*result.rows, result.total]:
        diff = r.difference_usd
        records.append({
            "Model": "Total" if r is result.total else label(r.model or None),
            "Requests": format_count(r.requests),
            "Actual cost": money_display(r.actual_cost_usd),
            f"Cost on {label(result.target)}": money_display(r.cost_as_usd),
            "Difference": ("+" if diff > 0 else "") + money_display(diff),
            "Unpriced": format_count(r.unpriced),
        })
    return pd.DataFrame(records)


def panel(url: str, current: Filters, models: Sequence[str], tick: int | None) -> None:
    """The section: pick a model, see the view's calls priced on it."""
    st.subheader("What if")
    target = st.selectbox("Price the same calls (same tokens) as", list(models), index=None, key=KEY,
                          placeholder="Pick a model", format_func=label)
    if target is None:
        st.caption("Pick a model to see what this view's calls would have cost on it, at its price on each "
                   "call's own date.")
        return
    try:
        result = data.whatif(url, current, target, as_of=tick)
    except WhatIfError:
        st.info("No price is known for this model: pick another one.")
        return
    st.dataframe(whatif_table(result), hide_index=True, width="stretch")
    st.text(f"{label(target)} priced by {result.target_entry}.")  # ledger and price names: plain text
    st.caption(f"Calls without token counts are not priced on it ({format_count(result.total.not_priced_as)} "
               "here). Actual cost is billed plus estimated; unpriced calls add nothing to it.")
