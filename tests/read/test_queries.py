"""The shared read layer (spendlog.db.queries): exact sums on every path, timezones, filters."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text

from spendlog.db.engine import make_engine
from spendlog.db.ids import uuid7
from spendlog.db.migrate import upgrade
from spendlog.db.queries import (
    GROUPS,
    MEASURES,
    Filters,
    count_calls,
    date_bounds,
    distinct_values,
    grouped_totals,
    iter_calls,
    plan_grouped,
    total_spend,
)
from spendlog.db.estimate import price_book, price_record
from spendlog.db.store import insert_records, is_error

UTC = timezone.utc
BASE = datetime(2024, 3, 29, tzinfo=UTC)  # spans Europe's DST switch on 2024-03-31

MODELS = ["openai/gpt-4o-mini", "anthropic/claude-3.5-sonnet", "=HYPERLINK(\"x\")", None, ""]
APPS = ["billing", "-evil", None]
USERS = ["alice", "bob", "@mallory", None]
KEYS = ["sr_...abcd", "sr_...wxyz", None]
COSTS = [None, Decimal("0.000000000001"), Decimal("1.234567890123"), Decimal("0.000148"), Decimal("12345.5")]


def make_record(created_at: datetime, **over) -> dict:
    record = {
        "id": uuid7(),
        "created_at": created_at,
        "endpoint": "/v1/chat/completions",
        "model": "openai/gpt-4o-mini",
        "provider": "openai",
        "status_code": 200,
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 15,
        "cost_usd": Decimal("0.000148"),
        "cost_source": "upstream",
        "latency_ms": 120,
    }
    record.update(over)
    return record


def random_records(n: int, seed: int = 7, start: datetime = BASE, seconds: int = 5 * 86400) -> list[dict]:
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        status = rnd.choice([200, 200, 200, 429, 500, None])
        cost = rnd.choice(COSTS)
        out.append(
            make_record(
                start + timedelta(seconds=rnd.randrange(seconds), microseconds=rnd.randrange(1_000_000)),
                model=rnd.choice(MODELS),
                provider=rnd.choice(["openai", "anthropic", None]),
                app=rnd.choice(APPS),
                user=rnd.choice(USERS),
                api_key_hint=rnd.choice(KEYS),
                status_code=status,
                error_type=rnd.choice([None, None, "cancelled", "timeout"]),
                prompt_tokens=rnd.choice([None, 0, 17, 123456]),
                completion_tokens=rnd.choice([None, 3, 999]),
                total_tokens=rnd.choice([None, 20, 1000]),
                cached_tokens=rnd.choice([None, 0, 64]),
                reasoning_tokens=rnd.choice([None, 0, 512]),
                cost_usd=cost,
                cost_source="missing" if cost is None else "upstream",
                latency_ms=rnd.choice([None, 80, 1234]),
                tags=rnd.choice([None, {"team": "ml"}, {"=cmd": "+1"}]),
            )
        )
    return out


def seed(url: str, records: list[dict]):
    engine = make_engine(url)
    upgrade(engine)
    with engine.begin() as conn:
        insert_records(conn, records)
    return engine


def by_hand(records, filters: Filters) -> dict:
    """Totals computed in Python from the records, the independent reference."""
    chosen = [r for r in records if _matches(r, filters)]
    return {
        "requests": len(chosen),
        "cost_usd": sum((r["cost_usd"] for r in chosen if r["cost_usd"] is not None), Decimal(0)),
        "prompt_tokens": sum(r["prompt_tokens"] or 0 for r in chosen),
        "errors": sum(1 for r in chosen if is_error(r)),
        "calls_missing_cost": sum(1 for r in chosen if r["cost_usd"] is None),
    }


def _matches(r, f: Filters) -> bool:
    if f.start is not None and r["created_at"] < f.start:
        return False
    if f.end is not None and r["created_at"] >= f.end:
        return False
    for attr, col in (("models", "model"), ("apps", "app"), ("users", "user"), ("key_hints", "api_key_hint"),
                      ("providers", "provider")):
        values = getattr(f, attr)
        if values and (r.get(col) or "") not in values:
            return False
    if f.status == "ok" and is_error(r):
        return False
    if f.status == "errors" and not is_error(r):
        return False
    return True


@pytest.fixture
def seeded(db_url):
    records = random_records(1500)
    engine = seed(db_url, records)
    book = price_book()  # the store prices calls without an upstream cost: hand sums use what it stored
    with engine.connect() as conn:
        yield conn, [price_record(book, r) for r in records]
    engine.dispose()


FILTER_CASES = [
    Filters(),
    Filters(start=BASE + timedelta(hours=5, minutes=17), end=BASE + timedelta(days=3, hours=1, seconds=1)),
    Filters(start=BASE + timedelta(days=1), end=BASE + timedelta(days=2)),
    Filters(start=BASE + timedelta(minutes=10), end=BASE + timedelta(minutes=50)),
    Filters(models=("openai/gpt-4o-mini", ""), status="errors"),
    Filters(apps=("billing",), users=("alice", "@mallory"), status="ok"),
    Filters(key_hints=("sr_...abcd",), providers=("openai",)),
]


@pytest.mark.parametrize("filters", FILTER_CASES)
def test_totals_equal_per_call_rows_and_hand_sums(seeded, filters):
    conn, records = seeded
    total = next(grouped_totals(conn, filters, []))
    calls = list(iter_calls(conn, filters, chunk_size=97))
    expected = by_hand(records, filters)
    assert total["requests"] == len(calls) == expected["requests"] == count_calls(conn, filters)
    per_call_cost = sum((c["cost_usd"] for c in calls if c["cost_usd"] is not None), Decimal(0))
    assert total["cost_usd"] == per_call_cost == expected["cost_usd"] == total_spend(conn, filters)
    assert total["prompt_tokens"] == expected["prompt_tokens"]
    assert total["errors"] == expected["errors"]
    assert total["calls_missing_cost"] == expected["calls_missing_cost"]
    for by in (["day", "model"], ["week", "app", "user"], ["month", "key", "provider"]):
        rows = list(grouped_totals(conn, filters, by, "Asia/Tokyo"))
        assert sum(r["requests"] for r in rows) == total["requests"]
        assert sum((r["cost_usd"] for r in rows), Decimal(0)) == total["cost_usd"]


def _price_sums(calls) -> dict:
    """The price measures summed per call in Python: the reference for the read layer's rollup sums."""
    zero = Decimal(0)
    return {
        "billed_cost_usd": sum((c["cost_usd"] for c in calls
                                if c["cost_usd"] is not None and c["cost_source"] != "estimated"), zero),
        "estimated_cost_usd": sum((c["cost_usd"] for c in calls
                                   if c["cost_usd"] is not None and c["cost_source"] == "estimated"), zero),
        "list_cost_usd": sum((c["list_cost_usd"] for c in calls if c["list_cost_usd"] is not None), zero),
        "calls_missing_cost": sum(1 for c in calls if c["cost_source"] == "missing"),
    }


