"""The record builder every capture path shares (the httpx hook and the proxy).

``CallCapture`` is a pure state machine for one HTTP attempt: ``start`` reads the request (and
may add ``stream_options.include_usage`` to a streamed request), ``response_started`` /
``feed`` / ``end_of_body`` watch the answer's bytes go by, and ``finish`` builds one record and
hands it to the background writer. No I/O, no blocking, no locks held between calls.

Fail-open: nothing here raises into the caller's request. An internal failure warns once per kind
(``spendlog.db.writer.warn_once``) and the bytes flow on untouched.

Streams are not JSON-parsed chunk by chunk: events are cut with one regex scan
(``spendlog.sse.EventSplitter``) and only the events that can carry what we need are parsed
(the first one, those with a ``"usage": {`` object, errors, ``[DONE]``); ``finish_reason`` is
read with a regex.

Key handling: the full key is read once, to make the hint (``sr_...abcd``) and to scrub error
messages; it is never part of a record or a log line.
"""

from __future__ import annotations

import json
import os
import re
import time
import zlib
from collections.abc import Sequence
from datetime import datetime, timezone
from decimal import Decimal
from urllib.parse import urlsplit

from spendlog.db import writer
from spendlog.db.engine import resolve_url
from spendlog.db.ids import uuid7
from spendlog.sse import EventSplitter, parse_event, split_events
from spendlog.usage import Usage, error_message, loads_answer, parse_usage

__all__ = ["CallCapture", "split_attribution", "parse_tags", "key_hint", "hint_for", "scrub", "TRACKED_PATHS"]

TRACKED_PATHS = ("/chat/completions", "/completions", "/embeddings", "/responses")
_USAGE_OPTION_PATHS = ("/chat/completions", "/completions")  # endpoints that know stream_options
_ATTRIBUTION = {"x-spendlog-app": "app", "x-spendlog-user": "user", "x-spendlog-tags": "tags"}
_MAX_BODY = 32 * 1024 * 1024  # non-streamed answers above this are passed on but not parsed
_MAX_ERROR_BODY = 64 * 1024
_FINISH = re.compile(rb'"finish_reason"\s*:\s*"((?:[^"\\]|\\.){1,64})"')
_USAGE_OBJECT = re.compile(rb'"usage"\s*:\s*\{')
_ERROR = re.compile(rb'"error"\s*:\s*(?!null)')  # an error member that is set
_NULL_USAGE = re.compile(rb',\s*"usage"\s*:\s*null\b|"usage"\s*:\s*null\s*,')
_SECRET = re.compile(
    r"(?i)(?:bearer\s+)?\b(?:sr|sk|pk|rk|key|api)[-_][A-Za-z0-9_\-]{6,}|\b[A-Za-z0-9_\-]{32,}"
)
_TEXTUAL_FIRST_BYTES = frozenset(b'{[:de"\r\n\t ')  # an already-decoded JSON or SSE body starts so
_COLUMN_LIMITS = {
    "request_id": 255, "endpoint": 255, "upstream": 255, "requested_model": 255, "model": 255,
    "provider": 255, "error_type": 64, "finish_reason": 64, "app": 255, "user": 255,
}


# -- request headers ----------------------------------------------------------------------------

def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def parse_tags(text: str) -> dict[str, str] | None:
    """``"k=v,k2=v2"`` -> ``{"k": "v", "k2": "v2"}``; a bare ``k`` becomes ``{"k": ""}``."""
    tags = {}
    for item in text.split(","):
        key, _, value = item.partition("=")
        key = key.strip()
        if key:
            tags[key] = value.strip()
    return tags or None


# lower-cased header name -> what it carries; the same table for bytes and str headers
_HEADER_ROLES = {"x-spendlog-app": "app", "x-spendlog-user": "user", "x-spendlog-tags": "tags",
                 "authorization": "authorization", "api-key": "key", "x-api-key": "key"}
_HEADER_ROLES_B = {k.encode(): v for k, v in _HEADER_ROLES.items()}


