"""The dashboard's pure parts: money and percent strings, the URL <-> view round trip, presets,
the previous period, the frames behind charts and tables, and the chart specs."""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

import pytest

from spendlog.dashboard import charts, frames
from spendlog.dashboard.formatting import format_delta, format_percent, safe_hint
from spendlog.dashboard.params import View, parse_params, preset_dates, previous_period, to_params
from spendlog.report.money import money_display, money_exact


def fixed_today(_tz: str) -> date:
    return date(2025, 3, 15)


# -- formatting -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("1234.56", "$1,234.56"),
        ("1234.565", "$1,234.57"),
        ("1234567.891", "$1,234,567.89"),
        ("0.5", "$0.50"),
        ("0.099", "$0.099"),
        ("0.0123456", "$0.0123"),
        ("0.000148", "$0.000148"),
        ("0.00014849", "$0.000148"),
        ("0.000000000001", "$0.000000000001"),
        ("0.0999996", "$0.10"),
        ("0.0995", "$0.0995"),
        ("0.0100", "$0.01"),
        ("0", "$0.00"),
        ("-12.5", "-$12.50"),
        ("1E+3", "$1,000.00"),
    ],
)
def test_money_display(value, text):
    assert money_display(Decimal(value)) == text


def test_small_sums_are_never_shown_as_zero():
    for exp in range(1, 13):
        tiny = Decimal(1).scaleb(-exp)
        assert money_display(tiny) not in ("$0.00", "$0")
        assert "E" not in money_display(tiny)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("1234.560000000000", "$1,234.56"),
        ("0.000148250000", "$0.00014825"),
        ("5", "$5.00"),
        ("1E-12", "$0.000000000001"),
        ("12345678.123456789012", "$12,345,678.123456789012"),
    ],
)
def test_money_display_exact_keeps_every_digit(value, text):
    assert money_display(Decimal(value), exact=True) == text


def test_money_exact_has_no_exponent():
    assert money_exact(Decimal("1E-12")) == "0.000000000001"
    assert money_exact(Decimal("1.500")) == "1.5"
    assert money_exact(Decimal("0E-12")) == "0"


def test_percent_and_delta():
    assert format_percent(1, 3) == "33.3%"
    assert format_percent(0, 0) == "–"
    assert format_delta(Decimal("1.5"), Decimal("1")) == "+50.0%"
    assert format_delta(3, 4) == "-25.0%"
    assert format_delta(5, 0) == "new"
    assert format_delta(0, 0) is None


def test_safe_hint_never_shows_more_than_a_hint():
    assert safe_hint("sr_...abcd") == "sr_...abcd"
    assert safe_hint(None) == "(none)"
    leaked = "sr_live_0123456789abcdefwxyz"
    shown = safe_hint(leaked)
    assert shown.endswith("wxyz") and "0123456789" not in shown


# -- params: presets, previous period, URL round trip ---------------------------------------------


def test_presets():
    today = date(2025, 3, 15)
    assert preset_dates("today", today) == (today, today)
    assert preset_dates("7d", today) == (date(2025, 3, 9), today)
    assert preset_dates("30d", today) == (date(2025, 2, 14), today)
    assert preset_dates("90d", today) == (date(2024, 12, 16), today)
    assert preset_dates("mtd", today) == (date(2025, 3, 1), today)
    assert preset_dates("last_month", today) == (date(2025, 2, 1), date(2025, 2, 28))
    assert preset_dates("last_month", date(2025, 1, 3)) == (date(2024, 12, 1), date(2024, 12, 31))


def test_previous_period_has_the_same_length():
    assert previous_period(date(2025, 3, 9), date(2025, 3, 15)) == (date(2025, 3, 2), date(2025, 3, 8))
    assert previous_period(date(2025, 3, 15), date(2025, 3, 15)) == (date(2025, 3, 14), date(2025, 3, 14))
    assert previous_period(date(2025, 2, 1), date(2025, 2, 28)) == (date(2025, 1, 4), date(2025, 1, 31))


