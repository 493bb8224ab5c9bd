"""The fake upstream over real HTTP: chat completion shapes, exact usage and cost, streams, every
error mode, auth. (Other endpoints, the SDK, the runner and the CLI: test_fake_upstream_endpoints.py.)"""

from __future__ import annotations

import json
import re
import time
from decimal import Decimal

import httpx
import pytest
from fixture_upstream import CHAT, assert_openai_error, data_events, jdec, post, sse

from spendlog.fake_upstream import PRICES, expected_usage

COST_LITERAL = re.compile(rb'"cost":(-?\d+(?:\.\d+)?)[,}]')

# --- chat completions: shape and exact usage --------------------------------------------------

def test_chat_shape_matches_the_solrouter_docs(fake_upstream):
    r = post(fake_upstream, "chat/completions", CHAT)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.headers["x-request-id"].startswith("req_")
    body = jdec(r.content)
    assert re.fullmatch(r"chatcmpl-[0-9a-f]{24}", body["id"])
    assert body["object"] == "chat.completion"
    assert isinstance(body["created"], int) and abs(body["created"] - time.time()) < 60
    assert body["model"] == "openai/gpt-4o-mini"
    (choice,) = body["choices"]
    assert choice["index"] == 0 and choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant" and choice["message"]["content"]
    u = body["usage"]
    assert set(u) == {"prompt_tokens", "completion_tokens", "total_tokens", "cost",
                      "prompt_tokens_details", "completion_tokens_details"}
    # "hello there": 3 priming + 4 per message + ceil(11 / 4) = 10 prompt tokens.
    assert u["prompt_tokens"] == 10
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
    assert u["completion_tokens"] == len(choice["message"]["content"].split())
    assert u["prompt_tokens_details"] == {"cached_tokens": 0}
    assert u["completion_tokens_details"] == {"reasoning_tokens": 0}
    # $0.15 / $0.60 per 1M tokens, computed here independently of the fake.
    assert u["cost"] == (10 * Decimal("0.15") + u["completion_tokens"] * Decimal("0.60")) / 1_000_000
    assert isinstance(u["cost"], Decimal)


def test_same_input_same_answer_and_different_input_differs(fake_upstream):
    a, b = (jdec(post(fake_upstream, "chat/completions", CHAT).content) for _ in range(2))
    assert a["id"] != b["id"]
    assert a["usage"] == b["usage"] and a["choices"] == b["choices"]
    other = {**CHAT, "messages": [{"role": "user", "content": "something else entirely"}]}
    c = jdec(post(fake_upstream, "chat/completions", other).content)
    assert (c["usage"], c["choices"]) != (a["usage"], a["choices"])


@pytest.mark.parametrize("model", [m for m, p in PRICES.items() if p.kind == "chat"])
def test_cost_is_an_exact_literal_equal_to_expected_usage(fake_upstream, model):
    long = " ".join(["word"] * 1200)  # >= 1024 prompt tokens: part of it is cached
    for content in ("short question?", long):
        req = {"model": model, "messages": [{"role": "system", "content": "be brief"},
                                            {"role": "user", "content": content}]}
        r = post(fake_upstream, "chat/completions", req)
        literal = COST_LITERAL.search(r.content).group(1)
        assert b"e" not in literal.lower()
        u = jdec(r.content)["usage"]
        exp = expected_usage(model, req)
        assert Decimal(literal.decode()) == exp["cost"] == u["cost"]
        assert exp == {"prompt_tokens": u["prompt_tokens"], "completion_tokens": u["completion_tokens"],
                       "total_tokens": u["total_tokens"], "cost": u["cost"],
                       "cached_tokens": u["prompt_tokens_details"]["cached_tokens"],
                       "reasoning_tokens": u["completion_tokens_details"]["reasoning_tokens"]}
        if content is long:
            assert exp["cached_tokens"] > 0 and exp["cached_tokens"] % 128 == 0
        assert (exp["reasoning_tokens"] > 0) == PRICES[model].reasoning


