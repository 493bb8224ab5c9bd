"""Listeners of the background writer: what sees each batch of records once it is committed.

``Writer.add_listener(fn)``: ``fn(records)`` is called on the writer's thread with each committed
batch, priced (``cost_usd`` and ``cost_source`` set), after the write transaction. The hard-limit
guard (``spendlog.budget_guard``) keeps its in-memory spend with it. A listener must be quick; one
that raises is warned about once and ignored: it never costs a record.
"""

from __future__ import annotations

from collections.abc import Callable

from .log import warn_once

__all__ = ["Listeners"]


class Listeners:
    _listeners: tuple[Callable[[list[dict]], None], ...] = ()

    def add_listener(self, listener: Callable[[list[dict]], None]) -> None:
        """Call ``listener(records)`` with each committed batch (once per listener)."""
        self._listeners = (*[f for f in self._listeners if f != listener], listener)

    def remove_listener(self, listener: Callable[[list[dict]], None]) -> None:
        self._listeners = tuple(f for f in self._listeners if f != listener)

    def _tell_listeners(self, records: list[dict]) -> None:
        for listener in self._listeners:
            try:
                listener(records)
            except Exception as exc:  # noqa: BLE001 - a listener never costs a record
                warn_once("writer-listener", f"a record listener failed ({type(exc).__name__})")
