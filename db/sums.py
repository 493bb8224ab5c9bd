"""The measures every grouped read returns, and how SQL sums become them exactly.

``MEASURES``: ``models.SPEND_MEASURES`` then ``errors``, ``latency_ms_sum``, ``latency_count``.
``money_sums`` is ``SUM(column)``; on SQLite, where money is integer pico-dollars whose ``SUM``
would overflow int64 past 9,223,372 USD, it is two sums that cannot (the high and the low 32 bits
of each value, over up to 2^31 rows per group), which ``join_measures`` puts together exactly.
``zero_measures`` / ``add_measures`` / ``negated`` add rows up in Python (money as ``Decimal``).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from sqlalchemy import BigInteger, func, literal_column, type_coerce

from .models import MONEY_MEASURES, SPEND_MEASURES
from .types import from_pico

__all__ = ["MEASURES", "TOKENS", "money_sums", "join_measures", "zero_measures", "add_measures", "negated"]

MEASURES = (*SPEND_MEASURES, "errors", "latency_ms_sum", "latency_count")
TOKENS = ("prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens", "reasoning_tokens")
_MONEY = frozenset(i for i, m in enumerate(MEASURES) if m in MONEY_MEASURES)  # exact Decimal sums


def money_sums(dialect: str, column) -> list:
    """``SUM(column)``; on SQLite two sums that cannot overflow (see the module docstring)."""
    if dialect != "sqlite":
        return [func.sum(column)]
    pico = type_coerce(column, BigInteger)
    return [func.sum(pico.op(">>")(literal_column("32"))), func.sum(pico.op("&")(literal_column("4294967295")))]


def join_measures(dialect: str, values: Sequence) -> list:
    """A result row's measure columns as ``MEASURES`` (SQLite's two sums per money measure joined)."""
    if dialect != "sqlite":
        return list(values)
    out: list = []
    it = iter(values)
    for i in range(len(MEASURES)):
        value = next(it)
        if i in _MONEY:
            low = next(it)
            value = None if value is None and low is None else from_pico((value or 0) * 2**32 + (low or 0))
        out.append(value)
    return out


def zero_measures() -> list:
    """A row of ``MEASURES`` at zero (money as ``Decimal(0)``), to add rows to with ``add_measures``."""
    return [Decimal(0) if i in _MONEY else 0 for i in range(len(MEASURES))]


def add_measures(acc: list, values: Sequence, sign: int = 1) -> None:
    """Add one result row's ``MEASURES`` to ``acc`` (``sign`` -1 subtracts them)."""
    for i, value in enumerate(values):
        if value is not None:
            acc[i] += sign * (value if i in _MONEY else int(value))


def negated(values: Sequence) -> list:
    """One result row's ``MEASURES`` with the sign turned (None stays None)."""
    return [None if v is None else -v for v in values]
