"""Alembic: empty -> head matches the models, and concurrent first starts all succeed."""

from __future__ import annotations

import subprocess
import sys

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, inspect, select

from spendlog.db.engine import make_engine
from spendlog.db.migrate import current_revision, head_revision, upgrade
from spendlog.db.models import Base, Completion


def test_empty_database_upgrades_to_head_matching_the_models(db_url):
    engine = make_engine(db_url)
    upgrade(engine)
    with engine.connect() as conn:
        assert current_revision(conn) == head_revision()
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(ctx, Base.metadata) == []
        assert {"completions", "rollup_hourly", "alembic_version"} <= set(inspect(conn).get_table_names())
    upgrade(engine)  # a second upgrade is a no-op
    engine.dispose()


def test_downgrade_to_base_and_back(db_url):
    from alembic import command

    from spendlog.db.migrate import alembic_config

    engine = make_engine(db_url)
    upgrade(engine)
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "base")
    with engine.connect() as conn:
        assert "completions" not in inspect(conn).get_table_names()
    upgrade(engine)
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Completion)) == 0
    engine.dispose()


def test_four_processes_migrating_a_new_database_at_once(db_url):
    code = (
        "from spendlog.db.engine import make_engine\n"
        "from spendlog.db.migrate import ensure_schema\n"
        f"ensure_schema(make_engine({db_url!r}))\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True) for _ in range(4)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
    engine = make_engine(db_url)
    with engine.connect() as conn:
        assert current_revision(conn) == head_revision()
    engine.dispose()


def test_migrations_ship_inside_the_package():
    import spendlog.migrations
    from pathlib import Path

    folder = Path(spendlog.migrations.__file__).parent
    assert (folder / "env.py").exists() and (folder / "script.py.mako").exists()
    assert any(p.name.startswith("0001") for p in (folder / "versions").iterdir())


def _rows_0001(n: int) -> list[dict]:
    """Rows as a 0001 ledger holds them: billed calls and calls with no cost, over a few hours."""
    from datetime import datetime, timedelta, timezone
    from decimal import Decimal

    from spendlog.db.ids import uuid7

    start = datetime(2026, 11, 20, 8, tzinfo=timezone.utc)
    rows = []
    for i in range(n):
        billed = i % 3 != 0
        rows.append({
            "id": uuid7(), "created_at": start + timedelta(minutes=7 * i), "request_id": f"r{i}",
            "endpoint": "/v1/chat/completions", "upstream": "api.solrouter.io", "requested_model": None,
            "model": ("openai/gpt-4o-mini", "anthropic/claude-3.5-sonnet", "acme/unknown")[i % 3],
            "provider": None, "stream": False, "status_code": 200 if i % 11 else 500, "error_type": None,
            "error_message": None, "prompt_tokens": 100 + i, "completion_tokens": 20 + i, "total_tokens": 120 + 2 * i,
            "cached_tokens": None, "reasoning_tokens": None,
            "cost_usd": Decimal("0.000123456789") * (i + 1) if billed else None,
            "cost_source": "upstream" if billed else "missing", "finish_reason": "stop", "latency_ms": 100 + i,
            "ttft_ms": None, "app": "a", "user": "u", "tags": None, "api_key_hint": None,
        })
    return rows


def test_upgrade_from_0001_with_rows_keeps_every_row_and_exact_sums(db_url):
    """A ledger written by 0001 (rows and rollup written as 0001 wrote them) upgraded to 0002: every
    row kept unchanged, the rollup's sums equal before and after, its cost now all billed."""
    from alembic import command
    from sqlalchemy import MetaData, Table, insert, text

    from spendlog.db.migrate import alembic_config
    from spendlog.db.models import RollupHourly
    from spendlog.db.store import rollup_rows

    engine = make_engine(db_url)
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0001")
    with engine.connect() as conn:  # the 0001 tables as stored, written with the models' column types
        typed = MetaData()
        completions = Table("completions", typed, autoload_with=conn)
        rollup = Table("rollup_hourly", typed, autoload_with=conn)
    for t, model in ((completions, Completion.__table__), (rollup, RollupHourly.__table__)):
        for c in t.columns:
            c.type = model.c[c.name].type
    rows = _rows_0001(300)
    sums = rollup_rows(rows)
    with engine.begin() as conn:
        conn.execute(insert(completions), rows)
        conn.execute(insert(rollup), [{k: v for k, v in r.items() if k in rollup.c} for r in sums])

    def raw(conn, table):  # the stored values, as the database returns them (no type conversion)
        cols = ", ".join(f'"{c.name}"' for c in table.columns)
        keys = ", ".join(f'"{c.name}"' for c in table.primary_key.columns)
        return conn.execute(text(f"SELECT {cols} FROM {table.name} ORDER BY {keys}")).all()

    with engine.connect() as conn:
        before_rows, before_rollup = raw(conn, completions), raw(conn, rollup)
        raw_cost = conn.scalar(text("SELECT SUM(cost_usd) FROM completions"))
    assert len(before_rows) == 300 and len(before_rollup) > 10
    upgrade(engine, "0002")
    with engine.connect() as conn:
        assert current_revision(conn) == "0002"
        assert raw(conn, completions) == before_rows
        assert raw(conn, rollup) == before_rollup
        assert set(conn.execute(select(Completion.price_source, Completion.list_cost_usd))) == {(None, None)}
        assert conn.scalar(text("SELECT SUM(cost_usd) FROM completions")) == raw_cost
        table = RollupHourly.__table__
        after_rollup = conn.execute(select(table).order_by(*table.primary_key.columns)).mappings().all()
        for r in after_rollup:
            assert (r["billed_cost_usd"], r["estimated_cost_usd"], r["list_cost_usd"]) == (r["cost_usd"], 0, 0)
        total = conn.execute(select(func.sum(table.c.cost_usd), func.sum(table.c.billed_cost_usd),
                                    func.sum(table.c.calls_missing_cost), func.sum(table.c.requests))).one()
        assert total == (sum(r["cost_usd"] for r in rows if r["cost_usd"] is not None),) * 2 + (100, 300)
    upgrade(engine)  # and on to the newest
    with engine.connect() as conn:
        assert raw(conn, completions) == before_rows
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(ctx, Base.metadata) == []
    engine.dispose()


REQUEST_LOG_INDEXES = {"ix_completions_cost_usd", "ix_completions_total_tokens", "ix_completions_latency_ms",
                       "ix_completions_request_id"}


def test_upgrade_from_0002_with_rows_adds_the_request_log_indexes_and_keeps_every_row(db_url):
    """A 0002 ledger with calls (billed, estimated, unpriced, failed) and its rollup upgraded to
    0003: every row and every stored value unchanged, the sums exact, the four request-log
    indexes there, the schema equal to the models; and back down to 0002 without them."""
    from alembic import command
    from decimal import Decimal
    from sqlalchemy import insert, text

    from spendlog.db.migrate import alembic_config
    from spendlog.db.models import RollupHourly
    from spendlog.db.store import rollup_rows

    engine = make_engine(db_url)
    upgrade(engine, "0002")
    rows = _rows_0001(240)
    for i, r in enumerate(rows):
        if i % 3 == 0 and i % 2:  # some unpriced calls got an estimate (0002's cost_source)
            r.update(cost_usd=Decimal("0.000000987654") * i, cost_source="estimated", price_source="builtin")
        r["list_cost_usd"] = Decimal("0.0002") * i if i % 4 else None
        r.setdefault("price_source", None)
    with engine.begin() as conn:
        conn.execute(insert(Completion.__table__), rows)
        conn.execute(insert(RollupHourly.__table__), rollup_rows(rows))

    def raw(conn, table):
        cols = ", ".join(f'"{c.name}"' for c in table.columns)
        keys = ", ".join(f'"{c.name}"' for c in table.primary_key.columns)
        return conn.execute(text(f"SELECT {cols} FROM {table.name} ORDER BY {keys}")).all()

    def sums(conn):
        return (conn.execute(select(func.count(), func.sum(Completion.cost_usd), func.sum(Completion.list_cost_usd),
                                    func.sum(Completion.total_tokens))).one(),
                conn.execute(select(func.sum(RollupHourly.requests), func.sum(RollupHourly.cost_usd),
                                    func.sum(RollupHourly.estimated_cost_usd))).one())

    with engine.connect() as conn:
        before = raw(conn, Completion.__table__), raw(conn, RollupHourly.__table__)
        before_sums = sums(conn)
        assert not REQUEST_LOG_INDEXES & {ix["name"] for ix in inspect(conn).get_indexes("completions")}
    assert len(before[0]) == 240
    assert before_sums[0][1] == sum(r["cost_usd"] for r in rows if r["cost_usd"] is not None)
    upgrade(engine)
    with engine.connect() as conn:
        assert current_revision(conn) == head_revision()
        assert (raw(conn, Completion.__table__), raw(conn, RollupHourly.__table__)) == before
        assert sums(conn) == before_sums
        assert REQUEST_LOG_INDEXES <= {ix["name"] for ix in inspect(conn).get_indexes("completions")}
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(ctx, Base.metadata) == []
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0002")
    with engine.connect() as conn:
        assert not REQUEST_LOG_INDEXES & {ix["name"] for ix in inspect(conn).get_indexes("completions")}
        assert raw(conn, Completion.__table__) == before[0]
    engine.dispose()
