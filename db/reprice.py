"""Re-pricing stored calls: ``reprice`` re-estimates ``estimated`` and ``missing`` rows.

After a genai-prices upgrade or a new prices file, the calls spendlog priced (or could not) are
priced again by the same rule as the writer (``db.estimate.priced_fields``; ``db.reprice_rows``
applies it a batch at a time, each model's prices resolved once while they hold): an estimate at
each call's ``created_at``, its list price, and what priced it; a call nothing prices becomes (or
stays) ``missing`` with cost NULL. ``upstream`` rows are never read for writing, so their values and sums
stay byte-identical.

It runs in batches of ``batch_size`` rows in ``(created_at, id)`` order, one transaction each, up
to the last matching row when it starts (calls written later are priced by their writer): the
changed rows' new prices are staged in a temporary table, the rollup is corrected by the
difference of their sums (one INSERT ... SELECT ... ON CONFLICT in the database, exact in its own
units) and the rows are updated from the stage (one UPDATE ... FROM), in the same transaction, so
rollups always equal the rows. Safe while
apps write: writers only insert new rows and add to the rollup, which commutes with the
corrections; on PostgreSQL the batch's rows are locked (``FOR UPDATE``) so two re-pricings never
count one change twice, and on SQLite each batch takes the writers' ``flock`` (``write_lock_path``)
so neither side starves on the busy timeout.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Column, Integer, MetaData, String, Table, case, func, literal_column, or_, select, type_coerce, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine

from .buckets import raw_bucket
from .engine import file_lock, lock_timeout, write_lock_path
from .models import PRICE_MEASURES, ROLLUP_DIMENSIONS, ROLLUP_MEASURES, Completion, RollupDaily, RollupHourly
from .reprice_rows import ID, PRICES, REF, TAGS, BatchPricer, at, as_record, raw_columns, read_rows, rowid
from .rollups import is_error_clause
from .tag_rollup import correct_tag_rollups
from .types import Money, UTCDateTime

__all__ = ["RepriceResult", "reprice", "reprice_where", "count_repriceable"]

REPRICED = ("estimated", "missing")
_PRICE_COLUMNS = ("cost_usd", "cost_source", "price_source", "list_cost_usd")
# Rows per batch (one transaction, holding the writers' lock about two seconds): few enough to hold in
# memory, many enough that each batch rewrites the pages of the cost index once for many rows
# (docs/benchmarks.md: 5,000 a batch cost a third more CPU at a million rows).
BATCH_SIZE = 100_000
BATCH_CACHE_KIB = 128 * 1024
_DELTA = ("cost_usd", "calls_missing_cost", *PRICE_MEASURES)
# The batch's new prices, staged in a temporary table (one per connection): the rollup correction and
# the update are then two set statements in the database, not a Python loop over rows. A staged row
# names its call by ``reprice_rows.REF``: on SQLite its rowid (one seek of the table), else its id.
def _stage_table(ref: Column) -> Table:
    return Table("reprice_stage", MetaData(), ref, Column("cost_usd", Money()), Column("cost_source", String(16)),
                 Column("price_source", String(255)), Column("list_cost_usd", Money()), prefixes=["TEMPORARY"])


_STAGES = {"sqlite": _stage_table(Column("ref", Integer, primary_key=True)),
           "postgresql": _stage_table(Column("ref", String(36), primary_key=True))}


def _staged_call(dialect: str):
    """The join of a staged row to its call. On SQLite the staged side is wrapped (``+ 0``) so
    that it cannot be looked up by index: the planner then walks the few staged rows and seeks each
    call by rowid, instead of scanning every call for each batch (it has no statistics for the
    temporary table)."""
    ref = _STAGES[dialect].c.ref
    if dialect == "sqlite":
        return rowid() == ref + 0
    return Completion.__table__.c.id == ref


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


def _stage(conn: Connection) -> Table:
    """The batch's temporary table, made once per connection and emptied after each batch."""
    stage = _STAGES[conn.dialect.name]
    stage.create(conn, checkfirst=True)
    return stage


def _hour(dialect: str):
    """A call's UTC hour exactly as ``rollup_hourly.bucket`` stores it (SQLite: the naive text)."""
    if dialect == "sqlite":
        created = Completion.created_at
        return type_coerce(func.substr(created, 1, 13).op("||")(literal_column("':00:00.000000'")), UTCDateTime())
    return raw_bucket(dialect, 60)


