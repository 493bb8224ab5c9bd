"""What the hard-limit guard reads (``spendlog.budget_guard``): each hard budget's current period
and spend, and the scope rule in Python.

``HardBudgetReader(url).read(now)`` is the guard's one ledger read, every few seconds on its own
thread, never per request: the hard budgets (``db.budgets.list_budgets``) and, for each, its
period holding ``now`` and the spend of its scope in ``[period start, now)`` through the shared
read layer (``db.queries.total_spend``: billed + estimated). A ledger without the budget tables
(older than revision 0005, or none yet) has no hard budgets.

``scope_matcher(scope)`` answers "is this call in the scope?" for one call's attributes with
exactly the rule ``db.filters`` applies in SQL: one field's values are alternatives, fields and tag
pairs must all hold, ``""`` stands for an unknown value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import inspect
from sqlalchemy.engine import URL, Engine

from .budgets import BudgetSpec, list_budgets, scope_filters
from .engine import make_engine, resolve_url, sqlite_path
from .models import Budget
from .periods import budget_period
from .queries import total_spend

__all__ = ["HardBudget", "HardBudgetReader", "scope_matcher", "Matcher"]

# (model, provider, app, user, key hint, tags) -> in the scope?
Matcher = Callable[[str | None, str | None, str | None, str | None, str | None, dict | None], bool]


@dataclass(frozen=True)
class HardBudget:
    """One hard budget as the guard holds it."""

    budget: BudgetSpec
    period_start: datetime
    period_end: datetime
    spent: Decimal  # in [period_start, read_at)
    read_at: datetime


def _values(scope: dict, attr: str) -> frozenset[str] | None:
    values = scope.get(attr)
    return frozenset(values) if values else None


def scope_matcher(scope: dict) -> Matcher:
    """A function telling whether a call with these attributes is in ``scope`` (see the module
    docstring). An empty scope matches every call."""
    models, providers, apps, users, keys = (_values(scope, a) for a in
                                            ("models", "providers", "apps", "users", "key_hints"))
    tags = tuple((str(k), str(v)) for k, v in scope.get("tags") or ())
    checks = [(i, wanted) for i, wanted in enumerate((models, providers, apps, users, keys)) if wanted is not None]

    def matches(model, provider, app, user, key_hint, call_tags) -> bool:
        values = (model, provider, app, user, key_hint)
        for i, wanted in checks:
            if (values[i] or "") not in wanted:
                return False
        if tags:
            if not call_tags:
                return False
            for key, value in tags:
                if call_tags.get(key) != value:
                    return False
        return True

    return matches


class HardBudgetReader:
    """Reads the hard budgets of one ledger, on a read-only engine kept between reads."""

    def __init__(self, url: str | URL | None = None):
        self.url = resolve_url(url)
        self._engine: Engine | None = None

    def read(self, now: datetime) -> list[HardBudget]:
        """The hard budgets at ``now``; raises on a database failure (the guard keeps what it had)."""
        path = sqlite_path(self.url)
        if path is not None and not path.exists():
            return []  # no ledger yet: nothing is spent
        if self._engine is None:
            self._engine = make_engine(self.url, readonly=True)
        with self._engine.connect() as conn:
            if not inspect(conn).has_table(Budget.__tablename__):
                return []
            out = []
            for budget in list_budgets(conn, hard_only=True):
                start, end = budget_period(now, budget.period, budget.tz, budget.week_start)
                spent = total_spend(conn, scope_filters(budget.scope, start, now))
                out.append(HardBudget(budget, start, end, spent, now))
            return out

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
