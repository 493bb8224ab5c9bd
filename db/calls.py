"""Per-call rows: the ``completions`` records behind every total, streamed in chunks.

``iter_call_chunks(plain=True)`` is the bulk form for files: the database renders timestamps,
money, tags and flags as text in ``spendlog.report.money.money_exact``'s notation, so writing a CSV needs no Python
per cell (tests compare it with the typed form cell by cell).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from sqlalchemy import BigInteger, String, Text, case, cast, func, literal_column, select, type_coerce
from sqlalchemy.engine import Connection

from .filters import Filters, where_clauses
from .models import Completion

__all__ = ["iter_call_chunks", "iter_calls"]


_PICO_SQL = literal_column("1000000000000")


def _strip_zeros(text):
    return func.rtrim(func.rtrim(text, literal_column("'0'")), literal_column("'.'"))


def _plain_column(dialect: str, name: str):
    """``completions.<name>`` in its plain form (see ``iter_call_chunks``), converted by the
    database so that no Python code runs per cell."""
    column = Completion.__table__.c[name]
    if name == "created_at":
        if dialect == "sqlite":  # stored as 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC)
            expr = func.substr(column, 1, 10).op("||")(literal_column("'T'")).op("||")(func.substr(column, 12))
            return type_coerce(expr.op("||")(literal_column("'Z'")), String).label(name)
        expr = func.to_char(func.timezone(literal_column("'UTC'"), column), literal_column("""'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'"""))
        return type_coerce(expr, String).label(name)
    if name in ("cost_usd", "list_cost_usd"):  # exact decimal text, no exponent, no trailing zeros: 0.000148, 12.5, 0
        if dialect == "sqlite":  # stored as integer pico-dollars: whole part, point, 12 places
            pico = type_coerce(column, BigInteger)

            def decimal_text(amount):
                digits = func.printf(literal_column("'%d.%012d'"), amount / _PICO_SQL, amount % _PICO_SQL)
                return _strip_zeros(digits)

            text = case(
                (pico >= 0, decimal_text(pico)),
                (pico < 0, literal_column("'-'").op("||")(decimal_text(-pico))),
            )  # NULL matches neither: NULL
        else:  # NUMERIC(30, 12) prints all 12 places
            text = case((column.is_(None), None), else_=_strip_zeros(cast(column, Text)))
        return type_coerce(text, String).label(name)
    if name == "tags":  # JSON text; JSON null (how a missing dict is stored) becomes SQL NULL
        text = type_coerce(column, Text) if dialect == "sqlite" else cast(column, Text)
        return type_coerce(func.nullif(text, literal_column("'null'")), Text).label(name)
    if name == "stream":
        text = case((column.is_(None), None), (column, literal_column("'true'")), else_=literal_column("'false'"))
        return type_coerce(text, String).label(name)
    return column


def _calls_select(filters: Filters, columns: Sequence[str] | None, plain_dialect: str | None = None):
    names = list(columns) if columns else [c.name for c in Completion.__table__.columns]
    if plain_dialect is None:
        cols = [Completion.__table__.c[name] for name in names]
    else:
        cols = [_plain_column(plain_dialect, name) for name in names]
    return (
        select(*cols)
        .where(*where_clauses(filters, raw=True, ranges=[(filters.start, filters.end)]))
        .order_by(Completion.created_at, Completion.id)
    )


def iter_call_chunks(
    conn: Connection,
    filters: Filters,
    columns: Sequence[str] | None = None,
    *,
    chunk_size: int = 10_000,
    plain: bool = False,
) -> Iterator[Sequence[tuple]]:
    """The matching calls as lists of up to ``chunk_size`` row tuples (``columns`` of
    ``completions``, default all), ordered by ``created_at, id``; streamed: a server-side cursor
    on PostgreSQL, chunked fetch on SQLite, so memory stays flat at any size.

    ``plain=True`` is the bulk form for files, converted inside the database: ``created_at`` as
    ISO 8601 UTC text (``2024-05-01T23:30:00.000000Z``), ``cost_usd`` as exact decimal text
    without exponent or trailing zeros (``0.000148``; ``spendlog.report.money.money_exact``'s form),
    ``tags`` as JSON text (keys in stored order), ``stream`` as ``true``/``false``; the rest as
    usual. Each is exactly what ``spendlog.report.files`` writes for the typed value."""
    stmt = _calls_select(filters, columns, conn.dialect.name if plain else None)
    if plain and conn.dialect.name == "sqlite":
        # Plain columns need no result processing and SQLite steps rows lazily, so read the DBAPI
        # cursor of an ordinary (unbuffered) result directly: plain tuples, no Row objects.
        result = conn.execute(stmt)
        try:
            cursor = result.cursor
            while rows := cursor.fetchmany(chunk_size):
                yield rows
        finally:
            result.close()
        return
    result = conn.execution_options(yield_per=chunk_size).execute(stmt)  # server-side cursor on PostgreSQL
    try:
        yield from result.partitions()
    finally:
        result.close()


def iter_calls(conn: Connection, filters: Filters, *, chunk_size: int = 10_000) -> Iterator[dict]:
    """Every ``completions`` column of each matching call as a dict, ordered by ``created_at,
    id``; streamed like ``iter_call_chunks``."""
    names = [c.name for c in Completion.__table__.columns]
    for chunk in iter_call_chunks(conn, filters, names, chunk_size=chunk_size):
        for row in chunk:
            yield dict(zip(names, row))
