"""Alerts that fire once: the claim row, the delivery state, the retries.

Each alert of a budget's period has a key: ``threshold:80`` (spend reached 80% of the line) or
``forecast`` (the period's forecast passed the line). ``claim`` INSERTs its row; the unique key
``(budget_id, period_start, alert_key)`` lets exactly one of any number of racing ``budget check``
processes, on any number of hosts, have it. The row holds the JSON body, fixed at the claim, so
every attempt sends the same bytes with the same ``alert_id``.

Delivery: ``take_due`` leases the alerts to send now (``pending``; ``failed`` whose
``next_attempt_at`` has come; ``sending`` whose lease ran out, a checker that died mid-send) with a
conditional UPDATE, so two checkers never send one alert at once. ``finish_attempt`` records the
result: ``delivered`` once every target took it (it is never sent again), else ``failed`` with the
next attempt ``backoff(attempts)`` later (30 s, 60 s, 120 s ... at most 1 h) and the error masked by
the caller. The targets that took it are kept (``delivered_to``), so a retry goes only to the rest.
A checker that dies after a receiver answered but before it wrote ``delivered`` makes the alert
go again after the lease: at least once, never lost; ``alert_id`` lets the receiver see it twice.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from .models import Alert, Budget

__all__ = ["AlertRow", "alert_uuid", "claim", "take_due", "finish_attempt", "list_alerts", "backoff",
           "LEASE", "STATES"]

LEASE = timedelta(seconds=60)  # longer than one delivery (5 s per target, a few targets)
STATES = ("pending", "sending", "delivered", "failed", "no_target")
_NAMESPACE = uuid.UUID("5b3c5e4e-7d0a-4a53-9e1f-2f2a4e6c1b16")


@dataclass(frozen=True)
class AlertRow:
    id: int
    alert_id: str
    budget_id: int
    budget: str
    alert_key: str
    event: str
    period_start: datetime
    period_end: datetime
    created_at: datetime
    payload: str
    state: str
    attempts: int
    next_attempt_at: datetime | None
    delivered_to: tuple[int, ...]
    delivered_at: datetime | None
    last_error: str | None


def backoff(attempts: int, base: float = 30.0) -> timedelta:
    """How long after the ``attempts``-th failed attempt the next one may go."""
    return timedelta(seconds=min(base * 2 ** max(attempts - 1, 0), 3600.0))


def alert_uuid(budget_id: int, budget_created: datetime, period_start: datetime, key: str) -> str:
    """The stable id of one alert (the same on every host and every retry)."""
    return str(uuid.uuid5(_NAMESPACE, f"{budget_id}|{budget_created.isoformat()}|{period_start.isoformat()}|{key}"))


def claim(engine: Engine, *, alert_id: str, budget_id: int, period_start: datetime, period_end: datetime,
          key: str, event: str, payload: str, now: datetime, has_targets: bool) -> bool:
    """INSERT the alert's row in a transaction of its own: True for the one caller that made it,
    False when another already had (the unique key)."""
    values = {"alert_id": alert_id, "budget_id": budget_id, "period_start": period_start,
              "period_end": period_end, "alert_key": key, "event": event, "created_at": now,
              "payload": payload, "state": "pending" if has_targets else "no_target", "attempts": 0,
              "next_attempt_at": now if has_targets else None, "delivered_to": []}
    try:
        with engine.begin() as conn:
            conn.execute(insert(Alert).values(**values))
    except IntegrityError:
        return False
    return True


def _due(now: datetime):
    return or_(
        and_(Alert.state.in_(("pending", "failed")), Alert.next_attempt_at <= now),
        and_(Alert.state == "sending", Alert.lease_until < now),
    )


def take_due(engine: Engine, now: datetime, *, lease: timedelta = LEASE) -> list[AlertRow]:
    """The alerts to send now, each leased to this caller (``sending`` until ``now + lease``)."""
    with engine.connect() as conn:
        ids = list(conn.scalars(select(Alert.id).where(_due(now)).order_by(Alert.id)))
    taken = []
    for pk in ids:
        with engine.begin() as conn:
            done = conn.execute(update(Alert).where(Alert.id == pk, _due(now))
                                .values(state="sending", lease_until=now + lease))
        if done.rowcount == 1:
            taken.append(pk)
    if not taken:
        return []
    with engine.connect() as conn:
        return _rows(conn, Alert.id.in_(taken))


def finish_attempt(engine: Engine, pk: int, *, delivered_to: list[int], complete: bool, error: str | None,
                   now: datetime, backoff_base: float = 30.0) -> None:
    """Record one attempt: ``complete`` (every target took it) -> ``delivered``; else ``failed``,
    retried after ``backoff``. ``error`` must already be masked."""
    with engine.begin() as conn:
        attempts = conn.scalar(select(Alert.attempts).where(Alert.id == pk)) or 0
        attempts += 1
        values = {"attempts": attempts, "delivered_to": sorted(set(delivered_to)), "lease_until": None,
                  "last_error": (error or None) and error[:500]}
        if complete:
            values.update(state="delivered", delivered_at=now, next_attempt_at=None)
        else:
            values.update(state="failed", next_attempt_at=now + backoff(attempts, backoff_base))
        conn.execute(update(Alert).where(Alert.id == pk).values(**values))


def _rows(conn: Connection, *where, limit: int | None = None) -> list[AlertRow]:
    stmt = (select(Alert.__table__, Budget.name.label("budget_name")).join(Budget, Budget.id == Alert.budget_id)
            .where(*where)
            .order_by(Alert.created_at.desc(), Alert.id.desc()))
    if limit is not None:
        stmt = stmt.limit(limit)
    out = []
    for a in conn.execute(stmt):
        out.append(AlertRow(a.id, a.alert_id, a.budget_id, a.budget_name, a.alert_key, a.event, a.period_start,
                            a.period_end, a.created_at, a.payload, a.state, a.attempts, a.next_attempt_at,
                            tuple(a.delivered_to or ()), a.delivered_at, a.last_error))
    return out


def list_alerts(conn: Connection, *, budget: str | None = None, limit: int = 100) -> list[AlertRow]:
    """The latest alerts (newest first), of one budget or all."""
    where = [Budget.name == budget] if budget is not None else []
    return _rows(conn, *where, limit=limit)
