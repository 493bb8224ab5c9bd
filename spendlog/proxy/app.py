"""Serving the proxy: the aiohttp low-level server, graceful shutdown, and a runner in a thread.

``serve(config)`` is what ``spendlog proxy`` runs: it listens, prints one banner line, and on
SIGTERM/SIGINT stops accepting, gives in-flight requests ``config.shutdown_timeout`` seconds,
then flushes the ledger writer. ``ProxyServer`` runs the same server in a background thread on
port 0 (tests, the demo, benchmarks).

Connections are held to account by ``spendlog.proxy.connections`` (a head deadline, a cap derived
from the open-file limit, JSON answers for what aiohttp cannot parse).

Why aiohttp for both sides (measured: docs/benchmarks.md, "The proxy"): the aiohttp client keeps its latency
at 64+ concurrent requests where httpx's AsyncClient does not (encode/httpx#3215; 8x the CPU per
call), and the aiohttp low-level server costs less CPU per call than uvicorn + Starlette while
giving the raw request target (absolute-form targets can be refused) and cancelling the handler
when the client goes away (so an abandoned stream is recorded as cancelled at once).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
import threading

from aiohttp import web

from spendlog.db import writer as ledger

from .config import ProxyConfig
from .connections import GuardedServer, connection_budget
from .forward import Forwarder

__all__ = ["ProxyServer", "serve", "start_proxy", "open_socket"]

log = logging.getLogger("spendlog.proxy")
FLUSH_TIMEOUT = 5.0


class _NoRequestDetails(logging.Filter):
    """aiohttp logs a failed or malformed request with its request line and a traceback, which
    may carry a ``?key=...`` or a header. Keep the fact and the exception's type, drop the rest."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None or record.args:
            record.msg = "spendlog proxy: a request failed or was malformed (%s; details withheld: they may hold keys)"
            record.args = (type(exc).__name__ if exc is not None else "error",)
            record.exc_info = record.exc_text = None
        return True


def _quiet_aiohttp_logs() -> None:
    for name in ("aiohttp.server", "aiohttp.web", "aiohttp.access"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _NoRequestDetails) for f in logger.filters):
            logger.addFilter(_NoRequestDetails())


def open_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A listening-ready socket bound to ``host:port`` (port 0: a free port). ``reuse_port``:
    other workers' sockets may bind the same address (``SO_REUSEPORT``, spendlog.proxy.workers)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind(addr)
    except OSError:
        sock.close()
        raise
    return sock


class _Running:
    """A started server inside a running event loop."""

    def __init__(self, config: ProxyConfig, sock: socket.socket, worker=None):
        self.config = config
        self.sock = sock
        self.max_connections = connection_budget()  # before the pool and the runner open anything
        self.forwarder = Forwarder(config, pool_limit=min(config.pool_size, self.max_connections), worker=worker)
        self.runner: web.ServerRunner | None = None

    async def start(self) -> None:
        _quiet_aiohttp_logs()
        await self.forwarder.open()
        server = GuardedServer(self.forwarder, header_timeout=self.config.header_timeout,
                               max_connections=self.max_connections, handler_cancellation=True, access_log=None)
        self.runner = web.ServerRunner(server, shutdown_timeout=self.config.shutdown_timeout)
        await self.runner.setup()
        await web.SockSite(self.runner, self.sock, backlog=4096).start()

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish (bounded), close the upstream pool."""
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
        await self.forwarder.close()


def _address(sock: socket.socket) -> tuple[str, int]:
    host, port = sock.getsockname()[:2]
    return host, port


def _base_url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/v1"


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it on Linux and macOS
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def serve(config: ProxyConfig, *, sock: socket.socket | None = None, out=None, worker=None) -> None:
    """Run until SIGTERM/SIGINT, then shut down gracefully and flush the ledger. ``worker``: this
    process's ``spendlog.proxy.workers.WorkerBoard`` when it is one of several."""
    out = out or sys.stdout
    sock = sock or open_socket(config.host, config.port)
    loop = _new_loop()
    asyncio.set_event_loop(loop)
    running = _Running(config, sock, worker)
    stop = asyncio.Event()
    try:
        loop.run_until_complete(running.start())
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        host, port = _address(sock)
        print(f"spendlog proxy: listening on {_base_url(host, port)} -> {config.upstream} "
              f"(ledger {ledger.get_writer(config.db_url).status()['url']}; "
              f"up to {running.max_connections} connections at once)", file=out, flush=True)
        loop.run_until_complete(stop.wait())
        print(f"spendlog proxy: stopping (waiting up to {config.shutdown_timeout:g} s for requests in flight)",
              file=out, flush=True)
        loop.run_until_complete(running.stop())
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
        asyncio.set_event_loop(None)
        sock.close()
    if not ledger.flush(FLUSH_TIMEOUT):
        print("spendlog proxy: some records were still pending; they will be spooled at exit", file=out, flush=True)


class ProxyServer:
    """The proxy in a background thread (its own event loop). ``base_url`` ends in ``/v1``."""

    def __init__(self, config: ProxyConfig):
        self.config = config
        self._sock = open_socket(config.host, config.port)
        self.host, self.port = _address(self._sock)
        self.origin = _base_url(self.host, self.port)[: -len("/v1")]
        self.base_url = self.origin + "/v1"
        self._loop = _new_loop()
        self._running = _Running(config, self._sock)
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"spendlog-proxy:{self.port}", daemon=True)

    def start(self, timeout: float = 10.0) -> ProxyServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._running.start(), self._loop).result(timeout)
        return self

    def url(self, path: str) -> str:
        return self.origin + "/" + path.lstrip("/")

    def stop(self, timeout: float | None = None) -> None:
        """Graceful stop (in-flight requests get ``shutdown_timeout``), then the loop ends."""
        if not self._thread.is_alive():
            return
        wait = (timeout if timeout is not None else self.config.shutdown_timeout) + 5
        try:
            asyncio.run_coroutine_threadsafe(self._running.stop(), self._loop).result(wait)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(wait)
            if not self._thread.is_alive():
                self._loop.close()
            self._sock.close()

    def __enter__(self) -> ProxyServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<ProxyServer {self.base_url} -> {self.config.upstream}>"


def start_proxy(upstream: str, **options) -> ProxyServer:
    """A running proxy on 127.0.0.1, a free port, forwarding to ``upstream``; ``stop()`` it."""
    options.setdefault("port", 0)
    return ProxyServer(ProxyConfig(upstream=upstream, **options)).start()
