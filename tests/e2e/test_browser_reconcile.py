"""The Reconciliation page in one real browser (Debian's Chromium through Playwright): the navigation
opens it, an activity file is uploaded, the verdict, the chart and the table show, and the CSV
download holds every row with a hostile model name neutralised for spreadsheets."""

from __future__ import annotations

import csv
import io
import json
import os
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from helpers import make_record

from spendlog.db.engine import make_engine
from spendlog.db.migrate import upgrade
from spendlog.db.store import insert_records

DAY = datetime(2026, 11, 20, 12, tzinfo=timezone.utc)
HOSTILE = "=HYPERLINK(\"http://evil\")"


@pytest.mark.browser
@pytest.mark.slow
def test_reconciliation_page_in_a_real_browser(chromium, sqlite_url, tmp_path, dashboard_factory):
    engine = make_engine(sqlite_url, pool=False)
    upgrade(engine)
    with engine.begin() as conn:
        insert_records(conn, [make_record(created_at=DAY, model="openai/gpt-4o-mini", cost_usd=Decimal("0.001"),
                                          prompt_tokens=10, completion_tokens=5) for _ in range(2)]
                       + [make_record(created_at=DAY, model=HOSTILE, cost_usd=Decimal("0.5"))])
    engine.dispose()
    activity = tmp_path / "activity.json"
    activity.write_text(json.dumps([
        {"date": "2026-11-20", "model": "openai/gpt-4o-mini", "requests": 2, "usage": 0.002, "prompt_tokens": 20,
         "completion_tokens": 10, "reasoning_tokens": 0}]))
    env = {k: v for k, v in os.environ.items() if k not in ("SPENDLOG_TZ", "SOLROUTER_MANAGEMENT_KEY")}
    url = dashboard_factory(sqlite_url, env=env, cwd=tmp_path)

    page = chromium.new_page(viewport={"width": 1400, "height": 900}, accept_downloads=True)
    page.set_default_timeout(30_000)
    page.goto(url)
    page.get_by_text("Total spend, exact:").wait_for()
    page.get_by_test_id("stSidebarNav").get_by_text("Reconciliation").click()
    page.get_by_role("heading", name="Reconciliation").wait_for()
    assert page.url.rstrip("/").endswith("/reconciliation")
    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(activity))
    page.get_by_text("1 of 2 day x model rows differ: 1 missing_in_router.").wait_for()
    page.get_by_test_id("stVegaLiteChart").locator("canvas, svg").first.wait_for()
    with page.expect_download() as info:
        page.get_by_role("button", name="Download the comparison (CSV)").click()
    rows = list(csv.DictReader(io.StringIO(info.value.path().read_text(encoding="utf-8"))))
    by_model = {r["model"]: r for r in rows if r["day"] == "2026-11-20"}
    assert by_model["openai/gpt-4o-mini"]["status"] == "match"
    assert by_model["'" + HOSTILE]["status"] == "missing_in_router"  # neutralised: text, not a formula
    assert by_model["'" + HOSTILE]["ledger_cost_usd"] == "0.5"
