"""Revision 0004: a 0003 ledger with tagged calls gets its tag rollup built from the rows it has."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from helpers import stored_columns, stored_rows
from sqlalchemy import func, inspect, insert, select

from spendlog.db.engine import make_engine
from spendlog.db.ids import uuid7
from spendlog.db.migrate import alembic_config, current_revision, head_revision, upgrade
from spendlog.db.models import Base, Completion, RollupHourly, RollupTags
from spendlog.db.queries import MEASURES, Filters, grouped_totals, plan_grouped
from spendlog.db.store import rollup_rows
from spendlog.db.tag_limits import MAX_TAGS, MAX_VALUE, TRUNCATED_KEY

START = datetime(2026, 11, 20, 8, 13, tzinfo=timezone.utc)


def _rows_0003(n: int) -> list[dict]:
    rows = []
    for i in range(n):
        tags = {"team": ("core", "growth", "", "ml")[i % 4], "feature": ("a", "b", "c")[i % 3]} if i % 5 else None
        if i == 7:  # what the capture allowed before 0004: 255-character keys, 1000-character values, any number
            tags = {**{f"k{j:02d}": "x" * 1000 for j in range(30)}, "team": "core"}
        cost = Decimal("0.000123456789") * (i + 1) if i % 3 else None
        rows.append({
            "id": uuid7(), "created_at": START + timedelta(minutes=7 * i, microseconds=i), "request_id": f"r{i}",
            "endpoint": "/v1/chat/completions", "upstream": "api.solrouter.io", "requested_model": None,
            "model": ("openai/gpt-4o-mini", "anthropic/claude-3.5-sonnet", None)[i % 3], "provider": None,
            "stream": False, "status_code": 200 if i % 11 else 500, "error_type": None, "error_message": None,
            "prompt_tokens": 100 + i, "completion_tokens": 20 + i, "total_tokens": 120 + 2 * i, "cached_tokens": i,
            "reasoning_tokens": None, "cost_usd": cost,
            "cost_source": ("estimated" if i % 2 else "upstream") if cost is not None else "missing",
            "price_source": "builtin" if cost is not None and i % 2 else None,
            "list_cost_usd": Decimal("0.0002") * i if i % 4 else None, "finish_reason": "stop", "latency_ms": 100 + i,
            "ttft_ms": None, "app": ("a", "b", None)[i % 3 - 1], "user": "u", "tags": tags, "api_key_hint": None,
        })
    return rows


def test_upgrade_from_0003_builds_the_tag_rollup_from_the_rows(db_url):
    engine = make_engine(db_url)
    upgrade(engine, "0003")
    rows = _rows_0003(400)
    with engine.begin() as conn:
        conn.execute(insert(Completion.__table__), rows)
        conn.execute(insert(RollupHourly.__table__), rollup_rows(rows))
    with engine.connect() as conn:
        cols = stored_columns(conn, Completion.__table__)  # 0003's: later revisions add columns
        before = stored_rows(conn, Completion.__table__, cols), stored_rows(conn, RollupHourly.__table__)
        assert "rollup_tags" not in inspect(conn).get_table_names()
    upgrade(engine)
    with engine.connect() as conn:
        assert current_revision(conn) == head_revision()
        assert compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata) == []
        after = stored_rows(conn, Completion.__table__, cols), stored_rows(conn, RollupHourly.__table__)
        assert after[1] == before[1]  # the hourly rollup as it was
        changed = [(a, b) for a, b in zip(before[0], after[0]) if a != b]
        assert len(after[0]) == 400 and len(changed) == 1  # only the oversized tags were bounded
        oversized = conn.scalar(select(Completion.tags).where(Completion.request_id == "r7"))
        assert len(oversized) == MAX_TAGS + 1 and oversized[TRUNCATED_KEY] == "count,value"
        assert all(len(v) <= MAX_VALUE for v in oversized.values())
        assert conn.scalar(select(func.count()).select_from(RollupTags)) > 0
        for by, tz in ((["tag:team"], "UTC"), (["tag:team", "day", "model"], "Asia/Kolkata"), (["tag:feature", "app"], "UTC")):
            for f in (Filters(), Filters(start=START + timedelta(minutes=50), end=START + timedelta(hours=30))):
                assert {"tags", "tags_daily", "tag_days"} & {p.source for p in plan_grouped(conn, f, by, tz)}
                fast = list(grouped_totals(conn, f, by, tz))
                assert fast == list(grouped_totals(conn, f, by, tz, source="rows"))
                total = next(grouped_totals(conn, f, []))
                assert all(sum(r[m] for r in fast) == total[m] for m in MEASURES)
        core = Filters(tags={"team": "core"})
        assert list(grouped_totals(conn, core, ["day"])) == list(grouped_totals(conn, core, ["day"], source="rows"))
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0003")
    with engine.connect() as conn:
        assert "rollup_tags" not in inspect(conn).get_table_names()
        assert len(stored_rows(conn, Completion.__table__, cols)) == 400
    engine.dispose()
