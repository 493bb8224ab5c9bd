"""Tag days: ``rollup_tag_days``, ``rollup_tags_daily`` summed over model and app.

At 10M calls x 3 tags (one key with 2,000 values) ``rollup_tags_daily`` still holds 4.6M rows for
90 days, since it keeps model and app; per UTC day x tag key x tag value there are 180,409. The tag
picker (``db.tag_reads``) and the reads by one tag that name no model or app (``db.plan``) take
their whole days from this table (``spendlog.db.models.RollupTagDays``: ``bucket`` = the day's
midnight, + n µs for spill rows, then tag key, tag value and ``TAG_MEASURES``). The upgrade fills it
from ``rollup_tags_daily`` (``spendlog.db.daily.fill_daily``: summed in Python within the columns'
limits, so pruned days come too); the downgrade drops it.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from spendlog.db.types import Money, UTCDateTime

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COUNTS = ("requests", "prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens", "reasoning_tokens")
_MONEY = ("billed_cost_usd", "estimated_cost_usd", "list_cost_usd")
_INDEX = "ix_rollup_tag_days_tag_key_tag_value_bucket"


def upgrade() -> None:
    op.create_table(
        "rollup_tag_days",
        sa.Column("bucket", UTCDateTime(), nullable=False),
        sa.Column("tag_key", sa.String(64), nullable=False),
        sa.Column("tag_value", sa.String(256), nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in _COUNTS),
        sa.Column("cost_usd", Money(), nullable=False),
        sa.Column("calls_missing_cost", sa.BigInteger(), nullable=False),
        *(sa.Column(name, Money(), nullable=False) for name in _MONEY),
        sa.Column("latency_ms_sum", sa.BigInteger(), nullable=False),
        sa.Column("latency_count", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("bucket", "tag_key", "tag_value", name="pk_rollup_tag_days"),
    )
    op.create_index(_INDEX, "rollup_tag_days", ["tag_key", "tag_value", "bucket"])
    from spendlog.db.daily import fill_daily
    from spendlog.db.models import RollupTagsDaily

    fill_daily(op.get_bind(), RollupTagsDaily.__table__)


def downgrade() -> None:
    op.drop_index(_INDEX, table_name="rollup_tag_days")
    op.drop_table("rollup_tag_days")