@pytest.mark.parametrize("tz", ["UTC", "Asia/Kolkata"])
@pytest.mark.parametrize("filters", FILTER_CASES[:4])
def test_price_measures_equal_per_call_sums(seeded, filters, tz):
    """billed + estimated = cost_usd, and each price measure, grouped by day in a zone whose days cut
    UTC hours (the raw and split-hour paths), equals the sum over the same calls read one by one."""
    conn, _ = seeded
    calls = list(iter_calls(conn, filters, chunk_size=101))
    expected = _price_sums(calls)
    if filters == Filters():  # the ledger holds every kind of call, so no sum below is trivially 0
        assert all(expected[m] > 0 for m in expected)
    total = next(grouped_totals(conn, filters, [], tz))
    assert {m: total[m] for m in expected} == expected
    assert total["billed_cost_usd"] + total["estimated_cost_usd"] == total["cost_usd"]
    rows = list(grouped_totals(conn, filters, ["day", "model"], tz))
    assert {m: sum((r[m] for r in rows), type(expected[m])(0)) for m in expected} == expected
    by_day: dict = {}
    zone = ZoneInfo(tz)
    for c in calls:
        by_day.setdefault(c["created_at"].astimezone(zone).date(), []).append(c)
    days = {r["day"]: r for r in grouped_totals(conn, filters, ["day"], tz)}
    assert set(days) == set(by_day)
    for day, chosen in by_day.items():
        assert {m: days[day][m] for m in expected} == _price_sums(chosen), day


