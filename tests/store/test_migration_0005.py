"""Revision 0005 (budgets): a 0003 ledger with calls upgrades with every row and exact sums kept,
gains the three budget tables, and goes back down to 0003 without them."""

from __future__ import annotations

from decimal import Decimal

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, insert, inspect, select
from helpers import stored_columns, stored_rows
from test_migrations import _rows_0001

from spendlog.db.engine import make_engine
from spendlog.db.migrate import alembic_config, current_revision, head_revision, upgrade
from spendlog.db.models import Base, Completion, RollupHourly
from spendlog.db.store import rollup_rows

BUDGET_TABLES = {"budgets", "budget_webhooks", "alerts"}


def test_upgrade_from_0003_with_rows_adds_budgets_and_keeps_every_row(db_url):
    engine = make_engine(db_url)
    upgrade(engine, "0003")
    rows = _rows_0001(200)
    for i, r in enumerate(rows):
        if i % 3 == 0 and i % 2:
            r.update(cost_usd=Decimal("0.000000987654") * i, cost_source="estimated", price_source="builtin")
        r["list_cost_usd"] = Decimal("0.0002") * i if i % 4 else None
        r.setdefault("price_source", None)
        r["tags"] = {"team": "core"} if i % 5 == 0 else None
    with engine.begin() as conn:
        conn.execute(insert(Completion.__table__), rows)
        conn.execute(insert(RollupHourly.__table__), rollup_rows(rows))
    with engine.connect() as conn:
        cols = stored_columns(conn, Completion.__table__)  # 0003's: later revisions add columns
        before = stored_rows(conn, Completion.__table__, cols), stored_rows(conn, RollupHourly.__table__)
        before_cost = conn.scalar(select(func.sum(Completion.cost_usd)))
        assert not BUDGET_TABLES & set(inspect(conn).get_table_names())
    assert before_cost == sum(r["cost_usd"] for r in rows if r["cost_usd"] is not None)
    upgrade(engine)
    with engine.connect() as conn:
        assert current_revision(conn) == head_revision()
        assert (stored_rows(conn, Completion.__table__, cols), stored_rows(conn, RollupHourly.__table__)) == before
        assert conn.scalar(select(func.sum(Completion.cost_usd))) == before_cost
        assert BUDGET_TABLES <= set(inspect(conn).get_table_names())
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(ctx, Base.metadata) == []
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0003")
    with engine.connect() as conn:
        assert not BUDGET_TABLES & set(inspect(conn).get_table_names())
        assert stored_rows(conn, Completion.__table__, cols) == before[0]
    engine.dispose()
