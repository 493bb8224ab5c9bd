"""The dashboard's view as data: what the sidebar chooses and how it round-trips through the URL.

No Streamlit here, so every rule (presets, the previous period, parsing untrusted query strings)
is a plain function that tests call directly. ``dashboard.filters`` draws the widgets.

URL form (only non-default values are written, so links stay short)::

    ?range=30d&tz=Asia/Tokyo&by=week&model=openai/gpt-4o&model=openai/gpt-4o-mini&status=errors
    ?range=custom&from=2025-01-01&to=2025-01-31
    ?status=errors&q=timeout&sort=cost&page=2&call=<id>   (the request log: search, order, page, open call)
    ?tag=team%3Dcore&tag=feature%3Dsearch&tagby=customer    (tags, AND-ed; the "Spend by tag" key)

Multi-valued filters repeat their key. Values are untrusted text; they only ever reach SQL as
bound parameters (``spendlog.db.queries``), so a value that names nothing matches nothing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from spendlog.db.filters import parse_tag
from spendlog.db.periods import parse_day
from spendlog.db.tag_limits import MAX_KEY

__all__ = [
    "PRESETS",
    "GRANULARITIES",
    "STATUSES",
    "DIMENSIONS",
    "View",
    "default_tz",
    "valid_tz",
    "preset_dates",
    "previous_period",
    "parse_params",
    "to_params",
    "tag_text",
    "MAX_TAG_FILTERS",
]

PRESETS: dict[str, str] = {
    "today": "Today",
    "7d": "Last 7 days",
    "30d": "Last 30 days",
    "90d": "Last 90 days",
    "mtd": "Month to date",
    "last_month": "Last month",
    "all": "All time",
    "custom": "Custom",
}
DEFAULT_PRESET = "30d"
GRANULARITIES = ("hour", "day", "week", "month")
HOURLY_DAYS = 2  # ranges up to this many days are shown per hour
ALL_TIME_START = date(2000, 1, 1)  # "All time" before the page knows the first call's date
SORTS = ("time", "cost", "tokens", "latency")  # the request log's orders (db.request_log.SORTS)
MAX_SEARCH = 200
STATUSES = ("all", "ok", "errors")
# URL key -> (Filters field, db distinct_values column, sidebar label)
DIMENSIONS: dict[str, tuple[str, str, str]] = {
    "model": ("models", "model", "Model"),
    "provider": ("providers", "provider", "Provider"),
    "app": ("apps", "app", "App"),
    "user": ("users", "user", "User"),
    "key": ("key_hints", "key", "API key"),
}
MAX_VALUES_PER_FILTER = 200  # a URL cannot make the app build an unbounded IN list
MAX_VALUE_LENGTH = 255  # the widest dimension column
MAX_TAG_FILTERS = 20  # as many as a call can carry (db.tag_limits.MAX_TAGS)


def default_tz() -> str:
    """``$SPENDLOG_TZ`` when it names a zone, else UTC."""
    tz = os.environ.get("SPENDLOG_TZ", "").strip()
    return tz if tz and valid_tz(tz) else "UTC"


def valid_tz(name: str) -> bool:
    if not name or len(name) > 64:
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


@dataclass(frozen=True)
class View:
    """Everything the sidebar decides. Dates are inclusive local dates in ``tz``."""

    preset: str
    start: date
    end: date
    tz: str
    granularity: str = "day"
    models: tuple[str, ...] = ()
    providers: tuple[str, ...] = ()
    apps: tuple[str, ...] = ()
    users: tuple[str, ...] = ()
    key_hints: tuple[str, ...] = ()
    status: str = "all"
    live: bool = False
    # the request log: search text, order, 0-based page, the call opened (its id)
    q: str = ""
    sort: str = "time"
    page: int = 0
    call: str = ""
    # tag filters, (key, value) pairs AND-ed (db Filters.tags), and the "Spend by tag" chart's key
    tags: tuple[tuple[str, str], ...] = ()
    tag_key: str = ""
    notes: tuple[str, ...] = field(default=(), compare=False)  # what was ignored in the URL, and why

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def with_dates(self, start: date, end: date) -> View:
        return replace(self, start=start, end=end)


def preset_dates(preset: str, today: date) -> tuple[date, date]:
    """Inclusive (first, last) local dates of a preset, given today's local date."""
    if preset == "today":
        return today, today
    if preset in ("7d", "30d", "90d"):
        return today - timedelta(days=int(preset[:-1]) - 1), today
    if preset == "mtd":
        return today.replace(day=1), today
    if preset == "all":
        return ALL_TIME_START, today
    if preset == "last_month":
        last = today.replace(day=1) - timedelta(days=1)
        return last.replace(day=1), last
    raise ValueError(f"unknown preset {preset!r}")


def previous_period(start: date, end: date) -> tuple[date, date]:
    """The same number of days immediately before ``start`` (inclusive dates)."""
    length = (end - start).days + 1
    return start - timedelta(days=length), start - timedelta(days=1)


def _one(params: Mapping[str, Sequence[str]], key: str) -> str | None:
    values = params.get(key) or []
    return values[-1] if values else None


def _parse_date(params: Mapping[str, Sequence[str]], key: str, notes: list[str]) -> date | None:
    """The ``from``/``to`` day by the one date rule (``db.periods.parse_day``, strict ``YYYY-MM-DD``:
    ``2025-03-01junk`` is not a day); a malformed one is ignored with a note."""
    text = (_one(params, key) or "").strip()
    if not text:
        return None
    try:
        return parse_day(text)
    except ValueError:
        notes.append(f"'{key}' {text[:16]!r} is not a date (YYYY-MM-DD): ignored")
        return None