@pytest.mark.parametrize("tz", ["UTC", "Europe/Berlin", "Asia/Kolkata", "Asia/Kathmandu"])
def test_every_path_gives_identical_results(seeded, tz):
    conn, _ = seeded
    for filters in FILTER_CASES[:5]:
        for by in (["day", "model"], ["model", "week"], ["month", "app", "user", "key"], [], ["provider"]):
            reference = list(grouped_totals(conn, filters, by, tz, source="rows"))
            assert list(grouped_totals(conn, filters, by, tz, source="raw")) == reference
            assert list(grouped_totals(conn, filters, by, tz)) == reference


# ranges whose whole UTC days come from rollup_daily: partial days and partial hours at both ends, open ends
DAILY_CASES = [
    Filters(start=BASE + timedelta(hours=20, minutes=17, seconds=3), end=BASE + timedelta(days=4, hours=5, minutes=41)),
    Filters(end=BASE + timedelta(days=3, hours=7, minutes=30)),
    Filters(start=BASE + timedelta(days=1, hours=2, microseconds=1)),
]
DAILY_GROUPS = ([], ["day"], ["week", "model"], ["month", "app"], ["user", "day"], ["tag:team"],
                ["day", "tag:team", "model"], ["day", "tag:team"], ["week", "tag:team"], ["month", "tag:team"])


@pytest.mark.parametrize("tz", ["UTC", "America/New_York", "Asia/Kolkata"])
def test_reads_with_the_daily_rollup_equal_the_rows(seeded, tz):
    """Whole UTC days from rollup_daily (with a tag filter or a tag group: rollup_tag_days when the
    read names no model or app, else rollup_tags_daily), the hours left at both ends from the hourly rollups, partial hours from raw rows: the same groups and
    the same Decimals as the calls read one by one, by day/week/month in UTC and in zones whose days
    cut UTC days (where only the groupings without a period may use the daily rollup)."""
    conn, _ = seeded
    daily_parts = tag_days_parts = 0
    for filters in DAILY_CASES:
        for tags in ((), (("team", "ml"),)):
            f = replace(filters, tags=tags)
            for by in DAILY_GROUPS:
                sources = {p.source for p in plan_grouped(conn, f, by, tz)}
                periods = any(g in ("day", "week", "month") for g in by)
                if tz == "UTC" or not periods:  # every period boundary is a UTC midnight
                    grouped = any(g.startswith("tag:") for g in by)
                    raw = "user" in by and (tags or grouped)  # rollup_tags has no user: the calls
                    if not raw and not (tags and grouped):
                        assert ("tags" if tags else "rollup") in sources and "raw" in sources, (f, by)
                        if not tags:  # every call, for the total or (none)
                            assert "daily" in sources, (f, by)
                        if tags or grouped:  # a tag twin: without model and app, one row per day and value
                            want = "tags_daily" if {"model", "app"} & set(by) else "tag_days"
                            assert want in sources and not ({"tags_daily", "tag_days"} - {want}) & sources, (f, by)
                            tag_days_parts += want == "tag_days"
                        daily_parts += 1
                elif "day" in by:  # New York's and Kolkata's days cut UTC days
                    assert not {"daily", "tags_daily", "tag_days"} & sources, (f, by, tz)
                reference = list(grouped_totals(conn, f, by, tz, source="rows"))
                assert reference, (f, by)
                assert list(grouped_totals(conn, f, by, tz)) == reference, (f, by, tz)
    assert daily_parts == (42 if tz == "UTC" else 9)  # every case the daily rollup can answer does
    assert tag_days_parts == (18 if tz == "UTC" else 6)  # and every tag read without model or app, rollup_tag_days
    # a month boundary (Kolkata: 18:30 UTC) in the partial first day: its hour is split, the days after
    # come from the daily rollup, and the figures stay the rows'
    f = Filters(start=datetime(2024, 3, 31, 10, 7, tzinfo=UTC), end=datetime(2024, 4, 3, 5, 1, tzinfo=UTC))
    parts = plan_grouped(conn, f, ["month", "model"], "Asia/Kolkata")
    assert [p.source for p in parts] == ["daily", "rollup", "raw", "raw"] and parts[1].split
    assert parts[0].ranges == ((datetime(2024, 4, 1, tzinfo=UTC), datetime(2024, 4, 3, tzinfo=UTC)),)
    for zone in ("Asia/Kolkata", "America/New_York"):
        assert (list(grouped_totals(conn, f, ["month", "model"], zone))
                == list(grouped_totals(conn, f, ["month", "model"], zone, source="rows")))


