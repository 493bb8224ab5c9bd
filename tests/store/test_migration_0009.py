"""Revision 0009 (indexes for tag reads with a model or an app filter) on a 0008 ledger with rows,
on SQLite and PostgreSQL: every row of every table kept as stored, the schema equal to the models,
a tag read with a model or app filter equal to the rows and (SQLite) served by its index; and back
down to 0008 with the rows still there."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from helpers import stored_rows
from sqlalchemy import insert, inspect, text
from test_migration_0007 import BIG_DAY, START, _rows_0006

from spendlog.db.daily import fill_daily
from spendlog.db.engine import make_engine
from spendlog.db.migrate import alembic_config, current_revision, head_revision, upgrade
from spendlog.db.models import (Base, Completion, RollupDaily, RollupHourly, RollupTagDays, RollupTags,
                                RollupTagsDaily)
from spendlog.db.queries import Filters, grouped_totals, plan_grouped
from spendlog.db.rollups import rollup_limits, upsert_rollups
from spendlog.db.store import rollup_rows
from spendlog.db.tag_rollup import tag_rollup_limits, tag_rollup_rows

INDEXES = {"ix_rollup_tags_daily_tag_key_model_bucket": ["tag_key", "model", "bucket"],
           "ix_rollup_tags_daily_tag_key_app_bucket": ["tag_key", "app", "bucket"]}


def _indexes(conn) -> dict[str, list[str]]:
    return {i["name"]: i["column_names"] for i in inspect(conn).get_indexes("rollup_tags_daily")}


def test_upgrade_from_0008_adds_the_indexes_and_keeps_every_row(db_url):
    engine = make_engine(db_url)
    upgrade(engine, "0008")
    rows = _rows_0006()
    dialect = engine.dialect.name
    with engine.begin() as conn:  # a 0008 ledger as its writer left it
        conn.execute(insert(Completion.__table__), rows)
        upsert_rollups(conn, rollup_rows(rows, rollup_limits(dialect)))
        upsert_rollups(conn, tag_rollup_rows(rows, tag_rollup_limits(dialect)), RollupTags.__table__)
        for hourly in (RollupHourly.__table__, RollupTags.__table__, RollupTagsDaily.__table__):
            fill_daily(conn, hourly)  # -> rollup_daily, rollup_tags_daily, rollup_tag_days
    tables = (Completion.__table__, RollupHourly.__table__, RollupDaily.__table__, RollupTags.__table__,
              RollupTagsDaily.__table__, RollupTagDays.__table__)
    whole = Filters(start=START.replace(hour=0, minute=0), end=BIG_DAY + timedelta(days=1))
    model = next(r["model"] for r in rows if r["tags"])
    app = next(r["app"] for r in rows if r["tags"] and r["app"])
    reads = [(replace(whole, models=(model,)), ["tag:team"]), (replace(whole, apps=(app,)), ["day", "tag:team"])]
    with engine.connect() as conn:
        before = [stored_rows(conn, t) for t in tables]
        assert not set(INDEXES) & set(_indexes(conn))
        answers = [list(grouped_totals(conn, f, by)) for f, by in reads]
    assert all(len(t) > 5 for t in before)
    assert all(len(a) > 1 and sum(r["cost_usd"] for r in a) > 0 for a in answers)

    upgrade(engine)
    with engine.connect() as conn:
        assert current_revision(conn) == head_revision() == "0009"
        assert compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata) == []
        assert [stored_rows(conn, t) for t in tables] == before  # every row kept as stored
        assert {n: c for n, c in _indexes(conn).items() if n in INDEXES} == INDEXES
        for (f, by), answer in zip(reads, answers):
            assert "tags_daily" in {p.source for p in plan_grouped(conn, f, by)}, (f, by)
            assert list(grouped_totals(conn, f, by)) == answer == list(grouped_totals(conn, f, by, source="rows"))
        if dialect == "sqlite":  # the read the dashboard's model filter makes goes straight to its rows
            for column, name in (("model", "ix_rollup_tags_daily_tag_key_model_bucket"),
                                 ("app", "ix_rollup_tags_daily_tag_key_app_bucket")):
                plan = " ".join(str(r[-1]) for r in conn.execute(text(
                    f"EXPLAIN QUERY PLAN SELECT tag_value, sum(requests) FROM rollup_tags_daily WHERE bucket >= :lo "
                    f"AND bucket < :hi AND tag_key = 'team' AND {column} = :v GROUP BY tag_value"),
                    {"lo": "2026-11-01", "hi": "2026-12-01", "v": model if column == "model" else app}))
                assert name in plan, plan

    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0008")
    with engine.connect() as conn:
        assert current_revision(conn) == "0008"
        assert not set(INDEXES) & set(_indexes(conn))
        assert [stored_rows(conn, t) for t in tables] == before
    engine.dispose()
