"""One real browser: `spendlog dashboard` in a subprocess on a seeded ledger, driven by Debian's
Chromium through Playwright. Checks the total against the database, that the spend chart drew
its bars, that a filter changes the total, that the CSV downloads."""

from __future__ import annotations

import csv
import io
import os
import random
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from helpers import make_record

from spendlog.report.money import money_display
from spendlog.db.engine import make_engine
from spendlog.db.migrate import upgrade
from spendlog.db.queries import Filters, date_bounds, grouped_totals
from spendlog.db.store import insert_records

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "docs" / "dashboard.png"
UTC = timezone.utc

# model, provider, USD per 1M prompt tokens, per 1M completion tokens, share of traffic
MODELS = [
    ("openai/gpt-4o-mini", "openai", "0.15", "0.60", 40),
    ("openai/gpt-4o", "openai", "2.50", "10.00", 15),
    ("anthropic/claude-3.5-sonnet", "anthropic", "3.00", "15.00", 15),
    ("google/gemini-1.5-flash", "google", "0.075", "0.30", 12),
    ("deepseek/deepseek-r1", "deepseek", "0.55", "2.19", 10),
    ("mistralai/mistral-large", "mistralai", "2.00", "6.00", 8),
]
APPS = {"support-bot": ["alice", "bob", "carol"], "search": ["dave", "erin"], "summarizer": ["frank"],
        "etl": ["nightly"], "playground": ["grace", "heidi", "ivan"]}


def realistic_records(now: datetime, n: int = 2500, days: int = 29) -> list[dict]:
    rng = random.Random(20250314)
    weights = [m[4] for m in MODELS]
    out = []
    for i in range(n):
        model, provider, p_in, p_out, _w = rng.choices(MODELS, weights)[0]
        app = rng.choice(list(APPS))
        user = rng.choice(APPS[app])
        age = timedelta(seconds=rng.uniform(60, days * 86400)) * (1 - 0.4 * rng.random())  # busier lately
        prompt, completion = rng.randint(50, 6000), rng.randint(10, 1200)
        status = rng.choices([200, 429, 500], [96, 3, 1])[0]
        ok = status == 200
        cost = (Decimal(prompt) * Decimal(p_in) + Decimal(completion) * Decimal(p_out)) / 1_000_000 if ok else None
        if ok and rng.random() < 0.01:
            cost = None
        out.append(make_record(
            created_at=now - age, model=model, requested_model=model, provider=provider, app=app, user=user,
            api_key_hint=f"sr_...{list(APPS).index(app) + 1:04d}", status_code=status,
            error_type=None if ok else f"http_{status}", error_message=None if ok else "upstream said no",
            prompt_tokens=prompt if ok else None, completion_tokens=completion if ok else None,
            total_tokens=prompt + completion if ok else None, cost_usd=cost,
            cost_source="upstream" if cost is not None else "missing",
            latency_ms=int(rng.lognormvariate(6.5, 0.6)), stream=rng.random() < 0.5,
        ))
    return out


def _db_total(url: str, tz: str, days: int, **dims) -> dict:
    today = datetime.now(UTC).astimezone(__import__("zoneinfo").ZoneInfo(tz)).date()
    start, end = date_bounds(today - timedelta(days=days - 1), today, tz)
    engine = make_engine(url, readonly=True, pool=False)
    with engine.connect() as conn:
        total = next(grouped_totals(conn, Filters(start=start, end=end, **dims), [], tz))
    engine.dispose()
    return total


def _colored_pixels(page, selector: str) -> int:
    """Saturated pixels in the first canvas under ``selector`` (bars; axes and text are grey)."""
    return page.eval_on_selector(selector, """(root) => {
        const c = root.querySelector('canvas');
        if (!c) { return root.querySelectorAll('svg .mark-rect path, svg .mark-rect rect').length * 1000; }
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4) {
            const mx = Math.max(d[i], d[i+1], d[i+2]), mn = Math.min(d[i], d[i+1], d[i+2]);
            if (d[i+3] > 0 && mx - mn > 60) n++;
        }
        return n;
    }""")


