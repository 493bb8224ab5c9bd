"""Re-pricing stored calls: ``reprice`` re-estimates ``estimated`` and ``missing`` rows.

After a genai-prices upgrade or a new prices file, the calls spendlog priced (or could not) are
priced again by the same rule as the writer (``db.estimate.priced_fields``): an estimate at each
call's ``created_at``, its list price, and what priced it; a call nothing prices becomes (or stays)
``missing`` with cost NULL. ``upstream`` rows are never read for writing, so their values and sums
stay byte-identical.

It runs in batches of ``batch_size`` rows in ``(created_at, id)`` order, one transaction each, up
to the last matching row when it starts (calls written later are priced by their writer): the
changed rows' new prices are staged in a temporary table, the rollup is corrected by the
difference of their sums (one INSERT ... SELECT ... ON CONFLICT in the database, exact in its own
units) and the rows are updated, in the same transaction, so rollups always equal the rows. Safe while
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

from datetime import timezone

from sqlalchemy import BigInteger, Column, MetaData, String, Table, case, func, literal_column, or_, select, type_coerce
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine

from .buckets import raw_bucket
from .engine import file_lock, lock_timeout, write_lock_path
from .estimate import priced_fields
from .models import PRICE_MEASURES, ROLLUP_DIMENSIONS, ROLLUP_MEASURES, Completion, RollupDaily, RollupHourly
from .rollups import is_error_clause
from .tag_rollup import correct_tag_rollups
from .types import Money, UTCDateTime, from_pico

__all__ = ["RepriceResult", "reprice", "reprice_where", "count_repriceable"]

REPRICED = ("estimated", "missing")
_PRICE_COLUMNS = ("cost_usd", "cost_source", "price_source", "list_cost_usd")
# what pricing needs, what the tag rollup's keys need (app, tags), then the price columns as they are
_READ = ("id", "created_at", "model", "provider", "upstream", "prompt_tokens", "completion_tokens", "cached_tokens",
         "reasoning_tokens", "app", "tags", *_PRICE_COLUMNS)
_DELTA = ("cost_usd", "calls_missing_cost", *PRICE_MEASURES)
_UTC = timezone.utc
# The batch's new prices, staged in a temporary table (one per connection): the rollup correction and
# the update are then two set statements in the database, not a Python loop over rows.
_STAGE = Table("reprice_stage", MetaData(), Column("id", String(36), primary_key=True), Column("cost_usd", Money()),
               Column("cost_source", String(16)), Column("price_source", String(255)),
               Column("list_cost_usd", Money()), prefixes=["TEMPORARY"])


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


def _raw_columns(dialect: str) -> list:
    """The columns ``_READ`` as the driver returns them: no per-row type processing (a third of the
    time at a million rows); ``_rows`` converts the two that need it."""
    table = Completion.__table__
    money = BigInteger() if dialect == "sqlite" else table.c.cost_usd.type
    out = []
    for name in _READ:
        column = table.c[name]
        if name == "created_at":
            column = type_coerce(column, String() if dialect == "sqlite" else column.type.impl)
        elif name in ("cost_usd", "list_cost_usd"):
            column = type_coerce(column, money if dialect == "sqlite" else column.type.impl)
        out.append(column)
    return out


def _rows(dialect: str, result) -> list[dict]:
    sqlite = dialect == "sqlite"
    rows = []
    for row in result:
        r = dict(zip(_READ, row))
        at = r["created_at"]
        r["created_at"] = (datetime.fromisoformat(at).replace(tzinfo=_UTC) if sqlite or at.tzinfo is None
                           else at.astimezone(_UTC))
        for name in ("cost_usd", "list_cost_usd"):
            value = r[name]
            if value is not None:
                r[name] = from_pico(value) if sqlite else Decimal(value)
        rows.append(r)
    return rows


def _stage(conn: Connection) -> None:
    """The batch's temporary table, made once per connection and emptied after each batch."""
    _STAGE.create(conn, checkfirst=True)


def _hour(dialect: str):
    """A call's UTC hour exactly as ``rollup_hourly.bucket`` stores it (SQLite: the naive text)."""
    if dialect == "sqlite":
        created = Completion.created_at
        return type_coerce(func.substr(created, 1, 13).op("||")(literal_column("':00:00.000000'")), UTCDateTime())
    return raw_bucket(dialect, 60)


def _day(dialect: str):
    """A call's UTC day exactly as ``rollup_daily.bucket`` stores it (its midnight)."""
    if dialect == "sqlite":
        created = Completion.created_at
        return type_coerce(func.substr(created, 1, 10).op("||")(literal_column("' 00:00:00.000000'")), UTCDateTime())
    return raw_bucket(dialect, 24 * 60)


