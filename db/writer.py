"""The background writer: records in, rows out, nothing lost, the caller never slowed.

``submit(record)`` appends to an in-memory queue and returns (a lock and a deque append). A record
is a dict, or a deferred record: an object whose ``build()`` returns the dict (the same one on
every call, or None when it cannot be built), so that the capture's parsing runs on the writer's thread, not the caller's
(``spendlog.capture.CallCapture``). A daemon thread writes batches, one transaction per batch (``db.store.insert_records``), at least every
100 ms. If a batch cannot be written (database unreachable, locked past the busy timeout,
read-only, disk full, a lock not free within ``SPENDLOG_LOCK_TIMEOUT``) it goes to an append-only JSON-lines
spool file in the data dir (``db.spool``), and the spool is replayed, without duplicates, on the next successful
write and on start. If even the spool cannot be written, the records are counted as dropped, warned
about, and the count is kept on disk and shown by ``spendlog db status``.

One bad record never costs the others: a batch that fails because of a record (a value no column takes) is
written without it (``db.store.insert_isolating``) and the record quarantined alone in ``<spool>.rejected`` with
its reason, as are spool lines that cannot be read back. A ledger migrated by a newer spendlog is said so once;
records are spooled until spendlog is upgraded (the schema is looked at again every minute, not per batch).

Memory is bounded and ``submit`` never blocks: past ``max_pending`` queued records, records go to an
overflow queue (``max_overflow``) that a second thread spools; past that they are dropped and counted. The process's writers, one per database, and what becomes of them at
fork, exit and SIGTERM (flushed with a bounded wait, the rest spooled) are ``db.registry``'s job;
``get_writer`` and ``submit`` go through it. SQLite writers in every process queue for one ``flock``
(``db.engine.write_lock_path``) around each write (none starves), taken after pricing (``db.estimate.price_batch``).
"""

from __future__ import annotations

import threading
import time
from collections import deque

from sqlalchemy.engine import URL, Engine

from . import registry
from .engine import file_lock, lock_timeout, make_engine, mask_url, resolve_url, write_lock_path
from .errors import NewerSchemaError, describe
from .log import log, warn_once
from .migrate import ensure_schema
from .registry import flush
from .spool import DroppedCounter, QuarantineError, Spool, dropped_count, rejected_count, spool_path, spooled_count
from .estimate import price_batch
from .listeners import Listeners
from .store import insert_isolating, insert_records, is_record_error

__all__ = ["Writer", "get_writer", "submit", "flush", "spool_path", "dropped_count", "spooled_count",
           "rejected_count"]

FLUSH_INTERVAL = 0.1
BATCH_SIZE = 2000
MAX_PENDING = 100_000
REPLAY_RETRY_SECONDS = 2.0
NEWER_SCHEMA_RETRY_SECONDS = 60.0
SPOOL_LOCK_SECONDS = 1.0  # held for an append's instant: past this, records go to a file of their own
SPILL_LOCK_SECONDS = 0.2  # the overflow's thread drains faster than that


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


