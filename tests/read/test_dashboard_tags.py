"""Tags on the dashboard: the sidebar's tag filter (in the link), the "Spend by tag" chart and its
key picker, figures equal to the export's, hostile tags shown as text (AppTest on real ledgers)."""

from __future__ import annotations

from datetime import date

import pytest
from test_dashboard import RANGE, chart_data, exact_caption, expect, metric, open_app, seed, seed_records
from test_dashboard_hostile import CONSTRUCTS, markdown_rendered

from spendlog.dashboard.formatting import format_count, label
from spendlog.db.engine import make_engine
from spendlog.db.queries import Filters, date_bounds, grouped_totals
from spendlog.report.money import money_display

TEAMS = ["core", "growth", None]
HOSTILE = ["![x](http://127.0.0.1:1/p.png)", "<img src=x onerror=alert(1)>", "=HYPERLINK(\"http://x\")", ":red[x] **b**"]


def tagged_records() -> list[dict]:
    from spendlog.db.estimate import price_book, price_record

    book = price_book()
    out = []
    for i, r in enumerate(seed_records()):
        tags = {"feature": HOSTILE[i % 4] if i % 5 == 0 else ("search", "chat")[i % 2]}
        if TEAMS[i % 3]:
            tags["team"] = TEAMS[i % 3]
        r["tags"] = tags
        out.append(price_record(book, r))
    return out


@pytest.fixture
def records():
    return tagged_records()


@pytest.fixture
def ledger(db_url, records) -> str:
    seed(db_url, records)
    return db_url


def tag_chart(at):
    """The "Spend by tag" chart's frame: the chart drawn after the "Spend by tag" heading."""
    names = [s.value for s in at.subheader]
    assert "Spend by tag" in names
    charts = at.get("vega_lite_chart")
    for i in range(len(charts)):
        df = chart_data(at, i)
        if "name" in df.columns and getattr(charts[i].proto, "spec", "").find("Tag value") >= 0:
            return df
    raise AssertionError("no Spend by tag chart")


def export_figures(url: str, by: list[str], tags=()) -> dict:
    start, end = date_bounds(date(2025, 3, 10), date(2025, 3, 17), "UTC")
    engine = make_engine(url, pool=False)
    with engine.connect() as conn:
        rows = list(grouped_totals(conn, Filters(start=start, end=end, tags=tags), by, "UTC"))
    engine.dispose()
    return {label(r[by[0]]): money_display(r["cost_usd"], exact=True) for r in rows}


def test_spend_by_tag_equals_the_export_and_the_picker_switches_keys(monkeypatch, ledger):
    at = open_app(monkeypatch, ledger, RANGE)
    keys = at.selectbox(key="f_tagby")
    assert set(keys.options) == {"feature", "team"}
    keys.set_value("team")
    at.run()
    assert not at.exception
    df = tag_chart(at)
    assert dict(zip(df["name"], df["cost_exact"])) == export_figures(ledger, ["tag:team"])
    assert "(none)" in set(df["name"])
    assert dict(at.query_params)["tagby"] == "team"
    at.selectbox(key="f_tagby").set_value("feature")
    at.run()
    df = tag_chart(at)
    assert dict(zip(df["name"], df["cost_exact"])) == export_figures(ledger, ["tag:feature"])
    assert dict(at.query_params)["tagby"] == "feature"


