"""The proxy only ever talks to its configured upstream, only to whom it should, and never leaks a key."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import httpx
import pytest
from fixture_proxy import CHAT, Recorder, body_of, json_response, raw_request, status_of
from yarl import URL

from spendlog.proxy import ProxyConfig, ProxyConfigError, is_loopback
from spendlog.proxy.safety import BadTarget, forward_request_headers, forward_response_headers, target_url

TOKEN = "t0ken-" + "x" * 20


@pytest.fixture
def other_host():
    """The host every SSRF attempt aims at: it must never see a request."""
    rec = Recorder()
    yield rec
    rec.stop()


def _post(port: int, target: bytes, body: bytes, *headers: bytes) -> bytes:
    head = b"POST " + target + b" HTTP/1.1\r\n" + b"".join(h + b"\r\n" for h in headers)
    head += b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n"
    return raw_request(port, head + b"Connection: close\r\n\r\n" + body)


# -- the target ------------------------------------------------------------------------------------

@pytest.mark.parametrize("target", [
    "http://127.0.0.1:{port}/v1/chat/completions",
    "https://127.0.0.1:{port}/v1/chat/completions",
    "//127.0.0.1:{port}/v1/chat/completions",
])
def test_absolute_form_targets_are_refused(proxy, fake_upstream, other_host, target):
    raw = _post(proxy.port, target.format(port=other_host.port).encode(), json.dumps(CHAT).encode(),
                b"Host: 127.0.0.1", f"Authorization: Bearer {fake_upstream.api_key}".encode())
    assert status_of(raw) == 400
    assert json.loads(body_of(raw))["error"]["code"] == "absolute_target_refused"
    assert other_host.hits == [] and fake_upstream.requests == []


@pytest.mark.parametrize("target,status", [
    ("/v1/../v1/chat/completions", 400),
    ("/v1/%2e%2e/x", 400),
    ("/v1/chat/%2E/completions", 400),
    ("/v1\\..\\x", 404),
    # encoded and double-encoded dot segments, slashes and backslashes (issue 12, finding 10)
    ("/v1/..%2fadmin", 400),
    ("/v1/..%2Fadmin", 400),
    ("/v1/chat/..%2f..%2fadmin", 400),
    ("/v1/%2e%2e%2fadmin", 400),
    ("/v1/.%2e/admin", 400),
    ("/v1/..%5cadmin", 400),
    ("/v1/chat%5c..%5cadmin", 400),
    ("/v1/%5c", 400),
    ("/v1/%252e%252e/admin", 400),
    ("/v1/..%252fadmin", 400),
    ("/v1/%25252e%25252e%25252fadmin", 400),
    ("/v1/..;/admin", 400),
    ("/v1@127.0.0.1:{port}/chat/completions", 404),
    ("/v2/chat/completions", 404),
    ("/", 404),
])
def test_path_tricks_are_refused(proxy, fake_upstream, other_host, target, status):
    raw = _post(proxy.port, target.format(port=other_host.port).encode(), b"{}", b"Host: 127.0.0.1")
    assert status_of(raw) == status
    assert set(json.loads(body_of(raw))["error"]) == {"message", "type", "code"}
    assert other_host.hits == [] and fake_upstream.requests == []


def test_host_and_forwarding_headers_do_not_choose_the_host(proxy, fake_upstream, other_host):
    evil = f"127.0.0.1:{other_host.port}".encode()
    raw = _post(proxy.port, b"/v1/chat/completions", json.dumps(CHAT).encode(),
                b"Host: " + evil, b"X-Forwarded-Host: " + evil, b"X-Forwarded-Proto: http",
                b"Forwarded: host=" + evil, b"X-Original-URL: http://" + evil + b"/v1/chat/completions",
                f"Authorization: Bearer {fake_upstream.api_key}".encode())
    assert status_of(raw) == 200
    assert other_host.hits == []
    assert fake_upstream.last_request.headers["host"] == f"127.0.0.1:{fake_upstream.port}"


def test_urls_in_the_body_are_not_followed(proxy, fake_upstream, other_host):
    evil = f"http://127.0.0.1:{other_host.port}/v1"
    body = {**CHAT, "base_url": evil, "api_base": evil, "url": evil + "/chat/completions"}
    resp = httpx.post(proxy.url("/v1/chat/completions"), json=body,
                      headers={"Authorization": f"Bearer {fake_upstream.api_key}"})
    assert resp.status_code == 200
    assert other_host.hits == []
    assert fake_upstream.last_request.json()["base_url"] == evil  # passed on untouched, never used


def test_redirects_are_returned_not_followed(proxy_factory, other_host):
    redirecting = Recorder(lambda req: json_response(307, {"moved": True}, headers={
        "Location": f"http://127.0.0.1:{other_host.port}/v1/chat/completions"}))
    try:
        proxy = proxy_factory(redirecting.origin + "/v1")
        resp = httpx.post(proxy.url("/v1/chat/completions"), json=CHAT, follow_redirects=False,
                          headers={"Authorization": "Bearer sr_test_redirectredirect"})
        assert resp.status_code == 307
        assert resp.headers["location"].endswith(f":{other_host.port}/v1/chat/completions")
        assert len(redirecting.hits) == 1 and other_host.hits == []
    finally:
        redirecting.stop()


@pytest.mark.parametrize("raw,tail", [
    ("/v1/chat/completions", "/chat/completions"),
    ("/v1/models?limit=2&key=a%20b", "/models?limit=2&key=a%20b"),
    ("/v1", ""),
    ("/v1/files/file-abc/content", "/files/file-abc/content"),
    # what the openai SDK sends for models.retrieve("openai/gpt-4o-mini"): an encoded slash, no traversal
    ("/v1/models/openai%2Fgpt-4o-mini", "/models/openai%2Fgpt-4o-mini"),
    ("/v1/files/file-..abc", "/files/file-..abc"),
])
def test_target_url_keeps_path_and_query_under_the_upstream(raw, tail):
    upstream = URL("https://api.solrouter.io/v1")
    assert str(target_url(raw, upstream)) == "https://api.solrouter.io/v1" + tail


@pytest.mark.parametrize("raw", ["http://evil/v1/x", "evil:443", "*", "//evil/v1", "/v1/../x", "/v1/./x",
                                 "/v1/..%2fx", "/v1/%2E%2E/x", "/v1/..%5Cx", "/v1/%252E%252E%252Fx", "/v1/..;x/y"])
def test_target_url_refuses(raw):
    with pytest.raises(BadTarget):
        target_url(raw, URL("https://api.solrouter.io/v1"))


# -- headers ---------------------------------------------------------------------------------------

def test_hop_by_hop_and_private_headers_are_not_forwarded():
    incoming = [("Host", "x"), ("Connection", "keep-alive, X-Custom-Hop"), ("Keep-Alive", "timeout=5"),
                ("X-Custom-Hop", "1"), ("Transfer-Encoding", "chunked"), ("TE", "trailers"), ("Upgrade", "h2c"),
                ("Proxy-Authorization", "Basic abc"), ("Content-Length", "12"), ("Expect", "100-continue"),
                ("X-Spendlog-Proxy-Token", TOKEN), ("X-Spendlog-App", "a"), ("Authorization", "Bearer sr_k"),
                ("Content-Type", "application/json"), ("OpenAI-Organization", "org")]
    assert forward_request_headers(incoming) == [
        ("Authorization", "Bearer sr_k"), ("Content-Type", "application/json"), ("OpenAI-Organization", "org")]
    answer = [("Content-Type", "text/event-stream"), ("Transfer-Encoding", "chunked"), ("Connection", "close"),
              ("Content-Length", "10"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")]
    assert forward_response_headers(answer, keep_length=True) == [
        ("Content-Type", "text/event-stream"), ("Content-Length", "10"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")]
    assert ("Content-Length", "10") not in forward_response_headers(answer, keep_length=False)


def test_upstream_cookies_are_not_shared_between_clients(proxy_factory):
    upstream = Recorder(lambda req: json_response(200, {}, headers={"Set-Cookie": "session=one-client"}))
    try:
        proxy = proxy_factory(upstream.origin + "/v1")
        first = httpx.get(proxy.url("/v1/models"))
        assert first.headers["set-cookie"] == "session=one-client"  # passed on to its client...
        httpx.get(proxy.url("/v1/models"))
        assert b"cookie:" not in upstream.hits[1].lower()  # ...and never replayed for the next one
    finally:
        upstream.stop()


# -- who may use the proxy -------------------------------------------------------------------------

def test_token_is_required_when_configured_and_never_forwarded(proxy_factory, fake_upstream):
    proxy = proxy_factory(fake_upstream.base_url, token=TOKEN)
    auth = {"Authorization": f"Bearer {fake_upstream.api_key}"}
    for headers in ({}, {"X-Spendlog-Proxy-Token": "wrong-" + TOKEN}, {"X-Spendlog-Proxy-Token": TOKEN[:-1]}):
        resp = httpx.post(proxy.url("/v1/chat/completions"), json=CHAT, headers={**auth, **headers})
        assert resp.status_code == 401
        assert resp.json()["error"]["code"] == "proxy_token_required"
        assert httpx.get(proxy.url("/healthz"), headers=headers).status_code == 401
    assert fake_upstream.requests == []
    ok = httpx.post(proxy.url("/v1/chat/completions"), json=CHAT, headers={**auth, "X-Spendlog-Proxy-Token": TOKEN})
    assert ok.status_code == 200
    assert "x-spendlog-proxy-token" not in fake_upstream.last_request.headers


@pytest.mark.parametrize("host,ok", [
    ("127.0.0.1", True), ("127.8.9.10", True), ("localhost", True), ("::1", True), ("[::1]", True),
    ("0.0.0.0", False), ("::", False), ("192.168.1.5", False), ("example.com", False), ("10.0.0.1", False),
])
def test_only_loopback_counts_as_local(host, ok):
    assert is_loopback(host) is ok


def test_non_loopback_needs_the_flag_and_a_token():
    with pytest.raises(ProxyConfigError, match="--allow-remote"):
        ProxyConfig(host="0.0.0.0")
    with pytest.raises(ProxyConfigError, match="SPENDLOG_PROXY_TOKEN"):
        ProxyConfig(host="0.0.0.0", allow_remote=True)
    with pytest.raises(ProxyConfigError, match="at least 16"):
        ProxyConfig(host="0.0.0.0", allow_remote=True, token="short")
    assert ProxyConfig(host="0.0.0.0", allow_remote=True, token=TOKEN).token == TOKEN


@pytest.mark.parametrize("upstream", ["ftp://x/v1", "not a url", "http:///v1", "https://user:pw@h/v1", "http://h/v1?x=1"])
def test_bad_upstreams_are_refused(upstream):
    with pytest.raises(ProxyConfigError):
        ProxyConfig(upstream=upstream)


def test_cli_refuses_a_public_bind_with_one_line():
    """The real command, as a user runs it."""
    import os

    env = {k: v for k, v in os.environ.items() if k != "SPENDLOG_PROXY_TOKEN"}
    result = subprocess.run([sys.executable, "-m", "spendlog", "proxy", "--host", "0.0.0.0", "--port", "0"],
                            capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 2, result
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("spendlog: error: refusing to listen on 0.0.0.0"), result.stderr
    assert result.stdout == ""  # it never started listening


@pytest.mark.parametrize("args,env", [
    (["--host", "0.0.0.0"], {"SPENDLOG_PROXY_TOKEN": TOKEN}),  # a token alone is not enough: the flag too
    (["--host", "0.0.0.0", "--allow-remote"], {}),
    (["--host", "0.0.0.0", "--allow-remote"], {"SPENDLOG_PROXY_TOKEN": "short"}),
    (["--upstream", "ftp://example/v1"], {}),
    (["--max-body-bytes", "0"], {}),
    (["--db", "mysql://x@y/z"], {}),
])
def test_cli_refuses_unsafe_settings_with_one_line(monkeypatch, args, env):
    from click.testing import CliRunner

    from spendlog.cli import cli

    monkeypatch.delenv("SPENDLOG_PROXY_TOKEN", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(cli, ["proxy", "--port", "0", *args])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("spendlog: error:"), result.stderr
    assert result.stdout == ""


# -- logs ------------------------------------------------------------------------------------------

def test_malformed_requests_do_not_log_keys(proxy, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "sr_live_0123456789abcdefSECRET"
    raw_request(proxy.port, b"GET /v1/models?key=" + secret.encode() + b" HTTP/1.1\r\nHost: x\r\n"
                b"Bad Header Without Colon\r\nConnection: close\r\n\r\n")
    raw_request(proxy.port, b"GET http://evil/?api_key=" + secret.encode() + b" HTTP/1.1\r\nHost: x\r\n"
                b"Authorization: Bearer " + secret.encode() + b"\r\nConnection: close\r\n\r\n")
    httpx.get(proxy.url("/healthz"))  # the server still serves
    assert secret not in caplog.text
    assert "key=" not in caplog.text


def test_connect_tunnels_are_refused(proxy, fake_upstream, other_host):
    raw = raw_request(proxy.port, f"CONNECT 127.0.0.1:{other_host.port} HTTP/1.1\r\n"
                                  f"Host: 127.0.0.1:{other_host.port}\r\nConnection: close\r\n\r\n".encode())
    assert status_of(raw) == 400
    assert other_host.hits == [] and fake_upstream.requests == []