def test_cached_tokens_are_billed_at_the_cached_price(fake_upstream):
    req = {"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "x" * 8000}]}
    u = jdec(post(fake_upstream, "chat/completions", req).content)["usage"]
    p, c = u["prompt_tokens"], u["prompt_tokens_details"]["cached_tokens"]
    assert p == 3 + 4 + 2000 and c == (p * 3 // 4) // 128 * 128
    expected = ((p - c) * Decimal("2.50") + c * Decimal("1.25") + u["completion_tokens"] * Decimal("10")) / 10**6
    assert u["cost"] == expected


@pytest.mark.parametrize("key", ["max_tokens", "max_completion_tokens"])
def test_max_tokens_caps_the_completion_with_finish_length(fake_upstream, key):
    body = jdec(post(fake_upstream, "chat/completions", {**CHAT, key: 3}).content)
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 3
    assert len(body["choices"][0]["message"]["content"].split()) == 3


def test_reasoning_model_counts_reasoning_inside_completion(fake_upstream):
    req = {**CHAT, "model": "deepseek/deepseek-r1"}
    body = jdec(post(fake_upstream, "chat/completions", req).content)
    u = body["usage"]
    reasoning = u["completion_tokens_details"]["reasoning_tokens"]
    assert reasoning >= 10
    assert u["completion_tokens"] == reasoning + len(body["choices"][0]["message"]["content"].split())
    capped = jdec(post(fake_upstream, "chat/completions", {**req, "max_tokens": 5}).content)
    assert capped["usage"]["completion_tokens"] == 5
    assert capped["usage"]["completion_tokens_details"]["reasoning_tokens"] == 5
    assert capped["choices"][0]["finish_reason"] == "length"


def test_tools_give_a_tool_call(fake_upstream):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}]
    req = {**CHAT, "tools": tools}
    body = jdec(post(fake_upstream, "chat/completions", req).content)
    (choice,) = body["choices"]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["function"]["name"] == "get_weather"
    assert set(json.loads(call["function"]["arguments"])) == {"city"}
    assert body["usage"]["prompt_tokens"] > 10  # the tools are part of the prompt
    assert expected_usage(req["model"], req)["prompt_tokens"] == body["usage"]["prompt_tokens"]
    no_tool = jdec(post(fake_upstream, "chat/completions", {**req, "tool_choice": "none"}).content)
    assert no_tool["choices"][0]["finish_reason"] == "stop"


def test_content_filter_and_router_alias(fake_upstream):
    body = jdec(post(fake_upstream, "chat/completions", {**CHAT, "model": "fake/content-filter"}).content)
    assert body["choices"][0]["finish_reason"] == "content_filter"
    body = jdec(post(fake_upstream, "chat/completions", {**CHAT, "model": "fake/auto"}).content)
    assert body["model"] == "openai/gpt-4o-mini"
    assert body["usage"]["cost"] == expected_usage("fake/auto", {**CHAT, "model": "fake/auto"})["cost"]


# --- streaming --------------------------------------------------------------------------------

def test_stream_event_order_comments_usage_chunk_and_done(fake_upstream):
    req = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    r = post(fake_upstream, "chat/completions", req)
    assert r.headers["content-type"].startswith("text/event-stream")
    blocks = sse(r.text)
    assert blocks[0] == ": keep-alive"
    assert sum(b == ": keep-alive" for b in blocks) >= 2  # comments in the middle too
    events = data_events(r.text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    *content, finish, usage = chunks
    assert finish["choices"][0]["finish_reason"] == "stop" and finish["choices"][0]["delta"] == {}
    assert all(c["usage"] is None for c in content + [finish])
    assert all(c["choices"][0]["finish_reason"] is None for c in content)
    assert usage["choices"] == []
    plain = jdec(post(fake_upstream, "chat/completions", CHAT).content)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in content)
    assert text == plain["choices"][0]["message"]["content"]
    assert usage["usage"] == plain["usage"]
    assert COST_LITERAL.search(r.content.split(b"\n\n")[-3])


