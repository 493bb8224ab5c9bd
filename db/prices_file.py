"""The user's own prices: a TOML file of per-model token prices (docs/pricing.md).

    [[price]]
    model = "openai/gpt-4o-mini"   # matched case-insensitively; "gpt-4o-mini" matches any provider's
    input = "0.12"                 # USD per 1M tokens: strings, integers or TOML floats, all read exactly
    output = "0.48"
    cached_input = "0.06"          # optional: cached prompt tokens (else billed as input)
    cache_write = "0.15"           # optional: prompt tokens written to the cache (else billed as input)
    reasoning = "0.48"             # optional: reasoning tokens (else billed as output)
    from = 2026-11-01              # optional: a date (UTC midnight) or an offset date-time

Amounts are exact: a TOML float reaches us as its literal text (``tomllib``'s ``parse_float``
hook, so ``0.1`` is ``Decimal("0.1")``, never a binary float), strings go through ``Decimal``.
Every mistake raises ``PricesFileError`` (a ``ValueError``) whose message is one line naming the
file and the line: ``prices.toml: line 7: input: must not be negative (got -1)``.
"""

from __future__ import annotations

import re
import tomllib
from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import date, datetime, time, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path

__all__ = ["ALWAYS", "PricesFileError", "FilePrice", "PricesFile", "read_prices_file", "parse_prices"]

RATE_KEYS = ("input", "output", "cached_input", "cache_write", "reasoning")
_REQUIRED = ("model", "input", "output")
_KNOWN = ("model", *RATE_KEYS, "from")
MODEL_MAX = 255  # the ledger's model column; a longer id could never match a call
_HEADER = re.compile(r"""^\s*\[\[\s*(?:price|"price"|'price')\s*\]\]""")
_TOML_AT = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_TOML_END = re.compile(r"\s*\(at end of document\)\s*$")


class PricesFileError(ValueError):
    """The prices file cannot be used. The message is one line: the file, the line, the mistake."""


@dataclass(frozen=True, slots=True)
class FilePrice:
    """One ``[[price]]`` entry: USD per 1M tokens from ``start`` (aware UTC; None: always)."""

    model: str
    line: int
    start: datetime | None
    input: Decimal
    output: Decimal
    cached_input: Decimal | None = None
    cache_write: Decimal | None = None
    reasoning: Decimal | None = None


ALWAYS = datetime(1, 1, 1, tzinfo=timezone.utc)  # the start of an entry without ``from``


