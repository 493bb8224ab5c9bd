"""The fake upstream's other endpoints (legacy completions, embeddings, Responses API, models), the
official openai SDK against it, the runners and the CLI."""

from __future__ import annotations

import time
from decimal import Decimal

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from fixture_upstream import CHAT, assert_openai_error, data_events, jdec, post, sse

from spendlog.fake_upstream import PRICES, expected_usage, run_fake_upstream, spawn_fake_upstream


# --- other endpoints --------------------------------------------------------------------------

def test_legacy_completions(fake_upstream):
    req = {"model": "openai/gpt-4o-mini", "prompt": "Say hi"}
    r = post(fake_upstream, "completions", req)
    body = jdec(r.content)
    assert body["object"] == "text_completion" and body["id"].startswith("cmpl-")
    assert body["choices"][0]["text"] and body["choices"][0]["finish_reason"] == "stop"
    exp = expected_usage("openai/gpt-4o-mini", req)
    assert exp["cached_tokens"] is None and exp["reasoning_tokens"] is None
    assert body["usage"] == {k: exp[k] for k in ("prompt_tokens", "completion_tokens", "total_tokens", "cost")}
    events = data_events(post(fake_upstream, "completions",
                              {**req, "stream": True, "stream_options": {"include_usage": True}}).text)
    assert events[-1] == "[DONE]" and events[-2]["choices"] == [] and events[-2]["usage"] == body["usage"]
    assert "".join(e["choices"][0]["text"] for e in events[:-2]) == body["choices"][0]["text"]


@pytest.mark.parametrize("fmt", ["float", "base64"])
def test_embeddings(fake_upstream, fmt):
    import base64
    import struct

    req = {"model": "openai/text-embedding-3-small", "input": ["first text", "second"], "encoding_format": fmt}
    body = jdec(post(fake_upstream, "embeddings", req).content)
    assert body["object"] == "list" and [d["index"] for d in body["data"]] == [0, 1]
    emb = body["data"][0]["embedding"]
    vec = struct.unpack("<16f", base64.b64decode(emb)) if fmt == "base64" else emb
    assert len(vec) == 16
    exp = expected_usage(req["model"], req)
    assert body["usage"] == {"prompt_tokens": 5, "total_tokens": 5, "cost": exp["cost"]}
    assert exp["cost"] == 5 * Decimal("0.02") / 10**6 and exp["completion_tokens"] is None
    assert assert_openai_error(post(fake_upstream, "embeddings", {**req, "model": "openai/gpt-4o"}), 404)


def test_responses_api(fake_upstream):
    req = {"model": "openai/o3-mini", "input": "Tell me a joke", "instructions": "be funny"}
    body = jdec(post(fake_upstream, "responses", req).content)
    assert body["object"] == "response" and body["id"].startswith("resp_") and body["status"] == "completed"
    assert [o["type"] for o in body["output"]] == ["reasoning", "message"]
    u, exp = body["usage"], expected_usage("openai/o3-mini", req)
    assert u["input_tokens"] == exp["prompt_tokens"] and u["output_tokens"] == exp["completion_tokens"]
    assert u["output_tokens_details"]["reasoning_tokens"] == exp["reasoning_tokens"] > 0
    assert u["input_tokens_details"]["cached_tokens"] == 0 and u["cost"] == exp["cost"]
    assert u["total_tokens"] == exp["total_tokens"]
    capped = jdec(post(fake_upstream, "responses", {**req, "max_output_tokens": 4}).content)
    assert capped["status"] == "incomplete" and capped["usage"]["output_tokens"] == 4


def test_responses_stream_events(fake_upstream):
    req = {"model": "openai/gpt-4o", "input": [{"role": "user", "content": "hi"}], "stream": True}
    text = post(fake_upstream, "responses", req).text
    blocks = [b for b in sse(text) if not b.startswith(":")]
    kinds = [b.split("\n")[0].removeprefix("event: ") for b in blocks]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert "response.output_text.delta" in kinds and "[DONE]" not in text
    events = data_events(text)
    assert [e["type"] for e in events] == kinds
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    done = events[-1]["response"]
    assert done["output"][0]["content"][0]["text"] == deltas
    req.pop("stream")
    assert done["usage"]["cost"] == expected_usage("openai/gpt-4o", req)["cost"]