def test_an_open_range_counts_each_day_at_its_midnight_only_where_that_is_its_period(sqlite_url):
    """Open ends plan with the data's span widened to whole UTC days: calls from 18:00 UTC on May 1
    lie before Tokyo's next midnight (15:00 UTC), but their UTC day's midnight is 09:00 on May 1 in
    Tokyo, so the daily rollup would put them on May 1; the plan reads their hours instead."""
    late = make_record(datetime(2024, 5, 1, 23, 30, tzinfo=UTC), cost_usd=Decimal("2"))
    earlier = make_record(datetime(2024, 5, 1, 18, 45, tzinfo=UTC), cost_usd=Decimal("0.5"))
    engine = seed(sqlite_url, [late, earlier])
    with engine.connect() as conn:
        for tz, day in (("Asia/Tokyo", date(2024, 5, 2)), ("UTC", date(2024, 5, 1)), ("America/New_York", date(2024, 5, 1))):
            [row] = grouped_totals(conn, Filters(), ["day"], tz)
            assert (row["day"], row["cost_usd"]) == (day, Decimal("2.5")), tz
        assert "daily" not in {p.source for p in plan_grouped(conn, Filters(), ["day"], "Asia/Tokyo")}
        assert "daily" in {p.source for p in plan_grouped(conn, Filters(), ["day"], "UTC")}
        # a month grouping has no boundary inside May 1 (UTC) in Tokyo: the daily rollup answers
        assert {p.source for p in plan_grouped(conn, Filters(), ["month"], "Asia/Tokyo")} == {"daily"}
    engine.dispose()


