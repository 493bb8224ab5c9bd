"""The proxy's connections, held to account: a deadline for each request head, a cap on open
connections that keeps file descriptors for the ledger, and JSON answers for what aiohttp refuses.

- **Head deadline** (``ProxyConfig.header_timeout``, ``--header-timeout``, default 10 s): a
  connection must deliver each request head (request line and headers) within that many seconds,
  counted from when it opened, or, on a kept-alive connection, from the first byte of the next
  request. It is a deadline, not an idle timer: sending a byte at a time does not extend it. A late
  head gets ``408`` and the connection is closed. The timer starts in ``connection_made`` and is
  cancelled as soon as aiohttp's parser hands over the head (``data_received``).
- **Connection cap**: ``connection_budget()`` = (the soft ``RLIMIT_NOFILE`` - descriptors open at
  start - ``LEDGER_RESERVE`` (64)) // 2, at least 8. Each client connection may need a second
  descriptor for its upstream connection (the upstream pool is capped to the same number), and 64
  stay free for the ledger (SQLite file, WAL, shared memory, write lock, spool and its lock, or the
  PostgreSQL pool) and the process, so the writer can always write or spool. Under ``ulimit -n 256``
  that is about 85. A connection past the cap closes the one that has waited longest for its next
  head (``503``) to make room; when every connection is busy with a request, the new one is refused
  (``503``). Idle kept-alive connections close after 75 s.
- **Token**: aiohttp hands a request over once its whole head is parsed; the handler checks
  ``X-Spendlog-Proxy-Token`` before anything else (the body is never read for a refused request,
  the connection is closed after the 401, and aiohttp waits at most ``LINGERING_TIME`` (2 s) for a
  body the client may still be sending, so that it can read the 401).
- Requests aiohttp cannot parse get the proxy's OpenAI-style JSON error, quoting nothing.
"""

from __future__ import annotations

import asyncio
import os
import resource

from aiohttp import web

from .safety import error_body

__all__ = ["GuardedServer", "connection_budget", "LEDGER_RESERVE", "KEEPALIVE_TIMEOUT", "LINGERING_TIME"]

LEDGER_RESERVE = 64  # descriptors kept free for the ledger writer, its spool and the process
MIN_CONNECTIONS = 8
KEEPALIVE_TIMEOUT = 75.0  # an idle kept-alive connection is closed after this (aiohttp's run_app default)
LINGERING_TIME = 2.0  # after answering a request whose body was not read, how long its rest is drained


def _open_descriptors() -> int:
    for folder in ("/proc/self/fd", "/dev/fd"):
        try:
            return len(os.listdir(folder)) - 1  # listdir's own descriptor
        except OSError:
            continue
    return 16