def test_the_tag_filter_narrows_intersects_and_travels_in_the_link(monkeypatch, ledger, records):
    at = open_app(monkeypatch, ledger, RANGE)
    tags = at.sidebar.multiselect(key="f_tags")
    assert {"team=core", "team=growth", "feature=search"} <= set(tags.options)
    tags.set_value(["team=core"])
    at.run()
    exp = expect(records, lambda r: r["tags"].get("team") == "core")
    assert metric(at, "Requests") == format_count(exp["requests"]) and 0 < exp["requests"] < len(records)
    assert exact_caption(at) == f"Total spend, exact: **{money_display(exp['cost'], exact=True)}**"
    at.sidebar.multiselect(key="f_tags").set_value(["team=core", "feature=search"])
    at.run()
    both = expect(records, lambda r: r["tags"].get("team") == "core" and r["tags"].get("feature") == "search")
    assert metric(at, "Requests") == format_count(both["requests"]) and 0 < both["requests"] < exp["requests"]
    params = dict(at.query_params)
    assert params["tag"] == ["team=core", "feature=search"]
    again = open_app(monkeypatch, ledger, params)
    assert exact_caption(again) == exact_caption(at)
    assert dict(zip(*(tag_chart(again)[c] for c in ("name", "cost_exact")))) == export_figures(
        ledger, [f"tag:{again.selectbox(key='f_tagby').value}"], (("feature", "search"), ("team", "core")))


def test_hostile_tags_are_text(monkeypatch, ledger, records):
    at = open_app(monkeypatch, ledger, {**RANGE, "tagby": "feature", "tag": "feature=" + HOSTILE[1]})
    exp = expect(records, lambda r: r["tags"].get("feature") == HOSTILE[1])
    assert metric(at, "Requests") == format_count(exp["requests"]) and exp["requests"] > 0
    assert "feature=" + HOSTILE[1] in at.sidebar.multiselect(key="f_tags").value
    df = tag_chart(at)
    assert set(df["name"]) == {HOSTILE[1]}  # the label, as stored: a chart draws text
    rendered = markdown_rendered(at)
    assert not any(h in text for h in HOSTILE for text in rendered)
    assert not any(c in text for c in CONSTRUCTS for text in rendered)


def test_bad_tag_links_are_ignored_with_a_note(monkeypatch, ledger, records):
    at = open_app(monkeypatch, ledger, {**RANGE, "tag": ["nokey", "team=" + "v" * 300], "tagby": "k" * 80})
    assert metric(at, "Requests") == format_count(expect(records)["requests"])
    notes = [t.value for t in at.sidebar.text if t.value.startswith("Ignored in the link")]
    assert len(notes) == 3


def test_a_ledger_without_tags_has_no_tag_chart(monkeypatch, sqlite_url):
    untagged = [dict(r, tags=None) for r in seed_records(30)]
    seed(sqlite_url, untagged)
    at = open_app(monkeypatch, sqlite_url, RANGE)
    assert "Spend by tag" not in [s.value for s in at.subheader]
    assert metric(at, "Requests") == format_count(expect(untagged)["requests"])  # the page has the calls, not nothing


def test_spend_by_tag_and_its_movers_read_their_days_from_rollup_tag_days(monkeypatch, ledger):
    """The page's reads by the picked tag key alone ("Spend by tag", and "What changed" for this
    period and the one before) plan their whole UTC days from ``rollup_tag_days`` (revision 0008);
    a model filter in the sidebar sends them to ``rollup_tags_daily``, which has the model."""
    from spendlog.db import queries

    planned = []
    real = queries.plan_grouped

    def spy(conn, filters, by, tz="UTC", **kw):
        parts = real(conn, filters, by, tz, **kw)
        planned.append((tuple(by), filters.start, filters.models, {p.source for p in parts}))
        return parts

    monkeypatch.setattr(queries, "plan_grouped", spy)
    at = open_app(monkeypatch, ledger, RANGE)
    at.selectbox(key="f_tagby").set_value("team")
    at.run()
    assert not at.exception
    by_team = [(start, sources) for by, start, _, sources in planned if by == ("tag:team",)]
    assert len({start for start, _ in by_team}) == 2  # this week and the week before (the movers)
    assert all("tag_days" in sources and "tags_daily" not in sources for _, sources in by_team), by_team
    planned.clear()
    at = open_app(monkeypatch, ledger, {**RANGE, "model": "openai/gpt-4o-mini", "tagby": "team"})
    by_team = [sources for by, _, models, sources in planned if by == ("tag:team",) and models]
    assert by_team and all("tags_daily" in s and "tag_days" not in s for s in by_team), by_team