def _read_headers(headers: Sequence[tuple]) -> tuple[list[tuple], dict[str, str], str | None]:
    """One pass over the headers (str or bytes pairs): ``(headers without attribution,
    {"app"/"user"/"tags": value}, the API key)``. No copy when there is nothing to remove."""
    found: dict[str, str] = {}
    key = None
    drop = False
    for name, value in headers:
        role = (_HEADER_ROLES_B if type(name) is bytes else _HEADER_ROLES).get(name.lower())
        if role is None:
            continue
        value = _text(value).strip()
        if role == "authorization":
            scheme, _, value = value.partition(" ")
            if scheme.lower() != "bearer":
                continue
            value = value.strip()
            role = "key"
        if role == "key":
            key = key or value or None
        else:
            found[role] = value
            drop = True
    if drop:
        left = [pair for pair in headers if _text(pair[0]).lower() not in _ATTRIBUTION]
    else:
        left = headers if type(headers) is list else list(headers)
    return left, found, key


def split_attribution(headers: Sequence[tuple]) -> tuple[list[tuple], str | None, str | None, dict[str, str] | None]:
    """Remove the ``X-Spendlog-App/User/Tags`` headers (any case): ``(headers_left, app, user, tags)``."""
    left, found, _key = _read_headers(headers)
    tags = parse_tags(found["tags"]) if "tags" in found else None
    return left, found.get("app") or None, found.get("user") or None, tags


def hint_for(key: str) -> str:
    """``sr_test_abcdef123456`` -> ``sr_...3456``: the prefix (up to the first ``_`` or ``-``) and the last
    4 characters, which is all that is ever stored. Short keys show no tail at all."""
    cut = min((i for i in (key.find("_"), key.find("-")) if 0 <= i < 8), default=-1)
    prefix = key[: cut + 1] if cut >= 0 else ""
    return prefix + "..." + (key[-4:] if len(key) >= 16 else "")


def key_hint(headers: Sequence[tuple]) -> str | None:
    """The stored hint of the key in ``Authorization: Bearer``, ``api-key`` or ``x-api-key``."""
    key = _read_headers(headers)[2]
    return hint_for(key) if key else None


def scrub(text: str, secret: str | None = None) -> str:
    """``text`` with the given secret and anything that looks like a key replaced by its hint."""
    if secret and secret in text:
        text = text.replace(secret, hint_for(secret))
    return _SECRET.sub(lambda m: hint_for(m.group(0).split()[-1]), text)


def _with_content_length(headers: list[tuple], length: int) -> list[tuple]:
    out = []
    for name, value in headers:
        if _text(name).lower() == "content-length":
            value = str(length).encode() if isinstance(value, bytes) else str(length)
        out.append((name, value))
    return out


def _clean(value: str | None, limit: int) -> str | None:
    """A string safe for every backend: valid UTF-8, no NUL, within the column's length."""
    if value is None:
        return None
    if not value.isascii():
        value = value.encode("utf-8", "replace").decode("utf-8")
    if "\x00" in value:
        value = value.replace("\x00", "")
    return value[:limit]


def _start_of(region: bytes, boundary: int) -> int:
    """Where the event ending at ``boundary`` (an LF LF) starts, leading blank lines excluded."""
    s = region.rfind(b"\n\n", 0, boundary)
    return 0 if s < 0 else s + 2


def _mark_at(region: bytes, ends: dict[int, int], pos: int) -> int:
    """Note the event holding ``pos`` for parsing; returns where it ends."""
    e = region.find(b"\n\n", pos)
    ends[e] = _start_of(region, e)
    return e + 2


def _mark(region: bytes, ends: dict[int, int], marker: bytes) -> int:
    """Note every event holding ``marker``; returns how many times it was found."""
    found = 0
    pos = region.find(marker)
    while pos >= 0:
        found += 1
        pos = region.find(marker, _mark_at(region, ends, pos))
    return found


def _without_null_usage(data: bytes) -> bytes:
    """``data`` without the ``"usage": null`` members include_usage adds to every chunk."""
    if b'"usage"' not in data:
        return data
    data = data.replace(b',"usage":null', b"")
    if b'"usage"' in data and _NULL_USAGE.search(data):
        data = _NULL_USAGE.sub(b"", data)
    return data


# -- the database URL, resolved once per configuration ------------------------------------------

_urls: dict[tuple, object] = {}


def _writer_url(db_url: str | None):
    key = (db_url, os.environ.get("SPENDLOG_DB_URL"), os.environ.get("SPENDLOG_DATA_DIR"))
    url = _urls.get(key)
    if url is None:
        if len(_urls) >= 32:
            _urls.clear()
        url = _urls[key] = resolve_url(db_url)
    return url


