"""Revision 0007 (daily rollups) on a 0006 ledger with rows, on SQLite and PostgreSQL: every row of
the calls and of the hourly rollups kept as stored, ``rollup_daily`` and ``rollup_tags_daily`` equal
to the hourly rows summed per UTC day exactly (a day past SQLite's int64 pico-dollars in spill
rows), the schema equal to the models, reads through the daily tables equal to the rows; and back
down to 0006 without them."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from helpers import make_record, stored_rows
from sqlalchemy import inspect, insert, select

from spendlog.db.engine import make_engine
from spendlog.db.migrate import alembic_config, current_revision, head_revision, upgrade
from spendlog.db.models import Base, Completion, RollupDaily, RollupHourly, RollupTags, RollupTagsDaily
from spendlog.db.periods import floor_day
from spendlog.db.queries import Filters, grouped_totals, plan_grouped
from spendlog.db.rollups import rollup_limits, upsert_rollups
from spendlog.db.store import COLUMNS, rollup_rows
from spendlog.db.tag_rollup import tag_rollup_limits, tag_rollup_rows
from spendlog.usage import MAX_COST_USD

START = datetime(2026, 11, 2, 21, 13, tzinfo=timezone.utc)
BIG_DAY = datetime(2026, 11, 9, tzinfo=timezone.utc)
INT64_USD = Decimal(2**63 - 1).scaleb(-12)


def _rows_0006() -> list[dict]:
    """Calls as a 0006 ledger holds them, over six days: billed, estimated, unpriced, failed, tagged;
    then one day of 1,000 calls at the per-call limit for one key (10,000,000 USD)."""
    rows = []
    for i in range(500):
        kind = ("upstream", "estimated", "missing")[i % 3]
        rows.append(make_record(
            created_at=START + timedelta(minutes=17 * i, microseconds=i), model=("openai/gpt-4o-mini", "acme/x", None)[i % 3],
            cost_usd=None if kind == "missing" else Decimal("0.000123456789") * (i + 1), cost_source=kind,
            price_source="builtin" if kind == "estimated" else None, list_cost_usd=Decimal("0.0002") * i if i % 4 else None,
            status_code=500 if i % 11 == 0 else 200, app=("a", None)[i % 5 == 0], user=f"u{i % 3}",
            tags={"team": ("core", "ml", "")[i % 3], "feature": "f"} if i % 4 else None))
    rows += [make_record(created_at=BIG_DAY + timedelta(seconds=86 * i), cost_usd=MAX_COST_USD) for i in range(1000)]
    return [{c: r.get(c) for c in COLUMNS} | {"ingested_at": START} for r in rows]


def _by_day(rows, dims, measures) -> dict:
    """Hourly rollup rows (mappings) summed per UTC day and key, in Python."""
    out: dict = {}
    for r in rows:
        key = (floor_day(r["bucket"]), *(r[d] for d in dims[1:]))
        acc = out.setdefault(key, dict.fromkeys(measures, 0))
        for m in measures:
            acc[m] += r[m]
    return out


def test_upgrade_from_0006_fills_the_daily_rollups_from_the_hourly_ones(db_url):
    engine = make_engine(db_url)
    upgrade(engine, "0006")
    rows = _rows_0006()
    dialect = engine.dialect.name
    with engine.begin() as conn:
        conn.execute(insert(Completion.__table__), rows)
        upsert_rollups(conn, rollup_rows(rows, rollup_limits(dialect)))
        upsert_rollups(conn, tag_rollup_rows(rows, tag_rollup_limits(dialect)), RollupTags.__table__)
    tables = (Completion.__table__, RollupHourly.__table__, RollupTags.__table__)
    with engine.connect() as conn:
        before = [stored_rows(conn, t) for t in tables]
        assert not {"rollup_daily", "rollup_tags_daily"} & set(inspect(conn).get_table_names())
    assert len(before[0]) == 1500 and len(before[2]) > 10

    upgrade(engine)
    with engine.connect() as conn:
        assert current_revision(conn) == head_revision()
        assert compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata) == []
        assert [stored_rows(conn, t) for t in tables] == before  # every row kept as stored
        for hourly, daily in ((RollupHourly, RollupDaily), (RollupTags, RollupTagsDaily)):
            dims = [c.name for c in hourly.__table__.primary_key]
            measures = [c.name for c in hourly.__table__.columns if not c.primary_key]
            expected = _by_day(conn.execute(select(hourly.__table__)).mappings(), dims, measures)
            stored = conn.execute(select(daily.__table__)).mappings().all()
            assert _by_day(stored, dims, measures) == expected, daily.__tablename__
            assert all(floor_day(r["bucket"]) == r["bucket"].replace(microsecond=0) for r in stored)
            big = [r for r in stored if floor_day(r["bucket"]) == BIG_DAY]
            assert sum(r["cost_usd"] for r in big) == 1000 * MAX_COST_USD
            if dialect == "sqlite":  # 10M USD does not fit one row of int64 pico-dollars
                assert len(big) == 2 and all(r["cost_usd"] <= INT64_USD for r in big)
        for f, by in ((Filters(), ["day", "model"]), (Filters(), ["tag:team", "app"]),
                      (Filters(start=START + timedelta(hours=5, minutes=3), end=BIG_DAY + timedelta(hours=30)), ["week"]),
                      (Filters(tags={"team": "core"}), ["month", "model"])):
            assert {"daily", "tags_daily"} & {p.source for p in plan_grouped(conn, f, by)}
            assert list(grouped_totals(conn, f, by)) == list(grouped_totals(conn, f, by, source="rows"))

    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0006")
    with engine.connect() as conn:
        assert not {"rollup_daily", "rollup_tags_daily"} & set(inspect(conn).get_table_names())
        assert [stored_rows(conn, t) for t in tables] == before
    engine.dispose()
