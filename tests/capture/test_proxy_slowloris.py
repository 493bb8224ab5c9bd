"""Slow clients cannot hold the proxy, nor starve the ledger of file descriptors (issue 12, finding 8).

A real ``spendlog proxy`` under ``ulimit -n 256`` with 240 half-sent requests open: ``/healthz``
and real chat completions are still answered, every slow connection is closed once its head
deadline passes (or sooner, to make room), and every answered call is stored (none spooled or
dropped). The head timeout is a deadline for the whole request head, not an idle timer: a client
that keeps sending a header byte at a time is closed on time too. With a proxy token, a request
without it is refused as soon as its head is read, and its connection does not wait for a body.
"""

from __future__ import annotations

import json
import resource
import socket
import time

import httpx
import pytest
from fixture_proxy import CHAT, rows

from spendlog.proxy.connections import LEDGER_RESERVE, connection_budget

HEAD_TIMEOUT = 3.0
PARTIAL_HEAD = b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"


def _read_to_eof(sock: socket.socket, within: float) -> bytes | None:
    """What the server sends until it closes, or None if it is still open after ``within`` seconds."""
    deadline = time.monotonic() + within
    chunks = []
    while True:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return b"".join(chunks)
        except socket.timeout:
            return None
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


@pytest.mark.slow
def test_half_sent_requests_under_a_small_file_limit_cannot_hold_the_proxy(fake_upstream, proxy_process, sqlite_url):
    proc = proxy_process("--upstream", fake_upstream.base_url, "--db", sqlite_url,
                         "--header-timeout", str(HEAD_TIMEOUT), nofile=256)
    cap = int(proc.banner.split("up to ")[1].split()[0])
    assert 8 <= cap <= (256 - LEDGER_RESERVE) // 2  # 240 slow connections do not fit
    slow = []
    for _ in range(240):
        sock = socket.create_connection(("127.0.0.1", proc.port), timeout=5)
        sock.sendall(PARTIAL_HEAD)  # and never the blank line that ends it
        slow.append(sock)
    dribbler = socket.create_connection(("127.0.0.1", proc.port), timeout=5)
    try:
        assert httpx.get(proc.origin + "/healthz", timeout=5).status_code == 200
        auth = {"Authorization": f"Bearer {fake_upstream.api_key}"}
        answered = 0
        for stream in (False, True, False):
            r = httpx.post(proc.base_url + "/chat/completions", json={**CHAT, "stream": stream}, headers=auth,
                           timeout=5)
            assert r.status_code == 200
            answered += 1
        # a header byte every 0.25 s: never idle, yet past its deadline all the same
        dribbled_until = time.monotonic() + 3 * HEAD_TIMEOUT
        closed = False
        for byte in PARTIAL_HEAD * 4:
            if time.monotonic() > dribbled_until:
                break
            try:
                dribbler.sendall(bytes([byte]))
            except OSError:
                closed = True
                break
            time.sleep(0.25)
        assert closed or _read_to_eof(dribbler, 0.5) is not None, "a dribbling head outlived its deadline"
        ends = [_read_to_eof(sock, HEAD_TIMEOUT + 5) for sock in slow]
        assert all(end is not None for end in ends), f"{ends.count(None)} slow connections still open"
        seen = {end.split(b" ", 2)[1] if end.startswith(b"HTTP/1.1 ") else b"closed" for end in ends}
        assert b"408" in seen and seen <= {b"408", b"503", b"closed"}, seen  # late heads, and room made
        health = httpx.get(proc.origin + "/healthz", timeout=5).json()
    finally:
        for sock in [*slow, dribbler]:
            sock.close()
    code, _, err = proc.stop()
    assert code == 0, err
    found = rows(sqlite_url, expect=answered)
    assert [r.status_code for r in found] == [200] * answered
    assert (health["writer"]["spooled"], health["writer"]["dropped"]) == (0, 0)


def test_a_request_without_the_proxy_token_is_refused_without_waiting_for_its_body(fake_upstream, proxy_process):
    token = "tok-" + "s" * 20
    proc = proxy_process("--upstream", fake_upstream.base_url, env={"SPENDLOG_PROXY_TOKEN": token})
    with socket.create_connection(("127.0.0.1", proc.port), timeout=5) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000000\r\n\r\n{")  # the body never comes
        answer = _read_to_eof(sock, 5)
    assert answer is not None, "the connection waited for a body it will never get"
    assert answer.startswith(b"HTTP/1.1 401 ")
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"]["code"] == "proxy_token_required"
    assert fake_upstream.requests == []


def test_the_connection_cap_leaves_descriptors_for_the_ledger():
    """(open-file limit - descriptors open at start - LEDGER_RESERVE) // 2: a client connection may
    hold a second descriptor upstream, and the ledger keeps LEDGER_RESERVE whatever the load."""
    assert LEDGER_RESERVE == 64
    assert connection_budget(256, 20) == (256 - 20 - 64) // 2 == 86
    assert 2 * connection_budget(1024, 30) + 30 + LEDGER_RESERVE <= 1024
    assert connection_budget(64, 20) == 8  # a tiny limit still serves a few
    assert connection_budget(resource.RLIM_INFINITY, 20) == ((1 << 20) - 84) // 2