@pytest.fixture
def dashboard(sqlite_url, tmp_path, dashboard_factory):
    engine = make_engine(sqlite_url, pool=False)
    upgrade(engine)
    with engine.begin() as conn:
        insert_records(conn, realistic_records(datetime.now(UTC)))
    engine.dispose()
    env = {k: v for k, v in os.environ.items() if k != "SPENDLOG_TZ"}
    return dashboard_factory(sqlite_url, env=env, cwd=tmp_path), sqlite_url


def _total_shown(page) -> str:
    metric = page.get_by_test_id("stMetric").filter(has_text="Total spend").first
    return metric.get_by_test_id("stMetricValue").inner_text().strip()


@pytest.mark.browser
@pytest.mark.slow
def test_dashboard_in_a_real_browser(chromium, dashboard, tmp_path):
    url, db = dashboard
    page = chromium.new_page(viewport={"width": 1400, "height": 900}, accept_downloads=True)
    page.set_default_timeout(30_000)
    page.goto(url)

    # the total equals the database's, to the last digit
    total = _db_total(db, "UTC", 30)
    page.get_by_text("Total spend, exact:").wait_for()
    assert _total_shown(page) == money_display(total["cost_usd"])
    assert page.get_by_text(f"Total spend, exact: {money_display(total['cost_usd'], exact=True)}").is_visible()
    # the default view is in the address bar as a (bare) link
    assert page.url.rstrip("/") == url.rstrip("/"), page.url

    # the spend-per-model chart drew its bars
    chart = page.get_by_test_id("stVegaLiteChart").first
    chart.locator("canvas, svg").first.wait_for()
    page.wait_for_timeout(500)
    assert _colored_pixels(page, '[data-testid="stVegaLiteChart"]') > 500

    # screenshot for the README, once every chart has drawn
    page.wait_for_function("document.querySelectorAll('[data-testid=\"stVegaLiteChart\"] canvas, "
                           "[data-testid=\"stVegaLiteChart\"] svg.marks').length >= 7")
    # Streamlit scrolls inside its own container: grow the window to the content for a full-page shot
    height = page.evaluate("Math.max(...[...document.querySelectorAll('[data-testid=\"stMain\"], "
                           "[data-testid=\"stAppViewContainer\"], section')].map(e => e.scrollHeight))")
    page.set_viewport_size({"width": 1400, "height": min(max(900, int(height)), 5000)})
    page.wait_for_timeout(1500)
    shot = tmp_path / "dashboard-realistic.png"  # docs/dashboard.png is test_browser_layout's (SPENDLOG_SCREENSHOTS=1)
    page.screenshot(path=str(shot), full_page=True)
    page.set_viewport_size({"width": 1400, "height": 900})
    assert shot.stat().st_size > 20_000

    # changing a filter changes the total (to the database's figure for that filter)
    sidebar = page.get_by_test_id("stSidebar")
    sidebar.get_by_test_id("stMultiSelect").filter(has_text="Model").click()
    page.get_by_role("option", name="anthropic/claude-3.5-sonnet").click()
    page.keyboard.press("Escape")
    only = _db_total(db, "UTC", 30, models=("anthropic/claude-3.5-sonnet",))
    assert only["cost_usd"] != total["cost_usd"]
    page.get_by_text(f"Total spend, exact: {money_display(only['cost_usd'], exact=True)}").wait_for()
    assert _total_shown(page) == money_display(only["cost_usd"])
    assert "model=anthropic" in page.url  # and the filter is in the link

    # the CSV download works and matches the screen
    with page.expect_download() as info:
        page.get_by_role("button", name="Download spend per day per model (CSV)").click()
    download = info.value
    target = tmp_path / download.suggested_filename
    download.save_as(target)
    assert target.suffix == ".csv"
    rows = list(csv.DictReader(io.StringIO(target.read_text(encoding="utf-8"))))
    assert rows and {r["model"] for r in rows} == {"anthropic/claude-3.5-sonnet"}
    assert sum((Decimal(r["cost_usd"] or 0) for r in rows), Decimal(0)) == only["cost_usd"]

    # live: a call recorded now shows up without touching the page
    sidebar.get_by_text("Live (refresh every few seconds)").click()
    page.wait_for_function("() => location.search.includes('live=1')")
    engine = make_engine(db, pool=False)
    with engine.begin() as conn:
        insert_records(conn, [make_record(created_at=datetime.now(UTC), model="anthropic/claude-3.5-sonnet",
                                          cost_usd=Decimal("1.000000000001"))])
    engine.dispose()
    after = only["cost_usd"] + Decimal("1.000000000001")
    page.get_by_text(f"Total spend, exact: {money_display(after, exact=True)}").wait_for(timeout=30_000)
    page.close()


