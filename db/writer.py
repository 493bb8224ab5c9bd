"""The background writer: records in, rows out, nothing lost, the caller never slowed.

``submit(record)`` appends to an in-memory queue and returns (a lock and a deque append). A record
is a dict, or a deferred record: an object whose ``build()`` returns the dict (the same one on
every call, or None when it cannot be built), so that the capture's parsing runs on the writer's thread, not the caller's
(``spendlog.capture.CallCapture``). A daemon thread writes batches, one transaction per batch (``db.store.insert_records``), at least every
100 ms. If a batch cannot be written (database unreachable, locked past the busy timeout,
read-only, disk full) it goes to an append-only JSON-lines spool file in the data dir, and the
spool is replayed, without duplicates, on the next successful write and on start. If even the
spool cannot be written, the records are counted as dropped, warned about, and the count is shown
by ``spendlog db status``: never silent.

Memory is bounded: past ``max_pending`` queued records, ``submit`` spools directly.
After ``os.fork()`` the child gets fresh writers and never touches the parent's connections.
At interpreter exit every writer is flushed with a bounded wait (``SPENDLOG_EXIT_TIMEOUT``, 5 s);
what is still queued or in flight after it (a database that stopped answering) is spooled.
SIGTERM normally kills Python without running ``atexit``: when the first writer starts on the main
thread and SIGTERM still has its default action, a handler is installed that flushes the same way
and then dies by SIGTERM as before. An application's own SIGTERM handler is never replaced.
SQLite writers in every process queue for one ``flock`` (``db.engine.write_lock_path``) around each
write transaction, so none starves on the busy timeout.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import signal
import threading
import time
from collections import deque
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from sqlalchemy.engine import URL, Engine

from .engine import data_dir, file_lock, make_engine, mask_url, resolve_url, url_key, write_lock_path
from .migrate import ensure_schema
from .store import insert_records

__all__ = ["Writer", "get_writer", "submit", "flush", "spool_path", "dropped_count", "spooled_count"]

log = logging.getLogger("spendlog")

FLUSH_INTERVAL = 0.1
BATCH_SIZE = 2000
MAX_PENDING = 100_000
REPLAY_RETRY_SECONDS = 2.0

_warned: set[str] = set()
_warned_lock = threading.Lock()


def warn_once(kind: str, message: str) -> None:
    """Log a warning the first time a kind of failure happens in this process."""
    with _warned_lock:
        if kind in _warned:
            return
        _warned.add(kind)
    log.warning("spendlog: %s", message)


# -- spool ---------------------------------------------------------------------------------------

def spool_path(url: URL) -> Path:
    return data_dir() / f"spool-{url_key(url)}.jsonl"


def _dropped_path(url: URL) -> Path:
    return data_dir() / f"dropped-{url_key(url)}.count"


def _encode(record: dict) -> str:
    out = {}
    for k, v in record.items():
        if isinstance(v, Decimal):
            v = str(v)
        elif isinstance(v, datetime):
            v = v.isoformat()
        out[k] = v
    return json.dumps(out, separators=(",", ":"))


def _decode(line: str) -> dict:
    r = json.loads(line)
    if r.get("cost_usd") is not None:
        r["cost_usd"] = Decimal(r["cost_usd"])
    r["created_at"] = datetime.fromisoformat(r["created_at"])
    return r


def _materialize(items) -> list[dict]:
    """Dicts for a batch that may hold deferred records (see the module docstring)."""
    out = []
    for item in items:
        if type(item) is not dict:
            try:
                item = item.build()
            except Exception as exc:  # noqa: BLE001 - build() warns itself; this is a last guard
                warn_once("build", f"a record could not be built ({type(exc).__name__})")
                item = None
            if item is None:
                continue
        out.append(item)
    return out


def spooled_count(url: URL) -> int:
    try:
        with open(spool_path(url), "rb") as fh:
            return sum(1 for line in fh if line.strip())
    except FileNotFoundError:
        return 0


def dropped_count(url: URL) -> int:
    try:
        return int(_dropped_path(url).read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0


class _Spool:
    """Append-only JSON lines, shared by every process that writes to one database."""

    def __init__(self, url: URL):
        self.url = url
        self.path = spool_path(url)
        self.lock_path = self.path.with_suffix(".lock")

    def append(self, records: list[dict]) -> None:
        data = "".join(_encode(r) + "\n" for r in records).encode()
        with file_lock(self.lock_path), open(self.path, "ab") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())

    def has_records(self) -> bool:
        try:
            return self.path.stat().st_size > 0
        except FileNotFoundError:
            return False

    def replay(self, engine: Engine, write_lock: Path | None) -> int:
        """Insert every spooled record not stored yet, then empty the spool. Returns rows added."""
        with file_lock(self.lock_path):
            try:
                with open(self.path, encoding="utf-8") as fh:
                    lines = [line for line in fh if line.strip()]
            except FileNotFoundError:
                return 0
            records = []
            for line in lines:
                try:
                    records.append(_decode(line))
                except (ValueError, KeyError, TypeError):
                    warn_once("spool-corrupt", f"skipped an unreadable line in {self.path}")
            added = 0
            for i in range(0, len(records), BATCH_SIZE):
                with file_lock(write_lock, optional=True), engine.begin() as conn:
                    added += insert_records(conn, records[i : i + BATCH_SIZE])
            with open(self.path, "wb"):
                pass  # truncate only after every line is stored
            return added


# -- the writer ----------------------------------------------------------------------------------

class Writer:
    """One background writer for one database URL."""

    def __init__(self, url: str | URL | None = None, *, flush_interval: float = FLUSH_INTERVAL,
                 batch_size: int = BATCH_SIZE, max_pending: int = MAX_PENDING):
        self.url = resolve_url(url)
        self.flush_interval = flush_interval
        self.batch_size = batch_size
        self.max_pending = max_pending
        self._pending: deque[dict] = deque()
        self._inflight: list[dict] = []  # the batch being written: spooled too if exit comes first
        self._first_at = 0.0  # when the oldest queued record arrived
        self._flushing = 0  # callers waiting in flush()
        self._cond = threading.Condition()
        self._submitted = 0
        self._done = 0
        self._thread: threading.Thread | None = None
        self._closing = False
        self._engine: Engine | None = None
        self._schema_ready = False
        self._spool = _Spool(self.url)
        self._write_lock = write_lock_path(self.url)
        self._next_replay = 0.0
        self.written = 0
        self.spooled = 0
        self.dropped = 0
        self.last_error: str | None = None

    # caller side: cheap and never raising
    def submit(self, record: dict) -> None:
        try:
            with self._cond:
                if self._thread is None:
                    self._start()
                if len(self._pending) >= self.max_pending:
                    overflow = True
                else:
                    overflow = False
                    if not self._pending:
                        self._first_at = time.monotonic()  # the batch's deadline runs from here
                    self._pending.append(record)
                    self._submitted += 1
                    if len(self._pending) >= self.batch_size:
                        self._cond.notify_all()
            if overflow:
                self._to_spool([record], reason="the queue is full")
        except Exception as exc:  # noqa: BLE001 - a logging failure must never reach the caller
            self.dropped += 1
            warn_once("submit", f"could not queue a record: {exc!r}")

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every record submitted so far is written or spooled. False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            target = self._submitted
            self._flushing += 1  # the writer stops gathering and writes now
            try:
                self._cond.notify_all()
                while self._done < target:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._cond.wait(remaining if remaining is not None else 0.5)
            finally:
                self._flushing -= 1
        return True

    def close(self, timeout: float | None = 5.0) -> bool:
        ok = self.flush(timeout)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._engine is not None:
            self._engine.dispose()
        return ok

    @property
    def pending(self) -> int:
        return len(self._pending)

    def status(self) -> dict:
        return {
            "url": mask_url(self.url),
            "state": "degraded" if self.last_error else "ok",
            "pending": self.pending,
            "written": self.written,
            "spooled": self.spooled,
            "dropped": self.dropped,
            "last_error": self.last_error,
        }

    # writer thread
    def _start(self) -> None:
        _install_sigterm_flush()
        self._thread = threading.Thread(target=self._run, name="spendlog-writer", daemon=True)
        self._thread.start()

    def _gather(self) -> None:
        """Wait (holding ``_cond``) until a batch is due: full, ``flush_interval`` after its oldest
        record, or asked for by ``flush``/``close``. Writing each record as it comes would keep this
        thread busy with tiny transactions, competing with the app for the CPU and the GIL.
        With nothing queued, wait one interval and return (the caller then may replay the spool)."""
        while not self._closing and not self._flushing:
            n = len(self._pending)
            if n >= self.batch_size:
                return
            if not n:
                self._cond.wait(self.flush_interval)
                return
            left = self._first_at + self.flush_interval - time.monotonic()
            if left <= 0:
                return
            self._cond.wait(left)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._gather()
                n = min(len(self._pending), self.batch_size)
                batch = [self._pending.popleft() for _ in range(n)]
                if not batch and self._closing:
                    return
                self._inflight = batch
            if batch:
                self._write(_materialize(batch))
                with self._cond:
                    self._inflight = []
                    self._done += len(batch)
                    self._cond.notify_all()
            elif self._spool.has_records() and time.monotonic() >= self._next_replay:
                self._replay()

    def _engine_ready(self) -> Engine:
        if self._engine is None:
            self._engine = make_engine(self.url)
        if not self._schema_ready:
            ensure_schema(self._engine)
            self._schema_ready = True
        return self._engine

    def _write(self, batch: list[dict]) -> None:
        if self.last_error and time.monotonic() < self._next_replay:
            # The database failed moments ago: spool at once instead of waiting out another timeout.
            self._to_spool(batch, reason=self.last_error)
            return
        try:
            engine = self._engine_ready()
            with file_lock(self._write_lock, optional=True), engine.begin() as conn:
                insert_records(conn, batch)
            self.written += len(batch)
            self.last_error = None
        except Exception as exc:  # noqa: BLE001 - storage failures are warnings, never raised
            self.last_error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
            self._to_spool(batch, reason=self.last_error)
            self._next_replay = time.monotonic() + REPLAY_RETRY_SECONDS
            return
        if self._spool.has_records() and time.monotonic() >= self._next_replay:
            self._replay()

    def _replay(self) -> None:
        try:
            added = self._spool.replay(self._engine_ready(), self._write_lock)
            if added:
                log.info("spendlog: replayed %d spooled records into %s", added, mask_url(self.url))
            self.last_error = None
        except Exception as exc:  # noqa: BLE001
            self.last_error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
            self._next_replay = time.monotonic() + REPLAY_RETRY_SECONDS
            warn_once("replay", f"could not replay the spool {self._spool.path} yet ({self.last_error}); will retry")

    def _to_spool(self, records: list, *, reason: str) -> None:
        records = _materialize(records)
        try:
            self._spool.append(records)
            self.spooled += len(records)
            warn_once("spool", f"database {mask_url(self.url)} not writable ({reason}); records spooled to {self._spool.path}")
        except Exception as exc:  # noqa: BLE001
            self.dropped += len(records)
            warn_once("dropped", f"could not write or spool {len(records)} records ({exc!r}); counting them as dropped")
            try:
                path = _dropped_path(self.url)
                path.write_text(str(dropped_count(self.url) + len(records)))
            except Exception:  # noqa: BLE001 - best effort: the in-memory counter still has it
                pass


# -- process-wide registry -----------------------------------------------------------------------

_writers: dict[str, Writer] = {}
_registry_lock = threading.Lock()
_orphans: list[Writer] = []  # a forked child's inherited writers: kept, never used, never closed


_fast: dict = {}  # (argument, environment) -> writer: skips parsing and rendering URLs per call


def get_writer(url: str | URL | None = None) -> Writer:
    """The process's writer for ``url`` (default: the configured database)."""
    try:
        fast_key = (url, os.environ.get("SPENDLOG_DB_URL"), os.environ.get("SPENDLOG_DATA_DIR"))
        writer = _fast.get(fast_key)
    except TypeError:  # an unhashable URL: take the slow path
        fast_key = writer = None
    if writer is not None:
        return writer
    resolved = resolve_url(url)
    key = resolved.render_as_string(hide_password=False)
    with _registry_lock:
        writer = _writers.get(key)
        if writer is None:
            writer = _writers[key] = Writer(resolved)
        if fast_key is not None:  # also when another spelling of the URL made the writer first
            if len(_fast) >= 64:
                _fast.clear()
            _fast[fast_key] = writer
    return writer


