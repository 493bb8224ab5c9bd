"""Streams the caller abandons (issue 8, fault 8): 500 streams left by ``break``, by ``close()`` and by
task cancellation, on clients limited to 2 connections. No pool exhaustion (a pool timeout would
raise), every stream recorded once as ``cancelled``. Through the proxy too, on an upstream pool of
2 connections. tests/test_transport.py::test_200_broken_streams_on_two_connections covers 200
``break``s; this adds ``close()``, cancellation, dropping a stream without closing it, and the proxy.
"""

from __future__ import annotations

import asyncio
import gc
import time

import httpx
import httpx2
import openai
import pytest
from fixture_proxy import rows

from spendlog.transport import AsyncLoggingTransport, LoggingTransport

pytestmark = pytest.mark.timeout(300)

MESSAGES = [{"role": "user", "content": "stream something long"}]
LONG = {"X-Fake-Chunks": "40", "X-Fake-Chunk-Delay-Ms": "2"}  # still streaming when the caller leaves


def _sync_sdk(base: str, key: str, *, hooked: bool = True) -> openai.OpenAI:
    inner = httpx2.HTTPTransport(limits=httpx2.Limits(max_connections=2, max_keepalive_connections=2))
    client = httpx2.Client(transport=LoggingTransport(inner) if hooked else inner, timeout=httpx2.Timeout(10, pool=5))
    return openai.OpenAI(base_url=base, api_key=key, max_retries=0, http_client=client)


def _async_sdk(base: str, key: str) -> openai.AsyncOpenAI:
    inner = httpx2.AsyncHTTPTransport(limits=httpx2.Limits(max_connections=2, max_keepalive_connections=2))
    client = httpx2.AsyncClient(transport=AsyncLoggingTransport(inner), timeout=httpx2.Timeout(10, pool=5))
    return openai.AsyncOpenAI(base_url=base, api_key=key, max_retries=0, http_client=client)


def _abandon(client: openai.OpenAI, how: str) -> None:
    create = client.chat.completions.create
    if how == "break":
        with create(model="openai/gpt-4o-mini", messages=MESSAGES, stream=True, extra_headers=LONG) as stream:
            for _ in stream:
                break
    elif how == "close":
        stream = create(model="openai/gpt-4o-mini", messages=MESSAGES, stream=True, extra_headers=LONG)
        next(iter(stream))
        stream.close()
    else:
        raise ValueError(how)


async def _cancel_many(client: openai.AsyncOpenAI, n: int) -> None:
    for _ in range(n):
        got = asyncio.Event()

        async def consume():
            stream = await client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES,
                                                          stream=True, extra_headers=LONG)
            async for _ in stream:
                got.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(got.wait(), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    # the pool still serves a whole call
    done = await client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)
    assert done.choices[0].finish_reason == "stop"


@pytest.mark.slow
def test_500_abandoned_streams_on_two_connections_through_the_hook(fake_upstream):
    started = time.monotonic()
    client = _sync_sdk(fake_upstream.base_url, fake_upstream.api_key)
    for how in ["break"] * 170 + ["close"] * 170:
        _abandon(client, how)
    assert client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES).choices

    async def cancelled():
        aclient = _async_sdk(fake_upstream.base_url, fake_upstream.api_key)
        try:
            await _cancel_many(aclient, 160)
        finally:
            await aclient.close()

    asyncio.run(cancelled())
    took = time.monotonic() - started
    recs = rows(expect=502, timeout=20)
    abandoned = [r for r in recs if r.error_type is not None]
    whole = [r for r in recs if r.error_type is None]
    assert len(recs) == 502 and len(whole) == 2
    assert len(abandoned) == 500 and {r.error_type for r in abandoned} == {"cancelled"}
    assert {r.status_code for r in abandoned} == {200} and all(r.stream for r in abandoned)
    print(f"\n500 abandoned streams on 2 connections: {took:.1f} s")


def test_stream_dropped_without_close_is_the_same_with_and_without_the_hook(fake_upstream):
    """``for chunk in stream: break`` and the stream simply dropped (no ``with``, no ``close``):
    the caller sees the same thing with and without the hook, and the hook still records it."""
    def run(hooked: bool) -> list[str]:
        client = _sync_sdk(fake_upstream.base_url, fake_upstream.api_key, hooked=hooked)
        seen = []
        for _ in range(6):  # three times the pool size
            try:
                stream = client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES,
                                                        stream=True, extra_headers=LONG)
                for _chunk in stream:
                    break
                del stream
                gc.collect()
                seen.append("ok")
            except Exception as exc:  # noqa: BLE001 - a pool timeout would show here
                seen.append(type(exc).__name__)
        return seen

    plain = run(False)
    hooked = run(True)
    assert hooked == plain
    reached = sum(1 for s in hooked if s == "ok")
    recs = rows(expect=reached, timeout=10)
    assert len(recs) == reached, f"{reached} streams dropped, {len(recs)} recorded"
    assert {r.error_type for r in recs} == {"cancelled"}


def test_abandoned_streams_through_the_proxy_on_two_upstream_connections(fake_upstream, proxy_factory):
    proxy = proxy_factory(fake_upstream.base_url, pool_size=2, shutdown_timeout=2)
    n = 100
    limits = httpx.Limits(max_connections=2, max_keepalive_connections=2)
    with httpx.Client(limits=limits, timeout=httpx.Timeout(10, pool=5)) as client:
        headers = {"Authorization": f"Bearer {fake_upstream.api_key}", **LONG}
        body = {"model": "openai/gpt-4o-mini", "messages": MESSAGES, "stream": True}
        for _ in range(n):
            with client.stream("POST", proxy.url("/v1/chat/completions"), headers=headers, json=body) as r:
                for _line in r.iter_lines():
                    break
        r = client.post(proxy.url("/v1/chat/completions"), json={**body, "stream": False},
                        headers={"Authorization": f"Bearer {fake_upstream.api_key}"})
        assert r.status_code == 200  # the proxy's upstream pool is not exhausted
    recs = rows(expect=n + 1, timeout=20)
    assert len(recs) == n + 1
    assert sorted(str(r.error_type) for r in recs) == ["None"] + ["cancelled"] * n
