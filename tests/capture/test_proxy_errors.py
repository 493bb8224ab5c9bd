"""The proxy's own error answers say "spendlog proxy: " once (issue 19: a 404 read
"spendlog proxy: spendlog proxy only forwards /v1/... paths")."""

from __future__ import annotations

import httpx
import pytest
from fixture_proxy import body_of, raw_request

PREFIX = "spendlog proxy: "


@pytest.mark.parametrize(("method", "target", "status"), [
    ("GET", "/admin", 404),
    ("POST", "http://127.0.0.1:9/v1/chat/completions", 400),
    ("POST", "/v1/../admin", 400),
])
def test_a_refused_target_is_prefixed_once(proxy, method, target, status):
    raw = raw_request(proxy.port, f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n"
                                  "Connection: close\r\n\r\n{}".encode())
    message = httpx.Response(status, content=body_of(raw)).json()["error"]["message"]
    assert raw.startswith(f"HTTP/1.1 {status} ".encode())
    assert message.startswith(PREFIX) and message.count("spendlog proxy") == 1, message


def test_upstream_and_size_errors_are_prefixed_once(proxy_factory):
    proxy = proxy_factory("http://127.0.0.1:9/v1", max_body_bytes=10)  # nothing listens on port 9
    for body, status in ((b"{}", 502), (b'{"model": "a-long-model-name"}', 413)):
        resp = httpx.post(proxy.url("/v1/chat/completions"), content=body)
        message = resp.json()["error"]["message"]
        assert resp.status_code == status
        assert message.startswith(PREFIX) and message.count("spendlog proxy") == 1, message
