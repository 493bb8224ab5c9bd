"""One request through the proxy: check it, send it upstream, stream the answer back, record it.

The record comes from ``spendlog.capture.CallCapture``, the same builder the httpx hook uses: the
proxy only moves bytes. Answers are passed on as they arrive (each read from the upstream is
written to the client at once), raw: the upstream's Content-Encoding is kept and the capture
reads a decoded copy. Only when the capture asked for the usage chunk on the caller's behalf is
the body changed (that one event is removed), and then the upstream is asked for identity
encoding and Content-Length is dropped.

Failures and what the client sees (the record's ``error_type`` in brackets):

- upstream unreachable: 502 JSON (``connect_error``); no answer in time: 504 JSON (``timeout``);
  upstream closed before answering: 502 JSON (``stream_interrupted``)
- upstream cut mid-answer: the client's connection is closed without the final chunk, as the
  upstream did (``stream_interrupted``, or ``timeout``)
- client gone (disconnect, or the proxy shutting down past its grace period): the upstream
  request is dropped (``cancelled``)
- the call's scope has an exhausted hard budget: 402 JSON, ``type: budget_exceeded``, answered
  here, nothing sent upstream (``budget_exceeded``; ``spendlog.budget_guard``)
"""

from __future__ import annotations

import asyncio
import os

import aiohttp
from aiohttp import web
from yarl import URL

from spendlog.budget_guard import BudgetGuard
from spendlog.capture import CallCapture, split_attribution

from .config import ProxyConfig
from .safety import (TOKEN_HEADER, BadTarget, error_body, forward_request_headers, forward_response_headers,
                     target_url, token_ok)

__all__ = ["Forwarder", "json_error"]

_PEEK_LIMIT = 64 * 1024  # error bodies read whole to decide the stream_options retry
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def json_error(status: int, message: str, type_: str, code: str, *, close: bool = False) -> web.Response:
    resp = web.Response(status=status, body=error_body(message, type_, code), content_type="application/json")
    if close:
        resp.force_close()
    return resp


class _TooLarge(Exception):
    pass


