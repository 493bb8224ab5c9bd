"""The process's writers, one per database, and what happens to them at fork, exit and SIGTERM.

``lookup(url, factory)`` gives the process's writer for a database (made by ``factory`` the first
time), whatever the spelling of its URL; ``db.writer.get_writer`` is the usual way in. After
``os.fork()`` the child starts with no writers and never touches the parent's connections (the
inherited ones are kept, unused and unclosed). At interpreter exit every writer is flushed with a
bounded wait (``SPENDLOG_EXIT_TIMEOUT``, 5 s), and what is still queued or in flight after it is
spooled (``Writer.spool_unwritten``). SIGTERM normally kills Python without running ``atexit``:
``install_sigterm_flush`` (called when a writer's thread starts) installs a handler that flushes
the same way and then dies by SIGTERM as before, on the main thread and only while SIGTERM has its
default action; an application's own SIGTERM handler is never replaced.

A writer here is anything with the public methods of ``db.writer.Writer`` used below: ``flush``,
``close``, ``spool_unwritten``, ``forget_connections``. This module never imports the writer.
"""

from __future__ import annotations

import atexit
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import URL

from .engine import resolve_url

__all__ = ["lookup", "writers", "flush", "flush_at_exit", "install_sigterm_flush", "reset_for_tests"]

EXIT_SPOOL_LOCK_SECONDS = 0.5

_writers: dict[str, Any] = {}
_registry_lock = threading.Lock()
_orphans: list = []  # a forked child's inherited writers: kept, never used, never closed
_fast: dict = {}  # (argument, environment) -> writer: skips parsing and rendering URLs per call


def lookup(url: str | URL | None, factory: Callable[[URL], Any]):
    """The process's writer for ``url`` (default: the configured database), made by ``factory``
    (given the resolved URL) the first time."""
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
            writer = _writers[key] = factory(resolved)
        if fast_key is not None:  # also when another spelling of the URL made the writer first
            if len(_fast) >= 64:
                _fast.clear()
            _fast[fast_key] = writer
    return writer


def writers() -> list:
    """This process's writers, in the order they were made."""
    return list(_writers.values())


def flush(timeout: float | None = None) -> bool:
    """Drain every writer in this process. False if the timeout passed first."""
    deadline = None if timeout is None else time.monotonic() + timeout
    ok = True
    for writer in writers():
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        ok = writer.flush(remaining) and ok
    return ok


def flush_at_exit() -> None:
    """Flush every writer within ``SPENDLOG_EXIT_TIMEOUT`` seconds; spool what is left after it."""
    timeout = float(os.environ.get("SPENDLOG_EXIT_TIMEOUT", "5"))
    if flush(timeout):
        return
    for w in writers():  # still queued or in flight after the wait: spool, never lose
        w.spool_unwritten(reason=f"still pending at exit after {timeout:.1f} s", timeout=EXIT_SPOOL_LOCK_SECONDS)


def reset_for_tests(contains: str | None = None, timeout: float = 5) -> None:
    """Close and forget the writers whose URL contains ``contains`` (all of them when None)."""
    with _registry_lock:
        keys = [k for k in _writers if contains is None or contains in k]
        gone = [_writers.pop(k) for k in keys]
        _fast.clear()
    for w in gone:
        w.close(timeout=timeout)


def _after_fork_in_child() -> None:
    global _registry_lock
    _orphans.extend(_writers.values())
    for w in _writers.values():
        w.forget_connections()
    _writers.clear()
    _fast.clear()
    _registry_lock = threading.Lock()


_sigterm_installed = False


def install_sigterm_flush() -> None:
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
        flush_at_exit()
    finally:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)  # die exactly as without spendlog (status 143 / -SIGTERM)


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(flush_at_exit)
