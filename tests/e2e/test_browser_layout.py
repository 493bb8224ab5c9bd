"""The dashboard as people read it (issue 19), in one real browser (Debian's Chromium through
Playwright) at 800 and 1400 px, on a small ledger of cents and on the demo's ledger.

What is measured, not eyeballed: every category bar chart draws a label for each of its
categories (the SVG text Vega draws, less the labels it
hides for overlap), money ticks are distinct and not all "$0", no axis says
"NaN", no headline figure or download button text is cut (``scrollWidth <= clientWidth``), the
errors view's rate is errors over all calls, and the request log pages, sorts, searches and opens
a call. Screenshots go to docs/ only with ``SPENDLOG_SCREENSHOTS=1`` (else to a temp dir)."""

from __future__ import annotations

import os
import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlencode

import pytest
from helpers import make_record

from spendlog.dashboard.charts import short_name
from spendlog.dashboard.formatting import format_percent
from spendlog.report.money import money_display
from spendlog.db.engine import make_engine
from spendlog.db.migrate import upgrade
from spendlog.db.queries import Filters, date_bounds, grouped_totals
from spendlog.db.request_log import log_page
from spendlog.db.store import insert_records

ROOT = Path(__file__).resolve().parents[2]
UTC = timezone.utc

# The texts a chart shows: Vega draws into an SVG; a label it hides for overlap has opacity 0.
VISIBLE_TEXTS = """(svg) => [...svg.querySelectorAll('text')]
    .filter(t => t.getAttribute('opacity') !== '0' && getComputedStyle(t).opacity !== '0'
                 && t.textContent.trim() !== '' && t.getBBox().width > 0)
    .map(t => t.textContent.trim())"""

LONG_APP = "customer-support-escalations-eu-west"  # longer than the axis keeps: shortened, whole in the tooltip


