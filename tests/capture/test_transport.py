"""The hook over real HTTP against the fake upstream: the official SDK (httpx2) and plain httpx,
sync and async, streamed and not, every error mode, abandoned streams, secrets, attribution."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import os
import socket
from decimal import Decimal
from pathlib import Path

import httpx
import httpx2
import openai
import pytest
from helpers import ledger_rows

import spendlog
from spendlog.db.models import Completion
from spendlog.fake_upstream import expected_usage
from spendlog.transport import AsyncLoggingTransport, LoggingTransport

MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "What is the meaning of life?"}]
USAGE_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens", "reasoning_tokens")


def records() -> list[Completion]:
    return ledger_rows()  # nothing recorded yet: []


def assert_usage(record: Completion, expected: dict | None) -> None:
    if expected is None:
        assert all(getattr(record, f) is None for f in USAGE_FIELDS)
        assert record.cost_usd is None and record.cost_source == "missing"
        return
    assert {f: getattr(record, f) for f in USAGE_FIELDS} == {f: expected[f] for f in USAGE_FIELDS}
    assert record.cost_usd == expected["cost"]
    assert record.cost_source == ("missing" if expected["cost"] is None else "upstream")


def without_ids(obj: dict) -> dict:
    return {k: v for k, v in obj.items() if k not in ("id", "created", "created_at")}


def sdk(fake, *, hooked: bool, lib=httpx2, **kw) -> openai.OpenAI:
    transport = lib.HTTPTransport()
    if hooked:
        transport = LoggingTransport(transport, **kw)
    return openai.OpenAI(base_url=fake.base_url, api_key=fake.api_key, max_retries=0,
                         http_client=lib.Client(transport=transport))


def async_sdk(fake, *, hooked: bool, lib=httpx2, **kw) -> openai.AsyncOpenAI:
    transport = lib.AsyncHTTPTransport()
    if hooked:
        transport = AsyncLoggingTransport(transport, **kw)
    return openai.AsyncOpenAI(base_url=fake.base_url, api_key=fake.api_key, max_retries=0,
                              http_client=lib.AsyncClient(transport=transport))


# -- the SDK: exact usage, same results with and without the hook ---------------------------------

@pytest.mark.parametrize("lib", [httpx2, httpx])
@pytest.mark.parametrize("model", ["openai/gpt-4o-mini", "deepseek/deepseek-r1", "anthropic/claude-3.5-sonnet"])
def test_sdk_sync_not_streamed(fake_upstream, model, lib):
    plain = sdk(fake_upstream, hooked=False, lib=lib).chat.completions.create(model=model, messages=MESSAGES)
    hooked = sdk(fake_upstream, hooked=True, lib=lib, app="bot").chat.completions.create(model=model, messages=MESSAGES)
    assert without_ids(hooked.to_dict()) == without_ids(plain.to_dict())
    (rec,) = records()
    assert_usage(rec, expected_usage(model, {"model": model, "messages": MESSAGES}, "chat"))
    assert (rec.model, rec.provider, rec.request_id, rec.app) == (model, model.split("/")[0], hooked.id, "bot")
    assert (rec.status_code, rec.error_type, rec.stream, rec.finish_reason) == (200, None, False, "stop")
    assert rec.endpoint == "/v1/chat/completions" and rec.upstream == f"127.0.0.1:{fake_upstream.port}"
    assert rec.latency_ms is not None and rec.ttft_ms is None


@pytest.mark.parametrize("asked", [False, True])
def test_sdk_sync_streamed(fake_upstream, asked):
    model = "deepseek/deepseek-r1"
    extra = {"stream_options": {"include_usage": True}} if asked else {}
    plain = [c.to_dict() for c in sdk(fake_upstream, hooked=False).chat.completions.create(
        model=model, messages=MESSAGES, stream=True, **extra)]
    hooked = [c.to_dict() for c in sdk(fake_upstream, hooked=True).chat.completions.create(
        model=model, messages=MESSAGES, stream=True, **extra)]
    assert [without_ids(c) for c in hooked] == [without_ids(c) for c in plain]  # to_dict: unset fields too
    assert any("usage" in c for c in hooked) == asked
    sent = fake_upstream.last_request.json()
    assert sent["stream_options"] == {"include_usage": True}
    (rec,) = records()
    assert_usage(rec, expected_usage(model, {"model": model, "messages": MESSAGES}, "chat"))
    assert rec.stream is True and rec.error_type is None and rec.finish_reason == "stop"
    assert rec.request_id == hooked[0]["id"]
    assert 0 <= rec.ttft_ms <= rec.latency_ms


def test_sdk_async_streamed_and_not(fake_upstream):
    model = "google/gemini-1.5-flash"

    async def main(hooked: bool):
        client = async_sdk(fake_upstream, hooked=hooked)
        async with client:
            whole = await client.chat.completions.create(model=model, messages=MESSAGES)
            stream = await client.chat.completions.create(model=model, messages=MESSAGES, stream=True)
            chunks = [c.to_dict() async for c in stream]
        return without_ids(whole.to_dict()), [without_ids(c) for c in chunks]

    assert asyncio.run(main(True)) == asyncio.run(main(False))
    recs = records()
    assert [r.stream for r in recs] == [False, True]
    for rec in recs:
        assert_usage(rec, expected_usage(model, {"model": model, "messages": MESSAGES}, "chat"))
        assert rec.error_type is None


def test_sdk_embeddings_and_responses(fake_upstream):
    client = sdk(fake_upstream, hooked=True)
    client.embeddings.create(model="openai/text-embedding-3-small", input=["one", "two words"])
    client.responses.create(model="openai/gpt-4o", input="Say hi")
    events = list(client.responses.create(model="openai/gpt-4o", input="Say hi", stream=True))
    assert events[-1].type == "response.completed"
    emb, resp, resp_stream = records()
    assert_usage(emb, expected_usage("openai/text-embedding-3-small", {"input": ["one", "two words"]}, "embeddings"))
    assert emb.endpoint == "/v1/embeddings" and emb.completion_tokens is None
    exp = expected_usage("openai/gpt-4o", {"model": "openai/gpt-4o", "input": "Say hi"}, "responses")
    for rec in (resp, resp_stream):
        assert_usage(rec, exp)
        assert rec.endpoint == "/v1/responses" and rec.error_type is None and rec.finish_reason == "completed"
    assert resp_stream.stream and "stream_options" not in fake_upstream.last_request.json()


def test_legacy_completions_streamed(fake_upstream):
    client = sdk(fake_upstream, hooked=True)
    chunks = list(client.completions.create(model="openai/gpt-4o-mini", prompt="Once upon", stream=True))
    assert all(c.usage is None for c in chunks)
    (rec,) = records()
    assert_usage(rec, expected_usage("openai/gpt-4o-mini", {"model": "openai/gpt-4o-mini", "prompt": "Once upon"},
                                     "completions"))


# -- plain httpx: bytes identical ---------------------------------------------------------------

class Tee:
    """An inner transport that keeps a copy of the raw bytes it hands out."""

    def __init__(self, inner):
        self.inner, self.raw = inner, []

    def handle_request(self, request):
        response = self.inner.handle_request(request)
        body = b"".join(response.stream)
        response.stream.close()
        self.raw.append(body)
        response.stream = httpx.ByteStream(body)
        return response

    def close(self):
        self.inner.close()


def test_httpx_bytes_identical_and_usage_chunk_removed(fake_upstream):
    tee = Tee(httpx.HTTPTransport())
    client = httpx.Client(transport=LoggingTransport(tee))
    headers = {"Authorization": f"Bearer {fake_upstream.api_key}"}
    body = {"model": "openai/gpt-4o", "messages": MESSAGES}
    r = client.post(fake_upstream.url("/v1/chat/completions"), headers=headers, json=body)
    assert r.content == tee.raw[-1]
    r = client.post(fake_upstream.url("/v1/chat/completions"), headers=headers, json={**body, "stream": True})
    upstream = tee.raw[-1]
    assert b'"choices":[],"usage":{' in upstream and b'"usage":null' in upstream
    assert r.content == b"".join(
        e.replace(b',"usage":null', b"") for e in upstream.split(b"\n\n")[:-1] if b'"choices":[]' not in e
        for e in [e + b"\n\n"])
    assert all(b'"usage"' not in line for line in r.content.splitlines())
    recs = records()
    assert len(recs) == 2
    for rec in recs:
        assert_usage(rec, expected_usage("openai/gpt-4o", body, "chat"))


def test_httpx_gzip_answer_passes_raw_and_is_read():
    answer = json.dumps({"id": "x", "model": "openai/gpt-4o", "choices": [{"finish_reason": "stop"}],
                         "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}).encode()
    answer = answer.replace(b'"total_tokens": 7', b'"total_tokens": 7, "cost": 0.0000123')

    def streamed(request):  # as a network transport answers: the body not read yet
        return httpx.Response(200, stream=httpx.ByteStream(gzip.compress(answer)),
                              headers={"content-encoding": "gzip", "content-type": "application/json"})

    def preread(request):  # MockTransport-style: the body already read (and decoded)
        return httpx.Response(200, content=gzip.compress(answer),
                              headers={"content-encoding": "gzip", "content-type": "application/json"})

    for handler in (streamed, preread):
        client = httpx.Client(transport=LoggingTransport(httpx.MockTransport(handler)))
        r = client.post("http://upstream.test/v1/chat/completions", json={"model": "openai/gpt-4o"})
        assert r.content == answer
    for rec in records():
        assert rec.total_tokens == 7 and rec.cost_usd == Decimal("0.0000123") and rec.error_type is None
    assert len(records()) == 2


def test_untracked_calls_pass_untouched_but_for_our_headers(fake_upstream):
    client = httpx2.Client(transport=LoggingTransport(httpx2.HTTPTransport()))
    auth = {"Authorization": f"Bearer {fake_upstream.api_key}"}
    r = client.get(fake_upstream.url("/v1/models"), headers={**auth, "X-Other": "kept"})
    assert r.status_code == 200 and fake_upstream.last_request.headers["x-other"] == "kept"
    r = client.get(fake_upstream.url("/v1/models"), headers={**auth, "X-Spendlog-App": "bot"})
    assert r.status_code == 200 and "x-spendlog-app" not in fake_upstream.last_request.headers
    assert records() == []


def test_default_inner_transport_matches_the_client_library(fake_upstream):
    for lib in (httpx, httpx2):
        transport = LoggingTransport()
        with lib.Client(transport=transport) as client:
            r = client.post(fake_upstream.url("/v1/embeddings"), headers={"Authorization": f"Bearer {fake_upstream.api_key}"},
                            json={"model": "openai/text-embedding-3-small", "input": "x"})
        assert r.status_code == 200 and type(transport._wrapped) is lib.HTTPTransport
    assert len(records()) == 2


# -- attribution ---------------------------------------------------------------------------------

def test_attribution_headers_recorded_and_not_sent(fake_upstream):
    client = sdk(fake_upstream, hooked=True, app="default-app", user="default-user", tags={"team": "core"})
    client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES,
                                   extra_headers={"X-Spendlog-App": "billing", "X-Spendlog-Tags": "feature=invoice"})
    assert not any(h.startswith("x-spendlog") for h in fake_upstream.last_request.headers)
    client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)
    first, second = records()
    assert (first.app, first.user, first.tags) == ("billing", "default-user", {"team": "core", "feature": "invoice"})
    assert (second.app, second.user, second.tags) == ("default-app", "default-user", {"team": "core"})
    assert first.api_key_hint == "sr_..." + fake_upstream.api_key[-4:]


# -- errors: one record each, the same exception as without the hook ------------------------------

def outcome(fn):
    try:
        result = fn()
        if hasattr(result, "__iter__") and not isinstance(result, (dict, str)) and hasattr(result, "response"):
            result = [c.to_dict() for c in result]
        return "ok", result
    except Exception as exc:  # noqa: BLE001
        return type(exc), getattr(exc, "status_code", None)


def _steady(value):
    """``value`` without what differs between two calls to the fake upstream (ids, timestamps)."""
    if hasattr(value, "to_dict"):  # an SDK object (a ChatCompletion)
        value = value.to_dict()
    if isinstance(value, dict):
        return {k: _steady(v) for k, v in value.items() if k not in ("id", "created")}
    if isinstance(value, list):
        return [_steady(v) for v in value]
    return value


@pytest.mark.parametrize("model, stream, error_type, status", [
    ("fake/error-429", False, "http_429", 429),
    ("fake/error-500", True, "http_500", 500),
    ("fake/non-json", False, "bad_response", 200),
    ("fake/cut-stream", True, "stream_interrupted", 200),
    ("fake/cut-stream", False, "stream_interrupted", 200),
    ("fake/no-usage", True, None, 200),
    ("fake/no-cost", False, None, 200),
])
def test_error_modes(fake_upstream, model, stream, error_type, status):
    def call(hooked):
        client = sdk(fake_upstream, hooked=hooked)
        return outcome(lambda: client.chat.completions.create(model=model, messages=MESSAGES, stream=stream))

    plain, hooked = call(False), call(True)
    assert hooked[0] == plain[0]  # the same exception, or both answered
    assert _steady(hooked[1]) == _steady(plain[1])  # the same status code, or the same answer
    (rec,) = records()
    assert (rec.error_type, rec.status_code) == (error_type, status)
    if status >= 400:
        assert rec.error_message and "Bearer" not in rec.error_message
    if model in ("fake/no-usage", "fake/no-cost"):
        assert_usage(rec, expected_usage(model, {"model": model, "messages": MESSAGES}, "chat"))


def test_rate_limit_message_recorded(fake_upstream):
    client = sdk(fake_upstream, hooked=True)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="fake/error-429", messages=MESSAGES)
    (rec,) = records()
    assert rec.error_message == "Rate limit reached for requests. Please try again in 1s."


def test_sdk_retries_are_separate_records(fake_upstream):
    fake_upstream.state.retry_after = 0
    client = openai.OpenAI(base_url=fake_upstream.base_url, api_key=fake_upstream.api_key, max_retries=1,
                           http_client=httpx2.Client(transport=LoggingTransport(httpx2.HTTPTransport())))
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="fake/error-500", messages=MESSAGES)
    assert [r.error_type for r in records()] == ["http_500", "http_500"]


def test_refused_usage_option_is_retried_once_without_it(fake_upstream):
    model = "fake/reject-stream-options"
    chunks = list(sdk(fake_upstream, hooked=True).chat.completions.create(model=model, messages=MESSAGES, stream=True))
    assert chunks and chunks[-1].choices[0].finish_reason == "stop"
    sent = [r.json() for r in fake_upstream.requests]
    assert ["stream_options" in s for s in sent] == [True, False]
    (rec,) = records()
    assert rec.status_code == 200 and rec.error_type is None
    assert_usage(rec, None)


def test_refused_option_asked_by_the_caller_is_their_error(fake_upstream):
    def call(hooked):
        client = sdk(fake_upstream, hooked=hooked)
        return outcome(lambda: client.chat.completions.create(
            model="fake/reject-stream-options", messages=MESSAGES, stream=True, stream_options={"include_usage": True}))

    assert call(True) == call(False) == (openai.BadRequestError, 400)
    (rec,) = records()
    assert rec.error_type == "http_400" and "stream_options" in rec.error_message


def test_auth_error(fake_upstream):
    client = openai.OpenAI(base_url=fake_upstream.base_url, api_key="not-a-key-at-all-0000", max_retries=0,
                           http_client=httpx2.Client(transport=LoggingTransport(httpx2.HTTPTransport())))
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)
    (rec,) = records()
    assert rec.error_type == "http_401" and rec.api_key_hint == "not-...000"  # 7 of 21 characters: a third


def test_connect_error_and_timeout_reraised_unchanged(fake_upstream):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    for hooked in (False, True):
        transport = httpx2.HTTPTransport()
        client = httpx2.Client(transport=LoggingTransport(transport) if hooked else transport)
        with pytest.raises(httpx2.ConnectError):
            client.post(f"http://127.0.0.1:{port}/v1/chat/completions", json={"model": "m"})
    client = openai.OpenAI(base_url=fake_upstream.base_url, api_key=fake_upstream.api_key, max_retries=0, timeout=0.3,
                           http_client=httpx2.Client(transport=LoggingTransport(httpx2.HTTPTransport())))
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="fake/slow", messages=MESSAGES)
    connect, timeout = records()
    assert (connect.error_type, connect.status_code, connect.requested_model) == ("connect_error", None, "m")
    assert (timeout.error_type, timeout.status_code) == ("timeout", None)


def test_repeated_upstream_ids_are_separate_records(fake_upstream):
    client = sdk(fake_upstream, hooked=True)
    for _ in range(2):
        client.chat.completions.create(model="fake/repeat-id", messages=MESSAGES)
    a, b = records()
    assert a.request_id == b.request_id == "chatcmpl-repeated" and a.id != b.id


# -- abandoned streams ---------------------------------------------------------------------------

SLOW_STREAM = {"X-Fake-Chunks": "40", "X-Fake-Chunk-Delay-Ms": "5"}


def test_200_broken_streams_on_two_connections(fake_upstream):
    limits = httpx.Limits(max_connections=2, max_keepalive_connections=2)
    client = httpx.Client(transport=LoggingTransport(httpx.HTTPTransport(limits=limits)),
                          timeout=httpx.Timeout(10, pool=3))
    headers = {"Authorization": f"Bearer {fake_upstream.api_key}", **SLOW_STREAM}
    body = {"model": "openai/gpt-4o-mini", "messages": MESSAGES, "stream": True}
    for _ in range(100):
        with client.stream("POST", fake_upstream.url("/v1/chat/completions"), headers=headers, json=body) as r:
            for _line in r.iter_lines():
                break
    oc = openai.OpenAI(base_url=fake_upstream.base_url, api_key=fake_upstream.api_key, max_retries=0,
                       http_client=httpx2.Client(transport=LoggingTransport(httpx2.HTTPTransport(
                           limits=httpx2.Limits(max_connections=2))), timeout=httpx2.Timeout(10, pool=3)))
    for _ in range(100):
        with oc.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES, stream=True,
                                        extra_headers=SLOW_STREAM) as stream:
            for _chunk in stream:
                break
    recs = records()
    assert len(recs) == 200
    assert {r.error_type for r in recs} == {"cancelled"}


def test_async_task_cancelled_mid_stream(fake_upstream):
    async def main():
        client = async_sdk(fake_upstream, hooked=True)
        got = asyncio.Event()

        async def consume():
            stream = await client.chat.completions.create(
                model="openai/gpt-4o-mini", messages=MESSAGES, stream=True,
                extra_headers={"X-Fake-Chunks": "50", "X-Fake-Chunk-Delay-Ms": "50"})
            async for _ in stream:
                got.set()

        task = asyncio.create_task(consume())
        await got.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await client.close()

    asyncio.run(main())
    (rec,) = records()
    assert rec.error_type == "cancelled" and rec.status_code == 200


# -- secrets -------------------------------------------------------------------------------------

def test_key_never_stored_or_logged(fake_upstream, caplog):
    key = fake_upstream.api_key
    caplog.set_level(logging.DEBUG)

    def echo_key(request):  # an upstream that repeats the key in its error message
        return httpx.Response(401, json={"error": {"message": f"Incorrect API key provided: {key}"}})

    client = sdk(fake_upstream, hooked=True)
    client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)
    list(client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES, stream=True))
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="fake/error-429", messages=MESSAGES)
    mock = httpx.Client(transport=LoggingTransport(httpx.MockTransport(echo_key)))
    r = mock.post("http://upstream.test/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, json={})
    assert r.status_code == 401
    recs = records()
    assert len(recs) == 4 and "Incorrect API key provided" in recs[-1].error_message
    db_file = Path(os.environ["SPENDLOG_DB_URL"].removeprefix("sqlite:///"))
    for path in db_file.parent.iterdir():  # the database, its WAL and any spool
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path
            assert key[3:].encode() not in path.read_bytes(), path
    assert key not in caplog.text and key[3:] not in caplog.text


# -- fail-open -----------------------------------------------------------------------------------

@pytest.mark.parametrize("broken_part, recorded", [("_read_request", 0), ("_read_event", 1), ("record", 0)])
def test_recording_failure_never_breaks_the_call(fake_upstream, monkeypatch, caplog, broken_part, recorded):
    from spendlog.answer import AnswerReader
    from spendlog.capture import CallCapture

    def broken(self, *a, **kw):
        raise RuntimeError("parser exploded")

    monkeypatch.setattr(AnswerReader if broken_part == "_read_event" else CallCapture, broken_part, broken)
    client = sdk(fake_upstream, hooked=True)
    with caplog.at_level(logging.WARNING, logger="spendlog"):
        chunks = list(client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES, stream=True))
        whole = client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)
        assert spendlog.flush(10)  # records are built on the writer's thread: its warnings too
    assert chunks[-1].choices[0].finish_reason == "stop" and whole.choices[0].finish_reason == "stop"
    assert "parser exploded" in caplog.text
    recs = records()
    assert len(recs) == 2 * recorded
    if recorded:
        assert recs[0].error_type == "capture_error" and recs[0].status_code == 200


def test_unwritable_database_never_breaks_the_call(fake_upstream, monkeypatch, tmp_path):
    monkeypatch.setenv("SPENDLOG_DB_URL", "mysql://nope/x")  # not a supported backend
    client = sdk(fake_upstream, hooked=True)
    res = client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)
    assert res.choices[0].finish_reason == "stop"


# -- ready-made clients ---------------------------------------------------------------------------

def test_http_client_helpers(fake_upstream):
    client = spendlog.http_client(app="helper", limits=httpx2.Limits(max_connections=1), timeout=30)
    assert isinstance(client, httpx2.Client) and isinstance(client._transport, LoggingTransport)
    oc = openai.OpenAI(base_url=fake_upstream.base_url, api_key=fake_upstream.api_key, http_client=client)
    oc.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)

    async def main():
        aclient = spendlog.async_http_client(user="async-helper")
        assert isinstance(aclient, httpx2.AsyncClient)
        async with openai.AsyncOpenAI(base_url=fake_upstream.base_url, api_key=fake_upstream.api_key,
                                      http_client=aclient) as aoc:
            await aoc.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)

    asyncio.run(main())
    sync_rec, async_rec = records()
    assert (sync_rec.app, async_rec.user) == ("helper", "async-helper")
    assert sync_rec.error_type is None and async_rec.error_type is None
