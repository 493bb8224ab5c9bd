"""Group by a tag key (``tag:KEY``): the tag rollup and the raw rows give the same groups, to the
last digit, and a tag's groups (``(none)`` included) add up exactly to the untagged total."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from helpers import make_record
from spendlog.db.engine import make_engine
from spendlog.db.migrate import upgrade
from spendlog.db.queries import MEASURES, Filters, grouped_totals, plan_grouped, reads_calls
from spendlog.db.store import insert_records, rebuild_rollups

BASE = datetime(2026, 11, 3, 0, tzinfo=timezone.utc)
TEAMS = ("core", "growth", "ml", "", None)  # "" and None: no team
HOSTILE = ("=HYPERLINK(\"http://x\")", "<b>bold</b>", "**md**", "' OR 1=1 --", 'a"b\\c', "日本")


def _records(n: int = 600, seed: int = 7) -> list[dict]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        tags = {}
        team = rnd.choice(TEAMS)
        if team is not None:
            tags["team"] = team
        if rnd.random() < 0.6:
            tags["feature"] = rnd.choice(("search", "chat", *HOSTILE))
        if rnd.random() < 0.3:
            tags[rnd.choice(HOSTILE)] = rnd.choice(("x", "y"))
        cost = None if i % 11 == 0 else Decimal(rnd.randint(1, 10**9)) / Decimal(10**12)
        out.append(make_record(
            created_at=BASE + timedelta(minutes=rnd.randint(0, 3 * 24 * 60 - 1), microseconds=rnd.randint(0, 999_999)),
            tags=tags or None, cost_usd=cost, cost_source="missing" if cost is None else rnd.choice(("upstream", "estimated")),
            list_cost_usd=None if i % 5 == 0 else Decimal(i) / 1000,
            model=rnd.choice(("openai/gpt-4o", "anthropic/claude", None)), app=rnd.choice(("a", "b", None)),
            user=rnd.choice(("u1", "u2")), status_code=rnd.choice((200, 200, 500)), latency_ms=rnd.randint(1, 900),
        ))
    return out


@pytest.fixture
def engine(db_url):
    engine = make_engine(db_url)
    upgrade(engine)
    with engine.begin() as conn:
        insert_records(conn, _records())
    yield engine
    engine.dispose()


RANGES = [
    (None, None),
    (BASE, BASE + timedelta(days=3)),
    (BASE + timedelta(hours=5, minutes=17), BASE + timedelta(days=2, hours=3, minutes=41)),
]


def _read(conn, filters, by, tz="UTC", source="auto"):
    return list(grouped_totals(conn, filters, by, tz, source=source))


@pytest.mark.parametrize("tz", ["UTC", "Asia/Kolkata"])
@pytest.mark.parametrize("by", [["tag:team"], ["tag:team", "day"], ["day", "model", "tag:feature", "app"],
                                ["tag:" + HOSTILE[0]], ["tag:" + HOSTILE[4], "week"]])
def test_tag_groups_from_the_tag_rollup_equal_the_raw_rows_and_add_up(engine, by, tz):
    with engine.connect() as conn:
        for start, end in RANGES:
            f = Filters(start=start, end=end)
            fast = _read(conn, f, by, tz)
            sources = {p.source for p in plan_grouped(conn, f, by, tz)}
            # every range holds a whole UTC day: from rollup_tag_days (rollup_tags_daily when the read
            # names a model or an app) unless a period starts inside it
            days = "tags_daily" if {"model", "app"} & set(by) else "tag_days"
            if tz == "UTC" or not any(g in ("day", "week", "month") for g in by):
                assert days in sources and ({"tags_daily", "tag_days"} - {days}).isdisjoint(sources), sources
            elif "day" in by:  # Kolkata's days start at 18:30 UTC
                assert "tags" in sources and not {"tags_daily", "tag_days"} & sources, sources
            assert fast == _read(conn, f, by, tz, source="rows")
            total = _read(conn, f, [])[0]
            for m in MEASURES:
                assert sum(r[m] for r in fast) == total[m], m
            tag = next(g for g in by if g.startswith("tag:"))
            assert all(r[tag] != "" for r in fast)  # an empty value is (none)


def test_none_is_the_calls_without_the_tag(engine):
    with engine.connect() as conn:
        rows = {r["tag:team"]: r for r in _read(conn, Filters(), ["tag:team"])}
        assert set(rows) == {"core", "growth", "ml", None}
        untagged = [r for r in _records() if not (r["tags"] or {}).get("team")]
        assert rows[None]["requests"] == len(untagged)
        assert rows[None]["latency_ms_sum"] == sum(r["latency_ms"] for r in untagged)


def test_a_tag_filter_reads_the_tag_rollup_and_equals_the_raw_rows(engine):
    with engine.connect() as conn:
        for start, end in RANGES:
            for tags in ({"team": "core"}, {"feature": HOSTILE[1]}, {HOSTILE[5]: "x"}):
                f = Filters(start=start, end=end, tags=tags, models=("openai/gpt-4o", ""))
                assert {p.source for p in plan_grouped(conn, f, ["day", "app"])} <= {"tags", "tags_daily", "raw"}
                assert _read(conn, f, ["day", "app"]) == _read(conn, f, ["day", "app"], source="rows")
                assert _read(conn, f, ["model"], "Asia/Kolkata") == _read(conn, f, ["model"], "Asia/Kolkata", source="rows")


@pytest.mark.parametrize("tz", ["UTC", "Asia/Kolkata"])
def test_a_group_by_the_filtered_key_reads_the_tag_rollup(engine, tz):
    """``tag:team`` with ``team=core``: one group, core, from the tag rollup (the dashboard's
    "Spend by tag" under a tag filter of the picked key), the raw rows' figures exactly."""
    with engine.connect() as conn:
        for start, end in RANGES:
            for by in (["tag:team"], ["tag:team", "day", "model"]):
                f = Filters(start=start, end=end, tags={"team": "core"})
                assert {p.source for p in plan_grouped(conn, f, by, tz)} & {"tags", "tags_daily", "tag_days"}
                assert not reads_calls(f, by)
                fast = _read(conn, f, by, tz)
                assert fast == _read(conn, f, by, tz, source="rows")
                assert {r["tag:team"] for r in fast} == {"core"}
                assert sum(r["requests"] for r in fast) == _read(conn, f, [])[0]["requests"] > 0


