"""Initial schema: completions and the hourly rollup.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from spendlog.db.types import Money, UTCDateTime

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "completions",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("request_id", sa.String(255), nullable=True),
        sa.Column("endpoint", sa.String(255), nullable=False),
        sa.Column("upstream", sa.String(255), nullable=True),
        sa.Column("requested_model", sa.String(255), nullable=True),
        sa.Column("model", sa.String(255), nullable=True),
        sa.Column("provider", sa.String(255), nullable=True),
        sa.Column("stream", sa.Boolean(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error_type", sa.String(64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=True),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=True),
        sa.Column("total_tokens", sa.BigInteger(), nullable=True),
        sa.Column("cached_tokens", sa.BigInteger(), nullable=True),
        sa.Column("reasoning_tokens", sa.BigInteger(), nullable=True),
        sa.Column("cost_usd", Money(), nullable=True),
        sa.Column("cost_source", sa.String(16), nullable=False),
        sa.Column("finish_reason", sa.String(64), nullable=True),
        sa.Column("latency_ms", sa.Integer(), nullable=True),
        sa.Column("ttft_ms", sa.Integer(), nullable=True),
        sa.Column("app", sa.String(255), nullable=True),
        sa.Column("user", sa.String(255), nullable=True),
        sa.Column("tags", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=True),
        sa.Column("api_key_hint", sa.String(32), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_completions")),
    )
    op.create_index("ix_completions_created_at", "completions", ["created_at"])
    op.create_index("ix_completions_model_created_at", "completions", ["model", "created_at"])
    op.create_index("ix_completions_app_created_at", "completions", ["app", "created_at"])
    op.create_index("ix_completions_user_created_at", "completions", ["user", "created_at"])

    op.create_table(
        "rollup_hourly",
        sa.Column("bucket", UTCDateTime(), nullable=False),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("provider", sa.String(255), nullable=False),
        sa.Column("app", sa.String(255), nullable=False),
        sa.Column("user", sa.String(255), nullable=False),
        sa.Column("api_key_hint", sa.String(32), nullable=False),
        sa.Column("is_error", sa.Boolean(), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False),
        sa.Column("total_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cached_tokens", sa.BigInteger(), nullable=False),
        sa.Column("reasoning_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_usd", Money(), nullable=False),
        sa.Column("calls_missing_cost", sa.BigInteger(), nullable=False),
        sa.Column("latency_ms_sum", sa.BigInteger(), nullable=False),
        sa.Column("latency_count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "bucket", "model", "provider", "app", "user", "api_key_hint", "is_error", name=op.f("pk_rollup_hourly")
        ),
    )


def downgrade() -> None:
    op.drop_table("rollup_hourly")
    op.drop_index("ix_completions_user_created_at", table_name="completions")
    op.drop_index("ix_completions_app_created_at", table_name="completions")
    op.drop_index("ix_completions_model_created_at", table_name="completions")
    op.drop_index("ix_completions_created_at", table_name="completions")
    op.drop_table("completions")
