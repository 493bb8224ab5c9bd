"""The proxy over real HTTP against the fake upstream: what clients get, and what gets recorded."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import time
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from fixture_proxy import CHAT, Recorder, json_response, normalise, rows, usage_of
from openai import APIConnectionError, OpenAI, RateLimitError

from spendlog.fake_upstream import expected_usage

MODELS = ["openai/gpt-4o-mini", "anthropic/claude-3.5-sonnet", "deepseek/deepseek-r1"]


def _sdk(base_url: str, key: str, **kw) -> OpenAI:
    return OpenAI(base_url=base_url, api_key=key, max_retries=0, **kw)


def _dump(obj) -> bytes:
    return normalise(json.dumps(obj.model_dump(), sort_keys=True).encode())


# -- the official Python SDK ----------------------------------------------------------------------

@pytest.mark.parametrize("model", MODELS)
def test_sdk_plain_call_is_unchanged_and_recorded_exactly(fake_upstream, proxy, model):
    body = {**CHAT, "model": model}
    direct = _sdk(fake_upstream.base_url, fake_upstream.api_key).chat.completions.create(**body)
    proxied = _sdk(proxy.base_url, fake_upstream.api_key).chat.completions.create(**body)
    assert _dump(proxied) == _dump(direct)

    [row] = rows(expect=1)
    assert usage_of(row) == expected_usage(model, body)
    assert isinstance(row.cost_usd, Decimal)
    assert (row.endpoint, row.model, row.provider, row.stream, row.status_code, row.error_type) == (
        "/v1/chat/completions", model, model.split("/")[0], False, 200, None)
    assert row.request_id == proxied.id
    assert row.cost_source == "upstream"
    assert row.upstream == f"127.0.0.1:{fake_upstream.port}"


@pytest.mark.parametrize("model", MODELS)
def test_sdk_stream_gets_the_direct_chunks_without_a_usage_chunk(fake_upstream, proxy, model):
    body = {**CHAT, "model": model}
    direct = list(_sdk(fake_upstream.base_url, fake_upstream.api_key).chat.completions.create(**body, stream=True))
    proxied = list(_sdk(proxy.base_url, fake_upstream.api_key).chat.completions.create(**body, stream=True))
    assert [_dump(c) for c in proxied] == [_dump(c) for c in direct]
    assert all(c.usage is None and c.choices for c in proxied)  # the usage chunk we asked for is not shown

    [row] = rows(expect=1)
    assert usage_of(row) == expected_usage(model, {**body, "stream": True})
    assert row.stream is True and row.error_type is None and row.finish_reason == "stop"
    assert row.ttft_ms is not None and row.ttft_ms <= row.latency_ms
    sent = fake_upstream.last_request.json()
    assert sent["stream_options"] == {"include_usage": True}  # asked on the caller's behalf


def test_sdk_stream_that_asked_for_usage_gets_it(fake_upstream, proxy):
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    chunks = list(_sdk(proxy.base_url, fake_upstream.api_key).chat.completions.create(**body))
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    [row] = rows(expect=1)
    assert usage_of(row) == expected_usage(CHAT["model"], body)
    assert chunks[-1].usage.prompt_tokens == row.prompt_tokens


def test_sdk_error_is_the_same_error_and_is_recorded(fake_upstream, proxy):
    body = {**CHAT, "model": "fake/error-429"}
    with pytest.raises(RateLimitError) as direct:
        _sdk(fake_upstream.base_url, fake_upstream.api_key).chat.completions.create(**body)
    with pytest.raises(RateLimitError) as proxied:
        _sdk(proxy.base_url, fake_upstream.api_key).chat.completions.create(**body)
    assert proxied.value.body == direct.value.body
    assert proxied.value.response.headers["retry-after"] == direct.value.response.headers["retry-after"]
    [row] = rows(expect=1)
    assert (row.status_code, row.error_type) == (429, "http_429")
    assert "Rate limit" in row.error_message


def test_embeddings_and_responses_are_recorded(fake_upstream, proxy):
    client = _sdk(proxy.base_url, fake_upstream.api_key)
    emb = {"model": "openai/text-embedding-3-small", "input": ["one", "two three"]}
    client.embeddings.create(**emb)
    resp = {"model": "openai/gpt-4o", "input": "Write one line about proxies"}
    client.responses.create(**resp)
    emb_row, resp_row = rows(expect=2)
    assert usage_of(emb_row) == expected_usage(emb["model"], emb, "embeddings")
    assert usage_of(resp_row) == expected_usage(resp["model"], resp, "responses")
    assert (emb_row.endpoint, resp_row.endpoint) == ("/v1/embeddings", "/v1/responses")


# -- bytes: what a raw client gets ----------------------------------------------------------------

@pytest.mark.parametrize("path,body", [
    ("/v1/chat/completions", CHAT),
    ("/v1/chat/completions", {**CHAT, "stream": True}),
    ("/v1/chat/completions", {**CHAT, "stream": True, "stream_options": {"include_usage": True}}),
    ("/v1/completions", {"model": "openai/gpt-4o-mini", "prompt": "Once upon a time", "stream": True}),
    ("/v1/embeddings", {"model": "openai/text-embedding-3-small", "input": "bytes"}),
    ("/v1/responses", {"model": "openai/gpt-4o", "input": "hello", "stream": True}),
    ("/v1/chat/completions", {**CHAT, "model": "fake/error-500"}),
    ("/v1/chat/completions", {**CHAT, "model": "fake/non-json"}),
    ("/v1/chat/completions", {**CHAT, "model": "no/such-model"}),
])
def test_client_gets_the_bytes_the_fake_sends(fake_upstream, proxy, path, body):
    headers = {"Authorization": f"Bearer {fake_upstream.api_key}"}
    with httpx.Client(timeout=10) as http:
        direct = http.post(fake_upstream.origin + path, json=body, headers=headers)
        proxied = http.post(proxy.origin + path, json=body, headers=headers)
    assert proxied.status_code == direct.status_code
    assert normalise(proxied.content) == normalise(direct.content)
    volatile = {"date", "x-request-id", "transfer-encoding", "connection", "keep-alive"}
    same = {k: v for k, v in direct.headers.items() if k not in volatile}
    assert {k: proxied.headers.get(k) for k in same} == same  # content-type, length, server...
    assert ("x-request-id" in proxied.headers) == ("x-request-id" in direct.headers)
    [row] = rows(expect=1)
    assert row.status_code == direct.status_code


def test_query_string_and_untracked_get_pass_through(fake_upstream, proxy):
    headers = {"Authorization": f"Bearer {fake_upstream.api_key}"}
    direct = httpx.get(fake_upstream.url("/v1/models"), headers=headers)
    proxied = httpx.get(proxy.url("/v1/models?limit=5&after=x%20y"), headers=headers)
    assert (proxied.status_code, proxied.content) == (200, direct.content)
    assert fake_upstream.last_request.method == "GET"
    assert rows() == []  # listing models costs nothing and is not a call to record


def test_unknown_local_path_is_a_json_404(proxy, fake_upstream):
    resp = httpx.get(proxy.url("/admin"))
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "unknown_url"
    assert set(resp.json()["error"]) == {"message", "type", "code"}
    assert fake_upstream.requests == []


# -- curl -----------------------------------------------------------------------------------------

def _curl(url: str, body: dict, key: str, *extra: str) -> bytes:
    cmd = ["curl", "-sS", "--no-buffer", "--max-time", "20", url, "-H", f"Authorization: Bearer {key}",
           "-H", "Content-Type: application/json", "-d", json.dumps(body), *extra]
    return subprocess.run(cmd, capture_output=True, check=True, timeout=30).stdout


@pytest.mark.parametrize("stream", [False, True])
def test_curl_gets_the_same_bytes_and_attribution_is_recorded(fake_upstream, proxy, stream):
    if shutil.which("curl") is None:
        pytest.fail("curl is needed for this test (apt-get install curl)")
    body = {**CHAT, "stream": stream}
    direct = _curl(fake_upstream.url("/v1/chat/completions"), body, fake_upstream.api_key)
    proxied = _curl(proxy.url("/v1/chat/completions"), body, fake_upstream.api_key,
                    "-H", "X-Spendlog-App: curl-app", "-H", "X-Spendlog-User: carol",
                    "-H", "X-Spendlog-Tags: team=infra,env=test")
    assert normalise(proxied) == normalise(direct)
    [row] = rows(expect=1)
    assert usage_of(row) == expected_usage(CHAT["model"], body)
    assert (row.app, row.user, row.tags) == ("curl-app", "carol", {"team": "infra", "env": "test"})
    assert not any(name.startswith("x-spendlog") for name in fake_upstream.last_request.headers)


# -- recording: attribution, keys -----------------------------------------------------------------

def test_attribution_headers_are_recorded_and_not_forwarded(fake_upstream, proxy):
    client = _sdk(proxy.base_url, fake_upstream.api_key, default_headers={
        "X-Spendlog-App": "billing-bot", "x-spendlog-user": "alice", "X-SPENDLOG-TAGS": "team=core, tier=gold",
        "X-Spendlog-Anything": "also private"})
    client.chat.completions.create(**CHAT)
    [row] = rows(expect=1)
    assert (row.app, row.user, row.tags) == ("billing-bot", "alice", {"team": "core", "tier": "gold"})
    seen = fake_upstream.last_request.headers
    assert not [h for h in seen if h.startswith("x-spendlog")]
    assert seen["authorization"] == f"Bearer {fake_upstream.api_key}"  # the client's own key goes through
    assert seen["host"] == f"127.0.0.1:{fake_upstream.port}"


def test_the_key_is_never_stored(fake_upstream, proxy, _isolated_data_dir):
    key = fake_upstream.api_key
    client = _sdk(proxy.base_url, key)
    client.chat.completions.create(**CHAT)
    list(client.chat.completions.create(**CHAT, stream=True))
    with pytest.raises(RateLimitError):
        client.chat.completions.create(**{**CHAT, "model": "fake/error-429"})
    found = rows(expect=3)
    assert {r.api_key_hint for r in found} == {"sr_..." + key[-4:]}
    files = [p for p in Path(_isolated_data_dir).iterdir() if p.is_file()]
    assert files
    for path in files:
        data = path.read_bytes()
        assert key.encode() not in data, path
        assert key[8:].encode() not in data, path  # not even the secret part alone


# -- failures -------------------------------------------------------------------------------------

def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_upstream_down_gives_502_and_a_record(proxy_factory, fake_upstream):
    proxy = proxy_factory(f"http://127.0.0.1:{_closed_port()}/v1")
    resp = httpx.post(proxy.url("/v1/chat/completions"), json=CHAT,
                      headers={"Authorization": f"Bearer {fake_upstream.api_key}"})
    assert resp.status_code == 502
    err = resp.json()["error"]
    assert err["code"] == "connect_error" and err["type"] == "upstream_error" and err["message"]
    [row] = rows(expect=1)
    assert (row.error_type, row.status_code, row.model) == ("connect_error", None, CHAT["model"])
    with pytest.raises(Exception) as sdk_error:  # the SDK sees an HTTP error, not a hang
        _sdk(proxy.base_url, fake_upstream.api_key).chat.completions.create(**CHAT)
    assert not isinstance(sdk_error.value, APIConnectionError)
    assert getattr(sdk_error.value, "status_code", None) == 502


@pytest.mark.parametrize("chunked", [False, True])
def test_body_over_the_limit_gets_413_and_is_not_forwarded(proxy_factory, fake_upstream, chunked):
    proxy = proxy_factory(fake_upstream.base_url, max_body_bytes=2000)
    payload = json.dumps({**CHAT, "messages": [{"role": "user", "content": "x" * 3000}]}).encode()
    content = iter([payload[:1000], payload[1000:]]) if chunked else payload
    resp = httpx.post(proxy.url("/v1/chat/completions"), content=content,
                      headers={"Authorization": f"Bearer {fake_upstream.api_key}"})
    assert resp.status_code == 413
    assert resp.json()["error"]["code"] == "request_too_large"
    assert fake_upstream.requests == []
    ok = httpx.post(proxy.url("/v1/chat/completions"), json=CHAT,
                    headers={"Authorization": f"Bearer {fake_upstream.api_key}"})
    assert ok.status_code == 200  # a body under the limit still goes through


def test_stream_cut_by_upstream_is_cut_for_the_client_and_recorded(fake_upstream, proxy):
    client = _sdk(proxy.base_url, fake_upstream.api_key)
    with pytest.raises(APIConnectionError):
        list(client.chat.completions.create(**{**CHAT, "model": "fake/cut-stream"}, stream=True))
    with pytest.raises(APIConnectionError):
        client.chat.completions.create(**{**CHAT, "model": "fake/cut-stream"})
    stream_row, plain_row = rows(expect=2)
    assert stream_row.error_type == "stream_interrupted" and stream_row.stream is True
    assert plain_row.error_type == "stream_interrupted" and plain_row.stream is False


def test_refused_stream_options_is_retried_without_them(fake_upstream, proxy):
    body = {**CHAT, "model": "fake/reject-stream-options"}
    chunks = list(_sdk(proxy.base_url, fake_upstream.api_key).chat.completions.create(**body, stream=True))
    assert chunks and "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    first, second = fake_upstream.requests[-2:]
    assert "stream_options" in first.json() and "stream_options" not in second.json()
    [row] = rows(expect=1)  # the refused attempt is not a call of the user's
    assert row.status_code == 200 and row.error_type is None
    assert row.cost_usd is None and row.cost_source == "missing"


def test_client_leaving_mid_stream_gives_one_cancelled_record(fake_upstream, proxy):
    headers = {"Authorization": f"Bearer {fake_upstream.api_key}", "X-Fake-Chunk-Delay-Ms": "40",
               "X-Fake-Chunks": "100"}
    with httpx.Client(timeout=10) as http:
        with http.stream("POST", proxy.url("/v1/chat/completions"), json={**CHAT, "stream": True},
                         headers=headers) as resp:
            assert resp.status_code == 200
            got = b""
            for chunk in resp.iter_raw():
                got += chunk
                if got.count(b"data:") >= 3:
                    break
    found = rows(expect=1)
    time.sleep(0.3)
    found = rows()
    assert len(found) == 1
    assert found[0].error_type == "cancelled" and found[0].stream is True
    assert found[0].latency_ms < 3000  # noticed at once, not after the fake's ~4 s stream


def test_chunks_reach_the_client_as_they_arrive(fake_upstream, proxy):
    headers = {"Authorization": f"Bearer {fake_upstream.api_key}", "X-Fake-Chunk-Delay-Ms": "150",
               "X-Fake-Chunks": "8"}
    arrivals = []
    t0 = time.perf_counter()
    with httpx.stream("POST", proxy.url("/v1/chat/completions"), json={**CHAT, "stream": True},
                      headers=headers, timeout=10) as resp:
        for chunk in resp.iter_raw():
            if b'"delta"' in chunk:
                arrivals.append(time.perf_counter() - t0)
    assert len(arrivals) >= 6, arrivals  # one read per event: nothing was batched up
    assert arrivals[0] < 0.6 * arrivals[-1]
    assert arrivals[-1] > 0.9  # 8 x 150 ms: really streamed, not one late burst


# -- content encodings ----------------------------------------------------------------------------

def _gzip_upstream(usage_cost: str = "0.000123"):
    answer = (b'{"id":"chatcmpl-gz","object":"chat.completion","model":"openai/gpt-4o-mini","choices":[{"index":0,'
              b'"message":{"role":"assistant","content":"zipped"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,'
              b'"completion_tokens":2,"total_tokens":5,"cost":' + usage_cost.encode() + b"}}")
    packed = gzip.compress(answer)

    def respond(request: bytes) -> bytes:
        return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
                b"Content-Length: " + str(len(packed)).encode() + b"\r\nConnection: close\r\n\r\n" + packed)

    return Recorder(respond), answer, packed


def test_compressed_answers_pass_through_and_are_still_read(proxy_factory):
    upstream, answer, packed = _gzip_upstream()
    try:
        proxy = proxy_factory(upstream.origin + "/v1")
        headers = {"Authorization": "Bearer sr_test_gzipgzipgzipgzip", "Accept-Encoding": "gzip"}
        resp = httpx.post(proxy.url("/v1/chat/completions"), json=CHAT, headers=headers)
        assert resp.headers["content-encoding"] == "gzip"
        assert resp.content == answer  # httpx decoded what the proxy passed on untouched
        seen = upstream.hits[0].lower()
        assert b"accept-encoding: gzip" in seen  # a plain call keeps the client's choice
        [row] = rows(expect=1)
        assert (row.prompt_tokens, row.completion_tokens, row.cost_usd) == (3, 2, Decimal("0.000123"))
    finally:
        upstream.stop()


def test_raw_bytes_of_a_compressed_answer_are_untouched(proxy_factory):
    upstream, answer, packed = _gzip_upstream()
    try:
        proxy = proxy_factory(upstream.origin + "/v1")
        with httpx.Client() as http:
            with http.stream("POST", proxy.url("/v1/chat/completions"), json=CHAT,
                             headers={"Authorization": "Bearer sr_test_gzipgzipgzipgzip",
                                      "Accept-Encoding": "gzip"}) as resp:
                body = b"".join(resp.iter_raw())
        assert body == packed
        assert int(resp.headers["content-length"]) == len(packed)
    finally:
        upstream.stop()


def test_streams_we_add_usage_to_are_asked_uncompressed(fake_upstream, proxy):
    headers = {"Authorization": f"Bearer {fake_upstream.api_key}", "Accept-Encoding": "gzip, br"}
    httpx.post(proxy.url("/v1/chat/completions"), json={**CHAT, "stream": True}, headers=headers)
    assert fake_upstream.last_request.headers["accept-encoding"] == "identity"
    httpx.post(proxy.url("/v1/chat/completions"), json=CHAT, headers=headers)
    assert fake_upstream.last_request.headers["accept-encoding"] == "gzip, br"


# -- health ---------------------------------------------------------------------------------------

def test_healthz_describes_upstream_and_writer(proxy, fake_upstream):
    _sdk(proxy.base_url, fake_upstream.api_key).chat.completions.create(**CHAT)
    rows(expect=1)
    resp = httpx.get(proxy.url("/healthz"))
    assert resp.status_code == 200
    data = resp.json()
    assert data["status"] == "ok" and data["upstream"] == fake_upstream.base_url
    assert data["writer"]["state"] == "ok"
    # "writer" is the answering worker's own: with several workers another one may have taken the call
    assert sum(w["requests"] for w in data["workers"]) >= 1
    if data["worker_count"] == 1:
        assert data["writer"]["written"] >= 1
    assert set(data["writer"]) >= {"url", "pending", "spooled", "dropped", "last_error"}
    assert fake_upstream.requests[-1].path == "/v1/chat/completions"  # health is answered locally


# -- any method, any body size up to the limit -----------------------------------------------------

@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
def test_every_method_is_forwarded_as_is(proxy_factory, method):
    def respond(req: bytes) -> bytes:
        answer = json_response(200, {"ok": True}, headers={"X-Upstream": "yes"})
        return answer.partition(b"\r\n\r\n")[0] + b"\r\n\r\n" if req.startswith(b"HEAD") else answer

    upstream = Recorder(respond)
    try:
        proxy = proxy_factory(upstream.origin + "/v1")
        body = b'{"purpose":"test"}' if method in ("PUT", "PATCH") else None
        resp = httpx.request(method, proxy.url("/v1/files/file-123?x=1"), content=body,
                             headers={"Authorization": "Bearer sr_test_methodsmethods"})
        assert resp.status_code == 200 and resp.headers["x-upstream"] == "yes"
        [hit] = upstream.hits
        assert hit.startswith(f"{method} /v1/files/file-123?x=1 HTTP/1.1\r\n".encode())
        if body:
            assert hit.endswith(body)
        assert rows() == []
    finally:
        upstream.stop()


def test_curl_large_body_with_expect_100_continue(fake_upstream, proxy, tmp_path):
    if shutil.which("curl") is None:
        pytest.fail("curl is needed for this test (apt-get install curl)")
    payload = tmp_path / "big.json"
    payload.write_text(json.dumps({**CHAT, "messages": [{"role": "user", "content": "y " * 800_000}]}))
    done = subprocess.run(["curl", "-sS", "-v", "--max-time", "20", proxy.url("/v1/chat/completions"),
                           "-H", f"Authorization: Bearer {fake_upstream.api_key}", "-H", "Expect: 100-continue",
                           "-H", "Content-Type: application/json", "--data-binary", f"@{payload}"],
                          capture_output=True, text=True, timeout=30)
    assert "HTTP/1.1 100 Continue" in done.stderr  # curl did not sit out its 1 s wait
    assert json.loads(done.stdout)["object"] == "chat.completion"
    assert len(fake_upstream.last_request.body) == payload.stat().st_size
    assert "expect" not in fake_upstream.last_request.headers


def test_upstream_too_slow_gives_504_or_a_cut_and_a_timeout_record(proxy_factory, fake_upstream):
    proxy = proxy_factory(fake_upstream.base_url, read_timeout=0.5)
    auth = {"Authorization": f"Bearer {fake_upstream.api_key}"}
    resp = httpx.post(proxy.url("/v1/chat/completions"), json=CHAT, headers={**auth, "X-Fake-Latency-Ms": "3000"})
    assert resp.status_code == 504 and resp.json()["error"]["code"] == "timeout"
    with pytest.raises(httpx.RemoteProtocolError):  # mid-stream: the client sees the stream end early
        with httpx.stream("POST", proxy.url("/v1/chat/completions"), json={**CHAT, "stream": True},
                          headers={**auth, "X-Fake-Chunk-Delay-Ms": "2000"}) as stream:
            for _ in stream.iter_raw():
                pass
    before, during = rows(expect=2)
    assert (before.error_type, before.status_code) == ("timeout", None)
    assert (during.error_type, during.status_code, during.stream) == ("timeout", 200, True)


def test_records_go_to_the_configured_ledger(proxy_factory, fake_upstream, db_url):
    proxy = proxy_factory(fake_upstream.base_url, db_url=db_url)
    body = {**CHAT, "model": "deepseek/deepseek-r1"}
    list(_sdk(proxy.base_url, fake_upstream.api_key).chat.completions.create(**body, stream=True))
    [row] = rows(db_url, expect=1)
    assert usage_of(row) == expected_usage(body["model"], {**body, "stream": True})
    assert row.reasoning_tokens and isinstance(row.cost_usd, Decimal)
    assert rows() == []  # not the default ledger


def test_public_names():
    import spendlog.proxy

    assert sorted(spendlog.proxy.__all__) == sorted([
        "DEFAULT_HOST", "DEFAULT_MAX_BODY_BYTES", "DEFAULT_PORT", "DEFAULT_UPSTREAM", "TOKEN_HEADER", "ProxyConfig",
        "ProxyConfigError", "ProxyServer", "default_upstream", "is_loopback", "serve", "start_proxy"])
    assert all(hasattr(spendlog.proxy, name) for name in spendlog.proxy.__all__)
