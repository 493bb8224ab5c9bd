"""Run the fake upstream on a real port in a background thread (tests, benchmarks, the demo)."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import uvicorn

from .app import FakeState, SeenRequest, create_app
from .billing import ActivityRow
from .keys import MANAGEMENT_PREFIX

__all__ = ["FakeUpstream", "FakeUpstreamProcess", "new_management_key", "new_test_key", "run_fake_upstream",
           "spawn_fake_upstream", "start_fake_upstream"]


def new_test_key() -> str:
    """A fresh key the fake accepts (`sr_test_` + 24 hex digits)."""
    return "sr_test_" + os.urandom(12).hex()


def new_management_key() -> str:
    """A fresh management key (`sr_mgmt_` + 24 hex digits): a fake started without one accepts it."""
    return MANAGEMENT_PREFIX + os.urandom(12).hex()


class FakeUpstream:
    """A running fake upstream. `base_url` ends in /v1; `api_key` is a key it accepts (it accepts any
    well-formed `sr_` key); `management_key` reads its activity (the key it was started with, else a
    fresh `sr_mgmt_` key: it then accepts any); `requests` holds the last 1000 requests it received,
    oldest first; `activity()` is what it billed."""

    def __init__(self, server: uvicorn.Server, thread: threading.Thread, host: str, port: int, api_key: str,
                 management_key: str):
        self._server, self._thread = server, thread
        self.host, self.port, self.api_key, self.management_key = host, port, api_key, management_key
        self.origin = f"http://{host}:{port}"
        self.base_url = f"{self.origin}/v1"
        self.app = server.config.app
        self.state: FakeState = self.app.state.fake

    def url(self, path: str) -> str:
        """Absolute URL: '/v1/...' paths are taken from the origin, anything else from base_url."""
        if path.startswith("/v1/") or path == "/v1":
            return self.origin + path
        return self.base_url + "/" + path.lstrip("/")

    @property
    def requests(self) -> list[SeenRequest]:
        return list(self.state.requests)

    @property
    def last_request(self) -> SeenRequest | None:
        return self.state.requests[-1] if self.state.requests else None

    def clear_requests(self) -> None:
        self.state.requests.clear()

    def activity(self, first=None, last=None) -> list[ActivityRow]:
        """What the fake billed per UTC day x model, `first` to `last` (dates, inclusive), in process;
        the same figures `GET /v1/activity` serves."""
        return self.state.ledger.rows(first, last)

    def clear_activity(self) -> None:
        self.state.ledger.clear()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving; open streams get `timeout` seconds to end, then are dropped."""
        self._server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(timeout)

    def __enter__(self) -> FakeUpstream:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<FakeUpstream {self.base_url}>"


def start_fake_upstream(host: str = "127.0.0.1", port: int = 0, *, api_key: str | None = None,
                        latency_ms: float = 0, chunk_delay_ms: float = 0, keepalive_every: int = 4,
                        retry_after: int = 1, no_cost: bool = False, management_key: str | None = None,
                        startup_timeout: float = 10.0) -> FakeUpstream:
    """Start the fake on `host:port` (0: a free port) in a daemon thread; the caller must `stop()` it.
    `no_cost`: every answer omits usage.cost. `management_key`: the only key the activity accepts."""
    app = create_app(latency_ms=latency_ms, chunk_delay_ms=chunk_delay_ms, keepalive_every=keepalive_every,
                     retry_after=retry_after, no_cost=no_cost, management_key=management_key)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    bound = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", ws="none",
                            timeout_graceful_shutdown=2, backlog=4096)
    # access_log=False only empties "uvicorn.access" once, here; uvicorn's protocols log a request
    # line whenever that logger has a handler when a connection opens, and a host process adds them
    # (Streamlit sets its level to INFO on import; pytest attaches its capture handler to every
    # non-propagating logger before each test). Those lines hold the callers' ?key= queries, so in
    # this process the fake's access log is switched off outright.
    logging.getLogger("uvicorn.access").disabled = True
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"fake-upstream:{bound}",
                              daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError(f"fake upstream did not start on {host}:{bound}")
        time.sleep(0.005)
    return FakeUpstream(server, thread, host, bound, api_key or new_test_key(), management_key or new_management_key())


@contextlib.contextmanager
def run_fake_upstream(host: str = "127.0.0.1", port: int = 0, **opts) -> Iterator[FakeUpstream]:
    """`with run_fake_upstream() as fake:` a running fake upstream, stopped on exit.
    Options: api_key, latency_ms, chunk_delay_ms, keepalive_every, retry_after, no_cost, management_key."""
    fake = start_fake_upstream(host, port, **opts)
    try:
        yield fake
    finally:
        fake.stop()


class FakeUpstreamProcess:
    """A fake upstream in a child process (`spendlog fake-upstream`): the same `base_url`, `api_key`,
    `management_key`, `url()` and `stop()` as FakeUpstream, without `requests` and `activity()` (read
    `GET /v1/activity`). Benchmarks use it so the server does not share the caller's GIL."""

    def __init__(self, proc: subprocess.Popen, host: str, port: int, api_key: str, management_key: str):
        self._proc, self.host, self.port, self.api_key = proc, host, port, api_key
        self.management_key = management_key
        self.origin = f"http://{host}:{port}"
        self.base_url = f"{self.origin}/v1"

    url = FakeUpstream.url

    @property
    def requests(self):
        raise RuntimeError("requests are recorded only by an in-process fake (run_fake_upstream)")

    def stop(self, timeout: float = 5.0) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout)
        if self._proc.stdout:
            self._proc.stdout.close()

    def __repr__(self) -> str:
        return f"<FakeUpstreamProcess pid={self._proc.pid} {self.base_url}>"


@contextlib.contextmanager
def spawn_fake_upstream(host: str = "127.0.0.1", port: int = 0, *, api_key: str | None = None,
                        latency_ms: float = 0, chunk_delay_ms: float = 0, no_cost: bool = False,
                        management_key: str | None = None,
                        startup_timeout: float = 20.0) -> Iterator[FakeUpstreamProcess]:
    """`with spawn_fake_upstream() as fake:` the fake in a child process, stopped on exit. Options as
    for start_fake_upstream; a management key goes to the child in its environment, never its argv."""
    cmd = [sys.executable, "-m", "spendlog", "fake-upstream", "--host", host, "--port", str(port),
           "--latency-ms", str(latency_ms), "--chunk-delay-ms", str(chunk_delay_ms)]
    if no_cost:
        cmd.append("--no-cost")
    env = {k: v for k, v in os.environ.items() if k != "SOLROUTER_MANAGEMENT_KEY"}
    if management_key is not None:
        env["SOLROUTER_MANAGEMENT_KEY"] = management_key
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    fake = None
    try:
        line = proc.stdout.readline()
        match = re.search(r"http://\[?([^\]\s]*?)\]?:(\d+)/v1", line)
        if not match:
            raise RuntimeError(f"fake upstream did not start: {line.strip() or 'no output'}")
        fake = FakeUpstreamProcess(proc, host, int(match.group(2)), api_key or new_test_key(),
                                   management_key or new_management_key())
        deadline = time.monotonic() + startup_timeout
        while True:  # the banner is printed just before uvicorn starts accepting
            try:
                socket.create_connection((host, fake.port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"fake upstream did not start on {host}:{fake.port}") from None
                time.sleep(0.02)
        yield fake
    finally:
        if fake is not None:
            fake.stop()
        else:
            proc.kill()
            proc.wait()
