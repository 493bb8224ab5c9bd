"""Revision 0008 (tag days) on a 0007 ledger with rows, on SQLite and PostgreSQL: every row of the
calls and of the other rollups kept as stored, ``rollup_tag_days`` equal to ``rollup_tags_daily``
summed per UTC day, tag key and tag value exactly (a day past SQLite's int64 pico-dollars in spill
rows), the schema equal to the models, reads through it equal to the rows; and back down to 0007
without it."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from helpers import stored_rows
from sqlalchemy import inspect, insert, select
from test_migration_0007 import BIG_DAY, INT64_USD, START, _by_day, _rows_0006

from spendlog.db.daily import fill_daily
from spendlog.db.engine import make_engine
from spendlog.db.migrate import alembic_config, current_revision, head_revision, upgrade
from spendlog.db.models import (TAG_DAY_DIMENSIONS, TAG_MEASURES, Base, Completion, RollupDaily, RollupHourly,
                                RollupTagDays, RollupTags, RollupTagsDaily)
from spendlog.db.periods import floor_day
from spendlog.db.queries import Filters, grouped_totals, plan_grouped
from spendlog.db.rollups import rollup_limits, upsert_rollups
from spendlog.db.store import rollup_rows
from spendlog.db.tag_rollup import tag_rollup_limits, tag_rollup_rows
from spendlog.db.tag_reads import tag_choices
from spendlog.usage import MAX_COST_USD


def test_upgrade_from_0007_fills_the_tag_days_from_the_daily_tag_rows(db_url):
    engine = make_engine(db_url)
    upgrade(engine, "0007")
    rows = _rows_0006()
    dialect = engine.dialect.name
    with engine.begin() as conn:  # a 0007 ledger as its writer left it: hourly rows, then their days
        conn.execute(insert(Completion.__table__), rows)
        upsert_rollups(conn, rollup_rows(rows, rollup_limits(dialect)))
        upsert_rollups(conn, tag_rollup_rows(rows, tag_rollup_limits(dialect)), RollupTags.__table__)
        for hourly in (RollupHourly.__table__, RollupTags.__table__):
            fill_daily(conn, hourly)
    tables = (Completion.__table__, RollupHourly.__table__, RollupDaily.__table__, RollupTags.__table__,
              RollupTagsDaily.__table__)
    # whole days from a UTC midnight, then hours and a partial one of the big day
    whole = Filters(start=START.replace(hour=0, minute=0), end=BIG_DAY + timedelta(hours=5, minutes=20))
    with engine.connect() as conn:
        before = [stored_rows(conn, t) for t in tables]
        assert "rollup_tag_days" not in inspect(conn).get_table_names()
    assert len(before[4]) > 10
    # tag_choices' content, from the calls: keys by calls, pairs by calls (the range widened to whole hours)
    hi = whole.end.replace(minute=0) + timedelta(hours=1)
    counts = Counter((k, v) for r in rows if whole.start <= r["created_at"] < hi for k, v in (r["tags"] or {}).items() if v)
    keys = [k for _, k in sorted((-sum(n for (k2, _), n in counts.items() if k2 == k), k) for k in {k for k, _ in counts})]
    choices = (keys, [(k, v) for _, k, v in sorted((-n, k, v) for (k, v), n in counts.items())])
    assert set(choices[1]) == {("team", "core"), ("team", "ml"), ("feature", "f")}

    upgrade(engine)
    with engine.connect() as conn:
        assert current_revision(conn) == head_revision()  # 0008, and 0009 after it (indexes only)
        assert compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata) == []
        assert [stored_rows(conn, t) for t in tables] == before  # every row kept as stored
        expected = _by_day(conn.execute(select(RollupTagsDaily.__table__)).mappings(), TAG_DAY_DIMENSIONS, TAG_MEASURES)
        stored = conn.execute(select(RollupTagDays.__table__)).mappings().all()
        assert _by_day(stored, TAG_DAY_DIMENSIONS, TAG_MEASURES) == expected
        assert len(expected) < len(before[4])  # model and app summed away
        assert all(floor_day(r["bucket"]) == r["bucket"].replace(microsecond=0) for r in stored)
        big = [r for r in stored if floor_day(r["bucket"]) == BIG_DAY and r["tag_key"] == "team"]
        assert sum(r["cost_usd"] for r in big) == 1000 * MAX_COST_USD
        if dialect == "sqlite":  # 10M USD does not fit one row of int64 pico-dollars
            assert len(big) == 2 and all(r["cost_usd"] <= INT64_USD for r in big)
        assert tag_choices(conn, whole) == choices  # the same content, now from rollup_tag_days
        for f, by in ((Filters(), ["tag:team"]), (Filters(), ["day", "tag:feature"]),
                      (Filters(start=START, end=BIG_DAY.replace(hour=7, minute=30)), ["week", "tag:team"]),
                      (Filters(tags={"team": "core"}), ["month"])):
            assert "tag_days" in {p.source for p in plan_grouped(conn, f, by)}, (f, by)
            assert list(grouped_totals(conn, f, by)) == list(grouped_totals(conn, f, by, source="rows"))

    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0007")
    with engine.connect() as conn:
        assert "rollup_tag_days" not in inspect(conn).get_table_names()
        assert [stored_rows(conn, t) for t in tables] == before
    engine.dispose()