def parse_params(params: Mapping[str, Sequence[str]], *, today_in, tz_default: str | None = None) -> View:
    """Read a view from URL query params (each key -> list of values); never raises.

    ``today_in(tz)`` gives today's date in a zone (injected so tests fix the clock). Unknown or
    malformed values fall back to defaults and are listed in ``View.notes``."""
    notes: list[str] = []
    tz = (_one(params, "tz") or "").strip()
    if tz and not valid_tz(tz):
        notes.append(f"unknown timezone {tz[:64]!r}: using {tz_default or default_tz()}")
        tz = ""
    tz = tz or tz_default or default_tz()
    today = today_in(tz)

    preset = _one(params, "range") or ""
    first, last = _parse_date(params, "from", notes), _parse_date(params, "to", notes)
    if preset not in PRESETS:
        if preset:
            notes.append(f"unknown range {preset[:32]!r}")
        preset = "custom" if (first or last) else DEFAULT_PRESET
    if preset == "custom":
        if first is None and last is None:
            preset = DEFAULT_PRESET
            start, end = preset_dates(preset, today)
        else:
            start, end = first or last, last or first
            if end < start:
                notes.append("'to' is before 'from': swapped")
                start, end = end, start
    else:
        start, end = preset_dates(preset, today)

    granularity = _one(params, "by") or "day"
    if granularity not in GRANULARITIES:
        notes.append(f"unknown granularity {granularity[:16]!r}")
        granularity = "day"
    status = _one(params, "status") or "all"
    if status not in STATUSES:
        notes.append(f"unknown status {status[:16]!r}")
        status = "all"

    dims: dict[str, tuple[str, ...]] = {}
    for key, (fieldname, _col, _label) in DIMENSIONS.items():
        values = [v for v in (params.get(key) or []) if v and len(v) <= MAX_VALUE_LENGTH]
        if len(values) > MAX_VALUES_PER_FILTER:
            notes.append(f"only the first {MAX_VALUES_PER_FILTER} {key} values are used")
            values = values[:MAX_VALUES_PER_FILTER]
        dims[fieldname] = tuple(dict.fromkeys(values))  # drop repeats, keep order

    live = (_one(params, "live") or "") in ("1", "true", "on")
    q = (_one(params, "q") or "")[:MAX_SEARCH]
    sort = _one(params, "sort") or "time"
    if sort not in SORTS:
        notes.append(f"unknown sort {sort[:16]!r}")
        sort = "time"
    page_text = _one(params, "page") or "1"
    page = int(page_text) - 1 if page_text.isdigit() and 0 < int(page_text) <= 1_000_000 else 0
    call = (_one(params, "call") or "")[:64]
    tags = _parse_tags(params.get("tag") or [], notes)
    tag_key = (_one(params, "tagby") or "").strip()
    if len(tag_key) > MAX_KEY:
        notes.append(f"tag key {tag_key[:16]!r}... is longer than {MAX_KEY} characters")
        tag_key = ""
    return View(preset=preset, start=start, end=end, tz=tz, granularity=granularity, status=status,
                live=live, q=q, sort=sort, page=page, call=call, tags=tags, tag_key=tag_key,
                notes=tuple(notes), **dims)


def tag_text(pair: tuple[str, str]) -> str:
    """A tag filter as the URL and the sidebar spell it: ``key=value``."""
    return f"{pair[0]}={pair[1]}"


def _parse_tags(values: Sequence[str], notes: list[str]) -> tuple[tuple[str, str], ...]:
    """``tag=key=value`` params -> (key, value) pairs, by ``db.filters.parse_tag``'s rule."""
    pairs: list[tuple[str, str]] = []
    for value in values:
        try:
            pair = parse_tag(value)
        except ValueError as exc:
            notes.append(f"tag {exc}")
            continue
        if pair not in pairs:
            pairs.append(pair)
    if len(pairs) > MAX_TAG_FILTERS:
        notes.append(f"only the first {MAX_TAG_FILTERS} tag filters are used")
        pairs = pairs[:MAX_TAG_FILTERS]
    return tuple(pairs)


def to_params(view: View, *, tz_default: str | None = None) -> dict[str, str | list[str]]:
    """The URL query params of a view (defaults omitted)."""
    out: dict[str, str | list[str]] = {}
    if view.preset != DEFAULT_PRESET:
        out["range"] = view.preset
    if view.preset == "custom":
        out["from"] = view.start.isoformat()
        out["to"] = view.end.isoformat()
    if view.tz != (tz_default or default_tz()):
        out["tz"] = view.tz
    if view.granularity != "day":
        out["by"] = view.granularity
    for key, (fieldname, _col, _label) in DIMENSIONS.items():
        values = getattr(view, fieldname)
        if values:
            out[key] = list(values)
    if view.status != "all":
        out["status"] = view.status
    if view.live:
        out["live"] = "1"
    if view.q:
        out["q"] = view.q
    if view.sort != "time":
        out["sort"] = view.sort
    if view.page:
        out["page"] = str(view.page + 1)
    if view.call:
        out["call"] = view.call
    if view.tags:
        out["tag"] = [tag_text(p) for p in view.tags]
    if view.tag_key:
        out["tagby"] = view.tag_key
    return out
