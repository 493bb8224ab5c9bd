"""Column types that behave the same on SQLite and PostgreSQL.

Money: ``cost_usd`` is exact. PostgreSQL stores ``NUMERIC(30, 12)``. SQLite has no decimal type,
so it stores an INTEGER count of pico-dollars (USD x 10^12): integer ``SUM()`` is exact there, and
the type converts back to ``Decimal`` on the way out, also for ``func.sum(column)``. Values are
kept to 12 decimal places (ROUND_HALF_EVEN beyond that). A plain SQLite ``SUM`` of the column
overflows past 9,223,372 USD (int64 pico-dollars): the read layer sums it in two parts
(``db.queries``) and the rollup keeps each of its rows within int64 (``db.store``), so figures stay
exact past it. PostgreSQL has no such bound.

Time: ``UTCDateTime`` takes and returns timezone-aware UTC datetimes. PostgreSQL stores
``timestamptz``; SQLite stores naive UTC text (``YYYY-MM-DD HH:MM:SS.ffffff``), which sorts in
time order.
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import ROUND_HALF_EVEN, Decimal

from sqlalchemy import BigInteger, DateTime, Numeric
from sqlalchemy.types import TypeDecorator

__all__ = ["Money", "UTCDateTime", "MONEY_SCALE", "to_pico", "from_pico", "quantize_money"]

MONEY_SCALE = 12
_QUANTUM = Decimal(1).scaleb(-MONEY_SCALE)


def quantize_money(value: Decimal) -> Decimal:
    return value.quantize(_QUANTUM, rounding=ROUND_HALF_EVEN)


def to_pico(value: Decimal) -> int:
    return int(quantize_money(value).scaleb(MONEY_SCALE))


def from_pico(value: int) -> Decimal:
    return Decimal(int(value)).scaleb(-MONEY_SCALE)


class Money(TypeDecorator):
    """Exact USD amount: ``Decimal`` in Python, integer pico-dollars in SQLite, NUMERIC elsewhere."""

    impl = Numeric(30, MONEY_SCALE, asdecimal=True)
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(Numeric(30, MONEY_SCALE, asdecimal=True))

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if not isinstance(value, Decimal):
            if isinstance(value, float):
                raise TypeError("money must be Decimal or int, never float")
            value = Decimal(value)
        if dialect.name == "sqlite":
            return to_pico(value)
        return quantize_money(value)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if dialect.name == "sqlite":
            if isinstance(value, float):  # only TOTAL()/AVG() produce floats; refuse silently wrong money
                raise TypeError("a float reached the money column; use SUM, not TOTAL or AVG")
            return from_pico(value)
        return quantize_money(Decimal(value))


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "sqlite":
            return dialect.type_descriptor(DateTime(timezone=False))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass a timezone-aware UTC datetime")
        value = value.astimezone(timezone.utc)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)
