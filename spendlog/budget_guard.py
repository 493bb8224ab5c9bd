"""Hard budgets at the door: the in-memory check the proxy and the enforcing hook make before
forwarding a call.

``BudgetGuard.check(capture)`` costs no query: it looks at the hard budgets already known to be
spent (none, usually: then it is one attribute read) and asks whether the call is in one's scope
(``db.budget_limits.scope_matcher``, the ``db.filters`` rule; the model is the requested one). A
call in an exhausted scope is answered with HTTP 402 (``refusal_body``), never sent upstream, and
recorded as an attempt with ``error_type = 'budget_exceeded'`` and no cost.

What the guard knows:

- every ``refresh_every`` seconds (5 by default) its thread reads each hard budget's period and
  spend from the ledger (``db.budget_limits.HardBudgetReader``), so calls made by other processes
  and hosts count within one interval;
- between reads, this process's own calls count as soon as the writer has committed and priced
  them (``db.writer.Writer.add_listener``): a few tens of milliseconds after each answer ends.
  Own calls committed after a read began are kept on top of it, so a call is never forgotten;
  one committed just before the read's snapshot may count twice until the next read (a refusal
  a few seconds early, never a late one);
- a period that ends is over at once: its budget stops refusing at the reset instant.

**Overshoot bound.** A call is refused only once the known spend has reached the line, and a
call's cost is known only once it has ended. So the spend can pass the line by the cost of the
calls already admitted when it got there: the calls in flight in this process (32 concurrent calls
against a nearly spent budget: at most those 32 go through, the next ones are refused) plus what
other processes spend within one refresh interval.

The ledger unreachable (or older than the budget tables): the guard keeps what it knew and
refuses nothing new; it never breaks a call because storage failed.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal

from spendlog.db import writer
from spendlog.db.budget_limits import HardBudget, HardBudgetReader, scope_matcher
from spendlog.db.engine import resolve_url
from spendlog.db.log import warn_once

__all__ = ["BudgetGuard", "Refusal", "guard_for", "refusal_body", "REFRESH_SECONDS", "ERROR_TYPE"]

REFRESH_SECONDS = 5.0
ERROR_TYPE = "budget_exceeded"
_UTC = timezone.utc


@dataclass(frozen=True)
class Refusal:
    """Why a call was refused: the budget and when it resets."""

    budget: str
    period: str
    resets_at: datetime

    @property
    def message(self) -> str:
        return (f"spendlog: the hard budget {self.budget!r} is spent for this {self.period}; "
                f"calls in its scope are refused until {self.resets_at.isoformat()}")


def refusal_body(refusal: Refusal) -> bytes:
    """The OpenAI-style 402 body: ``{"error": {"message", "type": "budget_exceeded", "code", "budget",
    "resets_at"}}``."""
    return json.dumps({"error": {"message": refusal.message, "type": ERROR_TYPE, "code": ERROR_TYPE,
                                 "budget": refusal.budget, "resets_at": refusal.resets_at.isoformat()}}).encode()


class _State:
    """One hard budget: the ledger's spend at the last read plus this process's calls since."""

    __slots__ = ("hard", "matches", "start_ts", "end_ts", "deltas", "needs_model")

    def __init__(self, hard: HardBudget):
        self.hard = hard
        self.matches = scope_matcher(hard.budget.scope)
        self.start_ts, self.end_ts = hard.period_start.timestamp(), hard.period_end.timestamp()
        self.deltas: dict[int, Decimal] = {}  # refresh generation -> own spend observed in it
        scope = hard.budget.scope
        self.needs_model = bool(scope.get("models") or scope.get("providers"))

    @property
    def key(self) -> tuple:
        return self.hard.budget.id, self.hard.period_start

    @property
    def spent(self) -> Decimal:
        return self.hard.spent + sum(self.deltas.values(), Decimal(0))

    @property
    def exhausted(self) -> bool:
        return self.spent >= self.hard.budget.amount_usd


class BudgetGuard:
    """The in-memory hard-limit check of one process for one ledger (see the module docstring)."""

    def __init__(self, db_url: str | None = None, *, refresh_every: float = REFRESH_SECONDS):
        self.db_url = db_url
        self.refresh_every = refresh_every
        self._reader = HardBudgetReader(db_url)
        self._lock = threading.Lock()
        self._states: tuple[_State, ...] = ()
        self._exhausted: tuple[_State, ...] = ()
        self._need_model = False
        self._generation = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.refreshes = 0

    def start(self) -> BudgetGuard:
        """Read the ledger once now, then every ``refresh_every`` seconds on a daemon thread; watch
        this process's records from now on."""
        writer.get_writer(self.db_url).add_listener(self.observe)
        self.refresh()
        self._thread = threading.Thread(target=self._run, name="spendlog-budget-guard", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        try:
            writer.get_writer(self.db_url).remove_listener(self.observe)
        except Exception:  # noqa: BLE001 - stopping never fails
            pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(2)
        self._reader.close()

    def _run(self) -> None:
        while not self._stop.wait(self.refresh_every):
            self.refresh()

    # -- the request path ---------------------------------------------------------------------

    def check(self, capture) -> Refusal | None:
        """The refusal for this call (a ``CallCapture``), or None to let it through."""
        exhausted = self._exhausted
        if not exhausted:
            return None
        now = datetime.now(_UTC).timestamp()
        attrs = None
        for state in exhausted:
            if now >= state.end_ts:
                continue  # its period is over: it resets now, the next read sees the new one
            if attrs is None:
                attrs = capture.budget_attributes(self._need_model)
            if state.matches(*attrs):
                budget = state.hard.budget
                return Refusal(budget.name, budget.period, state.hard.period_end)
        return None

    def refused(self, capture) -> bytes | None:
        """``check``, and for a refused call: the attempt recorded (402, ``budget_exceeded``, no
        cost) and the 402's body (``refusal_body``); None to let the call through."""
        refusal = self.check(capture)
        if refusal is None:
            return None
        capture.refuse(402, ERROR_TYPE, refusal.message)
        return refusal_body(refusal)

    # -- keeping count ------------------------------------------------------------------------

    def observe(self, records: list[dict]) -> None:
        """The writer's listener: add this process's committed, priced calls to their budgets."""
        if not self._states:
            return
        changed = False
        with self._lock:
            states, generation = self._states, self._generation
            for record in records:
                cost = record.get("cost_usd")
                created = record.get("created_at")
                if not cost or created is None:
                    continue
                ts = created.timestamp()  # once per record; the states compare floats
                get = record.get
                attrs = None
                for state in states:
                    if not state.start_ts <= ts < state.end_ts:
                        continue
                    if attrs is None:
                        attrs = (get("model"), get("provider"), get("app"), get("user"), get("api_key_hint"),
                                 get("tags"))
                    if state.matches(*attrs):
                        state.deltas[generation] = state.deltas.get(generation, Decimal(0)) + cost
                        changed = True
            if changed:
                self._publish(states)

    def refresh(self) -> None:
        """Read every hard budget from the ledger (the guard's thread calls this)."""
        with self._lock:
            self._generation += 1
            generation = self._generation  # own calls observed from now on are kept on top of the read
        try:
            hard = self._reader.read(datetime.now(_UTC))
        except Exception as exc:  # noqa: BLE001 - storage trouble never breaks a call
            warn_once("budget-guard", f"hard budgets not refreshed from the ledger ({type(exc).__name__}); "
                                      "keeping what was known")
            return
        with self._lock:
            old = {s.key: s for s in self._states}
            states = []
            for h in hard:
                state = _State(h)
                before = old.get(state.key)
                if before is not None:
                    state.deltas = {g: v for g, v in before.deltas.items() if g >= generation}
                states.append(state)
            self._states = tuple(states)
            self._publish(self._states)
            self.refreshes += 1

    def _publish(self, states) -> None:
        exhausted = tuple(s for s in states if s.exhausted)
        self._need_model = any(s.needs_model for s in exhausted)
        self._exhausted = exhausted

    def spent(self, name: str) -> Decimal | None:
        """What the guard holds as spent for the budget ``name`` (tests, the bench)."""
        for state in self._states:
            if state.hard.budget.name == name:
                return state.spent
        return None


_guards: dict[str, BudgetGuard] = {}
_guards_lock = threading.Lock()


def guard_for(db_url: str | None = None, *, refresh_every: float = REFRESH_SECONDS) -> BudgetGuard:
    """The process's started guard for a ledger (one per URL; made on first use)."""
    key = resolve_url(db_url).render_as_string(hide_password=False)
    guard = _guards.get(key)
    if guard is None:
        with _guards_lock:
            guard = _guards.get(key)
            if guard is None:
                guard = _guards[key] = BudgetGuard(db_url, refresh_every=refresh_every).start()
    return guard


def _forget_after_fork() -> None:  # a child has none of the parent's threads
    global _guards_lock
    _guards.clear()
    _guards_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)
