"""The price engine: what a call's tokens cost, from the user's prices file and genai-prices.

Prices come from pydantic's ``genai-prices``, its bundled data snapshot only: spendlog never starts
its network updater (``genai_prices.UpdatePrices``) and never reads a snapshot set process-wide by
someone else, so an estimate depends on the installed genai-prices version alone and can be
reproduced. ``docs/pricing.md`` tells the whole story; in short:

- ``PriceBook.estimate`` prices tokens at an instant: the prices file first, then genai-prices.
  ``PriceBook.list_price`` is the public list price: genai-prices first, the file only for models
  genai-prices does not know. Both return ``Priced`` (exact ``Decimal`` cost, the entry that priced
  it, the unit prices used) or None: no model, no tokens, an unknown model, or token counts that
  contradict each other. None means "keep cost_source='missing'", never zero.
- Model ids resolve in this order (memoised per (model, provider, upstream) in a bounded LRU):
  1. the upstream host's own provider when genai-prices knows the host (``api.openai.com``,
     ``*.openai.azure.com``, ``openrouter.ai``, ...), with the id as sent;
  2. a provider-prefixed id (``openai/gpt-4o-mini``), as a router serves it: genai-prices'
     ``openrouter`` entry for the full id, else the named provider's own model for the rest of the id
     (``provider`` if given, else the prefix);
  3. a plain id (``gpt-4o-mini``): the ``provider`` given, else genai-prices' matching by model name.
  Dated ids (``gpt-4o-mini-2024-07-18``, ``-20240718``) match the way genai-prices matches them.
- Tokens are counted the OpenAI way (``price_rates`` has the mapping): cached and cache-write
  tokens are part of ``prompt_tokens``, reasoning tokens part of ``completion_tokens``.

Importing this module loads genai-prices' data (about 0.4 s): import it where prices are needed.
"""

from __future__ import annotations

import os
from bisect import bisect_right
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from functools import lru_cache, partial

import genai_prices
from genai_prices.data import providers as _BUNDLED_PROVIDERS
from genai_prices.data_snapshot import DataSnapshot
from genai_prices.types import ModelInfo, ModelPrice, Provider

from .price_rates import Rates, UnitPrices, compile_prices, file_prices
from .prices_file import ALWAYS, FilePrice, PricesFile, PricesFileError, read_prices_file

__all__ = [
    "GENAI_PRICES_VERSION", "PRICES_ENV", "PriceBook", "Priced", "PricesFileError", "UnitPrices",
    "counts_priceable", "load_price_book",
]

GENAI_PRICES_VERSION: str = genai_prices.__version__
PRICES_ENV = "SPENDLOG_PRICES"
SOURCE_MAX = 255  # a price_source fits a String(255) column
MEMO_SIZE = 4096
_UNSEEN = object()


@dataclass(frozen=True, slots=True)
class Priced:
    """A priced call: exact ``cost`` (USD, 12 places), what priced it (``source``: ``genai-prices
    0.2.3 openai:gpt-4o-mini`` or ``prices-file prices.toml line 12 openai/gpt-4o-mini``), and the
    unit prices used (``unit``, for cache savings and what-ifs)."""

    cost: Decimal
    source: str
    unit: UnitPrices


@dataclass(frozen=True, slots=True)
class _GenaiEntry:
    name: str  # "openrouter:openai/gpt-4o-mini"
    source: str  # "genai-prices 0.2.3 openrouter:openai/gpt-4o-mini"
    model: ModelInfo
    fixed: Rates | None  # the entry's one price set, when it is not dated
    dated: dict[int, Rates | None] | None  # id(ModelPrice) -> compiled, for dated prices; only read

    def rates_at(self, at: datetime) -> Rates | None:
        if self.dated is None:
            return self.fixed
        prices = self.model.get_prices(at)  # genai-prices picks the dated price (StartDateConstraint, ...)
        found = self.dated.get(id(prices), _UNSEEN)
        return compile_prices(prices) if found is _UNSEEN else found


