"""``spendlog proxy --workers N``: N proxy processes on one port, one supervisor.

Each worker is ``python -m spendlog.proxy.workers``: its own listening socket on the same address
(``SO_REUSEPORT``: the kernel spreads new connections over the workers), its own event loop and
its own ledger writer (``spendlog.db.writer``'s public ``get_writer``, one per process, the way
several apps share a ledger). The supervisor (``ProxyWorkers``) checks the address is free,
reserves the port (port 0 becomes a real one before any worker starts), starts the workers and
waits for each one's banner, restarts one that dies, and on ``stop()`` sends every worker
SIGTERM: each stops accepting, lets its requests in flight finish (``shutdown_timeout``) and
flushes its writer, as a single ``spendlog proxy`` does, so nothing accepted is lost.

``/healthz`` answers from whichever worker took the connection, with every worker's pid and
request count: the workers share a small file (``WorkerBoard``, mmap) where worker *i* writes
slot *i*.
"""

from __future__ import annotations

import dataclasses
import json
import mmap
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from .config import ProxyConfig

__all__ = ["ProxyWorkers", "WorkerBoard", "WorkersError", "parse_workers", "run_workers"]

WORKER_ENV = "SPENDLOG_PROXY_WORKER"  # the worker's spec (JSON), read and removed at its start
START_TIMEOUT = 60.0
_SLOT = struct.Struct("<qqq")  # pid, requests handled, started (unix seconds)


class WorkersError(RuntimeError):
    """The workers could not start (the message is one line)."""


def parse_workers(value: str) -> int:
    """``--workers``: a whole number >= 1, or ``auto`` (the machine's cores); ValueError otherwise."""
    if value.strip().lower() == "auto":
        return os.cpu_count() or 1
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"--workers must be a number of processes or auto, got {value!r}") from None
    if n < 1:
        raise ValueError(f"--workers must be at least 1, got {n}")
    return n


class WorkerBoard:
    """Every worker's pid and request count, in a file each worker maps; ``index`` is the slot
    this process writes (None: read only)."""

    def __init__(self, path: str | Path, count: int, index: int | None = None):
        self.path, self.count, self.index = Path(path), count, index
        self.requests = 0
        with open(self.path, "r+b") as f:
            self._map = mmap.mmap(f.fileno(), _SLOT.size * count)

    @classmethod
    def create(cls, path: Path, count: int) -> WorkerBoard:
        path.write_bytes(bytes(_SLOT.size * count))
        return cls(path, count)

    def started(self, pid: int) -> None:
        _SLOT.pack_into(self._map, _SLOT.size * self.index, pid, 0, int(time.time()))

    def count_request(self) -> None:
        self.requests += 1
        struct.pack_into("<q", self._map, _SLOT.size * self.index + 8, self.requests)

    def read(self) -> list[dict]:
        out = []
        for i in range(self.count):
            pid, requests, started = _SLOT.unpack_from(self._map, _SLOT.size * i)
            out.append({"index": i, "pid": pid or None, "requests": requests, "started_at": started or None})
        return out

    def close(self) -> None:
        self._map.close()