def small_records(now: datetime) -> list[dict]:
    """22 calls worth $0.00253 in all: 3 apps (one with a long name), 3 users, 4 models, 3 errors."""
    models = ["openai/gpt-4o-mini", "google/gemini-1.5-flash", "mistralai/mistral-small", "meta/llama-3.1-8b"]
    apps = ["notes", "search", LONG_APP]
    users = ["ann", "ben", "cy"]
    out = []
    costs = [Decimal("0.0001"), Decimal("0.00015"), Decimal("0.00008"), Decimal("0.00012")]
    spent = Decimal(0)
    for i in range(22):
        error = i in (4, 11, 17)
        cost = None if error else costs[i % 4]
        spent += cost or 0
        out.append(make_record(
            created_at=now - timedelta(days=i % 9, minutes=7 * i), model=models[i % 4], app=apps[i % 3],
            user=users[(i // 3) % 3], cost_usd=cost, cost_source="upstream" if cost is not None else "missing",
            status_code=429 if error else 200, error_type="http_429" if error else None,
            error_message=("rate limited: " + "slow down " * 40 + "END") if error else None,
            prompt_tokens=None if error else 100 + i, completion_tokens=None if error else 20 + i,
            total_tokens=None if error else 120 + 2 * i, latency_ms=300 + 37 * i, request_id=f"req-small-{i:02d}"))
    # the last call makes the total exactly $0.00253
    out[-1]["cost_usd"] = (out[-1]["cost_usd"] or 0) + Decimal("0.00253") - spent
    return out


def _seed(url: str, records: list[dict]) -> None:
    engine = make_engine(url, pool=False)
    upgrade(engine)
    with engine.begin() as conn:
        insert_records(conn, records)
    engine.dispose()


def _totals(url: str, by: tuple, **kw) -> list[dict]:
    today = datetime.now(UTC).date()
    start, end = date_bounds(today - timedelta(days=29), today, "UTC")
    engine = make_engine(url, readonly=True, pool=False)
    with engine.connect() as conn:
        rows = list(grouped_totals(conn, Filters(start=start, end=end, **kw), by, "UTC"))
    engine.dispose()
    return rows


def _page_of(url: str, **kw):
    today = datetime.now(UTC).date()
    start, end = date_bounds(today - timedelta(days=29), today, "UTC")
    engine = make_engine(url, readonly=True, pool=False)
    with engine.connect() as conn:
        found = log_page(conn, Filters(start=start, end=end), **kw)
    engine.dispose()
    return found


@pytest.fixture
def ledgers(tmp_path, dashboard_factory):
    from spendlog.demo import generate_records

    now = datetime.now(UTC)
    small = f"sqlite:///{tmp_path / 'small.db'}"
    _seed(small, small_records(now))
    demo = f"sqlite:///{tmp_path / 'demo.db'}"
    _seed(demo, list(generate_records(days=30, seed=7, per_day=250, end=now)))
    env = {k: v for k, v in os.environ.items() if k != "SPENDLOG_TZ"}
    return {"small": (dashboard_factory(small, env=env, cwd=tmp_path), small),
            "demo": (dashboard_factory(demo, env=env, cwd=tmp_path), demo)}


COUNT = """() => [...document.querySelectorAll('[data-testid="stVegaLiteChart"]')].map(
    e => e.querySelectorAll('svg.marks').length + ':' + e.getBoundingClientRect().top)"""


def _wait_charts(page, n: int) -> None:
    try:
        page.get_by_text("Total spend, exact:").wait_for()
        page.wait_for_function(f"document.querySelectorAll('[data-testid=\"stVegaLiteChart\"] svg.marks').length >= {n}")
    except Exception as exc:
        errors = page.get_by_test_id("stException").all_inner_texts()
        raise AssertionError(f"the page did not draw {n} charts: {errors} charts={page.evaluate(COUNT)} {page.inner_text('body')[-3000:]}") from exc
    page.wait_for_timeout(1200)  # the last resize redraws


def _chart_texts(page, heading: str) -> list[str]:
    """The texts drawn in the chart under the subheader ``heading`` (same column)."""
    return page.evaluate("""(heading) => {
        const h = [...document.querySelectorAll('h3')].find(e => e.textContent.trim() === heading);
        if (!h) return null;
        let box = h.closest('[data-testid="stColumn"]');
        if (!box) { box = h.closest('[data-testid="stElementContainer"]');
                    while (box && !box.querySelector('svg.marks')) box = box.nextElementSibling; }
        const svg = box && box.querySelector('[data-testid="stVegaLiteChart"] svg.marks');
        return svg ? (%s)(svg) : null;
    }""" % VISIBLE_TEXTS, heading)


def _all_texts(page) -> list[list[str]]:
    return page.evaluate("""() => [...document.querySelectorAll('[data-testid="stVegaLiteChart"] svg.marks')]
        .map(%s)""" % VISIBLE_TEXTS)


def _cut(page) -> list[str]:
    """Headline figures and button labels whose text is wider than their box."""
    return page.evaluate("""() => {
        const els = [...document.querySelectorAll('[data-testid="stMetricValue"], [data-testid="stMetricValue"] *, '
                      + '[data-testid="stMetricLabel"] p, .st-key-downloads button p, .st-key-downloads button')];
        return els.filter(e => e.clientWidth > 0 && e.scrollWidth > e.clientWidth + 1)
                  .map(e => `${e.textContent.trim()} (${e.scrollWidth} > ${e.clientWidth})`);
    }""")


def _money_axis_ok(texts: list[str]) -> bool:
    ticks = [t for t in texts if t.startswith("$")]
    return len(ticks) >= 2 and len(set(ticks)) == len(ticks) and any(re.search(r"[1-9]", t) for t in ticks)


def _screenshot(page, name: str, tmp_path: Path) -> Path:
    target = (ROOT / "docs" / name) if os.environ.get("SPENDLOG_SCREENSHOTS") == "1" else tmp_path / name
    target.parent.mkdir(exist_ok=True)
    height = page.evaluate("Math.max(...[...document.querySelectorAll('[data-testid=\"stMain\"], "
                           "[data-testid=\"stAppViewContainer\"], section')].map(e => e.scrollHeight))")
    width = page.viewport_size["width"]
    page.set_viewport_size({"width": width, "height": min(max(900, int(height)), 6000)})
    page.wait_for_timeout(1500)
    page.screenshot(path=str(target), full_page=True)
    page.set_viewport_size({"width": width, "height": 900})
    return target


def _check_overview(page, db: str, where: str) -> None:
    def top(dim):  # the chart's bars: the ten biggest spenders (and "other")
        rows = sorted(_totals(db, (dim,)), key=lambda r: (-r["cost_usd"], r[dim] or "(none)"))
        return [r[dim] for r in rows][:10]

    by_app, by_user = top("app"), top("user")
    models = sorted(_totals(db, ("model",)), key=lambda r: (-r["requests"], r["model"] or ""))
    models = [r["model"] for r in models]
    expected = {"Spend by app": by_app[:10], "Spend by user": by_user[:10], "Error rate per model": None,
                "Latency per model": models[:12]}
    for heading, names in expected.items():
        texts = _chart_texts(page, heading)
        assert texts, f"{where}: no chart drawn under {heading!r}"
        if names is not None:
            missing = [n for n in names if short_name(n or "(none)") not in texts]
            assert not missing, f"{where}: {heading} has bars without labels: {missing}"
    for heading in ("Spend by app", "Spend by user"):
        assert _money_axis_ok(_chart_texts(page, heading)), f"{where}: {heading} money ticks {_chart_texts(page, heading)}"
    spend = [t for t in _all_texts(page)[0]]
    assert _money_axis_ok(spend), f"{where}: spend per day ticks {spend}"
    nan = [t for texts in _all_texts(page) for t in texts if "NaN" in t]
    assert nan == [], f"{where}: NaN drawn: {nan}"
    assert _cut(page) == [], f"{where}: truncated: {_cut(page)}"
    if LONG_APP in by_app:
        assert short_name(LONG_APP) != LONG_APP and short_name(LONG_APP) in _chart_texts(page, "Spend by app")


@pytest.mark.browser
@pytest.mark.slow
def test_the_dashboard_at_800_and_1400_px(chromium, ledgers, tmp_path):
    context = chromium.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(40_000)
    for name in ("small", "demo"):
        url, db = ledgers[name]
        for width in (800, 1400):
            page.set_viewport_size({"width": width, "height": 900})
            page.goto(url)
            _wait_charts(page, 7)
            _check_overview(page, db, f"{name} at {width} px")
            if name == "demo":
                _screenshot(page, "dashboard.png" if width == 1400 else "dashboard-800.png", tmp_path)

    # the errors view: errors over time and rates over ALL calls of the view, not 100%
    url, db = ledgers["small"]
    page.set_viewport_size({"width": 1400, "height": 900})
    page.goto(f"{url}?status=errors")
    _wait_charts(page, 3)
    everything = _totals(db, ())[0]
    failed = _totals(db, (), status="errors")[0]
    rate = page.get_by_test_id("stMetric").filter(has_text="Error rate").get_by_test_id("stMetricValue")
    assert rate.inner_text().strip() == format_percent(failed["errors"], everything["requests"]) != "100.0%"
    assert _chart_texts(page, "Errors per day, by error and status")
    assert "http_429 (429)" in _chart_texts(page, "Errors per day, by error and status")
    assert [t for texts in _all_texts(page) for t in texts if "NaN" in t] == []
    assert _cut(page) == []

    # the request log: pages, sorts, searches, opens a call (all in the URL)
    url, db = ledgers["demo"]
    first, second = _page_of(db), _page_of(db, page=1)
    log = page.locator(".st-key-request_log")
    page.goto(url)
    page.get_by_text("Total spend, exact:").wait_for()
    log.get_by_text("Page 1 of ", exact=False).wait_for()
    page.goto(f"{url}?{urlencode({'page': 2})}")
    log.get_by_text("Page 2 of ", exact=False).wait_for()
    assert log.get_by_text(f"calls {first.size + 1:,}–{2 * first.size:,}").count() == 1
    by_cost = _page_of(db, sort="cost")
    page.goto(f"{url}?{urlencode({'sort': 'cost', 'call': by_cost.rows[0]['id']})}")
    detail = page.locator(".st-key-call_detail")
    detail.wait_for()
    page.wait_for_function("""(id) => (document.querySelector('.st-key-call_detail') || {}).innerText
                              ?.includes(id)""", arg=by_cost.rows[0]["id"])
    exact = money_display(by_cost.rows[0]["cost_usd"], exact=True)
    assert exact in detail.inner_text()  # the exact figure in the record
    # a call with a request id (about one demo call in eight has none: transport errors, some upstreams);
    # rows[3] itself, when it had none, searched for "None" and made this test fail now and then
    target = next(r for r in second.rows[3:] if r["request_id"])
    # a link opened afresh (a new tab: its own Streamlit session, as when someone follows a shared link)
    page.close()
    page = context.new_page()
    log = page.locator(".st-key-request_log")
    page.goto(f"{url}?{urlencode({'q': target['request_id']})}")
    log.get_by_text("Page 1: calls 1–1", exact=False).wait_for(timeout=60_000)
    # clicking the row (its selection box, the grid's first column) opens that call
    grid = log.get_by_test_id("stDataFrame")
    grid.scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    box = grid.bounding_box()
    page.mouse.click(box["x"] + 18, box["y"] + 35 + 17)
    page.wait_for_function("""(id) => (document.querySelector('.st-key-call_detail') || {}).innerText
                              ?.includes(id)""", arg=target["id"])
    assert "call=" + target["id"] in page.url
    context.close()
