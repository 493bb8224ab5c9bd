"""Content-Encoding decoders whose output per call is bounded, so that no answer (a gzip bomb
included) is ever decoded further than the reader asks for.

``decoder_for(encoding)`` gives an object with ``decode(data, most) -> bytes`` (at most ``most``
bytes; the decoder keeps the input it has not decoded yet) and ``pending`` (true while there is
more to get: call ``decode(b"", most)``), or None when the encoding cannot be read that way.
gzip and deflate use zlib (``max_length``); br needs google's ``brotli`` >= 1.2
(``process(data, max_output_length=n)``): with an older binding, or brotlicffi, a ``br`` answer is
passed on unread.
"""

from __future__ import annotations

import zlib

__all__ = ["decoder_for"]


def decoder_for(encoding: str):
    """A decoder with a bounded output per call for ``encoding``, or None if there is none."""
    if encoding in ("gzip", "x-gzip", "deflate"):
        return _Zlib()
    if encoding == "br":
        try:
            import brotli  # type: ignore[import-not-found]
        except ImportError:
            return None
        inner = brotli.Decompressor()
        return _Brotli(inner) if hasattr(inner, "can_accept_more_data") else None
    return None


class _Zlib:
    """gzip or deflate (zlib header detected). ``decode(data, most)`` returns at most ``most``
    bytes; ``pending`` is true while input is left (``decode(b"", most)`` goes on)."""

    __slots__ = ("_inner",)

    def __init__(self):
        self._inner = zlib.decompressobj(zlib.MAX_WBITS | 32)

    def decode(self, data: bytes, most: int) -> bytes:
        inner = self._inner
        if inner.unconsumed_tail:
            data = inner.unconsumed_tail + data
        return inner.decompress(data, most)

    @property
    def pending(self) -> bool:
        return bool(self._inner.unconsumed_tail)

    def flush(self) -> bytes:
        return self._inner.flush()


class _Brotli:
    """brotli >= 1.2 (``process(data, max_output_length=n)``), with ``_Zlib``'s interface."""

    __slots__ = ("_inner", "pending")

    def __init__(self, inner):
        self._inner = inner
        self.pending = False

    def decode(self, data: bytes, most: int) -> bytes:
        out = self._inner.process(data, max_output_length=most)
        self.pending = len(out) >= most and not self._inner.is_finished()  # more output may be waiting
        return out
