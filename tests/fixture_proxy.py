"""Fixtures that run the proxy (see spendlog/proxy/).

- `proxy`: a running proxy (real HTTP on 127.0.0.1, a free port, its own thread and event loop)
  in front of the `fake_upstream` fixture. `.base_url` ("http://127.0.0.1:PORT/v1"), `.origin`,
  `.url(path)`, `.config`. Stopped (gracefully) after the test.
- `proxy_factory`: `proxy_factory(upstream_url, **ProxyConfig options)` starts more, each stopped
  after the test.
- `proxy_workers` (1): how many processes `proxy` and `proxy_factory` serve with. A module that
  overrides it with 2 (tests/test_proxy_workers.py) runs the same tests against
  ``spendlog.proxy.workers.ProxyWorkers``: two worker processes on one port, each with its own
  writer (its records reach ``rows(expect=...)`` within a flush interval).
- `proxy_process`: `proxy_process(*cli_args, env=..., nofile=...)` runs `spendlog proxy --port 0 ...`
  as the user does, in a child process (``ProxyProcess``: `.base_url`, `.port`, `.banner`,
  `.peak_rss_mb()`, `.stop()`); killed after the test if still running.

Helpers for the proxy tests live here too (``from fixture_proxy import rows, normalise, ...``):
reading the ledger, raw HTTP on a socket, normalising the fake's volatile fields, and
``Recorder``, a bare HTTP server that records what reaches it (the host SSRF attempts aim at).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from helpers import ledger_rows

import spendlog
from spendlog.db.models import Completion
from spendlog.proxy import ProxyConfig, ProxyServer, start_proxy
from spendlog.proxy.workers import ProxyWorkers

_VOLATILE = [
    (re.compile(rb'"(\w*id)":\s*"[^"]*"'), rb'"\1":"<id>"'),
    (re.compile(rb'"created":\s*\d+'), b'"created":0'),
    (re.compile(rb'"created_at":\s*\d+'), b'"created_at":0'),
]
CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello to the proxy"}]}


def normalise(body: bytes) -> bytes:
    """The fake's ids and timestamps differ per call; everything else must be equal."""
    for pattern, repl in _VOLATILE:
        body = pattern.sub(repl, body)
    return body


def rows(db_url: str | None = None, *, expect: int | None = None, timeout: float = 5.0) -> list[Completion]:
    """The ledger's rows, oldest first, after flushing; with ``expect``, waits until there are that many.
    SQLite is read through a read-only engine, so it never competes with the writer for the write lock
    (a PostgreSQL test schema is chosen by ``options`` in its URL, which a read-only engine replaces)."""
    deadline = time.monotonic() + timeout
    while True:
        spendlog.flush(5)
        found = ledger_rows(db_url, flush=False)
        if expect is None or len(found) >= expect or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def usage_of(row) -> dict:
    return {
        "prompt_tokens": row.prompt_tokens,
        "completion_tokens": row.completion_tokens,
        "total_tokens": row.total_tokens,
        "cached_tokens": row.cached_tokens,
        "reasoning_tokens": row.reasoning_tokens,
        "cost": row.cost_usd,
    }


def raw_request(port: int, data: bytes, *, timeout: float = 5.0, send_errors_ok: bool = False) -> bytes:
    """Send ``data`` as-is on a fresh connection and return everything the server sends back, until it
    closes or goes quiet for ``timeout`` (a damaged Content-Length leaves it waiting for body bytes that
    never come). With ``send_errors_ok``, a server that hangs up mid-send still has its answer read."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
        except OSError:
            if not send_errors_ok:
                raise
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def status_of(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/") else 0


def body_of(raw: bytes) -> bytes:
    return raw.partition(b"\r\n\r\n")[2]


class Recorder:
    """A plain HTTP server on 127.0.0.1 that records every request it gets and answers with a
    canned response: the 'other host' SSRF attempts must never reach, or a custom upstream."""

    def __init__(self, respond=None, *, timeout: float = 2.0):
        self.hits: list[bytes] = []
        self._timeout = timeout  # for reading each request and sending its whole answer
        self._respond = respond or (lambda req: b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(self._timeout)
                data = b""
                try:
                    while b"\r\n\r\n" not in data:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                    head, _, rest = data.partition(b"\r\n\r\n")
                    m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                    need = int(m.group(1)) if m else 0
                    while len(rest) < need:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        rest += chunk
                    self.hits.append(head + b"\r\n\r\n" + rest)
                    conn.sendall(self._respond(head + b"\r\n\r\n" + rest))
                except OSError:
                    pass

    def stop(self) -> None:
        self._stop = True
        self._thread.join(2)
        self._sock.close()


def json_response(status: int, obj, *, headers: dict | None = None) -> bytes:
    body = json.dumps(obj).encode()
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return (f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"{extra}Connection: close\r\n\r\n").encode() + body


class ProxyProcess:
    """``spendlog proxy --port 0 *args`` in a child process, its banner read. ``env`` is added to this
    process's environment (without SPENDLOG_PROXY_TOKEN unless given); ``nofile`` runs it under
    ``ulimit -n nofile``."""

    def __init__(self, *args: str, env: dict | None = None, nofile: int | None = None):
        cmd = [sys.executable, "-m", "spendlog", "proxy", "--port", "0", *args]
        if nofile is not None:
            cmd = ["sh", "-c", f'ulimit -n {int(nofile)} && exec "$@"', "sh", *cmd]
        full_env = {k: v for k, v in os.environ.items() if k != "SPENDLOG_PROXY_TOKEN"}
        full_env.update(env or {})
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env)
        banner = self.proc.stdout.readline()
        match = re.search(r"listening on (http://127\.0\.0\.1:(\d+)/v1) -> (\S+)", banner)
        if not match:
            self.proc.kill()
            raise AssertionError(f"no banner: {banner!r} {self.proc.stderr.read()}")
        self.banner, self.base_url, self.port = banner, match.group(1), int(match.group(2))
        self.origin = self.base_url[: -len("/v1")]

    def peak_rss_mb(self) -> float:
        """The most memory the process has held so far (VmHWM, Linux)."""
        with open(f"/proc/{self.proc.pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        raise AssertionError("no VmHWM in /proc/<pid>/status")

    def stop(self, sig=signal.SIGTERM, timeout: float = 30) -> tuple[int, str, str]:
        """Signal it and wait: ``(exit code, stdout after the banner, stderr)``."""
        self.proc.send_signal(sig)
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err


@pytest.fixture
def proxy_process():
    procs: list[ProxyProcess] = []

    def start(*args: str, **options) -> ProxyProcess:
        procs.append(ProxyProcess(*args, **options))
        return procs[-1]

    yield start
    for p in procs:
        if p.proc.poll() is None:
            p.proc.kill()
            p.proc.communicate()


@pytest.fixture
def proxy_workers() -> int:
    return 1


@pytest.fixture
def proxy_factory(proxy_workers):
    started: list[ProxyServer | ProxyWorkers] = []

    def start(upstream: str, **options) -> ProxyServer | ProxyWorkers:
        if proxy_workers == 1:
            server = start_proxy(upstream, **options)
        else:
            options.setdefault("port", 0)
            server = ProxyWorkers(ProxyConfig(upstream=upstream, **options), proxy_workers).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop(timeout=2)


@pytest.fixture
def proxy(fake_upstream, proxy_factory) -> ProxyServer:
    return proxy_factory(fake_upstream.base_url, shutdown_timeout=2)