def submit(record: dict, url: str | URL | None = None) -> None:
    try:
        get_writer(url).submit(record)
    except Exception as exc:  # noqa: BLE001 - e.g. a bad SPENDLOG_DB_URL: warn, never raise
        warn_once("submit-url", f"record not written: {exc}")


def flush(timeout: float | None = None) -> bool:
    """Drain every writer in this process. False if the timeout passed first."""
    deadline = None if timeout is None else time.monotonic() + timeout
    ok = True
    for writer in list(_writers.values()):
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        ok = writer.flush(remaining) and ok
    return ok


def _after_fork_in_child() -> None:
    global _registry_lock
    _orphans.extend(_writers.values())
    for w in _writers.values():
        if w._engine is not None:
            w._engine.dispose(close=False)  # SQLAlchemy's fork recipe: drop the pool, close nothing
    _writers.clear()
    _fast.clear()
    _registry_lock = threading.Lock()


def _flush_at_exit() -> None:
    timeout = float(os.environ.get("SPENDLOG_EXIT_TIMEOUT", "5"))
    if flush(timeout):
        return
    for w in list(_writers.values()):  # still queued or in flight after the wait: spool, never lose
        with w._cond:
            rest = list(w._inflight) + list(w._pending)  # a replay skips any that did get stored
            w._pending.clear()
        if rest:
            w._to_spool(rest, reason=f"still pending at exit after {timeout:.1f} s")


_sigterm_installed = False


def _install_sigterm_flush() -> None:
    """Flush on SIGTERM too, if SIGTERM has its default action and we are on the main thread."""
    global _sigterm_installed
    if _sigterm_installed or threading.current_thread() is not threading.main_thread():
        return
    _sigterm_installed = True
    try:
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _flush_then_die)
    except (ValueError, OSError):  # e.g. an embedded interpreter without signals
        pass


def _flush_then_die(signum, _frame) -> None:
    try:
        _flush_at_exit()
    finally:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)  # die exactly as without spendlog (status 143 / -SIGTERM)


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_flush_at_exit)
