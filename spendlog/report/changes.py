"""Text for spikes, changes and caching: the lines the dashboard and ``spendlog summary`` share.

- ``spike_line(spike, show)``: a spike's one-line explanation, ``2026-11-12: $48.10 against a usual
  $9.30; +$36.00 from app=etl on openai/gpt-4o`` (``db.spikes`` has the rule).
- ``percent_text(change)``: ``+12.5%``, ``-100.0%`` or ``new``.
- ``hit_rate_text(row)`` and ``saved_text(row)``: a cache row's hit rate and saving
  (``db.caching``): ``no price`` when nothing prices the model, never ``$0.00``.
- ``cache_lines(rows)``: ``spendlog summary``'s short cache section.

Money by ``spendlog.report.money`` only. ``show`` turns a ledger value into safe text (the
terminal's ``printable``, the dashboard's ``label``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import ROUND_HALF_UP, Decimal

from spendlog.db.caching import CacheRow, cache_total
from spendlog.db.changes import Change
from spendlog.db.spikes import Spike

from .money import money_display
from .terminal import printable, text_table

__all__ = ["spike_line", "spike_lines", "percent_text", "change_text", "hit_rate_text", "saved_text", "cache_lines",
           "CACHE_ROWS"]

CACHE_ROWS = 10  # pairs listed in the summary's cache section
Show = Callable[[str | None], str]


def spike_line(spike: Spike, show: Show = printable) -> str:
    """One line: the day, its spend against its usual, and the biggest rises that drove it."""
    head = f"{spike.day.isoformat()}: {money_display(spike.spend)} against a usual {money_display(spike.usual)}"
    if not spike.drivers:
        return f"{head}; no single one rose above its own usual"
    return head + "".join(f"; +{money_display(d.rise)} from {d.describe(show)}" for d in spike.drivers)


def spike_lines(spikes: Sequence[Spike], show: Show = printable) -> list[str]:
    """The summary's spike section: one line per spike day, or one saying there was none."""
    rule = "a day more than 3 MADs over its trailing 14-day median"
    if not spikes:
        return [f"Spikes        none ({rule})"]
    return [f"Spikes        {len(spikes)} ({rule}):", *(f"  {spike_line(s, show)}" for s in spikes)]


def _pct(value: Decimal) -> str:
    pct = value.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
    return f"{'+' if pct > 0 else ''}{format(pct, 'f')}%"


def percent_text(change: Change) -> str:
    """The change in percent (one decimal), ``new`` for a value with no spend before."""
    if change.is_new:
        return "new"
    percent = change.percent
    return "–" if percent is None else _pct(percent)


def change_text(change: Change) -> str:
    """The absolute change: ``+$1.20``, ``-$0.35``, ``$0.00``."""
    diff = change.change
    return ("+" if diff > 0 else "") + money_display(diff)


def hit_rate_text(row: CacheRow) -> str:
    rate = row.hit_rate
    return "–" if rate is None else _pct(rate * 100).lstrip("+")


def saved_text(row: CacheRow) -> str:
    """What caching saved: money, ``no price`` (nothing prices the model), ``– (no cache price)`` (the
    price has no cached rate: cached tokens billed as input), ``–`` (no cached tokens); a part
    priced and a part not: the money and the count of unpriced tokens."""
    if not row.cached_tokens:
        return "–"
    if row.saved_usd is None:
        return "no price"
    text = money_display(row.saved_usd)
    if row.no_cache_price and row.saved_usd == 0:
        text = "$0.00 (no cached price)"
    if row.unpriced_cached_tokens:
        text += f" (+{row.unpriced_cached_tokens:,} tokens with no price)"
    return text


def cache_lines(rows: Sequence[CacheRow], show: Show = printable) -> list[str]:
    """The summary's cache section: the total, then the pairs that cached tokens (most saved first)."""
    total = cache_total(list(rows))
    head = (f"Cache         {total.cached_tokens:,} of {total.prompt_tokens:,} prompt tokens cached "
            f"({hit_rate_text(total)}); saved {saved_text(total)} at list prices")
    cached = [r for r in rows if r.cached_tokens]
    if not cached:
        return [head]
    body = [[show(r.model), show(r.app), f"{r.prompt_tokens:,}", f"{r.cached_tokens:,}", hit_rate_text(r),
             saved_text(r)] for r in cached[:CACHE_ROWS]]
    out = [head, ""]
    out += text_table("Cache by model and app", ["model", "app", "prompt tok", "cached tok", "hit rate", "saved"],
                      body, right={2, 3, 4, 5})
    if len(cached) > CACHE_ROWS:
        out.append(f"... and {len(cached) - CACHE_ROWS} more pairs")
    return out
