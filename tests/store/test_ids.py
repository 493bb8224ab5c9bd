"""Record ids (``spendlog.db.ids.uuid7``): valid UUIDv7, strictly increasing in one process, and
never repeated by a forked child (its random bits are reseeded, not inherited)."""

from __future__ import annotations

import os
import uuid

from spendlog.db.ids import uuid7


def test_ids_are_uuid7_and_strictly_increasing():
    ids = [uuid7() for _ in range(20_000)]  # many per millisecond: the counter must keep order
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    for text in ids[:: 997]:
        u = uuid.UUID(text)
        assert u.version == 7 and u.variant == uuid.RFC_4122 and str(u) == text


def test_a_forked_child_never_repeats_the_parents_ids():
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: send 1,000 ids and leave without running the parent's cleanup
        try:
            os.write(write, "\n".join(uuid7() for _ in range(1000)).encode())
        finally:
            os._exit(0)
    os.close(write)
    parent = {uuid7() for _ in range(1000)}
    chunks = []
    while chunk := os.read(read, 65536):
        chunks.append(chunk)
    os.close(read)
    os.waitpid(pid, 0)
    child = set(b"".join(chunks).decode().split("\n"))
    assert len(child) == 1000
    # same milliseconds and counters are likely; the 62 random bits must still differ
    assert not parent & child
    assert {c[-12:] for c in child}.isdisjoint(p[-12:] for p in parent)


def test_ids_stamped_with_a_past_moment_carry_that_millisecond_and_stay_unique():
    ms = 1_764_115_200_123  # 2025-11-26 00:00:00.123 UTC
    ids = {uuid7(ms) for _ in range(20_000)}
    assert len(ids) == 20_000
    for text in list(ids)[:50]:
        u = uuid.UUID(text)
        assert u.version == 7 and u.variant == uuid.RFC_4122
        assert u.int >> 80 == ms
    assert uuid7(ms) < uuid7(ms + 1) < uuid7()
