"""CallCapture as a state machine, on bytes (the HTTP tests are in test_transport.py)."""

from __future__ import annotations

import gzip
import json
import logging
import os
from decimal import Decimal

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from helpers import ledger_rows

import spendlog
from spendlog.capture import CallCapture, hint_for, key_hint, parse_tags, scrub, split_attribution
from spendlog.db.models import Completion

KEY = "sr_test_0123456789abcdef01234567"
URL = "http://127.0.0.1:8790/v1/chat/completions"
HEADERS = [("Authorization", f"Bearer {KEY}"), ("Content-Type", "application/json"), ("Content-Length", "0")]
SSE = [("content-type", "text/event-stream; charset=utf-8")]
JSON_CT = [("content-type", "application/json")]

USAGE = (b'{"prompt_tokens":12,"completion_tokens":7,"total_tokens":19,"cost":0.0000060300,'
         b'"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}')


def chat_stream(*, include_usage: bool, crlf: bool = False) -> tuple[bytes, list[bytes]]:
    """A stream as the fake sends it, and the events a caller who did not ask for usage sees."""
    tail = b',"usage":null}' if include_usage else b"}"
    head = b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","model":"openai/gpt-4o-mini"'
    events = [
        b": keep-alive\n\n",
        head + b',"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]' + tail + b"\n\n",
        head + b',"choices":[{"index":0,"delta":{"content":"Hi there"},"finish_reason":null}]' + tail + b"\n\n",
        b": keep-alive\n\n",
        head + b',"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]' + tail + b"\n\n",
    ]
    clean = [e.replace(b',"usage":null', b"") for e in events]
    if include_usage:
        events.append(head + b',"choices":[],"usage":' + USAGE + b"}\n\n")
    events.append(b"data: [DONE]\n\n")
    clean.append(b"data: [DONE]\n\n")
    if crlf:
        events = [e.replace(b"\n", b"\r\n") for e in events]
        clean = [e.replace(b"\n", b"\r\n") for e in clean]
    return b"".join(events), clean


def start(body: dict | bytes, *, url: str = URL, headers=HEADERS, **kw) -> CallCapture:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    capture = CallCapture.start("POST", url, headers, raw, **kw)
    assert capture is not None
    return capture


def run(capture: CallCapture, status: int, headers, chunks: list[bytes]) -> bytes:
    capture.response_started(status, headers)
    out = b"".join(capture.feed(c) for c in chunks)
    return out + capture.end_of_body()


STREAM_REQ = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True}


# -- which calls are tracked --------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses",
                                  "/api/v1/chat/completions/"])
def test_tracked_paths(path):
    assert CallCapture.start("POST", "https://api.solrouter.io" + path, HEADERS, b"{}") is not None


@pytest.mark.parametrize("method, path", [("GET", "/v1/chat/completions"), ("POST", "/v1/models"),
                                          ("POST", "/v1/files"), ("GET", "/v1/responses")])
def test_untracked_calls(method, path):
    assert CallCapture.start(method, "https://api.solrouter.io" + path, HEADERS, b"{}") is None


def test_endpoint_and_upstream():
    capture = start(b"{}", url="https://user:pw@api.solrouter.io/api/v1/chat/completions?x=1")
    record = capture.record()
    assert record["endpoint"] == "/v1/chat/completions"
    assert record["upstream"] == "api.solrouter.io"


def test_start_never_raises(caplog):
    assert CallCapture.start("POST", object(), HEADERS, b"{}") is None  # type: ignore[arg-type]


# -- attribution and keys ---------------------------------------------------------------------

def test_split_attribution_removes_headers_any_case():
    headers = [("x-spendlog-app", "bot"), ("X-SPENDLOG-USER", "ann"), ("X-Spendlog-Tags", "team=core, env = prod,solo"),
               ("Accept", "*/*")]
    left, app, user, tags = split_attribution(headers)
    assert left == [("Accept", "*/*")]
    assert (app, user, tags) == ("bot", "ann", {"team": "core", "env": "prod", "solo": ""})


