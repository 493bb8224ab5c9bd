"""Revision 0006 (month close, issue 17) on a 0003 ledger with rows, on SQLite and PostgreSQL: every
row and every stored value kept, sums exact, ``ingested_at`` NULL for the rows already there (never
late), the schema equal to the models; a close right after the upgrade takes every old row in, and
only rows written after it are late; back down to 0003 without the new tables."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from helpers import make_record
from sqlalchemy import func, insert, inspect, select, text

from spendlog.db.closes import close_month, closed_totals, late_totals
from spendlog.db.engine import make_engine
from spendlog.db.migrate import alembic_config, current_revision, head_revision, upgrade
from spendlog.db.models import Base, Completion, RollupHourly
from spendlog.db.store import COLUMNS, insert_records, rollup_rows


def _rows_0003(n: int) -> list[dict]:
    """Calls as a 0003 ledger holds them (no ingested_at): billed, estimated, unpriced, failed."""
    start = datetime(2026, 11, 3, 8, tzinfo=timezone.utc)
    rows = []
    for i in range(n):
        kind = ("upstream", "estimated", "missing")[i % 3]
        rows.append({c: v for c, v in make_record(
            created_at=start + timedelta(minutes=97 * i), model=("openai/gpt-4o-mini", "acme/unknown")[i % 2],
            cost_usd=None if kind == "missing" else Decimal("0.000123456789") * (i + 1), cost_source=kind,
            price_source="builtin" if kind == "estimated" else None,
            list_cost_usd=Decimal("0.0002") * i if i % 4 else None, status_code=500 if i % 11 == 0 else 200,
            app=("a", None)[i % 5 == 0], user=f"u{i % 3}", cached_tokens=None, reasoning_tokens=None,
            error_type=None, error_message=None, requested_model=None, ttft_ms=None,
        ).items() if c in COLUMNS})
    return rows


def _raw(conn, table, skip=("ingested_at",)):
    """The stored values as the database returns them (no type conversion), in key order."""
    cols = ", ".join(f'"{c.name}"' for c in table.columns if c.name not in skip)
    keys = ", ".join(f'"{c.name}"' for c in table.primary_key.columns)
    return conn.execute(text(f"SELECT {cols} FROM {table.name} ORDER BY {keys}")).all()


def _sums(conn):
    return (conn.execute(select(func.count(), func.sum(Completion.cost_usd), func.sum(Completion.list_cost_usd),
                                func.sum(Completion.total_tokens))).one(),
            conn.execute(select(func.sum(RollupHourly.requests), func.sum(RollupHourly.cost_usd),
                                func.sum(RollupHourly.estimated_cost_usd))).one())


def test_upgrade_from_0003_with_rows_keeps_them_and_old_rows_are_never_late(db_url):
    engine = make_engine(db_url)
    upgrade(engine, "0003")
    rows = _rows_0003(300)
    with engine.begin() as conn:
        conn.execute(insert(Completion.__table__), rows)
        conn.execute(insert(RollupHourly.__table__), rollup_rows(rows))
    with engine.connect() as conn:
        before = _raw(conn, Completion.__table__), _raw(conn, RollupHourly.__table__)
        before_sums = _sums(conn)
        assert "ingested_at" not in {c["name"] for c in inspect(conn).get_columns("completions")}
    assert len(before[0]) == 300
    assert before_sums[0][1] == sum(r["cost_usd"] for r in rows if r["cost_usd"] is not None)

    upgrade(engine)
    with engine.connect() as conn:
        assert current_revision(conn) == head_revision()
        assert (_raw(conn, Completion.__table__), _raw(conn, RollupHourly.__table__)) == before
        assert _sums(conn) == before_sums
        assert conn.scalar(select(func.count()).where(Completion.ingested_at.is_not(None))) == 0
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(ctx, Base.metadata) == []

    entry, _ = close_month(engine, "2026-11", "UTC", by="test")
    with engine.connect() as conn:
        total = next(closed_totals(conn, entry, ()))
        assert (total["requests"], total["cost_usd"]) == (300, before_sums[0][1])
        assert late_totals(conn, entry)["requests"] == 0  # NULL ingested_at: stored before any close
    with engine.begin() as conn:
        insert_records(conn, [make_record(created_at=datetime(2026, 11, 30, 23, 59, 59, tzinfo=timezone.utc),
                                          cost_usd=Decimal("0.25"))])
    with engine.connect() as conn:
        late = late_totals(conn, entry)
        assert (late["requests"], late["cost_usd"]) == (1, Decimal("0.25"))

    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0003")
    with engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
        assert not {"month_closes", "month_close_totals"} & tables
        assert "ingested_at" not in {c["name"] for c in inspect(conn).get_columns("completions")}
        assert len(_raw(conn, Completion.__table__)) == 301
    engine.dispose()
