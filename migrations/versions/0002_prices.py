"""Prices: what priced each call, and the rollup split into billed / estimated / list cost.

``completions`` gains ``price_source`` (what priced the figures spendlog computed) and
``list_cost_usd`` (the public list price, the same exact type as ``cost_usd``). ``rollup_hourly``
gains ``billed_cost_usd``, ``estimated_cost_usd`` and ``list_cost_usd``. A 0001 ledger has no
estimates (it never made any) and no list prices, so every existing rollup row's cost is billed:
``billed_cost_usd = cost_usd`` (the same stored value, so sums stay exact), estimated and list 0;
unpriced calls keep being counted by ``calls_missing_cost``. Existing calls are not priced here
(``spendlog reprice`` does that, in batches, while apps write).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from spendlog.db.types import Money

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ROLLUP_MONEY = ("billed_cost_usd", "estimated_cost_usd", "list_cost_usd")


def upgrade() -> None:
    op.add_column("completions", sa.Column("price_source", sa.String(255), nullable=True))
    op.add_column("completions", sa.Column("list_cost_usd", Money(), nullable=True))
    for name in _ROLLUP_MONEY:
        # NOT NULL needs a default for the rows already there (SQLite: integer pico-dollars; 0 either way)
        op.add_column("rollup_hourly", sa.Column(name, Money(), nullable=False, server_default=sa.text("0")))
    op.execute("UPDATE rollup_hourly SET billed_cost_usd = cost_usd")


def downgrade() -> None:
    with op.batch_alter_table("rollup_hourly") as batch:
        for name in reversed(_ROLLUP_MONEY):
            batch.drop_column(name)
    with op.batch_alter_table("completions") as batch:
        batch.drop_column("list_cost_usd")
        batch.drop_column("price_source")