def test_split_attribution_bytes_headers():
    left, app, user, tags = split_attribution([(b"X-Spendlog-App", b"bot"), (b"Host", b"x")])
    assert left == [(b"Host", b"x")] and app == "bot" and user is None and tags is None


def test_parse_tags_edge_cases():
    assert parse_tags("") is None
    assert parse_tags(" , ,=x") is None
    assert parse_tags("a=1=2") == {"a": "1=2"}


def test_headers_override_arguments_and_tags_merge():
    headers = [*HEADERS, ("X-Spendlog-App", "from-header"), ("X-Spendlog-Tags", "env=prod")]
    capture = start({"model": "m"}, headers=headers, app="from-arg", user="u1", tags={"team": "core", "env": "dev"})
    record = capture.record()
    assert (record["app"], record["user"]) == ("from-header", "u1")
    assert record["tags"] == {"team": "core", "env": "prod"}
    assert all(not name.lower().startswith("x-spendlog") for name, _ in capture.request_headers)
    assert capture.request_changed


@pytest.mark.parametrize("headers, hint", [
    ([("Authorization", f"Bearer {KEY}")], "sr_...4567"),
    ([("api-key", "sr_live_zzzzzzzzzzzz9876")], "sr_...9876"),
    ([("X-Api-Key", "sk-proj-aaaaaaaaaaaa1234")], "sk-...1234"),
    ([("x-goog-api-key", "AIzaSyA0123456789abcdefghij")], "...ghij"),
    ([("Authorization", "Basic dXNlcjpwYXNz")], None),
    ([("Authorization", "Bearer short_1")], "..._1"),
    ([], None),
])
def test_key_hint(headers, hint):
    assert key_hint(headers) == hint


def test_hint_never_shows_more_than_prefix_and_last_four():
    hint = hint_for(KEY)
    assert hint == "sr_...4567"
    assert KEY[3:-4] not in hint


@pytest.mark.parametrize("key", ["sr_" + "a" * n for n in range(0, 40)] + ["k" * n for n in range(1, 40)]
                         + ["abcdefg_hijk", "sk-1234", "short_1", "x_y", "sk-proj-abcdefghijkl"])
def test_a_hint_shows_at_most_a_third_of_a_key_and_four_characters_of_a_short_one(key):
    """Issue 12, finding 10: keys under ~12 characters were mostly shown by their hint (the prefix
    up to the first ``_`` or ``-`` may be 8 characters)."""
    hint = hint_for(key)
    shown = len(hint) - len("...")
    assert "..." in hint and shown <= len(key) // 3, (key, hint)
    if len(key) < 20:
        assert shown <= 4, (key, hint)
    prefix, _, tail = hint.partition("...")
    assert key.startswith(prefix) and key.endswith(tail)


def test_normal_keys_keep_their_prefix_and_last_four():
    assert hint_for("sr_live_" + "0" * 24 + "abcd") == "sr_...abcd"
    assert hint_for("sr_test_0123456789abcd") == "sr_...abcd"  # 22 characters: 7 shown is under a third
    assert hint_for("sk-proj-" + "z" * 40 + "wxyz") == "sk-...wxyz"


def test_scrub_replaces_keys():
    text = scrub(f"bad key {KEY} and Bearer sk-abcdefghijklmnop and {'a' * 40}", KEY)
    assert KEY not in text and "sk-abcdefghijklmnop" not in text and "a" * 40 not in text
    assert "sr_...4567" in text


# -- the request --------------------------------------------------------------------------------

def test_usage_option_added_with_smallest_change():
    raw = json.dumps(STREAM_REQ).encode()
    capture = start(raw)
    assert capture.injected_usage
    assert capture.original_body == raw
    sent = json.loads(capture.request_body)
    assert sent == {**STREAM_REQ, "stream_options": {"include_usage": True}}
    assert capture.request_body.endswith(raw[1:])
    assert ("Content-Length", str(len(capture.request_body))) in capture.request_headers