def test_plan_uses_rollup_only_where_exact(sqlite_url):
    engine = seed(sqlite_url, random_records(50))
    hour = timedelta(hours=1)
    with engine.connect() as conn:
        whole = Filters(start=BASE, end=BASE + timedelta(days=2))

        def shape(filters, by, tz):
            return [(p.source, p.ranges, p.bucket, p.split) for p in plan_grouped(conn, filters, by, tz)]

        assert shape(whole, ["day", "model"], "Asia/Tokyo") == [("rollup", ((whole.start, whole.end),), 60, ())]
        assert [p.source for p in plan_grouped(conn, whole, ["day"], "Europe/Berlin")] == ["rollup"]
        # Kolkata days start at 18:30 UTC, cutting the 18:00 hour: its first half is read from raw
        # rows (15-minute buckets) and the second half is the rollup's hour minus that
        cut = tuple((BASE + timedelta(days=d, hours=18), BASE + timedelta(days=d, hours=18, minutes=30)) for d in (0, 1))
        assert shape(whole, ["day"], "Asia/Kolkata") == [
            ("rollup", ((whole.start, whole.end),), 60, cut),
            ("raw", cut, 15, cut),
        ]
        # Kathmandu (+05:45) days start at 18:15 UTC: the raw side read is the quarter before it
        raw_part = plan_grouped(conn, whole, ["day"], "Asia/Kathmandu")[1]
        assert raw_part.ranges[0] == (BASE + timedelta(hours=18), BASE + timedelta(hours=18, minutes=15))
        # St John's (-02:30 in summer) days start at 02:30 UTC
        raw_part = plan_grouped(conn, whole, ["day"], "America/St_Johns")[1]
        assert raw_part.ranges[0] == (BASE + timedelta(hours=2), BASE + timedelta(hours=2, minutes=30))
        # a week or month grouping only needs the hours where a week or month starts: none here, so
        # no UTC day straddles two months and the daily rollup answers
        assert [p.source for p in plan_grouped(conn, whole, ["month"], "Asia/Kolkata")] == ["daily"]
        # no period grouping: the zone does not matter, the daily rollup answers
        assert shape(whole, ["model"], "Asia/Kolkata") == [("daily", ((whole.start, whole.end),), None, ())]
        ragged = Filters(start=BASE + timedelta(minutes=30), end=BASE + timedelta(days=1, minutes=5))
        assert shape(ragged, ["day"], "UTC") == [
            ("rollup", ((BASE + hour, BASE + timedelta(days=1)),), 60, ()),
            ("raw", ((ragged.start, BASE + hour), (BASE + timedelta(days=1), ragged.end)), 60, ()),
        ]
        with pytest.raises(ValueError):
            plan_grouped(conn, whole, ["day"], "Asia/Kolkata", source="rollup")
        with pytest.raises(ValueError):
            plan_grouped(conn, ragged, ["model"], "UTC", source="rollup")
        assert shape(whole, ["day"], "Asia/Kolkata")[0][0] == "rollup"
        assert [p.source for p in plan_grouped(conn, whole, ["day"], "UTC", source="raw")] == ["raw"]
        # open ranges: the data's own span decides which hours are cut
        assert [p.source for p in plan_grouped(conn, Filters(), ["day"], "Asia/Kolkata")] == ["rollup", "raw"]


def test_rollup_path_reads_the_rollup(sqlite_url):
    """Proof that "auto" really reads rollup_hourly for the hours and rollup_daily for the whole
    days: doctor each, the auto figures move where that table answers and only there."""
    engine = seed(sqlite_url, [make_record(BASE + timedelta(hours=2))])
    with engine.begin() as conn:
        conn.execute(text("UPDATE rollup_hourly SET requests = 41"))
        conn.execute(text("UPDATE rollup_daily SET requests = 43"))
    with engine.connect() as conn:
        day = Filters(start=BASE, end=BASE + timedelta(days=1))
        hours = Filters(start=BASE + timedelta(hours=1), end=BASE + timedelta(days=1))
        assert next(grouped_totals(conn, day, []))["requests"] == 43
        assert next(grouped_totals(conn, day, ["day"], "UTC"))["requests"] == 43
        assert next(grouped_totals(conn, day, ["day"], "Europe/Berlin"))["requests"] == 41  # days cut UTC days
        assert next(grouped_totals(conn, hours, []))["requests"] == 41
        assert next(grouped_totals(conn, day, [], source="raw"))["requests"] == 1


