"""Issue 12, finding 10 (part): spend past SQLite's integer range is stored and read exactly.

SQLite keeps money as integer pico-dollars (int64: 9,223,372.036854775807 USD at most). One
hour's rollup row for one model, app, user and key passes that after 923 calls at the 10,000 USD
per-call limit; a range's SUM passes it sooner. Every figure must still be exact, on both backends.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from helpers import make_record, rejected, stored
from spendlog.db.engine import make_engine
from spendlog.db.migrate import ensure_schema
from spendlog.db.queries import Filters, grouped_totals
from spendlog.db.store import insert_records, rebuild_rollups
from spendlog.db.writer import Writer, spooled_count
from spendlog.usage import MAX_COST_USD

HOUR = datetime(2025, 6, 2, 10, tzinfo=timezone.utc)
INT64_USD = Decimal(2**63 - 1).scaleb(-12)


def _calls(n: int, start: datetime, step: timedelta, **fields) -> list[dict]:
    return [make_record(created_at=start + i * step, cost_usd=MAX_COST_USD, **fields) for i in range(n)]


def _totals(engine, filters: Filters, by=()) -> list[dict]:
    with engine.connect() as conn:
        return list(grouped_totals(conn, filters, by))


def test_an_hour_past_the_integer_range_is_stored_and_read_exactly(db_url):
    """1,000 calls at the per-call limit in one hour for one key (10,000,000 USD, past int64
    pico-dollars), in one batch and then across batches; and 950 more in the first half of the
    next hour (read from raw rows). Before: SQLite's rollup turned REAL and every read failed."""
    engine = make_engine(db_url)
    ensure_schema(engine)
    whole_hour = _calls(1000, HOUR, timedelta(seconds=3))
    with engine.begin() as conn:  # one batch whose own rollup row overflows
        insert_records(conn, whole_hour)
    next_hour = _calls(950, HOUR + timedelta(hours=1), timedelta(seconds=1))
    for i in range(0, 950, 100):  # batches adding to a row that is already full
        with engine.begin() as conn:
            insert_records(conn, next_hour[i : i + 100])
    assert 1000 * MAX_COST_USD > INT64_USD and 950 * MAX_COST_USD > INT64_USD
    everything = Filters(start=HOUR, end=HOUR + timedelta(hours=2))
    [total] = _totals(engine, everything)
    assert total["cost_usd"] == 1950 * MAX_COST_USD and total["requests"] == 1950
    partial = Filters(start=HOUR, end=HOUR + timedelta(hours=1, minutes=30))  # raw rows for the half hour
    [part] = _totals(engine, partial)
    assert part["cost_usd"] == 1950 * MAX_COST_USD
    by_key = _totals(engine, everything, ("day", "model", "key"))
    assert [r["cost_usd"] for r in by_key] == [1950 * MAX_COST_USD]
    for source in ("raw", "rows"):
        with engine.connect() as conn:
            [row] = grouped_totals(conn, everything, (), source=source)
        assert row["cost_usd"] == 1950 * MAX_COST_USD, source
    with engine.begin() as conn:
        assert rebuild_rollups(conn) == 1950
    [again] = _totals(engine, everything)
    assert again["cost_usd"] == 1950 * MAX_COST_USD and again["requests"] == 1950
    engine.dispose()


def test_the_writer_stores_an_overflowing_hour_without_quarantine(db_url):
    """Through the writer: nothing rejected, nothing spooled, the sum exact."""
    writer = Writer(db_url)
    calls = _calls(930, HOUR, timedelta(seconds=2))
    for r in calls:
        writer.submit(r)
    assert writer.flush(60)
    assert len(stored(db_url)) == 930 and rejected(db_url) == [] and spooled_count(writer.url) == 0
    engine = make_engine(db_url)
    [total] = _totals(engine, Filters())
    assert total["cost_usd"] == 930 * MAX_COST_USD
    engine.dispose()
    writer.close()


