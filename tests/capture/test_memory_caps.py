"""Hostile answers cannot take the memory (issue 12, finding 5).

A gzip bomb (265 KB that decode to 256 MiB of zeros) sent as a whole JSON answer and as an SSE
stream with no event boundary, and a plain 64 MiB stream with no event boundary, go through a real
``spendlog proxy`` process and through the hook in an app process. Each time the caller gets the
upstream's bytes exactly, the process's peak memory (VmHWM) stays under 200 MB, and the
call is recorded with the reason spendlog stopped reading (``body_too_large``, ``event_too_large``),
usage unknown. The caps themselves: docs/reliability.md, spendlog/answer.py, spendlog/sse.py.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib

import httpx
import pytest
from fixture_proxy import CHAT, Recorder, rows
from helpers import run_python

PEAK_MB = 200
KEY = "sr_test_" + "b" * 20 + "bomb"


def _gzip_bomb(mib: int) -> bytes:
    """A valid gzip member holding ``mib`` MiB of zero bytes: one MiB deflated after a full flush
    (which makes every block independent), repeated, then a final empty block and the trailer."""
    zeros = bytes(1 << 20)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = deflate.compress(zeros) + deflate.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(mib):
        crc = zlib.crc32(zeros, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    return header + block * mib + b"\x03\x00" + struct.pack("<II", crc, (mib << 20) & 0xFFFFFFFF)


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return _gzip_bomb(256)


CASES = {  # name: (content type, gzip?, request streamed?, error type recorded)
    "json-gzip": ("application/json", True, False, "body_too_large"),
    "sse-gzip": ("text/event-stream", True, True, "event_too_large"),
    "sse-plain": ("text/event-stream", False, True, "event_too_large"),
}


def _payload(case: str, bomb: bytes) -> bytes:
    return bomb if CASES[case][1] else b"data: " + b"a" * (64 << 20)  # no blank line anywhere


def _upstream(case: str, payload: bytes) -> Recorder:
    ctype, gzipped, _, _ = CASES[case]
    head = f"HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\n"
    if gzipped:
        head += "Content-Encoding: gzip\r\n"
    if ctype == "application/json":
        head += f"Content-Length: {len(payload)}\r\n"
    response = (head + "Connection: close\r\n\r\n").encode() + payload
    return Recorder(lambda request: response, timeout=60)


def _request_body(case: str) -> dict:
    return {**CHAT, "stream": True} if CASES[case][2] else CHAT


def _check_record(db_url: str, case: str) -> None:
    [row] = rows(db_url, expect=1)
    assert (row.status_code, row.error_type) == (200, CASES[case][3]), row.error_message
    assert row.total_tokens is None and row.cost_usd is None and row.cost_source == "missing"


@pytest.mark.parametrize("case", list(CASES))
def test_bombs_through_a_real_proxy_pass_untouched_in_bounded_memory(case, bomb, proxy_process, sqlite_url):
    payload = _payload(case, bomb)
    upstream = _upstream(case, payload)
    try:
        proc = proxy_process("--upstream", upstream.origin + "/v1", "--db", sqlite_url)
        digest, size = hashlib.sha256(), 0
        with httpx.stream("POST", proc.base_url + "/chat/completions", json=_request_body(case), timeout=60,
                          headers={"Authorization": f"Bearer {KEY}", "Accept-Encoding": "gzip"}) as resp:
            assert resp.status_code == 200
            for chunk in resp.iter_raw():
                digest.update(chunk)
                size += len(chunk)
        peak = proc.peak_rss_mb()
        code, _, err = proc.stop()
    finally:
        upstream.stop()
    assert (size, digest.hexdigest()) == (len(payload), hashlib.sha256(payload).hexdigest())
    assert peak < PEAK_MB, f"the proxy peaked at {peak:.0f} MB"
    assert code == 0, err
    _check_record(sqlite_url, case)


# (peak memory as VmHWM, not ru_maxrss: that one keeps the peak of the test process the app was forked from)
HOOK_APP = """
import hashlib, json
import httpx2, spendlog
from spendlog.transport import LoggingTransport
digest, size = hashlib.sha256(), 0
with httpx2.Client(transport=LoggingTransport(httpx2.HTTPTransport()), timeout=60) as client:
    with client.stream("POST", {url!r}, json={body!r}, headers={{"Authorization": "Bearer {key}"}}) as resp:
        for chunk in resp.iter_raw():
            digest.update(chunk)
            size += len(chunk)
spendlog.flush(10)
peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({{"size": size, "sha256": digest.hexdigest(), "peak_mb": peak_kb / 1024}}))
"""


@pytest.mark.parametrize("case", list(CASES))
def test_bombs_through_the_hook_pass_untouched_in_bounded_memory(case, bomb, sqlite_url):
    payload = _payload(case, bomb)
    upstream = _upstream(case, payload)
    try:
        app = HOOK_APP.format(url=upstream.origin + "/v1/chat/completions", body=_request_body(case), key=KEY)
        result = run_python(app, env={"SPENDLOG_DB_URL": sqlite_url}, timeout=120)
    finally:
        upstream.stop()
    assert result.returncode == 0, result.stderr[-2000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert (seen["size"], seen["sha256"]) == (len(payload), hashlib.sha256(payload).hexdigest())
    assert seen["peak_mb"] < PEAK_MB, f"the app peaked at {seen['peak_mb']:.0f} MB"
    _check_record(sqlite_url, case)
