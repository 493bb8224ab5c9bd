"""The tag rollup: how records add up into ``rollup_tags`` rows (revision 0004).

One row per UTC hour x tag key x tag value x model x app holds the sums of the calls carrying that
tag (``db.models.RollupTags``): a call with three tags adds to three rows. A tag whose value is
empty adds to none (a read groups it with the calls that lack the key: ``(none)``). Kept like
``rollup_hourly`` and by the same functions (``db.rollups``): summed per key with the same spill
rule (a key whose hour would pass a column continues in a row at the hour + 1 µs), added in the
insert's transaction (``db.store.insert_records``), corrected by re-pricing (``db.reprice``),
rebuilt by ``db.rebuild``; ``db.prune`` leaves it alone like the hourly rollup. ``rollup_tags_daily``
is the same per UTC day (``db.daily``; ``tag_keys_of(r, floor_day)``), and ``rollup_tag_days``
that without model and app (revision 0008; ``tag_day_keys_of``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy.engine import Connection

from .models import TAG_DAY_DIMENSIONS, TAG_DIMENSIONS, TAG_MEASURES, RollupTagDays, RollupTags, RollupTagsDaily
from .periods import floor_day, floor_hour
from .rollups import _add, _new_row, add_to_rollups, is_error, rollup_delta, rollup_limits, sum_rows, upsert_rollups

__all__ = ["tag_keys_of", "tag_day_keys_of", "tag_rollup_rows", "tag_rollup_limits", "upsert_tag_rollups", "tag_rollup_delta",
           "add_to_tag_rollups", "correct_tag_rollups"]


def tag_keys_of(r: dict, floor=floor_hour) -> list[tuple]:
    """The ``rollup_tags`` keys of one record: one per tag with a non-empty string value
    (``floor=floor_day``: ``rollup_tags_daily``'s)."""
    tags = r.get("tags")
    if not tags or not isinstance(tags, dict):
        return []
    hour = floor(r["created_at"])
    model, app = r.get("model") or "", r.get("app") or ""
    return [(hour, k, v, model, app) for k, v in tags.items() if type(v) is str and v]


def tag_day_keys_of(r: dict) -> list[tuple]:
    """The ``rollup_tag_days`` keys of one record: ``(day, key, value)`` per tag ``tag_keys_of`` keeps."""
    return [key[:3] for key in tag_keys_of(r, floor_day)]


def _new_tag_row(key: tuple) -> dict:
    return _new_row(key, TAG_DIMENSIONS, TAG_MEASURES)


def _new_tag_day_row(key: tuple) -> dict:
    return _new_row(key, TAG_DAY_DIMENSIONS, TAG_MEASURES)


def _add_tagged(row: dict, r: dict) -> None:
    _add(row, r)
    if is_error(r):
        row["errors"] += 1


def tag_rollup_limits(dialect: str) -> dict:
    return rollup_limits(dialect, TAG_MEASURES)


def tag_rollup_rows(records: Iterable[dict], limits: dict | None = None) -> list[dict]:
    """Sum records per tag rollup key (``tag_keys_of``); with ``limits``, split like ``rollup_rows``."""
    return sum_rows(records, tag_keys_of, _new_tag_row, _add_tagged, limits)


def upsert_tag_rollups(conn: Connection, rows: Sequence[dict]) -> None:
    """Add ``rows`` to ``rollup_tags`` in the caller's transaction (``db.rollups.upsert_rollups``)."""
    upsert_rollups(conn, rows, RollupTags.__table__)


def tag_rollup_delta(old: Iterable[dict], new: Iterable[dict], floor=floor_hour) -> list[dict]:
    """``db.rollups.rollup_delta`` for ``rollup_tags``: the re-priced calls' corrections per tag key
    (``floor=floor_day``: per ``rollup_tags_daily`` key)."""
    return rollup_delta(old, new, lambda r: tag_keys_of(r, floor), _new_tag_row)


def add_to_tag_rollups(conn: Connection, deltas: Sequence[dict], table=None) -> None:
    """Add ``tag_rollup_delta`` rows to ``rollup_tags`` (or ``table``: ``rollup_tags_daily``)."""
    add_to_rollups(conn, deltas, RollupTags.__table__ if table is None else table)


def correct_tag_rollups(conn: Connection, old: Sequence[dict], new: Sequence[dict]) -> None:
    """Correct ``rollup_tags``, ``rollup_tags_daily`` and ``rollup_tag_days`` for calls ``old``
    re-priced into ``new`` (``db.reprice``), in the caller's transaction: each by its own keys' deltas."""
    add_to_tag_rollups(conn, tag_rollup_delta(old, new))
    add_to_tag_rollups(conn, tag_rollup_delta(old, new, floor_day), RollupTagsDaily.__table__)
    add_to_tag_rollups(conn, rollup_delta(old, new, tag_day_keys_of, _new_tag_day_row), RollupTagDays.__table__)
