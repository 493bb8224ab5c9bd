"""UTC time buckets of ``completions.created_at`` in SQL, for the read layer's grouped sums
(``db.queries``) and the request log's error counts (``db.request_log``).

``raw_bucket(dialect, minutes)``: the start of each call's UTC bucket of ``minutes`` (60, 15, ...;
0 = the call's own time), typed as ``UTCDateTime`` so rows come back as aware datetimes.
"""

from __future__ import annotations

from sqlalchemy import Integer, cast, func, literal_column, type_coerce

from .models import Completion
from .types import UTCDateTime

__all__ = ["raw_bucket"]


def raw_bucket(dialect: str, minutes: int):
    """The UTC bucket of ``minutes`` each call falls in, as a SQL expression."""
    created = Completion.created_at
    if minutes == 0:
        return created
    if dialect == "sqlite":  # created_at is 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC) text
        if minutes == 60:
            expr = func.substr(created, 1, 13).op("||")(literal_column("':00'"))
        else:
            minute = cast(func.substr(created, 15, 2), Integer)
            step = literal_column(str(minutes))
            quarter = minute.op("/")(step).op("*")(step)  # plain "/": SQLite divides integers exactly
            expr = func.substr(created, 1, 14).op("||")(func.printf(literal_column("'%02d'"), quarter))
        return type_coerce(expr, UTCDateTime())
    seconds = literal_column(str(minutes * 60))
    expr = func.to_timestamp(func.floor(func.extract("epoch", created) / seconds) * seconds)
    return type_coerce(expr, UTCDateTime())
