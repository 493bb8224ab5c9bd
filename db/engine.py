"""Database URLs and engines: where the ledger lives and how to open it.

``SPENDLOG_DB_URL`` (any SQLAlchemy URL) chooses the database; without it the ledger is the SQLite
file ``spendlog.db`` in platformdirs' user data dir for "spendlog" (``SPENDLOG_DATA_DIR`` moves that
dir), so the hook, the proxy, the dashboard and the export all find the same file.

SQLite engines run in WAL mode with a 10 s busy timeout; writer engines open every transaction
with ``BEGIN IMMEDIATE`` so that many processes share one file without "database is locked".
Read-only engines open SQLite with ``mode=ro`` and PostgreSQL sessions as read-only transactions.
Every reader (the CLI, the dashboard, its downloads) connects through ``read_connection``: it says
``NoLedgerError`` when there is nothing to read yet (no SQLite file, no spendlog tables), and any
database failure becomes one ``DatabaseUnavailableError`` line naming the URL with its password
masked (``read_error``).

Every wait is bounded. ``SPENDLOG_LOCK_TIMEOUT`` (seconds, default 60) is the longest the writer
waits for ``<db>.write.lock`` or a migration's lock (``flock_within``) and, on PostgreSQL, for a
lock in the database: the background writer's engine (``make_engine(bounded=True)``) sets
``lock_timeout`` to it and ``statement_timeout`` to 120 s on its connections. A wait that runs out
is the database being unavailable for now: the writer spools and retries later. (The exit does
not wait for any of these: see ``db.writer``.)
"""

from __future__ import annotations

import fcntl
import hashlib
import math
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import platformdirs
from sqlalchemy import create_engine, event, inspect
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from .errors import DatabaseUnavailableError, DatabaseURLError, first_line

__all__ = [
    "data_dir",
    "default_db_url",
    "resolve_url",
    "mask_url",
    "make_engine",
    "read_connection",
    "read_error",
    "NoLedgerError",
    "LEDGER_TABLE",
    "url_key",
    "sqlite_path",
    "check_sqlite_path",
    "file_lock",
    "flock_within",
    "lock_timeout",
    "LockTimeout",
    "write_lock_path",
]

SQLITE_BUSY_TIMEOUT_MS = 10_000
LOCK_TIMEOUT_SECONDS = 60.0  # eight writers on two busy cores can queue ten seconds and more
PG_STATEMENT_TIMEOUT_MS = 120_000


LEDGER_TABLE = "completions"  # the schema a reader needs (``models.Completion``; checked by name here)


class NoLedgerError(DatabaseUnavailableError):
    """Nothing to read yet at the URL: no SQLite file (``path`` names it), or a database without
    spendlog's tables (``path`` is None). A new ledger looks like this until its first write."""

    def __init__(self, message: str, path: Path | None = None):
        super().__init__(message)
        self.path = path


class LockTimeout(TimeoutError):
    """A lock was not free within the wait allowed (another process holds it, perhaps frozen)."""


def lock_timeout() -> float:
    """``SPENDLOG_LOCK_TIMEOUT`` in seconds (default 60): how long the writer waits for a lock."""
    try:
        value = float(os.environ.get("SPENDLOG_LOCK_TIMEOUT") or LOCK_TIMEOUT_SECONDS)
    except ValueError:
        return LOCK_TIMEOUT_SECONDS
    return value if value > 0 and math.isfinite(value) else LOCK_TIMEOUT_SECONDS


_helpers_lock = threading.Lock()
_abandoned_waits = 0  # helper threads still blocked for a caller that gave up (a frozen holder)
_MAX_ABANDONED = 4


