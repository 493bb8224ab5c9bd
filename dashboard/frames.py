"""From query rows to what the page shows: chart DataFrames, table rows and headline metrics.

Inputs are the dicts of ``spendlog.db.queries.grouped_totals`` (money as exact ``Decimal``) and
``spendlog.db.insights``. Money is summed as ``Decimal`` here (exact); floats appear only as bar
heights, next to an exact text column for tooltips. No Streamlit, no SQL.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pandas as pd

from spendlog.db.periods import next_period_start, period_start
from spendlog.db.models import MONEY_MEASURES
from spendlog.db.queries import MEASURES as READ_MEASURES

from spendlog.dashboard.formatting import format_count, format_delta, format_percent, label, safe_hint
from spendlog.dashboard.prices import markup, signed_percent, spend_split, total_label
from spendlog.report.money import money_display

__all__ = [
    "MEASURES",
    "Metric",
    "TOP_MODELS",
    "period_label",
    "sum_rows",
    "regroup",
    "by_period",
    "headline",
    "spend_frame",
    "tokens_frame",
    "model_table",
    "top_frame",
    "month_frame",
    "latency_frame",
    "error_frame",
    "calls_table",
    "hourly_rows",
    "error_kind",
    "errors_time_frame",
    "rate_frame",
    "log_table",
    "call_record",
]

MEASURES = READ_MEASURES  # the read layer's sums, under its names: one list
TOP_MODELS = 10  # colours in the stacked chart; the rest are summed as "other"
OTHER = "other"
MILLION = Decimal(1_000_000)


def period_label(value, granularity: str) -> str:
    """``2025-01-31`` (day), ``2025-W05`` (ISO week), ``2025-01`` (month), ``01-31 14:00``
    (hour: a local datetime): sortable as text (an hourly view spans at most a few days)."""
    if granularity == "hour":
        return value.strftime("%m-%d %H:%M")
    if granularity == "week":
        year, week, _ = value.isocalendar()
        return f"{year}-W{week:02d}"
    if granularity == "month":
        return f"{value.year}-{value.month:02d}"
    return value.isoformat()


def sum_rows(rows: Iterable[dict]) -> dict:
    """Add up grouped rows' measures exactly (Decimal money, int counts)."""
    total = {m: Decimal(0) if m in MONEY_MEASURES else 0 for m in MEASURES}
    for row in rows:
        for m in MEASURES:
            total[m] += row.get(m) or 0
    return total


def regroup(rows: Iterable[dict], dim: str) -> list[dict]:
    """Collapse grouped rows onto one of their dimensions (exact sums), ordered by that value."""
    groups: dict = {}
    for row in rows:
        groups.setdefault(row[dim], []).append(row)
    out = []
    for value in sorted(groups, key=lambda v: (v is None, v or "")):
        merged = sum_rows(groups[value])
        merged[dim] = value
        out.append(merged)
    return out


def by_period(day_rows: Iterable[dict], granularity: str, dim: str = "model") -> list[dict]:
    """Per-day rows -> per ``granularity`` (``day``/``week``/``month``) x ``dim`` rows, exact sums.

    Local days nest in local weeks and months, so this equals asking the read layer for the
    coarser period (``db.periods.period_start`` is the read layer's own mapping)."""
    groups: dict[tuple, list[dict]] = {}
    for row in day_rows:
        key = (period_start(row["day"], granularity), row[dim])
        groups.setdefault(key, []).append(row)
    out = []
    for (period, value) in sorted(groups, key=lambda k: (k[0], k[1] is None, k[1] or "")):
        merged = sum_rows(groups[(period, value)])
        merged[granularity] = period
        merged[dim] = value
        out.append(merged)
    return out


@dataclass(frozen=True)
class Metric:
    label: str
    value: str
    delta: str | None
    delta_color: str  # "normal" | "inverse" | "off"
    help: str | None = None


def _rate(num: int, den: int) -> Decimal | None:
    return None if not den else Decimal(num) / Decimal(den)


def _pp_delta(cur: Decimal | None, prev: Decimal | None) -> str | None:
    if cur is None or prev is None:
        return None
    pp = ((cur - prev) * 100).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
    return f"{'+' if pp >= 0 else ''}{format(pp, 'f')} pp"


