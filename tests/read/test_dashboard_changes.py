"""The dashboard's issue-15 parts through AppTest on a real ledger built with one spike day and a
week-over-week change (SQLite and PostgreSQL): the spike lines and marks, the previous-period
overlay (a toggle), the biggest movers, the change tables and the caching panel show exactly the
read layer's figures."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from helpers import make_record
from test_dashboard import open_app, seed

from spendlog.dashboard.formatting import label
from spendlog.db.caching import cache_savings
from spendlog.db.changes import changes_by, movers_from, previous_filters
from spendlog.db.engine import make_engine
from spendlog.db.estimate import price_book
from spendlog.db.periods import date_bounds
from spendlog.db.queries import Filters
from spendlog.db.spikes import spend_spikes
from spendlog.report.changes import change_text, hit_rate_text, percent_text, saved_text, spike_line
from spendlog.report.money import money_display

UTC = timezone.utc
FIRST, SPIKE = date(2025, 2, 20), date(2025, 3, 15)
VIEW = {"range": "custom", "from": "2025-03-10", "to": "2025-03-17"}
NOISE = [Decimal(x) for x in ("0", "1", "-1", "0.5", "-0.5", "2", "-2")]
MINI, GPT4O, SONNET = "openai/gpt-4o-mini", "openai/gpt-4o", "anthropic/claude-3.5-sonnet"


def _call(day: date, hour: int, model: str, app: str, cost: Decimal, **kw) -> dict:
    return make_record(created_at=datetime(day.year, day.month, day.day, hour, tzinfo=UTC), model=model,
                       provider=model.split("/")[0], app=app, cost_usd=cost, **kw)


def built_ledger() -> list[dict]:
    """Feb 20 - Mar 17: bot on mini (~$7, half its prompt cached) and etl on gpt-4o ($3) every day;
    search on sonnet ($1) from Mar 10 on (new this week); on Mar 15 etl spends $36 more (the spike)."""
    out = []
    day = FIRST
    while day <= date(2025, 3, 17):
        i = (day - FIRST).days
        out.append(_call(day, 9, MINI, "bot", Decimal(7) + NOISE[i % 7], prompt_tokens=2000, cached_tokens=1000,
                         user="alice"))
        out.append(_call(day, 14, GPT4O, "etl", Decimal(3), user="bob"))
        if day >= date(2025, 3, 10):
            out.append(_call(day, 16, SONNET, "search", Decimal(1), user="carol"))
        if day == SPIKE:
            out.append(_call(day, 20, GPT4O, "etl", Decimal(36), user="bob"))
        day += timedelta(days=1)
    return out


@pytest.fixture
def ledger(db_url):
    seed(db_url, built_ledger())
    return db_url


def current() -> Filters:
    start, end = date_bounds(date(2025, 3, 10), date(2025, 3, 17), "UTC")
    return Filters(start=start, end=end)


def read(url, fn, *args, **kw):
    engine = make_engine(url, pool=False)
    try:
        with engine.connect() as conn:
            return fn(conn, *args, **kw)
    finally:
        engine.dispose()


def spend_spec(at) -> dict:
    return json.loads(at.get("vega_lite_chart")[0].proto.spec)


def layer(spec: dict, field: str) -> list[dict] | None:
    """The inline rows of the spend chart's layer that has ``field`` (None: no such layer)."""
    for part in spec.get("layer", []):
        values = part.get("data", {}).get("values")
        if values and field in values[0]:
            return values
    return None


def table(at, *columns: str):
    """The first table on the page that has all of ``columns``."""
    return next(d.value for d in at.dataframe if set(columns) <= set(d.value.columns))


def test_the_spike_is_marked_and_explained_as_the_read_layer_finds_it(monkeypatch, ledger):
    at = open_app(monkeypatch, ledger, VIEW)
    found = read(ledger, spend_spikes, current(), "UTC")
    assert [s.day for s in found] == [SPIKE]
    line = spike_line(found[0], label)
    # by hand: Mar 15 is $6 + $3 + $36 + $1; the 14 days before have a median of $10.50; search (new on Mar 10)
    # spent $1 on 5 of them, so its usual (its mean over the 14) is $5/14
    assert line == ("2025-03-15: $46.00 against a usual $10.50; +$36.00 from app=etl on openai/gpt-4o; "
                    "+$0.64 from app=search on anthropic/claude-3.5-sonnet")
    assert line in [t.value for t in at.text]
    marks = layer(spend_spec(at), "explanation")
    assert marks == [{"period": "2025-03-15", "cost": 46.0, "cost_exact": "$46.00", "explanation": line}]


def test_the_overlay_toggle_draws_the_previous_period(monkeypatch, ledger):
    at = open_app(monkeypatch, ledger, VIEW)
    assert layer(spend_spec(at), "previous_period") is None  # off by default
    at.toggle(key="overlay_previous").set_value(True)
    at.run()
    assert not at.exception
    previous = layer(spend_spec(at), "previous_period")
    # Mar 2..9 by hand: each day lines up with the day 8 days later
    by_day: dict[date, Decimal] = {}
    for r in built_ledger():
        day = r["created_at"].date()
        if date(2025, 3, 2) <= day <= date(2025, 3, 9):
            by_day[day] = by_day.get(day, Decimal(0)) + r["cost_usd"]
    assert previous == [{"period": (d + timedelta(days=8)).isoformat(), "cost": float(c),
                         "cost_exact": money_display(c, exact=True), "previous_period": d.isoformat()}
                        for d, c in sorted(by_day.items())]
    total = sum(by_day.values(), Decimal(0))
    assert f"Dashed: the previous period (2025-03-02 – 2025-03-09), {money_display(total)} in all." in [
        t.value for t in at.text]


