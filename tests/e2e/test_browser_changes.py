"""Issue 15 in the real browser (Debian's Chromium through Playwright): on a ledger built with a spike
three days ago, the spend chart draws the spike's red mark and lists its line; the overlay toggle
draws the previous period's dashed line and names its total; the movers and the caching panel show."""

from __future__ import annotations

import os
from datetime import datetime, time, timedelta, timezone
from decimal import Decimal

import pytest
from helpers import make_record

from spendlog.dashboard.change_charts import PREVIOUS_COLOR, SPIKE_COLOR
from spendlog.dashboard.formatting import label
from spendlog.db.changes import previous_filters
from spendlog.db.engine import make_engine
from spendlog.db.migrate import upgrade
from spendlog.db.periods import date_bounds
from spendlog.db.queries import Filters, grouped_totals
from spendlog.db.spikes import spend_spikes
from spendlog.db.store import insert_records
from spendlog.report.changes import spike_line
from spendlog.report.money import money_display

UTC = timezone.utc
NOISE = [Decimal(x) for x in ("0", "1", "-1", "0.5", "-0.5", "2", "-2")]


def _records(today) -> list[dict]:
    out = []
    for back in range(60, 0, -1):
        day = today - timedelta(days=back)
        at = datetime.combine(day, time(10), tzinfo=UTC)
        out.append(make_record(created_at=at, model="openai/gpt-4o-mini", app="bot", cost_usd=Decimal(7) + NOISE[back % 7],
                               prompt_tokens=2000, cached_tokens=1000))
        out.append(make_record(created_at=at + timedelta(hours=4), model="openai/gpt-4o", provider="openai", app="etl",
                               cost_usd=Decimal(3) + (Decimal(40) if back == 3 else 0)))
    return out


def _marks(page, kind: str) -> int:
    """Marks the first chart drew (as SVG, as Streamlit renders it here) in the spike red
    (``spike``: one symbol per spike) or the overlay's grey (``overlay``: its line)."""
    color = SPIKE_COLOR if kind == "spike" else PREVIOUS_COLOR
    return page.eval_on_selector('[data-testid="stVegaLiteChart"]', """(root, color) => {
        const all = [...root.querySelectorAll('svg.marks path')];
        return all.filter(p => (p.getAttribute('fill') || '').toLowerCase() === color
                               || (p.getAttribute('stroke') || '').toLowerCase() === color).length;
    }""", color)


@pytest.mark.browser
@pytest.mark.slow
def test_spikes_overlay_and_movers_in_a_real_browser(chromium, sqlite_url, tmp_path, dashboard_factory):
    today = datetime.now(UTC).date()
    engine = make_engine(sqlite_url, pool=False)
    upgrade(engine)
    with engine.begin() as conn:
        insert_records(conn, _records(today))
    start, end = date_bounds(today - timedelta(days=29), today, "UTC")
    current = Filters(start=start, end=end)
    with engine.connect() as conn:
        found = spend_spikes(conn, current, "UTC")
        before = next(grouped_totals(conn, previous_filters(current), []))["cost_usd"]
    engine.dispose()
    assert [s.day for s in found] == [today - timedelta(days=3)]
    env = {k: v for k, v in os.environ.items() if k != "SPENDLOG_TZ"}
    url = dashboard_factory(sqlite_url, env=env, cwd=tmp_path)

    page = chromium.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(30_000)
    page.goto(url)
    page.get_by_text(spike_line(found[0], label), exact=True).wait_for()
    page.get_by_test_id("stVegaLiteChart").first.locator("svg.marks").wait_for()
    page.wait_for_timeout(800)
    assert _marks(page, "spike") == 1  # the spike's mark
    assert _marks(page, "overlay") == 0

    page.get_by_text("Overlay the previous period").click()
    page.get_by_text("Dashed: the previous period", exact=False).wait_for()
    assert page.get_by_text(f"{money_display(before)} in all.", exact=False).is_visible()
    page.wait_for_timeout(800)
    assert _marks(page, "overlay") >= 1  # the dashed line
    dashed = page.eval_on_selector('[data-testid="stVegaLiteChart"]', """(root) =>
        [...root.querySelectorAll('svg.marks .mark-line path')].map(p => p.getAttribute('stroke-dasharray'))""")
    assert "6,4" in [d.replace(" ", "") for d in dashed if d]
    assert _marks(page, "spike") == 1

    page.get_by_text("Biggest movers").wait_for()
    page.get_by_text("Prompt caching").wait_for()
    page.close()