def test_usage_option_false_is_turned_on_other_options_kept():
    capture = start({**STREAM_REQ, "stream_options": {"include_usage": False, "include_obfuscation": False}})
    assert capture.injected_usage
    assert json.loads(capture.request_body)["stream_options"] == {"include_usage": True, "include_obfuscation": False}


@pytest.mark.parametrize("body, url", [
    ({**STREAM_REQ, "stream_options": {"include_usage": True}}, URL),
    ({**STREAM_REQ, "stream": False}, URL),
    ({"model": "m", "input": "x", "stream": True}, "http://h/v1/responses"),
    ({"model": "m", "input": "x"}, "http://h/v1/embeddings"),
])
def test_request_left_alone(body, url):
    raw = json.dumps(body).encode()
    capture = start(raw, url=url)
    assert not capture.injected_usage
    assert capture.request_body is raw
    assert capture.request_headers == HEADERS and not capture.request_changed


def test_not_json_request_is_still_recorded():
    capture = start(b"\x00not json")
    record = capture.record()
    assert record["requested_model"] is None and record["endpoint"] == "/v1/chat/completions"


# -- streamed answers ---------------------------------------------------------------------------

@pytest.mark.parametrize("crlf", [False, True])
def test_injected_stream_caller_sees_exactly_what_it_asked_for(crlf):
    capture = start(STREAM_REQ)
    upstream, clean = chat_stream(include_usage=True, crlf=crlf)
    out = run(capture, 200, SSE, [upstream])
    assert out == b"".join(clean)
    record = capture.record()
    assert (record["prompt_tokens"], record["completion_tokens"], record["total_tokens"]) == (12, 7, 19)
    assert (record["cached_tokens"], record["reasoning_tokens"]) == (0, 0)
    assert record["cost_usd"] == Decimal("0.0000060300") and record["cost_source"] == "upstream"
    assert record["finish_reason"] == "stop"
    assert record["request_id"] == "chatcmpl-1" and record["model"] == "openai/gpt-4o-mini"
    assert record["provider"] == "openai" and record["stream"] is True and record["error_type"] is None
    assert 0 <= record["ttft_ms"] <= record["latency_ms"]


def test_caller_asked_for_usage_gets_it_untouched():
    capture = start({**STREAM_REQ, "stream_options": {"include_usage": True}})
    upstream, _ = chat_stream(include_usage=True)
    chunks = [upstream[i : i + 50] for i in range(0, len(upstream), 50)]
    capture.response_started(200, SSE)
    outs = [capture.feed(c) for c in chunks]
    assert outs == chunks  # delivered at once, nothing held back
    assert capture.end_of_body() == b""
    assert capture.record()["total_tokens"] == 19


def test_stream_without_usage_records_missing():
    capture = start(STREAM_REQ)
    upstream, clean = chat_stream(include_usage=False)
    assert run(capture, 200, SSE, [upstream]) == b"".join(clean)
    record = capture.record()
    assert record["prompt_tokens"] is None and record["total_tokens"] is None
    assert record["cost_usd"] is None and record["cost_source"] == "missing"
    assert record["error_type"] is None


