"""The thin client over real HTTP against the fake upstream: dicts back, chunks streamed, errors
translated once (spendlog.errors), every call recorded."""

from __future__ import annotations

import asyncio
import socket
from decimal import Decimal

import pytest
from helpers import ledger_rows

import spendlog
from spendlog.db.models import Completion
from spendlog.fake_upstream import expected_usage

MESSAGES = [{"role": "user", "content": "What is the meaning of life?"}]


def records() -> list[Completion]:
    return ledger_rows()


@pytest.fixture
def env(fake_upstream, monkeypatch):
    monkeypatch.setenv("SOLROUTER_BASE_URL", fake_upstream.base_url)
    monkeypatch.setenv("SOLROUTER_API_KEY", fake_upstream.api_key)
    return fake_upstream


def test_create_returns_the_answer_as_a_dict_with_exact_cost(env):
    model = "openai/gpt-4o-mini"
    with spendlog.Client(app="thin") as client:
        answer = client.chat.completions.create(model=model, messages=MESSAGES, temperature=0)
    exp = expected_usage(model, {"model": model, "messages": MESSAGES}, "chat")
    assert answer["object"] == "chat.completion" and answer["choices"][0]["finish_reason"] == "stop"
    assert answer["usage"]["cost"] == exp["cost"] and isinstance(answer["usage"]["cost"], Decimal)
    assert env.last_request.json()["temperature"] == 0
    (rec,) = records()
    assert rec.app == "thin" and rec.cost_usd == exp["cost"] and rec.total_tokens == exp["total_tokens"]


def test_stream_yields_chunk_dicts_without_the_usage_chunk(env):
    with spendlog.Client() as client:
        chunks = list(client.chat.completions.create(model="openai/gpt-4o", messages=MESSAGES, stream=True))
    assert chunks and all(c["object"] == "chat.completion.chunk" and c["choices"] for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    (rec,) = records()
    assert rec.stream and rec.error_type is None
    assert rec.cost_usd == expected_usage("openai/gpt-4o", {"model": "openai/gpt-4o", "messages": MESSAGES}, "chat")["cost"]


def test_stream_closed_early_is_one_cancelled_record(env):
    with spendlog.Client() as client:
        with client.chat.completions.create(model="openai/gpt-4o", messages=MESSAGES, stream=True,
                                            extra_headers={"X-Fake-Chunks": "30", "X-Fake-Chunk-Delay-Ms": "5"}) as stream:
            next(stream)
    (rec,) = records()
    assert rec.error_type == "cancelled"


def test_async_client(env):
    async def main():
        async with spendlog.AsyncClient(user="ann") as client:
            answer = await client.chat.completions.create(model="google/gemini-1.5-flash", messages=MESSAGES)
            stream = await client.chat.completions.create(model="google/gemini-1.5-flash", messages=MESSAGES, stream=True)
            chunks = [c async for c in stream]
        return answer, chunks

    answer, chunks = asyncio.run(main())
    assert answer["usage"]["total_tokens"] and chunks[-1]["choices"][0]["finish_reason"] == "stop"
    recs = records()
    assert [r.stream for r in recs] == [False, True] and {r.user for r in recs} == {"ann"}


def test_missing_key_is_a_config_error(monkeypatch):
    with pytest.raises(spendlog.ConfigError, match="SOLROUTER_API_KEY"):
        spendlog.Client()
    with pytest.raises(spendlog.ConfigError):
        spendlog.AsyncClient(base_url="http://127.0.0.1:1/v1")
    with pytest.raises(spendlog.ConfigError, match="http"):
        spendlog.Client(base_url="api.solrouter.io/v1", api_key="sr_x")


def test_default_base_url(monkeypatch):
    monkeypatch.setenv("SOLROUTER_API_KEY", "sr_test_key")
    with spendlog.Client() as client:
        assert client.base_url == "https://api.solrouter.io/v1/"


@pytest.mark.parametrize("model, stream, error, status", [
    ("fake/error-429", False, spendlog.RateLimitError, 429),
    ("fake/error-500", True, spendlog.ServerError, 500),
    ("no/such-model", False, spendlog.APIError, 404),
])
def test_status_errors(env, model, stream, error, status):
    with spendlog.Client() as client:
        with pytest.raises(error) as info:
            client.chat.completions.create(model=model, messages=MESSAGES, stream=stream)
    exc = info.value
    assert type(exc) is error and exc.status == status and exc.message and isinstance(exc.body, dict)
    if status == 429:
        assert exc.retry_after == 1
    (rec,) = records()
    assert rec.error_type == f"http_{status}"


def test_authentication_error(env):
    with spendlog.Client(api_key="wrong-key-000000000") as client:
        with pytest.raises(spendlog.AuthenticationError) as info:
            client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)
    assert info.value.status == 401 and "API key" in info.value.message