def test_stream_without_include_usage_has_no_usage(fake_upstream):
    r = post(fake_upstream, "chat/completions", {**CHAT, "stream": True})
    events = data_events(r.text)
    assert events[-1] == "[DONE]"
    assert all("usage" not in e and e["choices"] for e in events[:-1])
    assert events[-2]["choices"][0]["finish_reason"] == "stop"


def test_stream_chunk_count_and_delay_headers(fake_upstream):
    headers = {"X-Fake-Chunks": "50"}
    events = data_events(post(fake_upstream, "chat/completions", {**CHAT, "stream": True}, headers=headers).text)
    assert len([e for e in events[:-1] if e["choices"][0]["delta"].get("content")]) == 50
    t0 = time.perf_counter()
    r = post(fake_upstream, "chat/completions", {**CHAT, "stream": True},
             headers={"X-Fake-Chunks": "5", "X-Fake-Chunk-Delay-Ms": "40"})
    assert r.status_code == 200
    assert time.perf_counter() - t0 >= 0.2  # 5 content chunks + finish, 40 ms apart after the first event


def test_tool_call_stream(fake_upstream):
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {
        "type": "object", "properties": {"q": {"type": "string"}}}}}]
    events = data_events(post(fake_upstream, "chat/completions", {**CHAT, "tools": tools, "stream": True}).text)
    first = events[0]["choices"][0]["delta"]["tool_calls"][0]
    assert first["function"]["name"] == "lookup"
    args = "".join(e["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                   for e in events[:-2] if e["choices"][0]["delta"].get("tool_calls"))
    assert set(json.loads(args)) == {"q"}
    assert events[-2]["choices"][0]["finish_reason"] == "tool_calls"


# --- error modes ------------------------------------------------------------------------------

def test_429_has_retry_after(fake_upstream):
    r = post(fake_upstream, "chat/completions", {**CHAT, "model": "fake/error-429"})
    assert assert_openai_error(r, 429)["code"] == "rate_limit_exceeded"
    assert r.headers["retry-after"] == "1"


def test_500(fake_upstream):
    assert assert_openai_error(post(fake_upstream, "chat/completions", {**CHAT, "model": "fake/error-500"}), 500)["type"] == "server_error"


def test_non_json(fake_upstream):
    r = post(fake_upstream, "chat/completions", {**CHAT, "model": "fake/non-json"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    with pytest.raises(ValueError):
        r.json()


def test_cut_non_stream_drops_the_connection_mid_body(fake_upstream):
    with pytest.raises(httpx.RemoteProtocolError):
        post(fake_upstream, "chat/completions", {**CHAT, "model": "fake/cut-stream"})


def test_cut_stream_sends_some_chunks_then_drops_without_done(fake_upstream):
    req = {**CHAT, "model": "fake/cut-stream", "stream": True, "stream_options": {"include_usage": True}}
    lines = []
    with pytest.raises(httpx.RemoteProtocolError):
        with httpx.stream("POST", fake_upstream.url("chat/completions"), json=req, timeout=10,
                          headers={"Authorization": f"Bearer {fake_upstream.api_key}"}) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                lines.append(line)
    data = [line for line in lines if line.startswith("data: ")]
    assert len(data) >= 2 and "data: [DONE]" not in data
    assert all(json.loads(d[6:])["choices"] for d in data)  # never reached the usage chunk
    assert expected_usage("fake/cut-stream", req) is None


def test_no_usage_even_in_streams_with_include_usage(fake_upstream):
    req = {**CHAT, "model": "fake/no-usage"}
    assert "usage" not in post(fake_upstream, "chat/completions", req).json()
    events = data_events(post(fake_upstream, "chat/completions",
                              {**req, "stream": True, "stream_options": {"include_usage": True}}).text)
    assert events[-1] == "[DONE]" and all(e["choices"] and e.get("usage") is None for e in events[:-1])
    assert expected_usage("fake/no-usage", req) is None


def test_no_cost(fake_upstream):
    req = {**CHAT, "model": "fake/no-cost"}
    u = post(fake_upstream, "chat/completions", req).json()["usage"]
    assert "cost" not in u and u["prompt_tokens"] == 10
    exp = expected_usage("fake/no-cost", req)
    assert exp["cost"] is None and exp["total_tokens"] == u["total_tokens"]


def test_slow_waits_the_latency_header_or_two_seconds(fake_upstream):
    req = {**CHAT, "model": "fake/slow"}
    t0 = time.perf_counter()
    assert post(fake_upstream, "chat/completions", req, headers={"X-Fake-Latency-Ms": "150"}).status_code == 200
    assert 0.15 <= time.perf_counter() - t0 < 1.5
    with pytest.raises(httpx.ReadTimeout):
        post(fake_upstream, "chat/completions", req, timeout=0.5)


def test_latency_option_applies_to_normal_models(fake_upstream_factory):
    fake = fake_upstream_factory(latency_ms=120)
    t0 = time.perf_counter()
    assert post(fake, "chat/completions", CHAT).status_code == 200
    assert time.perf_counter() - t0 >= 0.12


def test_repeat_id(fake_upstream):
    ids = {post(fake_upstream, "chat/completions", {**CHAT, "model": "fake/repeat-id"}).json()["id"] for _ in range(2)}
    assert ids == {"chatcmpl-repeated"}


def test_reject_stream_options(fake_upstream):
    req = {**CHAT, "model": "fake/reject-stream-options", "stream": True}
    err = assert_openai_error(post(fake_upstream, "chat/completions", {**req, "stream_options": {"include_usage": True}}), 400)
    assert "stream_options" in err["message"]
    r = post(fake_upstream, "chat/completions", req)
    assert r.status_code == 200 and data_events(r.text)[-1] == "[DONE]"


def test_unknown_model_bad_json_and_missing_fields(fake_upstream):
    assert assert_openai_error(post(fake_upstream, "chat/completions", {**CHAT, "model": "acme/nope"}), 404)["code"] == "model_not_found"
    r = httpx.post(fake_upstream.url("chat/completions"), content=b"{not json",
                   headers={"Authorization": f"Bearer {fake_upstream.api_key}"})
    assert_openai_error(r, 400)
    assert assert_openai_error(post(fake_upstream, "chat/completions", {"model": "openai/gpt-4o"}), 400)["param"] == "messages"
    assert assert_openai_error(post(fake_upstream, "chat/completions", {"messages": []}), 400)["param"] == "model"
    assert assert_openai_error(post(fake_upstream, "chat/completions", {**CHAT, "max_tokens": 0}), 400)
    assert assert_openai_error(post(fake_upstream, "chat/completions", {**CHAT, "stream_options": {"include_usage": True}}), 400)
    assert assert_openai_error(post(fake_upstream, "nope", CHAT), 404)
    r = httpx.get(fake_upstream.url("chat/completions"), headers={"Authorization": f"Bearer {fake_upstream.api_key}"})
    assert assert_openai_error(r, 405)["code"] == "method_not_allowed"


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "sr_test_0123456789"}, {"Authorization": "Bearer sk-0123456789abcdef"},
    {"Authorization": "Bearer sr_"}, {"api-key": "sr_test_0123456789"}, {"x-api-key": "sr_test_0123456789"},
])
def test_auth_requires_bearer_sr_key(fake_upstream, headers):
    r = post(fake_upstream, "chat/completions", CHAT, key=False, headers=headers)
    assert assert_openai_error(r, 401)["code"] == "invalid_api_key"
    assert assert_openai_error(httpx.get(fake_upstream.url("models"), headers=headers), 401)


def test_requests_are_recorded_for_inspection(fake_upstream):
    post(fake_upstream, "chat/completions", CHAT, headers={"X-Trace": "abc"})
    seen = fake_upstream.last_request
    assert (seen.method, seen.path) == ("POST", "/v1/chat/completions")
    assert seen.headers["x-trace"] == "abc" and seen.json() == CHAT
    assert len(fake_upstream.requests) == 1
