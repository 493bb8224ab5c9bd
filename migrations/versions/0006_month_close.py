"""Month close: when each call reached the ledger, and the closes with their totals (issue 17).

``completions`` gains ``ingested_at``: the instant the writer inserted the row (the database's
clock on PostgreSQL, the writer's on SQLite), so a record for a closed month that arrives after the
close (a spool replayed days later, a late writer) can be told apart. Its id cannot tell it: ids are
UUIDv7 made on the client when the call started, not when the record arrived. Rows already stored
keep ``ingested_at`` NULL: they arrived before this revision, so before every close (closes exist
only from here on), and a NULL row is never late. Nothing is rewritten, so the upgrade is one
``ALTER TABLE ... ADD COLUMN`` at any size and every sum stays as it was.

``month_closes`` is the close history (a close, a reopen: rows are only ever added) and
``month_close_totals`` a close's exact totals per local day x model x provider x app x user x key.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from spendlog.db.types import Money, UTCDateTime

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INTS = ("requests", "prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens", "reasoning_tokens")
_DIMENSIONS = (("model", 255), ("provider", 255), ("app", 255), ("user", 255), ("api_key_hint", 32))


def upgrade() -> None:
    op.add_column("completions", sa.Column("ingested_at", UTCDateTime(), nullable=True))
    op.create_table(
        "month_closes",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("month", sa.String(7), nullable=False),
        sa.Column("action", sa.String(8), nullable=False),
        sa.Column("tz", sa.String(64), nullable=False),
        sa.Column("period_start", UTCDateTime(), nullable=False),
        sa.Column("period_end", UTCDateTime(), nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
        sa.Column("recorded_by", sa.String(255), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("checksum", sa.String(64), nullable=True),
        sa.Column("reopens", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_month_closes"),
    )
    op.create_index("ix_month_closes_month", "month_closes", ["month", "id"])
    op.create_table(
        "month_close_totals",
        sa.Column("close_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        *(sa.Column(name, sa.String(length), nullable=False) for name, length in _DIMENSIONS),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in _INTS),
        sa.Column("cost_usd", Money(), nullable=False),
        sa.Column("calls_missing_cost", sa.BigInteger(), nullable=False),
        sa.Column("billed_cost_usd", Money(), nullable=False),
        sa.Column("estimated_cost_usd", Money(), nullable=False),
        sa.Column("list_cost_usd", Money(), nullable=False),
        sa.ForeignKeyConstraint(["close_id"], ["month_closes.id"], name="fk_month_close_totals_close_id_month_closes"),
        sa.PrimaryKeyConstraint("close_id", "day", *(name for name, _ in _DIMENSIONS), name="pk_month_close_totals"),
    )


def downgrade() -> None:
    op.drop_table("month_close_totals")
    op.drop_index("ix_month_closes_month", table_name="month_closes")
    op.drop_table("month_closes")
    with op.batch_alter_table("completions") as batch:
        batch.drop_column("ingested_at")
