"""The record builder every capture path shares (the httpx hook and the proxy).

``CallCapture`` is a pure state machine for one HTTP attempt: ``start`` reads the request (and
may add ``stream_options.include_usage`` to a streamed request), ``response_started`` /
``feed`` / ``end_of_body`` watch the answer's bytes go by (``spendlog.answer.AnswerReader``),
and ``finish`` hands the capture to the background writer, whose thread builds the record
(``build``): parsing the answer and the request's model and assembling the row stay off the
caller's thread. No I/O, no blocking, no locks held between calls.

Fail-open: nothing here raises into the caller's request. An internal failure warns once per kind
(``spendlog.db.log.warn_once``) and the bytes flow on untouched.

Key handling: the full key is read once, to make the hint (``sr_...abcd``) and to scrub error
messages; it is never part of a record or a log line.

Text: every text column of a record (ids, models, error type and message, finish reason, app,
user, the key hint, tag keys and values) goes through one function, ``clean_text``, before the
record exists, so that no database refuses it: lone surrogates (what invalid UTF-8 becomes when
read with ``surrogateescape``) become U+FFFD, NUL is removed, and the value is cut to its column.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from urllib.parse import urlsplit

from spendlog.answer import AnswerReader
from spendlog.db import writer
from spendlog.db.ids import uuid7
from spendlog.db.log import warn_once
from spendlog.db.tag_limits import bound_tags
from spendlog.headers import hint_for, key_hint, parse_tags, read_headers, scrub, split_attribution, with_content_length
from spendlog.usage import Usage

__all__ = ["CallCapture", "split_attribution", "parse_tags", "key_hint", "hint_for", "scrub", "clean_text",
           "TRACKED_PATHS"]

TRACKED_PATHS = ("/chat/completions", "/completions", "/embeddings", "/responses")
_USAGE_OPTION_PATHS = ("/chat/completions", "/completions")  # endpoints that know stream_options
_build_lock = threading.RLock()  # see CallCapture.build; re-entrant: a SIGTERM flush may interrupt a build
# every text column of a record and its length (the model's String(n); error_message is Text, kept short)
_TEXT_COLUMNS = {
    "request_id": 255, "endpoint": 255, "upstream": 255, "requested_model": 255, "model": 255,
    "provider": 255, "error_type": 64, "error_message": 1000, "finish_reason": 64, "app": 255, "user": 255,
    "api_key_hint": 32,
}
_TAG_CLEAN_LIMIT = 1 << 20  # a tag is cleaned up to this, then bounded by db.tag_limits (and flagged)
_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(value: object, limit: int) -> str | None:
    """``value`` as text every backend takes: no lone surrogate (U+FFFD instead), no NUL, at most
    ``limit`` characters. None stays None."""
    if value is None:
        return None
    if type(value) is not str:
        value = str(value)
    if not value.isascii():
        value = _SURROGATE.sub("\ufffd", value)
    if "\x00" in value:
        value = value.replace("\x00", "")
    return value if len(value) <= limit else value[:limit]


def _submit(record, db_url: str | None) -> None:
    try:
        w = writer.get_writer(db_url)  # cached per (db_url, environment) by the registry
    except Exception as exc:  # noqa: BLE001 - a bad URL is the writer's warning to give
        warn_once("capture-url", f"record not written: {exc}")
        return
    w.submit(record)


def _warn_not_recorded(exc: BaseException) -> None:
    warn_once("capture-start", f"a call was not recorded ({type(exc).__name__}: {scrub(str(exc))[:200]})")


# -- one call ----------------------------------------------------------------------------------

class CallCapture:
    """What one HTTP attempt to an LLM endpoint used and cost (see the module docstring)."""

    @classmethod
    def start(cls, method: str, url: str, headers: Sequence[tuple], body: bytes, *, app: str | None = None,
              user: str | None = None, tags: dict[str, str] | None = None,
              db_url: str | None = None) -> CallCapture | None:
        """A capture for a tracked call, else None (the call is then passed on untouched)."""
        try:
            if method.upper() != "POST":
                return None
            parts = urlsplit(str(url))
            return cls.start_parts(method, parts.netloc.rpartition("@")[2], parts.path, headers, body,
                                   app=app, user=user, tags=tags, db_url=db_url)
        except Exception as exc:  # noqa: BLE001 - fail open
            _warn_not_recorded(exc)
            return None

    @classmethod
    def start_parts(cls, method: str, upstream: str, path: str, headers: Sequence[tuple], body: bytes, *,
                    app: str | None = None, user: str | None = None, tags: dict[str, str] | None = None,
                    db_url: str | None = None) -> CallCapture | None:
        """``start`` for callers that have the URL in parts already: ``upstream`` is host[:port],
        ``path`` the URL path without the query."""
        try:
            if method.upper() != "POST":
                return None
            path = path.rstrip("/")
            if not path.endswith(TRACKED_PATHS):
                return None
            return cls(upstream, path, headers, body or b"", app, user, tags, db_url)
        except Exception as exc:  # noqa: BLE001 - fail open
            _warn_not_recorded(exc)
            return None

    def __init__(self, upstream: str, path: str, headers: Sequence[tuple], body: bytes, app, user, tags, db_url):
        self._t0 = time.perf_counter_ns()
        self._started_ns = time.time_ns()  # id and created_at are made from it by the writer
        self.db_url = db_url
        self.upstream = upstream
        i = path.find("/v1/")
        self.endpoint = path[i:] if i >= 0 else path
        self._usage_option_allowed = path.endswith(_USAGE_OPTION_PATHS)
        left, found, self._secret = read_headers(headers)
        self._headers_left = left
        self.app = found.get("app") or app
        self.user = found.get("user") or user
        h_tags = parse_tags(found["tags"]) if "tags" in found else None
        self.tags = None
        if tags or h_tags:
            merged = {str(k): str(v) for k, v in tags.items()} if tags else {}
            merged.update(h_tags or {})
            self.tags = merged or None
        self.original_body = body
        self.request_body = body
        self.injected_usage = False
        self.requested_model = None
        self.stream = False
        self._retried = False
        self._finished = False
        self._finish_args: tuple = (None, None)
        self._t_finish = 0
        self._model_unread = False
        if b'"stream"' in body:
            self._start_stream(body)
        else:  # cannot be a stream: nothing to add, so the model is read later, by the writer
            self._model_unread = bool(body)
        self.request_headers = with_content_length(left, len(self.request_body)) if self.injected_usage else left
        self.request_changed = self.injected_usage or (left is not headers and len(left) != len(headers))
        self._answer = AnswerReader(usage_injected=self.injected_usage, secret=self._secret, endpoint=self.endpoint)
        self.feed = self._answer.feed  # type: ignore[method-assign]

    def _read_request(self, body: bytes) -> dict | None:
        try:
            req = json.loads(body)
        except ValueError:
            return None  # not JSON (or empty): still one record, just without a requested model
        if not isinstance(req, dict):
            return None
        model = req.get("model")
        self.requested_model = model if isinstance(model, str) else None
        self.stream = req.get("stream") is True
        return req

    def _start_stream(self, body: bytes) -> None:
        req = self._read_request(body)
        if req is None:
            return
        if not (self.stream and self._usage_option_allowed):
            return
        options = req.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage") is True:
            return  # the caller asked for the usage chunk: they get it, we read it
        if "stream_options" not in req:
            brace = body.index(b"{")  # smallest change: one member added at the front
            self.request_body = body[: brace + 1] + b'"stream_options":{"include_usage":true},' + body[brace + 1 :]
        else:
            req["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
            self.request_body = json.dumps(req, ensure_ascii=False, separators=(",", ":")).encode()
        self.injected_usage = True

    # -- the answer ---------------------------------------------------------------------------

    def response_started(self, status_code: int, headers: Sequence[tuple], *, decoded: bool = False) -> None:
        """The status line and headers arrived. ``decoded=True``: the bytes fed will already be
        decompressed whatever Content-Encoding says (aiohttp does that by default)."""
        self._answer.started(status_code, headers, decoded=decoded)

    def feed(self, chunk: bytes) -> bytes:
        """Watch ``chunk`` go by; returns the bytes to deliver now: the same bytes, except that the
        usage-only event we asked for is removed (a partial event may be held back).

        (Each instance binds this name straight to its ``AnswerReader.feed``: one call less per
        chunk. This method is the documentation and the fallback.)"""
        return self._answer.feed(chunk)

    def end_of_body(self) -> bytes:
        """The answer ended normally; returns anything still held back."""
        return self._answer.end()

    @property
    def complete(self) -> bool:
        """The answer was read to its end, or to its final event (SDKs stop reading at ``[DONE]``)."""
        return self._answer.eof or self._answer.done

    @property
    def status_code(self) -> int | None:
        return self._answer.status_code

    def should_retry_without_usage_option(self, status_code: int, body: bytes) -> bool:
        """True when we added ``stream_options`` and the upstream refused it (a 400 naming it)."""
        return self.injected_usage and not self._retried and status_code == 400 and b"stream_options" in (body or b"")

    def retry(self) -> None:
        """Prepare the one re-send of ``original_body`` (the caller's own request): usage is then
        recorded as missing. The refused attempt is not recorded."""
        self._retried = True
        self.injected_usage = False
        self.request_body = self.original_body
        self.request_headers = self._headers_left
        self._answer = AnswerReader(usage_injected=False, secret=self._secret, endpoint=self.endpoint)
        self.feed = self._answer.feed  # type: ignore[method-assign]

    def finish(self, *, error_type: str | None = None, error_message: str | None = None) -> None:
        """The call is over: hand it to the writer, which builds the record (``build``) on its own
        thread. Once; later calls do nothing. Never raises."""
        if self._finished:
            return
        self._finished = True
        self._t_finish = time.perf_counter_ns()
        self._finish_args = (error_type, error_message)
        _submit(self, self.db_url)

    def budget_attributes(self, need_model: bool) -> tuple:
        """``(model, provider, app, user, key hint, tags)`` as a hard budget's scope reads them
        (``db.budget_limits.scope_matcher``). The model is the requested one; ``need_model=False``
        leaves it unread (parsing the body costs CPU only an exhausted model scope needs)."""
        if need_model and self._model_unread:
            self._model_unread = False
            self._read_request(self.original_body)
        model = self.requested_model if need_model else None
        provider = model.partition("/")[0] if model and "/" in model else None
        hint = hint_for(self._secret) if self._secret else None
        return model, provider, self.app, self.user, hint, self.tags

    def refuse(self, status_code: int, error_type: str, error_message: str) -> None:
        """The call was answered here, not sent (a hard budget's 402): record the attempt with this
        status and error type, and no usage."""
        self._refused_status = status_code
        self.finish(error_type=error_type, error_message=error_message)

    _refused_status: int | None = None
    _built: dict | None = None  # the record once built ({} if it could not be): nothing to set per call

    def build(self) -> dict | None:
        """The record as ``finish`` left it (the writer calls this); None, with a warning, if it
        cannot be built. Built once: the writer's thread and the exit path, which spools a batch
        still being written, get the same record under the same id, so a replay of the spool
        knows the call is stored already."""
        with _build_lock:
            if self._built is None:
                try:
                    self._built = self.record(error_type=self._finish_args[0], error_message=self._finish_args[1])
                except Exception as exc:  # noqa: BLE001
                    self._built = {}
                    warn_once("capture-finish",
                                     f"a call was not recorded ({type(exc).__name__}: {scrub(str(exc))[:200]})")
            return self._built or None

    # -- the record -----------------------------------------------------------------------------

    def record(self, *, error_type: str | None = None, error_message: str | None = None) -> dict:
        """The record for this call as it stands (``finish`` submits it). A status >= 400 wins over
        the caller's ``error_type``; the caller's wins over what the answer shows."""
        if self._model_unread:
            self._model_unread = False
            self._read_request(self.original_body)
        answer = self._answer
        shown_type, shown_message = answer.outcome()
        status = answer.status_code if self._refused_status is None else self._refused_status
        if status is not None and status >= 400 and self._refused_status is None:
            error_type, error_message = f"http_{status}", shown_message or error_message
        elif error_type is None and shown_type is not None:
            error_type, error_message = shown_type, shown_message
        usage = answer.usage or Usage()
        problems = list(answer.problems)
        if usage.problems:
            listed = ", ".join(usage.problems)
            problems.append(("bad_usage", f"unusable usage fields: {listed}"))
            warn_once("capture-bad_usage", f"an answer had unusable usage fields ({listed[:200]}); stored as unknown")
        if error_type is None and problems:
            error_type, error_message = problems[0]
        elif problems and error_message is None:
            error_message = problems[0][1]
        t_end = answer.t_end or self._t_finish or time.perf_counter_ns()
        t_first = answer.t_delta or answer.t_first
        stream = self.stream or answer.sse
        model = answer.model or self.requested_model
        record = {
            "id": uuid7(self._started_ns // 1_000_000),
            "created_at": datetime.fromtimestamp(self._started_ns / 1e9, timezone.utc),
            "request_id": answer.request_id,
            "endpoint": self.endpoint,
            "upstream": self.upstream,
            "requested_model": self.requested_model,
            "model": model,
            "provider": model.partition("/")[0] if model and "/" in model else None,
            "stream": stream,
            "status_code": status,
            "error_type": error_type,
            "error_message": scrub(str(error_message), self._secret) if error_message else None,
            **usage.as_record(),
            "finish_reason": answer.finish_reason,
            "latency_ms": (t_end - self._t0) // 1_000_000,
            "ttft_ms": (t_first - self._t0) // 1_000_000 if stream and t_first else None,
            "app": self.app,
            "user": self.user,
            # cleaned whole, then bounded (db.tag_limits: 20 tags, 64-char keys, 256-char values, flagged)
            "tags": bound_tags({clean_text(k, _TAG_CLEAN_LIMIT): clean_text(v, _TAG_CLEAN_LIMIT)
                                for k, v in self.tags.items()}) if self.tags else None,
            "api_key_hint": hint_for(self._secret) if self._secret else None,
        }
        for name, limit in _TEXT_COLUMNS.items():
            record[name] = clean_text(record[name], limit)
        return record
