"""The router's activity: what it billed per UTC day x model, read from a file or a stream.

The shape is OpenRouter's ``GET /api/v1/activity`` (SolRouter serves the same; so does the fake
upstream): rows of ``date`` (the UTC day), ``model``, ``requests``, ``usage`` (USD),
``prompt_tokens``, ``completion_tokens``, ``reasoning_tokens`` and, optionally, ``provider_name``,
``byok_usage_inference`` (USD), ``model_permaslug``, ``endpoint_id``. ``read_activity`` takes JSON
(an array of rows, or an object whose ``data`` is that array) or CSV with those headers; which one
is decided by the first character. ``columns`` maps another export's names (``{"usage": "Total
Cost"}``; ``parse_columns`` reads ``--columns``). Rows for one day x model (one per provider) are
summed as they are read, so memory is bounded by days x models, never by the file's size (JSON is
read item by item, ``db.jsonstream``).

Values, checked once here (every problem is an ``ActivityError``: one line naming the row, CSV
``line N`` counting the header as line 1, JSON ``data[i]``, and the field as the file names it):

- ``date``: ``YYYY-MM-DD``, the UTC day; an ISO 8601 instant with ``Z`` or an offset is taken as
  its UTC date; a date-time without a zone is refused (its day is ambiguous).
- money: exact ``Decimal`` (JSON numbers are never floats; CSV cells are decimal text), plain or
  with an exponent (``1.48e-05``, as float printers write it), never negative, NaN or Infinity,
  within 10^-30 .. 10^12 USD and 40 digits.
- counts: whole numbers >= 0 (``15`` or ``15.0``), below 10^18.
"""

from __future__ import annotations

import codecs
import csv
import decimal
import io
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal
from functools import lru_cache
from typing import IO, Any

from .jsonstream import JSONStreamError, iter_items

__all__ = ["ALIASES", "FIELDS", "REQUIRED", "Activity", "ActivityError", "RouterFigures", "parse_columns",
           "read_activity", "read_json_chunks"]

FIELDS = ("date", "model", "requests", "usage", "prompt_tokens", "completion_tokens", "reasoning_tokens",
          "provider_name", "byok_usage_inference", "model_permaslug", "endpoint_id")
REQUIRED = ("date", "model", "requests", "usage", "prompt_tokens", "completion_tokens")
ALIASES = {"cost": "usage"}  # --columns cost=... is usage
_MONEY_FIELDS = ("usage", "byok_usage_inference")
_COUNT_FIELDS = ("requests", "prompt_tokens", "completion_tokens", "reasoning_tokens")
_TEXT_FIELDS = ("model", "provider_name", "model_permaslug", "endpoint_id")
_SUMS = decimal.Context(prec=120, traps=[decimal.Inexact, decimal.InvalidOperation])  # sums never round
_MAX_TEXT = 255  # the ledger's model column
_MAX_SLUGS = 8  # permaslugs remembered per model (for the "near name" hint)
_MAX_LINE = 1 << 20  # bytes in one CSV line
_ABSENT = object()

_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_INSTANT = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}(:?\d{2})?)?")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d{1,4})?")
_COUNT = re.compile(r"\+?(\d{1,18})(\.0*)?")


class ActivityError(ValueError):
    """A malformed activity file or ``--columns``: the message is one line."""


