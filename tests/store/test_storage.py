"""Records round-trip exactly on SQLite and PostgreSQL; unknowns stay null; the rollup agrees."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from helpers import make_record
from spendlog.db.engine import make_engine
from spendlog.db.migrate import upgrade
from spendlog.db.models import Completion, RollupDaily, RollupHourly, RollupTagDays, RollupTagsDaily
from spendlog.db.estimate import price_book, price_record
from spendlog.db.store import insert_records, rebuild_rollups
from spendlog.db.types import from_pico, to_pico


@pytest.fixture
def engine(db_url):
    engine = make_engine(db_url)
    upgrade(engine)
    yield engine
    engine.dispose()


def test_hundred_thousand_small_costs_sum_exactly(engine):
    base = datetime(2026, 11, 1, tzinfo=timezone.utc)
    records = [
        make_record(created_at=base + timedelta(seconds=i), cost_usd=Decimal("0.000000123"))
        for i in range(100_000)
    ]
    with engine.begin() as conn:
        assert insert_records(conn, records) == 100_000
    with engine.connect() as conn:
        raw = conn.scalar(select(func.sum(Completion.cost_usd)))
        rolled = conn.scalar(select(func.sum(RollupHourly.cost_usd)))
        one = conn.scalar(select(Completion.cost_usd).limit(1))
    assert isinstance(raw, Decimal) and raw == Decimal("0.0123")
    assert rolled == Decimal("0.0123")
    assert one == Decimal("0.000000123")


def test_round_trip_keeps_every_field_and_unknowns_stay_null(engine):
    full = make_record(cached_tokens=4, reasoning_tokens=7, ttft_ms=33, tags={"env": "prod", "k": "v"})
    unknown = make_record(
        prompt_tokens=None, completion_tokens=None, total_tokens=None, cost_usd=None,
        cost_source="missing", latency_ms=None, app=None, user=None, tags=None, status_code=None,
        error_type="connect_error", error_message="connection refused", model=None, provider=None,
    )
    with engine.begin() as conn:
        insert_records(conn, [full, unknown])
    with engine.connect() as conn:
        rows = {r.id: r for r in conn.execute(select(Completion)).all()}
    got = rows[full["id"]]
    for key, value in full.items():
        assert getattr(got, key) == value, key
    assert got.created_at.tzinfo is not None
    nul = rows[unknown["id"]]
    for key in ("prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens", "reasoning_tokens",
                "cost_usd", "latency_ms", "ttft_ms", "status_code", "app", "user", "tags"):
        assert getattr(nul, key) is None, key
    assert nul.cost_source == "missing"


def test_replayed_ids_are_never_duplicated(engine):
    records = [make_record() for _ in range(10)]
    with engine.begin() as conn:
        assert insert_records(conn, records) == 10
    with engine.begin() as conn:
        assert insert_records(conn, records + records[:3]) == 0
    fresh = [make_record(cost_usd=Decimal("0.000000007")) for _ in range(4)]
    with engine.begin() as conn:  # a replay where some are stored and some are not
        assert insert_records(conn, records[5:] + fresh + records[:2]) == 4
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Completion)) == 14
        assert conn.scalar(select(func.sum(RollupHourly.requests))) == 14
        assert conn.scalar(select(func.sum(RollupHourly.cost_usd))) == conn.scalar(select(func.sum(Completion.cost_usd)))


def test_rollup_matches_raw_and_rebuild_is_identical(engine):
    base = datetime(2026, 10, 30, 22, 10, tzinfo=timezone.utc)
    records = []
    for i in range(300):
        records.append(make_record(
            created_at=base + timedelta(minutes=7 * i),
            model=["openai/gpt-4o", "anthropic/claude-3.5-sonnet", None][i % 3],
            app=["a", "b", None, "c"][i % 4],
            cost_usd=None if i % 11 == 0 else Decimal(i) / Decimal(10**9),
            prompt_tokens=None if i % 5 == 0 else i,
            status_code=[200, 200, 429, None][i % 4],
        ))
    with engine.begin() as conn:
        insert_records(conn, records)

    def snapshot(conn):  # the hourly rollup and the daily ones (revisions 0007, 0008)
        return [sorted(tuple(r) for r in conn.execute(select(table)).all())
                for table in (RollupHourly, RollupDaily, RollupTagsDaily, RollupTagDays)]

    with engine.connect() as conn:
        before = snapshot(conn)
        assert conn.scalar(select(func.sum(RollupHourly.cost_usd))) == conn.scalar(select(func.sum(Completion.cost_usd)))
        # calls without an upstream cost are estimated where their model has a price; the rest stay missing
        missing = conn.scalar(select(func.count()).select_from(Completion).where(Completion.cost_usd.is_(None)))
        book = price_book()
        assert 0 < missing == sum(1 for r in records if price_record(book, r)["cost_usd"] is None) < 28
        assert conn.scalar(select(func.sum(RollupHourly.calls_missing_cost))) == missing
        assert conn.scalar(select(func.sum(RollupHourly.prompt_tokens))) == sum(r["prompt_tokens"] or 0 for r in records)
        errors = conn.scalar(select(func.sum(RollupHourly.requests)).where(RollupHourly.is_error.is_(True)))
        assert errors == sum(1 for r in records if r["status_code"] != 200)
        for daily in (RollupDaily, RollupTagsDaily, RollupTagDays):  # every call is tagged team=core: all hold all
            sums = conn.execute(select(func.sum(daily.requests), func.sum(daily.cost_usd), func.sum(daily.prompt_tokens),
                                       func.sum(daily.calls_missing_cost))).one()
            assert tuple(sums) == (300, conn.scalar(select(func.sum(Completion.cost_usd))),
                                   sum(r["prompt_tokens"] or 0 for r in records), missing), daily
        assert len(before[1]) < len(before[0])  # 35 hours in three UTC days
    with engine.begin() as conn:
        assert rebuild_rollups(conn, chunk_size=37) == 300
    with engine.connect() as conn:
        assert snapshot(conn) == before


def test_money_is_never_a_float():
    from spendlog.db.types import Money

    with pytest.raises(TypeError):
        Money().process_bind_param(0.1, make_engine("sqlite://").dialect)
    assert to_pico(Decimal("0.0000148")) == 14_800_000
    assert from_pico(14_800_000) == Decimal("0.0000148")
    assert to_pico(Decimal("0.0000000000005")) == 0  # half-even below a pico-dollar


def test_a_call_stamped_in_another_zone_lands_in_its_utc_hour(engine):
    # 10:30 at +05:30 is 05:00 UTC: its rollup hour is 05:00 UTC, not 10:00 local (04:30 UTC), which no
    # hourly read would ever ask for; a rebuild from the stored rows agrees
    kolkata = timezone(timedelta(hours=5, minutes=30))
    new_york = timezone(timedelta(hours=-5))
    with engine.begin() as conn:
        insert_records(conn, [make_record(created_at=datetime(2026, 11, 3, 10, 30, tzinfo=kolkata)),
                              make_record(created_at=datetime(2026, 11, 3, 0, 59, 59, tzinfo=new_york))])

    def buckets(conn):
        return sorted((r.bucket, r.requests) for r in conn.execute(select(RollupHourly.bucket, RollupHourly.requests)))

    expected = [(datetime(2026, 11, 3, 5, tzinfo=timezone.utc), 2)]
    with engine.connect() as conn:
        assert buckets(conn) == expected
    with engine.begin() as conn:
        rebuild_rollups(conn)
    with engine.connect() as conn:
        assert buckets(conn) == expected