WAITS = "waits for the toggle under \"Spend by user\""


def test_a_tag_filter_over_a_big_range_holds_back_what_the_tag_rollup_lacks_until_asked(monkeypatch, ledger,
                                                                                       records):
    """With one tag filter, per user / key, another tag key's values and the caching panel read
    every call of the range; past ``EAGER_SCAN_CALLS`` calls they wait for a toggle while the rest
    of the page reads the tag rollup only. Turned on, they show the export's figures."""
    from spendlog.dashboard import data
    from spendlog.db import queries

    view = {**RANGE, "tag": "team=core", "tagby": "feature"}
    small = open_app(monkeypatch, ledger, view)  # a small range: nothing waits
    assert not [t for t in small.toggle if t.key == "scan_tagged"]
    assert not [c for c in small.caption if WAITS in c.value]

    planned = []
    real = queries.plan_grouped

    def spy(conn, filters, by, tz="UTC", **kw):
        parts = real(conn, filters, by, tz, **kw)
        planned.append((tuple(by), filters.tags, {p.source for p in parts}))
        return parts

    monkeypatch.setattr(queries, "plan_grouped", spy)
    monkeypatch.setattr(data, "EAGER_SCAN_CALLS", 5)
    at = open_app(monkeypatch, ledger, view)
    toggle = next(t for t in at.toggle if t.key == "scan_tagged")
    assert toggle.value is False
    assert [c for c in at.caption if f"read all {len(records):,} calls of the range" in c.value]  # what it costs
    tagged = [(by, sources) for by, tags, sources in planned if tags]
    assert tagged and all("raw" not in sources for _, sources in tagged), tagged
    exp = expect(records, lambda r: r["tags"].get("team") == "core")
    assert metric(at, "Requests") == format_count(exp["requests"])
    assert exact_caption(at) == f"Total spend, exact: **{money_display(exp['cost'], exact=True)}**"
    waiting = [c.value for c in at.caption if WAITS in c.value]
    assert [w.split(" waits")[0] for w in waiting] == [
        "Another tag key's spend within the tag filter", "The change per user and per other tag key",
        "Caching under a tag filter (priced by provider)"]
    titles = {df.value.columns[0] for df in at.dataframe if "Change %" in df.value.columns and "Moved" not in
              df.value.columns}
    assert titles == {"Model", "App"}  # the change per user and per feature wait

    toggle.set_value(True)
    at.run()
    assert not at.exception
    assert not [c for c in at.caption if WAITS in c.value]
    df = tag_chart(at)
    assert dict(zip(df["name"], df["cost_exact"])) == export_figures(ledger, ["tag:feature"], (("team", "core"),))
    titles = {df.value.columns[0] for df in at.dataframe if "Change %" in df.value.columns and "Moved" not in
              df.value.columns}
    assert titles == {"Model", "App", "User", "Tag feature"}
    assert exact_caption(at) == f"Total spend, exact: **{money_display(exp['cost'], exact=True)}**"


def test_a_tag_filter_and_a_group_by_its_own_key_need_no_toggle(monkeypatch, ledger, records):
    """"Spend by tag" on the filtered key itself (team under team=core) is the tag rollup's: it is
    drawn while the other breakdowns wait, one bar, the filter's value, the export's figure."""
    from spendlog.dashboard import data

    monkeypatch.setattr(data, "EAGER_SCAN_CALLS", 5)
    at = open_app(monkeypatch, ledger, {**RANGE, "tag": "team=core", "tagby": "team"})
    assert [t for t in at.toggle if t.key == "scan_tagged"]
    df = tag_chart(at)
    assert dict(zip(df["name"], df["cost_exact"])) == export_figures(ledger, ["tag:team"], (("team", "core"),))
    assert set(df["name"]) == {"core"}
