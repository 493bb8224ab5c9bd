"""Charts as ``DataFrame -> alt.Chart`` functions (no queries, no Streamlit).

Bar heights may be floats; every tooltip shows the exact amount from a text column the caller
prepared with ``spendlog.report.money.money_display(..., exact=True)`` (see ``dashboard.frames``).

Shared rules (the helpers below), so every chart reads the same way:

- ``money_format(values)``: the d3 format of a money axis, chosen by the data's magnitude, so
  ticks are distinct and non-zero where the data is: ``$0.0005`` for a ledger of cents,
  ``$0.25`` under a dollar, ``$12.5`` under $1,000, ``$1.2k`` above.
- ``quantity_scale(values)``: a zero-based scale that never collapses to ``[0, 0]`` (which
  draws a ``NaN`` tick when, say, every call in an errors-only view has no tokens).
- ``category_height(n)`` and ``short_name``: a horizontal bar chart is as tall as its
  categories need, every category label is drawn (``labelOverlap`` off), long names are
  shortened on the axis and given whole in the tooltip.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import altair as alt
import pandas as pd

__all__ = [
    "spend_by_model",
    "cumulative_month",
    "tokens_by_period",
    "top_spenders",
    "latency_by_model",
    "error_rate_by_model",
    "errors_over_time",
    "errors_by",
    "budget_lines",
    "STATUS_COLOURS",
    "money_format",
    "quantity_scale",
    "category_height",
    "short_name",
    "SHORT_NAME",
    "BAR_STEP",
]

_HEIGHT = 300
BAR_STEP = 26  # pixels per category row: room for one 12 px label and the bar
SHORT_NAME = 28  # characters of a category label on an axis (whole in the tooltip)


def _finite(values: Iterable) -> list[float]:
    out = []
    for v in values:
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f):
            out.append(f)
    return out


def money_format(values: Iterable) -> str:
    """The d3 format for a money axis whose largest bar (or point) is ``max(values)``."""
    top = max((abs(v) for v in _finite(values)), default=0.0)
    if top >= 1000:
        return "$.3~s"  # $1.2k, $12.5k, $1.25M
    if top >= 1:
        return "$,.2~f"
    if top == 0:
        return "$,.2f"
    # ticks step about a tenth of the top: enough decimals that each step shows
    places = min(10, max(2, math.ceil(-math.log10(top / 10))))
    return f"$,.{places}~f"


def quantity_scale(values: Iterable) -> alt.Scale:
    """A zero-based linear scale; ``[0, 1]`` when there is nothing above zero (no NaN tick)."""
    top = max(_finite(values), default=0.0)
    return alt.Scale(domainMin=0) if top > 0 else alt.Scale(domain=[0, 1])


def category_height(n: int, per: int = 1) -> int:
    """Pixel height of a horizontal bar chart with ``n`` categories of ``per`` bars each."""
    return max(80, n * BAR_STEP * per + 40)


def short_name(name: str, limit: int = SHORT_NAME) -> str:
    """``name`` cut to ``limit`` characters with an ellipsis (for axis labels only)."""
    name = str(name)
    return name if len(name) <= limit else name[: limit - 1] + "…"


def _stacked_tops(df: pd.DataFrame, by: str, value: str) -> list[float]:
    if df.empty:
        return []
    return [float(v) for v in df.groupby(by)[value].sum()]


def _category_axis(title=None) -> alt.Axis:
    return alt.Axis(title=title, labelOverlap=False, labelLimit=0, labelPadding=4)


def _with_short(df: pd.DataFrame, column: str) -> pd.DataFrame:
    """A copy with ``<column>_short``: the axis label, unique per full name."""
    df = df.copy()
    shorts: dict[str, str] = {}
    used: set[str] = set()
    for full in dict.fromkeys(str(v) for v in df[column]):
        s = short_name(full)
        n = 2
        while s in used:  # two long names that share their first characters stay apart
            s = short_name(full, SHORT_NAME - 3)[:-1] + f"…{n}"
            n += 1
        used.add(s)
        shorts[full] = s
    df[f"{column}_short"] = [shorts[str(v)] for v in df[column]]
    return df


def spend_by_model(df: pd.DataFrame) -> alt.Chart:
    """Stacked bars of spend per period, a colour per model.

    Columns: period (str, sortable), model (str), cost (float), cost_exact (str), requests (int)."""
    tops = _stacked_tops(df, "period", "cost")
    return (
        alt.Chart(df, height=_HEIGHT)
        .mark_bar()
        .encode(
            x=alt.X("period:O", title=None, sort="ascending", axis=alt.Axis(labelAngle=-45, labelOverlap=True)),
            y=alt.Y("sum(cost):Q", title="Spend (USD)", axis=alt.Axis(format=money_format(tops)),
                    scale=quantity_scale(tops)),
            color=alt.Color("model:N", title="Model", legend=alt.Legend(orient="bottom", columns=2, labelLimit=260)),
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
    values = list(df["cumulative"]) if not df.empty else []
    return (
        alt.Chart(df, height=_HEIGHT)
        .mark_line(point=True)
        .encode(
            x=alt.X("day:T", title=None, axis=alt.Axis(format="%b %d")),
            y=alt.Y("cumulative:Q", title="Cumulative spend (USD)", axis=alt.Axis(format=money_format(values)),
                    scale=quantity_scale(values)),
            color=alt.Color("kind:N", title=None, scale=alt.Scale(domain=["actual", "projection"],
                                                                  range=["#4c78a8", "#9a9a9a"]),
                            legend=alt.Legend(orient="bottom")),
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
    tops = _stacked_tops(df, "period", "tokens")
    return (
        alt.Chart(df, height=_HEIGHT)
        .mark_bar()
        .encode(
            x=alt.X("period:O", title=None, axis=alt.Axis(labelAngle=-45, labelOverlap=True)),
            y=alt.Y("sum(tokens):Q", title="Tokens", axis=alt.Axis(format="~s"), scale=quantity_scale(tops)),
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
    """Horizontal bars, biggest first, "other" (grey) last; one label per bar.

    Columns: name, cost, cost_exact, share, rank, group ('top'|'other')."""
    df = _with_short(df, "name")
    values = list(df["cost"])
    return (
        alt.Chart(df, height=category_height(len(df)))
        .mark_bar()
        .encode(
            y=alt.Y("name_short:N", sort=alt.EncodingSortField("rank", order="ascending"),
                    axis=_category_axis(title)),
            x=alt.X("cost:Q", title="Spend (USD)", axis=alt.Axis(format=money_format(values), labelOverlap=True, labelFlush=True),
                    scale=quantity_scale(values)),
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
    df = _with_short(df, "model")
    values = list(df["ms"])
    return (
        alt.Chart(df, height=category_height(df["model"].nunique(), per=2))
        .mark_bar()
        .encode(
            y=alt.Y("model_short:N", axis=_category_axis()),
            yOffset=alt.YOffset("percentile:N", sort=["p50", "p95"]),
            x=alt.X("ms:Q", title="Latency (ms)", scale=quantity_scale(values), axis=alt.Axis(labelOverlap=True, labelFlush=True)),
            color=alt.Color("percentile:N", title=None, sort=["p50", "p95"], legend=alt.Legend(orient="bottom")),
            tooltip=[
                alt.Tooltip("model:N", title="Model"),
                alt.Tooltip("percentile:N", title="Percentile"),
                alt.Tooltip("ms:Q", title="ms", format=","),
                alt.Tooltip("sample:Q", title="Calls sampled", format=","),
            ],
        )
    )


def _rate_chart(df: pd.DataFrame, column: str, title: str | None) -> alt.Chart:
    df = _with_short(df, column)
    return (
        alt.Chart(df, height=category_height(len(df)))
        .mark_bar(color="#e45756")
        .encode(
            y=alt.Y(f"{column}_short:N", sort=alt.EncodingSortField("rate", order="descending"),
                    axis=_category_axis(title)),
            x=alt.X("rate:Q", title="Error rate (of all calls)", axis=alt.Axis(format=".1~%", labelOverlap=True, labelFlush=True),
                    scale=quantity_scale(df["rate"])),
            tooltip=[
                alt.Tooltip(f"{column}:N", title=title or column.capitalize()),
                alt.Tooltip("rate:Q", title="Error rate", format=".2%"),
                alt.Tooltip("errors:Q", title="Errors", format=","),
                alt.Tooltip("requests:Q", title="All calls", format=","),
            ],
        )
    )


def error_rate_by_model(df: pd.DataFrame) -> alt.Chart:
    """Error rate per model. Columns: model, rate (float 0..1), errors (int), requests (int)."""
    return _rate_chart(df, "model", None)


def errors_by(df: pd.DataFrame, column: str, title: str) -> alt.Chart:
    """Error rate per ``column`` (model, app, ...). Columns: <column>, rate, errors, requests."""
    return _rate_chart(df, column, title)


def errors_over_time(df: pd.DataFrame) -> alt.Chart:
    """Errors per period, stacked by kind (error type and status). Columns: period, kind, errors."""
    tops = _stacked_tops(df, "period", "errors")
    return (
        alt.Chart(df, height=_HEIGHT)
        .mark_bar()
        .encode(
            x=alt.X("period:O", title=None, axis=alt.Axis(labelAngle=-45, labelOverlap=True)),
            y=alt.Y("sum(errors):Q", title="Errors", axis=alt.Axis(format=",d", tickMinStep=1),
                    scale=quantity_scale(tops)),
            color=alt.Color("kind:N", title="Error (status)", legend=alt.Legend(orient="bottom", columns=2,
                                                                               labelLimit=260)),
            tooltip=[
                alt.Tooltip("period:O", title="Period"),
                alt.Tooltip("kind:N", title="Error (status)"),
                alt.Tooltip("errors:Q", title="Errors", format=","),
            ],
        )
    )


STATUS_COLOURS = {"ok": "#54a24b", "warning": "#f2a93b", "over": "#e45756"}


BUDGET_AXIS_MAX = 200.0  # percent of the line


def budget_lines(df: pd.DataFrame) -> alt.Chart:
    """Each budget's spend as a percent of its line (bar, coloured by status), its forecast (a
    black tick) and the line itself (100%, a rule). Columns: budget, spent_pct, forecast_pct,
    status, spent, amount, forecast (the last three exact money text, for the tooltip)."""
    df = _with_short(df, "budget")
    # the axis stops at BUDGET_AXIS_MAX: one forecast at 1,500% of its line flattened every other bar to a
    # sliver; marks past it are clipped at the edge (the tooltip and the table say the figure)
    top = min(BUDGET_AXIS_MAX, max([100.0, *_finite(df["spent_pct"]), *_finite(df["forecast_pct"])]))
    y = alt.Y("budget_short:N", sort=None, axis=_category_axis("Budget"))
    x_scale = alt.Scale(domain=[0, top * 1.05], clamp=True)
    tooltip = [alt.Tooltip("budget:N", title="Budget"), alt.Tooltip("spent:N", title="Spent"),
               alt.Tooltip("amount:N", title="Line"), alt.Tooltip("forecast:N", title="Forecast"),
               alt.Tooltip("status:N", title="Status")]
    base = alt.Chart(df, height=category_height(len(df)))
    bars = base.mark_bar().encode(
        y=y, x=alt.X("spent_pct:Q", title="Spent (% of the line)", scale=x_scale),
        color=alt.Color("status:N", legend=alt.Legend(title="Status", orient="bottom"),
                        scale=alt.Scale(domain=list(STATUS_COLOURS), range=list(STATUS_COLOURS.values()))),
        tooltip=tooltip)
    ticks = base.mark_tick(color="black", thickness=2).encode(y=y, x=alt.X("forecast_pct:Q", scale=x_scale),
                                                                tooltip=tooltip)
    # the line from the same data (one frame for the page's chart path: dashboard.page._chart)
    line = base.mark_rule(strokeDash=[4, 3], color="#444").encode(x=alt.datum(100.0, scale=x_scale))
    return alt.layer(bars, ticks, line, data=df).properties(height=category_height(len(df)))
