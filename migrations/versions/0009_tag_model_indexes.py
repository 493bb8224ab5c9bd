"""Tag reads with a model or an app filter: two indexes on ``rollup_tags_daily``.

The dashboard's "Spend by tag" and its change tables read ``rollup_tags_daily`` by one tag key
over the range; with a model (or app) filter ``rollup_tag_days`` cannot answer (it has neither),
and the primary key, which starts with the day, made SQLite read every tag row of the range
(10M calls x 3 tags, 30 days: 1.5M rows, 1.1 s per read) to keep the few of that key and model.
``(tag_key, model, bucket)`` and ``(tag_key, app, bucket)`` take it straight to them (0.15 s).
No row changes: the upgrade builds the indexes, the downgrade drops them.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEXES = {
    "ix_rollup_tags_daily_tag_key_model_bucket": ["tag_key", "model", "bucket"],
    "ix_rollup_tags_daily_tag_key_app_bucket": ["tag_key", "app", "bucket"],
}


def upgrade() -> None:
    for name, columns in _INDEXES.items():
        op.create_index(name, "rollup_tags_daily", columns)


def downgrade() -> None:
    for name in _INDEXES:
        op.drop_index(name, table_name="rollup_tags_daily")