@dataclass(slots=True)
class RouterFigures:
    """The router's sums for one UTC day x model."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    usage: Decimal = Decimal(0)
    byok_usage_inference: Decimal = Decimal(0)
    rows: int = 0  # activity rows summed here (one per provider or endpoint)
    permaslugs: set[str] = field(default_factory=set)  # model_permaslug values other than the model id


class Activity:
    """Router figures per (UTC day, model), summed as rows are added. With ``first``/``last``
    (dates, inclusive) rows outside that range are counted in ``skipped`` and left out."""

    def __init__(self, first: date | None = None, last: date | None = None):
        self.first, self.last = first, last
        self.sums: dict[tuple[date, str], RouterFigures] = {}
        self.rows = 0
        self.skipped = 0
        self.span: tuple[date, date] | None = None  # first and last day of the rows kept

    def _slot(self, day: date, model: str, rows: int) -> RouterFigures | None:
        """The sums for (day, model), counting ``rows`` read; None (and skipped) outside the range."""
        if (self.first is not None and day < self.first) or (self.last is not None and day > self.last):
            self.skipped += rows
            return None
        self.rows += rows
        self.span = (day, day) if self.span is None else (min(self.span[0], day), max(self.span[1], day))
        s = self.sums.get((day, model))
        if s is None:
            s = self.sums[(day, model)] = RouterFigures()
        s.rows += rows
        return s

    def add(self, day: date, model: str, values: Mapping[str, Any]) -> None:
        """Add one checked row (``values``: counts as int, money as Decimal, ``model_permaslug``)."""
        s = self._slot(day, model, 1)
        if s is None:
            return
        s.requests += values["requests"]
        s.prompt_tokens += values["prompt_tokens"]
        s.completion_tokens += values["completion_tokens"]
        s.reasoning_tokens += values.get("reasoning_tokens") or 0
        s.usage = _SUMS.add(s.usage, values["usage"])
        byok = values.get("byok_usage_inference")
        if byok:
            s.byok_usage_inference = _SUMS.add(s.byok_usage_inference, byok)
        slug = values.get("model_permaslug")
        if slug and slug != model and len(s.permaslugs) < _MAX_SLUGS:
            s.permaslugs.add(slug)

    def merge(self, other: Activity) -> None:
        """Add another reading's sums (those outside this range are counted as skipped)."""
        self.skipped += other.skipped
        for (day, model), f in other.sums.items():
            s = self._slot(day, model, f.rows)
            if s is None:
                continue
            for name in ("requests", "prompt_tokens", "completion_tokens", "reasoning_tokens"):
                setattr(s, name, getattr(s, name) + getattr(f, name))
            s.usage = _SUMS.add(s.usage, f.usage)
            s.byok_usage_inference = _SUMS.add(s.byok_usage_inference, f.byok_usage_inference)
            for slug in sorted(f.permaslugs)[: max(0, _MAX_SLUGS - len(s.permaslugs))]:
                s.permaslugs.add(slug)


def parse_columns(text: str | None) -> dict[str, str]:
    """``"cost=Total Cost,date=Day"`` -> ``{"usage": "Total Cost", "date": "Day"}`` (our field ->
    the file's name). Names contain no comma; ``cost`` is an alias of ``usage``."""
    mapping: dict[str, str] = {}
    if not text:
        return mapping
    choices = ", ".join((*FIELDS, *ALIASES))
    for part in text.split(","):
        ours, eq, theirs = part.partition("=")
        ours, theirs = ours.strip(), theirs.strip()
        if not eq or not ours or not theirs:
            raise ActivityError(f"--columns {part.strip()!r}: write ours=theirs, e.g. cost=Total Cost")
        key = ALIASES.get(ours, ours)
        if key not in FIELDS:
            raise ActivityError(f"--columns {ours!r} is not a field: choose from {choices}")
        if key in mapping:
            raise ActivityError(f"--columns maps {ours!r} twice")
        mapping[key] = theirs
    return mapping


# ---------------------------------------------------------------- values


def _show(value: Any) -> str:
    text = repr(value) if not isinstance(value, Decimal) else repr(str(value))
    return text if len(text) <= 40 else text[:37] + "..."


def _day(value: Any) -> date:
    if not isinstance(value, str):
        raise ValueError(f"{_show(value)} is not a date: use YYYY-MM-DD (the UTC day)")
    return _day_text(value)


