"""Upstream faults through the hook and through the proxy (issue 8, fault 7): every error mode of
the fake upstream, streamed and not, sync and async. For each, the caller's view with spendlog is
compared with its view without spendlog (the same call straight to the fake): exception class,
status, message and body, or the result itself (ids and timestamps aside). And each call leaves
exactly one record with the right error type and usage.

The hook's own tests (tests/test_transport.py::test_error_modes) check the record of each mode;
here the comparison is stricter (messages, bodies, chunks, headers) and runs through the proxy too.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket

import httpx
import httpx2
import openai
import pytest
from fixture_proxy import normalise, rows

from spendlog.fake_upstream import expected_usage
from spendlog.transport import AsyncLoggingTransport, LoggingTransport

MESSAGES = [{"role": "user", "content": "Tell me about fault tolerance"}]
TOKENS = ("prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens", "reasoning_tokens")

# mode -> (error_type of the record, status of the record, usage recorded?)
MODES = {
    "openai/gpt-4o-mini": (None, 200, "exact"),
    "fake/error-429": ("http_429", 429, "none"),
    "fake/error-500": ("http_500", 500, "none"),
    "fake/non-json": ("bad_response", 200, "none"),
    "fake/cut-stream": ("stream_interrupted", 200, "none"),
    "fake/no-usage": (None, 200, "none"),
    "fake/no-cost": (None, 200, "exact"),
    "fake/repeat-id": (None, 200, "exact"),
}
_VOLATILE = re.compile(r"(chatcmpl-|req_|cmpl-)[0-9a-f]{6,}|\b(created|created_at)\W+\d+|127\.0\.0\.1:\d+")


def _scrub(text: str) -> str:
    return _VOLATILE.sub("<v>", text)


def _outcome(fn) -> tuple:
    """What the caller sees: ("ok", normalised result) or (exception class, status, message, body)."""
    try:
        result = fn()
        if isinstance(result, openai.Stream):
            result = [c.to_dict() for c in result]
        elif hasattr(result, "to_dict"):
            result = result.to_dict()
        return "ok", _scrub(json.dumps(result, sort_keys=True, default=str))
    except Exception as exc:  # noqa: BLE001 - the exception is the observation
        body = getattr(exc, "body", None)
        status = getattr(exc, "status_code", None)
        response = getattr(exc, "response", None)
        retry_after = response.headers.get("retry-after") if response is not None else None
        return (type(exc).__name__, status, _scrub(str(exc)), _scrub(json.dumps(body, sort_keys=True, default=str)),
                retry_after)


async def _aoutcome(coro_fn) -> tuple:
    try:
        result = await coro_fn()
        if isinstance(result, openai.AsyncStream):
            result = [c.to_dict() async for c in result]
        elif hasattr(result, "to_dict"):
            result = result.to_dict()
        return "ok", _scrub(json.dumps(result, sort_keys=True, default=str))
    except Exception as exc:  # noqa: BLE001
        body = getattr(exc, "body", None)
        return (type(exc).__name__, getattr(exc, "status_code", None), _scrub(str(exc)),
                _scrub(json.dumps(body, sort_keys=True, default=str)))


def _sdk(base_url: str, key: str, *, hooked: bool, **kw) -> openai.OpenAI:
    inner = httpx2.HTTPTransport()
    client = httpx2.Client(transport=LoggingTransport(inner) if hooked else inner)
    return openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, http_client=client, **kw)


def _async_sdk(base_url: str, key: str, *, hooked: bool) -> openai.AsyncOpenAI:
    inner = httpx2.AsyncHTTPTransport()
    client = httpx2.AsyncClient(transport=AsyncLoggingTransport(inner) if hooked else inner)
    return openai.AsyncOpenAI(base_url=base_url, api_key=key, max_retries=0, http_client=client)


def _check_record(row, model: str, stream: bool) -> None:
    error_type, status, usage = MODES[model]
    assert (row.error_type, row.status_code, row.stream, row.requested_model) == (error_type, status, stream, model)
    expected = expected_usage(model, {"model": model, "messages": MESSAGES, "stream": stream}, "chat")
    if usage == "exact":
        assert {f: getattr(row, f) for f in TOKENS} == {f: expected[f] for f in TOKENS}
        assert row.cost_usd == expected["cost"]
        assert row.cost_source == ("missing" if expected["cost"] is None else "upstream")
    else:
        assert all(getattr(row, f) is None for f in TOKENS), "a token count stored for a call that reported none"
        assert row.cost_usd is None and row.cost_source == "missing"
    if status >= 400:  # the upstream's own message
        assert row.error_message in ("Rate limit reached for requests. Please try again in 1s.",
                                     "The server had an error while processing your request.")


# -- the hook ------------------------------------------------------------------------------------

@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("model", list(MODES))
def test_hook_sync_caller_sees_what_it_sees_without_spendlog(fake_upstream, model, stream):
    def call(hooked):
        client = _sdk(fake_upstream.base_url, fake_upstream.api_key, hooked=hooked)
        return _outcome(lambda: client.chat.completions.create(model=model, messages=MESSAGES, stream=stream))

    plain = call(False)
    hooked = call(True)
    assert hooked == plain
    [row] = rows(expect=1)
    _check_record(row, model, stream)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("model", list(MODES))
def test_hook_async_caller_sees_what_it_sees_without_spendlog(fake_upstream, model, stream):
    async def call(hooked):
        client = _async_sdk(fake_upstream.base_url, fake_upstream.api_key, hooked=hooked)
        try:
            return await _aoutcome(lambda: client.chat.completions.create(model=model, messages=MESSAGES,
                                                                           stream=stream))
        finally:
            await client.close()

    plain = asyncio.run(call(False))
    hooked = asyncio.run(call(True))
    assert hooked == plain
    [row] = rows(expect=1)
    _check_record(row, model, stream)


@pytest.mark.parametrize("model", ["openai/gpt-4o-mini", "fake/error-429", "fake/non-json", "fake/no-usage"])
def test_hook_raw_bytes_status_and_headers_are_the_upstreams(fake_upstream, model):
    """Plain httpx, not streamed: status, headers (volatile ones aside) and body bytes identical."""
    def call(hooked):
        inner = httpx.HTTPTransport()
        with httpx.Client(transport=LoggingTransport(inner) if hooked else inner) as client:
            r = client.post(fake_upstream.url("/v1/chat/completions"), json={"model": model, "messages": MESSAGES},
                            headers={"Authorization": f"Bearer {fake_upstream.api_key}"})
            headers = {k: v for k, v in r.headers.items() if k not in ("date", "x-request-id")}
            return r.status_code, headers, normalise(r.content)

    assert call(True) == call(False)
    assert len(rows(expect=1)) == 1


def test_hook_timeout_and_connection_refused_are_the_same_exceptions(fake_upstream):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    cases = [
        (fake_upstream.base_url, "fake/slow", False, {"timeout": 0.3}),
        (fake_upstream.base_url, "fake/slow", True, {"timeout": 0.3}),
        (closed, "openai/gpt-4o-mini", False, {}),
        (closed, "openai/gpt-4o-mini", True, {}),
    ]
    for base, model, stream, kw in cases:
        def call(hooked):
            client = _sdk(base, fake_upstream.api_key, hooked=hooked, **kw)
            return _outcome(lambda: client.chat.completions.create(model=model, messages=MESSAGES, stream=stream))

        assert call(True) == call(False), (base, model, stream)
    recs = rows(expect=4)
    assert [(r.error_type, r.status_code) for r in recs] == [("timeout", None)] * 2 + [("connect_error", None)] * 2


def test_hook_repeated_upstream_id_gives_one_record_per_call(fake_upstream):
    client = _sdk(fake_upstream.base_url, fake_upstream.api_key, hooked=True)
    for stream in (False, True, False):
        _outcome(lambda: client.chat.completions.create(model="fake/repeat-id", messages=MESSAGES, stream=stream))
    recs = rows(expect=3)
    assert len(recs) == 3 and len({r.id for r in recs}) == 3
    assert {r.request_id for r in recs} == {"chatcmpl-repeated"}


# -- the proxy -----------------------------------------------------------------------------------

@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("model", list(MODES))
def test_proxy_caller_sees_what_it_sees_without_spendlog(fake_upstream, proxy, model, stream):
    def call(base):
        client = _sdk(base, fake_upstream.api_key, hooked=False)
        return _outcome(lambda: client.chat.completions.create(model=model, messages=MESSAGES, stream=stream))

    direct = call(fake_upstream.base_url)
    proxied = call(proxy.base_url)
    assert proxied == direct
    [row] = rows(expect=1)
    _check_record(row, model, stream)


@pytest.mark.parametrize("model", ["openai/gpt-4o-mini", "fake/error-429", "fake/error-500", "fake/non-json"])
def test_proxy_raw_status_headers_and_bytes_are_the_upstreams(fake_upstream, proxy, model):
    def call(base):
        r = httpx.post(base + "/chat/completions", json={"model": model, "messages": MESSAGES},
                       headers={"Authorization": f"Bearer {fake_upstream.api_key}"})
        keep = ("content-type", "retry-after", "content-length")
        return r.status_code, {k: r.headers.get(k) for k in keep}, normalise(r.content)

    assert call(proxy.base_url) == call(fake_upstream.base_url)
    assert len(rows(expect=1)) == 1


def test_proxy_client_timeout_is_the_same_exception_and_one_record(fake_upstream, proxy):
    def call(base):
        client = _sdk(base, fake_upstream.api_key, hooked=False, timeout=0.3)
        return _outcome(lambda: client.chat.completions.create(model="fake/slow", messages=MESSAGES))

    assert call(proxy.base_url) == call(fake_upstream.base_url)
    [row] = rows(expect=1, timeout=10)
    assert row.error_type in ("cancelled", "timeout") and row.requested_model == "fake/slow"


def test_proxy_repeated_upstream_id_gives_one_record_per_call(fake_upstream, proxy):
    client = _sdk(proxy.base_url, fake_upstream.api_key, hooked=False)
    for stream in (False, True, False):
        _outcome(lambda: client.chat.completions.create(model="fake/repeat-id", messages=MESSAGES, stream=stream))
    recs = rows(expect=3)
    assert len(recs) == 3 and len({r.id for r in recs}) == 3
    assert {r.request_id for r in recs} == {"chatcmpl-repeated"}