@pytest.mark.parametrize("filters, by", [
    (Filters(tags={"team": "core", "feature": "search"}), ["day"]),
    (Filters(tags={"team": "core"}), ["tag:feature"]),
    (Filters(), ["tag:team", "tag:feature"]),
    (Filters(), ["tag:team", "user"]),
    (Filters(users=("u1",)), ["tag:team"]),
    (Filters(status="errors"), ["tag:team"]),
    (Filters(tags={"team": ""}), ["model"]),
])
def test_what_the_tag_rollup_lacks_reads_the_raw_rows(engine, filters, by):
    with engine.connect() as conn:
        assert {p.source for p in plan_grouped(conn, filters, by)} == {"raw"}
        assert reads_calls(filters, by)  # the rule the dashboard asks before it reads (dashboard.tag_scan)
        with pytest.raises(ValueError, match="cannot answer"):
            plan_grouped(conn, filters, by, source="rollup")
        rows = _read(conn, filters, by)
    expected = [r for r in _records() if all((r["tags"] or {}).get(k) == v for k, v in filters.tags)
                and (not filters.users or r["user"] in filters.users)
                and (filters.status != "errors" or r["status_code"] >= 400)]
    assert sum(r["requests"] for r in rows) == len(expected)
    assert sum(r["latency_ms_sum"] for r in rows) == sum(r["latency_ms"] for r in expected)


def test_two_tag_groups_intersect(engine):
    with engine.connect() as conn:
        rows = {(r["tag:team"], r["tag:feature"]): r["requests"] for r in _read(conn, Filters(), ["tag:team", "tag:feature"])}
    expect: dict = {}
    for r in _records():
        t = r["tags"] or {}
        key = (t.get("team") or None, t.get("feature") or None)
        expect[key] = expect.get(key, 0) + 1
    assert rows == expect


def test_rebuild_rollups_rebuilds_the_tag_rollup_exactly(engine):
    from sqlalchemy import delete, func, select

    from spendlog.db.models import RollupTags

    with engine.connect() as conn:
        before = _read(conn, Filters(), ["tag:team", "day", "model"])
    with engine.begin() as conn:
        conn.execute(delete(RollupTags.__table__))
    with engine.begin() as conn:
        assert rebuild_rollups(conn, chunk_size=97) == 600
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(RollupTags)) > 0
        assert _read(conn, Filters(), ["tag:team", "day", "model"]) == before


