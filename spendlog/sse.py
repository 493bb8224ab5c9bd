"""Server-sent events, incrementally and cheaply.

``EventSplitter`` cuts a byte stream at event boundaries as the bytes arrive, wherever the network
split them: ``take_complete`` hands back all the complete events of a read as one bytes object
(so callers can search many events at C speed), ``split_events`` cuts that into raw events. A raw
event is the exact bytes of the event including the blank line that ends it, so joining the raw
events (plus ``pending``) gives back the input byte for byte. Boundaries are found with
``bytes.find`` for LF streams and one regex scan when CRs appear; nothing is decoded or
JSON-parsed here.

Memory: an unfinished event is held at most ``MAX_EVENT_BYTES`` (16 MiB) long; past that,
``take_complete`` raises ``EventTooLarge`` (keeping what it held) instead of buffering a stream
that never ends an event. The check is one length comparison, made only when a tail is kept. An
unfinished event past 64 KiB grows in place (a ``bytearray``) rather than being joined again with
every read; whatever is handed out is ``bytes``.

``parse_event`` reads one raw event per the SSE spec (``event:``/``data:`` fields, multi-line
data joined with ``\\n``, ``:`` comment lines, ``\\n``, ``\\r\\n`` or ``\\r`` line ends). Callers use
it only on the few events they care about.
"""

from __future__ import annotations

import re

__all__ = ["EventSplitter", "EventTooLarge", "split_events", "parse_event", "MAX_EVENT_BYTES"]

# An event ends at an empty line: LF LF, LF CR LF (covers CRLF CRLF), or CR CR.
_BOUNDARY = re.compile(rb"\n\r?\n|\r\r")
# The largest unfinished event held. Real events are small; the largest are whole answers repeated
# in a final event (Responses API) or base64 images, a few MiB.
MAX_EVENT_BYTES = 16 * 1024 * 1024
_GATHER = 64 * 1024  # an unfinished event longer than this is held in a bytearray that grows in place


class EventTooLarge(ValueError):
    """More than ``limit`` bytes arrived without an event boundary."""

    def __init__(self, limit: int):
        super().__init__(f"more than {limit} bytes without an event boundary")
        self.limit = limit


class EventSplitter:
    """Cuts a byte stream at event boundaries; keeps the unfinished tail (at most ``limit`` bytes)."""

    __slots__ = ("pending", "limit")

    def __init__(self, limit: int = MAX_EVENT_BYTES) -> None:
        self.pending = b""
        self.limit = limit

    def take_complete(self, chunk: bytes) -> bytes:
        """The complete events ``chunk`` finishes, as one bytes object (b"" when none); the rest
        is kept for the next call. Raises ``EventTooLarge`` (``pending`` left as it was) when the
        rest would pass ``limit``."""
        pending = self.pending
        if not pending and chunk.endswith(b"\n\n"):  # a read of whole events, the usual case
            return chunk
        if pending:
            scan = max(len(pending) - 2, 0)  # earlier bytes held no boundary; one may straddle
            if type(pending) is bytearray:  # a long unfinished event: grown in place, not joined again
                pending += chunk
                data = pending
            else:
                data = pending + chunk
        else:
            data, scan = chunk, 0
        if data.find(b"\r", scan) < 0:  # the common case: LF line ends, the only boundary is LF LF
            end = data.rfind(b"\n\n", scan)
            end = end + 2 if end >= 0 else 0
        else:
            end = 0
            for m in _BOUNDARY.finditer(data, scan):
                end = m.end()
        if end == len(data):
            self.pending = b""
            return data if type(data) is bytes else bytes(data)
        if len(data) - end > self.limit:
            if data is pending:
                del pending[len(pending) - len(chunk):]
            raise EventTooLarge(self.limit)
        if end == 0:
            self.pending = data if len(data) <= _GATHER or data is pending else bytearray(data)
            return b""
        rest = data[end:]
        self.pending = rest if len(rest) <= _GATHER or type(rest) is bytearray else bytearray(rest)
        return bytes(data[:end]) if data is pending else data[:end]
    def split(self, chunk: bytes) -> list[bytes]:
        """The events completed by ``chunk``, in order."""
        return split_events(self.take_complete(chunk))

    def take_pending(self) -> bytes:
        """The unfinished tail (at end of stream), and forget it."""
        data, self.pending = self.pending, b""
        return data if type(data) is bytes else bytes(data)


def split_events(data: bytes) -> list[bytes]:
    """``data`` (complete events) cut into raw events, each with the blank line that ends it."""
    events = []
    start = 0
    if b"\r" not in data:
        end = data.find(b"\n\n")
        while end >= 0:
            end += 2
            events.append(data[start:end])
            start = end
            end = data.find(b"\n\n", end)
    else:
        for m in _BOUNDARY.finditer(data):
            end = m.end()
            events.append(data[start:end])
            start = end
    if start < len(data):
        events.append(data[start:])  # no boundary at the end: only when called on a tail
    return events


def parse_event(raw: bytes) -> tuple[str | None, bytes | None]:
    """``(event name, data)`` of one raw event; data is None when the event has no ``data`` field."""
    if raw.startswith(b"data:"):  # the common case: one data line
        body = raw.rstrip(b"\r\n")
        if b"\n" not in body and b"\r" not in body:
            body = body[5:]
            return None, body[1:] if body.startswith(b" ") else body
    name: str | None = None
    data: list[bytes] | None = None
    for line in raw.splitlines():
        if not line or line.startswith(b":"):
            continue
        field, sep, value = line.partition(b":")
        if sep and value.startswith(b" "):
            value = value[1:]
        if field == b"data":
            if data is None:
                data = []
            data.append(value)
        elif field == b"event":
            name = value.decode("utf-8", "replace")
    return name, (b"\n".join(data) if data is not None else None)