def headline(cur: dict, prev: dict, base: dict | None = None, prev_base: dict | None = None) -> list[Metric]:
    """The seven headline metrics with their change against the previous period.

    ``base`` / ``prev_base``: the same view's totals without the status filter; the error rate
    is errors over all of those calls (an errors-only view is not "100% errors")."""
    base, prev_base = base or cur, prev_base or prev
    cur_avg = cur["cost_usd"] / cur["requests"] if cur["requests"] else None
    prev_avg = prev["cost_usd"] / prev["requests"] if prev["requests"] else None
    cur_err, prev_err = _rate(cur["errors"], base["requests"]), _rate(prev["errors"], prev_base["requests"])
    cur_miss = _rate(cur["calls_missing_cost"], cur["requests"])
    prev_miss = _rate(prev["calls_missing_cost"], prev["requests"])
    return [
        Metric(total_label(cur), money_display(cur["cost_usd"]), format_delta(cur["cost_usd"], prev["cost_usd"]),
               "inverse", f"Exactly {money_display(cur['cost_usd'], exact=True)}: {spend_split(cur)}. "
                          f"Previous period {money_display(prev['cost_usd'], exact=True)}"),
        Metric("Requests", format_count(cur["requests"]), format_delta(cur["requests"], prev["requests"]), "off"),
        Metric("Prompt tokens", format_count(cur["prompt_tokens"]),
               format_delta(cur["prompt_tokens"], prev["prompt_tokens"]), "off"),
        Metric("Completion tokens", format_count(cur["completion_tokens"]),
               format_delta(cur["completion_tokens"], prev["completion_tokens"]), "off"),
        Metric("Avg cost / request", money_display(cur_avg), format_delta(cur_avg, prev_avg), "inverse",
               "Total spend divided by all requests in the period."),
        Metric("Error rate", format_percent(cur["errors"], base["requests"]), _pp_delta(cur_err, prev_err),
               "inverse", "Errors over all calls of the view (whatever the status filter): HTTP status >= 400, "
                          "transport failures and stream errors (not cancellations)."),
        Metric("Missing cost", format_percent(cur["calls_missing_cost"], cur["requests"]),
               _pp_delta(cur_miss, prev_miss), "inverse",
               "Share of calls with no cost: no bill from the upstream and no price to estimate one "
               "(an unknown model, no token counts). Their spend is not in the total."),
    ]


def _ranked_models(rows: Sequence[dict], limit: int) -> list:
    spend: dict = {}
    for r in rows:
        spend[r["model"]] = spend.get(r["model"], Decimal(0)) + r["cost_usd"]
    ordered = sorted(spend, key=lambda m: (-spend[m], label(m)))
    return ordered[:limit]


def spend_frame(rows: Sequence[dict], granularity: str, top: int = TOP_MODELS) -> pd.DataFrame:
    """Spend per period x model (the ``top`` models by spend, the rest as "other")."""
    keep = set(_ranked_models(rows, top))
    cells: dict[tuple[str, str], list] = {}
    for r in rows:
        model = label(r["model"]) if r["model"] in keep else OTHER
        key = (period_label(r[granularity], granularity), model)
        cell = cells.setdefault(key, [Decimal(0), 0])
        cell[0] += r["cost_usd"]
        cell[1] += r["requests"]
    records = [{"period": p, "model": m, "cost": float(c), "cost_exact": money_display(c, exact=True), "requests": n}
               for (p, m), (c, n) in sorted(cells.items())]
    return pd.DataFrame(records, columns=["period", "model", "cost", "cost_exact", "requests"])


def tokens_frame(rows: Sequence[dict], granularity: str) -> pd.DataFrame:
    """Prompt and completion tokens per period (long form: period, kind, tokens)."""
    sums: dict[str, list[int]] = {}
    for r in rows:
        cell = sums.setdefault(period_label(r[granularity], granularity), [0, 0])
        cell[0] += r["prompt_tokens"] or 0
        cell[1] += r["completion_tokens"] or 0
    records = []
    for period in sorted(sums):
        records.append({"period": period, "kind": "prompt", "tokens": sums[period][0]})
        records.append({"period": period, "kind": "completion", "tokens": sums[period][1]})
    return pd.DataFrame(records, columns=["period", "kind", "tokens"])


def model_table(rows: Sequence[dict]) -> pd.DataFrame:
    """Per-model summary as display strings, biggest spend first."""
    total = sum((r["cost_usd"] for r in rows), Decimal(0))
    records = []
    for r in sorted(rows, key=lambda r: (-r["cost_usd"], label(r["model"]))):
        cost, n, tokens = r["cost_usd"], r["requests"], r["total_tokens"] or 0
        records.append({
            "Model": label(r["model"]),
            "Requests": format_count(n),
            "Prompt tokens": format_count(r["prompt_tokens"]),
            "Completion tokens": format_count(r["completion_tokens"]),
            "Total tokens": format_count(tokens),
            "Spend": money_display(cost),
            "Share": format_percent(cost, total),
            "Avg / request": money_display(cost / n) if n else "–",
            "Per 1M tokens": money_display(cost * MILLION / tokens) if tokens else "–",
            "Missing cost": format_count(r["calls_missing_cost"]),
            "Estimated": money_display(r["estimated_cost_usd"]),
            "List cost": money_display(r["list_cost_usd"]),
            "Markup": signed_percent(markup(r)),
        })
    return pd.DataFrame(records)

