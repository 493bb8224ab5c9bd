"""The dashboard's Budgets section (AppTest): spend against each line, status colours, the forecast,
the alerts fired and their delivery state; absent when the ledger has no budgets."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from helpers import make_record
from test_dashboard import chart_data, open_app

from spendlog.alerts import check_budgets
from spendlog.db.budgets import BudgetSpec, add_budget
from spendlog.db.engine import make_engine
from spendlog.db.migrate import upgrade
from spendlog.db.store import insert_records


def _seed(url: str, *, budgets: bool) -> None:
    engine = make_engine(url, pool=False)
    upgrade(engine)
    now = datetime.now(timezone.utc)
    when = max(now - timedelta(minutes=2), now.replace(hour=0, minute=0, second=0, microsecond=0))  # today (UTC)
    with engine.begin() as conn:
        insert_records(conn, [make_record(created_at=when, cost_usd=Decimal("8"), app="billing")])
        if budgets:
            add_budget(conn, BudgetSpec(name="billing-month", amount_usd=Decimal(10), period="month",
                                        scope={"apps": ["billing"]}), now)
            add_budget(conn, BudgetSpec(name="daily-all", amount_usd=Decimal(5), period="day", hard=True,
                                        webhooks=("http://127.0.0.1:9/hooks/SECRETpath",)), now)
            add_budget(conn, BudgetSpec(name="search", amount_usd=Decimal(100), period="week",
                                        scope={"apps": ["search"]}), now)
    if budgets:
        check_budgets(engine, timeout=1)  # fires: billing 50, 80; daily-all 50, 80, 100 (port 9: refused)
    engine.dispose()


def _table(at, column: str):
    return next(df.value for df in at.dataframe if column in df.value.columns)


def test_the_budgets_section_shows_lines_forecasts_statuses_and_alerts(monkeypatch, sqlite_url):
    _seed(sqlite_url, budgets=True)
    at = open_app(monkeypatch, sqlite_url)
    assert "Budgets" in [h.value for h in at.subheader]
    table = _table(at, "Used").set_index("Budget")
    assert list(table.index) == ["billing-month", "daily-all", "search"]
    assert list(table["Status"]) == ["🟠 warning", "🔴 over", "🟢 ok"]
    assert list(table["Spent"]) == ["$8.00", "$8.00", "$0.00"]
    assert list(table["Used"]) == ["80.00%", "160.00%", "0.00%"]
    assert (table.loc["daily-all", "Kind"], table.loc["billing-month", "Scope"]) == ("hard", "app=billing")
    alerts = _table(at, "Delivery")
    assert sorted(zip(alerts["Budget"], alerts["Alert"], alerts["Delivery"])) == [
        ("billing-month", "50%", "no_target"), ("billing-month", "80%", "no_target"),
        ("daily-all", "100%", "failed"), ("daily-all", "50%", "failed"), ("daily-all", "80%", "failed")]
    assert all(e.startswith("http://127.0.0.1/...") for e in alerts["Last error"] if e)
    frames = [chart_data(at, i) for i in range(len(at.get("vega_lite_chart")))]
    [lines] = [f for f in frames if "forecast_pct" in f.columns]
    assert list(lines["budget"]) == ["billing-month", "daily-all", "search"]
    assert list(lines["status"]) == ["warning", "over", "ok"]
    assert list(lines["spent"]) == ["$8.00", "$8.00", "$0.00"]
    shown = " ".join(str(df.value.to_dict()) for df in at.dataframe) + " ".join(c.value for c in at.caption)
    assert "SECRET" not in shown


def test_no_section_without_budgets(monkeypatch, sqlite_url):
    _seed(sqlite_url, budgets=False)
    at = open_app(monkeypatch, sqlite_url)
    assert "Budgets" not in [h.value for h in at.subheader]