def test_default_view_and_spendlog_tz(monkeypatch):
    view = parse_params({}, today_in=fixed_today)
    assert (view.preset, view.start, view.end, view.tz, view.granularity, view.status) == (
        "30d", date(2025, 2, 14), date(2025, 3, 15), "UTC", "day", "all")
    monkeypatch.setenv("SPENDLOG_TZ", "Asia/Tokyo")
    assert parse_params({}, today_in=fixed_today).tz == "Asia/Tokyo"
    monkeypatch.setenv("SPENDLOG_TZ", "Not/AZone")
    assert parse_params({}, today_in=fixed_today).tz == "UTC"


def test_url_round_trip():
    view = View(preset="custom", start=date(2025, 1, 1), end=date(2025, 1, 31), tz="Asia/Kolkata",
                granularity="week", models=("openai/gpt-4o", "a,b"), apps=("bot",), users=("alice",),
                key_hints=("sr_...abcd",), providers=("openai",), status="errors", live=True)
    params = to_params(view)
    assert params["range"] == "custom" and params["from"] == "2025-01-01" and params["model"] == ["openai/gpt-4o", "a,b"]
    as_lists = {k: v if isinstance(v, list) else [v] for k, v in params.items()}
    assert parse_params(as_lists, today_in=fixed_today) == view
    assert to_params(parse_params({}, today_in=fixed_today)) == {}  # defaults make a bare URL


def test_untrusted_params_fall_back_with_a_note():
    view = parse_params(
        {"tz": ["Mars/Olympus"], "range": ["forever"], "by": ["minute"], "status": ["'; drop"],
         "model": ["", "x" * 300, "ok"], "from": ["2025-13-45"]},
        today_in=fixed_today,
    )
    assert view.tz == "UTC" and view.preset == "30d" and view.granularity == "day" and view.status == "all"
    assert view.models == ("ok",)
    assert len(view.notes) == 5 and "'from' '2025-13-45' is not a date (YYYY-MM-DD): ignored" in view.notes


def test_a_date_with_trailing_text_is_not_a_date():
    view = parse_params({"from": ["2025-03-01junk"], "to": ["2025-03-05"]}, today_in=fixed_today)
    assert (view.start, view.end) == (date(2025, 3, 5), date(2025, 3, 5))
    assert view.notes == ("'from' '2025-03-01junk' is not a date (YYYY-MM-DD): ignored",)


def test_custom_dates_are_ordered_and_completed():
    view = parse_params({"from": ["2025-03-10"], "to": ["2025-03-01"]}, today_in=fixed_today)
    assert (view.preset, view.start, view.end) == ("custom", date(2025, 3, 1), date(2025, 3, 10))
    only_from = parse_params({"range": ["custom"], "from": ["2025-03-10"]}, today_in=fixed_today)
    assert (only_from.start, only_from.end) == (date(2025, 3, 10), date(2025, 3, 10))


# -- frames ------------------------------------------------------------------------------------------


def row(**kw) -> dict:
    base = {m: 0 for m in frames.MEASURES}
    base["cost_usd"] = Decimal(0)
    base.update(kw)
    return base


def test_period_labels_sort_as_text():
    assert frames.period_label(date(2025, 1, 6), "week") == "2025-W02"
    assert frames.period_label(date(2024, 12, 30), "week") == "2025-W01"
    assert frames.period_label(date(2025, 3, 1), "month") == "2025-03"
    assert frames.period_label(date(2025, 3, 9), "day") == "2025-03-09"


def test_spend_frame_keeps_top_models_and_sums_the_rest_exactly():
    rows = [row(day=date(2025, 3, 1), model=f"m{i}", cost_usd=Decimal(i) / 1000, requests=1) for i in range(1, 13)]
    df = frames.spend_frame(rows, "day", top=10)
    assert set(df["model"]) == {f"m{i}" for i in range(3, 13)} | {"other"}
    other = df[df["model"] == "other"].iloc[0]
    assert other["cost_exact"] == "$0.003" and other["requests"] == 2


def test_top_frame_other_is_exact():
    rows = [row(app=f"a{i}", cost_usd=Decimal("0.000000000001") * i) for i in range(1, 15)]
    df = frames.top_frame(rows, "app", top=10)
    assert list(df["name"])[:2] == ["a14", "a13"] and df["name"].iloc[-1] == "other"
    assert df["cost_exact"].iloc[-1] == money_display(Decimal("0.000000000010"), exact=True)  # 1+2+3+4 pico
    assert list(df["group"]) == ["top"] * 10 + ["other"]