def top_frame(rows: Sequence[dict], dim: str, top: int = 10) -> pd.DataFrame:
    """The ``top`` values of ``dim`` by spend plus one "other" bar for the rest."""
    ordered = sorted(rows, key=lambda r: (-r["cost_usd"], label(r[dim])))
    total = sum((r["cost_usd"] for r in rows), Decimal(0))
    shown = [(safe_hint(r[dim]) if dim == "key" else label(r[dim]), r["cost_usd"]) for r in ordered[:top]]
    rest = ordered[top:]
    if rest:
        shown.append((OTHER, sum((r["cost_usd"] for r in rest), Decimal(0))))
    records = [{"name": name, "cost": float(cost), "cost_exact": money_display(cost, exact=True),
                "share": format_percent(cost, total), "rank": i, "group": "other" if rest and i == top else "top"}
               for i, (name, cost) in enumerate(shown)]
    return pd.DataFrame(records, columns=["name", "cost", "cost_exact", "share", "rank", "group"])


def month_frame(day_rows: Sequence[dict], today: date, run_rate_days: int = 7) -> tuple[pd.DataFrame, Decimal, Decimal]:
    """Cumulative spend for today's month and a dashed projection to the month's last day.

    ``day_rows`` are by-day rows covering at least the month so far and the ``run_rate_days`` before
    today. The run rate is the mean spend of those full days (today is partial, so left out); the
    projection adds it for each day after today. Returns (frame, spent so far, projected month end)."""
    month_start = today.replace(day=1)
    month_end = next_period_start(today, "month") - timedelta(days=1)
    by_day = {r["day"]: r["cost_usd"] for r in day_rows}
    rate_days = [today - timedelta(days=i) for i in range(1, run_rate_days + 1)]
    first_seen = min((d for d, c in by_day.items() if d < today), default=None)
    if first_seen is not None:
        rate_days = [d for d in rate_days if d >= first_seen]
    rate = (sum((by_day.get(d, Decimal(0)) for d in rate_days), Decimal(0)) / len(rate_days)) if rate_days else Decimal(0)
    records, running = [], Decimal(0)
    day = month_start
    while day <= today:
        running += by_day.get(day, Decimal(0))
        records.append({"day": day, "cumulative": running, "kind": "actual"})
        day += timedelta(days=1)
    spent = running
    projected = spent + rate * (month_end - today).days
    if today < month_end:
        records.append({"day": today, "cumulative": spent, "kind": "projection"})
        records.append({"day": month_end, "cumulative": projected, "kind": "projection"})
    df = pd.DataFrame(records, columns=["day", "cumulative", "kind"])
    df["cumulative_exact"] = [money_display(v, exact=True) for v in df["cumulative"]]
    df["cumulative"] = [float(v) for v in df["cumulative"]]
    df["day"] = pd.to_datetime(df["day"])
    return df, spent, projected


def latency_frame(stats: Sequence[dict]) -> pd.DataFrame:
    records = []
    for s in stats:
        for pct in ("p50", "p95"):
            if s.get(pct) is not None:
                records.append({"model": label(s["model"]), "percentile": pct, "ms": s[pct], "sample": s["sample"]})
    return pd.DataFrame(records, columns=["model", "percentile", "ms", "sample"])


def error_frame(model_rows: Sequence[dict]) -> pd.DataFrame:
    records = [{"model": label(r["model"]), "rate": (r["errors"] / r["requests"]) if r["requests"] else 0.0,
                "errors": r["errors"], "requests": r["requests"]} for r in model_rows]
    return pd.DataFrame(records, columns=["model", "rate", "errors", "requests"])


def _when(value, tz) -> str:
    return value.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S") if value is not None else "–"