def test_movers_and_change_tables_show_the_read_layers_figures(monkeypatch, ledger):
    at = open_app(monkeypatch, ledger, VIEW)
    prev = previous_filters(current(), "UTC")
    # make_record tags every call team=core: "Spend by tag" picks team, so the movers read it too
    found = read(ledger, changes_by, current(), ("model", "app", "user", "tag:team"), "UTC", prev)
    movers = movers_from(found, 5)
    shown = table(at, "Moved")
    titles = {"model": "Model", "app": "App", "user": "User", "tag:team": "Tag team"}
    expected = [[way, titles[c.dim], label(c.value), change_text(c), percent_text(c), money_display(c.current),
                 money_display(c.previous)] for way, group in (("up", movers.up), ("down", movers.down))
                for c in group]
    assert shown.values.tolist() == expected
    # by hand: etl's spike week is $36 up; sonnet and search are new; mini is what it was, give or take noise
    ups = {(r[1], r[2]): r for r in expected if r[0] == "up"}
    assert ups[("App", "etl")][3] == "+$36.00" and ups[("App", "etl")][4] == "+150.0%"
    assert ups[("App", "search")][3] == "+$8.00" and ups[("Tag team", "core")][3] == "+$43.00"  # every call
    sonnet = next(c for c in found["model"] if c.value == SONNET)  # new this week, past the top five now
    assert percent_text(sonnet) == "new" and ("Model", SONNET) not in ups
    per_app = table(at, "App", "Change %")
    assert per_app.values.tolist() == [[label(c.value), money_display(c.current), money_display(c.previous),
                                        change_text(c), percent_text(c)] for c in found["app"]]
    assert table(at, "Model", "Change %")["Change %"].tolist() == [percent_text(c) for c in found["model"]]
    assert table(at, "User", "Change %")["User"].tolist() == [label(c.value) for c in found["user"]]


def test_the_cache_panel_shows_hit_rate_and_savings(monkeypatch, ledger):
    at = open_app(monkeypatch, ledger, VIEW)
    rows = read(ledger, cache_savings, current(), price_book())
    shown = table(at, "Hit rate")
    assert shown.values.tolist() == [[label(r.model), label(r.app), f"{r.prompt_tokens:,}", f"{r.cached_tokens:,}",
                                      hit_rate_text(r), saved_text(r)] for r in rows]
    mini = next(r for r in rows if r.model == MINI)
    # 8 days x 1,000 cached tokens x ($0.15 - $0.075) / 1M
    assert (mini.cached_tokens, mini.saved_usd, hit_rate_text(mini)) == (8000, Decimal("0.0006"), "50.0%")
    gpt4o = next(r for r in rows if r.model == GPT4O)
    assert saved_text(gpt4o) == "–"  # no cached tokens


def test_the_overlay_in_hourly_and_weekly_views(monkeypatch, sqlite_url):
    seed(sqlite_url, built_ledger())
    at = open_app(monkeypatch, sqlite_url, {"range": "custom", "from": "2025-03-16", "to": "2025-03-17"})
    at.toggle(key="overlay_previous").set_value(True)
    at.run()
    assert not at.exception
    previous = {r["period"]: (r["previous_period"], r["cost_exact"]) for r in layer(spend_spec(at), "previous_period")}
    assert previous["03-17 20:00"] == ("03-15 20:00", "$36.00")  # the spike's hour, two days later
    assert previous["03-16 14:00"] == ("03-14 14:00", "$3.00") and len(previous) == 7
    at = open_app(monkeypatch, sqlite_url, {**VIEW, "by": "week"})
    at.toggle(key="overlay_previous").set_value(True)
    at.run()
    assert not at.exception
    weeks = layer(spend_spec(at), "previous_period")
    assert {r["period"] for r in weeks} <= {"2025-W11", "2025-W12"}
    assert layer(spend_spec(at), "explanation") is None  # spikes are marked on per-day charts only


def test_movers_name_the_tag_values_of_the_picked_tag_key(monkeypatch, sqlite_url):
    # the same ledger, each call tagged by team (etl's calls are team=data): the movers read the tag
    # key picked in "Spend by tag" too, and its values move exactly as the read layer says
    tagged = [{**r, "tags": {"team": "data" if r["app"] == "etl" else "web"}} for r in built_ledger()]
    seed(sqlite_url, tagged)
    at = open_app(monkeypatch, sqlite_url, {**VIEW, "tagby": "team"})
    prev = previous_filters(current(), "UTC")
    found = read(sqlite_url, changes_by, current(), ("model", "app", "user", "tag:team"), "UTC", prev)
    movers = movers_from(found, 5)
    shown = table(at, "Moved")
    rows = {(r[1], r[2]): r for r in shown.values.tolist()}
    assert ("Tag team", "data") in rows and rows[("Tag team", "data")][3] == "+$36.00"
    assert [(r[1], r[2]) for r in shown.values.tolist()] == [
        ({"model": "Model", "app": "App", "user": "User"}.get(c.dim, "Tag team"), label(c.value))
        for group in (movers.up, movers.down) for c in group]
    per_tag = table(at, "Tag team", "Change %")
    assert per_tag["Tag team"].tolist() == [label(c.value) for c in found["tag:team"]]