def flock_within(fd: int, timeout: float | None) -> None:
    """An exclusive ``flock`` on ``fd``, waiting at most ``timeout`` seconds (None: no bound),
    else ``LockTimeout``.

    A blocking ``flock`` cannot be given up, and polling loses the kernel's queue (under eight
    writers the longest wait grew tenfold). So the blocking call runs on a helper thread, on a
    duplicate of ``fd`` (the same open file, so the lock is the caller's), and the caller waits
    for it with the timeout. A helper whose caller gave up releases the lock as soon as it gets it.
    While helpers are still blocked for callers that gave up (a frozen holder), callers poll."""
    global _abandoned_waits
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if timeout is None else fcntl.LOCK_NB))
        return
    except BlockingIOError:
        if timeout <= 0:
            raise LockTimeout("a lock was not free") from None
    if _abandoned_waits >= _MAX_ABANDONED:
        return _poll(fd, timeout)
    state = {"done": False, "abandoned": False, "error": None}
    cond = threading.Condition()
    dup = os.dup(fd)

    def wait() -> None:
        global _abandoned_waits
        try:
            fcntl.flock(dup, fcntl.LOCK_EX)
        except OSError as exc:
            state["error"] = exc
        with cond:
            state["done"] = True
            abandoned = state["abandoned"]
            cond.notify_all()
        if abandoned:
            if state["error"] is None:
                fcntl.flock(dup, fcntl.LOCK_UN)
            with _helpers_lock:
                _abandoned_waits -= 1
        os.close(dup)

    threading.Thread(target=wait, name="spendlog-flock", daemon=True).start()
    with cond:
        if not cond.wait_for(lambda: state["done"], timeout):
            state["abandoned"] = True
            with _helpers_lock:
                _abandoned_waits += 1
            raise LockTimeout(f"a lock was not free within {timeout:g} s")
    if state["error"] is not None:
        raise state["error"]