def calls_table(calls: Sequence[dict], tz, *, errors: bool = False) -> pd.DataFrame:
    """Rows of single calls (most expensive, or recent errors) as display strings; times in ``tz``."""
    records = []
    for c in calls:
        row = {
            "Time": _when(c["created_at"], tz),
            "Model": label(c["model"]),
            "App": label(c["app"]),
            "User": label(c["user"]),
            "Key": safe_hint(c["api_key_hint"]),
        }
        if errors:
            row["Status"] = "–" if c["status_code"] is None else str(c["status_code"])
            row["Error"] = label(c["error_type"])
            row["Message"] = label(c["error_message"][:200]) if c.get("error_message") else ""
        else:
            row["Tokens"] = format_count(c["total_tokens"])
            row["Cost"] = money_display(c["cost_usd"])
        row["Latency ms"] = format_count(c["latency_ms"])
        row["Id"] = c["id"]
        records.append(row)
    return pd.DataFrame(records)


def hourly_rows(rows: Iterable[dict], tz) -> list[dict]:
    """``db.hourly`` rows with ``hour`` as a local datetime in ``tz`` (a ZoneInfo)."""
    return [{**r, "hour": r["hour"].astimezone(tz)} for r in rows]


def error_kind(error_type: str | None, status: int | None) -> str:
    """``http_429 (429)``, ``timeout (no status)``: an error's type with its HTTP status."""
    return f"{label(error_type)} ({status if status is not None else 'no status'})"


def errors_time_frame(kinds: Sequence[dict], granularity: str, tz: str) -> pd.DataFrame:
    """Errors per local period x kind (error type and status). ``kinds``: ``db.request_log.error_kinds``."""
    from spendlog.db.periods import get_zone, period_keys

    zone = get_zone(tz)
    keys = period_keys(tz, ["day" if granularity == "hour" else granularity])
    cells: dict[tuple[str, str], int] = {}
    for k in kinds:
        when = k["bucket"]
        if granularity == "hour":
            period = period_label(when.astimezone(zone).replace(minute=0), "hour")
        else:
            period = period_label(keys(when)[0], granularity)
        key = (period, error_kind(k["error_type"], k["status_code"]))
        cells[key] = cells.get(key, 0) + k["errors"]
    records = [{"period": p, "kind": kind, "errors": n} for (p, kind), n in sorted(cells.items())]
    return pd.DataFrame(records, columns=["period", "kind", "errors"])


def rate_frame(rows: Sequence[dict], dim: str) -> pd.DataFrame:
    """Error rate per ``dim`` from totals read WITHOUT the status filter (errors over all calls)."""
    records = [{dim: label(r[dim]), "rate": (r["errors"] / r["requests"]) if r["requests"] else 0.0,
                "errors": r["errors"], "requests": r["requests"]} for r in rows if r["errors"]]
    return pd.DataFrame(records, columns=[dim, "rate", "errors", "requests"])


def log_table(rows: Sequence[dict], tz) -> pd.DataFrame:
    """The request log's rows as display strings (money by the tables' rule; exact in the call)."""
    records = []
    for c in rows:
        status = "–" if c["status_code"] is None else str(c["status_code"])
        records.append({
            "Time": _when(c["created_at"], tz),
            "Model": label(c["model"]),
            "App": label(c["app"]),
            "User": label(c["user"]),
            "Status": status if not c["error_type"] else f"{status} {label(c['error_type'])}",
            "Tokens": format_count(c["total_tokens"]),
            "Cost": money_display(c["cost_usd"]),
            "Latency ms": format_count(c["latency_ms"]),
            "Id": c["id"],
        })
    return pd.DataFrame(records, columns=["Time", "Model", "App", "User", "Status", "Tokens", "Cost", "Latency ms",
                                          "Id"])


def call_record(call: dict, tz) -> dict:
    """One call's full record for display: every column, money exact, times in ``tz`` and UTC."""
    out = {}
    for name, value in call.items():
        if name in ("created_at", "ingested_at") and value is not None:  # ingested_at: when it was stored
            out[name] = f"{_when(value, tz)} ({value.isoformat()} UTC)"
        elif isinstance(value, Decimal):  # the call's money (cost_usd, list_cost_usd): every stored digit
            out[name] = money_display(value, exact=True)
        elif name == "api_key_hint":
            out[name] = safe_hint(value)
        elif isinstance(value, str):
            out[name] = label(value)
        else:
            out[name] = value
    return out


def errors_total_frame(rows: Sequence[dict], granularity: str) -> pd.DataFrame:
    """Errors per period from the rollup's totals (every type together): the errors chart's frame
    when the breakdown by type is not read."""
    sums: dict[str, int] = {}
    for r in rows:
        period = period_label(r[granularity], granularity)
        sums[period] = sums.get(period, 0) + (r["errors"] or 0)
    records = [{"period": p, "kind": "all errors", "errors": n} for p, n in sorted(sums.items()) if n]
    return pd.DataFrame(records, columns=["period", "kind", "errors"])