class ProxyWorkers:
    """``count`` proxy processes serving ``config``'s address. ``base_url``, ``origin``, ``url()``
    and ``stop()`` as ``ProxyServer`` has them; ``pids()`` lists the running workers."""

    def __init__(self, config: ProxyConfig, count: int, *, out=None):
        from .app import _address, _base_url, open_socket

        self.count, self.out = count, out
        probe = open_socket(config.host, config.port)  # no SO_REUSEPORT: fails when anyone listens there
        port = probe.getsockname()[1]
        probe.close()
        self._reserve = open_socket(config.host, port, reuse_port=True)  # holds the port until workers listen
        self.host, self.port = _address(self._reserve)
        self.config = dataclasses.replace(config, port=self.port)
        self.origin = _base_url(self.host, self.port)[: -len("/v1")]
        self.base_url = self.origin + "/v1"
        self._dir = Path(tempfile.mkdtemp(prefix="spendlog-proxy-"))
        self.board = WorkerBoard.create(self._dir / "workers", count)
        self._procs: list[subprocess.Popen | None] = [None] * count
        self._stopping = False

    def url(self, path: str) -> str:
        return self.origin + "/" + path.lstrip("/")

    def pids(self) -> list[int]:
        return [p.pid for p in self._procs if p is not None and p.poll() is None]

    def _spawn(self, index: int) -> subprocess.Popen:
        spec = {"config": dataclasses.asdict(self.config), "index": index, "count": self.count,
                "board": str(self.board.path)}
        env = {**os.environ, WORKER_ENV: json.dumps(spec)}
        return subprocess.Popen([sys.executable, "-m", "spendlog.proxy.workers"], env=env, stdout=subprocess.PIPE,
                                text=True)

    def _await_banner(self, proc: subprocess.Popen, timeout: float) -> None:
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.append(proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if not lines or "listening on" not in lines[0]:
            proc.kill()
            proc.wait()
            raise WorkersError(f"a proxy worker did not start (exit code {proc.returncode})")
        threading.Thread(target=self._relay, args=(proc,), daemon=True).start()

    def _relay(self, proc: subprocess.Popen) -> None:
        """A worker's later lines, without the per-worker "stopping" line the supervisor says once."""
        for line in proc.stdout:
            if not line.startswith("spendlog proxy: stopping") and self.out is not None:
                print(line.rstrip("\n"), file=self.out, flush=True)

    def start(self, timeout: float = START_TIMEOUT) -> ProxyWorkers:
        try:
            for i in range(self.count):
                self._procs[i] = self._spawn(i)
            for proc in self._procs:
                self._await_banner(proc, timeout)
        except BaseException:
            self.stop()
            raise
        self._reserve.close()
        return self

    def restart_dead(self) -> list[str]:
        """Start a new worker in the place of each one that exited on its own; a line for each."""
        said = []
        for i, proc in enumerate(self._procs):
            if self._stopping or proc is None or proc.poll() is None:
                continue
            said.append(f"spendlog proxy: worker {i} (pid {proc.pid}) exited with code {proc.returncode}; "
                        "starting another")
            self._procs[i] = self._spawn(i)
            self._await_banner(self._procs[i], START_TIMEOUT)
        return said

    def stop(self, timeout: float | None = None) -> bool:
        """SIGTERM every worker and wait for each to drain and flush; False when one had to be
        killed or ended with an error."""
        from .app import FLUSH_TIMEOUT

        self._stopping = True
        wait = (timeout if timeout is not None else self.config.shutdown_timeout) + FLUSH_TIMEOUT + 15
        live = [p for p in self._procs if p is not None]
        for proc in live:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        clean = True
        deadline = time.monotonic() + wait
        for proc in live:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                clean = False
            clean = clean and proc.returncode == 0
        try:
            self._reserve.close()
        finally:
            self.board.close()
            shutil.rmtree(self._dir, ignore_errors=True)
        return clean

    def __enter__(self) -> ProxyWorkers:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<ProxyWorkers {self.count} x {self.base_url} -> {self.config.upstream}>"


def run_workers(config: ProxyConfig, count: int, *, out=None) -> bool:
    """What ``spendlog proxy --workers N`` runs: the workers until SIGTERM/SIGINT, then all of
    them stopped gracefully. True when every worker stopped cleanly."""
    out = out or sys.stdout
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        workers = ProxyWorkers(config, count, out=out).start()
        from spendlog.db.engine import mask_url, resolve_url

        print(f"spendlog proxy: listening on {workers.base_url} -> {config.upstream} "
              f"(ledger {mask_url(resolve_url(config.db_url))}; {count} workers, pids "
              f"{' '.join(map(str, workers.pids()))})", file=out, flush=True)
        try:
            while not stop.wait(0.5):
                for line in workers.restart_dead():
                    print(line, file=out, flush=True)
        except BaseException:
            workers.stop()  # a worker that cannot be restarted stops the others too, gracefully
            raise
        print(f"spendlog proxy: stopping {count} workers (waiting up to {config.shutdown_timeout:g} s for requests "
              "in flight)", file=out, flush=True)
        clean = workers.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not clean:
        print("spendlog proxy: a worker did not stop cleanly; its unwritten records are in its spool, if any",
              file=out, flush=True)
    return clean


def _die_with_parent() -> None:
    """Linux: SIGTERM this worker when the supervisor dies (even by SIGKILL)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _worker_main() -> None:
    from .app import open_socket, serve

    spec = json.loads(os.environ.pop(WORKER_ENV))
    _die_with_parent()
    config = ProxyConfig(**spec["config"])
    board = WorkerBoard(spec["board"], spec["count"], spec["index"])
    board.started(os.getpid())
    serve(config, sock=open_socket(config.host, config.port, reuse_port=True), worker=board)


if __name__ == "__main__":
    _worker_main()