def test_day_boundaries_in_tokyo_utc_and_kolkata(db_url):
    records = [
        make_record(datetime(2024, 5, 1, 23, 30, tzinfo=UTC), cost_usd=Decimal("1")),
        make_record(datetime(2024, 5, 1, 18, 15, tzinfo=UTC), cost_usd=Decimal("0.01")),  # Kolkata 23:45, May 1
        make_record(datetime(2024, 5, 1, 18, 45, tzinfo=UTC), cost_usd=Decimal("0.1")),  # Kolkata 00:15, May 2
        make_record(datetime(2024, 5, 1, 14, 59, 59, 999999, tzinfo=UTC), cost_usd=Decimal("0.001")),  # Tokyo 23:59:59
        make_record(datetime(2024, 5, 1, 15, 0, tzinfo=UTC), cost_usd=Decimal("0.0001")),  # Tokyo 00:00 May 2
    ]
    engine = seed(db_url, records)
    with engine.connect() as conn:
        def days(tz):
            return {r["day"]: r["cost_usd"] for r in grouped_totals(conn, Filters(), ["day"], tz)}

        may1, may2 = date(2024, 5, 1), date(2024, 5, 2)
        assert days("UTC") == {may1: Decimal("1.1111")}
        assert days("Asia/Tokyo") == {may1: Decimal("0.001"), may2: Decimal("1.1101")}
        assert days("Asia/Kolkata") == {may1: Decimal("0.0111"), may2: Decimal("1.1")}
        # the same through local date bounds: May 2 in Tokyo holds the 23:30 UTC call
        start, end = date_bounds(may2, may2, "Asia/Tokyo")
        assert total_spend(conn, Filters(start=start, end=end)) == Decimal("1.1101")
        start, end = date_bounds(may1, may1, "Asia/Kolkata")
        assert total_spend(conn, Filters(start=start, end=end)) == Decimal("0.0111")
    engine.dispose()


def test_dst_days_weeks_and_months(sqlite_url):
    records = [
        make_record(datetime(2024, 3, 30, 22, 30, tzinfo=UTC)),  # Berlin 23:30 CET, Sat Mar 30
        make_record(datetime(2024, 3, 30, 23, 30, tzinfo=UTC)),  # Berlin 00:30 CET, Sun Mar 31
        make_record(datetime(2024, 3, 31, 21, 59, tzinfo=UTC)),  # Berlin 23:59 CEST, Sun Mar 31
        make_record(datetime(2024, 3, 31, 22, 0, tzinfo=UTC)),  # Berlin 00:00 CEST, Mon Apr 1
    ]
    engine = seed(sqlite_url, records)
    with engine.connect() as conn:
        days = {r["day"]: r["requests"] for r in grouped_totals(conn, Filters(), ["day"], "Europe/Berlin")}
        assert days == {date(2024, 3, 30): 1, date(2024, 3, 31): 2, date(2024, 4, 1): 1}
        weeks = {r["week"]: r["requests"] for r in grouped_totals(conn, Filters(), ["week"], "Europe/Berlin")}
        assert weeks == {date(2024, 3, 25): 3, date(2024, 4, 1): 1}  # ISO weeks start on Monday
        months = {r["month"]: r["requests"] for r in grouped_totals(conn, Filters(), ["month"], "Europe/Berlin")}
        assert months == {date(2024, 3, 1): 3, date(2024, 4, 1): 1}
        months_utc = {r["month"]: r["requests"] for r in grouped_totals(conn, Filters(), ["month"], "UTC")}
        assert months_utc == {date(2024, 3, 1): 4}


def test_date_bounds():
    start, end = date_bounds(date(2024, 3, 31), date(2024, 3, 31), "Europe/Berlin")
    assert start == datetime(2024, 3, 30, 23, tzinfo=UTC)
    assert end - start == timedelta(hours=23)  # the DST day is short
    start, end = date_bounds(date(2024, 5, 2), date(2024, 5, 3), "Asia/Kolkata")
    assert start == datetime(2024, 5, 1, 18, 30, tzinfo=UTC) and end == datetime(2024, 5, 3, 18, 30, tzinfo=UTC)
    assert date_bounds(None, None, "UTC") == (None, None)
    assert date_bounds(date(2024, 1, 1), None, "UTC") == (datetime(2024, 1, 1, tzinfo=UTC), None)
    with pytest.raises(ValueError, match="before"):
        date_bounds(date(2024, 1, 2), date(2024, 1, 1), "UTC")
    # the ends of the calendar leave that side open instead of overflowing
    assert date_bounds(date(1, 1, 1), date(9999, 12, 31), "Asia/Tokyo") == (None, None)
    assert date_bounds(date(1, 1, 1), date(9999, 12, 30), "UTC") == (datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, tzinfo=UTC))
    with pytest.raises(ValueError, match="timezone"):
        date_bounds(None, None, "Mars/Olympus")
    with pytest.raises(ValueError, match="timezone"):
        date_bounds(None, None, "../../etc/passwd")