def _poll(fd: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pause = 0.001
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LockTimeout(f"a lock was not free within {timeout:g} s") from None
            time.sleep(min(pause, left))
            pause = min(pause * 2, 0.01)


def data_dir() -> Path:
    """The folder for the default ledger and the spool (created on demand)."""
    path = Path(os.environ.get("SPENDLOG_DATA_DIR") or platformdirs.user_data_dir("spendlog"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_db_url() -> str:
    return os.environ.get("SPENDLOG_DB_URL") or f"sqlite:///{data_dir() / 'spendlog.db'}"


def resolve_url(url: str | URL | None = None) -> URL:
    """Parse ``url`` (or the configured default) into a SQLAlchemy URL, with a clear error."""
    raw = url if url is not None else default_db_url()
    try:
        parsed = make_url(raw) if not isinstance(raw, URL) else raw
    except ArgumentError as exc:
        raise DatabaseURLError(f"not a database URL: {mask_url(str(raw))!r}") from exc
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise DatabaseURLError(
            f"unsupported database {parsed.get_backend_name()!r} in {mask_url(parsed)}: use sqlite:/// or postgresql+psycopg://"
        )
    return parsed


def mask_url(url: str | URL) -> str:
    """The URL as text with any password replaced by ``***``."""
    if isinstance(url, str):
        try:
            url = make_url(url)
        except ArgumentError:
            return "<unparseable URL>"
    return url.render_as_string(hide_password=True)


def url_key(url: URL) -> str:
    """A short stable name for a database, used to name its spool file."""
    return hashlib.sha256(url.render_as_string(hide_password=True).encode()).hexdigest()[:12]


def sqlite_path(url: URL) -> Path | None:
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


def check_sqlite_path(path: Path, url: URL) -> None:
    """A clear error if ``path`` can never be a SQLite file: a folder, or under a regular file."""
    if path.is_dir():
        raise DatabaseUnavailableError(f"cannot open {mask_url(url)}: {path} is a folder, not a file")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise DatabaseUnavailableError(f"cannot open {mask_url(url)}: {parent} is a file, not a folder")
            return


@contextmanager
def file_lock(path: Path | None, *, optional: bool = False, timeout: float | None = None) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` for the block (``None``: no lock). The kernel
    releases it if the holder dies. ``timeout``: wait at most that long, else ``LockTimeout``
    (raised even when ``optional``). ``optional``: carry on without the lock when the file cannot
    be opened or locked; otherwise that error is raised. No state is kept, so threads may share
    a path."""
    fh = None
    if path is not None:
        try:
            fh = open(path, "a+b")
            flock_within(fh.fileno(), timeout)
        except OSError as exc:
            if fh is not None:
                fh.close()
                fh = None
            if not optional or isinstance(exc, LockTimeout):
                raise
    try:
        yield
    finally:
        if fh is not None:
            try:
                fcntl.flock(fh, fcntl.LOCK_UN)  # explicit: a forked child may hold a copy of the descriptor
            finally:
                fh.close()


def write_lock_path(url: URL) -> Path | None:
    """``<db>.write.lock``: SQLite writers in every process take it (``file_lock(..., optional=True)``)
    around each write transaction. SQLite's busy handler polls with growing sleeps, so under many
    writers some lose every race for the whole busy timeout ("database is locked"); ``flock``
    queues them in the kernel instead. None for other databases and in-memory SQLite."""
    path = sqlite_path(url)
    return None if path is None else Path(f"{path}.write.lock")


def make_engine(url: str | URL | None = None, *, readonly: bool = False, pool: bool = True,
                bounded: bool = False) -> Engine:
    """An engine for ``url`` with spendlog's settings (see module docstring). ``bounded``: the
    background writer's, whose PostgreSQL connections give up waiting on locks and statements."""
    parsed = resolve_url(url)
    kwargs: dict = {}
    if not pool:
        kwargs["poolclass"] = NullPool
    if parsed.get_backend_name() == "sqlite":
        path = sqlite_path(parsed)
        if path is not None:
            check_sqlite_path(path, parsed)
        if readonly and path is not None:
            connect_url = parsed.set(database=f"file:{path}?mode=ro", query={"uri": "true"})
        else:
            if path is not None:
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise DatabaseUnavailableError(f"cannot create the folder for {mask_url(parsed)}: {exc.strerror}") from exc
            connect_url = parsed
        engine = create_engine(
            connect_url,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
            **kwargs,
        )
        _configure_sqlite(engine, readonly=readonly)
        return engine
    connect_args: dict = {"connect_timeout": 5}
    extra = []
    if readonly:
        extra.append("-c default_transaction_read_only=on")
    if bounded:
        extra.append(f"-c lock_timeout={int(lock_timeout() * 1000)} -c statement_timeout={PG_STATEMENT_TIMEOUT_MS}")
    if extra:  # keep the URL's own options (e.g. -csearch_path=...) and add ours to them
        own = parsed.query.get("options", "")
        own = own[-1] if isinstance(own, tuple) else own
        connect_args["options"] = " ".join([own, *extra]).strip()
    return create_engine(parsed, connect_args=connect_args, pool_pre_ping=True, **kwargs)


def _configure_sqlite(engine: Engine, *, readonly: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (pysqlite's own BEGIN is deferred)
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        if not readonly:
            cur.execute("PRAGMA journal_mode = WAL")
            cur.execute("PRAGMA synchronous = NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


@contextmanager
def read_connection(url: str | URL | None = None, *, engine: Engine | None = None,
                    check_schema: bool = True) -> Iterator[Connection]:
    """A read-only connection to the ledger at ``url`` (the configured default when None).

    ``engine``: a read-only engine to borrow a pooled connection from (the dashboard's cached one);
    without it a one-off engine is made and disposed. ``check_schema``: first make sure there is a
    ledger to read, else ``NoLedgerError``. A database failure, connecting or inside the block,
    becomes ``DatabaseUnavailableError`` (``read_error``); a bad URL is ``DatabaseURLError``."""
    parsed = resolve_url(url)
    path = sqlite_path(parsed)
    if check_schema and path is not None and not path.exists():
        raise NoLedgerError(f"no spendlog database at {path}", path)
    own = engine is None
    try:
        if own:
            engine = make_engine(parsed, readonly=True, pool=False)
        with engine.connect() as conn:
            if check_schema and not inspect(conn).has_table(LEDGER_TABLE):
                raise NoLedgerError(f"{mask_url(parsed)} has no spendlog tables")
            yield conn
    except SQLAlchemyError as exc:
        raise read_error(parsed, exc) from exc
    finally:
        if own and engine is not None:
            engine.dispose()


def read_error(url: str | URL, exc: BaseException) -> DatabaseUnavailableError:
    """``cannot read <URL, password masked>: <the error's first line, password masked>``."""
    try:
        password = (url if isinstance(url, URL) else make_url(url)).password
    except ArgumentError:  # an unparseable URL has no password to hide
        password = None
    first = first_line(exc)
    if password:
        first = first.replace(str(password), "***")
    return DatabaseUnavailableError(f"cannot read {mask_url(url)}: {first}")
