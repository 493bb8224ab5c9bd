"""The one logger of spendlog (``logging.getLogger("spendlog")``) and ``warn_once``, shared by
capture (``spendlog/``) and storage (``db/``): a kind of failure is warned about once per process."""

from __future__ import annotations

import logging
import threading

__all__ = ["log", "warn_once", "reset_for_tests"]

log = logging.getLogger("spendlog")

_warned: set[str] = set()
_warned_lock = threading.Lock()


def warn_once(kind: str, message: str) -> None:
    """Log a warning the first time a kind of failure happens in this process."""
    with _warned_lock:
        if kind in _warned:
            return
        _warned.add(kind)
    log.warning("spendlog: %s", message)


def reset_for_tests() -> None:
    """Forget which kinds were warned about, so that each test sees its own first warnings."""
    with _warned_lock:
        _warned.clear()
