"""One price entry compiled for fast, exact pricing of token counts (used by ``pricing.PriceBook``).

genai-prices prices a usage as the sum, over the entry's priced units, of ``price * count / per``
(``types.ModelPrice.calc_price``), where each count is a *leaf*: a total minus its priced parts
(``decompose.compute_leaf_values``). spendlog records five counts, OpenAI style, totals holding their
parts: prompt (holding cached and cache-write tokens) and completion (holding reasoning tokens).
So, for an entry:

    input leaf  = prompt - (cached if the entry prices cache reads) - (cache_write if it prices writes)
    output leaf = completion - (reasoning if the entry prices reasoning)

and cached / cache-write / reasoning tokens are billed at their own price when there is one, else
inside their total at its price, never twice. A per-request price (``requests_kcount``) counts one
request. Units spendlog does not record (audio, image, search counts) have a count of 0, so genai-prices
adds 0 for them and we leave them out. Tiered prices use genai-prices' rule: the highest tier whose
start the prompt size exceeds applies to all tokens.

The sum is done in integers: every price is scaled to an integer once (prices have finitely many
decimal places), so a call costs a few integer products and one exact rounding to 12 places
(ROUND_HALF_EVEN, as ``db.types.quantize_money``). Equal to genai-prices' ``Decimal`` sum quantised,
and exact even where a 28-digit ``Decimal`` context would have rounded.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from genai_prices.data_units import unit_data
from genai_prices.types import ModelPrice, TieredPrices
from genai_prices.units import UnitRegistry
from genai_prices.validation import validate_model_price

from .types import MONEY_SCALE

__all__ = ["Rates", "UnitPrices", "compile_prices", "file_prices"]

_REGISTRY = UnitRegistry(unit_data)
# price key -> (usage key, count per price): input_mtok -> ("input_tokens", 1_000_000)
_UNITS = {raw.get("price_key", usage_key): (usage_key, raw["per"]) for usage_key, raw in unit_data.items()}
_INPUT, _CACHE_READ, _CACHE_WRITE, _OUTPUT, _REASONING, _REQUESTS = range(6)
_KIND = {
    "input_tokens": _INPUT, "cache_read_tokens": _CACHE_READ, "cache_write_tokens": _CACHE_WRITE,
    "output_tokens": _OUTPUT, "output_reasoning_tokens": _REASONING, "requests": _REQUESTS,
}
_THOUSAND = Decimal(1000)


@dataclass(frozen=True, slots=True)
class UnitPrices:
    """USD per 1M tokens (``per_request``: USD per request). None: the entry has no price of its own
    for that part, so those tokens are billed at their total's rate (cached and cache-write tokens
    as input, reasoning as output); caching saved nothing there."""

    input: Decimal | None
    cached_input: Decimal | None
    cache_write: Decimal | None
    output: Decimal | None
    reasoning: Decimal | None
    per_request: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Rates:
    """A compiled ``ModelPrice``: terms of (count kind, scaled integer price or tiers, multiplier)."""

    prices: ModelPrice
    terms: tuple[tuple[int, object, int], ...]
    splits: tuple[bool, bool, bool]  # cache reads, cache writes, reasoning have prices of their own
    up: int  # sum * up // down is the cost in pico-USD (10^-12), rounded half-even when down > 1
    down: int
    unit: UnitPrices  # the unit prices below the first tier (all of them, for untiered prices)
    bands: tuple[tuple[int, UnitPrices], ...]  # tiered prices: (tier start, unit prices above it), highest first

    def cost(self, prompt: int, cached: int, written: int, completion: int, reasoning: int) -> Decimal:
        """The exact cost (12 places) of consistent counts (cached + written <= prompt, reasoning <= completion)."""
        return Decimal(self.pico(prompt, cached, written, completion, reasoning)).scaleb(-MONEY_SCALE)

    def pico(self, prompt: int, cached: int, written: int, completion: int, reasoning: int) -> int:
        """``cost`` in integer pico-USD (10^-12), as SQLite stores money: for readers that price many rows."""
        reads, writes, thinks = self.splits
        counts = (prompt - (cached if reads else 0) - (written if writes else 0), cached, written,
                  completion - (reasoning if thinks else 0), reasoning, 1)
        total = 0
        for kind, price, mult in self.terms:
            if type(price) is not int:  # tiers: ((start, scaled), ... highest first), base
                price = _tier(price, prompt)
            total += price * counts[kind] * mult
        if self.down == 1:
            return total * self.up
        pico, rest = divmod(total, self.down)
        if 2 * rest > self.down or (2 * rest == self.down and pico & 1):
            pico += 1
        return pico

    def unit_for(self, prompt: int) -> UnitPrices:
        """The unit prices applied to a call with this prompt size."""
        for start, unit in self.bands:
            if prompt > start:
                return unit
        return self.unit


def _tier(tiers: tuple, prompt: int) -> int:
    steps, base = tiers
    for start, price in steps:
        if prompt > start:
            return price
    return base


def _tier_decimal(price: TieredPrices, prompt: int) -> Decimal:
    # genai-prices' rule (types.calc_unit_price): the highest tier whose start the prompt exceeds.
    for tier in reversed(price.tiers):
        if prompt > tier.start:
            return tier.price
    return price.base


def _unit_prices(prices: ModelPrice, prompt: int) -> UnitPrices:
    def rate(key: str) -> Decimal | None:
        value = prices.__dict__.get(key)
        return _tier_decimal(value, prompt) if isinstance(value, TieredPrices) else value

    per_k = rate("requests_kcount")
    return UnitPrices(rate("input_mtok"), rate("cache_read_mtok"), rate("cache_write_mtok"), rate("output_mtok"),
                      rate("output_reasoning_mtok"), None if per_k is None else per_k / _THOUSAND)


def _places(value: Decimal) -> int:
    return max(0, -int(value.as_tuple().exponent))


def _power_of_ten(n: int) -> int | None:
    digits = str(n)
    return len(digits) - 1 if digits[0] == "1" and set(digits[1:]) <= {"0"} else None


def compile_prices(prices: ModelPrice) -> Rates | None:
    """``prices`` ready for ``Rates.cost``; None when it cannot price a call from token counts (priced
    per second, image or page only) or genai-prices itself would refuse it (bad unit coverage)."""
    items = [(k, v) for k, v in prices.__dict__.items() if not k.startswith("_") and v is not None]
    known = {k for k, _ in items if k in _UNITS}  # genai-prices skips unknown keys too (with a warning)
    if items and not known & {"input_mtok", "output_mtok"}:
        return None
    try:
        validate_model_price(known, _REGISTRY)
    except ValueError:
        return None
    used = []
    for key, value in items:
        usage_key, per = _UNITS.get(key, ("", 0))
        if (kind := _KIND.get(usage_key)) is not None:
            decimals = [value] if isinstance(value, Decimal) else [value.base, *(t.price for t in value.tiers)]
            if not all(isinstance(d, Decimal) and d.is_finite() and d >= 0 for d in decimals):
                return None
            if (per_exp := _power_of_ten(per)) is None:
                return None
            used.append((kind, value, per_exp, max(map(_places, decimals))))
    places = max((u[3] for u in used), default=0)
    top = max((u[2] for u in used), default=0)
    terms = []
    scale = Decimal(1).scaleb(places)
    for kind, value, per_exp, _ in used:
        if isinstance(value, Decimal):
            scaled: object = int(value * scale)
        else:  # highest tier first, as genai-prices walks them (reversed, after sorting by start)
            ordered = reversed(sorted(value.tiers, key=lambda t: t.start))
            scaled = (tuple((t.start, int(t.price * scale)) for t in ordered), int(value.base * scale))
        terms.append((kind, scaled, 10 ** (top - per_exp)))
    exponent = places + top  # cost = sum / 10^exponent USD
    up, down = (10 ** (MONEY_SCALE - exponent), 1) if exponent <= MONEY_SCALE else (1, 10 ** (exponent - MONEY_SCALE))
    splits = ("cache_read_mtok" in known, "cache_write_mtok" in known, "output_reasoning_mtok" in known)
    starts = sorted({t.start for _, v in items if isinstance(v, TieredPrices) for t in v.tiers}, reverse=True)
    bands = tuple((start, _unit_prices(prices, start + 1)) for start in starts)
    return Rates(prices, tuple(terms), splits, up, down, _unit_prices(prices, 0), bands)


def file_prices(input: Decimal, output: Decimal, cached_input: Decimal | None, cache_write: Decimal | None,
                reasoning: Decimal | None) -> ModelPrice:
    """A prices-file entry as a genai-prices ``ModelPrice`` (its public type), so one engine prices both."""
    keys = {"input_mtok": input, "output_mtok": output, "cache_read_mtok": cached_input,
            "cache_write_mtok": cache_write, "output_reasoning_mtok": reasoning}
    return ModelPrice(**{k: v for k, v in keys.items() if v is not None})