def _genai_entry(provider: Provider, model: ModelInfo) -> _GenaiEntry | None:
    name = f"{provider.id}:{model.id}"
    source = f"genai-prices {GENAI_PRICES_VERSION} {name}"[:SOURCE_MAX]
    if isinstance(model.prices, ModelPrice):
        fixed = compile_prices(model.prices)
        return None if fixed is None else _GenaiEntry(name, source, model, fixed, None)
    dated = {id(c.prices): compile_prices(c.prices) for c in model.prices}
    if all(r is None for r in dated.values()):
        return None  # priced only in units spendlog does not record
    return _GenaiEntry(name, source, model, None, dated)


def _upstream_url(upstream: str | None) -> str | None:
    """``host[:port]`` as recorded -> an https URL for genai-prices' ``api_pattern`` (port dropped)."""
    if not upstream or not upstream.strip():
        return None
    value = upstream.strip().lower()
    if "://" in value:
        return value
    host = value.split("/", 1)[0]
    if not host.endswith("]") and host.count(":") == 1:
        host = host.rsplit(":", 1)[0]
    return f"https://{host}"


def _find_genai(model: str, provider: str | None, upstream: str | None) -> _GenaiEntry | None:
    """The resolution order in the module docstring, through genai-prices' own matching. A throwaway
    ``DataSnapshot`` over the bundled data each time: its lookup caches never grow (ours is bounded)."""
    snapshot = DataSnapshot(providers=_BUNDLED_PROVIDERS, from_auto_update=False)

    def attempt(ref: str, provider_id: str | None = None, url: str | None = None) -> _GenaiEntry | None:
        if not ref:
            return None
        try:
            found = snapshot.find_provider_model(ref, None, provider_id, url)
        except LookupError:
            return None
        return _genai_entry(*found)

    url = _upstream_url(upstream)
    if url and (hit := attempt(model, url=url)):
        return hit
    prefix, slash, rest = model.partition("/")
    if slash:
        return attempt(model, provider_id="openrouter") or attempt(rest, provider_id=provider or prefix)
    if provider and (hit := attempt(model, provider_id=provider)):
        return hit
    return attempt(model)


def _lookup(prices_file: PricesFile | None, model: str, provider: str | None, upstream: str | None):
    """(the prices file's entries for the id or None, the genai-prices entry or None); None for neither."""
    model = model.strip()
    in_file = prices_file.entries_for(model) if prices_file is not None else None
    genai = _find_genai(model, provider or None, upstream)
    return None if in_file is None and genai is None else (in_file, genai)


def _as_utc(at: object) -> datetime:
    if not isinstance(at, datetime):
        raise TypeError(f"at must be a datetime, not {type(at).__name__}")
    return at.replace(tzinfo=timezone.utc) if at.tzinfo is None else at  # naive = UTC, as genai-prices reads it