def connection_budget(soft_limit: int | None = None, open_now: int | None = None) -> int:
    """How many client connections the proxy keeps open at once (see the module docstring)."""
    if soft_limit is None:
        soft_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft_limit == resource.RLIM_INFINITY or soft_limit > 1 << 20:
        soft_limit = 1 << 20
    if open_now is None:
        open_now = _open_descriptors()
    return max(MIN_CONNECTIONS, (soft_limit - open_now - LEDGER_RESERVE) // 2)


def _canned(status: int, reason: str, message: str, type_: str, code: str) -> bytes:
    """A whole HTTP/1.1 error answer that closes the connection, for when there is no request yet."""
    body = error_body(f"spendlog proxy: {message}", type_, code)
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n")
    return head.encode() + body


_LATE_HEAD = _canned(408, "Request Timeout", "the request head did not arrive in time", "invalid_request_error",
                     "request_timeout")
_NO_ROOM = _canned(503, "Service Unavailable", "too many connections; try again", "server_error",
                   "too_many_connections")


class _Connection(web.RequestHandler):
    """One client connection: the head deadline, its place in the cap, and JSON parser errors."""

    __slots__ = ("_server", "_head_timer", "_answered")

    def __init__(self, manager: GuardedServer, **kwargs):
        super().__init__(manager, **kwargs)
        self._server = manager
        self._head_timer: asyncio.TimerHandle | None = None
        self._answered = 0  # requests whose answer is done; == _request_count: waiting for a head

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        if self._server.admit(self):
            self._wait_for_head(start_now=True)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._stop_head_timer()
        self._server.forget(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        heads = self._request_count
        super().data_received(data)
        if self.transport is None:  # closed (or refused) meanwhile
            return
        if self._request_count != heads:  # aiohttp parsed a whole head: the deadline is met
            self._stop_head_timer()
            self._server.busy(self)
        elif self._head_timer is None and data and self._request_count == self._answered:
            self._wait_for_head(start_now=True)  # the first byte of the next request on a kept-alive connection

    async def _handle_request(self, request, start_time, request_handler):
        try:
            return await super()._handle_request(request, start_time, request_handler)
        finally:
            self._answered += 1
            if self._request_count == self._answered and self.transport is not None and not self._force_close:
                self._wait_for_head(start_now=False)  # idle until the next request starts

    def _wait_for_head(self, *, start_now: bool) -> None:
        self._server.waiting(self)
        if start_now and self._head_timer is None:
            self._head_timer = self._loop.call_later(self._server.header_timeout, self._head_late)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        if self._request_count == self._answered:
            self.refuse(_LATE_HEAD)

    def refuse(self, answer: bytes) -> None:
        """Send ``answer`` (a whole HTTP response) and close the connection."""
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(answer)
        self.force_close()

    def handle_error(self, request, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        """aiohttp answers a request it cannot parse (bad framing, oversized headers, TLS on the
        plain port...) itself, in plain text quoting the request. Answer like every other proxy
        error: OpenAI-style JSON, quoting nothing (the request may hold a key)."""
        super().handle_error(request, status, exc, None)  # aiohttp's logging and already-sent check
        if status >= 500:
            text, type_, code = "spendlog proxy: internal error", "server_error", "proxy_error"
        else:
            kind = type(exc).__name__ if exc is not None else "bad request"
            text, type_, code = f"spendlog proxy: malformed HTTP request ({kind})", "invalid_request_error", "bad_request"
        resp = web.Response(status=status, body=error_body(text, type_, code), content_type="application/json")
        resp.force_close()
        return resp


class GuardedServer(web.Server):
    """``web.Server`` whose connections are ``_Connection``: it counts them, keeps the ones waiting
    for a head in arrival order, and makes room past ``max_connections``."""

    def __init__(self, handler, *, header_timeout: float, max_connections: int, handler_cancellation: bool = False,
                 **kwargs):
        kwargs.setdefault("keepalive_timeout", KEEPALIVE_TIMEOUT)
        kwargs.setdefault("lingering_time", LINGERING_TIME)
        super().__init__(handler, handler_cancellation=handler_cancellation, **kwargs)
        self._handler_options = kwargs  # for each connection's RequestHandler
        self.header_timeout = header_timeout
        self.max_connections = max_connections
        self._open: set[_Connection] = set()
        self._waiting: dict[_Connection, None] = {}  # oldest first

    def __call__(self) -> web.RequestHandler:
        return _Connection(self, loop=asyncio.get_running_loop(), **self._handler_options)

    def admit(self, conn: _Connection) -> bool:
        """Count a new connection; past the cap, close the longest-waiting one, or refuse this one."""
        self._open.add(conn)
        if len(self._open) <= self.max_connections:
            return True
        victim = next(iter(self._waiting), None)
        if victim is None:
            conn.refuse(_NO_ROOM)
            return False
        self.forget(victim)
        victim.refuse(_NO_ROOM)
        return True

    def waiting(self, conn: _Connection) -> None:
        self._waiting.pop(conn, None)
        self._waiting[conn] = None

    def busy(self, conn: _Connection) -> None:
        self._waiting.pop(conn, None)

    def forget(self, conn: _Connection) -> None:
        self._open.discard(conn)
        self._waiting.pop(conn, None)
