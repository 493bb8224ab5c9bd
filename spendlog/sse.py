"""Server-sent events, incrementally and cheaply.

``EventSplitter`` cuts a byte stream into raw events as the bytes arrive, wherever the network
split them. A raw event is the exact bytes of the event including the blank line that ends it, so
joining the raw events (plus ``pending``) gives back the input byte for byte. Boundaries are found
with one C-level regex scan; nothing is decoded or JSON-parsed here.

``parse_event`` reads one raw event per the SSE spec (``event:``/``data:`` fields, multi-line
data joined with ``\\n``, ``:`` comment lines, ``\\n``, ``\\r\\n`` or ``\\r`` line ends). Callers use
it only on the few events they care about.
"""

from __future__ import annotations

import re

__all__ = ["EventSplitter", "parse_event"]

# An event ends at an empty line: LF LF, LF CR LF (covers CRLF CRLF), or CR CR.
_BOUNDARY = re.compile(rb"\n\r?\n|\r\r")


class EventSplitter:
    """Splits a byte stream into complete raw SSE events; keeps the unfinished tail."""

    __slots__ = ("pending", "_scan_from")

    def __init__(self) -> None:
        self.pending = b""
        self._scan_from = 0  # where a boundary could start in ``pending`` (earlier bytes were scanned)

    def split(self, chunk: bytes) -> list[bytes]:
        """The events completed by ``chunk``, in order."""
        if self.pending:
            data = self.pending + chunk
            scan = self._scan_from
        else:
            data = chunk
            scan = 0
        events = []
        start = 0
        for m in _BOUNDARY.finditer(data, scan):
            end = m.end()
            events.append(data[start:end])
            start = end
        if start:
            data = data[start:]
        self.pending = data
        # a boundary is at most 3 bytes long; its first 2 bytes may already be here
        self._scan_from = max(len(data) - 2, 0)
        return events

    def take_pending(self) -> bytes:
        """The unfinished tail (at end of stream), and forget it."""
        data, self.pending, self._scan_from = self.pending, b"", 0
        return data


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
