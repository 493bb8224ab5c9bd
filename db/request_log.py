"""The request log: single calls, one page at a time, for the dashboard's list of calls.

``log_page`` reads one page of the calls matching ``Filters`` and an optional search text,
sorted by time, cost, tokens or latency (newest / biggest first by default), with
``LIMIT``/``OFFSET`` and one extra row to know whether another page follows, so the database
never hands over more than a page. ``log_count`` says how many match (for "page 3 of 41");
``get_call`` reads one call's full record by id.

Every value reaches SQL as a bound parameter (SQLAlchemy Core, no SQL text): a search like
``%' OR 1=1 --`` is matched literally (``LIKE`` wildcards in it are escaped).

Speed (revision 0003, figures in ``docs/benchmarks.md``): sorted by time, a page walks
``ix_completions_created_at`` backwards from the range's end and stops after a page. Sorted by
cost, tokens or latency it walks ``ix_completions_cost_usd`` (``_total_tokens``, ``_latency_ms``)
from the top and keeps the calls in the range, so it stops after a page too. SQLite's planner
would rather take the created_at index for the range and sort the whole range, so there the
range is written ``+created_at`` (unary plus: not an index term) when the range holds at least
``RANKED_WALK_MIN`` calls; a range with fewer is read by its created_at index and sorted (a few
calls in a long ledger would otherwise mean walking most of the ranked index). PostgreSQL's
planner picks the ``DESC NULLS LAST`` index itself. A search text that looks like an id (no
spaces) is first looked up by equality on ``id`` (the primary key) and ``request_id``
(``ix_completions_request_id``); only when no call of the view has it exactly does the search
fall back to the substring match. That match reads the calls it searches one by one, so by default
it searches the newest ``SEARCH_WINDOW`` calls of the range (their first ``created_at`` is found by
walking the created_at index) and says so (``LogPage.searched_since``); ``search_all=True`` searches
the whole range (14.9 s for a rare text at 10M calls; the window reads a fixed number of calls,
0.4 s for 100,000 at load 5 on 2 cores, whatever the ledger's size).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import String, Text, cast, func, literal, or_, select, type_coerce
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import UnaryExpression
from sqlalchemy.engine import Connection

from .filters import Filters, where_clauses
from .buckets import raw_bucket
from .models import Completion
from .store import is_error_clause

__all__ = ["error_kinds", "first_call_at", "SORTS", "SEARCHED", "PAGE_SIZE", "MAX_SEARCH", "LogPage", "log_page", "log_count", "get_call",
           "LIST_COLUMNS", "looks_like_id", "RANKED_WALK_MIN", "SEARCH_WINDOW"]

SORTS = {"time": "created_at", "cost": "cost_usd", "tokens": "total_tokens", "latency": "latency_ms"}
# what a search looks in: the id and request id, the dimensions, the error and the tags (as JSON text)
SEARCHED = ("id", "request_id", "model", "app", "user", "error_type", "error_message", "tags")
PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
MAX_SEARCH = 200  # characters of search text used
# SQLite, ranked orders: a range with at least this many calls walks the ranked column's index
RANKED_WALK_MIN = 20_000
# a substring search looks at the newest this many calls of the range unless asked to search it all
SEARCH_WINDOW = 100_000
LIST_COLUMNS = ("id", "created_at", "model", "provider", "app", "user", "api_key_hint", "status_code",
                "error_type", "error_message", "prompt_tokens", "completion_tokens", "total_tokens", "cost_usd",
                "latency_ms", "stream", "request_id")


@dataclass(frozen=True)
class LogPage:
    rows: list[dict]
    page: int  # 0-based
    size: int
    has_next: bool
    # a bounded substring search: it looked only at calls from this instant on (the newest
    # SEARCH_WINDOW of the range); None when the whole view was searched
    searched_since: datetime | None = None


def looks_like_id(text: str) -> bool:
    """Whether a search text may be a call's ``id`` or ``request_id`` (one word, not too long)."""
    return 0 < len(text) <= 255 and not any(ch.isspace() for ch in text)


def _range(dialect: str, filters: Filters, plain: bool) -> list:
    """The date range as conditions; on SQLite, unless ``plain``, on ``+created_at`` (see above)."""
    when = Completion.__table__.c.created_at
    if not plain and dialect == "sqlite":
        when = UnaryExpression(when, operator=operators.custom_op("+"), type_=when.type)
    parts = []
    if filters.start is not None:
        parts.append(when >= filters.start)
    if filters.end is not None:
        parts.append(when < filters.end)
    return parts


def _substring_clause(dialect: str, text: str):
    parts = []
    for name in SEARCHED:
        column = Completion.__table__.c[name]
        if name == "tags":
            column = type_coerce(column, Text) if dialect == "sqlite" else cast(column, Text)
        elif name != "error_message":
            column = type_coerce(column, String)
        parts.append(column.icontains(text, autoescape=True))
    return or_(*parts)


def _window_start(conn: Connection, filters: Filters, window: int) -> datetime | None:
    """When the ``window``-th newest call of the range was made (the range's created_at index read
    backwards), or None when the range holds fewer calls."""
    created = Completion.__table__.c.created_at
    return conn.scalar(select(created).where(*_range(conn.dialect.name, filters, plain=True))
                       .order_by(created.desc()).offset(window - 1).limit(1))