def test_models_list(fake_upstream):
    r = httpx.get(fake_upstream.url("/v1/models"), headers={"Authorization": f"Bearer {fake_upstream.api_key}"})
    ids = [m["id"] for m in r.json()["data"]]
    assert ids == list(PRICES)
    mini = next(m for m in r.json()["data"] if m["id"] == "openai/gpt-4o-mini")
    assert Decimal(mini["pricing"]["prompt"]) == Decimal("0.00000015")


# --- the official SDK, the runner, the CLI ----------------------------------------------------

def test_openai_sdk_sync_and_stream(fake_upstream):
    from openai import OpenAI

    with OpenAI(base_url=fake_upstream.base_url, api_key=fake_upstream.api_key, max_retries=0) as client:
        c = client.chat.completions.create(model="openai/gpt-4o-mini", messages=CHAT["messages"])
        exp = expected_usage("openai/gpt-4o-mini", CHAT)
        assert c.usage.prompt_tokens == exp["prompt_tokens"] and c.usage.completion_tokens == exp["completion_tokens"]
        assert c.choices[0].finish_reason == "stop" and c.choices[0].message.content
        chunks = list(client.chat.completions.create(model="openai/gpt-4o-mini", messages=CHAT["messages"],
                                                     stream=True, stream_options={"include_usage": True}))
        assert chunks[-1].usage.total_tokens == exp["total_tokens"]
        assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == c.choices[0].message.content
        e = client.embeddings.create(model="openai/text-embedding-3-small", input="hi")
        assert len(e.data[0].embedding) == 16 and e.usage.prompt_tokens == 1
        resp = client.responses.create(model="openai/gpt-4o", input="hi")
        assert resp.output_text and resp.usage.output_tokens == expected_usage("openai/gpt-4o", {
            "model": "openai/gpt-4o", "input": "hi"})["completion_tokens"]
        with client.responses.stream(model="openai/gpt-4o", input="hi") as stream:
            final = stream.get_final_response()
        assert final.output_text == resp.output_text
        import openai

        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model="fake/error-429", messages=CHAT["messages"])


async def _async_sdk(fake):
    from openai import AsyncOpenAI

    async with AsyncOpenAI(base_url=fake.base_url, api_key=fake.api_key, max_retries=0) as client:
        stream = await client.chat.completions.create(model="anthropic/claude-3.5-sonnet", messages=CHAT["messages"],
                                                      stream=True, stream_options={"include_usage": True})
        return [chunk async for chunk in stream]


def test_openai_sdk_async_stream(fake_upstream):
    import asyncio

    chunks = asyncio.run(_async_sdk(fake_upstream))
    exp = expected_usage("anthropic/claude-3.5-sonnet", {**CHAT, "model": "anthropic/claude-3.5-sonnet"})
    assert chunks[-1].usage.completion_tokens == exp["completion_tokens"]


def test_runner_serves_concurrently_and_stops():
    import asyncio

    with run_fake_upstream(api_key="sr_test_custom_key") as fake:
        assert fake.api_key == "sr_test_custom_key" and fake.base_url == f"http://127.0.0.1:{fake.port}/v1"
        assert fake.url("/v1/models") == fake.url("models") == fake.base_url + "/models"

        async def many():
            async with httpx.AsyncClient(headers={"Authorization": f"Bearer {fake.api_key}"}) as c:
                return await asyncio.gather(*(c.post(fake.url("chat/completions"), json=CHAT) for _ in range(50)))

        assert {r.status_code for r in asyncio.run(many())} == {200}
        assert len(fake.requests) == 50
    with pytest.raises(httpx.ConnectError):
        httpx.get(fake.url("models"), timeout=2)


def test_the_in_process_fake_logs_no_request_lines_whatever_the_host_does_to_logging():
    """The request line holds the caller's ?key=. A host process re-arms "uvicorn.access" after the
    fake's access_log=False emptied it: Streamlit sets its level to INFO, pytest attaches its capture
    handler to every non-propagating logger (CI's security test caught the keys in caplog that way)."""
    import logging

    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record)

    access = logging.getLogger("uvicorn.access")
    keep = Keep()
    with run_fake_upstream() as fake:
        level = access.level
        access.setLevel(logging.INFO)
        access.addHandler(keep)
        try:
            r = httpx.post(fake.url("chat/completions") + "?key=AIzaSy_leak_me", json=CHAT,
                           headers={"Authorization": f"Bearer {fake.api_key}"}, timeout=10)
        finally:
            access.removeHandler(keep)
            access.setLevel(level)
    assert r.status_code == 200 and len(fake.requests) == 1
    assert [rec.getMessage() for rec in seen] == []