def _day_of(dialect: str, hour):
    """The UTC day (its midnight, as ``rollup_daily.bucket`` stores it) of a stored rollup hour."""
    if dialect == "sqlite":  # the naive text 'YYYY-MM-DD HH:00:00.000000'
        return type_coerce(func.substr(hour, 1, 10).op("||")(literal_column("' 00:00:00.000000'")), UTCDateTime())
    day = literal_column(str(24 * 3600))
    return type_coerce(func.to_timestamp(func.floor(func.extract("epoch", hour) / day) * day), UTCDateTime())


# The batch's rollup corrections per hour and key, computed once (the join of the staged rows to their
# calls) and added to rollup_hourly as they are and to rollup_daily summed per day.
_DELTAS = Table("reprice_delta", MetaData(),
                *(Column(c.name, c.type) for c in RollupHourly.__table__.c if c.name in (*ROLLUP_DIMENSIONS, *_DELTA)),
                prefixes=["TEMPORARY"])


def _correct_rollup(conn: Connection) -> None:
    """Add to ``rollup_hourly`` and ``rollup_daily`` what the staged prices change, per key: the new
    sums minus the old ones of the cost measures and of ``calls_missing_cost``, read before the rows
    are updated. A delta goes to the first bucket of its hour (day), which always holds the key (its
    calls were counted there or in a continuation bucket of the same hour or day; readers sum the
    buckets). Exact: integer pico-dollars on SQLite, NUMERIC on PostgreSQL."""
    dialect = conn.dialect.name
    c, n = Completion, _STAGES[dialect].c
    zero = literal_column("0")

    def money(column):
        return func.coalesce(column, zero)

    def split(cost, source, estimated: bool):
        return case((source == "estimated", cost if estimated else zero), else_=zero if estimated else cost)

    def change(new, old):
        return func.sum(new) - func.sum(old)

    deltas = {
        "cost_usd": change(money(n.cost_usd), money(c.cost_usd)),
        "calls_missing_cost": change(case((n.cost_usd.is_(None), 1), else_=0), case((c.cost_usd.is_(None), 1), else_=0)),
        "billed_cost_usd": change(split(money(n.cost_usd), n.cost_source, False),
                                  split(money(c.cost_usd), c.cost_source, False)),
        "estimated_cost_usd": change(split(money(n.cost_usd), n.cost_source, True),
                                     split(money(c.cost_usd), c.cost_source, True)),
        "list_cost_usd": change(money(n.list_cost_usd), money(c.list_cost_usd)),
    }
    keys = [_hour(dialect), *(func.coalesce(getattr(c, d), "") for d in ROLLUP_DIMENSIONS[1:-1]),
            case((is_error_clause(), True), else_=False)]
    _DELTAS.create(conn, checkfirst=True)
    conn.execute(_DELTAS.insert().from_select(
        [*ROLLUP_DIMENSIONS, *_DELTA],
        select(*keys, *(deltas[m] for m in _DELTA)).select_from(Completion.__table__, _STAGES[dialect])
        .where(_staged_call(dialect)).group_by(*keys)))
    d = _DELTAS.c
    by_day = [_day_of(dialect, d.bucket), *(d[k] for k in ROLLUP_DIMENSIONS[1:])]
    for table, query in (
        (RollupHourly.__table__, select(*(d[k] for k in ROLLUP_DIMENSIONS),
                                        *(d[m] if m in _DELTA else zero for m in ROLLUP_MEASURES))),
        (RollupDaily.__table__, select(*by_day, *(func.sum(d[m]) if m in _DELTA else zero for m in ROLLUP_MEASURES))
         .group_by(*by_day)),
    ):
        # WHERE true: SQLite's upsert-from-select needs a WHERE to tell ON CONFLICT from a join
        stmt = (sqlite_insert if dialect == "sqlite" else pg_insert)(table).from_select(
            [*ROLLUP_DIMENSIONS, *ROLLUP_MEASURES], query.where(literal_column("1") == 1))
        stmt = stmt.on_conflict_do_update(index_elements=list(ROLLUP_DIMENSIONS),
                                          set_={m: table.c[m] + stmt.excluded[m] for m in _DELTA})
        conn.execute(stmt)
    conn.execute(_DELTAS.delete())