@dataclass(frozen=True)
class PricesFile:
    """A parsed prices file: its name (for ``price_source``) and its entries, indexed by model."""

    name: str
    entries: tuple[FilePrice, ...] = ()
    _exact: dict[str, tuple[tuple[datetime, ...], tuple[FilePrice, ...]]] = field(init=False, repr=False, compare=False)
    _bare: dict[str, tuple[tuple[datetime, ...], tuple[FilePrice, ...]]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        grouped: dict[str, list[FilePrice]] = {}
        for entry in self.entries:
            grouped.setdefault(entry.model.lower(), []).append(entry)
        exact = {}
        for key, items in grouped.items():
            items.sort(key=lambda e: e.start or ALWAYS)
            exact[key] = (tuple(e.start or ALWAYS for e in items), tuple(items))
        object.__setattr__(self, "_exact", exact)
        object.__setattr__(self, "_bare", {k: v for k, v in exact.items() if "/" not in k})

    def entries_for(self, model: str) -> tuple[tuple[datetime, ...], tuple[FilePrice, ...]] | None:
        """The entries that price ``model`` (their start instants and the entries, oldest first).

        Entries for the exact id (case-insensitive) win; only when there are none, an entry without a
        provider prefix (``gpt-4o-mini``) prices a prefixed id (``openai/gpt-4o-mini``). None: no entry."""
        key = model.lower()
        found = self._exact.get(key)
        if found is None and "/" in key:
            found = self._bare.get(key.partition("/")[2])
        return found

    @staticmethod
    def pick(found: tuple[tuple[datetime, ...], tuple[FilePrice, ...]], at: datetime) -> FilePrice | None:
        """Of ``entries_for``'s answer, the entry in force at ``at``: the latest ``from`` <= ``at``
        (None when every one starts later)."""
        starts, items = found
        index = bisect_right(starts, at)
        return items[index - 1] if index else None

    def price_at(self, model: str, at: datetime) -> FilePrice | None:
        """The entry pricing ``model`` at instant ``at`` (aware), or None."""
        found = self.entries_for(model)
        return None if found is None else self.pick(found, at)


def read_prices_file(path: str | Path, *, origin: str | None = None) -> PricesFile:
    """Read and check the prices file at ``path``. ``origin`` (e.g. ``"SPENDLOG_PRICES"``) is named in
    errors so the user knows where the path came from."""
    label = f"{path} (from {origin})" if origin else str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise PricesFileError(f"{label}: cannot read the prices file: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise PricesFileError(f"{label}: line {line}: not UTF-8 text") from None
    return parse_prices(text, name=Path(path).name, label=label)


def parse_prices(text: str, *, name: str = "prices.toml", label: str | None = None) -> PricesFile:
    """Parse prices-file text. ``name`` goes into ``price_source``; ``label`` (default ``name``) into errors."""
    label = label or name
    try:
        data = tomllib.loads(text, parse_float=Decimal)
    except tomllib.TOMLDecodeError as exc:
        raise PricesFileError(_toml_message(label, str(exc), text)) from None
    lines = text.splitlines()
    for key in data:
        if key != "price":
            raise _error(label, _key_line(lines, key, 0, len(lines)) or 1,
                         f"unknown top-level key {key!r} (write each price as a [[price]] table)")
    raw_entries = data.get("price", [])
    if not isinstance(raw_entries, list):
        raise _error(label, _key_line(lines, "price", 0, len(lines)) or 1, "'price' must be [[price]] tables")
    starts = [i for i, line in enumerate(lines) if _HEADER.match(line)]
    if len(starts) != len(raw_entries):  # an inline array: name the line of `price = [...]`
        fallback = _key_line(lines, "price", 0, len(lines)) or 1
        starts = [fallback - 1] * len(raw_entries)
    bounds = [*starts[1:], len(lines)]
    entries: list[FilePrice] = []
    seen: dict[tuple[str, datetime | None], int] = {}
    for raw, first, end in zip(raw_entries, starts, bounds):
        entry = _entry(raw, label, lines, first, end)
        dup = (entry.model.lower(), entry.start)
        if dup in seen:
            when = f" from {entry.start.isoformat()}" if entry.start else " without 'from'"
            raise _error(label, entry.line, f"a second price for {entry.model!r}{when} (the first is at line {seen[dup]})")
        seen[dup] = entry.line
        entries.append(entry)
    return PricesFile(name=name, entries=tuple(entries))


def _entry(raw: object, label: str, lines: list[str], first: int, end: int) -> FilePrice:
    line = first + 1

    def fail(key: str | None, message: str) -> PricesFileError:
        at = (_key_line(lines, key, first, end) if key else None) or line
        return _error(label, at, f"{key}: {message}" if key else message)

    if not isinstance(raw, dict):
        raise fail(None, "each price must be a table")
    unknown = [k for k in raw if k not in _KNOWN]
    if unknown:
        raise fail(unknown[0], f"unknown key (known keys: {', '.join(_KNOWN)})")
    missing = [k for k in _REQUIRED if k not in raw]
    if missing:
        raise fail(None, f"this price has no {missing[0]!r} (each needs model, input and output)")
    model = raw["model"]
    if not isinstance(model, str) or not model.strip():
        raise fail("model", "must be a non-empty string")
    if model != model.strip() or len(model) > MODEL_MAX or not model.isprintable():
        raise fail("model", f"must be a model id as recorded (printable, no surrounding spaces, <= {MODEL_MAX} characters)")
    rates = {}
    for key in RATE_KEYS:
        if key in raw:
            value, problem = _amount(raw[key])
            if problem:
                raise fail(key, problem)
            rates[key] = value
    start, problem = _start(raw.get("from"))
    if problem:
        raise fail("from", problem)
    return FilePrice(model=model, line=line, start=start, **rates)


def _amount(value: object) -> tuple[Decimal | None, str | None]:
    if isinstance(value, bool):
        return None, f"must be a price in USD per 1M tokens, not {str(value).lower()}"
    if isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, Decimal):
        amount = value
    elif isinstance(value, str):
        try:
            amount = Decimal(value.strip())
        except InvalidOperation:
            return None, f"must be a price in USD per 1M tokens (got {value!r:.60})"
    else:
        return None, f"must be a price in USD per 1M tokens (got a {_toml_type(value)})"
    if not amount.is_finite():
        return None, f"must be a finite price (got {value})"
    if amount < 0:
        return None, f"must not be negative (got {value})"
    return amount, None


def _start(value: object) -> tuple[datetime | None, str | None]:
    if value is None:
        return None, None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value) if "T" in value or " " in value.strip() else date.fromisoformat(value)
        except ValueError:
            return None, f"must be a date such as 2026-11-01 or a date-time with an offset (got {value!r:.60})"
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return None, "a date-time needs an offset such as Z or +05:30 (or write a date: 2026-11-01)"
        return value.astimezone(timezone.utc), None
    if isinstance(value, date):
        return datetime.combine(value, time(0), timezone.utc), None
    return None, f"must be a date such as 2026-11-01 (got a {_toml_type(value)})"


def _toml_type(value: object) -> str:
    return {list: "list", dict: "table", time: "time of day"}.get(type(value), type(value).__name__)


def _key_line(lines: list[str], key: str, first: int, end: int) -> int | None:
    pattern = re.compile(rf"""^\s*(?:{re.escape(key)}|"{re.escape(key)}"|'{re.escape(key)}')\s*=""")
    table = re.compile(rf"""^\s*\[+\s*(?:{re.escape(key)}|"{re.escape(key)}")\s*[\].]""")
    for i in range(first, end):
        if pattern.match(lines[i]) or table.match(lines[i]):
            return i + 1
    return None


def _toml_message(label: str, message: str, text: str) -> str:
    message = " ".join(message.split())
    if m := _TOML_AT.search(message):
        detail = message[: m.start()]
        return f"{label}: line {m.group(1)}: {_lower_first(detail)} (column {m.group(2)})"
    if m := _TOML_END.search(message):
        last = max(len(text.splitlines()), 1)
        return f"{label}: line {last}: {_lower_first(message[: m.start()])} (at the end of the file)"
    return f"{label}: {_lower_first(message)}"


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:] if text else "not valid TOML"


def _error(label: str, line: int, message: str) -> PricesFileError:
    return PricesFileError(f"{label}: line {line}: {' '.join(message.split())}")
