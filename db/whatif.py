"""What-if: what the same calls would have cost on another model.

``whatif`` prices every call in the range again, as if it had been sent to ``target`` with the
same prompt, cached, completion and reasoning tokens, at the target's price on the call's own
``created_at`` (the same engine as the estimates, ``PriceBook.estimate``), and sums per source
model: requests, the actual cost (``cost_usd``: billed plus estimated; calls without a cost are
counted as unpriced), the cost on the target, and the difference. The totals are the sums of the
per-call figures, so they equal the sums of the rows. Read from ``completions`` (per call: tiered
prices depend on each call's prompt), never from the rollup.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.engine import Connection

from .filters import Filters, where_clauses
from .models import Completion

__all__ = ["WhatIfError", "WhatIfRow", "WhatIf", "whatif"]

_READ = ("model", "created_at", "prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens", "cost_usd")


class WhatIfError(ValueError):
    """A target model nothing prices (one line, for the CLI's usage error)."""


@dataclass
class WhatIfRow:
    """One source model (``""``: calls with no model). ``unpriced``: calls with no actual cost;
    ``not_priced_as``: calls the target cannot price (no tokens)."""

    model: str
    requests: int = 0
    actual_cost_usd: Decimal = field(default_factory=Decimal)
    unpriced: int = 0
    cost_as_usd: Decimal = field(default_factory=Decimal)
    not_priced_as: int = 0

    @property
    def difference_usd(self) -> Decimal:
        return self.cost_as_usd - self.actual_cost_usd

    def add(self, other: "WhatIfRow") -> None:
        self.requests += other.requests
        self.actual_cost_usd += other.actual_cost_usd
        self.unpriced += other.unpriced
        self.cost_as_usd += other.cost_as_usd
        self.not_priced_as += other.not_priced_as


@dataclass
class WhatIf:
    target: str
    target_entry: str  # the price entry that prices the target, e.g. "openai:gpt-4o"
    rows: list[WhatIfRow]
    total: WhatIfRow


def whatif(conn: Connection, book, target: str, filters: Filters | None = None, *,
           chunk_size: int = 20_000) -> WhatIf:
    """Per source model, what the calls ``filters`` select (the read layer's filters: range, model,
    provider, app, user, key, status, tags; ``""`` in a tuple matches unknown values) would have
    cost on ``target``; rows sorted by model. ``WhatIfError`` when ``book`` has no price for ``target``."""
    target = (target or "").strip()
    entry = book.resolve(target) if target else None
    if entry is None:
        raise WhatIfError(f"no price for model {target!r}: use an id genai-prices or your prices file knows "
                          "(e.g. openai/gpt-4o-mini)")
    filters = filters or Filters()
    table = Completion.__table__
    query = select(*(table.c[c] for c in _READ)).where(
        *where_clauses(filters, raw=True, ranges=[(filters.start, filters.end)]))
    per: dict[str, WhatIfRow] = {}
    estimate = book.estimate
    result = conn.execute(query, execution_options={"yield_per": chunk_size})
    for model, at, prompt, completion, cached, reasoning, cost in result:
        row = per.get(model or "")
        if row is None:
            row = per[model or ""] = WhatIfRow(model or "")
        row.requests += 1
        if cost is None:
            row.unpriced += 1
        else:
            row.actual_cost_usd += cost
        try:
            priced = estimate(target, at=at, prompt_tokens=prompt, completion_tokens=completion,
                              cached_tokens=cached, reasoning_tokens=reasoning)
        except (TypeError, ValueError):
            priced = None
        if priced is None:
            row.not_priced_as += 1
        else:
            row.cost_as_usd += priced.cost
    rows = [per[k] for k in sorted(per)]
    total = WhatIfRow("total")
    for row in rows:
        total.add(row)
    return WhatIf(target, entry, rows, total)