def _count(value: object, name: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int or None, not {type(value).__name__}")
    return int(value)


def counts_priceable(prompt: int, completion: int, cached: int, reasoning: int, written: int) -> bool:
    """Token counts (ints) that can be priced: some tokens, none negative, cached + cache-write within
    the prompt, reasoning within the completion. Counts that contradict each other are left unpriced."""
    return ((prompt != 0 or completion != 0) and prompt >= 0 and completion >= 0 and cached >= 0 and reasoning >= 0
            and written >= 0 and cached + written <= prompt and reasoning <= completion)


class PriceBook:
    """Prices for model ids: the user's prices file (optional) over genai-prices' bundled data.

    Immutable and safe to share between threads; its only state is the bounded LRU memo of model
    resolution (``memo_size`` entries). The module docstring has the rules."""

    __slots__ = ("_file", "_file_rates", "_memo")

    def __init__(self, prices_file: PricesFile | None = None, *, memo_size: int = MEMO_SIZE) -> None:
        file_rates: dict[FilePrice, tuple[Rates | None, str]] = {}
        for entry in prices_file.entries if prices_file is not None else ():
            prices = file_prices(entry.input, entry.output, entry.cached_input, entry.cache_write, entry.reasoning)
            source = f"prices-file {prices_file.name} line {entry.line} {entry.model}"[:SOURCE_MAX]
            file_rates[entry] = (compile_prices(prices), source)
        object.__setattr__(self, "_file", prices_file)
        object.__setattr__(self, "_file_rates", file_rates)
        object.__setattr__(self, "_memo", lru_cache(maxsize=memo_size)(partial(_lookup, prices_file)))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("a PriceBook is immutable; build a new one")

    @property
    def prices_file(self) -> PricesFile | None:
        """The prices file this book reads first, if any."""
        return self._file

    def cache_info(self):
        """The resolution memo's ``functools`` cache info (hits, misses, maxsize, currsize)."""
        return self._memo.cache_info()

    def estimate(self, model: str | None, *, provider: str | None = None, upstream: str | None = None,
                 at: datetime, prompt_tokens: int | None, completion_tokens: int | None,
                 cached_tokens: int | None = None, reasoning_tokens: int | None = None,
                 cache_write_tokens: int | None = None) -> Priced | None:
        """What these tokens cost at instant ``at``: the prices file first, then genai-prices. None: no
        model, no tokens, an unknown model, or counts that contradict each other (cached + cache_write >
        prompt, reasoning > completion, a negative count); the caller keeps cost_source='missing'."""
        return self._price(True, model, provider, upstream, at, prompt_tokens, completion_tokens, cached_tokens,
                           reasoning_tokens, cache_write_tokens)

    def list_price(self, model: str | None, *, provider: str | None = None, upstream: str | None = None,
                   at: datetime, prompt_tokens: int | None, completion_tokens: int | None,
                   cached_tokens: int | None = None, reasoning_tokens: int | None = None,
                   cache_write_tokens: int | None = None) -> Priced | None:
        """The public list price (genai-prices); the prices file's only for models genai-prices lacks."""
        return self._price(False, model, provider, upstream, at, prompt_tokens, completion_tokens, cached_tokens,
                           reasoning_tokens, cache_write_tokens)

    def estimate_and_list_price(self, model: str | None, *, provider: str | None = None, upstream: str | None = None,
                                at: datetime, prompt_tokens: int | None, completion_tokens: int | None,
                                cached_tokens: int | None = None, reasoning_tokens: int | None = None,
                                cache_write_tokens: int | None = None) -> tuple[Priced | None, Priced | None]:
        """``(estimate(...), list_price(...))`` for the cost of about one: what the writer needs per record."""
        return self._price(None, model, provider, upstream, at, prompt_tokens, completion_tokens, cached_tokens,
                           reasoning_tokens, cache_write_tokens)

    def resolve(self, model: str | None, provider: str | None = None, upstream: str | None = None) -> str | None:
        """The entry ``estimate`` uses for this id: ``prices-file:<model as written>`` or genai-prices'
        ``<provider>:<model>``; None when nothing prices it."""
        found = self._memo(model, provider, upstream) if model and model.strip() else None
        if found is None:
            return None
        in_file, genai = found
        return f"prices-file:{in_file[1][0].model}" if in_file is not None else genai.name

    def unit_prices(self, model: str | None, *, at: datetime, provider: str | None = None,
                    upstream: str | None = None, prompt_tokens: int | None = None,
                    list_price: bool = False) -> UnitPrices | None:
        """The unit prices ``estimate`` (``list_price=True``: ``list_price``) applies at ``at``; tiered
        prices by ``prompt_tokens`` (default: the base tier)."""
        found = self._memo(model, provider, upstream) if model and model.strip() else None
        picked = self._pick(not list_price, found, _as_utc(at)) if found is not None else None
        return picked[0].unit_for(_count(prompt_tokens, "prompt_tokens")) if picked else None

    def steady_picks(self, model: str | None, provider: str | None, upstream: str | None, at: datetime):
        """For a reader that prices many calls of one id (``reprice``): ``(estimate, list price, since,
        until)``, each pick ``(Rates, source)`` or None, the answer ``estimate_and_list_price`` gives for
        every instant in ``[since, until)`` around ``at`` (aware; None: unbounded). None when the answer
        depends on the instant in a way only a per-call price can tell (genai-prices' dated or
        time-of-day prices): price each call then."""
        found = self._memo(model, provider, upstream) if model else None
        if found is None:
            return None, None, None, None
        in_file, genai = found
        if genai is not None and genai.dated is not None:
            return None
        since = until = None
        if in_file is not None:  # the file's entries take over at their ``from`` instants
            starts = in_file[0]
            later = bisect_right(starts, at)
            until = starts[later] if later < len(starts) else None
            since = starts[later - 1] if later and starts[later - 1] != ALWAYS else None
        return self._pick(True, found, at), self._pick(False, found, at), since, until

    def _pick(self, file_first: bool, found, at: datetime) -> tuple[Rates, str] | None:
        in_file, genai = found
        for use_file in (file_first, not file_first):
            if use_file:
                entry = PricesFile.pick(in_file, at) if in_file is not None else None
                if entry is not None and (picked := self._file_rates[entry])[0] is not None:
                    return picked
            elif genai is not None and (rates := genai.rates_at(at)) is not None:
                return rates, genai.source
        return None

    def _price(self, file_first: bool | None, model, provider, upstream, at, prompt, completion, cached, reasoning,
               written):
        """``file_first`` True: the estimate; False: the list price; None: both, as a pair."""
        # The hot path (the writer calls it per record): ints, None and aware datetimes go straight through.
        prompt = prompt if type(prompt) is int else _count(prompt, "prompt_tokens")
        completion = completion if type(completion) is int else _count(completion, "completion_tokens")
        cached = 0 if cached is None else cached if type(cached) is int else _count(cached, "cached_tokens")
        reasoning = 0 if reasoning is None else reasoning if type(reasoning) is int else _count(reasoning, "reasoning_tokens")
        written = 0 if written is None else written if type(written) is int else _count(written, "cache_write_tokens")
        if type(at) is not datetime or at.tzinfo is None:
            at = _as_utc(at)
        nothing = (None, None) if file_first is None else None
        if not model or not counts_priceable(prompt, completion, cached, reasoning, written):
            return nothing  # no model, no tokens, or counts that contradict each other: keep it missing
        found = self._memo(model, provider, upstream)
        if found is None:
            return nothing
        if found[0] is None:  # genai-prices only, the usual case: the estimate is the list price
            genai = found[1]
            rates = genai.fixed if genai.dated is None else genai.rates_at(at)
            if rates is None:
                return nothing
            priced = Priced(rates.cost(prompt, cached, written, completion, reasoning), genai.source,
                            rates.unit_for(prompt))
            return (priced, priced) if file_first is None else priced
        out = []
        for first in (True, False) if file_first is None else (file_first,):
            picked = self._pick(first, found, at)
            if picked is None:
                out.append(None)
            elif out and out[0] is not None and out[0].source == picked[1]:
                out.append(out[0])
            else:
                rates, source = picked
                out.append(Priced(rates.cost(prompt, cached, written, completion, reasoning), source,
                                  rates.unit_for(prompt)))
        return tuple(out) if file_first is None else out[0]


def load_price_book(prices_path: str | os.PathLike | None = None, *, memo_size: int = MEMO_SIZE) -> PriceBook:
    """A ``PriceBook`` over ``prices_path``, else ``$SPENDLOG_PRICES``, else genai-prices alone.

    Raises ``PricesFileError`` (one line naming the file and the line) for a file that cannot be used."""
    origin = None
    if prices_path is None:
        prices_path = os.environ.get(PRICES_ENV) or None
        origin = PRICES_ENV if prices_path else None
    prices_file = read_prices_file(prices_path, origin=origin) if prices_path is not None else None
    return PriceBook(prices_file, memo_size=memo_size)
