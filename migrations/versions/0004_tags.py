"""Tags as a dimension: the tag rollup ``rollup_tags``, built from the calls the ledger has.

``rollup_tags`` (``spendlog.db.models.RollupTags``) holds per UTC hour x tag key x tag value x model
x app the sums of the calls carrying that tag, so tag filters and ``--by tag:KEY`` read a small
table instead of every call's JSON. The upgrade creates it and builds it from ``completions``
(``spendlog.db.rebuild.rebuild_rollups(hourly=False)``, one pass in ``created_at`` order; minutes on
a ledger of millions of calls). Stored tags beyond the limits a call may carry now
(``spendlog.db.tag_limits``: 20 tags, 64-character keys, 256-character values; the capture used
to allow 255/1000) are bounded first, and those calls flagged ``spendlog.truncated``, so that raw
rows and the rollup agree; no other column changes, no row is lost. Hours whose calls were pruned
have no tag rollup (their calls are gone): their spend reads as ``(none)`` in a tag group.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from spendlog.db.types import Money, UTCDateTime

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COUNTS = ("requests", "prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens", "reasoning_tokens")
_MONEY = ("billed_cost_usd", "estimated_cost_usd", "list_cost_usd")
_BATCH = 5_000


def upgrade() -> None:
    op.create_table(
        "rollup_tags",
        sa.Column("bucket", UTCDateTime(), nullable=False),
        sa.Column("tag_key", sa.String(64), nullable=False),
        sa.Column("tag_value", sa.String(256), nullable=False),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("app", sa.String(255), nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in _COUNTS),
        sa.Column("cost_usd", Money(), nullable=False),
        sa.Column("calls_missing_cost", sa.BigInteger(), nullable=False),
        *(sa.Column(name, Money(), nullable=False) for name in _MONEY),
        sa.Column("latency_ms_sum", sa.BigInteger(), nullable=False),
        sa.Column("latency_count", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("bucket", "tag_key", "tag_value", "model", "app", name="pk_rollup_tags"),
    )
    op.create_index("ix_rollup_tags_tag_key_tag_value_bucket", "rollup_tags", ["tag_key", "tag_value", "bucket"])
    conn = op.get_bind()
    _bound_stored_tags(conn)
    from spendlog.db.rebuild import rebuild_rollups

    rebuild_rollups(conn, hourly=False, daily=False)  # the daily tables come with revision 0007


def _bound_stored_tags(conn) -> None:
    """Bound the tags of calls stored before the limits (rare: only oversized tags change)."""
    from spendlog.db.models import Completion
    from spendlog.db.tag_limits import bound_tags, within_limits

    table = Completion.__table__
    query = sa.select(table.c.id, table.c.tags).where(table.c.tags.is_not(None)).order_by(table.c.id)
    fixes = []
    for cid, tags in conn.execute(query, execution_options={"yield_per": _BATCH}):
        if tags and not within_limits(tags, keep_flag=True):
            fixes.append({"b_id": cid, "b_tags": bound_tags(tags, keep_flag=True)})
    update = table.update().where(table.c.id == sa.bindparam("b_id")).values(tags=sa.bindparam("b_tags"))
    for i in range(0, len(fixes), _BATCH):
        conn.execute(update, fixes[i : i + _BATCH])


def downgrade() -> None:
    op.drop_index("ix_rollup_tags_tag_key_tag_value_bucket", table_name="rollup_tags")
    op.drop_table("rollup_tags")
