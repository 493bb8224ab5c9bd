"""Charts as ``DataFrame -> alt.Chart`` functions (no queries, no Streamlit).

Bar heights may be floats; every tooltip shows the exact amount from a text column the caller
prepared with ``formatting.format_money_exact`` (see ``dashboard.frames``).
"""

from __future__ import annotations

import altair as alt
import pandas as pd

__all__ = [
    "spend_by_model",
    "cumulative_month",
    "tokens_by_period",
    "top_spenders",
    "latency_by_model",
    "error_rate_by_model",
]

_HEIGHT = 300


def spend_by_model(df: pd.DataFrame) -> alt.Chart:
    """Stacked bars of spend per period, a colour per model.

    Columns: period (str, sortable), model (str), cost (float), cost_exact (str), requests (int)."""
    return (
        alt.Chart(df, height=_HEIGHT)
        .mark_bar()
        .encode(
            x=alt.X("period:O", title=None, sort="ascending", axis=alt.Axis(labelAngle=-45, labelOverlap=True)),
            y=alt.Y("sum(cost):Q", title="Spend (USD)", axis=alt.Axis(format="$,.2~f")),
            color=alt.Color("model:N", title="Model", legend=alt.Legend(orient="bottom", columns=3, labelLimit=320)),
            order=alt.Order("model:N"),
            tooltip=[
                alt.Tooltip("period:O", title="Period"),
                alt.Tooltip("model:N", title="Model"),
                alt.Tooltip("cost_exact:N", title="Spend"),
                alt.Tooltip("requests:Q", title="Requests", format=","),
            ],
        )
    )


def cumulative_month(df: pd.DataFrame) -> alt.Chart:
    """Cumulative spend this month, solid, and the month-end projection, dashed.

    Columns: day (datetime64), cumulative (float), cumulative_exact (str), kind ('actual'|'projection')."""
    return (
        alt.Chart(df, height=_HEIGHT)
        .mark_line(point=True)
        .encode(
            x=alt.X("day:T", title=None, axis=alt.Axis(format="%b %d")),
            y=alt.Y("cumulative:Q", title="Cumulative spend (USD)", axis=alt.Axis(format="$,.2~f")),
            color=alt.Color("kind:N", title=None, scale=alt.Scale(domain=["actual", "projection"],
                                                                  range=["#4c78a8", "#9a9a9a"])),
            strokeDash=alt.StrokeDash("kind:N", legend=None,
                                      scale=alt.Scale(domain=["actual", "projection"], range=[[1, 0], [6, 4]])),
            tooltip=[
                alt.Tooltip("day:T", title="Day", format="%Y-%m-%d"),
                alt.Tooltip("kind:N", title="Series"),
                alt.Tooltip("cumulative_exact:N", title="Cumulative"),
            ],
        )
    )


def tokens_by_period(df: pd.DataFrame) -> alt.Chart:
    """Prompt vs completion tokens per period. Columns: period (str), kind (str), tokens (int)."""
    return (
        alt.Chart(df, height=_HEIGHT)
        .mark_bar()
        .encode(
            x=alt.X("period:O", title=None, axis=alt.Axis(labelAngle=-45, labelOverlap=True)),
            y=alt.Y("sum(tokens):Q", title="Tokens", axis=alt.Axis(format="~s")),
            color=alt.Color("kind:N", title=None, scale=alt.Scale(domain=["prompt", "completion"]),
                            legend=alt.Legend(orient="bottom")),
            order=alt.Order("kind:N", sort="descending"),
            tooltip=[
                alt.Tooltip("period:O", title="Period"),
                alt.Tooltip("kind:N", title="Tokens"),
                alt.Tooltip("tokens:Q", title="Count", format=","),
            ],
        )
    )


def top_spenders(df: pd.DataFrame, title: str) -> alt.Chart:
    """Horizontal bars, biggest first, "other" (grey) last.

    Columns: name, cost, cost_exact, share, rank, group ('top'|'other')."""
    return (
        alt.Chart(df, height=max(120, 28 * len(df)))
        .mark_bar()
        .encode(
            y=alt.Y("name:N", title=title, sort=alt.EncodingSortField("rank", order="ascending"),
                    axis=alt.Axis(labelLimit=260)),
            x=alt.X("cost:Q", title="Spend (USD)", axis=alt.Axis(format="$,.2~f")),
            color=alt.Color("group:N", legend=None,
                            scale=alt.Scale(domain=["top", "other"], range=["#4c78a8", "#bbbbbb"])),
            tooltip=[
                alt.Tooltip("name:N", title=title),
                alt.Tooltip("cost_exact:N", title="Spend"),
                alt.Tooltip("share:N", title="Share"),
            ],
        )
    )


def latency_by_model(df: pd.DataFrame) -> alt.Chart:
    """p50 and p95 latency per model, side by side. Columns: model, percentile ('p50'|'p95'), ms, sample."""
    return (
        alt.Chart(df, height=_HEIGHT)
        .mark_bar()
        .encode(
            y=alt.Y("model:N", title=None, axis=alt.Axis(labelLimit=260)),
            yOffset=alt.YOffset("percentile:N", sort=["p50", "p95"]),
            x=alt.X("ms:Q", title="Latency (ms)"),
            color=alt.Color("percentile:N", title=None, sort=["p50", "p95"], legend=alt.Legend(orient="bottom")),
            tooltip=[
                alt.Tooltip("model:N", title="Model"),
                alt.Tooltip("percentile:N", title="Percentile"),
                alt.Tooltip("ms:Q", title="ms", format=","),
                alt.Tooltip("sample:Q", title="Calls sampled", format=","),
            ],
        )
    )


def error_rate_by_model(df: pd.DataFrame) -> alt.Chart:
    """Error rate per model. Columns: model, rate (float 0..1), errors (int), requests (int)."""
    return (
        alt.Chart(df, height=_HEIGHT)
        .mark_bar(color="#e45756")
        .encode(
            y=alt.Y("model:N", title=None, axis=alt.Axis(labelLimit=260)),
            x=alt.X("rate:Q", title="Error rate", axis=alt.Axis(format="%"), scale=alt.Scale(domainMin=0)),
            tooltip=[
                alt.Tooltip("model:N", title="Model"),
                alt.Tooltip("rate:Q", title="Error rate", format=".2%"),
                alt.Tooltip("errors:Q", title="Errors", format=","),
                alt.Tooltip("requests:Q", title="Requests", format=","),
            ],
        )
    )
