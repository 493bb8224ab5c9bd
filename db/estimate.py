"""Pricing records before they are stored: estimates for unbilled calls, list prices for all.

``price_records`` is called once per batch by ``db.store.insert_records`` (on the writer's thread,
never the caller's). For each record, with the price book of ``price_book()``:

- a call with tokens and no upstream cost gets ``cost_usd`` = the estimate at its ``created_at``,
  ``cost_source = 'estimated'`` and ``price_source`` (``genai-prices 0.2.3 openai:gpt-4o-mini`` or
  ``prices-file <name> line <n> <model>``);
- every call that can be priced gets ``list_cost_usd``, billed ones too; a billed call's cost and
  ``cost_source`` are never changed (its ``price_source`` names the entry of its list price);
- an unknown model, no tokens or contradicting counts: the record is left as it is
  (``cost_source = 'missing'``, cost NULL, never 0).

A record that already has ``list_cost_usd`` or ``price_source`` (priced before, e.g. by ``reprice``)
is left alone. Records are never changed in place: a priced record is a new dict.

The price book is loaded once per process and prices file path (``$SPENDLOG_PRICES``; the CLI's
``--prices`` sets it): a writer never reads the file per record or per batch. A file that cannot be
used there (the CLI refuses it at start with one line, exit 2) is warned about once and the
records are priced by genai-prices alone: a record is never lost to a prices file.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal

__all__ = ["price_batch", "price_book", "price_record", "price_records", "priced_fields"]

log = logging.getLogger("spendlog")

_lock = threading.Lock()
_book: tuple[str | None, object] | None = None  # (the $SPENDLOG_PRICES it was loaded for, PriceBook)


def price_book():
    """The process's ``PriceBook`` for the current ``$SPENDLOG_PRICES`` (loaded on first use, again
    only when the variable names another file)."""
    global _book
    from .pricing import PRICES_ENV, PriceBook, PricesFileError, load_price_book

    path = os.environ.get(PRICES_ENV) or None
    cached = _book
    if cached is not None and cached[0] == path:
        return cached[1]
    with _lock:
        if _book is not None and _book[0] == path:
            return _book[1]
        try:
            book = load_price_book(path) if path else PriceBook()
        except (PricesFileError, OSError) as exc:
            log.warning("spendlog: prices file not used, pricing with genai-prices alone: %s", exc)
            book = PriceBook()
        _book = (path, book)
        return book


# The largest price stored for one call: the bound the capture puts on an upstream cost
# (spendlog.usage.MAX_COST_USD). Token counts that would price a call past it (2**62 tokens) are a
# broken answer, not a bill: the call stays unpriced instead of poisoning its batch (a SQLite
# money column holds 9,223,372 USD).
MAX_PRICE_USD = Decimal(10_000)


def _storable(price):
    return price if price is not None and abs(price.cost) <= MAX_PRICE_USD else None


def priced_fields(book, record: Mapping, *, billed: bool) -> dict | None:
    """The pricing columns for one call (``cost_usd``, ``cost_source``, ``price_source``,
    ``list_cost_usd``), or None when nothing prices it. ``billed``: the call has an upstream cost,
    so only its list price (and what priced it) is computed."""
    at = record.get("created_at")
    if not isinstance(at, datetime):
        return None
    try:
        estimate, listed = book.estimate_and_list_price(
            record.get("model"), provider=record.get("provider"), upstream=record.get("upstream"), at=at,
            prompt_tokens=record.get("prompt_tokens"), completion_tokens=record.get("completion_tokens"),
            cached_tokens=record.get("cached_tokens"), reasoning_tokens=record.get("reasoning_tokens"),
            cache_write_tokens=record.get("cache_write_tokens"))
    except (TypeError, ValueError, ArithmeticError):
        return None  # counts of the wrong type: the store's own checks decide about the record
    estimate, listed = _storable(estimate), _storable(listed)
    if billed:
        return None if listed is None else {"price_source": listed.source, "list_cost_usd": listed.cost}
    if estimate is None:
        return None
    return {"cost_usd": estimate.cost, "cost_source": "estimated", "price_source": estimate.source,
            "list_cost_usd": None if listed is None else listed.cost}


def price_record(book, record: dict) -> dict:
    """``record`` priced (a new dict), or ``record`` itself when nothing changes."""
    if record.get("list_cost_usd") is not None or record.get("price_source") is not None:
        return record
    billed = record.get("cost_usd") is not None
    if billed and record.get("cost_source") == "estimated":
        return record  # an estimate made elsewhere: kept as it came
    fields = priced_fields(book, record, billed=billed)
    return record if fields is None else {**record, **fields}


def price_batch(records: list) -> list:
    """``records`` priced before they are written, so that the writer holds its lock only to write
    (the first batch of a process loads the price data, ~0.6 s of CPU). Never raises: a record it
    cannot price is left as it is, and ``insert_records`` deals with it as before."""
    try:
        book = price_book()
    except Exception:  # noqa: BLE001 - pricing must never cost a record; insert_records tries again
        return records
    out = []
    for r in records:
        try:
            out.append(price_record(book, r) if isinstance(r, dict) else r)
        except Exception:  # noqa: BLE001 - a record pricing cannot read is the store's to judge
            out.append(r)
    return out


def price_records(records: dict[str, dict]) -> dict[str, dict]:
    """``{id: record}`` with every record priced (``price_record``) by the process's price book."""
    book = price_book()
    return {k: price_record(book, r) for k, r in records.items()}
