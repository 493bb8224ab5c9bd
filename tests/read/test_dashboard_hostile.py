"""Hostile text in the dashboard (issue 12): URL values and ledger values are shown as text, never
as Markdown (no image fetched, no link made), and bidi controls are shown, not applied.

The real browser's side of the same promise is ``test_browser.py::test_hostile_text_in_a_real_browser``."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from helpers import make_record
from test_dashboard import RANGE, chart_data, metric, open_app, seed

from spendlog.dashboard import downloads
from spendlog.dashboard.formatting import label, safe_hint
from spendlog.db.queries import Filters, date_bounds

BIDI = [0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
EVIL_APP = "evil\u202Egnp.exe"  # reads "evilexe.png" when the override is applied
SHOWN_APP = "evil⟨U+202E⟩gnp.exe"
HOSTILE_URL = {
    "range": "![x](http://127.0.0.1:1/p.png)",
    "tz": "[a](javascript:alert(1))",
    "by": "<img src=x>",
    "status": ":red[x] $x^2$",
}
# What each Markdown / HTML construct above would start with, were it rendered
CONSTRUCTS = ("![", "](", "<img", ":red[", "$x")
# The element fields Streamlit renders as Markdown (st.text and st.code bodies excepted)
MARKDOWN_FIELDS = ("body", "label", "help")


def markdown_rendered(at) -> list[str]:
    """Every string of the app that the frontend renders as Markdown."""
    out = []
    for node in at:
        proto = getattr(node, "proto", None)
        if node.type in ("text", "code") or not hasattr(proto, "DESCRIPTOR"):
            continue
        out += [getattr(proto, name) for name in MARKDOWN_FIELDS if name in proto.DESCRIPTOR.fields_by_name]
    return out


def has_bidi(text: str) -> bool:
    return any(chr(cp) in text for cp in BIDI)


def test_label_shows_each_bidi_control_as_a_visible_marker():
    for cp in BIDI:
        assert label(f"a{chr(cp)}b") == f"a⟨U+{cp:04X}⟩b"
    assert label(EVIL_APP) == SHOWN_APP
    assert label("café 日本 مرحبا") == "café 日本 مرحبا"  # right-to-left text itself is not a control
    assert label(None) == label("") == "(none)"
    assert safe_hint("sr_...ab\u202Ecd") == "sr_...b⟨U+202E⟩cd"  # a hint past the stored form is re-masked
    assert not has_bidi(safe_hint("sr\u2067_live_0123456789abcdef"))


def test_url_values_in_notes_are_plain_text(monkeypatch, sqlite_url):
    seed(sqlite_url, [make_record(created_at=datetime(2025, 3, 12, tzinfo=timezone.utc))])
    at = open_app(monkeypatch, sqlite_url, HOSTILE_URL)
    rendered = markdown_rendered(at)
    assert rendered, "the page has Markdown elements to look at"
    assert [s for s in rendered if any(c in s for c in CONSTRUCTS)] == []
    notes = [t.value for t in at.sidebar.text if t.value.startswith("Ignored in the link:")]
    for value in HOSTILE_URL.values():  # each note quotes its value, as text
        assert sum(value in note for note in notes) == 1, (value, notes)
    assert metric(at, "Requests") == "0"  # the defaults apply (the last 30 days): the page still works


@pytest.fixture
def evil_ledger(sqlite_url) -> str:
    start = datetime(2025, 3, 11, 9, tzinfo=timezone.utc)
    records = [make_record(created_at=start + timedelta(hours=i), app=EVIL_APP, user="mallory\u2066",
                           model="openai/gpt\u200F-4o", api_key_hint="sr_...ab\u202Ecd", cost_usd=Decimal("0.25"))
               for i in range(3)]
    records += [make_record(created_at=start + timedelta(hours=i), app="bot", cost_usd=Decimal("0.01"))
                for i in range(2)]
    records.append(make_record(created_at=start, app=EVIL_APP, status_code=500, error_type="http_500",
                               error_message="upstream said \u202Eon", cost_usd=None, cost_source="missing"))
    seed(sqlite_url, records)
    return sqlite_url


def test_bidi_controls_are_shown_not_applied(monkeypatch, evil_ledger):
    at = open_app(monkeypatch, evil_ledger, RANGE)
    options = {w.key: w.options for w in at.sidebar.multiselect}
    assert SHOWN_APP in options["f_app"] and "mallory⟨U+2066⟩" in options["f_user"]
    assert "openai/gpt⟨U+200F⟩-4o" in options["f_model"] and "sr_...b⟨U+202E⟩cd" in options["f_key"]
    assert not [o for opts in options.values() for o in opts if has_bidi(o)]

    # the filter selects by the stored value, and the link keeps it
    at.sidebar.multiselect(key="f_app").set_value([EVIL_APP])
    at.run()
    assert not at.exception
    assert metric(at, "Requests") == "4" and at.query_params["app"] == EVIL_APP

    # tables and charts (categories and tooltips) show the marker
    tables = [df.value for df in at.dataframe]
    assert set(tables[-1]["App"]) == {SHOWN_APP} and set(tables[-1]["Message"]) == {"upstream said ⟨U+202E⟩on"}
    charts = [chart_data(at, i) for i in range(len(at.get("vega_lite_chart")))]
    assert any(SHOWN_APP in set(c.get("name", [])) for c in charts)
    for frame in [*tables, *charts]:
        cells = frame.astype(str).to_numpy().ravel().tolist() + [str(c) for c in frame.columns]
        assert not [c for c in cells if has_bidi(c)]
    assert not [s for s in markdown_rendered(at) + [t.value for t in at.text] if has_bidi(s)]


def test_exports_keep_the_stored_value(evil_ledger):
    out = subprocess.run([sys.executable, "-m", "spendlog", "export", "--db", evil_ledger, "--from", "2025-03-11",
                          "--to", "2025-03-11", "--by", "call", "--format", "jsonl"],
                         capture_output=True, text=True, encoding="utf-8", timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert sum(r["app"] == EVIL_APP for r in rows) == 4 and {r["user"] for r in rows} >= {"mallory\u2066"}
    start, end = date_bounds(date(2025, 3, 11), date(2025, 3, 11), "UTC")
    calls = downloads.calls_csv(evil_ledger, Filters(start=start, end=end, apps=(EVIL_APP,)))
    assert {r["app"] for r in csv.DictReader(io.StringIO(calls.decode("utf-8")))} == {EVIL_APP}