def test_no_rollup_row_passes_its_columns_on_either_backend(db_url):
    """Token sums past BIGINT in one hour for one key, in one batch and across batches: every
    record is stored, each rollup row stays within its columns (PostgreSQL refused the row before,
    SQLite turned it REAL) and the rows add up to the exact total."""
    from sqlalchemy import select

    from spendlog.db.models import RollupHourly

    big = 2**62
    engine = make_engine(db_url)
    ensure_schema(engine)
    batches = [[make_record(created_at=HOUR, prompt_tokens=big) for _ in range(3)] for _ in range(2)]
    for batch in batches:
        with engine.begin() as conn:
            assert insert_records(conn, batch) == 3
    with engine.connect() as conn:
        tokens = list(conn.scalars(select(RollupHourly.prompt_tokens)))
        buckets = list(conn.scalars(select(RollupHourly.bucket)))
    engine.dispose()
    assert all(isinstance(t, int) and t <= 2**63 - 1 for t in tokens), tokens
    assert sum(tokens) == 6 * big and len(tokens) >= 3
    assert {b.replace(microsecond=0) for b in buckets} == {HOUR}


def test_a_day_past_the_integer_range_spills_in_the_daily_rollups_and_reads_exactly(db_url):
    """24 hours x 400 calls at the per-call limit for one key: every hour's row (4,000,000 USD) fits,
    the day (96,000,000 USD) does not fit one SQLite row, so rollup_daily and rollup_tags_daily
    continue it in rows at midnight + n µs, each within int64; reads of the day from the daily
    rollup, one batch per hour or all at once, and after a rebuild, stay exact."""
    from sqlalchemy import func, select

    from spendlog.db.models import RollupDaily, RollupTagDays, RollupTagsDaily
    from spendlog.db.periods import floor_day
    from spendlog.db.queries import plan_grouped

    day = datetime(2025, 6, 2, tzinfo=timezone.utc)
    engine = make_engine(db_url)
    ensure_schema(engine)
    for h in range(24):  # one batch per hour: the day's rows fill across batches
        with engine.begin() as conn:
            insert_records(conn, _calls(400, day + timedelta(hours=h), timedelta(seconds=9)))
    with engine.begin() as conn:  # and one batch whose own daily rows overflow
        insert_records(conn, _calls(1200, day + timedelta(days=1), timedelta(seconds=72)))
    exact = {day: 9600 * MAX_COST_USD, day + timedelta(days=1): 1200 * MAX_COST_USD}
    assert exact[day] > 10 * INT64_USD

    def check() -> None:
        with engine.connect() as conn:
            for model in (RollupDaily, RollupTagsDaily, RollupTagDays):
                rows = conn.execute(select(model.bucket, model.cost_usd, model.requests)).all()
                sums: dict = {}
                for bucket, cost, _ in rows:
                    sums[floor_day(bucket)] = sums.get(floor_day(bucket), 0) + cost
                assert sums == exact, model
                assert conn.scalar(select(func.sum(model.requests))) == 10800
                if conn.dialect.name == "sqlite":  # PostgreSQL's NUMERIC(30, 12) has room for it all
                    assert all(cost <= INT64_USD for _, cost, _ in rows)
                    assert len(rows) >= 12, model  # 96M USD in rows of at most 9.2M, and 12M in two
            whole = Filters(start=day, end=day + timedelta(days=2))
            for f in (whole, Filters(start=day, end=day + timedelta(days=2), tags={"team": "core"})):
                for by in (["day", "model"], ["day"], ["week", "tag:team"]):
                    if f.tags and by[-1] == "tag:team":
                        continue  # two tags: the calls themselves
                    # a read that names a model takes its tagged days from rollup_tags_daily, one by a tag
                    # alone from rollup_tag_days
                    want = ("tags_daily" if "model" in by else "tag_days") if f.tags or by[-1] == "tag:team" else "daily"
                    sources = {p.source for p in plan_grouped(conn, f, by)}
                    assert want in sources and not ({"tags_daily", "tag_days"} - {want}) & sources, (by, sources)
                    rows = list(grouped_totals(conn, f, by))
                    assert [(r["cost_usd"], r["requests"]) for r in rows] == (
                        [(exact[day], 9600), (exact[day + timedelta(days=1)], 1200)] if by[0] == "day"
                        else [(sum(exact.values()), 10800)]), by
                    assert rows == list(grouped_totals(conn, f, by, source="rows"))

    check()
    with engine.begin() as conn:
        assert rebuild_rollups(conn) == 10800
    check()
    engine.dispose()
