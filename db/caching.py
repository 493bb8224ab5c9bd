"""Prompt caching per model and app: the hit rate, and what caching saved at list prices.

``cache_savings(conn, filters, book)`` reads the rollup's sums per UTC day x model x provider x app
(``grouped_totals``; no schema of its own) and gives, per (model, app):

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

from dataclasses import dataclass
from datetime import datetime, time, timezone
from decimal import Decimal

from sqlalchemy.engine import Connection

from .filters import Filters
from .queries import grouped_totals
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


def _saving(book, model: str | None, provider: str | None, day, cached: int) -> Decimal | None | bool:
    """What ``cached`` tokens saved on ``day``; None: no price; False: no cached-input price."""
    if not model:
        return None
    at = datetime.combine(day, time(0), tzinfo=timezone.utc)
    unit = book.unit_prices(model, provider=provider or None, at=at, list_price=True)
    if unit is None or unit.input is None:
        return None
    if unit.cached_input is None:
        return False
    return Decimal(cached) * (unit.input - unit.cached_input) / _MILLION


def cache_savings(conn: Connection, filters: Filters, book) -> list[CacheRow]:
    """Per (model, app) with prompt tokens in the range: caching's figures (module docstring),
    the most saved first, then the most cached tokens."""
    rows: dict[tuple, CacheRow] = {}
    for r in grouped_totals(conn, filters, ("day", "model", "provider", "app"), "UTC"):
        key = (r["model"], r["app"])
        row = rows.get(key)
        if row is None:
            row = rows[key] = CacheRow(r["model"], r["app"])
        row.prompt_tokens += r["prompt_tokens"] or 0
        cached = r["cached_tokens"] or 0
        row.cached_tokens += cached
        if not cached:
            continue
        saved = _saving(book, r["model"], r["provider"], r["day"], cached)
        if saved is None:
            row.unpriced_cached_tokens += cached
        elif saved is False:
            row.no_cache_price = True
            row._add_saved(Decimal(0))
        else:
            row._add_saved(saved)
    out = [r for r in rows.values() if r.prompt_tokens or r.cached_tokens]
    for r in out:
        if r.saved_usd is not None:
            r.saved_usd = quantize_money(r.saved_usd)
    out.sort(key=lambda r: (-(r.saved_usd or 0), -r.cached_tokens, r.model or "", r.app or ""))
    return out


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
