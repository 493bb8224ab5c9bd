"""The fake upstream's wire format: response bodies and SSE events for each endpoint.

Costs are written into the JSON text as exact decimal literals (json.dumps cannot emit a Decimal):
bodies carry a sentinel string that is replaced by the literal after encoding.
"""

from __future__ import annotations

import base64
import json
import os
import struct
import zlib

from .pricing import Usage, format_cost

__all__ = ["Answer", "chat_body", "chat_events", "completion_body", "completion_events",
           "embedding_body", "responses_body", "responses_events", "KEEPALIVE", "DONE"]

_COST = "__spendlog_fake_cost__"
_COST_Q = b'"__spendlog_fake_cost__"'
KEEPALIVE = b": keep-alive\n\n"
DONE = b"data: [DONE]\n\n"


def _dumps(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _with_cost(data: bytes, u: Usage) -> bytes:
    return data.replace(_COST_Q, format_cost(u.cost).encode(), 1)


def new_id(prefix: str, n: int = 12) -> str:
    return prefix + os.urandom(n).hex()


class Answer:
    """What one request gets back, decided once: ids, served model, usage, finish reason, mode."""

    __slots__ = ("id", "created", "model", "u", "finish", "mode", "include_usage", "tools", "n_chunks", "no_cost")

    def __init__(self, *, id, created, model, u, finish, mode, include_usage, tools, n_chunks, no_cost=False):
        self.id, self.created, self.model, self.u = id, created, model, u
        self.finish, self.mode, self.include_usage = finish, mode, include_usage
        self.tools, self.n_chunks = tools, n_chunks
        self.no_cost = no_cost or mode == "fake/no-cost"  # usage without `cost`, as OpenAI itself answers

    def usage(self, kind: str = "chat") -> dict | None:
        """The usage object for `kind` ('chat', 'completions', 'embeddings', 'responses')."""
        if self.mode == "fake/no-usage":
            return None
        u = self.u
        if kind == "responses":
            d = {"input_tokens": u.prompt_tokens, "input_tokens_details": {"cached_tokens": u.cached_tokens},
                 "output_tokens": u.completion_tokens,
                 "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
                 "total_tokens": u.total_tokens, "cost": _COST}
        elif kind == "embeddings":
            d = {"prompt_tokens": u.prompt_tokens, "total_tokens": u.total_tokens, "cost": _COST}
        else:
            d = {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
                 "total_tokens": u.total_tokens, "cost": _COST}
            if kind == "chat":
                d["prompt_tokens_details"] = {"cached_tokens": u.cached_tokens}
                d["completion_tokens_details"] = {"reasoning_tokens": u.reasoning_tokens}
        if self.no_cost:
            del d["cost"]
        return d

    def text(self) -> str:
        return " ".join(self.u.words)

    def pieces(self) -> list[str]:
        """Stream content pieces: a few words each, or `n_chunks` one-word pieces when forced."""
        words = self.u.words
        if self.n_chunks:
            w = words or ("x",)
            return [w[i % len(w)] if i == 0 else " " + w[i % len(w)] for i in range(self.n_chunks)]
        out = [" ".join(words[i:i + 3]) for i in range(0, len(words), 3)]
        return [p if i == 0 else " " + p for i, p in enumerate(out)]

    def tool_call(self) -> tuple[str, str, str]:
        """(call id, function name, arguments JSON) built from the first tool's parameters."""
        tool = self.tools[0] if isinstance(self.tools[0], dict) else {}
        fn = tool.get("function") if isinstance(tool.get("function"), dict) else {}
        name = fn.get("name") or "tool"
        params = fn.get("parameters") if isinstance(fn.get("parameters"), dict) else {}
        props = list(params.get("properties") or {}) or ["input"]
        words = self.u.words
        args = {p: " ".join(words[i::len(props)]) for i, p in enumerate(props)}
        return "call_" + format(self.u.seed, "08x"), name, json.dumps(args)


# --- chat completions -------------------------------------------------------------------------

def chat_body(a: Answer) -> bytes:
    msg: dict = {"role": "assistant", "content": a.text()}
    if a.tools:
        cid, name, args = a.tool_call()
        msg = {"role": "assistant", "content": None,
               "tool_calls": [{"id": cid, "type": "function", "function": {"name": name, "arguments": args}}]}
    body = {"id": a.id, "object": "chat.completion", "created": a.created, "model": a.model,
            "choices": [{"index": 0, "message": msg, "logprobs": None, "finish_reason": a.finish}]}
    usage = a.usage("chat")
    if usage is not None:
        body["usage"] = usage
    return _with_cost(_dumps(body), a.u)


def _sse(obj) -> bytes:
    return b"data: " + _dumps(obj) + b"\n\n"


def chat_events(a: Answer, keepalive_every: int) -> list[bytes]:
    """SSE events of a streamed chat completion, [DONE] included."""
    head = _dumps({"id": a.id, "object": "chat.completion.chunk", "created": a.created, "model": a.model})[:-1]
    tail = b',"usage":null}\n\n' if a.include_usage else b"}\n\n"
    pre = b"data: " + head + b',"choices":[{"index":0,"delta":'

    def chunk(delta: bytes, finish: bytes = b"null") -> bytes:
        return pre + delta + b',"logprobs":null,"finish_reason":' + finish + b"}]" + tail

    events = [KEEPALIVE]
    if a.tools:
        cid, name, args = a.tool_call()
        first = {"role": "assistant", "content": None, "tool_calls": [
            {"index": 0, "id": cid, "type": "function", "function": {"name": name, "arguments": ""}}]}
        events.append(chunk(_dumps(first)))
        parts = [args[i:i + 12] for i in range(0, len(args), 12)]
        deltas = [b'{"tool_calls":[{"index":0,"function":{"arguments":' + _dumps(p) + b"}}]}" for p in parts]
    else:
        events.append(chunk(b'{"role":"assistant","content":""}'))
        deltas = [b'{"content":' + _dumps(p) + b"}" for p in a.pieces()]
    for i, d in enumerate(deltas, 1):
        events.append(chunk(d))
        if keepalive_every and i % keepalive_every == 0:
            events.append(KEEPALIVE)
    events.append(chunk(b"{}", _dumps(a.finish)))
    usage = a.usage("chat")
    if a.include_usage and usage is not None:
        events.append(_with_cost(b"data: " + head + b',"choices":[],"usage":' + _dumps(usage) + b"}\n\n", a.u))
    events.append(DONE)
    return events


# --- legacy completions -----------------------------------------------------------------------

def completion_body(a: Answer) -> bytes:
    body = {"id": a.id, "object": "text_completion", "created": a.created, "model": a.model,
            "choices": [{"text": a.text(), "index": 0, "logprobs": None, "finish_reason": a.finish}]}
    usage = a.usage("completions")
    if usage is not None:
        body["usage"] = usage
    return _with_cost(_dumps(body), a.u)


def completion_events(a: Answer, keepalive_every: int) -> list[bytes]:
    base = {"id": a.id, "object": "text_completion", "created": a.created, "model": a.model}
    events = [KEEPALIVE]
    for i, p in enumerate(a.pieces(), 1):
        events.append(_sse({**base, "choices": [{"text": p, "index": 0, "logprobs": None, "finish_reason": None}]}))
        if keepalive_every and i % keepalive_every == 0:
            events.append(KEEPALIVE)
    events.append(_sse({**base, "choices": [{"text": "", "index": 0, "logprobs": None, "finish_reason": a.finish}]}))
    usage = a.usage("completions")
    if a.include_usage and usage is not None:
        events.append(_with_cost(_sse({**base, "choices": [], "usage": usage}), a.u))
    events.append(DONE)
    return events


# --- embeddings -------------------------------------------------------------------------------

def _vector(seed: int, dims: int) -> list[float]:
    x = seed or 1
    out = []
    for _ in range(dims):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        out.append(round((x / 0x7FFFFFFF) * 2 - 1, 6))
    return out


def embedding_body(a: Answer, body: dict) -> bytes:
    inp = body.get("input")
    items = [inp] if isinstance(inp, str) or (isinstance(inp, list) and inp and isinstance(inp[0], int)) else inp
    dims = body.get("dimensions") if isinstance(body.get("dimensions"), int) and body["dimensions"] > 0 else 16
    b64 = body.get("encoding_format") == "base64"
    data = []
    for i, item in enumerate(items or []):
        vec = _vector(zlib.crc32(json.dumps(item).encode()), dims)
        emb = base64.b64encode(struct.pack(f"<{dims}f", *vec)).decode() if b64 else vec
        data.append({"object": "embedding", "index": i, "embedding": emb})
    out = {"object": "list", "data": data, "model": a.model}
    usage = a.usage("embeddings")
    if usage is not None:
        out["usage"] = usage
    return _with_cost(_dumps(out), a.u)


# --- Responses API ----------------------------------------------------------------------------

def _response(a: Answer, body: dict, status: str, output: list, usage) -> dict:
    return {
        "id": a.id, "object": "response", "created_at": a.created, "status": status, "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": body.get("instructions"), "max_output_tokens": body.get("max_output_tokens"),
        "model": a.model, "output": output, "parallel_tool_calls": True, "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None}, "store": True, "temperature": 1.0,
        "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [], "top_p": 1.0,
        "truncation": "disabled", "usage": usage, "user": None, "metadata": {},
    }


def _items(a: Answer, done: bool) -> list[dict]:
    items = []
    if a.u.reasoning_tokens:
        items.append({"type": "reasoning", "id": "rs_" + a.id[5:], "summary": []})
    text = a.text() if done else ""
    content = [{"type": "output_text", "text": text, "annotations": []}] if done else []
    items.append({"type": "message", "id": "msg_" + a.id[5:], "status": "completed" if done else "in_progress",
                  "role": "assistant", "content": content})
    return items


def _status(a: Answer) -> str:
    return "incomplete" if a.finish == "length" else "completed"


def responses_body(a: Answer, body: dict) -> bytes:
    return _with_cost(_dumps(_response(a, body, _status(a), _items(a, True), a.usage("responses"))), a.u)


def responses_events(a: Answer, body: dict, keepalive_every: int) -> list[bytes]:
    """The Responses API's typed SSE events, from response.created to response.completed."""
    events: list[bytes] = []

    def ev(kind: str, **data) -> None:
        obj = {"type": kind, "sequence_number": len(events) - events.count(KEEPALIVE), **data}
        events.append(b"event: " + kind.encode() + b"\n" + _sse(obj))

    started = _response(a, body, "in_progress", [], None)
    ev("response.created", response=started)
    events.append(KEEPALIVE)
    ev("response.in_progress", response=started)
    final = _items(a, True)
    msg_index = len(final) - 1
    if a.u.reasoning_tokens:
        ev("response.output_item.added", output_index=0, item=final[0])
        ev("response.output_item.done", output_index=0, item=final[0])
    item_id = final[-1]["id"]
    ev("response.output_item.added", output_index=msg_index, item=_items(a, False)[-1])
    ref = {"item_id": item_id, "output_index": msg_index, "content_index": 0}
    ev("response.content_part.added", **ref, part={"type": "output_text", "text": "", "annotations": []})
    pieces = a.pieces()
    for i, p in enumerate(pieces, 1):
        ev("response.output_text.delta", **ref, delta=p, logprobs=[])
        if keepalive_every and i % keepalive_every == 0:
            events.append(KEEPALIVE)
    text = "".join(pieces)
    ev("response.output_text.done", **ref, text=text, logprobs=[])
    ev("response.content_part.done", **ref, part={"type": "output_text", "text": text, "annotations": []})
    final[-1]["content"][0]["text"] = text
    ev("response.output_item.done", output_index=msg_index, item=final[-1])
    status = _status(a)
    kind = "response.incomplete" if status == "incomplete" else "response.completed"
    ev(kind, response=_response(a, body, status, final, a.usage("responses")))
    events[-1] = _with_cost(events[-1], a.u)
    return events