class Forwarder:
    """The request handler: holds the configuration and the upstream connection pool."""

    def __init__(self, config: ProxyConfig, *, pool_limit: int | None = None, worker=None):
        self.config = config
        self.worker = worker  # a WorkerBoard (spendlog.proxy.workers) when one of several processes
        self.requests = 0
        self.pool_limit = pool_limit or config.pool_size
        self.upstream = config.upstream_url
        self.session: aiohttp.ClientSession | None = None
        self.guard = None  # the hard-budget check (spendlog.budget_guard), set by open()
        self._timeout = aiohttp.ClientTimeout(total=None, connect=config.connect_timeout,
                                              sock_read=config.read_timeout)

    async def open(self) -> None:
        if self.config.enforce_budgets:
            self.guard = BudgetGuard(self.config.db_url, refresh_every=self.config.budget_refresh).start()
        connector = aiohttp.TCPConnector(limit=self.pool_limit, limit_per_host=0, ttl_dns_cache=300)
        self.session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            auto_decompress=False,                  # raw bytes through; the capture decodes a copy
            cookie_jar=aiohttp.DummyCookieJar(),    # never carry one client's cookies to another
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            trust_env=False,                        # no proxy or netrc from the environment
        )

    async def close(self) -> None:
        if self.guard is not None:
            self.guard.stop()
            self.guard = None
        if self.session is not None:
            await self.session.close()
            self.session = None

    # -- the handler ----------------------------------------------------------------------------

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        if not token_ok(request.headers.get(TOKEN_HEADER), self.config.token):  # first: nothing else is read
            return json_error(401, f"spendlog proxy: missing or wrong {TOKEN_HEADER} header",
                              "authentication_error", "proxy_token_required", close=True)
        raw_target = request.raw_path
        if self.worker is not None:
            self.worker.count_request()
        self.requests += 1
        if raw_target == "/healthz" or raw_target.startswith("/healthz?"):
            return await self.healthz(request)
        try:
            url = target_url(raw_target, self.upstream)
        except BadTarget as exc:
            return json_error(exc.status, f"spendlog proxy: {exc.message}", "invalid_request_error", exc.code)
        try:
            body = await self._read_body(request)
        except _TooLarge:
            return json_error(413, f"spendlog proxy: request body larger than {self.config.max_body_bytes} bytes",
                              "invalid_request_error", "request_too_large", close=True)
        except asyncio.IncompleteReadError:
            return json_error(400, "spendlog proxy: the request body ended before its Content-Length",
                              "invalid_request_error", "incomplete_body", close=True)
        return await self._forward(request, url, body)

    async def healthz(self, request: web.BaseRequest) -> web.Response:
        from spendlog.db.writer import get_writer

        try:
            writer = get_writer(self.config.db_url).status()
        except Exception as exc:  # noqa: BLE001 - a health check reports, it does not fail
            writer = {"state": "error", "last_error": f"{type(exc).__name__}: {exc}"[:300]}
        if self.worker is not None:
            workers = self.worker.read()
            this = workers[self.worker.index]
        else:
            this = {"index": 0, "pid": os.getpid(), "requests": self.requests}
            workers = [this]
        # "writer" is this worker's own (each worker writes the ledger through its own writer)
        return web.json_response({"status": "ok", "upstream": self.config.upstream, "writer": writer,
                                  "worker": this, "workers": workers, "worker_count": len(workers)})

    async def _read_body(self, request: web.BaseRequest) -> bytes:
        limit = self.config.max_body_bytes
        length = request.content_length
        if length is not None and length > limit:
            raise _TooLarge
        if request.headers.get("Expect", "").lower() == "100-continue":
            await request.writer.write(_CONTINUE)
        if length is not None:
            return await request.content.readexactly(length) if length else b""
        parts, size = [], 0
        async for chunk in request.content.iter_any():
            size += len(chunk)
            if size > limit:
                raise _TooLarge
            parts.append(chunk)
        return b"".join(parts)

    async def _forward(self, request: web.BaseRequest, url: URL, body: bytes) -> web.StreamResponse:
        incoming = list(request.headers.items())
        _, app, user, tags = split_attribution(incoming)
        headers = forward_request_headers(incoming)
        cap = CallCapture.start(request.method, str(url), headers, body, app=app, user=user, tags=tags,
                                db_url=self.config.db_url)
        if cap is not None and self.guard is not None and (answer := self.guard.refused(cap)) is not None:
            refused = web.Response(status=402, body=answer, content_type="application/json")
            refused.headers["x-should-retry"] = "false"  # the OpenAI SDKs read it; they never retry a 402 anyway
            return refused
        if cap is not None:
            headers, body = cap.request_headers, cap.request_body
            if cap.injected_usage:  # the usage event can only be cut out of an uncompressed stream
                headers = _identity(headers)
        try:
            return await self._exchange(request, url, headers, body, cap)
        except asyncio.CancelledError:
            if cap is not None:
                cap.finish(error_type="cancelled", error_message="the client went away before the answer ended")
            raise
        finally:
            if cap is not None:
                cap.finish()  # no-op when already finished with an error

    async def _exchange(self, request, url, headers, body, cap) -> web.StreamResponse:
        assert self.session is not None
        upstream: aiohttp.ClientResponse | None = None
        try:
            upstream = await self._send(request.method, url, headers, body)
            prefix = b""
            if cap is not None and cap.injected_usage and upstream.status == 400:
                prefix = await _peek(upstream)
                if cap.should_retry_without_usage_option(upstream.status, prefix):
                    upstream.release()
                    cap.retry()
                    upstream = None
                    upstream = await self._send(request.method, url, cap.request_headers, cap.request_body)
                    prefix = b""
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError) as exc:
            failure = 504, "timeout", f"no answer from the upstream in time ({type(exc).__name__})"
        except aiohttp.ClientConnectorError as exc:
            failure = 502, "connect_error", f"could not reach the upstream: {exc.os_error or exc}"
        except aiohttp.ClientError as exc:
            failure = 502, "stream_interrupted", f"the upstream closed the connection before answering ({type(exc).__name__})"
        else:
            try:
                return await self._relay(request, upstream, cap, prefix)
            finally:
                upstream.release()
        if upstream is not None:
            upstream.release()
        return self._failed(cap, *failure)

    async def _send(self, method: str, url: URL, headers, body: bytes) -> aiohttp.ClientResponse:
        return await self.session.request(method, url, data=body if body or method not in ("GET", "HEAD") else None,
                                          headers=headers, allow_redirects=False)

    def _failed(self, cap: CallCapture | None, status: int, kind: str, message: str) -> web.Response:
        if cap is not None:
            cap.finish(error_type=kind, error_message=message)
        return json_error(status, f"spendlog proxy: {message}", "upstream_error", kind)

    async def _relay(self, request, upstream: aiohttp.ClientResponse, cap, prefix: bytes) -> web.StreamResponse:
        changes_body = cap is not None and cap.injected_usage
        resp = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        for name, value in forward_response_headers(upstream.headers.items(), keep_length=not changes_body):
            resp.headers.add(name, value)
        if cap is not None:
            cap.response_started(upstream.status, upstream.headers.items())
        try:
            await resp.prepare(request)
            if prefix:
                out = cap.feed(prefix) if cap is not None else prefix
                if out:
                    await resp.write(out)
            content = upstream.content
            while True:
                try:
                    chunk = await content.readany()
                except (asyncio.TimeoutError, aiohttp.ServerTimeoutError):
                    return self._cut(request, resp, cap, "timeout", "the upstream stopped sending mid-answer")
                except aiohttp.ClientError as exc:
                    return self._cut(request, resp, cap, "stream_interrupted",
                                     f"the upstream cut the answer ({type(exc).__name__})")
                if not chunk:
                    break
                out = cap.feed(chunk) if cap is not None else chunk
                if out:
                    await resp.write(out)
            if cap is not None:
                tail = cap.end_of_body()
                if tail:
                    await resp.write(tail)
            await resp.write_eof()
        except ConnectionResetError:  # the client went away while we wrote
            if cap is not None:
                cap.finish(error_type="cancelled", error_message="the client went away before the answer ended")
            return resp
        if cap is not None:
            cap.finish()
        return resp

    def _cut(self, request, resp, cap, kind: str, message: str) -> web.StreamResponse:
        """Pass an upstream cut on: close the client's connection without ending the body."""
        if cap is not None:
            cap.finish(error_type=kind, error_message=message)
        resp.force_close()
        if request.transport is not None:
            request.transport.close()  # buffered bytes still go out; the final chunk never does
        return resp


async def _peek(upstream: aiohttp.ClientResponse) -> bytes:
    """Up to 64 KiB of an error answer (the rest, if any, is relayed after it)."""
    parts, size = [], 0
    while size < _PEEK_LIMIT:
        chunk = await upstream.content.read(_PEEK_LIMIT - size)
        if not chunk:
            break
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts)


def _identity(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(n, v) for n, v in headers if n.lower() != "accept-encoding"] + [("Accept-Encoding", "identity")]
