"""The hook: transports for ``httpx`` and ``httpx2`` clients that record every LLM call.

    client = httpx2.Client(transport=spendlog.LoggingTransport(httpx2.HTTPTransport(), app="billing-bot"))
    OpenAI(base_url=..., api_key=..., http_client=client)

``LoggingTransport`` wraps any sync transport (``handle_request`` / ``close``) and
``AsyncLoggingTransport`` any async one (``handle_async_request`` / ``aclose``). They delegate
each request, building the changed request (attribution headers removed, usage option added) with
the request's own library, and hand back the inner response with its byte stream wrapped: the
wrapper feeds bytes to ``spendlog.capture.CallCapture`` as the app reads them and finishes the
record in ``close()`` (read to the end: ok; closed early: ``cancelled``; a read error:
``stream_interrupted``, re-raised unchanged). Bodies are never read early and the bytes the app
reads are the upstream's (raw, before content decoding), except for the usage-only SSE event a
stream gets because we asked for it.

With ``enforce_budgets=True`` a call in the scope of an exhausted hard budget is answered here
with a 402 (``type: budget_exceeded``) and never sent, checked in memory by the process's
``spendlog.budget_guard`` (no query per request).

With no ``wrapped`` transport, the default transport of the request's library is made on first
use (``httpx.HTTPTransport`` for an ``httpx.Client``, ``httpx2.HTTPTransport`` for ``httpx2``).
Nothing is patched globally.
"""

from __future__ import annotations

import re
import sys
import threading
import zlib
from typing import Any

from spendlog.capture import TRACKED_PATHS, CallCapture, split_attribution
from spendlog.db.log import warn_once

__all__ = ["LoggingTransport", "AsyncLoggingTransport", "http_client", "async_http_client", "error_type_for"]


def error_type_for(exc: BaseException) -> str:
    """``ConnectError`` -> ``connect_error``; any timeout -> ``timeout``; a cancellation -> ``cancelled``."""
    if not isinstance(exc, Exception):
        return "cancelled"
    name = type(exc).__name__
    if "Timeout" in name:
        return "timeout"
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()[:64]


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _library(obj: object):
    """The module (``httpx``, ``httpx2``) an object of the request/response model comes from."""
    return sys.modules[type(obj).__module__.partition(".")[0]]


def _start(request, path: str, app, user, tags, db_url, body: bytes) -> CallCapture | None:
    try:
        upstream = request.url.netloc.decode("ascii").rpartition("@")[2]
    except Exception:  # noqa: BLE001 - an odd URL object: let the capture parse the text
        return CallCapture.start(request.method, str(request.url), request.headers.raw, body,
                                 app=app, user=user, tags=tags, db_url=db_url)
    return CallCapture.start_parts(request.method, upstream, path, request.headers.raw, body,
                                   app=app, user=user, tags=tags, db_url=db_url)


def _candidate_path(request) -> str | None:
    """The URL path when the request may be an LLM call (the capture decides), else None."""
    if request.method != "POST":
        return None
    path = request.url.path
    return path if path.rstrip("/").endswith(TRACKED_PATHS) else None


def _outgoing(request, capture: CallCapture):
    """The request to send: the caller's own object when nothing changed, else a copy built with
    the same library."""
    if not capture.request_changed and capture.request_body is capture.original_body:
        return request
    return type(request)(request.method, request.url, headers=capture.request_headers,
                         content=capture.request_body, extensions=request.extensions)


def _untracked(request):
    """A call we do not record, passed on as it is, except for our own attribution headers: those
    never leave the machine (an SDK's ``default_headers`` put them on every request)."""
    raw = request.headers.raw
    if not any(name[:11].lower() == b"x-spendlog-" for name, _ in raw):
        return request
    left, _app, _user, _tags = split_attribution(raw)
    return type(request)(request.method, request.url, headers=left, stream=request.stream,
                         extensions=request.extensions)


_CHECK_LIMIT = 64 * 1024  # of an error body, decoded, enough to find the option's name


def _check_body(raw: bytes, headers) -> bytes:
    """A decoded copy of the start of an error body (64 KiB at most, a gzip bomb included), to
    look for the name of the refused option."""
    encoding = headers.get("content-encoding", "").lower()
    if encoding in ("gzip", "x-gzip", "deflate"):
        try:
            return zlib.decompressobj(zlib.MAX_WBITS | 32).decompress(raw, _CHECK_LIMIT)
        except zlib.error:
            pass
    return raw[:_CHECK_LIMIT]


# -- the response stream wrappers --------------------------------------------------------------

