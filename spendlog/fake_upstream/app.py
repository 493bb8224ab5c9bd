"""The fake SolRouter as a Starlette app: auth, routing, error modes, latency, streaming, and the
bill it keeps of what it answered (`GET /v1/activity`, see billing.py).

Per request it does only cheap work (a CRC, a few json.dumps); benchmarks hit it hard.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
from datetime import datetime
from typing import NamedTuple

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import shapes
from .billing import BadQuery, Ledger, activity_json, activity_range
from .keys import inference_refusal, management_refusal
from .pricing import PRICES, compute, resolve_model

__all__ = ["CutConnection", "FakeState", "SeenRequest", "create_app"]

_JSON = "application/json"
_FLAGS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


class SeenRequest(NamedTuple):
    """One request as the fake received it (headers lower-cased)."""

    method: str
    path: str
    headers: dict
    body: bytes

    def json(self):
        return json.loads(self.body)


class FakeState:
    """Options, the record of recent requests (the last `keep` of them) and the bill (`ledger`).

    `no_cost`: answers carry usage without `cost`. `management_key`: the one key `GET /v1/activity`
    accepts (None: any `sr_mgmt_...` key)."""

    def __init__(self, *, latency_ms: float = 0, chunk_delay_ms: float = 0, keepalive_every: int = 4,
                 retry_after: int = 1, keep: int = 1000, no_cost: bool = False, management_key: str | None = None):
        self.latency_ms = latency_ms
        self.chunk_delay_ms = chunk_delay_ms
        self.keepalive_every = keepalive_every
        self.retry_after = retry_after
        self.no_cost = no_cost
        self.management_key = management_key
        self.requests: collections.deque[SeenRequest] = collections.deque(maxlen=keep)
        self.ledger = Ledger()


class CutConnection(Exception):
    """Raised on purpose to make uvicorn drop the connection mid-body (`fake/cut-stream`)."""


class _QuietCuts(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        while exc is not None:
            if isinstance(exc, CutConnection):
                return False
            exc = exc.__cause__ or exc.__context__
        return True


def _install_quiet_cuts() -> None:
    log = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _QuietCuts) for f in log.filters):
        log.addFilter(_QuietCuts())


def error(status: int, message: str, type_: str, code: str | None = None, param: str | None = None,
          headers: dict | None = None) -> Response:
    body = json.dumps({"error": {"message": message, "type": type_, "param": param, "code": code}})
    return Response(body, status, headers=headers, media_type=_JSON)


class _Stream:
    """An SSE answer: events sent one by one with a delay between data events, or in large writes
    when there is no delay. `cut_after` events, the connection is dropped instead of finishing."""

    def __init__(self, events: list[bytes], delay: float, headers: dict, cut_after: int | None = None):
        self.events, self.delay, self.cut_after = events, delay, cut_after
        self.headers = [(k.encode(), v.encode()) for k, v in headers.items()]

    async def __call__(self, scope, receive, send) -> None:
        events = self.events if self.cut_after is None else self.events[: self.cut_after]
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"), *self.headers]})
        if not self.delay:
            for i in range(0, len(events), 256):
                await send({"type": "http.response.body", "body": b"".join(events[i:i + 256]), "more_body": True})
        else:
            gone = asyncio.Event()

            async def watch() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                gone.set()

            watcher = asyncio.ensure_future(watch())
            try:
                for i, ev in enumerate(events):
                    if i and not ev.startswith(b":"):
                        await asyncio.sleep(self.delay)
                    if gone.is_set():
                        return
                    await send({"type": "http.response.body", "body": ev, "more_body": True})
            finally:
                watcher.cancel()
        if self.cut_after is not None:
            raise CutConnection("fake/cut-stream: dropping the connection")
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class _Truncated:
    """A JSON answer that promises Content-Length bytes, sends half of them, then drops the connection."""

    def __init__(self, body: bytes):
        self.body = body

    async def __call__(self, scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", _JSON.encode()), (b"content-length", str(len(self.body)).encode())]})
        await send({"type": "http.response.body", "body": self.body[: len(self.body) // 2], "more_body": True})
        raise CutConnection("fake/cut-stream: dropping the connection")


def _refused(refusal: tuple[int, str]) -> Response:
    status, message = refusal
    code = "invalid_api_key" if status == 401 else "insufficient_permissions"
    return error(status, message, "invalid_request_error", code)


def _test_clock(value: str | None) -> float | None:
    """X-Fake-Time (test-only): an ISO 8601 instant with a zone, e.g. 2026-11-30T23:59:59Z."""
    if value is None:
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        t = None
    if t is None or t.tzinfo is None:
        raise ValueError(f"Invalid X-Fake-Time {value!r}: expected an ISO 8601 instant with a zone, "
                         "e.g. 2026-11-30T23:59:59Z.")
    return t.timestamp()


def _ms(value: str | None, default: float) -> float:
    try:
        return max(0.0, float(value)) if value is not None else default
    except ValueError:
        return default


def _finish(a_capped: bool, model: str, tools) -> str:
    if a_capped:
        return "length"
    if model == "fake/content-filter":
        return "content_filter"
    return "tool_calls" if tools else "stop"


async def _handle(request: Request, endpoint: str):
    fake: FakeState = request.app.state.fake
    now = time.time()
    raw = await request.body()
    headers = dict(request.headers)  # lower-cased names; one pass instead of a scan per lookup
    fake.requests.append(SeenRequest(request.method, request.scope["path"], headers, raw))
    refusal = inference_refusal(headers, fake.management_key)
    if refusal is not None:
        return _refused(refusal)
    try:
        clock = _test_clock(headers.get("x-fake-time"))
    except ValueError as exc:
        return error(400, str(exc), "invalid_request_error")
    now = now if clock is None else clock
    flag = headers.get("x-fake-no-cost")
    no_cost = fake.no_cost if flag is None else _FLAGS.get(flag.strip().lower())
    if no_cost is None:
        return error(400, f"Invalid X-Fake-No-Cost {flag!r}: expected 1 or 0.", "invalid_request_error")
    try:
        body = json.loads(raw)
    except ValueError:
        return error(400, "We could not parse the JSON body of your request.", "invalid_request_error")
    if not isinstance(body, dict):
        return error(400, "The request body must be a JSON object.", "invalid_request_error")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return error(400, "You must provide a model parameter.", "invalid_request_error", param="model")
    resolved = resolve_model(model)
    if resolved is None or (model in PRICES and (endpoint == "embeddings") != (PRICES[model].kind == "embedding")):
        return error(404, f"The model `{model}` does not exist or you do not have access to it.",
                     "invalid_request_error", "model_not_found", "model")
    latency = _ms(headers.get("x-fake-latency-ms"), 2000.0 if model == "fake/slow" else fake.latency_ms)
    if latency:
        await asyncio.sleep(latency / 1000)

    if model == "fake/error-429":
        return error(429, "Rate limit reached for requests. Please try again in 1s.", "rate_limit_error",
                     "rate_limit_exceeded", headers={"retry-after": str(fake.retry_after)})
    if model == "fake/error-500":
        return error(500, "The server had an error while processing your request.", "server_error", "internal_error")
    if model == "fake/non-json":
        return Response(b"<html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>",
                        200, media_type="text/html")
    stream = body.get("stream") is True
    if "stream_options" in body:
        if model == "fake/reject-stream-options":
            return error(400, "Unrecognized request argument supplied: stream_options", "invalid_request_error",
                         param="stream_options")
        if not stream and body["stream_options"] is not None:
            return error(400, "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                         "invalid_request_error", param="stream_options")
    bad = _validate(endpoint, body)
    if bad:
        return error(400, bad[1], "invalid_request_error", param=bad[0])
    try:
        u = compute(model, body, endpoint)
    except ValueError as exc:
        return error(400, str(exc), "invalid_request_error")

    tools = body.get("tools") if endpoint == "chat" and body.get("tool_choice") != "none" else None
    opts = body.get("stream_options") if isinstance(body.get("stream_options"), dict) else {}
    prefix = {"chat": "chatcmpl-", "completions": "cmpl-", "responses": "resp_"}.get(endpoint, "emb-")
    a = shapes.Answer(
        id="chatcmpl-repeated" if model == "fake/repeat-id" else shapes.new_id(prefix, 24 if prefix == "resp_" else 12),
        created=int(now), model=resolved[0], u=u, finish=_finish(u.capped, model, tools), mode=model,
        include_usage=opts.get("include_usage") is True, tools=tools or None,
        n_chunks=int(_ms(headers.get("x-fake-chunks"), 0)), no_cost=no_cost)
    fake.ledger.bill(now, a.model, u, no_cost=a.no_cost)  # billed even if the answer never arrives whole
    out_headers = {"x-request-id": shapes.new_id("req_")}
    cut = model == "fake/cut-stream"
    if not stream or endpoint == "embeddings":
        data = {"chat": shapes.chat_body, "completions": shapes.completion_body}.get(endpoint)
        data = data(a) if data else (shapes.embedding_body(a, body) if endpoint == "embeddings"
                                      else shapes.responses_body(a, body))
        return _Truncated(data) if cut else Response(data, 200, headers=out_headers, media_type=_JSON)
    every = fake.keepalive_every
    if endpoint == "chat":
        events = shapes.chat_events(a, every)
    elif endpoint == "completions":
        events = shapes.completion_events(a, every)
    else:
        events = shapes.responses_events(a, body, every)
    delay = _ms(headers.get("x-fake-chunk-delay-ms"), fake.chunk_delay_ms) / 1000
    return _Stream(events, delay, out_headers, cut_after=max(3, len(events) // 2) if cut else None)


def _validate(endpoint: str, body: dict) -> tuple[str, str] | None:
    """(param, message) when a required field is missing or malformed."""
    if endpoint == "chat":
        m = body.get("messages")
        if not isinstance(m, list) or not m:
            return "messages", "'messages' must be a non-empty array."
        if body.get("tools") is not None and not isinstance(body["tools"], list):
            return "tools", "'tools' must be an array."
    elif endpoint == "completions":
        if not isinstance(body.get("prompt"), (str, list)):
            return "prompt", "'prompt' must be a string or an array."
    elif not isinstance(body.get("input"), (str, list)):
        return "input", "'input' must be a string or an array."
    return None


async def chat_completions(request: Request):
    return await _handle(request, "chat")


async def completions(request: Request):
    return await _handle(request, "completions")


async def embeddings(request: Request):
    return await _handle(request, "embeddings")


async def responses(request: Request):
    return await _handle(request, "responses")


def _admit_get(request: Request, refusal_of) -> tuple[FakeState, Response | None]:
    """Record a GET and check its key with `refusal_of`: (state, None) or (state, the refusal)."""
    fake: FakeState = request.app.state.fake
    fake.requests.append(SeenRequest(request.method, request.url.path, dict(request.headers), b""))
    refusal = refusal_of(request.headers, fake.management_key)
    return fake, None if refusal is None else _refused(refusal)


async def models(request: Request):
    _, refused = _admit_get(request, inference_refusal)
    if refused is not None:
        return refused
    data = [{"id": m, "object": "model", "created": 1700000000, "owned_by": m.split("/")[0],
             "pricing": {"prompt": format(p.input / 1_000_000, "f"), "completion": format(p.output / 1_000_000, "f")}}
            for m, p in PRICES.items()]
    return Response(json.dumps({"object": "list", "data": data}), media_type=_JSON)


async def activity(request: Request):
    """The router's own activity from what the fake billed (OpenRouter's `GET /api/v1/activity`)."""
    fake, refused = _admit_get(request, management_refusal)
    if refused is not None:
        return refused
    try:
        first, last = activity_range(request.query_params)
    except BadQuery as exc:
        return error(400, str(exc), "invalid_request_error", param=exc.param)
    return Response(activity_json(fake.ledger.rows(first, last)), media_type=_JSON)


async def not_found(request: Request, exc):
    status = getattr(exc, "status_code", 404)
    return error(status, f"Unknown request URL: {request.method} {request.url.path}.", "invalid_request_error",
                 "unknown_url" if status == 404 else "method_not_allowed")


def create_app(*, latency_ms: float = 0, chunk_delay_ms: float = 0, keepalive_every: int = 4,
               retry_after: int = 1, keep: int = 1000, no_cost: bool = False,
               management_key: str | None = None) -> Starlette:
    """The fake upstream app. Its `app.state.fake` (a FakeState) holds options, recent requests and
    the bill."""
    _install_quiet_cuts()
    app = Starlette(routes=[
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/v1/responses", responses, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/activity", activity, methods=["GET"]),
    ], exception_handlers={404: not_found, 405: not_found})
    app.state.fake = FakeState(latency_ms=latency_ms, chunk_delay_ms=chunk_delay_ms,
                               keepalive_every=keepalive_every, retry_after=retry_after, keep=keep,
                               no_cost=no_cost, management_key=management_key)
    return app