def _search_clause(conn: Connection, filters: Filters, text: str, search_all: bool = True,
                   window: int = SEARCH_WINDOW) -> tuple[list, datetime | None]:
    """Equality on id / request_id when the text is one of the view's, else the substring match
    (unless ``search_all``, over the newest ``window`` calls of the range); ``(clauses, since)``."""
    text = text.strip()[:MAX_SEARCH]
    if not text:
        return [], None
    if looks_like_id(text):
        table = Completion.__table__
        exact = or_(table.c.id == text, table.c.request_id == text)
        dialect = conn.dialect.name
        probe = (select(literal(1)).select_from(table)
                 .where(exact, *where_clauses(filters, raw=True, ranges=[]), *_range(dialect, filters, plain=False))
                 .limit(1))
        if conn.scalar(probe) is not None:
            return [exact], None
    since = None if search_all else _window_start(conn, filters, window)
    bound = [Completion.__table__.c.created_at >= since] if since is not None else []
    return [_substring_clause(conn.dialect.name, text), *bound], since


def _walk_ranked(conn: Connection, filters: Filters) -> bool:
    """SQLite: whether the range holds ``RANKED_WALK_MIN`` calls or more (read off its index)."""
    table = Completion.__table__
    some = select(table.c.id).where(*_range("sqlite", filters, plain=True)).limit(RANKED_WALK_MIN).subquery()
    return int(conn.scalar(select(func.count()).select_from(some)) or 0) >= RANKED_WALK_MIN


def _where(conn: Connection, filters: Filters, search: str, sort: str = "time", *, search_all: bool = True,
           window: int = SEARCH_WINDOW) -> tuple[list, datetime | None]:
    plain = sort == "time" or conn.dialect.name != "sqlite" or not _walk_ranked(conn, filters)
    clauses = [*where_clauses(filters, raw=True, ranges=[]), *_range(conn.dialect.name, filters, plain)]
    found, since = _search_clause(conn, filters, search or "", search_all, window)
    return [*clauses, *found], since


def _order(sort: str, descending: bool, dialect: str = "sqlite") -> list:
    if sort not in SORTS:
        raise ValueError(f"sort must be one of {', '.join(SORTS)}, not {sort!r}")
    column = Completion.__table__.c[SORTS[sort]]
    created, ident = Completion.__table__.c.created_at, Completion.__table__.c.id
    if sort == "time":
        return [created.desc(), ident.desc()] if descending else [created.asc(), ident.asc()]
    # calls without a figure (errors have no cost or tokens) go last either way. SQLite sorts NULL
    # lowest, so a plain DESC already puts them last and can walk an index on the column; spelling
    # out NULLS LAST there makes it sort the whole range instead. PostgreSQL needs it said.
    if descending:
        primary = column.desc() if dialect == "sqlite" else column.desc().nulls_last()
    else:
        primary = column.asc().nulls_last()
    return [primary, created.desc(), ident.desc()]


def log_page(conn: Connection, filters: Filters, *, search: str = "", sort: str = "time", descending: bool = True,
             page: int = 0, size: int = PAGE_SIZE, search_all: bool = False, window: int = SEARCH_WINDOW) -> LogPage:
    """One page of matching calls (``LIST_COLUMNS`` as dicts; money exact ``Decimal``). A substring
    search looks at the newest ``window`` calls of the range unless ``search_all`` (see above)."""
    size = max(1, min(int(size), MAX_PAGE_SIZE))
    page = max(0, int(page))
    table = Completion.__table__
    order = _order(sort, descending, conn.dialect.name)
    where, since = _where(conn, filters, search, sort, search_all=search_all, window=window)
    stmt = (select(*(table.c[name] for name in LIST_COLUMNS))
            .where(*where)
            .order_by(*order)
            .limit(size + 1).offset(page * size))
    rows = [dict(zip(LIST_COLUMNS, row)) for row in conn.execute(stmt)]
    return LogPage(rows=rows[:size], page=page, size=size, has_next=len(rows) > size, searched_since=since)


def log_count(conn: Connection, filters: Filters, *, search: str = "", search_all: bool = True,
              window: int = SEARCH_WINDOW) -> int:
    """How many calls match ``filters`` and ``search`` (the whole range unless ``search_all`` is false:
    then, as ``log_page``, a substring search counts within the newest ``window`` calls)."""
    where, _ = _where(conn, filters, search, search_all=search_all, window=window)
    stmt = select(func.count()).select_from(Completion.__table__).where(*where)
    return int(conn.scalar(stmt) or 0)


def get_call(conn: Connection, call_id: str) -> dict | None:
    """Every column of one call, or None when no call has that id."""
    if not call_id or len(call_id) > 64:
        return None
    table = Completion.__table__
    row = conn.execute(select(table).where(table.c.id == call_id)).first()
    return dict(row._mapping) if row is not None else None


def error_kinds(conn: Connection, filters: Filters, *, minutes: int = 60) -> list[dict]:
    """Failed calls counted per UTC time bucket (``minutes``: 60, 15 or 0 = per call), error type
    and status: ``{"bucket": aware UTC datetime, "error_type", "status_code", "errors"}``.

    Reads ``completions`` (the rollup has the error flag but not its type); the caller maps each
    bucket to its local period (``db.periods.period_keys``)."""
    table = Completion.__table__
    bucket = raw_bucket(conn.dialect.name, minutes)
    clauses = where_clauses(filters, raw=True, ranges=[(filters.start, filters.end)])
    stmt = (select(bucket, table.c.error_type, table.c.status_code, func.count())
            .where(*clauses, is_error_clause())
            .group_by(bucket, table.c.error_type, table.c.status_code))
    return [{"bucket": b, "error_type": t, "status_code": s, "errors": int(n)} for b, t, s, n in conn.execute(stmt)]


def first_call_at(conn: Connection):
    """When the ledger's first call was made (aware UTC), or None; from the indexed column."""
    return conn.scalar(select(func.min(Completion.__table__.c.created_at)))