def test_headline_metrics_and_deltas():
    cur = row(requests=200, cost_usd=Decimal("3.00"), errors=10, calls_missing_cost=20, prompt_tokens=5, completion_tokens=7)
    prev = row(requests=100, cost_usd=Decimal("2.00"), errors=10, calls_missing_cost=0)
    m = {x.label: x for x in frames.headline(cur, prev)}
    assert m["Total spend"].value == "$3.00" and m["Total spend"].delta == "+50.0%"
    assert m["Requests"].delta == "+100.0%"
    assert m["Avg cost / request"].value == "$0.015" and m["Avg cost / request"].delta == "-25.0%"
    assert m["Error rate"].value == "5.0%" and m["Error rate"].delta == "-5.0 pp"
    assert m["Missing cost"].value == "10.0%" and m["Missing cost"].delta == "+10.0 pp"


def test_model_table_columns():
    rows = [row(model="a", requests=4, total_tokens=2_000_000, prompt_tokens=1, completion_tokens=1, cost_usd=Decimal("3")),
            row(model=None, requests=1, total_tokens=0, cost_usd=Decimal("1"))]
    df = frames.model_table(rows)
    first = df.iloc[0].to_dict()
    assert first["Model"] == "a" and first["Share"] == "75.0%" and first["Avg / request"] == "$0.75"
    assert first["Per 1M tokens"] == "$1.50" and first["Spend"] == "$3.00"
    assert df.iloc[1]["Model"] == "(none)" and df.iloc[1]["Per 1M tokens"] == "–"


def test_by_period_regroups_days_exactly():
    rows = [row(day=date(2025, 3, d), model=m, cost_usd=Decimal("0.000000000001") * d, requests=1)
            for d in (2, 3, 9, 10, 31) for m in ("a", None)]
    weeks = frames.by_period(rows, "week")
    assert [(r["week"], r["model"]) for r in weeks][:2] == [(date(2025, 2, 24), "a"), (date(2025, 2, 24), None)]
    assert sum(r["requests"] for r in weeks) == 10 and len(weeks) == 8
    assert next(r for r in weeks if r["week"] == date(2025, 3, 3) and r["model"] == "a")["cost_usd"] == Decimal("12E-12")
    months = frames.by_period(rows, "month")
    assert [(r["month"], r["model"], r["requests"]) for r in months] == [(date(2025, 3, 1), "a", 5), (date(2025, 3, 1), None, 5)]
    assert frames.by_period(rows, "day") == sorted(frames.by_period(rows, "day"), key=lambda r: (r["day"], r["model"] is None))


def test_month_projection_uses_the_last_seven_full_days():
    today = date(2025, 3, 15)
    day_rows = [{"day": date(2025, 3, d), "cost_usd": Decimal("1.5")} for d in range(1, 16)]
    df, spent, projected = frames.month_frame(day_rows, today)
    assert spent == Decimal("22.5")
    assert projected == Decimal("22.5") + Decimal("1.5") * 16  # 16 days after the 15th in March
    proj = df[df["kind"] == "projection"]
    assert len(proj) == 2 and proj["cumulative_exact"].iloc[-1] == "$46.50"
    assert len(df[df["kind"] == "actual"]) == 15


def test_month_projection_with_little_history():
    today = date(2025, 3, 2)
    rows = [{"day": date(2025, 3, 1), "cost_usd": Decimal("2")}, {"day": today, "cost_usd": Decimal("1")}]
    _df, spent, projected = frames.month_frame(rows, today)
    assert spent == 3 and projected == 3 + 2 * 29  # rate from the one full day there is


def test_calls_table_shows_local_time_and_exact_cost():
    from zoneinfo import ZoneInfo

    call = {"id": "x", "created_at": datetime(2025, 3, 14, 23, 30, tzinfo=timezone.utc), "model": "m", "app": None,
            "user": "u", "api_key_hint": "sr_...abcd", "total_tokens": 1000, "cost_usd": Decimal("0.000148250000"),
            "latency_ms": 1200, "status_code": 429, "error_type": "http_429", "error_message": "slow down"}
    table = frames.calls_table([call], ZoneInfo("Asia/Tokyo"))
    assert table.iloc[0]["Time"] == "2025-03-15 08:30:00" and table.iloc[0]["Cost"] == "$0.000148"
    errors = frames.calls_table([call], ZoneInfo("UTC"), errors=True)
    assert errors.iloc[0]["Status"] == "429" and errors.iloc[0]["Message"] == "slow down"


