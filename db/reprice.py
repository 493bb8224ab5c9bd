"""Re-pricing stored calls: ``reprice`` re-estimates ``estimated`` and ``missing`` rows.

After a genai-prices upgrade or a new prices file, the calls spendlog priced (or could not) are
priced again by the same rule as the writer (``db.estimate.priced_fields``): an estimate at each
call's ``created_at``, its list price, and what priced it; a call nothing prices becomes (or stays)
``missing`` with cost NULL. ``upstream`` rows are never read for writing, so their values and sums
stay byte-identical.

It runs in batches of ``batch_size`` rows in ``(created_at, id)`` order, one transaction each, up
to the last matching row when it starts (calls written later are priced by their writer): the
changed rows are updated and the rollup is corrected by the difference of their sums
(``db.store.rollup_delta``) in the same transaction, so rollups always equal the rows. Safe while
apps write: writers only insert new rows and add to the rollup, which commutes with the
corrections; on PostgreSQL the batch's rows are locked (``FOR UPDATE``) so two re-pricings never
count one change twice, and on SQLite each batch takes the writers' ``flock`` (``write_lock_path``)
so neither side starves on the busy timeout.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, or_, select
from sqlalchemy.engine import Engine

from .engine import file_lock, lock_timeout, write_lock_path
from .estimate import priced_fields
from .models import Completion
from .store import add_to_rollups, rollup_delta
from .tag_rollup import add_to_tag_rollups, tag_rollup_delta
from .types import Money

__all__ = ["RepriceResult", "reprice", "reprice_where", "count_repriceable"]

REPRICED = ("estimated", "missing")
_PRICE_COLUMNS = ("cost_usd", "cost_source", "price_source", "list_cost_usd")
_READ = ("id", "created_at", "model", "provider", "upstream", "app", "user", "api_key_hint", "status_code",
         "error_type", "prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens", "reasoning_tokens",
         "latency_ms", "tags", *_PRICE_COLUMNS)


@dataclass(frozen=True)
class RepriceResult:
    """``rows``: the estimated and missing rows looked at; ``changed``: those whose price changed;
    ``old_total`` / ``new_total``: the cost of the rows looked at before and after (USD)."""

    rows: int
    changed: int
    old_total: Decimal
    new_total: Decimal


def reprice_where(start: datetime | None = None, end: datetime | None = None, models: Sequence[str] = ()) -> list:
    """The conditions for the rows ``reprice`` looks at (``end`` exclusive; ``models`` exact ids)."""
    table = Completion.__table__
    where = [table.c.cost_source.in_(REPRICED)]
    if start is not None:
        where.append(table.c.created_at >= start)
    if end is not None:
        where.append(table.c.created_at < end)
    if models:
        where.append(table.c.model.in_(list(models)))
    return where


def count_repriceable(engine: Engine, **criteria) -> int:
    """How many rows ``reprice`` with the same criteria would look at (for a progress bar)."""
    with engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(Completion.__table__).where(*reprice_where(**criteria)))


def _new_values(book, row: dict) -> dict:
    fields = priced_fields(book, row, billed=False)
    if fields is None:
        return {"cost_usd": None, "cost_source": "missing", "price_source": None, "list_cost_usd": None}
    return fields


def _update(conn, params: list[tuple]) -> None:
    """``UPDATE completions`` of the price columns, one executemany through the driver: at a million
    rows SQLAlchemy's per-row parameter processing would be most of the run. Money is bound as the
    ``Money`` type stores it (integer pico-dollars on SQLite, NUMERIC elsewhere)."""
    dialect = conn.dialect
    to_db = Money().process_bind_param

    def money(value):
        return to_db(value, dialect)

    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    sql = (f"UPDATE completions SET cost_usd = {mark}, cost_source = {mark}, price_source = {mark}, "
           f"list_cost_usd = {mark} WHERE id = {mark}")
    rows = [(None if c is None else money(c), s, p, None if lc is None else money(lc), i) for c, s, p, lc, i in params]
    conn.exec_driver_sql(sql, rows)


def reprice(engine: Engine, book, *, start: datetime | None = None, end: datetime | None = None,
            models: Sequence[str] = (), dry_run: bool = False, batch_size: int = 5000,
            progress: Callable[[int], None] | None = None) -> RepriceResult:
    """Re-price the ``estimated`` and ``missing`` rows in ``[start, end)`` (of ``models``, if given)
    with ``book`` (a ``PriceBook``). ``dry_run``: compute and report, change nothing.
    ``progress(n)`` is called after each batch with the rows it looked at."""
    table = Completion.__table__
    cols = [table.c[c] for c in _READ]
    where = reprice_where(start, end, models)
    dialect = engine.dialect.name
    lock = write_lock_path(engine.url)
    seen = changed = 0
    old_total = new_total = Decimal(0)
    after: tuple | None = None
    with engine.connect() as conn:  # the last row at the start: rows written later are the writer's to price
        last = conn.execute(select(table.c.created_at, table.c.id).where(*where)
                            .order_by(table.c.created_at.desc(), table.c.id.desc()).limit(1)).first()
    if last is None:
        return RepriceResult(0, 0, old_total, new_total)
    # keyset bounds spelled so that SQLite ranges over ix_completions_created_at (a row-value
    # comparison would scan the table for every batch)
    where += [table.c.created_at <= last[0], or_(table.c.created_at < last[0], table.c.id <= last[1])]
    while True:
        query = select(*cols).where(*where)
        if after is not None:
            query = query.where(table.c.created_at >= after[0],
                                or_(table.c.created_at > after[0], table.c.id > after[1]))
        query = query.order_by(table.c.created_at, table.c.id).limit(batch_size)
        if dialect == "postgresql" and not dry_run:
            query = query.with_for_update()
        with file_lock(None if dry_run else lock, optional=True, timeout=lock_timeout()), engine.begin() as conn:
            rows = [dict(r) for r in conn.execute(query).mappings()]
            if not rows:
                break
            old, new, params = [], [], []
            for row in rows:
                values = _new_values(book, row)
                if row["cost_usd"] is not None:
                    old_total += row["cost_usd"]
                if values["cost_usd"] is not None:
                    new_total += values["cost_usd"]
                if any(row[c] != values[c] for c in _PRICE_COLUMNS):
                    old.append(row)
                    new.append({**row, **values})
                    params.append((values["cost_usd"], values["cost_source"], values["price_source"],
                                   values["list_cost_usd"], row["id"]))
            if params and not dry_run:
                _update(conn, params)
                add_to_rollups(conn, rollup_delta(old, new))
                add_to_tag_rollups(conn, tag_rollup_delta(old, new))
        seen += len(rows)
        changed += len(params)
        after = (rows[-1]["created_at"], rows[-1]["id"])
        if progress is not None:
            progress(len(rows))
        if len(rows) < batch_size:
            break
    return RepriceResult(seen, changed, old_total, new_total)