def test_stream_ended_before_done_is_interrupted():
    capture = start(STREAM_REQ)
    upstream, _ = chat_stream(include_usage=True)
    run(capture, 200, SSE, [upstream[: len(upstream) // 3]])
    record = capture.record()
    assert record["error_type"] == "stream_interrupted"


def test_cancelled_keeps_partial_usage():
    capture = start(STREAM_REQ)
    upstream, _ = chat_stream(include_usage=True)
    capture.response_started(200, SSE)
    capture.feed(upstream[: upstream.index(b"data: [DONE]")])
    record = capture.record(error_type="cancelled")
    assert record["error_type"] == "cancelled" and record["total_tokens"] == 19


def test_unterminated_last_event_is_read_and_delivered():
    capture = start({**STREAM_REQ, "stream_options": {"include_usage": True}})
    upstream, _ = chat_stream(include_usage=True)
    upstream = upstream.replace(b"data: [DONE]\n\n", b"data: [DONE]")
    assert run(capture, 200, SSE, [upstream]) == upstream
    assert capture.record()["error_type"] is None


def test_mid_stream_error_event():
    capture = start(STREAM_REQ)
    stream = (b'data: {"id":"x","model":"a/b","choices":[{"delta":{"content":"a"}}]}\n\n'
              b'data: {"error":{"message":"upstream overloaded","code":502}}\n\n')
    run(capture, 200, SSE, [stream])
    record = capture.record()
    assert record["error_type"] == "stream_error" and record["error_message"] == "upstream overloaded"


def test_responses_api_stream():
    capture = start({"model": "openai/gpt-4o", "input": "hi", "stream": True}, url="http://h/v1/responses")
    resp = {"id": "resp_1", "object": "response", "status": "in_progress", "model": "openai/gpt-4o", "usage": None, "error": None}
    done = {**resp, "status": "completed", "usage": {"input_tokens": 9, "output_tokens": 4, "total_tokens": 13,
                                                     "input_tokens_details": {"cached_tokens": 0},
                                                     "output_tokens_details": {"reasoning_tokens": 0}, "cost": "COST"}}
    stream = (b"event: response.created\ndata: " + json.dumps({"type": "response.created", "response": resp}).encode() + b"\n\n"
              b": keep-alive\n\n"
              b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"Hi"}\n\n'
              b"event: response.completed\ndata: "
              + json.dumps({"type": "response.completed", "response": done}).encode().replace(b'"COST"', b"0.0000625")
              + b"\n\n")
    assert run(capture, 200, SSE, [stream]) == stream
    record = capture.record()
    assert (record["prompt_tokens"], record["completion_tokens"], record["total_tokens"]) == (9, 4, 13)
    assert record["cost_usd"] == Decimal("0.0000625") and record["request_id"] == "resp_1"
    assert record["finish_reason"] == "completed" and record["error_type"] is None


def test_gzip_stream_is_passed_raw_and_read():
    capture = start({**STREAM_REQ, "stream_options": {"include_usage": True}})
    upstream, _ = chat_stream(include_usage=True)
    raw = gzip.compress(upstream)
    chunks = [raw[i : i + 17] for i in range(0, len(raw), 17)]
    out = run(capture, 200, [*SSE, ("Content-Encoding", "gzip")], chunks)
    assert out == raw
    assert capture.record()["total_tokens"] == 19


# -- whole answers -------------------------------------------------------------------------------

CHAT_BODY = (b'{"id":"chatcmpl-9","object":"chat.completion","created":1,"model":"anthropic/claude-3.5-sonnet",'
             b'"choices":[{"index":0,"message":{"role":"assistant","content":"x"},"finish_reason":"length"}],'
             b'"usage":' + USAGE + b"}")


def test_json_answer():
    capture = start({"model": "fake/auto", "messages": []})
    assert run(capture, 200, JSON_CT, [CHAT_BODY[:10], CHAT_BODY[10:]]) == CHAT_BODY
    record = capture.record()
    assert record["requested_model"] == "fake/auto" and record["model"] == "anthropic/claude-3.5-sonnet"
    assert record["provider"] == "anthropic" and record["finish_reason"] == "length"
    assert record["cost_usd"] == Decimal("0.0000060300") and record["stream"] is False
    assert record["ttft_ms"] is None


def test_feed_returns_bytes_unchanged():
    capture = start({"model": "m"})
    capture.response_started(200, JSON_CT)
    assert capture.feed(CHAT_BODY) is CHAT_BODY


def test_gzip_json_answer_and_already_decoded_bytes():
    for chunks in ([gzip.compress(CHAT_BODY)], [CHAT_BODY]):  # the second: a client that decoded for us
        capture = start({"model": "m"})
        run(capture, 200, [*JSON_CT, ("content-encoding", "gzip")], chunks)
        assert capture.record()["total_tokens"] == 19


def test_http_error_answer():
    capture = start({"model": "fake/error-429"})
    body = json.dumps({"error": {"message": f"Rate limit reached for key {KEY}", "type": "rate_limit_error"}}).encode()
    run(capture, 429, [*JSON_CT, ("retry-after", "1")], [body])
    record = capture.record()
    assert record["status_code"] == 429 and record["error_type"] == "http_429"
    assert record["error_message"].startswith("Rate limit reached") and KEY not in record["error_message"]


def test_non_json_success_is_bad_response():
    capture = start({"model": "fake/non-json"})
    run(capture, 200, [("content-type", "text/html")], [b"<html>Bad Gateway</html>"])
    record = capture.record()
    assert record["error_type"] == "bad_response" and record["status_code"] == 200


def test_bad_usage_is_unknown_and_flagged(caplog):
    body = b'{"id":"x","model":"a/b","choices":[],"usage":{"prompt_tokens":-4,"completion_tokens":2,"cost":"0.5"}}'
    capture = start({"model": "a/b"})
    with caplog.at_level(logging.WARNING, logger="spendlog"):
        run(capture, 200, JSON_CT, [body])
    record = capture.record()
    assert record["prompt_tokens"] is None and record["completion_tokens"] == 2
    assert record["cost_usd"] is None and record["cost_source"] == "missing"
    assert record["error_type"] == "bad_usage" and "prompt_tokens=-4" in record["error_message"]
    assert "unusable usage" in caplog.text


def test_transport_error_without_response():
    capture = start({"model": "m"})
    record = capture.record(error_type="connect_error", error_message=f"refused for {KEY}")
    assert record["status_code"] is None and record["error_type"] == "connect_error"
    assert KEY not in record["error_message"]


def test_strings_fit_their_columns():
    body = json.dumps({"id": "i" * 300, "model": "p/" + "m\x00" * 200, "choices": []}).encode()
    capture = start({"model": "x" * 1000}, app="a" * 300)
    run(capture, 200, JSON_CT, [body])
    record = capture.record()
    assert len(record["request_id"]) == 255 and len(record["requested_model"]) == 255
    assert "\x00" not in record["model"] and len(record["model"]) <= 255 and len(record["app"]) == 255


# -- retry without the option -----------------------------------------------------------------

def test_retry_without_usage_option():
    raw = json.dumps(STREAM_REQ).encode()
    capture = start(raw)
    refused = b'{"error":{"message":"Unrecognized request argument supplied: stream_options","param":"stream_options"}}'
    capture.response_started(400, JSON_CT)
    assert capture.should_retry_without_usage_option(400, refused)
    assert not capture.should_retry_without_usage_option(400, b'{"error":{"message":"other"}}')
    capture.retry()
    assert capture.request_body == raw and not capture.injected_usage
    assert ("Content-Length", "0") in capture.request_headers  # the caller's own headers again
    assert not capture.should_retry_without_usage_option(400, refused)  # once only
    upstream, clean = chat_stream(include_usage=False)
    assert run(capture, 200, SSE, [upstream]) == upstream
    record = capture.record()
    assert record["status_code"] == 200 and record["error_type"] is None and record["cost_source"] == "missing"


# -- finish: one record, through the writer --------------------------------------------------

def read_all() -> list[Completion]:
    return ledger_rows()


def test_finish_submits_exactly_once():
    capture = start(STREAM_REQ, app="bot")
    upstream, _ = chat_stream(include_usage=True)
    run(capture, 200, SSE, [upstream])
    capture.finish()
    capture.finish(error_type="cancelled")
    rows = read_all()
    assert len(rows) == 1
    assert rows[0].cost_usd == Decimal("0.0000060300") and rows[0].app == "bot" and rows[0].api_key_hint == "sr_...4567"


def test_finish_never_raises(monkeypatch, caplog):
    capture = start(STREAM_REQ)

    def broken(**kw):
        raise RuntimeError("boom")

    monkeypatch.setattr(capture, "record", broken)
    with caplog.at_level(logging.WARNING, logger="spendlog"):
        capture.finish()  # the writer's thread builds the record, so the failure shows there
        assert spendlog.flush(10)
    assert "not recorded" in caplog.text
    assert read_all() == []


# -- property tests ------------------------------------------------------------------------------

def _cut(data: bytes, points: list[int]) -> list[bytes]:
    points = sorted({p % (len(data) + 1) for p in points})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


_STABLE = ("request_id", "model", "prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens",
           "reasoning_tokens", "cost_usd", "cost_source", "finish_reason", "error_type", "status_code")


@settings(max_examples=int(os.environ.get("SPENDLOG_HYPOTHESIS_EXAMPLES", "200")), deadline=None)
@given(points=st.lists(st.integers(min_value=0, max_value=5000), max_size=40), crlf=st.booleans(),
       asked=st.booleans())
def test_any_split_gives_the_same_result(points, crlf, asked):
    body = {**STREAM_REQ, "stream_options": {"include_usage": True}} if asked else STREAM_REQ
    upstream, clean = chat_stream(include_usage=True, crlf=crlf)
    whole = start(body)
    whole_out = run(whole, 200, SSE, [upstream])
    split = start(body)
    split_out = run(split, 200, SSE, _cut(upstream, points))
    assert split_out == whole_out == (upstream if asked else b"".join(clean))
    a, b = whole.record(), split.record()
    assert {k: a[k] for k in _STABLE} == {k: b[k] for k in _STABLE}
    assert a["total_tokens"] == 19


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=600), points=st.lists(st.integers(min_value=0, max_value=600), max_size=8),
       injected=st.booleans(), sse=st.booleans(), status=st.sampled_from([200, 400, 500]))