def _correct_rollup(conn: Connection) -> None:
    """Add to ``rollup_hourly`` and ``rollup_daily`` what the staged prices change, per key: the new
    sums minus the old ones of the cost measures and of ``calls_missing_cost``, read before the rows
    are updated. A delta goes to the first bucket of its hour (day), which always holds the key (its
    calls were counted there or in a continuation bucket of the same hour or day; readers sum the
    buckets). Exact: integer pico-dollars on SQLite, NUMERIC on PostgreSQL."""
    dialect = conn.dialect.name
    _correct(conn, RollupHourly.__table__, _hour(dialect))
    _correct(conn, RollupDaily.__table__, _day(dialect))


def _correct(conn: Connection, table, bucket) -> None:
    """``_correct_rollup`` for one rollup ``table`` whose calls' bucket is the SQL ``bucket``."""
    dialect = conn.dialect.name
    c, n = Completion, _STAGE.c
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
    keys = [bucket, *(func.coalesce(getattr(c, d), "") for d in ROLLUP_DIMENSIONS[1:-1]),
            case((is_error_clause(), True), else_=False)]
    measures = [deltas[m] if m in deltas else zero for m in ROLLUP_MEASURES]
    # An implicit join, so that the SELECT has a WHERE (SQLite's upsert-from-select needs one). On
    # SQLite the staged id is wrapped (|| '') so that it cannot be looked up by index: the planner
    # then walks the few staged rows and finds each call by its primary key, instead of scanning every
    # call for each batch (it has no statistics for the temporary table).
    staged_id = n.id.concat("") if dialect == "sqlite" else n.id
    query = (select(*keys, *measures).select_from(Completion.__table__, _STAGE).where(c.id == staged_id)
             .group_by(*keys))
    stmt = (sqlite_insert if dialect == "sqlite" else pg_insert)(table).from_select(
        [*ROLLUP_DIMENSIONS, *ROLLUP_MEASURES], query)
    stmt = stmt.on_conflict_do_update(index_elements=list(ROLLUP_DIMENSIONS),
                                      set_={m: table.c[m] + stmt.excluded[m] for m in _DELTA})
    conn.execute(stmt)


def _apply(conn: Connection, staged: list[tuple]) -> None:
    """Stage the changed rows' new prices, correct the rollup by their difference, then update the
    rows (one executemany by primary key through the driver; money bound as ``Money`` stores it)."""
    dialect = conn.dialect
    to_db = Money().process_bind_param
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    _stage(conn)
    rows = [(i, None if c is None else to_db(c, dialect), s, p, None if lc is None else to_db(lc, dialect))
            for i, c, s, p, lc in staged]
    conn.exec_driver_sql(f"INSERT INTO reprice_stage (id, cost_usd, cost_source, price_source, list_cost_usd) "
                         f"VALUES ({', '.join([mark] * 5)})", rows)
    _correct_rollup(conn)
    conn.exec_driver_sql(f"UPDATE completions SET cost_usd = {mark}, cost_source = {mark}, price_source = {mark}, "
                         f"list_cost_usd = {mark} WHERE id = {mark}", [(*values, i) for i, *values in rows])
    conn.execute(_STAGE.delete())


def reprice(engine: Engine, book, *, start: datetime | None = None, end: datetime | None = None,
            models: Sequence[str] = (), dry_run: bool = False, batch_size: int = 5000,
            progress: Callable[[int], None] | None = None) -> RepriceResult:
    """Re-price the ``estimated`` and ``missing`` rows in ``[start, end)`` (of ``models``, if given)
    with ``book`` (a ``PriceBook``). ``dry_run``: compute and report, change nothing.
    ``progress(n)`` is called after each batch with the rows it looked at."""
    table = Completion.__table__
    dialect = engine.dialect.name
    cols = _raw_columns(dialect)
    where = reprice_where(start, end, models)
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
            rows = _rows(dialect, conn.execute(query).all())
            if not rows:
                break
            staged, tagged_old, tagged_new = [], [], []
            for row in rows:
                values = _new_values(book, row)
                if row["cost_usd"] is not None:
                    old_total += row["cost_usd"]
                if values["cost_usd"] is not None:
                    new_total += values["cost_usd"]
                if any(row[c] != values[c] for c in _PRICE_COLUMNS):
                    staged.append((row["id"], values["cost_usd"], values["cost_source"], values["price_source"],
                                   values["list_cost_usd"]))
                    if row["tags"]:
                        tagged_old.append(row)
                        tagged_new.append({**row, **values})
            if staged and not dry_run:
                _apply(conn, staged)
                if tagged_old:  # the tag rollup's keys live in JSON: corrected from the rows themselves
                    correct_tag_rollups(conn, tagged_old, tagged_new)
        seen += len(rows)
        changed += len(staged)
        after = (rows[-1]["created_at"], rows[-1]["id"])
        if progress is not None:
            progress(len(rows))
        if len(rows) < batch_size:
            break
    return RepriceResult(seen, changed, old_total, new_total)