@lru_cache(maxsize=4096)  # a file names the same few hundred days over and over
def _day_text(value: str) -> date:
    text = value.strip()
    try:
        if _DAY.fullmatch(text):
            return date.fromisoformat(text)
        if _INSTANT.fullmatch(text):
            instant = datetime.fromisoformat(text)
            if instant.tzinfo is None:
                raise ValueError(f"{_show(value)} has no zone: give the UTC date (YYYY-MM-DD) or an instant with Z")
            return instant.astimezone(timezone.utc).date()
    except ValueError as exc:
        if "no zone" in str(exc):
            raise
        raise ValueError(f"{_show(value)} is no such day") from None
    raise ValueError(f"{_show(value)} is not a date: use YYYY-MM-DD (the UTC day)")


def _money(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, Decimal, str)):
        raise ValueError(f"{_show(value)} is not an amount in USD")
    if isinstance(value, str):
        if not _NUMBER.fullmatch(value.strip()):
            raise ValueError(f"{_show(value)} is not an amount in USD (a decimal number such as 0.0125)")
        amount = Decimal(value.strip())
    else:
        amount = Decimal(value)
    if not amount.is_finite():
        raise ValueError(f"{_show(value)} is not an amount in USD")
    if amount < 0:
        raise ValueError(f"{_show(value)} is negative")
    if amount == 0:
        return Decimal(0)
    if not -30 <= amount.adjusted() <= 12 or len(amount.as_tuple().digits) > 40:
        raise ValueError(f"{_show(value)} is out of range (10^-30 to 10^12 USD, at most 40 digits)")
    return amount


def _count(value: Any) -> int:
    if type(value) is int and 0 <= value < 10**18:  # the usual JSON count
        return value
    if isinstance(value, bool):
        raise ValueError(f"{_show(value)} is not a whole number")
    if isinstance(value, int):
        number = value
    elif isinstance(value, Decimal):
        if not value.is_finite() or value != value.to_integral_value():
            raise ValueError(f"{_show(value)} is not a whole number")
        number = int(value)
    elif isinstance(value, str) and (m := _COUNT.fullmatch(value.strip())):
        number = int(m.group(1))
    else:
        raise ValueError(f"{_show(value)} is not a whole number")
    if not 0 <= number < 10**18:
        raise ValueError(f"{_show(value)} is out of range (0 to 10^18)")
    return number


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{_show(value)} is not text")
    text = value.strip()
    if len(text) > _MAX_TEXT:
        raise ValueError(f"is longer than {_MAX_TEXT} characters")
    return text


def _checker(name: str) -> Callable[[Any], Any]:
    if name == "date":
        return _day
    if name in _MONEY_FIELDS:
        return _money
    return _count if name in _COUNT_FIELDS else _text


_CHECKS = tuple((name, _checker(name), name in REQUIRED) for name in FIELDS)


def _add_row(activity: Activity, row: Mapping[str, Any], labels: tuple[str, ...], where: str) -> None:
    """Check one row and add it: ``row`` maps the file's names (``labels``, in ``FIELDS`` order)
    to raw values."""
    values: dict[str, Any] = {}
    for (name, check, required), label in zip(_CHECKS, labels):
        raw = row.get(label, _ABSENT)
        if raw is _ABSENT or raw is None or (type(raw) is str and not raw):
            if required:
                problem = "is missing" if raw is _ABSENT else "is empty"
                raise ActivityError(f"{where}: {label} {problem}")
            continue
        try:
            values[name] = check(raw)
        except ValueError as exc:
            raise ActivityError(f"{where}: {label}: {exc}") from None
    if not values["model"]:
        raise ActivityError(f"{where}: {labels[1]} is empty")
    activity.add(values["date"], values["model"], values)


# ---------------------------------------------------------------- files


def _labels(columns: Mapping[str, str]) -> tuple[str, ...]:
    """The file's name for each of ``FIELDS``."""
    return tuple(columns.get(name, name) for name in FIELDS)