# -- charts --------------------------------------------------------------------------------------


def _tooltip_fields(spec: dict) -> set[str]:
    return {t["field"] for t in spec["encoding"]["tooltip"]}


def test_spend_chart_is_stacked_bars_with_exact_tooltips():
    rows = [row(day=date(2025, 3, d), model=m, cost_usd=Decimal("0.000148250001"), requests=2)
            for d in (1, 2) for m in ("a", "b")]
    chart = charts.spend_by_model(frames.spend_frame(rows, "day"))
    spec = chart.to_dict()
    assert spec["mark"]["type"] == "bar" and spec["encoding"]["color"]["field"] == "model"
    assert "cost_exact" in _tooltip_fields(spec)
    values = next(iter(spec["datasets"].values()))
    assert {v["cost_exact"] for v in values} == {"$0.000148250001"}


def test_cumulative_chart_dashes_the_projection():
    df, _s, _p = frames.month_frame([{"day": date(2025, 3, 1), "cost_usd": Decimal(1)}], date(2025, 3, 10))
    spec = charts.cumulative_month(df).to_dict()
    assert spec["encoding"]["strokeDash"]["scale"]["domain"] == ["actual", "projection"]
    assert spec["encoding"]["strokeDash"]["scale"]["range"][1] != [1, 0]


@pytest.mark.parametrize("make", [
    lambda: charts.tokens_by_period(frames.tokens_frame([row(day=date(2025, 3, 1), prompt_tokens=3, completion_tokens=4)], "day")),
    lambda: charts.top_spenders(frames.top_frame([row(app="a", cost_usd=Decimal(1))], "app"), "App"),
    lambda: charts.latency_by_model(frames.latency_frame([{"model": "m", "p50": 10, "p95": 20, "sample": 2}])),
    lambda: charts.error_rate_by_model(frames.error_frame([row(model="m", requests=4, errors=1)])),
])
def test_other_charts_render_to_vega_lite(make):
    spec = make().to_dict()
    assert spec["mark"]["type"] == "bar"
    assert next(iter(spec["datasets"].values()))  # the chart carries its data


def test_a_calls_record_shows_every_money_column_exactly():
    """The opened call showed ``list_cost_usd`` as ``Decimal('0.001879900000')`` (only ``cost_usd``
    was formatted); every money column is the exact amount, an unknown one stays None."""
    at = datetime(2026, 12, 2, 3, 18, 50, tzinfo=timezone.utc)
    record = frames.call_record({"id": "c1", "created_at": at, "cost_usd": Decimal("0.0018799"),
                                 "list_cost_usd": Decimal("0.001879900000"), "cost_source": "estimated",
                                 "prompt_tokens": 2353}, timezone.utc)
    assert record["cost_usd"] == "$0.0018799"
    assert record["list_cost_usd"] == "$0.0018799"
    assert record["prompt_tokens"] == 2353 and record["cost_source"] == "estimated"
    assert frames.call_record({"id": "c2", "cost_usd": None, "list_cost_usd": None}, timezone.utc) == {
        "id": "c2", "cost_usd": None, "list_cost_usd": None}


def test_a_calls_record_shows_when_it_was_stored_like_when_it_started():
    start = datetime(2026, 10, 31, 23, 59, 59, tzinfo=timezone.utc)
    stored = datetime(2026, 11, 4, 8, 0, 1, tzinfo=timezone.utc)  # a spool replayed days later (issue 17)
    record = frames.call_record({"id": "c1", "created_at": start, "ingested_at": stored}, timezone.utc)
    assert record["created_at"].endswith("(2026-10-31T23:59:59+00:00 UTC)")
    assert record["ingested_at"].endswith("(2026-11-04T08:00:01+00:00 UTC)")
    assert frames.call_record({"id": "c2", "ingested_at": None}, timezone.utc) == {"id": "c2", "ingested_at": None}
