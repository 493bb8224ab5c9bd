"""Time-ordered unique ids (UUIDv7, RFC 9562), generated on the client.

Upstream ids are not unique (routers repeat them), so every record gets one of these.
``uuid7()`` ids from one process are strictly increasing; across processes, and for ids stamped
with a past moment (``uuid7(ms)``: a call's start, when the writer builds its record), they sort
by millisecond.

The 62 random bits come from a generator seeded from ``os.urandom`` once per process (and again
after a fork), not from ``os.urandom`` per id: that call releases the GIL, and on a busy process
getting it back can take milliseconds (the proxy's event loop waited ~50 µs per id on average).
The ids need to be unique, not unguessable.
"""

from __future__ import annotations

import os
import random
import threading
import time

__all__ = ["uuid7"]

_lock = threading.Lock()
_last = 0  # last (ms << 12 | counter) handed out in this process
_random = random.Random(os.urandom(32))


def uuid7(ms: int | None = None) -> str:
    """Return a new UUIDv7 as its canonical 36-character string.

    ``ms`` (Unix milliseconds) stamps an id for a moment already past, such as a call's start
    when its record is built later: such ids take 74 random bits (RFC 9562's random ``rand_a``)
    instead of this process's counter, so they are unique but not ordered within a millisecond."""
    global _last
    if ms is not None:
        counter = _random.getrandbits(12)
    else:
        with _lock:
            stamp = (time.time_ns() // 1_000_000) << 12
            if stamp <= _last:
                stamp = _last + 1  # same millisecond: bump the 12-bit counter (spills into ms if needed)
            _last = stamp
        ms, counter = stamp >> 12, stamp & 0xFFF
    rand = _random.getrandbits(62)
    value = (ms << 80) | (0x7 << 76) | (counter << 64) | (0b10 << 62) | rand
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _reset_after_fork() -> None:
    global _last, _lock, _random
    _lock = threading.Lock()  # a lock held by another thread at fork time would never be released here
    _last = 0
    _random = random.Random(os.urandom(32))  # never the parent's sequence


os.register_at_fork(after_in_child=_reset_after_fork)