def _apply(conn: Connection, staged: list[tuple]) -> None:
    """Stage the changed rows' new prices (money in stored units, as ``reprice_rows`` reads it),
    correct the rollup by their difference, then update the rows from the stage (one statement)."""
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    stage = _stage(conn)
    conn.exec_driver_sql(f"INSERT INTO reprice_stage (ref, cost_usd, cost_source, price_source, list_cost_usd) "
                         f"VALUES ({', '.join([mark] * 5)})", staged)
    _correct_rollup(conn)
    conn.execute(update(Completion.__table__).where(_staged_call(conn.dialect.name))
                 .values({c: stage.c[c] for c in _PRICE_COLUMNS}))
    conn.execute(stage.delete())


@contextmanager
def _page_cache(conn: Connection):
    """On SQLite, a batch's page cache big enough for the pages it rewrites (the rows and the
    request log's cost index: rewritten once per batch instead of read back from the OS), put back
    as it was after the batch."""
    if conn.dialect.name != "sqlite":
        yield
        return
    was = conn.exec_driver_sql("PRAGMA cache_size").scalar()
    conn.exec_driver_sql(f"PRAGMA cache_size = {-BATCH_CACHE_KIB}")
    try:
        yield
    finally:
        conn.exec_driver_sql(f"PRAGMA cache_size = {int(was)}")


def reprice(engine: Engine, book, *, start: datetime | None = None, end: datetime | None = None,
            models: Sequence[str] = (), dry_run: bool = False, batch_size: int = BATCH_SIZE,
            progress: Callable[[int], None] | None = None) -> RepriceResult:
    """Re-price the ``estimated`` and ``missing`` rows in ``[start, end)`` (of ``models``, if given)
    with ``book`` (a ``PriceBook``). ``dry_run``: compute and report, change nothing.
    ``progress(n)`` is called after each batch with the rows it looked at."""
    table = Completion.__table__
    dialect = engine.dialect.name
    cols = raw_columns(dialect)
    where = reprice_where(start, end, models)
    lock = write_lock_path(engine.url)
    pricer = BatchPricer(book, dialect)
    tags_from_db = table.c.tags.type.dialect_impl(engine.dialect).result_processor(engine.dialect, None)
    seen = changed = 0
    old_total = new_total = 0  # in stored units (pico-dollar ints on SQLite, Decimal on PostgreSQL)
    after: tuple | None = None
    with engine.connect() as conn:  # the last row at the start: rows written later are the writer's to price
        last = conn.execute(select(table.c.created_at, table.c.id).where(*where)
                            .order_by(table.c.created_at.desc(), table.c.id.desc()).limit(1)).first()
    if last is None:
        return RepriceResult(0, 0, Decimal(0), Decimal(0))
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
        with (file_lock(None if dry_run else lock, optional=True, timeout=lock_timeout()), engine.begin() as conn,
              _page_cache(conn)):
            result = conn.execute(query)
            # the driver's own tuples: no Row per call (a fifth of the time at a million rows)
            rows = read_rows(dialect, result.cursor.fetchall())
            result.close()
            if not rows:
                break
            staged, tagged_old, tagged_new = [], [], []
            for row, values in zip(rows, pricer.price_all(rows)):
                old = tuple(row[PRICES])
                if old[0] is not None:
                    old_total += old[0]
                if values[0] is not None:
                    new_total += values[0]
                if values != old:
                    staged.append((row[REF], *values))
                    if row[TAGS]:
                        tagged_old.append(as_record(row, pricer.to_usd, tags_from_db))
                        tagged_new.append(as_record((*row[:PRICES.start], *values), pricer.to_usd, tags_from_db))
            if staged and not dry_run:
                _apply(conn, staged)
                if tagged_old:  # the tag rollup's keys live in JSON: corrected from the rows themselves
                    correct_tag_rollups(conn, tagged_old, tagged_new)
        seen += len(rows)
        changed += len(staged)
        after = (at(rows[-1]), rows[-1][ID])
        if progress is not None:
            progress(len(rows))
        if len(rows) < batch_size:
            break
    return RepriceResult(seen, changed, pricer.to_usd(old_total), pricer.to_usd(new_total))