class _Capturing:
    """What the sync and async stream wrappers share: the capture they feed and the two ways its
    record ends early. One copy, so both kinds of stream record the same error types."""

    def __init__(self, inner, capture: CallCapture):
        self._inner = inner
        self._capture = capture
        self._closed = False

    def _interrupted(self, exc: BaseException) -> None:
        """A read failed mid-body (``stream_interrupted``) or the reader was cancelled."""
        self._capture.finish(error_type="stream_interrupted" if isinstance(exc, Exception) else "cancelled",
                             error_message=_describe(exc))

    def _finish_on_close(self) -> bool:
        """Finish the record on the first close (``cancelled`` unless the body was read to the
        end); False on any later close, which must not touch the inner stream again."""
        if self._closed:
            return False
        self._closed = True
        capture = self._capture
        capture.finish(error_type=None if capture.complete else "cancelled")
        return True


class _SyncCapturing(_Capturing):
    """Mixed into the library's ``SyncByteStream`` (the client asserts that type)."""

    def __iter__(self):
        capture = self._capture
        try:
            for chunk in self._inner:
                out = capture.feed(chunk)
                if out:
                    yield out
            tail = capture.end_of_body()
        except GeneratorExit:
            raise
        except BaseException as exc:
            self._interrupted(exc)
            raise
        if tail:
            yield tail
        capture.finish()

    def close(self) -> None:
        if self._finish_on_close():
            self._inner.close()


class _AsyncCapturing(_Capturing):
    """Mixed into the library's ``AsyncByteStream``."""

    async def __aiter__(self):
        capture = self._capture
        try:
            async for chunk in self._inner:
                out = capture.feed(chunk)
                if out:
                    yield out
            tail = capture.end_of_body()
        except GeneratorExit:
            raise
        except BaseException as exc:  # CancelledError included: the task was cancelled mid-read
            self._interrupted(exc)
            raise
        if tail:
            yield tail
        capture.finish()

    async def aclose(self) -> None:
        if self._finish_on_close():
            await self._inner.aclose()


_stream_classes: dict[tuple[type, bool], type] = {}  # one per response class and kind: a handful


def _wrap(response, capture: CallCapture, *, sync: bool):
    """``response`` with its stream wrapped; on any failure the response untouched (and the record
    made now, without the body)."""
    try:
        if response.is_closed:  # a response built with its body already read (httpx.MockTransport)
            capture.response_started(response.status_code, response.headers.raw, decoded=True)
            capture.feed(response.content)
            capture.end_of_body()
            capture.finish()
            return response
        key = (type(response), sync)
        cls = _stream_classes.get(key)
        if cls is None:
            lib = _library(response)
            mixin, base = (_SyncCapturing, lib.SyncByteStream) if sync else (_AsyncCapturing, lib.AsyncByteStream)
            cls = _stream_classes[key] = type(f"Capturing{base.__name__}", (mixin, base), {})
        response.stream = cls(response.stream, capture)
    except Exception as exc:  # noqa: BLE001 - fail open
        warn_once("transport-wrap", f"cannot watch {type(response).__module__} response bodies ({exc!r}); usage not recorded")
        capture.finish()
    return response


# -- the transports ------------------------------------------------------------------------------

class _Transport:
    """What the sync and async transports share: the attribution stamped on every record and the
    inner transport. One copy, so the two can never drift apart on either."""

    _default_inner: str  # the name of the library's transport class made when none was wrapped

    def __init__(self, wrapped: Any = None, *, app: str | None = None, user: str | None = None,
                 tags: dict[str, str] | None = None, db_url: str | None = None, enforce_budgets: bool = False):
        self._wrapped = wrapped
        self._lock = threading.Lock()
        self.app, self.user, self.tags, self.db_url = app, user, tags, db_url
        self._guard = None
        if enforce_budgets:  # imported here: a hook that does not enforce never loads the budget reads
            from spendlog.budget_guard import guard_for
            self._guard = guard_for(db_url)

    def _refusal(self, request, capture: CallCapture):
        """The 402 to answer instead of sending (an exhausted hard budget, recorded), else None."""
        body = self._guard.refused(capture)
        return None if body is None else _library(request).Response(
            402, headers=[("content-type", "application/json"), ("x-should-retry", "false")], content=body,
            request=request)

    def _inner_for(self, request):
        """The wrapped transport; without one, the request library's default, made once: the lock
        keeps two threads' first requests from each making (and leaking) one."""
        if self._wrapped is None:
            with self._lock:
                if self._wrapped is None:
                    self._wrapped = getattr(_library(request), self._default_inner)()
        return self._wrapped