def _submit(record: dict, db_url: str | None) -> None:
    try:
        url = _writer_url(db_url)
    except Exception as exc:  # noqa: BLE001 - a bad URL is the writer's warning to give
        writer.warn_once("capture-url", f"record not written: {exc}")
        return
    writer.submit(record, url)


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
            writer.warn_once("capture-start", f"a call was not recorded ({type(exc).__name__}: {scrub(str(exc))[:200]})")
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
            writer.warn_once("capture-start", f"a call was not recorded ({type(exc).__name__}: {scrub(str(exc))[:200]})")
            return None

    def __init__(self, upstream: str, path: str, headers: Sequence[tuple], body: bytes, app, user, tags, db_url):
        self.created_at = datetime.now(timezone.utc)
        self._t0 = time.perf_counter_ns()
        self.id = uuid7()
        self.db_url = db_url
        self.upstream = upstream
        i = path.find("/v1/")
        self.endpoint = path[i:] if i >= 0 else path
        self._usage_option_allowed = path.endswith(_USAGE_OPTION_PATHS)
        left, found, self._secret = _read_headers(headers)
        self._headers_left = left
        self.app = found.get("app") or app
        self.user = found.get("user") or user
        h_tags = parse_tags(found["tags"]) if "tags" in found else None
        if tags or h_tags:
            merged = {str(k): str(v) for k, v in tags.items()} if tags else {}
            merged.update(h_tags or {})
            self.tags = merged or None
        else:
            self.tags = None
        self.api_key_hint = hint_for(self._secret) if self._secret else None
        self.original_body = body
        self.request_body = body
        self.injected_usage = False
        self.requested_model = None
        self.stream = False
        self._retried = False
        self._finished = False
        self._read_request(body)
        self.request_headers = _with_content_length(left, len(self.request_body)) if self.injected_usage else left
        self.request_changed = self.injected_usage or left is not headers and len(left) != len(headers)
        self._reset_response()

    def _read_request(self, body: bytes) -> None:
        try:
            req = json.loads(body)
        except ValueError:
            return  # not JSON (or empty): still one record, just without a requested model
        if not isinstance(req, dict):
            return
        model = req.get("model")
        self.requested_model = model if isinstance(model, str) else None
        self.stream = req.get("stream") is True
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

    def _reset_response(self) -> None:
        self.status_code: int | None = None
        self.request_id: str | None = None
        self.model: str | None = None
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self._sse = False
        self._dropping = False
        self._splitter = EventSplitter()
        self._decoder = None
        self._sniff = False
        self._body_parts: list[bytes] = []
        self._body_size = 0
        self._body_limit = _MAX_BODY
        self._need_first = True
        self._t_first: int | None = None
        self._t_delta: int | None = None
        self._t_end: int | None = None
        self._done = False
        self._eof = False
        self._stream_error: str | None = None
        self._problems: list[tuple[str, str]] = []
        self._passthrough = False

    @property
    def complete(self) -> bool:
        """The answer was read to its end, or to its final event (SDKs stop reading at ``[DONE]``)."""
        return self._eof or self._done

    # -- the answer ---------------------------------------------------------------------------

    def response_started(self, status_code: int, headers: Sequence[tuple], *, decoded: bool = False) -> None:
        """The status line and headers arrived. ``decoded=True``: the bytes fed will already be
        decompressed whatever Content-Encoding says (aiohttp does that)."""
        try:
            self.status_code = int(status_code)
            ctype = encoding = ""
            for name, value in headers:
                if len(name) in (12, 16):  # cheap filter before decoding
                    lname = _text(name).lower()
                    if lname == "content-type":
                        ctype = _text(value).lower()
                    elif lname == "content-encoding":
                        encoding = _text(value).strip().lower()
            self._sse = ctype.startswith("text/event-stream") and self.status_code < 400
            if self._sse:
                self.stream = True
                self._dropping = self.injected_usage
            elif self.status_code >= 400:
                self._body_limit = _MAX_ERROR_BODY
            if encoding and encoding != "identity" and not decoded:
                self._decoder = _decoder_for(encoding)
                self._sniff = True
                self._dropping = False  # cannot cut an event out of compressed bytes: pass them as they are
                if self._decoder is None:
                    self._problem("unsupported_encoding", f"cannot read a {encoding!r} answer; usage not recorded")
                    self._passthrough = True
        except Exception as exc:  # noqa: BLE001
            self._fail(exc)

    def feed(self, chunk: bytes) -> bytes:
        """Watch ``chunk`` go by; returns the bytes to deliver now (see the module docstring)."""
        if self._passthrough or not chunk:
            return chunk
        if self._dropping:  # no decoder here: the bytes we see are the bytes we deliver
            before = self._splitter.pending
            try:
                return self._feed_events(chunk)
            except Exception as exc:  # noqa: BLE001 - stop watching, deliver everything held
                self._splitter.take_pending()
                self._fail(exc)
                return before + chunk
        try:
            data = self._decode(chunk) if self._decoder is not None else chunk
            if self._sse:
                self._feed_events(data)
            else:
                self._collect(data)
        except Exception as exc:  # noqa: BLE001
            self._fail(exc)
        return chunk

    def _feed_events(self, data: bytes) -> bytes:
        region = self._splitter.take_complete(data)
        if not region:
            return b""
        if b"\r" not in region:
            return self._scan(region)
        kept = [out for out in map(self._on_event, split_events(region)) if out]
        return b"".join(kept)

    def end_of_body(self) -> bytes:
        """The answer ended normally; returns anything still held back."""
        self._t_end = time.perf_counter_ns()
        self._eof = True
        if self._passthrough:
            return self._splitter.take_pending() if self._dropping else b""
        try:
            if self._decoder is not None and not self._sniff and hasattr(self._decoder, "flush"):
                tail = self._decoder.flush()
                if tail:
                    if self._sse:
                        self._feed_events(tail)
                    else:
                        self._collect(tail)
            rest = self._splitter.take_pending()
            if rest and self._sse:
                out = self._on_event(rest)  # an unterminated last event
                return (out or b"") if self._dropping else b""
            return b""
        except Exception as exc:  # noqa: BLE001
            self._fail(exc)
            return b""

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
        self._reset_response()

    def finish(self, *, error_type: str | None = None, error_message: str | None = None) -> None:
        """Build the record and hand it to the writer. Once; later calls do nothing. Never raises."""
        if self._finished:
            return
        self._finished = True
        try:
            record = self.record(error_type=error_type, error_message=error_message)
        except Exception as exc:  # noqa: BLE001
            writer.warn_once("capture-finish", f"a call was not recorded ({type(exc).__name__}: {scrub(str(exc))[:200]})")
            return
        _submit(record, self.db_url)

    # -- internals ------------------------------------------------------------------------------

    def _problem(self, kind: str, message: str) -> None:
        self._problems.append((kind, message))
        writer.warn_once(f"capture-{kind}", f"{message} (endpoint {self.endpoint})")

    def _fail(self, exc: BaseException) -> None:
        self._passthrough = True
        self._dropping = False
        self._problem("capture_error", f"stopped reading an answer: {type(exc).__name__}: {scrub(str(exc), self._secret)[:200]}")

    def _unread_event(self, raw: bytes, exc: Exception) -> bool:
        """An event we failed to read, judged on its bytes alone (so that the caller still never
        sees the usage we asked for). True: drop it."""
        if not any(kind == "capture_error" for kind, _ in self._problems):
            self._problem("capture_error", f"could not read a stream event: {type(exc).__name__}: {scrub(str(exc), self._secret)[:200]}")
        if b"data: [DONE]" in raw:
            self._done = True
        return self._dropping and b'"choices":[]' in raw and _USAGE_OBJECT.search(raw) is not None

    def _decode(self, chunk: bytes) -> bytes:
        if self._sniff:
            self._sniff = False
            if chunk[0] in _TEXTUAL_FIRST_BYTES:  # already decoded (a proxy client did it)
                self._decoder = None
                return chunk
        return self._decoder.decompress(chunk)

    def _collect(self, data: bytes) -> None:
        self._body_size += len(data)
        if self._body_size <= self._body_limit:
            self._body_parts.append(data)
        elif self._body_parts:
            self._body_parts = []
            if self.status_code is not None and self.status_code < 400:
                self._problem("body_too_large", f"answer larger than {self._body_limit} bytes; usage not read")

    def _scan(self, region: bytes) -> bytes:
        """Read the complete events in ``region`` (LF line ends) without cutting them apart: a few
        C-level counts and searches find what matters, only the events holding it are parsed.
        Returns the region as the caller gets it (``_on_event`` does the same event by event)."""
        if self._t_delta is None and b'"delta"' in region:
            self._t_delta = time.perf_counter_ns()
        n = region.count(b'"finish_reason"')
        if n and n != region.count(b'"finish_reason":null'):
            for m in _FINISH.finditer(region):
                self.finish_reason = m.group(1).decode("utf-8", "replace")
        ends: dict[int, int] = {}  # boundary position -> event start, for the events to parse
        if self._need_first:
            pos = 0
            while (e := region.find(b"\n\n", pos)) >= 0:
                if parse_event(region[pos : e + 2])[1] is not None:
                    ends[e] = _start_of(region, e)
                    break
                pos = e + 2
        usage = region.count(b'"usage"')
        if usage:
            objects = _mark(region, ends, b'"usage":{')
            if usage != objects + region.count(b'"usage":null'):  # not compact JSON: the slow way
                for m in _USAGE_OBJECT.finditer(region):
                    _mark_at(region, ends, m.start())
        if b'"error"' in region:
            for m in _ERROR.finditer(region):
                _mark_at(region, ends, m.start())
        _mark(region, ends, b"[DONE]")
        drops = []
        for e in sorted(ends):
            if self._read_event_safely(region[ends[e] : e + 2]):
                drops.append((ends[e], e + 2))
        if not self._dropping:
            return region
        if drops:
            pieces, prev = [], 0
            for start, end in drops:
                pieces.append(region[prev:start])
                prev = end
            pieces.append(region[prev:])
            region = b"".join(pieces)
        return _without_null_usage(region)

    def _on_event(self, raw: bytes) -> bytes:
        """Read one raw event (the path for CR line ends and the tail of a stream). Returns what
        the caller gets: b"" for the usage-only event we asked for (its leading blank lines
        excepted), the event without the ``"usage":null`` member our option added to it, or the
        event as it came."""
        if self._t_delta is None and b'"delta"' in raw:
            self._t_delta = time.perf_counter_ns()
        for m in _FINISH.finditer(raw):
            self.finish_reason = m.group(1).decode("utf-8", "replace")
        drop = False
        if (self._need_first or b"[DONE]" in raw or _USAGE_OBJECT.search(raw)
                or (b'"error"' in raw and _ERROR.search(raw))):
            drop = self._read_event_safely(raw)
        if not self._dropping:
            return raw
        if drop:
            return raw[: len(raw) - len(raw.lstrip(b"\r\n"))]
        return _without_null_usage(raw)

    def _read_event_safely(self, raw: bytes) -> bool:
        try:
            return self._read_event(raw)
        except ValueError:
            return False  # not JSON: not ours to judge, the caller gets it as it is
        except Exception as exc:  # noqa: BLE001
            return self._unread_event(raw, exc)

    def _read_event(self, raw: bytes) -> bool:
        """Parse one event and take what it says; True when it is the usage-only event to drop."""
        _name, data = parse_event(raw)
        if data is None:
            return False
        if self._need_first:
            self._need_first = False
            self._t_first = time.perf_counter_ns()
        if data.strip() == b"[DONE]":
            self._done = True
            return False
        obj = json.loads(data, parse_float=Decimal)
        if not isinstance(obj, dict):
            return False
        self._absorb(obj)
        return self._dropping and obj.get("choices") == [] and obj.get("usage") is not None

    def _absorb(self, obj: dict) -> None:
        """Take id, model, usage, finish reason and errors from an answer or a stream event."""
        kind = obj.get("type")
        resp = obj.get("response") if isinstance(kind, str) and isinstance(obj.get("response"), dict) else obj
        rid = resp.get("id")
        if isinstance(rid, str) and rid and self.request_id is None:
            self.request_id = rid
        model = resp.get("model")
        if isinstance(model, str) and model:
            self.model = model
        if "usage" in resp and resp["usage"] is not None:
            self.usage = parse_usage(resp["usage"])
        choices = resp.get("choices")
        if isinstance(choices, list):
            for choice in choices:
                if isinstance(choice, dict) and isinstance(choice.get("finish_reason"), str):
                    self.finish_reason = choice["finish_reason"]
        status = resp.get("status")
        if resp is not obj or obj.get("object") == "response":  # Responses API
            if kind in ("response.completed", "response.incomplete", "response.failed"):
                self._done = True
            details = resp.get("incomplete_details")
            if isinstance(details, dict) and isinstance(details.get("reason"), str):
                self.finish_reason = details["reason"]
            elif isinstance(status, str) and status != "in_progress":
                self.finish_reason = status
        err = obj.get("error") if "error" in obj else (resp.get("error") if kind == "response.failed" else None)
        if kind == "error":
            err = obj
        if err:
            msg = err.get("message") if isinstance(err, dict) else err
            self._stream_error = str(msg if msg else err)

    def _read_body(self) -> tuple[str | None, str | None]:
        body = b"".join(self._body_parts)
        if self.status_code is not None and self.status_code >= 400:
            return f"http_{self.status_code}", error_message(body)
        if self._body_size > self._body_limit:
            return None, None
        try:
            obj = loads_answer(body)
        except ValueError:
            return "bad_response", f"answer is not JSON ({self._body_size} bytes, status {self.status_code})"
        if not isinstance(obj, dict):
            return "bad_response", "answer is not a JSON object"
        self._absorb(obj)
        return None, None

    def record(self, *, error_type: str | None = None, error_message: str | None = None) -> dict:
        """The record for this call as it stands (``finish`` submits it)."""
        body_error = (None, None)
        if self.status_code is not None and not self._passthrough and not self._sse and (self._eof or self.status_code >= 400):
            body_error = self._read_body()
        status = self.status_code
        if status is not None and status >= 400:
            error_type, error_message = f"http_{status}", body_error[1] or error_message
        elif error_type is None:
            if body_error[0]:
                error_type, error_message = body_error
            elif self._stream_error is not None:
                error_type, error_message = "stream_error", self._stream_error
            elif self._sse and self._eof and not self._done and self.finish_reason is None:
                error_type, error_message = "stream_interrupted", "the stream ended before [DONE]"
        usage = self.usage or Usage()
        problems = list(self._problems)
        if usage.problems:
            problems.append(("bad_usage", "unusable usage fields: " + ", ".join(usage.problems)))
            writer.warn_once("capture-bad_usage", f"an answer had unusable usage fields ({', '.join(usage.problems)[:200]}); stored as unknown")
        if error_type is None and problems:
            error_type, error_message = problems[0]
        elif problems and error_message is None:
            error_message = problems[0][1]
        t_end = self._t_end or time.perf_counter_ns()
        t_first = self._t_delta or self._t_first
        model = self.model or self.requested_model
        record = {
            "id": self.id,
            "created_at": self.created_at,
            "request_id": self.request_id,
            "endpoint": self.endpoint,
            "upstream": self.upstream,
            "requested_model": self.requested_model,
            "model": model,
            "provider": model.partition("/")[0] if model and "/" in model else None,
            "stream": self.stream,
            "status_code": status,
            "error_type": error_type,
            "error_message": _clean(scrub(str(error_message), self._secret), 1000) if error_message else None,
            **usage.as_record(),
            "finish_reason": self.finish_reason,
            "latency_ms": (t_end - self._t0) // 1_000_000,
            "ttft_ms": (t_first - self._t0) // 1_000_000 if self.stream and t_first else None,
            "app": self.app,
            "user": self.user,
            "tags": {_clean(k, 255): _clean(v, 1000) for k, v in self.tags.items()} if self.tags else None,
            "api_key_hint": self.api_key_hint,
        }
        for name, limit in _COLUMN_LIMITS.items():
            value = record[name]
            if value is not None and (len(value) > limit or not value.isascii() or "\x00" in value):
                record[name] = _clean(value, limit)
        return record


def _decoder_for(encoding: str):
    if encoding in ("gzip", "x-gzip", "deflate"):
        return zlib.decompressobj(zlib.MAX_WBITS | 32)  # gzip or zlib header, detected
    if encoding == "br":
        try:
            import brotli  # type: ignore[import-not-found]
        except ImportError:
            try:
                import brotlicffi as brotli  # type: ignore[import-not-found,no-redef]
            except ImportError:
                return None
        return _Brotli(brotli.Decompressor())
    return None


class _Brotli:
    """``brotli`` and ``brotlicffi`` name their method differently."""

    def __init__(self, inner):
        self._inner = inner
        self.decompress = getattr(inner, "process", None) or inner.decompress