class Writer(Listeners):
    """One background writer for one database URL."""

    def __init__(self, url: str | URL | None = None, *, flush_interval: float = FLUSH_INTERVAL,
                 batch_size: int = BATCH_SIZE, max_pending: int = MAX_PENDING, max_overflow: int = MAX_PENDING):
        self.url = resolve_url(url)
        self.flush_interval = flush_interval
        self.batch_size = batch_size
        self.max_pending = max_pending
        self.max_overflow = max_overflow
        self._pending: deque[dict] = deque()
        self._overflow: deque[dict] = deque()  # past max_pending: spooled by the spiller thread
        self._inflight: list[dict] = []  # the batch being written: spooled too if exit comes first
        self._first_at = 0.0  # when the oldest queued record arrived
        self._flushing = 0  # callers waiting in flush()
        self._cond = threading.Condition()
        self._submitted = self._done = 0  # through the queue
        self._spill_in = self._spill_done = 0  # through the overflow
        self._thread: threading.Thread | None = None
        self._spiller: threading.Thread | None = None
        self._spill_wake = threading.Event()
        self._closing = False
        self._engine: Engine | None = None
        self._schema_ready = False
        self._spool = Spool(self.url, lambda: min(lock_timeout(), SPOOL_LOCK_SECONDS))
        self._write_lock = write_lock_path(self.url)
        self._db_retry_at = 0.0  # after a failure, batches are spooled at once until then
        self._next_replay = 0.0
        self._dropped_file = DroppedCounter(self.url)  # opened now: a process out of descriptors still counts
        self._unsaved_drops = 0
        self._drop_lock = threading.RLock()  # re-entrant: a SIGTERM flush may interrupt a save
        self.written = 0
        self.spooled = 0
        self.dropped = 0
        self.rejected = 0
        self.last_error: str | None = None

    # caller side: cheap, never blocking, never raising
    def submit(self, record: dict) -> None:
        try:
            with self._cond:
                if self._thread is None:
                    self._start()
                n = len(self._pending)
                if n < self.max_pending:
                    if not n:
                        self._first_at = time.monotonic()  # the batch's deadline runs from here
                    self._pending.append(record)
                    self._submitted += 1
                    if n + 1 >= self.batch_size:
                        self._cond.notify_all()
                    return
                if len(self._overflow) < self.max_overflow:
                    self._overflow.append(record)
                    self._spill_in += 1
                else:  # the last resort: counted, saved and warned about by the spiller
                    self.dropped += 1
                    self._unsaved_drops += 1
                if self._spiller is None:
                    self._spiller = threading.Thread(target=self._spill, name="spendlog-spiller", daemon=True)
                    self._spiller.start()
                self._spill_wake.set()
        except Exception as exc:  # noqa: BLE001 - a logging failure must never reach the caller
            self.dropped += 1
            warn_once("submit", f"could not queue a record: {exc!r}")

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every record submitted so far is written or spooled. False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            target, spill_target = self._submitted, self._spill_in
            self._flushing += 1  # the writer stops gathering and writes now
            try:
                self._cond.notify_all()
                while self._done < target or self._spill_done < spill_target:
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
        self._spill_wake.set()
        threads = [t for t in (self._thread, self._spiller) if isinstance(t, threading.Thread)]
        for thread in threads:
            thread.join(timeout)
        if self._engine is not None:
            self._engine.dispose()
        self._save_drops()
        if not any(t.is_alive() for t in threads):  # a thread still running may still count with it
            self._dropped_file.close()
        return ok

    @property
    def pending(self) -> int:
        return len(self._pending) + len(self._overflow)

    def status(self) -> dict:
        return {
            "url": mask_url(self.url),
            "state": "degraded" if self.last_error else "ok",
            "pending": self.pending,
            "written": self.written,
            "spooled": self.spooled,
            "rejected": self.rejected,
            "dropped": self.dropped,
            "last_error": self.last_error,
        }

    # for the registry: exit and fork
    def spool_unwritten(self, *, reason: str, timeout: float | None = None) -> None:
        """Spool every record still queued or in flight (a replay skips any that get stored after
        all) and save the dropped count: the last step at exit, after the bounded wait."""
        with self._cond:
            rest = list(self._inflight) + list(self._pending) + list(self._overflow)
            self._pending.clear()
            self._overflow.clear()
        if rest:
            self._to_spool(rest, reason=reason, timeout=timeout)
        self._save_drops()

    def forget_connections(self) -> None:
        """In a forked child: drop the inherited pool without closing the parent's connections
        (SQLAlchemy's fork recipe). The writer is not used again."""
        if self._engine is not None:
            self._engine.dispose(close=False)

    # writer thread
    def _start(self) -> None:
        registry.install_sigterm_flush()
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
            elif time.monotonic() >= self._next_replay and self._spool.has_records():
                self._replay()

    def _spill(self) -> None:
        """The overflow's thread: spools what ``submit`` could not queue, so the caller never waits."""
        while True:
            self._spill_wake.wait(1.0)
            self._spill_wake.clear()
            with self._cond:
                chunk = [self._overflow.popleft() for _ in range(min(len(self._overflow), self.batch_size))]
                closing = self._closing
            if chunk:
                self._to_spool(chunk, reason="the queue is full", timeout=SPILL_LOCK_SECONDS)
                with self._cond:
                    self._spill_done += len(chunk)
                    self._cond.notify_all()
                self._spill_wake.set()  # there may be more
            if self._unsaved_drops:
                warn_once("dropped-full", "the queue and its overflow are full; counting further records as dropped")
                self._save_drops()
            if closing and not chunk:
                return

    def _engine_ready(self) -> Engine:
        if self._engine is None:
            self._engine = make_engine(self.url, bounded=True)
        if not self._schema_ready:
            ensure_schema(self._engine, lock_timeout=lock_timeout())
            self._schema_ready = True
        return self._engine

    def _insert(self, records: list[dict]) -> tuple[int, list[tuple[dict, str]]]:
        """Store ``records`` in one transaction; returns (rows added, [(record, reason)] refused).
        Raises when the database (or its lock) is unavailable."""
        engine = self._engine_ready()
        records = price_batch(records)  # outside the lock: pricing is CPU, the lock is for writing
        refused: list[tuple[dict, str]] = []
        with file_lock(self._write_lock, optional=True, timeout=lock_timeout()):
            try:
                with engine.begin() as conn:
                    added = insert_records(conn, records)
            except Exception as exc:  # the record's fault: isolate it below; else raised
                if not is_record_error(exc):
                    raise
                with engine.begin() as conn:
                    added = insert_isolating(conn, records, refused, failed=True)
        self._tell_listeners(records)
        return added, refused

    def _write(self, batch: list[dict]) -> None:
        if self.last_error and time.monotonic() < self._db_retry_at:
            # The database failed moments ago: spool at once instead of waiting out another timeout.
            self._to_spool(batch, reason=self.last_error)
            return
        try:
            _, refused = self._insert(batch)
        except Exception as exc:  # noqa: BLE001 - storage failures are warnings, never raised
            self._db_failed(exc)
            self._to_spool(batch, reason=self.last_error)
            return
        self.written += len(batch) - len(refused)
        self.last_error = None
        self._quarantine(refused)
        self._save_drops()
        if time.monotonic() >= self._next_replay and self._spool.has_records():
            self._replay()  # before the batch counts as done: a flush() after an outage finds the ledger whole

    def _db_failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        if isinstance(exc, NewerSchemaError):
            self.last_error = str(exc)
            self._db_retry_at = now + NEWER_SCHEMA_RETRY_SECONDS
            warn_once("newer-schema", f"{exc}; until then records are spooled to {self._spool.path}")
        else:
            self.last_error = describe(exc)
            self._db_retry_at = now + REPLAY_RETRY_SECONDS
        self._next_replay = max(self._next_replay, self._db_retry_at)

    def _replay(self) -> None:
        try:
            added, quarantined = self._spool.replay(self._insert)
        except QuarantineError as exc:  # the database is fine: new records keep going to it
            self._next_replay = time.monotonic() + REPLAY_RETRY_SECONDS
            warn_once("quarantine", f"could not set bad spool lines aside ({exc}); will retry")
            return
        except Exception as exc:  # noqa: BLE001
            self._db_failed(exc)
            if not isinstance(exc, NewerSchemaError):
                warn_once("replay", f"could not replay the spool {self._spool.path} yet ({self.last_error}); will retry")
            return
        self.last_error = None
        self._next_replay = time.monotonic() + (0 if added else 1.0)  # nothing there: look again in a second
        if added:
            log.info("spendlog: replayed %d spooled records into %s", added, mask_url(self.url))
        if quarantined:
            self.rejected += quarantined
            warn_once("rejected", f"{quarantined} spooled records or lines could not be stored; "
                                  f"set aside in {self._spool.rejected_path}")

    def _quarantine(self, refused: list[tuple[dict, str]], *, spool_on_failure: bool = True) -> None:
        """Set records no column takes aside, with the reason (``<spool>.rejected``)."""
        if not refused:
            return
        try:
            self._spool.reject_records(refused)
        except Exception as exc:  # noqa: BLE001 - cannot set them aside: spool them, the replay tries again
            if spool_on_failure:
                self._to_spool([r for r, _ in refused], reason=f"could not be set aside ({describe(exc)})")
            else:
                self._drop(len(refused), exc)
            return
        self.rejected += len(refused)
        warn_once("rejected", f"{len(refused)} records could not be stored ({refused[0][1][:120]}); "
                              f"set aside in {self._spool.rejected_path}")

    def _to_spool(self, records: list, *, reason: str, timeout: float | None = None) -> None:
        records = _materialize(records)
        kept, unencodable, error = self._spool.append_records(records, timeout=timeout)
        self._quarantine(unencodable, spool_on_failure=False)
        self.spooled += kept
        if kept and "newer spendlog" not in reason:  # that one was said already, in its own words
            warn_once("spool", f"database {mask_url(self.url)} not writable ({reason}); records spooled to {self._spool.path}")
        if error is not None:
            self._drop(len(records) - len(unencodable) - kept, error)

    def _drop(self, n: int, error: BaseException) -> None:
        if not n:
            return
        with self._cond:
            self.dropped += n
            self._unsaved_drops += n
        warn_once("dropped", f"could not write or spool {n} records ({error!r}); counting them as dropped")
        self._save_drops()

    def _save_drops(self) -> None:
        """Add the drops not on disk yet to ``dropped-<key>.count``; kept for the next try on failure."""
        with self._drop_lock:
            with self._cond:
                n, self._unsaved_drops = self._unsaved_drops, 0
            if not n:
                return
            try:
                self._dropped_file.add(n, SPOOL_LOCK_SECONDS)
            except Exception:  # noqa: BLE001 - kept in memory: retried after the next write
                with self._cond:
                    self._unsaved_drops += n


def get_writer(url: str | URL | None = None) -> Writer:
    """The process's writer for ``url`` (default: the configured database)."""
    return registry.lookup(url, Writer)


def submit(record: dict, url: str | URL | None = None) -> None:
    try:
        get_writer(url).submit(record)
    except Exception as exc:  # noqa: BLE001 - e.g. a bad SPENDLOG_DB_URL: warn, never raise
        warn_once("submit-url", f"record not written: {exc}")