def test_ten_thousand_distinct_values_add_up(db_url):
    engine = make_engine(db_url)
    upgrade(engine)
    records = [make_record(created_at=BASE + timedelta(seconds=7 * i), tags={"customer": f"c{i:05d}", "team": "core"},
                           cost_usd=Decimal(i + 1) / Decimal(10**6)) for i in range(10_000)]
    with engine.begin() as conn:
        insert_records(conn, records)
    f = Filters(start=BASE, end=BASE + timedelta(days=2))
    with engine.connect() as conn:
        rows = _read(conn, f, ["tag:customer"])
        assert len(rows) == 10_000 and rows[0]["tag:customer"] == "c00000"
        assert sum(r["cost_usd"] for r in rows) == sum(r["cost_usd"] for r in records) == _read(conn, f, [])[0]["cost_usd"]
        assert rows == _read(conn, f, ["tag:customer"], source="rows")
    engine.dispose()


def test_prune_keeps_the_tag_groups_and_a_rebuild_keeps_the_pruned_hours(engine):
    from spendlog.db.prune import prune_before

    by = ["tag:team", "day"]
    with engine.connect() as conn:
        before = _read(conn, Filters(), by)
    assert prune_before(engine, BASE + timedelta(days=1), batch=100) > 100
    with engine.connect() as conn:
        assert _read(conn, Filters(), by) == before
    with engine.begin() as conn:
        rebuild_rollups(conn)
    with engine.connect() as conn:
        assert _read(conn, Filters(), by) == before


def test_tag_choices_order_keys_and_pairs_by_calls(db_url):
    from spendlog.db.tag_reads import tag_choices

    engine = make_engine(db_url)
    upgrade(engine)
    tags = ([{"team": "core", "customer": f"c{i}"} for i in range(6)] + [{"team": "ml", "customer": "c0"}]
            + [{"feature": "x"}] * 2 + [{"team": ""}])
    with engine.begin() as conn:
        insert_records(conn, [make_record(created_at=BASE + timedelta(minutes=i), tags=t) for i, t in enumerate(tags)])
    with engine.connect() as conn:
        keys, pairs = tag_choices(conn, Filters(start=BASE, end=BASE + timedelta(days=1)))
        assert keys == ["team", "customer", "feature"]  # 7 calls each for team and customer: team has 2 values
        assert pairs[:3] == [("team", "core"), ("customer", "c0"), ("feature", "x")]
        assert len(pairs) == 9 and ("team", "") not in pairs  # core, ml, c0-c5, x
        assert tag_choices(conn, Filters(start=BASE, end=BASE + timedelta(days=1)), limit=2)[1] == pairs[:2]
        assert tag_choices(conn, Filters(start=BASE + timedelta(days=1))) == ([], [])
    engine.dispose()


@pytest.mark.parametrize("lo, hi", RANGES)
def test_choices_over_whole_days_equal_the_calls_own(engine, lo, hi):
    """``tag_choices`` and ``distinct_values`` read the range's whole UTC days from the daily rollups
    and the hours left from the hourly ones: the same pairs, counts and order as the calls give."""
    from collections import Counter

    from spendlog.db.periods import ceil_hour, floor_hour
    from spendlog.db.queries import distinct_values
    from spendlog.db.tag_reads import tag_choices

    records = _records()
    start = floor_hour(lo) if lo is not None else None
    end = ceil_hour(hi) if hi is not None else None
    chosen = [r for r in records if (start is None or r["created_at"] >= start) and (end is None or r["created_at"] < end)]
    counts = Counter((k, v) for r in chosen for k, v in (r["tags"] or {}).items() if v)
    calls, values = Counter(), Counter()
    for (k, _), n in counts.items():
        calls[k] += n
        values[k] += 1
    keys = sorted(calls, key=lambda k: (-calls[k], values[k], k))
    pairs = [(k, v) for _, k, v in sorted((-n, k, v) for (k, v), n in counts.items())]
    with engine.connect() as conn:
        assert tag_choices(conn, Filters(start=lo, end=hi), limit=10**6) == (keys, pairs)
        for column, field in (("model", "model"), ("app", "app"), ("user", "user")):
            assert distinct_values(conn, column, Filters(start=lo, end=hi)) == sorted(
                {r[field] for r in chosen if r[field]}), column
        if lo is not None and hi - lo > timedelta(days=2):  # the whole days came from the daily rollup
            assert "daily" in {p.source for p in plan_grouped(conn, Filters(start=lo, end=hi), [])}
