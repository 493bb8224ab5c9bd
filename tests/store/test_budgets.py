"""Budgets in the ledger (db.budgets, db.budget_status): periods, scopes, spend and forecasts, exact,
on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from helpers import make_record

from spendlog.db.budget_status import budget_status, forecast_spend
from spendlog.db.budgets import (BudgetExistsError, BudgetSpec, add_budget, get_budget, list_budgets, mask_webhook,
                                 parse_amount, parse_scope, parse_thresholds, parse_webhook, remove_budget,
                                 webhook_targets)
from spendlog.db.engine import make_engine
from spendlog.db.migrate import upgrade
from spendlog.db.periods import budget_period, parse_week_start
from spendlog.db.store import insert_records

UTC = timezone.utc
NOW = datetime(2026, 12, 2, 12, tzinfo=UTC)


def at(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


# -- periods -----------------------------------------------------------------------------------

@pytest.mark.parametrize("instant, period, tz, week_start, expected", [
    (at(2026, 12, 2, 12), "month", "UTC", 0, (at(2026, 12, 1), at(2027, 1, 1))),
    (at(2026, 12, 2, 12), "day", "UTC", 0, (at(2026, 12, 2), at(2026, 12, 3))),
    (at(2026, 12, 2, 12), "quarter", "UTC", 0, (at(2026, 10, 1), at(2027, 1, 1))),
    (at(2026, 12, 2, 12), "year", "UTC", 0, (at(2026, 1, 1), at(2027, 1, 1))),
    # Asia/Kolkata (+05:30): its midnight is 18:30 UTC the day before
    (at(2026, 12, 2, 0), "day", "Asia/Kolkata", 0, (at(2026, 12, 1, 18, 30), at(2026, 12, 2, 18, 30))),
    (at(2026, 12, 1, 18, 29), "day", "Asia/Kolkata", 0, (at(2026, 11, 30, 18, 30), at(2026, 12, 1, 18, 30))),
    (at(2026, 12, 2, 0), "month", "Asia/Kolkata", 0, (at(2026, 11, 30, 18, 30), at(2026, 12, 31, 18, 30))),
    (at(2026, 12, 2, 0), "quarter", "Asia/Kolkata", 0, (at(2026, 9, 30, 18, 30), at(2026, 12, 31, 18, 30))),
    # America/New_York: 1 Nov 2026 has 25 hours (EDT -> EST), 8 Mar 2026 has 23
    (at(2026, 11, 1, 12), "day", "America/New_York", 0, (at(2026, 11, 1, 4), at(2026, 11, 2, 5))),
    (at(2026, 3, 8, 12), "day", "America/New_York", 0, (at(2026, 3, 8, 5), at(2026, 3, 9, 4))),
    (at(2026, 11, 1, 12), "week", "America/New_York", 0, (at(2026, 10, 26, 4), at(2026, 11, 2, 5))),
    (at(2026, 11, 15), "month", "America/New_York", 0, (at(2026, 11, 1, 4), at(2026, 12, 1, 5))),
    # weeks from Monday (ISO) and from Sunday; 2 Dec 2026 is a Wednesday, 29 Nov a Sunday
    (at(2026, 12, 2, 12), "week", "UTC", 0, (at(2026, 11, 30), at(2026, 12, 7))),
    (at(2026, 12, 2, 12), "week", "UTC", 6, (at(2026, 11, 29), at(2026, 12, 6))),
    (at(2026, 11, 29, 0), "week", "UTC", 6, (at(2026, 11, 29), at(2026, 12, 6))),
    (at(2026, 11, 28, 23, 59), "week", "UTC", 6, (at(2026, 11, 22), at(2026, 11, 29))),
])
def test_budget_periods_start_at_local_midnight(instant, period, tz, week_start, expected):
    assert budget_period(instant, period, tz, week_start) == expected


def test_week_start_and_period_errors():
    assert [parse_week_start(v) for v in ("monday", "Sun", "sunday", 3)] == [0, 6, 6, 3]
    with pytest.raises(ValueError, match="not a weekday"):
        parse_week_start("someday")
    with pytest.raises(ValueError, match="unknown period"):
        budget_period(NOW, "fortnight", "UTC")


# -- parsing -----------------------------------------------------------------------------------

def test_parsing_rules():
    assert parse_amount("12.50") == Decimal("12.50")
    for bad in ("0", "-1", "abc", "NaN", "inf", "0.0000000000001"):
        with pytest.raises(ValueError):
            parse_amount(bad)
    assert parse_thresholds("100, 50,80,50%") == (50, 80, 100)
    for bad in ("", "0", "x", "2000"):
        with pytest.raises(ValueError):
            parse_thresholds(bad)
    assert parse_scope(["app=b", "app=a", "tag:team=core", "key=sr_...abcd", "model=openai/gpt-4o"]) == {
        "apps": ["a", "b"], "key_hints": ["sr_...abcd"], "models": ["openai/gpt-4o"], "tags": [["team", "core"]]}
    for bad in (["app"], ["colour=red"], ["tag:=x"]):
        with pytest.raises(ValueError):
            parse_scope(bad)


def test_webhook_urls_are_masked_in_errors_and_views():
    secret = "https://hooks.slack.com/services/T0001/B0002/abcdefSECRETxyz9"
    assert mask_webhook(secret) == "https://hooks.slack.com/...xyz9"
    assert "SECRET" not in mask_webhook("https://user:SECRETpw@example.com/hook/abcd")
    with pytest.raises(ValueError) as info:
        parse_webhook("ftp://example.com/SECRETpath/1234")
    assert "SECRET" not in str(info.value)


# -- in the ledger -----------------------------------------------------------------------------

@pytest.fixture
def ledger(db_url):
    engine = make_engine(db_url)
    upgrade(engine)
    yield engine
    engine.dispose()


def _add(engine, **kw) -> BudgetSpec:
    kw.setdefault("period", "month")
    kw.setdefault("amount_usd", Decimal(100))
    spec = BudgetSpec(**kw)
    with engine.begin() as conn:
        add_budget(conn, spec, NOW)
    with engine.connect() as conn:
        return get_budget(conn, spec.name)


def _calls(engine, *calls) -> None:
    """(created_at, cost, overrides) triples as ledger rows."""
    with engine.begin() as conn:
        insert_records(conn, [make_record(created_at=when, cost_usd=Decimal(cost), **extra)
                              for when, cost, extra in calls])


def test_add_list_show_remove(ledger):
    secret = "https://hooks.slack.com/services/T1/B2/SECRETabcd"
    spec = _add(ledger, name="team-a", amount_usd=Decimal("250.125"), tz="Asia/Kolkata", week_start=6,
                scope={"apps": ["billing"]}, thresholds=(25, 100), forecast=True, hard=True, webhooks=(secret,))
    assert (spec.amount_usd, spec.tz, spec.week_start, spec.scope, spec.thresholds, spec.forecast, spec.hard) == (
        Decimal("250.125"), "Asia/Kolkata", 6, {"apps": ["billing"]}, (25, 100), True, True)
    assert spec.webhooks == ("https://hooks.slack.com/...abcd",)
    with pytest.raises(BudgetExistsError):
        _add(ledger, name="team-a")
    _add(ledger, name="all")
    with ledger.connect() as conn:
        assert [b.name for b in list_budgets(conn)] == ["all", "team-a"]
        assert [b.name for b in list_budgets(conn, hard_only=True)] == ["team-a"]
        assert [u for _, u in webhook_targets(conn, spec.id)] == [secret]
    with ledger.begin() as conn:
        assert remove_budget(conn, "team-a") is True
        assert remove_budget(conn, "team-a") is False
    with ledger.connect() as conn:
        assert [b.name for b in list_budgets(conn)] == ["all"]
        assert webhook_targets(conn, spec.id) == []


def test_spend_counts_billed_and_estimated_costs_of_the_period_only(ledger):
    budget = _add(ledger, name="m")
    _calls(ledger,
           (at(2026, 11, 30, 23, 59), "50", {}),  # last month
           (at(2026, 12, 1, 0, 0), "1.25", {}),
           (at(2026, 12, 2, 11, 30), "0.000000000001", {"cost_source": "estimated"}),
           (at(2026, 12, 2, 11, 45), "2", {"status_code": 500}),  # a failed call that cost something counts
           (at(2026, 12, 2, 12, 0), "7", {}))  # at the check's instant: not yet
    with ledger.connect() as conn:
        status = budget_status(conn, budget, NOW)
    assert status.spent == Decimal("3.250000000001")
    assert (status.period_start, status.period_end) == (at(2026, 12, 1), at(2027, 1, 1))


@pytest.mark.parametrize("scope, expected", [
    ({}, "10"),
    ({"apps": ["billing"]}, "1.5"),
    ({"apps": ["billing", "search"]}, "3.5"),
    ({"tags": [["team", "core"]]}, "4"),
    ({"tags": [["team", "core"]], "apps": ["billing"]}, "0.5"),
    ({"key_hints": ["sr_...wxyz"]}, "2.25"),
    ({"models": ["anthropic/claude-3.5-sonnet"]}, "2.25"),
    ({"providers": ["anthropic"]}, "2.25"),
    ({"users": ["nobody"]}, "0"),
])
def test_scopes_count_only_their_calls(ledger, scope, expected):
    _calls(ledger,
           (at(2026, 12, 1, 1), "0.5", {"app": "billing", "tags": {"team": "core"}}),
           (at(2026, 12, 1, 2), "1", {"app": "billing", "tags": {"team": "ops"}}),
           (at(2026, 12, 1, 3), "2", {"app": "search", "tags": None}),
           (at(2026, 12, 1, 4), "3.5", {"app": "chat", "tags": {"team": "core", "env": "prod"}}),
           (at(2026, 12, 1, 5), "0.75", {"app": "chat", "tags": {"team": "other"}}))
    _calls(ledger, (at(2026, 12, 1, 6), "0", {}))  # a free call
    # move two calls to another key and model
    _calls(ledger, (at(2026, 12, 1, 7), "2.25", {"app": "x", "tags": None, "api_key_hint": "sr_...wxyz",
                                                   "model": "anthropic/claude-3.5-sonnet", "provider": "anthropic"}))
    budget = _add(ledger, name="s", scope=scope)
    with ledger.connect() as conn:
        assert budget_status(conn, budget, NOW).spent == Decimal(expected)


# -- forecasts (db.budget_status's formula, pinned) -------------------------------------------------

def test_forecast_formula():
    hour = timedelta(hours=1)
    assert forecast_spend(Decimal("4.5"), Decimal("4.5"), 36 * hour, 708 * hour) == Decimal("93")
    assert forecast_spend(Decimal(1), Decimal(1), 5.5 * hour, 18.5 * hour) == Decimal("4.363636363636")
    assert forecast_spend(Decimal("2"), Decimal("2"), timedelta(0), 5 * hour) == Decimal("2")


@pytest.mark.parametrize("budget, calls, now, expected", [
    # UTC month, 36 h in: the period so far is the window
    ({"period": "month"}, [(at(2026, 12, 1, 10), "3"), (at(2026, 12, 2, 6), "1.5")], at(2026, 12, 2, 12),
     ("4.5", "93")),
    # UTC month, 19 days in: the trailing 7 days [13 Dec, 20 Dec) give the rate; 12 days left
    ({"period": "month"}, [(at(2026, 12, 1), "10"), (at(2026, 12, 15), "7")], at(2026, 12, 20),
     ("17", "29")),
    # Asia/Kolkata day: from 18:30 UTC; 5.5 h in, 18.5 h left; the 18:00 UTC call is yesterday's
    ({"period": "day", "tz": "Asia/Kolkata"}, [(at(2026, 12, 1, 18), "5"), (at(2026, 12, 1, 20), "1")],
     at(2026, 12, 2, 0), ("1", "4.363636363636")),
    # America/New_York, 1 Nov 2026 (25 h): 20 h in, 5 h left (a 24-hour day would give 2.4)
    ({"period": "day", "tz": "America/New_York"}, [(at(2026, 11, 1, 6), "2")], at(2026, 11, 2, 0),
     ("2", "2.5")),
    # a week starting Sunday: 3 days in, 4 left; Saturday's call is last week's
    ({"period": "week", "week_start": 6}, [(at(2026, 11, 28, 12), "100"), (at(2026, 11, 29, 12), "3")],
     at(2026, 12, 2), ("3", "7")),
])
def test_forecasts_are_exact_in_the_budgets_own_window(ledger, budget, calls, now, expected):
    spec = _add(ledger, name="f", **budget)
    _calls(ledger, *((when, cost, {}) for when, cost in calls))
    with ledger.connect() as conn:
        status = budget_status(conn, spec, now)
    assert (status.spent, status.forecast) == tuple(Decimal(v) for v in expected)


def test_status_thresholds_and_percent(ledger):
    spec = _add(ledger, name="t", amount_usd=Decimal("10"), thresholds=(50, 80, 100))
    _calls(ledger, (at(2026, 12, 1), "7.999999999999", {}))
    with ledger.connect() as conn:
        status = budget_status(conn, spec, at(2026, 12, 31))
    assert (status.crossed, status.percent, status.status) == ((50,), Decimal("79.99"), "warning")
    _calls(ledger, (at(2026, 12, 1, 1), "0.000000000001", {}))
    with ledger.connect() as conn:
        status = budget_status(conn, spec, at(2026, 12, 31))
    assert (status.crossed, status.percent) == ((50, 80), Decimal("80.00"))
    _calls(ledger, (at(2026, 12, 1, 2), "2", {}))
    with ledger.connect() as conn:
        status = budget_status(conn, spec, at(2026, 12, 31))
    assert (status.crossed, status.status, status.exhausted) == ((50, 80, 100), "over", True)
