"""Budgets in the ledger: the rules that check one, and reading and writing them.

A budget is a line (``amount_usd``, exact) on the spend of a scope over a local calendar period
(``day``/``week``/``month``/``quarter``/``year`` in an IANA zone, from local midnight; weeks from
``week_start``, Monday unless told). The scope is any combination of model, provider, app, user,
key hint and ``tag:KEY=VALUE``: values of one field are OR-ed, fields AND-ed (as ``db.filters``
reads them); an empty scope is everything. Thresholds are percents of the line (default 50, 80,
100), each an alert once per period; ``forecast`` adds one alert when the period's projected spend
(``db.budget_status``) passes the line; ``hard`` makes the proxy and the hook refuse calls in the
scope once the line is reached.

Webhook URLs are secrets. They are stored in the ledger (every host's ``budget check`` must be able
to deliver), in ``budget_webhooks``, a table of their own that ``spendlog db grant-readonly`` keeps
the read-only role out of. Everything else sees them through ``mask_webhook`` only:
``https://hooks.slack.com/...`` plus the last 4 characters. ``webhook_targets`` is the one reader of
the real URLs, for delivery.

``parse_*`` raise ``ValueError`` with a message that names no option, so the CLI can put the
option in front of it (the ``db.groups`` habit).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from urllib.parse import urlsplit

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from .filters import Filters
from .models import Alert, Budget, BudgetWebhook
from .periods import BUDGET_PERIODS, get_zone
from .types import MONEY_SCALE

__all__ = [
    "BudgetSpec",
    "BudgetExistsError",
    "SCOPE_FIELDS",
    "DEFAULT_THRESHOLDS",
    "parse_amount",
    "parse_thresholds",
    "parse_scope",
    "parse_webhook",
    "mask_webhook",
    "scope_filters",
    "scope_text",
    "add_budget",
    "list_budgets",
    "get_budget",
    "remove_budget",
    "webhook_targets",
]

DEFAULT_THRESHOLDS = (50, 80, 100)
# --scope FIELD -> the Filters attribute it sets (tags apart: tag:KEY=VALUE)
SCOPE_FIELDS = {"model": "models", "provider": "providers", "app": "apps", "user": "users", "key": "key_hints"}
_MAX_AMOUNT = Decimal(10) ** 15


class BudgetExistsError(ValueError):
    """A budget of that name is in the ledger already."""


@dataclass(frozen=True)
class BudgetSpec:
    """A budget as checked, ready to store; also what ``list_budgets`` returns (with ``id`` and
    ``webhooks`` masked)."""

    name: str
    amount_usd: Decimal
    period: str
    tz: str = "UTC"
    week_start: int = 0
    scope: dict = field(default_factory=dict)
    thresholds: tuple[int, ...] = DEFAULT_THRESHOLDS
    forecast: bool = False
    hard: bool = False
    webhooks: tuple[str, ...] = ()
    id: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def __post_init__(self) -> None:
        name = (self.name or "").strip()
        if not name or len(name) > 255 or any(ord(c) < 32 for c in name):
            raise ValueError("a budget name is 1-255 printable characters")
        object.__setattr__(self, "name", name)
        if self.period not in BUDGET_PERIODS:
            raise ValueError(f"unknown period {self.period!r}: choose from {', '.join(BUDGET_PERIODS)}")
        get_zone(self.tz)
        if not 0 <= int(self.week_start) <= 6:
            raise ValueError("week_start is 0 (Monday) ... 6 (Sunday)")
        parse_amount(str(self.amount_usd))

    def __hash__(self) -> int:
        return hash((self.id, self.name))


def parse_amount(value: str) -> Decimal:
    """A positive exact USD amount (``"100"``, ``"12.50"``), at most 12 decimals."""
    try:
        amount = Decimal(str(value).strip().lstrip("$"))
    except InvalidOperation:
        raise ValueError(f"{value!r} is not an amount in USD (e.g. 100 or 12.50)") from None
    if not amount.is_finite() or amount <= 0:
        raise ValueError(f"{value!r}: the amount must be a positive number of USD")
    if amount >= _MAX_AMOUNT:
        raise ValueError(f"{value!r}: the amount is too large")
    if amount.as_tuple().exponent < -MONEY_SCALE:
        raise ValueError(f"{value!r}: at most {MONEY_SCALE} decimal places")
    return amount


def parse_thresholds(value: str | Sequence[int]) -> tuple[int, ...]:
    """``"50,80,100"`` -> ``(50, 80, 100)``: whole percents 1-1000, sorted, each once."""
    parts = value.split(",") if isinstance(value, str) else list(value)
    out = set()
    for part in parts:
        text = str(part).strip().rstrip("%")
        if not text:
            continue
        try:
            pct = int(text)
        except ValueError:
            raise ValueError(f"{part!r} is not a whole percent (e.g. 50,80,100)") from None
        if not 1 <= pct <= 1000:
            raise ValueError(f"{pct}: a threshold is a percent from 1 to 1000")
        out.add(pct)
    if not out:
        raise ValueError("needs at least one percent, e.g. 50,80,100")
    return tuple(sorted(out))


def parse_scope(items: Sequence[str]) -> dict:
    """``["app=billing", "tag:team=core", "key=sr_...abcd"]`` -> the stored scope dict. Values of
    one field are alternatives (OR); fields and tags must all hold (AND)."""
    scope: dict[str, list] = {}
    for item in items:
        name, sep, value = str(item).partition("=")
        name = name.strip()
        if not sep or not name:
            raise ValueError(f"{item!r} is not FIELD=VALUE ({', '.join(SCOPE_FIELDS)} or tag:KEY)")
        if name.lower().startswith("tag:"):
            key = name[4:].strip()
            if not key:
                raise ValueError(f"{item!r}: a tag scope is tag:KEY=VALUE")
            pair = [key, value]
            if pair not in scope.setdefault("tags", []):
                scope["tags"].append(pair)
            continue
        attr = SCOPE_FIELDS.get(name.lower())
        if attr is None:
            raise ValueError(f"{name!r} is not a scope field: choose from {', '.join(SCOPE_FIELDS)} or tag:KEY")
        values = scope.setdefault(attr, [])
        if value not in values:
            values.append(value)
    return {k: sorted(v) for k, v in sorted(scope.items())}


def parse_webhook(url: str) -> str:
    """An ``http(s)://host/...`` URL (the error never repeats it: it is a secret)."""
    text = str(url).strip()
    try:
        parts = urlsplit(text)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"{mask_webhook(text)} is not an http:// or https:// URL with a host")
    return text


