"""``spendlog db rebuild-rollups``: recompute the derived tables from ``completions``.

``rebuild_rollups`` reads the calls once, in ``created_at`` order, and rebuilds ``rollup_hourly``
(``db.rollups``) and ``rollup_tags`` (``db.tag_rollup``) from them, leaving the hours of pruned calls
(``db.prune``) as they are: their calls are gone, so their rollup is the only record left.
Then it sums the daily tables (``rollup_daily``, ``rollup_tags_daily``, and ``rollup_tag_days``
from the latter: ``db.daily.fill_days``) again from the rebuilt hourly ones. Revision 0004 calls it with ``hourly=False, daily=False`` to build the tag
rollup of an upgraded ledger (the daily tables come with 0007).
"""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.engine import Connection

from .daily import fill_days
from .models import ROLLUP_DIMENSIONS, TAG_DIMENSIONS, Completion, RollupHourly, RollupTags
from .prune import pruned_until
from .rollups import TOKEN_FIELDS, merge_into, rollup_limits, rollup_rows, upsert_rollups
from .tag_rollup import tag_rollup_limits, tag_rollup_rows

__all__ = ["rebuild_rollups"]

_FLUSH_KEYS = 200_000  # pending rollup rows held before they are written


class _Pending:
    def __init__(self, conn: Connection, table, dims, rows_of, limits):
        self.conn, self.table, self.dims, self.rows_of, self.limits = conn, table, dims, rows_of, limits
        self.rows: dict[tuple, list[dict]] = {}  # key -> its rows, each within the limits

    def add(self, part) -> None:
        for row in self.rows_of(part, self.limits):
            merge_into(self.rows.setdefault(tuple(row[d] for d in self.dims), []), row, self.limits)
        if len(self.rows) > _FLUSH_KEYS:
            self.flush()

    def flush(self) -> None:
        upsert_rollups(self.conn, [row for k in sorted(self.rows) for row in self.rows[k]], self.table)
        self.rows.clear()


def rebuild_rollups(conn: Connection, *, chunk_size: int = 50_000, progress=None, hourly: bool = True,
                    tags: bool = True, daily: bool = True) -> int:
    """Recompute ``rollup_hourly`` (``hourly``) and ``rollup_tags`` (``tags``) from ``completions``;
    returns the number of rows read. The hours before the oldest stored call's hour, when rollup rows
    hold them, are those of pruned calls (``db.prune.pruned_until``): they are kept as they are, the
    rest is rebuilt. Then (``daily``) the daily tables of the rebuilt ones are summed again from
    them (``db.daily.fill_days``), pruned hours included."""
    until = pruned_until(conn)
    dialect = conn.dialect.name
    pending = []
    for wanted, model, dims, rows_of, limits in (
        (hourly, RollupHourly, ROLLUP_DIMENSIONS, rollup_rows, rollup_limits(dialect)),
        (tags, RollupTags, TAG_DIMENSIONS, tag_rollup_rows, tag_rollup_limits(dialect)),
    ):
        if wanted:
            table = model.__table__
            conn.execute(delete(table) if until is None else delete(table).where(table.c.bucket >= until))
            pending.append(_Pending(conn, table, dims, rows_of, limits))
    names = ["created_at", "model", "provider", "app", "user", "api_key_hint", "status_code", "error_type",
             *TOKEN_FIELDS, "cost_usd", "cost_source", "list_cost_usd", "latency_ms"]
    if tags:
        names.append("tags")
    cols = [Completion.__table__.c[c] for c in names]
    query = select(*cols).order_by(Completion.created_at)
    if until is not None:  # only pruned hours lie before it, and those rows are kept
        query = query.where(Completion.created_at >= until)
    result = conn.execute(query, execution_options={"yield_per": chunk_size})
    total = 0
    for part in result.mappings().partitions(chunk_size):
        for p in pending:
            p.add(part)
        total += len(part)
        if progress is not None:
            progress(len(part))
    for p in pending:
        p.flush()
        if daily:
            fill_days(conn, p.table, chunk_size=chunk_size)
    return total
