"""Likely causes of a reconciliation row that differs, each from one cheap look at the ledger.

``explain(conn, report, errors)`` appends short texts to ``row.causes`` for every row of the
report that differs (``db.reconcile``); rows that match are never looked at. A cause is named
only where it could move the figures the way they differ:

- **error rows**: answered-or-not calls the ledger records as errors (left out of the
  comparison); the router bills none, unless it generated the answer before the failure (a stream
  cut on the way to the app). From the rollup, one grouped read for the whole range.
- **calls without cost** (``cost_source`` missing: they add nothing to the ledger's cost),
  **estimated costs** (``estimated``: spendlog's price, not the router's bill) and **calls without
  token counts**: one indexed count on ``completions`` (model, day) per differing row.
- **spooled records** not yet replayed into the database, and records the writer **dropped**
  (``spendlog db status``): counts for the whole ledger, named where the ledger is short.
- **calls around midnight UTC**: ledger calls within ``MIDNIGHT_WINDOW`` of a midnight whose
  other day differs the other way (or lies outside the range): a call stamped at 23:59:59.9 by
  the app may reach the router after midnight. One indexed count per such midnight.
- **a near model id** on the other side that day (a dated id against its alias,
  ``gpt-4o-mini-2024-07-18`` / ``gpt-4o-mini``, a ``:variant``, ``3.5`` / ``3-5``; or the router's
  ``model_permaslug``): from the rows already compared, no query.
- **BYOK inference** the router reports (``byok_usage_inference``), billed by your provider.
"""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import date, datetime, time, timedelta, timezone

from sqlalchemy import case, func, or_, select
from sqlalchemy.engine import Connection

from .filters import where_clauses
from .models import Completion
from .queries import Filters, count_calls

__all__ = ["MIDNIGHT_WINDOW", "explain", "near_names"]

MIDNIGHT_WINDOW = timedelta(minutes=5)
_DAY = timedelta(days=1)
_SUFFIX = re.compile(r"-(\d{4}-?\d{2}-?\d{2}|\d{3,4}|latest)$")


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


def _normal(model: str) -> str:
    name = model.lower().rsplit("/", 1)[-1].split(":", 1)[0]
    return _SUFFIX.sub("", name).replace(".", "-")


def near_names(a: str, b: str) -> bool:
    """Two different ids for what is likely one model (see the module docstring)."""
    return a != b and _normal(a) == _normal(b)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), timezone.utc)


def _model_filters(model: str | None, start: datetime, end: datetime) -> Filters:
    return Filters(start=start, end=end, models=(model or "",), status="ok")


def _cost_and_tokens(conn: Connection, row) -> tuple[int, int, int]:
    """(calls without cost, calls with an estimated cost, calls without token counts) that day."""
    start = _midnight(row.day)
    f = _model_filters(row.model, start, start + _DAY)
    c = Completion
    stmt = select(
        func.sum(case((c.cost_usd.is_(None), 1), else_=0)),
        func.sum(case((c.cost_source == "estimated", 1), else_=0)),
        func.sum(case((or_(c.prompt_tokens.is_(None), c.completion_tokens.is_(None)), 1), else_=0)),
    ).where(*where_clauses(f, raw=True, ranges=[(f.start, f.end)]))
    missing, estimated, no_tokens = conn.execute(stmt).one()
    return missing or 0, estimated or 0, no_tokens or 0


def _midnight_causes(conn: Connection, report, index: dict, row, cache: dict) -> list[str]:
    d = row.direction()
    if not d:
        return []
    out = []
    for neighbour, midnight in ((row.day - _DAY, _midnight(row.day)), (row.day + _DAY, _midnight(row.day + _DAY))):
        outside = not report.first <= neighbour <= report.last
        other = index.get((neighbour, row.model))
        if not outside and (other is None or other.status == "match" or other.direction() != -d):
            continue
        key = (row.model, midnight)
        if key not in cache:
            cache[key] = count_calls(conn, _model_filters(row.model, midnight - MIDNIGHT_WINDOW,
                                                          midnight + MIDNIGHT_WINDOW))
        n = cache[key]
        if n:
            minutes = int(MIDNIGHT_WINDOW.total_seconds() // 60)
            why = "is outside the range" if outside else "differs the other way"
            out.append(f"{_plural(n, 'ledger call')} within {minutes} minutes of midnight UTC "
                       f"({midnight:%Y-%m-%d} 00:00); {neighbour} {why}")
    return out


def _near_causes(row, router_only: dict, ledger_only: dict) -> list[str]:
    if row.model is None:
        return []
    d = row.direction()
    out = []
    if d > 0:  # the router has more: is the ledger's share under another id?
        for other in ledger_only.get(row.day, ()):
            if other is not row and other.model and (near_names(row.model, other.model)
                                                     or other.model in row.permaslugs):
                out.append(f"the ledger has {other.model!r} that day, not in the router's activity: "
                           "the same model under another id?")
    elif d < 0:
        for other in router_only.get(row.day, ()):
            if other is not row and (near_names(row.model, other.model) or row.model in other.permaslugs):
                out.append(f"the router bills {other.model!r} that day, not in the ledger: "
                           "the same model under another id?")
    return out[:2]


def explain(conn: Connection, report, errors: dict) -> None:
    """Add likely causes to every differing row of ``report`` (``errors``: the ledger's error
    rows per (day, model), as ``grouped_totals`` sums them)."""
    differing = [r for r in report.rows if r.status != "match"]
    if not differing:
        return
    index = {(r.day, r.model): r for r in report.rows}
    router_only, ledger_only = defaultdict(list), defaultdict(list)
    for r in differing:
        if r.status == "missing_in_ledger":
            router_only[r.day].append(r)
        elif r.status == "missing_in_router":
            ledger_only[r.day].append(r)
    cache: dict = {}
    for row in differing:
        d = row.direction()
        cost = row.difference("cost")
        tokens = max(row.difference("prompt_tokens"), row.difference("completion_tokens"))
        causes = row.causes
        failed = errors.get((row.day, row.model))
        if failed and failed["requests"] and d >= 0:
            causes.append(f"{_plural(failed['requests'], 'ledger error row')} left out (the router bills "
                          "none, unless it generated the answer before the failure)")
        if row.ledger is not None and (cost or tokens > 0):
            missing, estimated, no_tokens = _cost_and_tokens(conn, row)
            if missing and cost > 0:
                causes.append(f"{_plural(missing, 'call')} without cost in the ledger (cost_source missing)")
            if estimated and cost:
                causes.append(f"{_plural(estimated, 'call')} priced by spendlog's estimate, not the router's "
                              "bill (cost_source estimated)")
            if no_tokens and tokens > 0:
                causes.append(f"{_plural(no_tokens, 'call')} without token counts in the ledger")
        if d > 0 and report.spooled:
            causes.append(f"{_plural(report.spooled, 'record')} spooled, not yet in the database "
                          "(spendlog db status)")
        if d > 0 and report.dropped:
            causes.append(f"{_plural(report.dropped, 'record')} dropped by the writer (spendlog db status)")
        causes.extend(_midnight_causes(conn, report, index, row, cache))
        causes.extend(_near_causes(row, router_only, ledger_only))
        if row.byok and cost:
            causes.append("the router reports BYOK inference (byok_usage_inference), billed by your "
                          "provider, not in usage")