def test_filters_are_bound_parameters_and_blank_means_unknown(db_url):
    records = [
        make_record(BASE, model="openai/gpt-4o"),
        make_record(BASE, model=None, app=None),
        make_record(BASE, model="", user="' OR 1=1 --"),
    ]
    engine = seed(db_url, records)
    with engine.connect() as conn:
        for attr in ("models", "providers", "apps", "users", "key_hints"):
            assert count_calls(conn, Filters(**{attr: ("' OR 1=1 --",)})) == (1 if attr == "users" else 0)
            assert count_calls(conn, Filters(**{attr: ("x') OR ('1'='1",)})) == 0
        assert count_calls(conn, Filters(models=("",))) == 2
        assert count_calls(conn, Filters(models=("", "openai/gpt-4o"))) == 3
        assert count_calls(conn, Filters(models=("",)), ) == len(list(iter_calls(conn, Filters(models=("",)))))
        rows = list(grouped_totals(conn, Filters(), ["model"]))
        assert [(r["model"], r["requests"]) for r in rows] == [("openai/gpt-4o", 1), (None, 2)]  # unknown last
        assert distinct_values(conn, "model") == ["openai/gpt-4o"]
        assert distinct_values(conn, "user") == ["' OR 1=1 --"]
    engine.dispose()


def test_status_filter_follows_the_error_rule(sqlite_url):
    records = [
        make_record(BASE, status_code=200),
        make_record(BASE, status_code=200, error_type="cancelled"),  # the caller's own cancel: not an error
        make_record(BASE, status_code=200, error_type="stream_cut"),
        make_record(BASE, status_code=429),
        make_record(BASE, status_code=None, error_type="connect"),
    ]
    engine = seed(sqlite_url, records)
    with engine.connect() as conn:
        for source in ("auto", "raw"):
            assert next(grouped_totals(conn, Filters(status="ok"), [], source=source))["requests"] == 2
            assert next(grouped_totals(conn, Filters(status="errors"), [], source=source))["requests"] == 3
            assert next(grouped_totals(conn, Filters(), [], source=source))["errors"] == 3


def test_empty_database_and_empty_range(db_url):
    engine = make_engine(db_url)
    upgrade(engine)
    with engine.connect() as conn:
        (total,) = grouped_totals(conn, Filters(), [])
        assert total == {m: (Decimal(0) if m == "cost_usd" else 0) for m in MEASURES}
        assert isinstance(total["cost_usd"], Decimal)
        assert list(grouped_totals(conn, Filters(), ["day", "model"], "Asia/Kolkata")) == []
        assert list(iter_calls(conn, Filters())) == []
        assert distinct_values(conn, "app") == []
        backwards = Filters(start=BASE + timedelta(days=1), end=BASE)
        assert count_calls(conn, backwards) == 0
    engine.dispose()


def test_result_shape_and_order(sqlite_url):
    engine = seed(sqlite_url, random_records(200))
    with engine.connect() as conn:
        rows = list(grouped_totals(conn, Filters(), ["model", "day"], "UTC"))
        assert list(rows[0]) == ["model", "day", *MEASURES]
        keys = [((r["model"] is None, r["model"] or ""), r["day"]) for r in rows]
        assert keys == sorted(keys)
        assert all(isinstance(r["day"], date) and isinstance(r["cost_usd"], Decimal) for r in rows)
        money = ("cost_usd", "billed_cost_usd", "estimated_cost_usd", "list_cost_usd")
        assert all(isinstance(r[m], Decimal) for r in rows for m in money)
        assert all(type(r[m]) is int for r in rows for m in MEASURES if m not in money)
        calls = list(iter_calls(conn, Filters(), chunk_size=7))
        assert [(c["created_at"], c["id"]) for c in calls] == sorted((c["created_at"], c["id"]) for c in calls)
        assert set(calls[0]) >= {"id", "created_at", "cost_usd", "tags", "api_key_hint", "error_message"}