def mask_webhook(url: str) -> str:
    """What may be shown of a webhook URL: scheme and host, then ``...`` and the last 4 characters
    (``https://hooks.slack.com/...Xy9z``). Never the path, the query or any credentials."""
    text = str(url)
    try:
        parts = urlsplit(text)
        host = parts.hostname or ""
        origin = f"{parts.scheme}://{host}" if parts.scheme and host else "webhook"
    except ValueError:
        origin = "webhook"
    tail = text[-4:] if len(text) > 12 else ""
    return f"{origin}/...{tail}"


def scope_filters(scope: dict, start: datetime | None = None, end: datetime | None = None) -> Filters:
    """The ``Filters`` that read a scope's calls in ``[start, end)`` (every call status)."""
    named = {attr: tuple(scope.get(attr) or ()) for attr in SCOPE_FIELDS.values()}
    tags = tuple((str(k), str(v)) for k, v in scope.get("tags") or ())
    return Filters(start=start, end=end, tags=tags, **named)


def scope_text(scope: dict) -> str:
    """The scope as the user typed it (``app=billing tag:team=core``), or ``everything``."""
    back = {attr: name for name, attr in SCOPE_FIELDS.items()}
    parts = [f"{back[attr]}={v}" for attr in SCOPE_FIELDS.values() for v in scope.get(attr) or ()]
    parts += [f"tag:{k}={v}" for k, v in scope.get("tags") or ()]
    return " ".join(parts) or "everything"