def test_non_json_answer_and_cut_stream(env):
    with spendlog.Client() as client:
        with pytest.raises(spendlog.APIError, match="not JSON") as info:
            client.chat.completions.create(model="fake/non-json", messages=MESSAGES)
        assert info.value.status == 200
        with pytest.raises(spendlog.APIConnectionError):
            list(client.chat.completions.create(model="fake/cut-stream", messages=MESSAGES, stream=True))
    assert [r.error_type for r in records()] == ["bad_response", "stream_interrupted"]


def test_connection_and_timeout_errors(env):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with spendlog.Client(base_url=f"http://127.0.0.1:{port}/v1") as client:
        with pytest.raises(spendlog.APIConnectionError) as info:
            client.chat.completions.create(model="m", messages=MESSAGES)
    assert not isinstance(info.value, spendlog.APITimeoutError) and info.value.__cause__ is not None
    with spendlog.Client(timeout=0.3) as client:
        with pytest.raises(spendlog.APITimeoutError):
            client.chat.completions.create(model="fake/slow", messages=MESSAGES)
    assert [r.error_type for r in records()] == ["connect_error", "timeout"]


def test_error_hierarchy():
    assert issubclass(spendlog.APITimeoutError, spendlog.APIConnectionError)
    for cls in (spendlog.AuthenticationError, spendlog.RateLimitError, spendlog.ServerError):
        assert issubclass(cls, spendlog.APIError)
    for cls in (spendlog.ConfigError, spendlog.APIConnectionError, spendlog.APIError):
        assert issubclass(cls, spendlog.SpendlogError)
    exc = spendlog.APIError("boom", status=418, body={"x": 1})
    assert str(exc) == "418: boom" and exc.body == {"x": 1}


def test_a_cost_beyond_decimal_is_kept_as_text_and_recorded_as_bad_usage():
    """Issue 12, finding 4: ``1e-99999999999999999999`` raises InvalidOperation in Decimal. The
    caller still gets the answer (that number as its text) and the call is recorded as bad_usage."""
    from fixture_proxy import Recorder

    literal = "1e-99999999999999999999"
    body = ('{"id":"chatcmpl-x","object":"chat.completion","created":1,"model":"openai/gpt-4o-mini",'
            '"choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],'
            f'"usage":{{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4,"cost":{literal}}}}}').encode()
    upstream = Recorder(lambda request: b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                        + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
    try:
        with spendlog.Client(base_url=upstream.origin + "/v1", api_key="sr_test_" + "c" * 24) as client:
            answer = client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)
    finally:
        upstream.stop()
    assert answer["choices"][0]["message"]["content"] == "hi"
    assert answer["usage"]["cost"] == literal and answer["usage"]["total_tokens"] == 4
    [row] = records()
    # the unreadable bill is flagged; the call is still priced, as an estimate from its tokens, never as a bill
    assert (row.error_type, row.cost_source, row.total_tokens) == ("bad_usage", "estimated", 4)
    assert row.cost_usd is not None and row.cost_usd > 0 and row.price_source.startswith("genai-prices")
