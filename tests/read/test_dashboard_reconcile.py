"""The dashboard's Reconciliation page and closed months through Streamlit's AppTest, on real
ledgers (SQLite and PostgreSQL): an uploaded activity file (JSON, CSV, malformed), the router's own
activity from the fake upstream with the management key in the environment (never shown), and the
overview's closed-months table with the spend that arrived after the close."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path

from helpers import make_record
from reconcile_helpers import away_from_midnight, chat, hooked_client
from streamlit.testing.v1 import AppTest

from spendlog.db.closes import close_month
from spendlog.db.engine import make_engine
from spendlog.db.migrate import upgrade
from spendlog.db.store import insert_records

APP = Path(__file__).resolve().parents[2] / "dashboard" / "app.py"
DAY = datetime(2026, 11, 20, 12, tzinfo=timezone.utc)
MINI, SONNET = "openai/gpt-4o-mini", "anthropic/claude-3.5-sonnet"


def seed(url: str, records: list[dict]) -> None:
    engine = make_engine(url, pool=False)
    upgrade(engine)
    with engine.begin() as conn:
        insert_records(conn, records)
    engine.dispose()


def ledger() -> list[dict]:
    return [make_record(created_at=DAY, model=MINI, cost_usd=Decimal("0.001"), prompt_tokens=10, completion_tokens=5)
            for _ in range(3)] + [
        make_record(created_at=DAY, model=SONNET, cost_usd=Decimal("0.02"), prompt_tokens=7, completion_tokens=3)]


ACTIVITY = {"data": [
    {"date": "2026-11-20", "model": MINI, "requests": 3, "usage": 0.003, "prompt_tokens": 30, "completion_tokens": 15,
     "reasoning_tokens": 0},
    {"date": "2026-11-20", "model": SONNET, "requests": 1, "usage": 0.0275, "prompt_tokens": 7, "completion_tokens": 3,
     "reasoning_tokens": 0},
    {"date": "2026-11-20", "model": "openai/gpt-4o", "requests": 2, "usage": 0.01, "prompt_tokens": 4,
     "completion_tokens": 4, "reasoning_tokens": 0},
]}


def reconciliation(monkeypatch, url: str) -> AppTest:
    monkeypatch.setenv("SPENDLOG_DB_URL", url)
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    at.switch_page("reconcile_page.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert [t.value for t in at.title] == ["Reconciliation"]
    return at


def table(at: AppTest, column: str) -> list[dict]:
    """The rows of the one table that has ``column``."""
    (frame,) = [d.value for d in at.dataframe if column in d.value.columns]
    return frame.to_dict("records")


def test_an_uploaded_file_shows_the_difference_per_day_and_model(db_url, monkeypatch):
    seed(db_url, ledger())
    at = reconciliation(monkeypatch, db_url)
    assert [r.value for r in at.radio] == ["Upload an activity file"]  # no management key: no router option
    at.get("file_uploader")[0].upload("activity.json", json.dumps(ACTIVITY).encode(), "application/json")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.warning[0].value == "2 of 3 day x model rows differ: 1 missing_in_ledger, 1 cost_differs."
    rows = {r["Model"]: r for r in table(at, "Likely causes")}
    assert (rows[MINI]["Status"], rows[MINI]["Difference"]) == ("match", "$0.00")
    assert (rows[SONNET]["Status"], rows[SONNET]["Difference"]) == ("cost_differs", "$0.0075")
    assert (rows["openai/gpt-4o"]["Status"], rows["openai/gpt-4o"]["Difference"]) == ("missing_in_ledger", "$0.01")
    (month,) = table(at, "Unexplained")
    assert (month["Month"], month["Router"], month["Ledger"], month["Difference"]) == (
        "2026-11", "$0.0405", "$0.023", "$0.0175")
    (chart,) = at.get("vega_lite_chart")
    assert '"difference_usd"' in chart.proto.spec and '"Model"' in chart.proto.spec
    assert at.get("download_button")[0].proto.label == "Download the comparison (CSV)"

    at.text_input(key="rec_tolerance").set_value("0.01").run()
    assert at.warning[0].value == "1 of 3 day x model rows differ: 1 missing_in_ledger."


def test_a_malformed_file_is_one_line_naming_the_row(sqlite_url, monkeypatch):
    seed(sqlite_url, ledger())
    at = reconciliation(monkeypatch, sqlite_url)
    bad = "date,model,requests,usage,prompt_tokens,completion_tokens\n2026-11-20,m,1,lots,1,1\n"
    at.get("file_uploader")[0].upload("activity.csv", bad.encode(), "text/csv")
    at.run()
    assert not at.exception
    (error,) = at.error
    assert "\n" not in error.value and "activity.csv" in error.value and "usage" in error.value
    assert not at.get("download_button")


def test_the_routers_own_activity_with_the_key_never_shown(db_url, monkeypatch, fake_upstream):
    day = away_from_midnight()
    chat(hooked_client(fake_upstream.base_url, fake_upstream.api_key, db_url), MINI, 2)
    import spendlog

    spendlog.flush(10)
    monkeypatch.setenv("SOLROUTER_MANAGEMENT_KEY", fake_upstream.management_key)
    monkeypatch.setenv("SOLROUTER_BASE_URL", fake_upstream.base_url)
    at = reconciliation(monkeypatch, db_url)
    at.radio(key="rec_source").set_value("Ask the router (GET /activity)").run()
    today = date.fromisoformat(day)
    at.date_input(key="rec_days").set_value((today, today)).run()
    assert not at.success and not at.get("download_button")  # nothing asked until the toggle
    at.toggle(key="rec_fetch").set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.success[0].value == f"All 1 day x model rows match ({day} – {day}, UTC)."
    shown = [e.value for kind in ("markdown", "caption", "text", "success", "error", "info", "warning")
             for e in at.get(kind) if isinstance(getattr(e, "value", None), str)]
    assert shown and not any(fake_upstream.management_key in v for v in shown)


def test_the_overview_marks_closed_months_and_their_late_spend(db_url, monkeypatch):
    seed(db_url, ledger())
    engine = make_engine(db_url)
    close_month(engine, "2026-11", "UTC", by="finance", note="November report")
    engine.dispose()
    seed(db_url, [make_record(created_at=DAY, model=MINI, cost_usd=Decimal("0.5"))])  # after the close
    monkeypatch.setenv("SPENDLOG_DB_URL", db_url)
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.query_params.update({"range": "custom", "from": "2026-11-01", "to": "2026-11-30"})
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    (row,) = table(at, "Late spend")
    assert (row["Month"], row["By"], row["Calls as closed"], row["Spend as closed"], row["Late calls"],
            row["Late spend"], row["Note"]) == ("🔒 2026-11", "finance", "4", "$0.023", "1", "$0.50", "November report")
    assert any(c.value.startswith("Arrived after the close") and "2026-11: 1 calls, \\$0.50" in c.value
               for c in at.caption)


def test_an_unreadable_database_is_one_message_on_the_page(tmp_path, monkeypatch):
    monkeypatch.setenv("SPENDLOG_DB_URL", f"sqlite:///{tmp_path / 'nothing-here' / 'ledger.db'}")
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    at.switch_page("reconcile_page.py").run()
    at.get("file_uploader")[0].upload("activity.json", json.dumps(ACTIVITY).encode(), "application/json")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    (error,) = at.error
    assert error.value.startswith("**The database cannot be read.**")