@pytest.fixture
def hit_counter():
    """A real HTTP server on 127.0.0.1 port 0 that records the path of every request it gets."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # the http.server hook name
            hits.append(self.path)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], hits
    server.shutdown()
    server.server_close()


@pytest.mark.browser
@pytest.mark.slow
def test_hostile_text_in_a_real_browser(chromium, hit_counter, sqlite_url, tmp_path, dashboard_factory):
    """Markdown and HTML in URL values and ledger values fetch nothing and make no link or image;
    the page asks nothing of any host but 127.0.0.1 (no usage statistics)."""
    from urllib.parse import urlencode

    port, hits = hit_counter
    target = f"http://127.0.0.1:{port}"
    engine = make_engine(sqlite_url, pool=False)
    upgrade(engine)
    with engine.begin() as conn:
        insert_records(conn, [
            make_record(created_at=datetime.now(UTC), app=f"![m]({target}/ledger-image)", user=f"[u]({target}/u)"),
            make_record(created_at=datetime.now(UTC), app=f'<img src="{target}/ledger-html">'),
        ])
    engine.dispose()
    url = dashboard_factory(sqlite_url, cwd=tmp_path)
    query = urlencode({"range": f"![x]({target}/p)", "tz": "[a](javascript:alert(1))",
                       "by": "[b](/b)", "app": f"![y]({target}/chip)"})
    made_by = """(target) => [...document.querySelectorAll('a, img')]
        .filter(e => (e.href || e.src || '').startsWith(target) || (e.href || '').startsWith('javascript:')
                     || ['a', 'b', 'u', 'x', 'y', 'm'].includes(e.textContent.trim()) || e.alt)
        .map(e => e.outerHTML)"""
    page = chromium.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(30_000)
    foreign: list[str] = []  # nothing may leave 127.0.0.1 (usage statistics included): recorded, never sent
    page.route(lambda u: not u.startswith("http://127.0.0.1:"),
               lambda route: (foreign.append(route.request.url), route.abort()))
    page.goto(f"{url}?{query}")  # the URL's values: notes and a chosen app
    sidebar = page.get_by_test_id("stSidebar")
    sidebar.get_by_text("unknown timezone", exact=False).wait_for()
    page.get_by_text("Total spend, exact:").wait_for()
    page.wait_for_timeout(1000)  # time for any image to be fetched
    made = page.evaluate(made_by, target)
    notes = [sidebar.get_by_text(note, exact=False).count() for note in (
        "unknown timezone '[a](javascript:alert(1))'", f"unknown range '![x]({target}/p)'",
        "unknown granularity '[b](/b)'")]

    page.goto(url)  # the ledger's values: sidebar choices, charts, tables
    page.get_by_text("Total spend, exact:").wait_for()
    page.wait_for_function("document.querySelectorAll('[data-testid=\"stVegaLiteChart\"] canvas, "
                           "[data-testid=\"stVegaLiteChart\"] svg.marks').length >= 7")
    page.get_by_test_id("stSidebar").get_by_test_id("stMultiSelect").filter(has_text="App").click()
    page.get_by_role("option", name=f"![m]({target}/ledger-image)").wait_for()
    page.wait_for_timeout(1000)
    made += page.evaluate(made_by, target)
    page.close()
    assert hits == [] and foreign == []
    assert made == []
    assert notes == [1, 1, 1]  # each note shows its value as typed