def test_cli_help_documents_every_option():
    from click.testing import CliRunner

    from spendlog.cli import cli

    out = CliRunner().invoke(cli, ["fake-upstream", "--help"]).output
    for opt in ("--host", "--port", "--latency-ms", "--chunk-delay-ms"):
        assert opt in out
    assert "fake SolRouter" in out


def test_spawned_fake_serves_from_a_child_process_via_the_cli():
    with spawn_fake_upstream(latency_ms=50) as fake:
        assert fake.base_url == f"http://127.0.0.1:{fake.port}/v1"
        t0 = time.perf_counter()
        r = post(fake, "chat/completions", CHAT)
        assert time.perf_counter() - t0 >= 0.05
        assert jdec(r.content)["usage"]["cost"] == expected_usage("openai/gpt-4o-mini", CHAT)["cost"]
        with pytest.raises(RuntimeError):
            fake.requests  # recorded only in-process
    assert fake._proc.poll() is not None
    with pytest.raises(httpx.ConnectError):
        httpx.get(fake.url("models"), timeout=2)


def test_cli_port_in_use_is_a_clean_error(fake_upstream):
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "spendlog", "fake-upstream", "--port", str(fake_upstream.port)],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and p.stderr.startswith("spendlog: error: cannot listen")
    assert len(p.stderr.strip().splitlines()) == 1


def test_public_names():
    import spendlog.fake_upstream as fu

    assert {"expected_usage", "expected_bill", "create_app", "run_fake_upstream", "start_fake_upstream",
            "FakeUpstream", "new_management_key", "PRICES", "FAKE_MODELS"} <= set(fu.__all__)
    assert all(hasattr(fu, n) for n in fu.__all__)


# --- properties: any valid request is answered with exactly expected_usage; nothing makes it fail --

_text = st.text(max_size=60)
_part = st.one_of(st.fixed_dictionaries({"type": st.just("text"), "text": _text}),
                  st.fixed_dictionaries({"type": st.just("image_url"), "image_url": st.just({"url": "x"})}))
_message = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "user", "assistant"]),
     "content": st.one_of(st.none(), _text, st.lists(_part, max_size=3))},
    optional={"name": st.text(min_size=1, max_size=5)})
_chat = st.fixed_dictionaries(
    {"model": st.sampled_from([m for m, p in PRICES.items() if p.kind == "chat"] + ["fake/no-cost", "fake/auto"]),
     "messages": st.lists(_message, min_size=1, max_size=4)},
    optional={"max_tokens": st.integers(1, 80), "tools": st.just([{"type": "function", "function": {"name": "f"}}])})
_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | _text,
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3), max_leaves=8)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_chat)
def test_any_chat_request_reports_exactly_expected_usage(fake_upstream, body):
    u = jdec(post(fake_upstream, "chat/completions", body).content)["usage"]
    exp = expected_usage(body["model"], body)
    assert (u["prompt_tokens"], u["completion_tokens"], u["total_tokens"], u.get("cost")) == (
        exp["prompt_tokens"], exp["completion_tokens"], exp["total_tokens"], exp["cost"])
    if "max_tokens" in body:
        assert u["completion_tokens"] <= body["max_tokens"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(["chat/completions", "completions", "embeddings", "responses"]),
       body=st.one_of(_json, st.fixed_dictionaries({"model": st.sampled_from(list(PRICES))},
                                                   optional={k: _json for k in ("messages", "prompt", "input",
                                                             "tools", "max_tokens", "stream_options")})))
def test_odd_bodies_get_a_clean_answer_never_a_crash(fake_upstream, path, body):
    r = post(fake_upstream, path, body)
    assert r.status_code in (200, 400, 404), r.text
    if r.status_code != 200:
        assert_openai_error(r, r.status_code)
