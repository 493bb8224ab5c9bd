"""Request log indexes: the ranked orders and the request-id lookup walk an index.

The dashboard's request log sorts a range's calls by cost, tokens or latency (biggest first by
default) and looks a call up by its request id. Without an index on the ranked column the
database sorts every call of the range for one page (6-7 s at 10M calls); without one on
``request_id`` a request-id search reads every call with ``LIKE`` (11 s). This revision adds
``ix_completions_cost_usd``, ``ix_completions_total_tokens``, ``ix_completions_latency_ms`` and
``ix_completions_request_id``. On PostgreSQL the ranked ones are ``DESC NULLS LAST``, the order
the request log asks for (``ORDER BY cost_usd DESC NULLS LAST LIMIT n`` then walks the index);
SQLite sorts NULL lowest, so a plain index read backwards gives that order there. No row changes.
Creating them on a big ledger takes minutes (about one per minute per 10M calls here).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RANKED = ("cost_usd", "total_tokens", "latency_ms")


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for name in RANKED:
        column = sa.text(f"{name} DESC NULLS LAST") if postgres else name
        op.create_index(f"ix_completions_{name}", "completions", [column])
    op.create_index("ix_completions_request_id", "completions", ["request_id"])


def downgrade() -> None:
    op.drop_index("ix_completions_request_id", table_name="completions")
    for name in reversed(RANKED):
        op.drop_index(f"ix_completions_{name}", table_name="completions")
