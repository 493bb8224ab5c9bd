"""Reading a large JSON array one item at a time, in bounded memory.

``iter_items(chunks)`` takes the document as an iterable of text chunks and yields ``(where,
item)`` for each element of the top-level array, or of the array under ``key`` (``"data"``) when the
document is an object. Memory is bounded by one item plus one chunk, whatever the file's size: the
buffer keeps only what has not been decoded yet. Each item, and each other value of the top-level
object, is decoded with ``json.JSONDecoder.raw_decode``, so the syntax is exactly the standard
library's; an item (or other value) longer than ``MAX_VALUE_CHARS`` is refused, since an activity
row is a few hundred characters. Numbers with a fraction or an exponent become ``Decimal`` (never
float), integers stay ``int``; ``NaN``/``Infinity`` and numbers longer than ``MAX_NUMBER_CHARS``
are refused.

Every problem is a ``JSONStreamError``: one line naming the item (``data[12]``), the line and
column, and what is wrong.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import Any

__all__ = ["JSONStreamError", "MAX_VALUE_CHARS", "MAX_NUMBER_CHARS", "iter_items"]

MAX_VALUE_CHARS = 1 << 20  # one item or one other top-level value
MAX_NUMBER_CHARS = 60
_WS = re.compile(r"[ \t\n\r]*")


class JSONStreamError(ValueError):
    """A malformed or truncated document; the message is one line."""


class _BadNumber(Exception):
    """Raised from inside the decoder's number hooks (not a ValueError, so never read as 'need more')."""


def _float(text: str) -> Decimal:
    if len(text) > MAX_NUMBER_CHARS:
        raise _BadNumber(f"a number of {len(text)} characters")
    try:
        return Decimal(text)
    except ArithmeticError:  # an exponent past Decimal's range
        raise _BadNumber(f"the number {text[:20]}... (out of range)") from None


def _int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise _BadNumber(f"a number of {len(text)} characters")
    return int(text)


def _constant(text: str):
    raise _BadNumber(f"{text} (not a number JSON allows)")


_DECODER = json.JSONDecoder(parse_float=_float, parse_int=_int, parse_constant=_constant)


