"""Daily rollups: ``rollup_daily`` and ``rollup_tags_daily``, summed from the hourly ones.

A year of calls is 5.5M ``rollup_hourly`` rows at 50M calls; the read layer's whole days now come
from a table with one row per UTC day and key instead (``spendlog.db.models.RollupDaily``,
``RollupTagsDaily``: the same keys and sums as ``rollup_hourly`` / ``rollup_tags``, ``bucket`` = the
day's midnight, spill rows at midnight + n µs). The upgrade creates both and fills them from the
hourly tables (``spendlog.db.daily.fill_daily``: the hourly rows summed per day in Python within
the columns' limits, since one day of int64 pico-dollars on SQLite may not fit one row), so the
days of pruned calls come too. Nothing else changes; the downgrade drops the two tables.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from spendlog.db.types import Money, UTCDateTime

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COUNTS = ("requests", "prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens", "reasoning_tokens")
_MONEY = ("billed_cost_usd", "estimated_cost_usd", "list_cost_usd")
_CALL_KEYS = (("model", 255), ("provider", 255), ("app", 255), ("user", 255), ("api_key_hint", 32))
_TAG_KEYS = (("tag_key", 64), ("tag_value", 256), ("model", 255), ("app", 255))
_TAG_INDEX = "ix_rollup_tags_daily_tag_key_tag_value_bucket"


def _sums() -> list[sa.Column]:
    return [
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in _COUNTS),
        sa.Column("cost_usd", Money(), nullable=False),
        sa.Column("calls_missing_cost", sa.BigInteger(), nullable=False),
        *(sa.Column(name, Money(), nullable=False) for name in _MONEY),
        sa.Column("latency_ms_sum", sa.BigInteger(), nullable=False),
        sa.Column("latency_count", sa.BigInteger(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "rollup_daily",
        sa.Column("bucket", UTCDateTime(), nullable=False),
        *(sa.Column(name, sa.String(length), nullable=False) for name, length in _CALL_KEYS),
        sa.Column("is_error", sa.Boolean(), nullable=False),
        *_sums(),
        sa.PrimaryKeyConstraint("bucket", *(name for name, _ in _CALL_KEYS), "is_error", name="pk_rollup_daily"),
    )
    op.create_table(
        "rollup_tags_daily",
        sa.Column("bucket", UTCDateTime(), nullable=False),
        *(sa.Column(name, sa.String(length), nullable=False) for name, length in _TAG_KEYS),
        *_sums(),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("bucket", *(name for name, _ in _TAG_KEYS), name="pk_rollup_tags_daily"),
    )
    op.create_index(_TAG_INDEX, "rollup_tags_daily", ["tag_key", "tag_value", "bucket"])
    from spendlog.db.daily import fill_daily
    from spendlog.db.models import RollupHourly, RollupTags

    conn = op.get_bind()
    for hourly in (RollupHourly.__table__, RollupTags.__table__):
        fill_daily(conn, hourly)


def downgrade() -> None:
    op.drop_index(_TAG_INDEX, table_name="rollup_tags_daily")
    op.drop_table("rollup_tags_daily")
    op.drop_table("rollup_daily")