def test_bad_arguments():
    with pytest.raises(ValueError, match="aware"):
        Filters(start=datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="status"):
        Filters(status="broken")
    assert Filters(models=["a", "b"]).models == ("a", "b")  # lists become tuples: hashable
    hash(Filters(models=["a"]))
    assert GROUPS == ("day", "week", "month", "model", "provider", "app", "user", "key")


def test_bad_groups_and_columns(sqlite_url):
    engine = seed(sqlite_url, [])
    with engine.connect() as conn:
        with pytest.raises(ValueError, match="is not a group"):
            list(grouped_totals(conn, Filters(), ["day", "tokens"]))
        with pytest.raises(ValueError, match="twice"):
            list(grouped_totals(conn, Filters(), ["day", "day"]))
        with pytest.raises(ValueError, match="timezone"):
            list(grouped_totals(conn, Filters(), ["day"], "Nowhere/Land"))
        with pytest.raises(ValueError, match="unknown column"):
            distinct_values(conn, "cost_usd")


def test_a_split_hour_whose_rollup_spilled_is_still_shared_exactly(db_url):
    """Asia/Kolkata's day starts at 18:30 UTC, cutting the 18:00 hour. 1,000 calls at the per-call
    cost limit fill that hour's rollup row past SQLite's int64 pico-dollars, so ``db.store`` spills
    the rest into a row at 18:00 + 1 µs; both rows belong to the cut hour, and each day gets
    exactly its side of it."""
    from spendlog.db.models import RollupHourly
    from spendlog.usage import MAX_COST_USD

    hour = datetime(2025, 6, 2, 18, tzinfo=UTC)
    calls = [make_record(hour + i * timedelta(seconds=3), cost_usd=MAX_COST_USD) for i in range(1000)]
    engine = seed(db_url, calls)  # 600 before 18:30 UTC (2 June in Kolkata), 400 after (3 June)
    whole = Filters(start=hour - timedelta(hours=1), end=hour + timedelta(hours=2))
    with engine.connect() as conn:
        buckets = sorted(conn.scalars(text(f"SELECT bucket FROM {RollupHourly.__tablename__}")))
        if conn.dialect.name == "sqlite":  # PostgreSQL's NUMERIC(30, 12) has room for it all
            assert len(buckets) == 2, buckets
        split = [p for p in plan_grouped(conn, whole, ["day"], "Asia/Kolkata") if p.split]
        assert [p.source for p in split] == ["rollup", "raw"]
        days = [(r["day"], r["requests"], r["cost_usd"]) for r in grouped_totals(conn, whole, ["day"], "Asia/Kolkata")]
        by_rows = [(r["day"], r["requests"], r["cost_usd"])
                   for r in grouped_totals(conn, whole, ["day"], "Asia/Kolkata", source="rows")]
    engine.dispose()
    assert days == by_rows == [(date(2025, 6, 2), 600, 600 * MAX_COST_USD), (date(2025, 6, 3), 400, 400 * MAX_COST_USD)]


def test_public_names():
    import spendlog.db.periods as periods
    import spendlog.db.queries as queries
    import spendlog.report.files as files
    import spendlog.report.focus as focus
    import spendlog.report.money as money
    import spendlog.report.reconcile as reconcile
    import spendlog.report.summary as summary
    import spendlog.report.table as table
    import spendlog.report.terminal as terminal

    for module in (queries, periods, files, focus, money, reconcile, summary, table, terminal):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"
            member = getattr(module, name)
            if callable(member):
                assert member.__doc__, f"{module.__name__}.{name} has no docstring"
    # the names the dashboard codes against
    assert {"Filters", "GROUPS", "date_bounds", "grouped_totals", "iter_calls", "count_calls", "distinct_values",
            "total_spend"} <= set(queries.__all__)
    assert {"grouped_csv", "calls_csv"} <= set(files.__all__)
    assert {"write_table", "neutralise"} <= set(table.__all__)
    assert {"money_exact", "money_display"} <= set(money.__all__)