class _Reader:
    def __init__(self, chunks: Iterable[str], key: str):
        self._chunks = iter(chunks)
        self.key = key
        self.buf = ""
        self.pos = 0
        self.eof = False
        self.lines = 0  # newlines in the text already dropped from the buffer
        self.tail = 0  # characters after the last dropped newline
        self.where = "the document"

    # -- the buffer

    def _fill(self) -> bool:
        """Read one more chunk (dropping what is decoded); False at the end of the input."""
        if self.eof:
            return False
        chunk = next((c for c in self._chunks if c), None)
        if chunk is None:
            self.eof = True
            return False
        if self.pos:  # positions move only when there is more to read
            dropped = self.buf[: self.pos]
            n = dropped.count("\n")
            self.lines += n
            self.tail = len(dropped) - dropped.rfind("\n") - 1 if n else self.tail + len(dropped)
            self.buf, self.pos = self.buf[self.pos :], 0
        self.buf += chunk
        return True

    def _at(self, pos: int) -> str:
        """'line L, column C' of a buffer position."""
        newline = self.buf.rfind("\n", 0, pos)
        line = self.lines + self.buf.count("\n", 0, pos) + 1
        column = pos - newline if newline >= 0 else self.tail + pos + 1
        return f"line {line}, column {column}"

    def fail(self, message: str, pos: int | None = None) -> JSONStreamError:
        return JSONStreamError(f"{self.where} ({self._at(self.pos if pos is None else pos)}): {message}")

    def peek(self) -> str:
        """The next character after whitespace ('' at the end of the input)."""
        while True:
            self.pos = _WS.match(self.buf, self.pos).end()
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self._fill():
                return ""

    def expect(self, chars: str, what: str) -> str:
        c = self.peek()
        if c == "":
            raise self.fail(f"the JSON ends early (expected {what}): is the file truncated?")
        if c not in chars:
            raise self.fail(f"expected {what}, found {c!r}")
        self.pos += 1
        return c

    def value(self) -> Any:
        """Decode the value at the current position, reading more input until it is whole."""
        self.peek()
        while True:
            try:
                obj, end = _DECODER.raw_decode(self.buf, self.pos)
            except _BadNumber as exc:
                raise self.fail(f"refused {exc}") from None
            except json.JSONDecodeError as exc:
                # Far from the buffer's end, and not an open string: more input cannot mend it.
                if not exc.msg.startswith("Unterminated") and exc.pos < len(self.buf) - 2 * MAX_NUMBER_CHARS:
                    raise self.fail(exc.msg, exc.pos) from None
                if len(self.buf) - self.pos > MAX_VALUE_CHARS:
                    raise self.fail(f"a value longer than {MAX_VALUE_CHARS:,} characters (or malformed JSON)") from None
                if self._fill():
                    continue
                if exc.pos >= len(self.buf) or exc.msg.startswith("Unterminated"):
                    raise self.fail("the JSON ends early: is the file truncated?") from None
                raise self.fail(exc.msg, exc.pos) from None
            if (type(obj) in (int, Decimal) and len(self.buf) - end <= 2 * MAX_NUMBER_CHARS
                    and self._fill()):
                continue  # a bare number may go on in the next chunk (1 -> 1e-5)
            if end - self.pos > MAX_VALUE_CHARS:
                raise self.fail(f"a value longer than {MAX_VALUE_CHARS:,} characters")
            self.pos = end
            return obj

    # -- the document

    def items(self) -> Iterator[tuple[str, Any]]:
        first = self.peek()
        if first == "[":
            yield from self._array("item ")
        elif first == "{":
            yield from self._object()
        elif first == "":
            raise JSONStreamError("the file is empty")
        else:
            raise self.fail(f"expected a JSON array or an object with {self.key!r}, found {first!r}")
        self.where = "after the JSON"
        if self.peek() != "":
            raise self.fail("unexpected data after the JSON document")

    def _array(self, label: str) -> Iterator[tuple[str, Any]]:
        self.expect("[", "'['")
        index = 0
        self.where = f"{label}[0]"
        if self.peek() == "]":
            self.pos += 1
            return
        while True:
            self.where = f"{label}[{index}]"
            yield self.where, self.value()
            index += 1
            if self.expect(",]", "',' or ']'") == "]":
                return

    def _object(self) -> Iterator[tuple[str, Any]]:
        self.expect("{", "'{'")
        found = False
        if self.peek() == "}":
            self.pos += 1
        else:
            while True:
                self.where = "a key of the top-level object"
                if self.peek() != '"':
                    self.expect('"', "a key")
                name = self.value()
                self.expect(":", "':'")
                if name == self.key:
                    if found:
                        raise self.fail(f"the key {self.key!r} appears twice")
                    found = True
                    self.where = f"the value of {self.key!r}"
                    if self.peek() != "[":
                        raise self.fail(f"{self.key!r} must be an array")
                    yield from self._array(self.key)
                else:
                    self.where = f"the value of {name[:40]!r}"
                    self.value()  # bounded by MAX_VALUE_CHARS
                self.where = "the top-level object"
                if self.expect(",}", "',' or '}'") == "}":
                    break
        if not found:
            raise JSONStreamError(f"the JSON object has no {self.key!r} array")


def iter_items(chunks: Iterable[str], key: str = "data") -> Iterator[tuple[str, Any]]:
    """(where, item) for each element of the document's array (see the module docstring);
    ``where`` is ``data[3]``, or ``item [3]`` in a top-level array. ``chunks``: the text in pieces
    of any size, e.g. ``iter(lambda: fh.read(65536), "")``."""
    yield from _Reader(chunks, key).items()
