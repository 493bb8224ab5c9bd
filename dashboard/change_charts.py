"""The spend-per-period chart with its issue-15 layers: the previous period's spend as a dashed
line (the overlay) and the spend spikes as red marks whose tooltip is the spike's explanation.

``spend_spec(frame, previous, spikes)`` returns a Vega-Lite spec (a dict) for
``st.vega_lite_chart(frame, spec)``: the bars are ``charts.spend_by_model`` over the page's frame
(Streamlit ships it as Arrow), the two extra layers carry their few rows inline (one per period /
spike). Tooltips are text (Vega's tooltip escapes it): ledger values arrive already passed through
``formatting.label``. No queries, no Streamlit here.
"""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import pandas as pd

from spendlog.dashboard.charts import money_format, quantity_scale, spend_by_model

__all__ = ["spend_spec", "PREVIOUS_COLOR", "SPIKE_COLOR"]

PREVIOUS_COLOR = "#555555"
SPIKE_COLOR = "#d62728"
_TITLE = "Spend (USD)"


def _tops(frame: pd.DataFrame, previous: Sequence[dict], spikes: Sequence[dict]) -> list[float]:
    tops = [float(v) for v in frame.groupby("period")["cost"].sum()] if not frame.empty else []
    return tops + [r["cost"] for r in previous] + [r["cost"] for r in spikes]


def spend_spec(frame: pd.DataFrame, previous: Sequence[dict] = (), spikes: Sequence[dict] = ()) -> dict:
    """The chart's spec. ``previous``: ``{period, cost, cost_exact, previous_period}`` rows (the
    previous period's spend, each placed on the current period it lines up with); ``spikes``:
    ``{period, cost, cost_exact, explanation}`` rows (the spike day's total and its one line)."""
    tops = _tops(frame, previous, spikes)
    y_axis = alt.Axis(format=money_format(tops))
    bars = spend_by_model(frame).encode(
        y=alt.Y("sum(cost):Q", title=_TITLE, axis=y_axis, scale=quantity_scale(tops)))
    spec = bars.properties(data=alt.Data(name="frame")).to_dict(validate=False)
    for key in ("config", "data", "datasets", "$schema"):
        spec.pop(key, None)
    if not previous and not spikes:
        return spec
    height = spec.pop("height", None)
    layers = [spec]
    x = {"field": "period", "type": "ordinal", "title": None, "sort": "ascending"}
    y = {"field": "cost", "type": "quantitative", "title": _TITLE}
    if previous:
        layers.append({
            "data": {"values": list(previous)},
            "mark": {"type": "line", "point": {"filled": True, "color": PREVIOUS_COLOR}, "strokeDash": [6, 4],
                     "color": PREVIOUS_COLOR},
            "encoding": {"x": x, "y": y, "tooltip": [
                {"field": "period", "type": "ordinal", "title": "Period"},
                {"field": "previous_period", "type": "nominal", "title": "Previous period"},
                {"field": "cost_exact", "type": "nominal", "title": "Spend then"}]},
        })
    if spikes:
        layers.append({
            "data": {"values": list(spikes)},
            "mark": {"type": "point", "shape": "triangle-down", "filled": True, "size": 160, "color": SPIKE_COLOR,
                     "yOffset": -8},
            "encoding": {"x": x, "y": y, "tooltip": [
                {"field": "explanation", "type": "nominal", "title": "Spend spike"}]},
        })
    out = {"layer": layers}
    if height is not None:
        out["height"] = height
    return out