class LoggingTransport(_Transport):
    """Wraps a sync ``httpx``/``httpx2`` transport and records every LLM call it carries."""

    _default_inner = "HTTPTransport"

    def handle_request(self, request):
        inner = self._inner_for(request) if self._wrapped is None else self._wrapped
        path = _candidate_path(request)
        if path is None:
            return inner.handle_request(_untracked(request))
        try:
            body = request.content
        except Exception:  # noqa: BLE001 - a streamed upload: read it (LLM requests are JSON)
            body = request.read()
        capture = _start(request, path, self.app, self.user, self.tags, self.db_url, body)
        if capture is None:
            return inner.handle_request(_untracked(request))
        if self._guard is not None and (refused := self._refusal(request, capture)) is not None:
            return refused
        try:
            response = inner.handle_request(_outgoing(request, capture))
            capture.response_started(response.status_code, response.headers.raw)
            if capture.injected_usage and response.status_code == 400:
                response = self._refused_option(inner, request, capture, response)
        except BaseException as exc:
            capture.finish(error_type=error_type_for(exc), error_message=_describe(exc))
            raise
        return _wrap(response, capture, sync=True)

    @staticmethod
    def _refused_option(inner, request, capture: CallCapture, response):
        """A 400 to a request we changed: if it names our option, send the caller's own request."""
        try:
            raw = b"".join(response.stream)
        finally:
            response.stream.close()
        if capture.should_retry_without_usage_option(400, _check_body(raw, response.headers)):
            capture.retry()
            response = inner.handle_request(_outgoing(request, capture))
            capture.response_started(response.status_code, response.headers.raw)
            return response
        response.stream = _library(response).ByteStream(raw)
        return response

    def close(self) -> None:
        if self._wrapped is not None:
            self._wrapped.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class AsyncLoggingTransport(_Transport):
    """Wraps an async ``httpx``/``httpx2`` transport and records every LLM call it carries."""

    _default_inner = "AsyncHTTPTransport"

    async def handle_async_request(self, request):
        inner = self._inner_for(request) if self._wrapped is None else self._wrapped
        path = _candidate_path(request)
        if path is None:
            return await inner.handle_async_request(_untracked(request))
        try:
            body = request.content
        except Exception:  # noqa: BLE001
            body = await request.aread()
        capture = _start(request, path, self.app, self.user, self.tags, self.db_url, body)
        if capture is None:
            return await inner.handle_async_request(_untracked(request))
        if self._guard is not None and (refused := self._refusal(request, capture)) is not None:
            return refused
        try:
            response = await inner.handle_async_request(_outgoing(request, capture))
            capture.response_started(response.status_code, response.headers.raw)
            if capture.injected_usage and response.status_code == 400:
                response = await self._refused_option(inner, request, capture, response)
        except BaseException as exc:
            capture.finish(error_type=error_type_for(exc), error_message=_describe(exc))
            raise
        return _wrap(response, capture, sync=False)

    @staticmethod
    async def _refused_option(inner, request, capture: CallCapture, response):
        try:
            raw = b"".join([chunk async for chunk in response.stream])
        finally:
            await response.stream.aclose()
        if capture.should_retry_without_usage_option(400, _check_body(raw, response.headers)):
            capture.retry()
            response = await inner.handle_async_request(_outgoing(request, capture))
            capture.response_started(response.status_code, response.headers.raw)
            return response
        response.stream = _library(response).ByteStream(raw)
        return response

    async def aclose(self) -> None:
        if self._wrapped is not None:
            await self._wrapped.aclose()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.aclose()


# -- ready-made clients ---------------------------------------------------------------------------

_TRANSPORT_OPTIONS = ("verify", "cert", "trust_env", "http1", "http2", "limits", "proxy", "retries")


def _client_library():
    try:
        import httpx2

        return httpx2
    except ImportError:
        import httpx

        return httpx


def _split_options(options: dict) -> tuple[dict, dict]:
    transport = {k: options.pop(k) for k in _TRANSPORT_OPTIONS if k in options}
    return transport, options


def http_client(*, app: str | None = None, user: str | None = None, tags: dict[str, str] | None = None,
                db_url: str | None = None, enforce_budgets: bool = False, **options):
    """An ``httpx2.Client`` (``httpx.Client`` without httpx2) whose calls are recorded.

    Transport options (``limits``, ``verify``, ``http2``, ``proxy``, ``retries``...) go to the inner
    ``HTTPTransport``; the rest (``timeout``, ``headers``...) to the client."""
    lib = _client_library()
    transport_options, client_options = _split_options(dict(options))
    transport = LoggingTransport(lib.HTTPTransport(**transport_options), app=app, user=user, tags=tags, db_url=db_url,
                                 enforce_budgets=enforce_budgets)
    return lib.Client(transport=transport, **client_options)


def async_http_client(*, app: str | None = None, user: str | None = None, tags: dict[str, str] | None = None,
                      db_url: str | None = None, enforce_budgets: bool = False, **options):
    """The async twin of ``http_client``: an ``httpx2.AsyncClient`` (or ``httpx.AsyncClient``)."""
    lib = _client_library()
    transport_options, client_options = _split_options(dict(options))
    transport = AsyncLoggingTransport(lib.AsyncHTTPTransport(**transport_options), app=app, user=user, tags=tags,
                                      db_url=db_url, enforce_budgets=enforce_budgets)
    return lib.AsyncClient(transport=transport, **client_options)
