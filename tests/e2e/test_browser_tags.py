"""The tag picker and the tag filter in a real browser: `spendlog dashboard` on a tagged ledger,
Chromium through Playwright. The "Spend by tag" chart switches keys from its picker, the sidebar's
tag filter changes the total to the database's figure, and both travel in the link."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from urllib.parse import unquote

import pytest
from test_browser import _db_total, _total_shown, realistic_records

from spendlog.db.engine import make_engine
from spendlog.db.migrate import upgrade
from spendlog.db.store import insert_records
from spendlog.report.money import money_display

UTC = timezone.utc
HOSTILE = "<img src=x onerror=alert(1)>"


@pytest.fixture
def tagged_dashboard(sqlite_url, tmp_path, dashboard_factory):
    records = realistic_records(datetime.now(UTC), n=1200)
    for i, r in enumerate(records):  # team on every call (3 values), feature on 2 of 3 (4 values, and (none))
        r["tags"] = {"team": ("core", "growth", "ml")[i % 3]}
        if i % 3:
            r["tags"]["feature"] = ("search", "chat", HOSTILE, "embed")[i % 4]
    engine = make_engine(sqlite_url, pool=False)
    upgrade(engine)
    with engine.begin() as conn:
        insert_records(conn, records)
    engine.dispose()
    env = {k: v for k, v in os.environ.items() if k != "SPENDLOG_TZ"}
    return dashboard_factory(sqlite_url, env=env, cwd=tmp_path), sqlite_url


@pytest.mark.browser
@pytest.mark.slow
def test_tag_picker_and_tag_filter_in_a_real_browser(chromium, tagged_dashboard):
    url, db = tagged_dashboard
    page = chromium.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(30_000)
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(url)
    page.get_by_text("Total spend, exact:").wait_for()
    page.get_by_text("Spend by tag").wait_for()
    page.get_by_text("3 values of this tag in the view.").wait_for()  # team, the key on most calls

    # the picker: another key redraws the chart and goes into the link
    picker = page.get_by_test_id("stSelectbox").filter(has_text="Tag key")
    picker.locator("input").first.click()  # the combobox: typed and chosen with Enter (its list is off-screen)
    page.keyboard.type("feature")
    page.keyboard.press("Enter")
    page.get_by_text("5 values of this tag in the view.").wait_for()  # four features and (none)
    page.wait_for_function("() => location.search.includes('tagby=feature')")

    # the tag filter: the total becomes the database's figure for the tag, and the link holds it
    total = _db_total(db, "UTC", 30)
    only = _db_total(db, "UTC", 30, tags=(("team", "growth"),))
    assert only["cost_usd"] != total["cost_usd"]
    sidebar = page.get_by_test_id("stSidebar")
    tags = sidebar.get_by_test_id("stMultiSelect").filter(has_text="Tags")
    _pick(page, tags, "team=growth")
    page.keyboard.press("Escape")
    page.get_by_text(f"Total spend, exact: {money_display(only['cost_usd'], exact=True)}").wait_for()
    assert _total_shown(page) == money_display(only["cost_usd"])
    page.wait_for_function("() => decodeURIComponent(location.search).includes('tag=team=growth')")
    assert "tagby=feature" in unquote(page.url)

    # a hostile tag value is an option's text, never markup: no image element, no script ran
    _open(page, tags, f"feature={HOSTILE}")
    assert page.get_by_role("option", name=f"feature={HOSTILE}").count() == 1
    page.keyboard.press("Escape")
    assert page.locator("img[src='x']").count() == 0 and dialogs == []
    page.close()


def _open(page, multiselect, option: str, tries: int = 5) -> None:
    """Open a Streamlit multiselect until ``option`` is listed. A rerun that lands between the click and
    the list (the picker above changed the link) redraws the widget closed, so it is opened again;
    an option that never appears still fails."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for _ in range(tries):
        multiselect.click()
        try:
            page.get_by_role("option", name=option).wait_for(timeout=5000)
            return
        except PlaywrightTimeout:
            page.keyboard.press("Escape")
    raise AssertionError(f"the option {option!r} never appeared in the list")


def _pick(page, multiselect, option: str) -> None:
    _open(page, multiselect, option)
    page.get_by_role("option", name=option).click()
