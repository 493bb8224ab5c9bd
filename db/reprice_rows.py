"""One ``reprice`` batch's rows, read and priced as plain tuples (``db.reprice``).

A batch is thousands of rows of a few models, in ``created_at`` order, so the work per row is
kept to what changes per row: the rows are read as the driver returns them (money in stored units:
integer pico-dollars on SQLite, ``Decimal`` on PostgreSQL) and each model's prices are resolved once
and kept while they hold (``PriceBook.steady_picks``: a prices file's entries change at their
``from`` instants), so a row costs a few integer products. The rule is the writer's
(``db.estimate.priced_fields``), and rows whose price depends on the instant in a way only a per-call
price can tell (genai-prices' dated prices) are priced by it, call by call.
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from sqlalchemy import Integer, column

from .estimate import MAX_PRICE_USD, priced_fields
from .models import Completion
from .pricing import counts_priceable
from .types import from_pico, to_pico

__all__ = ["READ", "REF", "BatchPricer", "as_record", "at", "raw_columns", "read_rows", "rowid"]

# what pricing needs, what the tag rollup's keys need (app, tags), then the price columns as they are
READ = ("id", "created_at", "model", "provider", "upstream", "prompt_tokens", "completion_tokens", "cached_tokens",
        "reasoning_tokens", "app", "tags", "cost_usd", "cost_source", "price_source", "list_cost_usd")
ID, AT, MODEL, PROVIDER, UPSTREAM, PROMPT, COMPLETION, CACHED, REASONING, APP, TAGS = range(11)
PRICES = slice(11, 15)  # cost_usd, cost_source, price_source, list_cost_usd
REF = 15  # after READ: how the batch finds the row again (SQLite: its rowid, one seek; PostgreSQL: its id)
_MONEY = (11, 14)
_UTC = timezone.utc
_MAX_PICO = to_pico(MAX_PRICE_USD)
MISSING = (None, "missing", None, None)
PER_CALL = ()  # an id whose price only a per-call price can tell


def rowid():
    """SQLite's rowid of ``completions``, as a column of the table (so that joins on it are seen as joins)."""
    return column("rowid", Integer, _selectable=Completion.__table__)


def raw_columns(dialect: str) -> list:
    """The columns ``READ``, then the row's ``REF``; read with the driver's own cursor (``reprice``),
    so that no per-row type processing runs (``read_rows`` converts what needs it)."""
    table = Completion.__table__
    return [*(table.c[name] for name in READ), rowid() if dialect == "sqlite" else table.c.id]


def read_rows(dialect: str, raw: list) -> list:
    """The batch's rows (the driver's tuples) in ``READ`` order, then ``REF``; money in
    stored units (pico-dollar ints on SQLite, Decimal on PostgreSQL). ``created_at`` is an aware
    UTC datetime on PostgreSQL and the stored text on SQLite, where most rows never need it parsed
    (``at`` parses it)."""
    if dialect == "sqlite":
        return raw
    rows = []
    for row in raw:
        r = list(row)
        when = r[AT]
        r[AT] = when.replace(tzinfo=_UTC) if when.tzinfo is None else when.astimezone(_UTC)
        for i in _MONEY:
            if r[i] is not None:
                r[i] = Decimal(r[i])
        rows.append(r)
    return rows


def at(row) -> datetime:
    """The row's ``created_at`` as an aware UTC datetime (SQLite's stored text parsed)."""
    when = row[AT]
    return datetime.fromisoformat(when).replace(tzinfo=_UTC) if type(when) is str else when


def as_record(row: list, units_to_usd, tags_from_db) -> dict:
    """A row as the dict ``db.tag_rollup`` and ``priced_fields`` read (money as USD ``Decimal``,
    ``tags`` as the column type reads it)."""
    record = dict(zip(READ, row))  # REF left out
    record["created_at"] = at(row)
    for name in ("cost_usd", "list_cost_usd"):
        if record[name] is not None:
            record[name] = units_to_usd(record[name])
    if tags_from_db is not None:
        record["tags"] = tags_from_db(record["tags"])
    return record


class BatchPricer:
    """The new ``(cost_usd, cost_source, price_source, list_cost_usd)`` of rows read by ``read_rows``,
    money in the same stored units, by the writer's rule for a call without an upstream cost."""

    def __init__(self, book, dialect: str):
        self.book = book
        self.sqlite = dialect == "sqlite"
        self._steady: dict[tuple, tuple] = {}  # (model, provider, upstream) -> steady_picks(...)

    def to_usd(self, units) -> Decimal:
        """Stored units as USD."""
        return from_pico(units) if self.sqlite else Decimal(units)

    def _units(self, pico: int):
        return pico if self.sqlite else from_pico(pico)

    def price_all(self, rows: list) -> list[tuple]:
        """The new price columns of each row, in order (one loop: this is the per-row hot path)."""
        steady, book, units, per_call = self._steady, self.book, self._units, self._per_call
        out = []
        append = out.append
        for row in rows:
            key = (row[MODEL], row[PROVIDER], row[UPSTREAM])
            held = steady.get(key)
            if held is PER_CALL:
                append(per_call(row))
                continue
            if held is not None and (held[2] is not None or held[3] is not None):  # bounded in time
                when = at(row)
                if (held[2] is not None and when < held[2]) or (held[3] is not None and when >= held[3]):
                    held = None
            if held is None:
                held = steady[key] = book.steady_picks(*key, at(row))
                if held is None:  # this id's price depends on the instant: priced call by call
                    steady[key] = PER_CALL
                    append(per_call(row))
                    continue
            estimate = held[0]
            if estimate is None:
                append(MISSING)
                continue
            prompt, completion = row[PROMPT] or 0, row[COMPLETION] or 0
            cached, reasoning = row[CACHED] or 0, row[REASONING] or 0
            if not counts_priceable(prompt, completion, cached, reasoning, 0):
                append(MISSING)
                continue
            cost = estimate[0].pico(prompt, cached, 0, completion, reasoning)
            if abs(cost) > _MAX_PICO:
                append(MISSING)
                continue
            listed = held[1]
            if listed is None:
                list_cost = None
            elif listed[1] == estimate[1]:
                list_cost = cost
            else:
                list_cost = listed[0].pico(prompt, cached, 0, completion, reasoning)
                list_cost = None if abs(list_cost) > _MAX_PICO else list_cost
            append((units(cost), "estimated", estimate[1], None if list_cost is None else units(list_cost)))
        return out

    def _per_call(self, row: list) -> tuple:
        fields = priced_fields(self.book, {**dict(zip(READ, row)), "created_at": at(row)}, billed=False)
        if fields is None:
            return MISSING
        cost, listed = fields["cost_usd"], fields["list_cost_usd"]
        if self.sqlite:
            cost, listed = to_pico(cost), None if listed is None else to_pico(listed)
        return cost, fields["cost_source"], fields["price_source"], listed