def read_json_chunks(chunks: Iterable[str], activity: Activity, *, name: str,
                     columns: Mapping[str, str] | None = None) -> Activity:
    """Add the rows of a JSON document given as text chunks (see ``read_activity``)."""
    labels = _labels(columns or {})
    try:
        for where, item in iter_items(chunks):
            where = f"{name}: {where}"
            if not isinstance(item, dict):
                raise ActivityError(f"{where}: expected an object, found {type(item).__name__}")
            _add_row(activity, item, labels, where)
    except JSONStreamError as exc:
        raise ActivityError(f"{name}: {exc}") from None
    return activity


def _text_lines(binary: IO[bytes], name: str) -> Iterator[str]:
    """The file's lines as text (a leading BOM dropped); bad UTF-8 names its line, and so does a
    line longer than ``_MAX_LINE`` bytes (memory stays bounded whatever the file holds)."""
    number = 0
    while line := binary.readline(_MAX_LINE + 1):
        number += 1
        if len(line) > _MAX_LINE:
            raise ActivityError(f"{name}: line {number}: longer than {_MAX_LINE:,} bytes")
        if number == 1:
            line = line.removeprefix(codecs.BOM_UTF8)
        try:
            yield line.decode("utf-8")
        except UnicodeDecodeError:
            raise ActivityError(f"{name}: line {number}: not UTF-8 text") from None


def _text_chunks(binary: IO[bytes], name: str, size: int) -> Iterator[str]:
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    offset = 0
    while True:
        chunk = binary.read(size)
        try:
            text = decoder.decode(chunk, final=not chunk)
        except UnicodeDecodeError as exc:
            raise ActivityError(f"{name}: not UTF-8 text (byte {offset + max(exc.start, 0):,})") from None
        offset += len(chunk)
        if text:
            yield text
        if not chunk:
            return


def _read_csv(lines: Iterable[str], activity: Activity, name: str, columns: Mapping[str, str]) -> Activity:
    labels = _labels(columns)
    reader = csv.reader(lines)
    try:
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise ActivityError(f"{name}: the file is empty") from None
        for f, wanted in zip(FIELDS, labels):
            if header.count(wanted) > 1:
                raise ActivityError(f"{name}: line 1: the header has {wanted!r} twice")
            if wanted in header:
                continue
            if f in columns:
                raise ActivityError(f"{name}: line 1: --columns {f}={wanted}: no column {wanted!r} in the header")
            if f in REQUIRED:
                hint = "" if columns else f" (map another header with --columns {f}=NAME)"
                raise ActivityError(f"{name}: line 1: the header has no {wanted!r} column{hint}")
        width = len(header)
        for record in reader:
            if not record or (len(record) == 1 and not record[0].strip()):
                continue  # a blank line
            where = f"{name}: line {reader.line_num}"
            if len(record) != width:
                raise ActivityError(f"{where}: {len(record)} cells, the header has {width}")
            _add_row(activity, dict(zip(header, record)), labels, where)
    except csv.Error as exc:
        raise ActivityError(f"{name}: line {reader.line_num}: {exc}") from None
    return activity


def read_activity(binary: IO[bytes], *, name: str, columns: Mapping[str, str] | None = None,
                  first: date | None = None, last: date | None = None, chunk_size: int = 1 << 16) -> Activity:
    """Read an activity file (JSON or CSV, UTF-8, see the module docstring) from a binary stream
    and return its rows summed per (UTC day, model), those from ``first`` to ``last`` only.
    ``name`` is how errors call the file."""
    buffered = binary if hasattr(binary, "peek") else io.BufferedReader(binary)  # type: ignore[arg-type]
    head = buffered.peek(4096)
    if not head:
        raise ActivityError(f"{name}: the file is empty")
    activity = Activity(first, last)
    if head.removeprefix(codecs.BOM_UTF8).lstrip()[:1] in (b"[", b"{"):
        return read_json_chunks(_text_chunks(buffered, name, chunk_size), activity, name=name, columns=columns)
    return _read_csv(_text_lines(buffered, name), activity, name, columns or {})
