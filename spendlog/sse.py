"""Server-sent events, incrementally and cheaply.

``EventSplitter`` cuts a byte stream at event boundaries as the bytes arrive, wherever the network
split them: ``take_complete`` hands back all the complete events of a read as one bytes object
(so callers can search many events at C speed), ``split_events`` cuts that into raw events. A raw
event is the exact bytes of the event including the blank line that ends it, so joining the raw
events (plus ``pending``) gives back the input byte for byte. Boundaries are found with
``bytes.find`` for LF streams and one regex scan when CRs appear; nothing is decoded or
JSON-parsed here.

``parse_event`` reads one raw event per the SSE spec (``event:``/``data:`` fields, multi-line
data joined with ``\\n``, ``:`` comment lines, ``\\n``, ``\\r\\n`` or ``\\r`` line ends). Callers use
it only on the few events they care about.
"""

from __future__ import annotations

import re

__all__ = ["EventSplitter", "split_events", "parse_event"]

# An event ends at an empty line: LF LF, LF CR LF (covers CRLF CRLF), or CR CR.
_BOUNDARY = re.compile(rb"\n\r?\n|\r\r")


class EventSplitter:
    """Cuts a byte stream at event boundaries; keeps the unfinished tail."""

    __slots__ = ("pending",)

    def __init__(self) -> None:
        self.pending = b""

    def take_complete(self, chunk: bytes) -> bytes:
        """The complete events ``chunk`` finishes, as one bytes object (b"" when none); the rest
        is kept for the next call."""
        pending = self.pending
        if not pending and chunk.endswith(b"\n\n"):  # a read of whole events, the usual case
            return chunk
        if pending:
            data = pending + chunk
            scan = max(len(pending) - 2, 0)  # earlier bytes held no boundary; one may straddle
        else:
            data, scan = chunk, 0
        if b"\r" not in data:  # the common case: LF line ends, the only boundary is LF LF
            end = data.rfind(b"\n\n", scan)
            end = end + 2 if end >= 0 else 0
        else:
            end = 0
            for m in _BOUNDARY.finditer(data, scan):
                end = m.end()
        if end == len(data):
            self.pending = b""
            return data
        self.pending = data[end:]
        return data[:end]

    def split(self, chunk: bytes) -> list[bytes]:
        """The events completed by ``chunk``, in order."""
        return split_events(self.take_complete(chunk))

    def take_pending(self) -> bytes:
        """The unfinished tail (at end of stream), and forget it."""
        data, self.pending = self.pending, b""
        return data


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
