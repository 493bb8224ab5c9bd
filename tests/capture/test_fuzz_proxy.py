"""Malformed requests to the proxy over raw sockets (issue 8, bad input): each gets a 4xx with an
OpenAI-style JSON error, and the proxy keeps serving. A catalogue of hand-made requests (bad JSON,
huge headers, wrong methods, absolute-URL targets, broken framing) and a seeded mutation fuzzer
that damages a valid request byte by byte.

SSRF through paths, headers, bodies and redirects is covered by tests/test_proxy_safety.py; the
413 limit by tests/test_proxy.py::test_body_over_the_limit_gets_413_and_is_not_forwarded.
"""

from __future__ import annotations

import json
import random
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fixture_proxy import body_of, raw_request, status_of

pytestmark = pytest.mark.timeout(300)


def _head(raw: bytes) -> dict[str, str]:
    lines = raw.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:]
    return {k.strip().lower().decode("latin-1"): v.strip().decode("latin-1")
            for k, _, v in (line.partition(b":") for line in lines)}


def _assert_json_4xx(raw: bytes, name: str) -> None:
    status = status_of(raw)
    assert 400 <= status < 500, f"{name}: status {status}: {raw[:120]!r}"
    ctype = _head(raw).get("content-type", "")
    assert ctype.startswith("application/json"), f"{name}: {status} with Content-Type {ctype!r}: {body_of(raw)[:80]!r}"
    error = json.loads(body_of(raw))["error"]
    assert isinstance(error, dict) and error.get("message"), name


def _still_serving(proxy, fake) -> None:
    r = httpx.post(proxy.url("/v1/chat/completions"), timeout=10,
                   json={"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "still there?"}]},
                   headers={"Authorization": f"Bearer {fake.api_key}"})
    assert r.status_code == 200 and r.json()["choices"]


def _request(method: bytes, target: bytes, *headers: bytes, body: bytes = b"", version: bytes = b"HTTP/1.1") -> bytes:
    return (method + b" " + target + b" " + version + b"\r\nHost: 127.0.0.1\r\n" + b"".join(h + b"\r\n" for h in headers)
            + b"Connection: close\r\n\r\n" + body)


def _post(body: bytes, *headers: bytes) -> bytes:
    return _request(b"POST", b"/v1/chat/completions", b"Authorization: Bearer {key}", b"Content-Type: application/json",
                    b"Content-Length: " + str(len(body)).encode(), *headers, body=body)


CATALOGUE = {
    "bad JSON": _post(b"{not json"),
    "JSON not an object": _post(b"[1,2,3]"),
    "empty body": _post(b""),
    "body is binary": _post(bytes(range(256))),
    "huge header value": _request(b"GET", b"/v1/models", b"X-Big: " + b"a" * 100_000),
    "2,000 headers": _request(b"GET", b"/v1/models", *(b"X-H%d: v" % i for i in range(2000))),
    "request line 70 KB": _request(b"GET", b"/v1/" + b"a" * 70_000),
    "header without colon": _request(b"GET", b"/v1/models", b"BadHeader"),
    "header name with space": _request(b"GET", b"/v1/models", b"Bad Header: x"),
    "NUL in the path": _request(b"GET", b"/v1/mod\x00els"),
    "invalid method token": _request(b"FOO@BAR", b"/v1/models"),
    "HTTP/9.9": _request(b"GET", b"/v1/models", version=b"HTTP/9.9"),
    "negative Content-Length": _request(b"POST", b"/v1/chat/completions", b"Content-Length: -5"),
    "two Content-Lengths": _request(b"POST", b"/v1/chat/completions", b"Content-Length: 2", b"Content-Length: 3",
                                    body=b"{}"),
    "bad chunk size": _request(b"POST", b"/v1/chat/completions", b"Transfer-Encoding: chunked",
                               body=b"zz\r\n{}\r\n0\r\n\r\n"),
    "CL and TE together": _request(b"POST", b"/v1/chat/completions", b"Content-Length: 4",
                                   b"Transfer-Encoding: chunked", body=b"0\r\n\r\n"),
    "TLS on the plain port": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)),
    "absolute-URL target": _request(b"POST", b"http://169.254.169.254/latest/meta-data", b"Content-Length: 0"),
    "CONNECT": _request(b"CONNECT", b"127.0.0.1:22"),
    "OPTIONS *": _request(b"OPTIONS", b"*"),
    "wrong method on chat": _request(b"DELETE", b"/v1/chat/completions", b"Authorization: Bearer {key}"),
    "PUT on chat": _request(b"PUT", b"/v1/chat/completions", b"Authorization: Bearer {key}", b"Content-Length: 2",
                            body=b"{}"),
    "outside /v1": _request(b"GET", b"/admin"),
    "path traversal": _request(b"GET", b"/v1/../etc/passwd"),
}


@pytest.mark.parametrize("name", list(CATALOGUE))
def test_malformed_request_gets_a_json_4xx_and_the_proxy_keeps_serving(proxy, fake_upstream, name):
    data = CATALOGUE[name].replace(b"{key}", fake_upstream.api_key.encode())
    raw = raw_request(proxy.port, data, timeout=10)
    _assert_json_4xx(raw, name)
    _still_serving(proxy, fake_upstream)


VALID = _post(json.dumps({"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).encode())
_INSERTS = [b"\r\n", b"\r\n\r\n", b"\x00", b" ", b":", b"\xff", b"%", b"../", b"http://x/", b"-1", b"9" * 30, b"\"", b"{"]


def _mutate(data: bytes, rng: random.Random) -> bytes:
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(data) + 1)
        kind = rng.randrange(4)
        if kind == 0 and data:
            data[min(at, len(data) - 1)] = rng.randrange(256)
        elif kind == 1:
            data[at:at] = rng.choice(_INSERTS)
        elif kind == 2:
            del data[at:at + rng.randint(1, 12)]
        else:
            data = data[:at]
    return bytes(data)


def test_mutated_requests_never_get_a_proxy_error_and_never_stop_it(proxy, fake_upstream):
    """300 damaged copies of a valid request: whatever comes back is a well-formed HTTP answer; the
    proxy's own answers are 4xx JSON (never a 5xx of its own), and it serves a valid call afterwards."""
    rng = random.Random(20240611)
    valid = VALID.replace(b"{key}", fake_upstream.api_key.encode())
    mutants = [_mutate(valid, rng) for _ in range(300)]
    with ThreadPoolExecutor(32) as pool:  # 32 at a time: damaged requests also arrive together
        answers = list(pool.map(lambda data: raw_request(proxy.port, data, timeout=1.0, send_errors_ok=True), mutants))
    seen: dict[int, int] = {}
    non_json = []
    for i, (data, raw) in enumerate(zip(mutants, answers)):
        status = status_of(raw)
        seen[status] = seen.get(status, 0) + 1
        if status == 0:
            continue  # the proxy waits for the rest of a request that never came: fine
        assert status < 500 or status in (502, 504), f"mutant {i}: {status}: {data[:200]!r} -> {raw[:200]!r}"
        if status >= 400 and not _head(raw).get("content-type", "").startswith("application/json"):
            non_json.append((status, data[:80]))
    _still_serving(proxy, fake_upstream)
    print(f"\nmutated requests: statuses {dict(sorted(seen.items()))}; {len(non_json)} 4xx answers not JSON")
    assert not non_json, f"{len(non_json)} error answers were not JSON, e.g. {non_json[:3]}"
