"""What a call's tags may hold, and the one function that bounds them: ``bound_tags``.

A caller sends tags (``X-Spendlog-Tags: team=core,feature=search`` or ``tags={...}``) and
nothing stops it from sending thousands, or a megabyte in one value. Every record is bounded
before it is stored, by the capture and again by ``db.store.clean_record`` (records from a spool,
another process or an older spendlog): at most ``MAX_TAGS`` tags (the first ones, in the order
sent), keys cut to ``MAX_KEY`` characters and values to ``MAX_VALUE``. A call that lost anything
carries the reserved tag ``TRUNCATED_KEY`` (its value lists what was cut: ``count``, ``key``,
``value``), so ``--by tag:spendlog.truncated`` finds such calls; a caller's own tag of that name is
dropped (the store keeps the capture's own). Never an exception: what is not a string is stored as its ``str()``.

Pure Python (no SQLAlchemy): the capture imports it on the caller's thread.
"""

from __future__ import annotations

__all__ = ["MAX_TAGS", "MAX_KEY", "MAX_VALUE", "TRUNCATED_KEY", "bound_tags", "within_limits"]

MAX_TAGS = 20
MAX_KEY = 64
MAX_VALUE = 256
TRUNCATED_KEY = "spendlog.truncated"


def within_limits(tags, *, keep_flag: bool = False) -> bool:
    """Whether ``tags`` (a dict) already obeys the limits with plain string keys and values: the
    usual case, checked fast. ``keep_flag``: see ``bound_tags``."""
    if type(tags) is not dict or len(tags) > MAX_TAGS + 1:
        return False
    for k, v in tags.items():
        if type(k) is not str or type(v) is not str or len(k) > MAX_KEY or len(v) > MAX_VALUE:
            return False
    if TRUNCATED_KEY in tags:
        return keep_flag
    return len(tags) <= MAX_TAGS


def bound_tags(tags, *, keep_flag: bool = False) -> dict[str, str] | None:
    """``tags`` within the limits (see the module docstring); the same object when it already is.
    ``None`` and ``{}`` give ``None``; anything that is not a dict is kept as one tag ``{"tags": str}``.
    The capture bounds what a caller sent (a caller's own ``TRUNCATED_KEY`` is dropped); the store
    passes ``keep_flag=True``: a record the capture flagged keeps its flag."""
    if not tags:
        return None
    if within_limits(tags, keep_flag=keep_flag):
        return tags
    if not isinstance(tags, dict):
        tags = {"tags": tags}
    cut: list[str] = []
    flag = tags.get(TRUNCATED_KEY) if keep_flag else None
    if isinstance(flag, str):
        cut.extend(w for w in flag.split(",") if w in ("count", "key", "value"))
    out: dict[str, str] = {}
    for k, v in tags.items():
        k = k if type(k) is str else str(k)
        if k == TRUNCATED_KEY:
            continue
        v = v if type(v) is str else ("" if v is None else str(v))
        if len(k) > MAX_KEY:
            k = k[:MAX_KEY]
            _note(cut, "key")
        if len(v) > MAX_VALUE:
            v = v[:MAX_VALUE]
            _note(cut, "value")
        if k in out:  # two keys that only differ past MAX_KEY: the first one stays
            continue
        if len(out) == MAX_TAGS:
            _note(cut, "count")
            break
        out[k] = v
    if cut:
        out[TRUNCATED_KEY] = ",".join(sorted(cut))
    return out or None


def _note(cut: list[str], what: str) -> None:
    if what not in cut:
        cut.append(what)