def add_budget(conn: Connection, spec: BudgetSpec, now: datetime) -> int:
    """Store a new budget and its webhooks; its id. ``BudgetExistsError`` if the name is taken."""
    values = {"name": spec.name, "amount_usd": spec.amount_usd, "period": spec.period, "tz": spec.tz,
              "week_start": int(spec.week_start), "scope": spec.scope, "thresholds": list(spec.thresholds),
              "forecast": spec.forecast, "hard": spec.hard, "created_at": now, "updated_at": now}
    try:
        with conn.begin_nested():
            budget_id = conn.execute(insert(Budget).values(**values).returning(Budget.id)).scalar_one()
    except IntegrityError:
        raise BudgetExistsError(f"a budget named {spec.name!r} exists already (remove it first)") from None
    if spec.webhooks:
        conn.execute(insert(BudgetWebhook), [{"budget_id": budget_id, "url": u} for u in spec.webhooks])
    return budget_id


def _spec(row, webhooks: Sequence[str]) -> BudgetSpec:
    return BudgetSpec(name=row.name, amount_usd=row.amount_usd, period=row.period, tz=row.tz,
                      week_start=row.week_start, scope=dict(row.scope or {}), thresholds=tuple(row.thresholds or ()),
                      forecast=bool(row.forecast), hard=bool(row.hard), webhooks=tuple(webhooks), id=row.id,
                      created_at=row.created_at, updated_at=row.updated_at)


def list_budgets(conn: Connection, *, hard_only: bool = False, webhooks: bool = True) -> list[BudgetSpec]:
    """Every budget, by name, its webhooks masked (``mask_webhook``); ``webhooks=False`` leaves them
    out (the read-only role the dashboard may run as cannot read ``budget_webhooks``)."""
    stmt = select(Budget.__table__).order_by(Budget.name)
    if hard_only:
        stmt = stmt.where(Budget.hard.is_(True))
    budgets = conn.execute(stmt).all()
    hooks: dict[int, list[str]] = {}
    if budgets and webhooks and not hard_only:
        for budget_id, url in conn.execute(select(BudgetWebhook.budget_id, BudgetWebhook.url)
                                           .order_by(BudgetWebhook.id)):
            hooks.setdefault(budget_id, []).append(mask_webhook(url))
    return [_spec(b, hooks.get(b.id, ())) for b in budgets]


def get_budget(conn: Connection, name: str) -> BudgetSpec | None:
    """One budget by name (webhooks masked), or None."""
    for budget in list_budgets(conn):
        if budget.name == name.strip():
            return budget
    return None


def remove_budget(conn: Connection, name: str) -> bool:
    """Delete a budget, its webhooks and its alerts; False when there is none of that name."""
    budget_id = conn.scalar(select(Budget.id).where(Budget.name == name.strip()))
    if budget_id is None:
        return False
    conn.execute(delete(Alert).where(Alert.budget_id == budget_id))
    conn.execute(delete(BudgetWebhook).where(BudgetWebhook.budget_id == budget_id))
    conn.execute(delete(Budget).where(Budget.id == budget_id))
    return True


def webhook_targets(conn: Connection, budget_id: int) -> list[tuple[int, str]]:
    """``(target id, URL)`` of a budget's webhooks: the real URLs, for delivery only. Never print,
    log or export what this returns."""
    stmt = select(BudgetWebhook.id, BudgetWebhook.url).where(BudgetWebhook.budget_id == budget_id)
    return [(i, u) for i, u in conn.execute(stmt.order_by(BudgetWebhook.id))]
