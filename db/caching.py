"""Prompt caching per model and app: the hit rate, and what caching saved at list prices.

``cache_savings(conn, filters, book)`` reads the rollup's sums per model x provider x app
(``grouped_totals``; no schema of its own; per UTC day only for a model whose price changes in the
range) and gives, per (model, app):

- ``hit_rate`` = cached tokens / prompt tokens (None without prompt tokens);
- ``saved_usd`` = the cached tokens at the model's uncached list input price minus what they cost at
  its cached-input price, each day at the price of that day (``PriceBook.unit_prices(...,
  list_price=True)`` at 00:00 UTC of the call's UTC day: the dated genai-prices entry, as the
  estimates use it). Tiered prices are taken at their base tier (the rollup has no per-call prompt
  size). A model whose price has no cached-input rate bills cached tokens as input: saved 0 and
  ``no_cache_price`` True. A model nothing prices: its cached tokens are counted in
  ``unpriced_cached_tokens``, never priced at 0; ``saved_usd`` is None when none of them is priced.

Exact ``Decimal``, rounded once per row to the ledger's 12 places (half-even, ``db.types``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal

from sqlalchemy.engine import Connection

from .filters import Filters
from .queries import call_span, grouped_totals
from .types import quantize_money

__all__ = ["CacheRow", "cache_savings", "cache_total"]

_MILLION = Decimal(1_000_000)


@dataclass
class CacheRow:
    """Prompt caching of one (model, app) pair (None: unknown) in the range."""

    model: str | None
    app: str | None
    prompt_tokens: int = 0
    cached_tokens: int = 0
    saved_usd: Decimal | None = None
    unpriced_cached_tokens: int = 0
    no_cache_price: bool = False

    @property
    def hit_rate(self) -> Decimal | None:
        return None if not self.prompt_tokens else Decimal(self.cached_tokens) / Decimal(self.prompt_tokens)

    def _add_saved(self, amount: Decimal) -> None:
        self.saved_usd = amount if self.saved_usd is None else self.saved_usd + amount


def _unit(book, model: str | None, provider: str | None, day: date):
    """The list unit prices of ``model`` at 00:00 UTC of ``day``; None: nothing prices it."""
    if not model:
        return None
    unit = book.unit_prices(model, provider=provider or None, at=datetime.combine(day, time(0), tzinfo=timezone.utc),
                            list_price=True)
    return None if unit is None or unit.input is None else unit


def _saved(unit, cached: int) -> Decimal | None | bool:
    """What ``cached`` tokens saved at ``unit``; None: no price; False: no cached-input price."""
    if unit is None:
        return None
    if unit.cached_input is None:
        return False
    return Decimal(cached) * (unit.input - unit.cached_input) / _MILLION


def _days(conn: Connection, filters: Filters) -> list[date]:
    """The UTC days the range touches (an open side: the first or last matching call's day)."""
    first, last = filters.start, filters.end - timedelta(microseconds=1) if filters.end is not None else None
    if first is None or last is None:
        lo, hi = call_span(conn, filters)
        first, last = first or lo, last or hi
    if first is None or last is None:
        return []
    day, end, out = first.astimezone(timezone.utc).date(), last.astimezone(timezone.utc).date(), []
    while day <= end:
        out.append(day)
        day += timedelta(days=1)
    return out


def _add(row: CacheRow, saved) -> None:
    if saved is None:
        return
    if saved is False:
        row.no_cache_price = True
        saved = Decimal(0)
    row.saved_usd = saved if row.saved_usd is None else row.saved_usd + saved


def cache_savings(conn: Connection, filters: Filters, book, rows: Iterable[dict] | None = None) -> list[CacheRow]:
    """Per (model, app) with prompt tokens in the range: caching's figures (module docstring),
    the most saved first, then the most cached tokens.

    ``rows``: ``grouped_totals`` rows of ``filters`` grouped by at least model, provider and app (the
    dashboard passes a read it shares); else they are read. A model whose price is the same on every
    day of the range is priced once per row; those whose price changes in the range are read again
    per UTC day (one read for all of them) and each day priced at its own price."""
    if rows is None:
        rows = grouped_totals(conn, filters, ("model", "provider", "app"), "UTC")
    pairs: dict[tuple, CacheRow] = {}
    cached_by: dict[tuple, dict] = {}  # (model, provider) -> {app: cached tokens}
    for r in rows:
        key = (r["model"], r["app"])
        row = pairs.get(key)
        if row is None:
            row = pairs[key] = CacheRow(r["model"], r["app"])
        row.prompt_tokens += r["prompt_tokens"] or 0
        row.cached_tokens += r["cached_tokens"] or 0
        if r["cached_tokens"]:
            apps = cached_by.setdefault((r["model"], r["provider"]), {})
            apps[r["app"]] = apps.get(r["app"], 0) + r["cached_tokens"]
    days = _days(conn, filters) if cached_by else []
    dated = set()
    for (model, provider), apps in cached_by.items():
        units = {_unit(book, model, provider, d) for d in days}
        if len(units) > 1:
            dated.add((model, provider))
            continue
        unit = units.pop() if units else None  # one price over the whole range (or none)
        for app, cached in apps.items():
            _price(pairs[(model, app)], unit, cached)
    if dated:  # one read for every model whose price changes in the range, per UTC day
        some = replace(filters, models=tuple(sorted({m or "" for m, _ in dated})),
                       providers=tuple(sorted({p or "" for _, p in dated})))
        for r in grouped_totals(conn, some, ("day", "model", "provider", "app"), "UTC"):
            if r["cached_tokens"] and (r["model"], r["provider"]) in dated:
                _price(pairs[(r["model"], r["app"])], _unit(book, r["model"], r["provider"], r["day"]),
                       r["cached_tokens"])
    out = [r for r in pairs.values() if r.prompt_tokens or r.cached_tokens]
    for r in out:
        if r.saved_usd is not None:
            r.saved_usd = quantize_money(r.saved_usd)
    out.sort(key=lambda r: (-(r.saved_usd or 0), -r.cached_tokens, r.model or "", r.app or ""))
    return out


def _price(row: CacheRow, unit, cached: int) -> None:
    saved = _saved(unit, cached)
    if saved is None:
        row.unpriced_cached_tokens += cached
    _add(row, saved)


def cache_total(rows: list[CacheRow]) -> CacheRow:
    """The rows added up (model and app None): the range's hit rate and saving."""
    total = CacheRow(None, None)
    for r in rows:
        total.prompt_tokens += r.prompt_tokens
        total.cached_tokens += r.cached_tokens
        total.unpriced_cached_tokens += r.unpriced_cached_tokens
        total.no_cache_price = total.no_cache_price or r.no_cache_price
        if r.saved_usd is not None:
            total._add_saved(r.saved_usd)
    return total
