"""One ``budget check`` pass: where every budget stands, the alerts now due, their delivery.

``check_budgets(engine)``: for each budget, its status (``db.budget_status``); for each threshold
it crossed, and its forecast when it has the forecast alert on and the forecast passes the line,
a claim (``db.budget_alerts.claim``: one row per budget, period and alert, whoever races); then
every alert due for delivery (new ones, and failed ones whose backoff has passed) is leased and
POSTed to the budget's webhooks that have not taken it yet.

The body is JSON that Slack and Microsoft Teams incoming webhooks accept as it is (``text``), plus
``alert_id`` (stable, for idempotency), ``event`` (``threshold_crossed`` / ``forecast_exceeded``),
``budget``, ``scope``, ``period_start``, ``period_end``, ``amount``, ``spent``, ``percent``,
``threshold`` and ``forecast`` (money as exact decimal strings). A receiver answering 2xx took it;
anything else, a connection failure or no answer within ``timeout`` (5 s per target) is a failed
attempt, retried by a later check after the backoff.

Webhook URLs are secrets: errors name a target only as ``db.budgets.mask_webhook`` shows it, and
httpx's own log lines (INFO, with the URL) are masked too (``_MaskURLs``).
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone

import httpx
from sqlalchemy.engine import Engine

from spendlog.db.budget_alerts import alert_uuid, claim, finish_attempt, take_due
from spendlog.db.budget_status import BudgetStatus, budget_status
from spendlog.db.budgets import list_budgets, mask_webhook, scope_text, webhook_targets
from spendlog.report.budgets import alert_text
from spendlog.report.money import money_exact

__all__ = ["CheckResult", "check_budgets", "alert_payload", "DELIVERY_TIMEOUT"]

DELIVERY_TIMEOUT = 5.0


@dataclass
class CheckResult:
    """What one pass saw and did."""

    statuses: list[BudgetStatus] = field(default_factory=list)
    fired: list[tuple[str, str]] = field(default_factory=list)  # (budget, alert key) claimed by this pass
    delivered: list[str] = field(default_factory=list)  # alert ids delivered by this pass
    failed: list[tuple[str, str]] = field(default_factory=list)  # (alert id, masked error)

    @property
    def any_over(self) -> bool:
        return any(s.exhausted for s in self.statuses)


def alert_payload(status: BudgetStatus, alert_id: str, event: str, threshold: int | None) -> str:
    """The webhook body (see the module docstring)."""
    return json.dumps({
        "text": alert_text(status, event, threshold),
        "alert_id": alert_id,
        "event": event,
        "budget": status.budget.name,
        "scope": scope_text(status.budget.scope),
        "period": status.budget.period,
        "tz": status.budget.tz,
        "period_start": status.period_start.isoformat(),
        "period_end": status.period_end.isoformat(),
        "amount": money_exact(status.amount),
        "spent": money_exact(status.spent),
        "percent": str(status.percent),
        "threshold": threshold,
        "forecast": money_exact(status.forecast),
    }, separators=(",", ":"))


def _due_alerts(status: BudgetStatus) -> list[tuple[str, str, int | None]]:
    due: list[tuple[str, str, int | None]] = [(f"threshold:{p}", "threshold_crossed", p) for p in status.crossed]
    if status.budget.forecast and status.forecast_over:
        due.append(("forecast", "forecast_exceeded", None))
    return due


class _MaskURLs(logging.Filter):
    """Replaces the webhook URLs being delivered in any log record (httpx logs each request's URL)."""

    def __init__(self):
        super().__init__()
        self.secrets: set[str] = set()
        self.lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        with self.lock:
            secrets = list(self.secrets)
        if secrets:
            message = record.getMessage()
            for url in secrets:
                message = message.replace(url, mask_webhook(url))
            record.msg, record.args = message, None
        return True


_mask = _MaskURLs()
for _name in ("httpx", "httpcore"):
    logging.getLogger(_name).addFilter(_mask)


def _post(client: httpx.Client, url: str, body: bytes) -> str | None:
    """Deliver to one target: None when it took it, else the masked reason."""
    shown = mask_webhook(url)
    try:
        response = client.post(url, content=body, headers={"Content-Type": "application/json"})
    except httpx.TimeoutException:
        return f"{shown}: no answer within the timeout"
    except httpx.HTTPError as exc:
        return f"{shown}: {type(exc).__name__}"
    if 200 <= response.status_code < 300:
        return None
    return f"{shown}: HTTP {response.status_code}"


def _deliver(engine: Engine, now: datetime, timeout: float, backoff_base: float, result: CheckResult) -> None:
    taken = take_due(engine, now)
    if not taken:
        return
    with httpx.Client(timeout=httpx.Timeout(timeout), follow_redirects=False, trust_env=False) as client:
        for alert in taken:
            with engine.connect() as conn:
                targets = webhook_targets(conn, alert.budget_id)
            done = set(alert.delivered_to)
            errors = []
            for target_id, url in targets:
                if target_id in done:
                    continue
                with _mask.lock:
                    _mask.secrets.add(url)
                try:
                    error = _post(client, url, alert.payload.encode())
                finally:
                    with _mask.lock:
                        _mask.secrets.discard(url)
                if error is None:
                    done.add(target_id)
                else:
                    errors.append(error)
            complete = not errors
            finish_attempt(engine, alert.id, delivered_to=sorted(done), complete=complete,
                           error="; ".join(errors) or None, now=now, backoff_base=backoff_base)
            if complete:
                result.delivered.append(alert.alert_id)
            else:
                result.failed.append((alert.alert_id, "; ".join(errors)))


def check_budgets(engine: Engine, now: datetime | None = None, *, timeout: float = DELIVERY_TIMEOUT,
                  backoff_base: float = 30.0, deliver: bool = True) -> CheckResult:
    """One pass over every budget (the module docstring); ``now`` defaults to the clock."""
    now = now or datetime.now(timezone.utc)
    result = CheckResult()
    with engine.connect() as conn:
        budgets = list_budgets(conn)
        result.statuses = [budget_status(conn, b, now) for b in budgets]
        targets = {b.id: bool(b.webhooks) for b in budgets}
    for status in result.statuses:
        budget = status.budget
        for key, event, threshold in _due_alerts(status):
            alert_id = alert_uuid(budget.id, budget.created_at, status.period_start, key)
            if claim(engine, alert_id=alert_id, budget_id=budget.id, period_start=status.period_start,
                     period_end=status.period_end, key=key, event=event,
                     payload=alert_payload(status, alert_id, event, threshold), now=now,
                     has_targets=targets[budget.id]):
                result.fired.append((budget.name, key))
    if deliver:
        _deliver(engine, now, timeout, backoff_base, result)
    return result