def test_arbitrary_bytes_never_raise(data, points, injected, sse, status):
    capture = start(STREAM_REQ if injected else {"model": "m"})
    out = run(capture, status, SSE if sse else JSON_CT, _cut(data, points))
    if b'"usage"' not in data:
        assert out == data
    capture.record()


@settings(max_examples=int(os.environ.get("SPENDLOG_HYPOTHESIS_EXAMPLES", "200")), deadline=None)
@example(events=[b'data: {"error":{"message":"e"}}\n\n', b"\n\n",
                 b'data: {"choices":[],"usage":{"prompt_tokens":1,"total_tokens":1}}\n\n'], points=[34])
@given(events=st.lists(st.sampled_from([
    b'data: {"choices":[{"delta":{"content":"x"},"finish_reason":null}],"usage":null}\n\n',
    b'data: {"choices":[],"usage":{"prompt_tokens":1,"total_tokens":1}}\n\n',
    b": ping\n\n", b"data: [DONE]\n\n", b'data: {"error":{"message":"e"}}\n\n', b"data: not json\n\n",
    b'data: {"usage":{"prompt_tokens":"x"}}\r\n\r\n', b"event: x\ndata: 1\ndata: 2\n\n", b"\n\n",
]), max_size=12), points=st.lists(st.integers(min_value=0, max_value=2000), max_size=10))
def test_event_soup_split_anywhere(events, points):
    data = b"".join(events)
    whole = start(STREAM_REQ)
    whole_out = run(whole, 200, SSE, [data])
    split = start(STREAM_REQ)
    assert run(split, 200, SSE, _cut(data, points)) == whole_out
    a, b = whole.record(), split.record()
    assert {k: a[k] for k in _STABLE} == {k: b[k] for k in _STABLE}


def test_held_back_bytes_come_out_even_if_reading_fails(monkeypatch):
    from spendlog.answer import AnswerReader

    capture = start(STREAM_REQ)
    upstream, clean = chat_stream(include_usage=True)
    capture.response_started(200, SSE)
    out = capture.feed(upstream[:-5])  # the last event is held back, unfinished

    def broken(self, raw):
        raise RuntimeError("boom")

    monkeypatch.setattr(AnswerReader, "_on_event", broken)
    out += capture.end_of_body()
    assert out == b"".join(clean)[:-5]  # everything the caller is owed, nothing lost
    assert capture.record()["error_type"] == "capture_error"
