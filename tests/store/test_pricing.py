"""The price engine (db/pricing.py, db/price_rates.py, db/prices_file.py): estimates equal
genai-prices' own calc_price, ids resolve as a router serves them, dated prices, the user's prices
file, one-line errors for bad files, and no network ever."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from dataclasses import FrozenInstanceError
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from genai_prices import Usage, calc_price
from genai_prices.data import providers as PROVIDERS
from genai_prices.types import ModelPrice, Tier, TieredPrices
from hypothesis import given, settings
from hypothesis import strategies as st

from spendlog.db.price_rates import compile_prices
from spendlog.db.pricing import GENAI_PRICES_VERSION, PriceBook, Priced, UnitPrices
from spendlog.db.prices_file import parse_prices
from spendlog.db.types import quantize_money

UTC = timezone.utc
AT = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
EXAMPLES = int(os.environ.get("SPENDLOG_HYPOTHESIS_EXAMPLES", "200"))
BOOK = PriceBook()
ROUTER = "api.solrouter.io"

# Where each provider's own API lives (genai-prices matches these hosts with its api_pattern).
HOSTS = {
    "openai": "api.openai.com", "anthropic": "api.anthropic.com", "google": "generativelanguage.googleapis.com",
    "deepseek": "api.deepseek.com", "mistral": "api.mistral.ai", "x-ai": "api.x.ai", "groq": "api.groq.com",
    "together": "api.together.xyz", "perplexity": "api.perplexity.ai", "azure": "myteam.openai.azure.com",
}
# Instants around genai-prices' dated prices: o3's cut on 2025-06-10, deepseek's off-peak hours (00:30-16:30
# UTC), openrouter's meta-llama changes on 2026-10-19 and 2026-11-03.
INSTANTS = [
    datetime(2024, 3, 1, tzinfo=UTC), datetime(2025, 6, 9, 23, 59, 59, tzinfo=UTC), datetime(2025, 6, 10, tzinfo=UTC),
    datetime(2026, 11, 20, 3, 0, tzinfo=UTC), datetime(2026, 11, 20, 20, 0, tzinfo=UTC),
]
# (prompt, cached, cache_write, completion, reasoning): OpenAI style, parts inside their totals.
USAGES = [(1200, 300, 100, 800, 200), (250_000, 50_000, 0, 1_000, 0), (7, 0, 0, 0, 0), (0, 0, 0, 3, 3),
          (1_000_000, 0, 0, 1_000_000, 999_999)]


def _token_priced(model) -> bool:
    prices = [model.prices] if isinstance(model.prices, ModelPrice) else [c.prices for c in model.prices]
    return all(compile_prices(p) is not None for p in prices)


def _real_cases() -> list[tuple[str, str, str]]:
    """(genai-prices provider, model id, upstream host): every provider above spread evenly, and 16
    of openrouter's ids called through the router. Named ones first: they carry dated and tiered prices."""
    by_id = {p.id: p for p in PROVIDERS}
    cases = [("openai", "o3", HOSTS["openai"]), ("deepseek", "deepseek-chat", HOSTS["deepseek"]),
             ("google", "gemini-2.5-pro", HOSTS["google"]), ("anthropic", "claude-sonnet-4-5", HOSTS["anthropic"]),
             ("openrouter", "meta-llama/llama-3.1-70b-instruct", ROUTER), ("perplexity", "sonar", HOSTS["perplexity"]),
             ("perplexity", "sonar-deep-research", HOSTS["perplexity"])]
    for provider, count in [*((p, 3) for p in HOSTS), ("openrouter", 16)]:
        models = [m for m in by_id[provider].models if _token_priced(m) and m.is_match(m.id)
                  and (provider != "openrouter" or "/" in m.id)]  # a router serves provider/model ids
        for i in range(count):
            model = models[(i * len(models)) // count]
            host = ROUTER if provider == "openrouter" else HOSTS[provider]
            if (provider, model.id, host) not in cases:
                cases.append((provider, model.id, host))
    return cases


CASES = _real_cases()


def _genai(model: str, host: str, at: datetime, usage: tuple[int, ...]):
    prompt, cached, written, completion, reasoning = usage
    kwargs = {"provider_id": "openrouter"} if host == ROUTER else {"provider_api_url": f"https://{host}"}
    return calc_price(Usage(input_tokens=prompt, cache_read_tokens=cached, cache_write_tokens=written,
                            output_tokens=completion, output_reasoning_tokens=reasoning),
                      model, genai_request_timestamp=at, **kwargs)


def _ours(book: PriceBook, model: str, host: str | None, at: datetime, usage: tuple[int, ...], *, list_price=False):
    prompt, cached, written, completion, reasoning = usage
    price = book.list_price if list_price else book.estimate
    return price(model, upstream=host, at=at, prompt_tokens=prompt, completion_tokens=completion,
                 cached_tokens=cached, cache_write_tokens=written, reasoning_tokens=reasoning)


def test_the_real_cases_are_a_few_dozen_models_with_dated_and_tiered_prices():
    assert len(CASES) >= 40
    models = [next(m for p in PROVIDERS if p.id == prov for m in p.models if m.id == mid) for prov, mid, _ in CASES]
    assert sum(isinstance(m.prices, list) for m in models) >= 4
    prices = [p for m in models for p in ([m.prices] if isinstance(m.prices, ModelPrice) else [c.prices for c in m.prices])]
    assert any(isinstance(v, TieredPrices) for p in prices for v in p.__dict__.values())
    assert any(getattr(p, "output_reasoning_mtok") is not None for p in prices)
    assert any(getattr(p, "requests_kcount") is not None for p in prices)


@pytest.mark.parametrize(("provider", "model", "host"), CASES, ids=[f"{p}:{m}" for p, m, _ in CASES])
def test_estimate_equals_genai_prices_calc_price(provider, model, host):
    for at in INSTANTS:
        for usage in USAGES:
            expected = _genai(model, host, at, usage)
            got = _ours(BOOK, model, host, at, usage)
            assert got is not None, (model, at, usage)
            assert got.cost == quantize_money(expected.total_price), (model, at, usage)
            assert got.cost.as_tuple().exponent == -12
            assert got.source == f"genai-prices {GENAI_PRICES_VERSION} {expected.provider.id}:{expected.model.id}"
            assert _ours(BOOK, model, host, at, usage, list_price=True) == got  # no prices file: list = estimate
            prompt, cached, written, completion, reasoning = usage
            assert BOOK.estimate_and_list_price(model, upstream=host, at=at, prompt_tokens=prompt,
                                                completion_tokens=completion, cached_tokens=cached,
                                                cache_write_tokens=written, reasoning_tokens=reasoning) == (got, got)


PROPERTY_MODELS = [("openai", "gpt-4o-mini", HOSTS["openai"]), ("openai", "o3", HOSTS["openai"]),
                   ("google", "gemini-2.5-pro", HOSTS["google"]), ("anthropic", "claude-sonnet-4-5", HOSTS["anthropic"]),
                   ("deepseek", "deepseek-chat", HOSTS["deepseek"]), ("perplexity", "sonar", HOSTS["perplexity"]),
                   ("perplexity", "sonar-deep-research", HOSTS["perplexity"]),
                   ("openrouter", "openai/gpt-4o-mini", ROUTER), ("openrouter", "meta-llama/llama-3.1-70b-instruct", ROUTER)]


@st.composite
def usages(draw):
    prompt = draw(st.integers(0, 3_000_000))
    cached = draw(st.integers(0, prompt))
    written = draw(st.integers(0, prompt - cached))
    completion = draw(st.integers(0 if prompt else 1, 500_000))
    reasoning = draw(st.integers(0, completion))
    return prompt, cached, written, completion, reasoning


@settings(max_examples=EXAMPLES, deadline=None)
@given(case=st.sampled_from(PROPERTY_MODELS), usage=usages(),
       at=st.datetimes(datetime(2023, 1, 1), datetime(2027, 12, 31), timezones=st.just(UTC)))
def test_estimate_equals_calc_price_for_any_token_counts(case, usage, at):
    provider, model, host = case
    got = _ours(BOOK, model, host, at, usage)
    assert got is not None
    assert got.cost == quantize_money(_genai(model, host, at, usage).total_price)


PRICE = st.integers(0, 15).flatmap(lambda places: st.decimals(min_value=0, max_value=1000, places=places))


@settings(max_examples=EXAMPLES, deadline=None)
@given(prices=st.lists(PRICE, min_size=5, max_size=5), start=st.integers(0, 400_000), usage=usages())
def test_compiled_prices_equal_genai_prices_arithmetic_for_any_prices(prices, start, usage):
    """Our own ModelPrice through genai-prices' public types: many decimal places (the rounding path),
    tiers, every token part priced."""
    inp, cached, write, out, reasoning = prices
    model_price = ModelPrice(input_mtok=TieredPrices(base=inp, tiers=[Tier(start=start, price=inp * 2)]),
                             cache_read_mtok=cached, cache_write_mtok=write, output_mtok=out,
                             output_reasoning_mtok=reasoning)
    prompt, c, w, o, r = usage
    expected = model_price.calc_price(Usage(input_tokens=prompt, cache_read_tokens=c, cache_write_tokens=w,
                                            output_tokens=o, output_reasoning_tokens=r))["total_price"]
    assert compile_prices(model_price).cost(prompt, c, w, o, r) == quantize_money(expected)


def test_rounding_past_twelve_places_is_half_even():
    rates = compile_prices(ModelPrice(input_mtok=Decimal("0.0000005"), output_mtok=Decimal("0.0000015")))
    assert rates.cost(1, 0, 0, 0, 0) == Decimal("0E-12")  # 5E-13 -> 0 (even)
    assert rates.cost(0, 0, 0, 1, 0) == Decimal("0.000000000002")  # 1.5E-12 -> 2 (even)
    assert rates.cost(3, 0, 0, 0, 0) == Decimal("0.000000000002")  # 1.5E-12 -> 2
    assert rates.cost(5, 0, 0, 0, 0) == Decimal("0.000000000002")  # 2.5E-12 -> 2 (even)


# --- model ids -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("model", "provider", "upstream", "entry"), [
    # provider-prefixed ids, as SolRouter and OpenRouter serve them: the router's entry first
    ("openai/gpt-4o-mini", None, ROUTER, "openrouter:openai/gpt-4o-mini"),
    ("anthropic/claude-3.5-sonnet", None, ROUTER, "openrouter:anthropic/claude-3.5-sonnet"),
    ("google/gemini-2.0-flash-001", "google", ROUTER, "openrouter:google/gemini-2.0-flash-001"),
    ("meta-llama/llama-3.1-70b-instruct", None, None, "openrouter:meta-llama/llama-3.1-70b-instruct"),
    ("openai/gpt-4o-mini-2024-07-18", None, ROUTER, "openrouter:openai/gpt-4o-mini"),
    ("openai/gpt-4o-mini-20240718", None, ROUTER, "openrouter:openai/gpt-4o-mini"),
    ("OpenAI/GPT-4o-mini", None, ROUTER, "openrouter:openai/gpt-4o-mini"),
    ("openai/gpt-4o-mini", None, "127.0.0.1:8765", "openrouter:openai/gpt-4o-mini"),
    # ... else the named provider's own model
    ("anthropic/claude-3-5-sonnet", None, ROUTER, "anthropic:claude-3-5-sonnet"),
    ("x-ai/grok-2", None, ROUTER, "x-ai:grok-2-1212"),
    ("mistral-large", "mistralai", None, "mistral:mistral-large"),
    # the upstream host's own provider
    ("openai/gpt-4o-mini", None, "openrouter.ai", "openrouter:openai/gpt-4o-mini"),
    ("gpt-4o-mini", None, "api.openai.com", "openai:gpt-4o-mini"),
    ("gpt-4o-mini-2024-07-18", None, "api.openai.com", "openai:gpt-4o-mini"),
    ("GPT-4o-Mini", None, "api.openai.com:443", "openai:gpt-4o-mini"),
    ("gpt-4o-mini", None, "myteam.openai.azure.com", "azure:gpt-4o-mini"),
    ("claude-3-5-sonnet-20241022", None, "api.anthropic.com", "anthropic:claude-3-5-sonnet"),
    ("gemini-1.5-pro", None, "generativelanguage.googleapis.com", "google:gemini-1.5-pro"),
    # unknown hosts and no host: genai-prices' matching by model name
    ("gpt-4o-mini", None, "10.0.0.7:8000", "openai:gpt-4o-mini"),
    ("claude-3-5-sonnet-latest", None, None, "anthropic:claude-3-5-sonnet"),
    ("deepseek-chat", "deepseek", None, "deepseek:deepseek-chat"),
])
def test_ids_resolve_as_the_router_would_serve_them(model, provider, upstream, entry):
    assert BOOK.resolve(model, provider, upstream) == entry
    priced = BOOK.estimate(model, provider=provider, upstream=upstream, at=AT, prompt_tokens=10, completion_tokens=5)
    assert priced.source == f"genai-prices {GENAI_PRICES_VERSION} {entry}"


def test_a_prefixed_id_is_priced_at_the_routers_entry_not_the_providers():
    """genai-prices' openrouter entry is what a router charges for the id: calc_price(provider_id='openrouter')."""
    via_router = BOOK.estimate("openai/gpt-4o-mini", upstream=ROUTER, at=AT, prompt_tokens=1000, completion_tokens=0)
    expected = calc_price(Usage(input_tokens=1000), "openai/gpt-4o-mini", provider_id="openrouter",
                          genai_request_timestamp=AT)
    assert via_router.cost == quantize_money(expected.total_price) == Decimal("0.000150000000")


@pytest.mark.parametrize(("model", "provider", "upstream"), [
    ("selfhosted/llama-70b", None, "10.0.0.7:8000"), ("qwen/not-a-model-at-all", None, ROUTER),
    ("my-finetune", None, None), ("my-finetune", "openai", "api.openai.com"), ("", None, None), (None, None, None),
    ("   ", None, None), ("openai/", None, ROUTER), ("/gpt-4o-mini", None, None),
    ("whisper-1", None, "api.openai.com"),  # priced per minute of audio: tokens cannot price it
])
def test_an_unknown_model_is_none_never_zero(model, provider, upstream):
    assert BOOK.resolve(model, provider, upstream) is None
    assert BOOK.estimate(model, provider=provider, upstream=upstream, at=AT, prompt_tokens=10,
                         completion_tokens=10) is None
    assert BOOK.list_price(model, provider=provider, upstream=upstream, at=AT, prompt_tokens=10,
                           completion_tokens=10) is None
    assert BOOK.unit_prices(model, provider=provider, upstream=upstream, at=AT) is None


# --- tokens ------------------------------------------------------------------------------------------

def test_cached_tokens_are_part_of_the_prompt_and_reasoning_part_of_the_completion():
    # openai gpt-4o-mini: input 0.15, cached input 0.075, output 0.6 per 1M; no reasoning price of its own
    priced = BOOK.estimate("gpt-4o-mini", upstream="api.openai.com", at=AT, prompt_tokens=1000,
                           completion_tokens=500, cached_tokens=400, reasoning_tokens=300)
    assert priced.cost == Decimal("0.000420000000")  # 600 x 0.15 + 400 x 0.075 + 500 x 0.6, per 1M
    no_reasoning = BOOK.estimate("gpt-4o-mini", upstream="api.openai.com", at=AT, prompt_tokens=1000,
                                 completion_tokens=500, cached_tokens=400)
    assert no_reasoning.cost == priced.cost  # reasoning is inside completion: never billed twice
    assert priced.unit == UnitPrices(Decimal("0.15"), Decimal("0.075"), None, Decimal("0.6"), None)


def test_reasoning_with_a_price_of_its_own_is_billed_at_it_once():
    book = PriceBook(parse_prices(textwrap.dedent("""\
        [[price]]
        model = "lab/thinker"
        input = 1
        output = 2
        reasoning = 10
        cache_write = 3
        """)))
    priced = book.estimate("lab/thinker", at=AT, prompt_tokens=1000, completion_tokens=100, reasoning_tokens=40,
                           cache_write_tokens=200)
    # (1000 - 200) x 1 + 200 x 3 + (100 - 40) x 2 + 40 x 10, per 1M
    assert priced.cost == Decimal("0.001920000000")


@pytest.mark.parametrize("tokens", [
    {"prompt_tokens": 0, "completion_tokens": 0}, {"prompt_tokens": None, "completion_tokens": None},
    {"prompt_tokens": 10, "completion_tokens": 5, "cached_tokens": 11},
    {"prompt_tokens": 10, "completion_tokens": 5, "cached_tokens": 6, "cache_write_tokens": 5},
    {"prompt_tokens": 10, "completion_tokens": 5, "reasoning_tokens": 6},
    {"prompt_tokens": -1, "completion_tokens": 5}, {"prompt_tokens": 10, "completion_tokens": 5, "cached_tokens": -1},
])
def test_no_tokens_or_contradicting_counts_are_none(tokens):
    assert BOOK.estimate("openai/gpt-4o-mini", upstream=ROUTER, at=AT, **tokens) is None


def test_one_side_unknown_prices_the_other():
    priced = BOOK.estimate("openai/gpt-4o-mini", at=AT, prompt_tokens=None, completion_tokens=1_000_000)
    assert priced.cost == Decimal("0.600000000000")


@pytest.mark.parametrize("bad", [{"prompt_tokens": 1.0}, {"completion_tokens": "5"}, {"cached_tokens": True},
                                 {"at": "2026-11-20"}, {"at": 1764000000}])
def test_wrong_types_are_a_programming_error(bad):
    kwargs = {"at": AT, "prompt_tokens": 10, "completion_tokens": 5, **bad}
    with pytest.raises(TypeError):
        BOOK.estimate("openai/gpt-4o-mini", **kwargs)


def test_a_naive_instant_is_read_as_utc():
    naive = BOOK.estimate("openai/o3", at=datetime(2025, 6, 9, 23, 0), prompt_tokens=10**6, completion_tokens=0)
    aware = BOOK.estimate("openai/o3", at=datetime(2025, 6, 9, 23, 0, tzinfo=UTC), prompt_tokens=10**6,
                          completion_tokens=0)
    assert naive == aware


# --- dated and tiered prices -----------------------------------------------------------------------

@pytest.mark.parametrize(("model", "host", "change"), [
    ("o3", "api.openai.com", datetime(2025, 6, 10, tzinfo=UTC)),  # the 80% cut
    ("meta-llama/llama-3.1-70b-instruct", ROUTER, datetime(2026, 10, 19, tzinfo=UTC)),
    ("meta-llama/llama-3.1-70b-instruct", ROUTER, datetime(2026, 11, 3, tzinfo=UTC)),
    ("deepseek-chat", "api.deepseek.com", datetime(2026, 11, 20, 16, 30, tzinfo=UTC)),  # off-peak ends
])
def test_a_dated_price_change_prices_calls_before_and_after_it_differently(model, host, change):
    usage = (100_000, 0, 0, 20_000, 0)
    before, after = change - timedelta(microseconds=1), change
    priced_before, priced_after = _ours(BOOK, model, host, before, usage), _ours(BOOK, model, host, after, usage)
    assert priced_before.cost != priced_after.cost
    for at, priced in ((before, priced_before), (after, priced_after)):
        assert priced.cost == quantize_money(_genai(model, host, at, usage).total_price)


def test_the_o3_cut_by_the_numbers():
    before = BOOK.unit_prices("o3", upstream="api.openai.com", at=datetime(2025, 6, 9, tzinfo=UTC))
    after = BOOK.unit_prices("o3", upstream="api.openai.com", at=datetime(2025, 6, 10, tzinfo=UTC))
    assert (before.input, before.output) == (Decimal("10"), Decimal("40"))
    assert (after.input, after.output) == (Decimal("2"), Decimal("8"))


def test_tiered_prices_follow_the_prompt_size():
    small = BOOK.unit_prices("gemini-2.5-pro", upstream=HOSTS["google"], at=AT, prompt_tokens=200_000)
    large = BOOK.unit_prices("gemini-2.5-pro", upstream=HOSTS["google"], at=AT, prompt_tokens=200_001)
    assert large.input > small.input and large.output > small.output
    priced = BOOK.estimate("gemini-2.5-pro", upstream=HOSTS["google"], at=AT, prompt_tokens=200_001,
                           completion_tokens=1)
    assert priced.unit == large
    assert priced.cost == (200_001 * large.input + large.output) / 1_000_000


# --- the book itself -----------------------------------------------------------------------------------

def test_price_book_and_priced_are_immutable():
    priced = BOOK.estimate("openai/gpt-4o-mini", at=AT, prompt_tokens=1, completion_tokens=1)
    with pytest.raises(FrozenInstanceError):
        priced.cost = Decimal(0)
    with pytest.raises(AttributeError):
        BOOK.memo = None
    assert isinstance(priced, Priced)


def test_the_memo_is_bounded_and_eviction_changes_no_answer():
    book = PriceBook(memo_size=8)
    ids = [f"selfhosted/m{i}" for i in range(50)] + ["openai/gpt-4o-mini", "gpt-4o-mini", "anthropic/claude-3.5-sonnet"]
    first = [book.estimate(m, at=AT, prompt_tokens=100, completion_tokens=10) for m in ids * 2]
    assert book.cache_info().currsize <= 8
    assert first == [BOOK.estimate(m, at=AT, prompt_tokens=100, completion_tokens=10) for m in ids * 2]
    assert first[-3:] == first[len(ids) - 3 : len(ids)] and first[-1] is not None


def test_one_book_shared_by_threads_gives_each_the_same_answers():
    book = PriceBook(memo_size=16)
    calls = [(m, p, 7 * p) for p in range(1, 60) for m in ("openai/gpt-4o-mini", "o3", "x/unknown", "deepseek-chat")]
    expected = [BOOK.estimate(m, at=AT, prompt_tokens=p, completion_tokens=c) for m, p, c in calls]
    results: list[list] = [[] for _ in range(4)]

    def work(out: list) -> None:
        out.extend(book.estimate(m, at=AT, prompt_tokens=p, completion_tokens=c) for m, p, c in calls)

    threads = [threading.Thread(target=work, args=(out,)) for out in results]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(out == expected for out in results)


NO_NETWORK = textwrap.dedent("""\
    import json, socket, sys, threading

    def refuse(*args, **kwargs):
        raise OSError("network use during pricing")

    socket.socket.connect = socket.socket.connect_ex = refuse
    socket.create_connection = socket.getaddrinfo = refuse

    import genai_prices
    from genai_prices.data_snapshot import DataSnapshot, set_custom_snapshot
    from datetime import datetime, timezone
    from spendlog.db.pricing import load_price_book

    # a snapshot set process-wide (as genai-prices' updater does) is not what spendlog prices with
    set_custom_snapshot(DataSnapshot(providers=[], from_auto_update=True))
    book = load_price_book(sys.argv[1])
    at = datetime(2026, 11, 20, tzinfo=timezone.utc)
    out = {}
    for model, upstream in [("openai/gpt-4o-mini", "api.solrouter.io"), ("gpt-4o-mini", "api.openai.com"),
                            ("self-hosted/llama-70b", None), ("o3", None), ("x/unknown", None)]:
        est = book.estimate(model, upstream=upstream, at=at, prompt_tokens=1000, completion_tokens=100)
        lst = book.list_price(model, upstream=upstream, at=at, prompt_tokens=1000, completion_tokens=100)
        out[model] = [None if p is None else [str(p.cost), p.source] for p in (est, lst)]
    out["threads"] = threading.active_count()
    out["updated"] = genai_prices.wait_prices_updated_sync(0)
    print(json.dumps(out))
""")


def test_pricing_works_with_the_network_blocked_and_starts_no_updater(tmp_path):
    prices_path = tmp_path / "team-prices.toml"
    prices_path.write_text('[[price]]\nmodel = "openai/gpt-4o-mini"\ninput = "0.12"\noutput = "0.48"\n\n'
                           '[[price]]\nmodel = "self-hosted/llama-70b"\ninput = "0.30"\noutput = "0.30"\n')
    script = tmp_path / "no_network.py"
    script.write_text(NO_NETWORK)
    done = subprocess.run([sys.executable, str(script), str(prices_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    version = GENAI_PRICES_VERSION
    assert out["openai/gpt-4o-mini"] == [["0.000168000000", "prices-file team-prices.toml line 1 openai/gpt-4o-mini"],
                                         ["0.000210000000", f"genai-prices {version} openrouter:openai/gpt-4o-mini"]]
    assert out["gpt-4o-mini"] == [["0.000210000000", f"genai-prices {version} openai:gpt-4o-mini"]] * 2
    assert out["self-hosted/llama-70b"] == [["0.000330000000", "prices-file team-prices.toml line 6 self-hosted/llama-70b"]] * 2
    assert out["o3"][0] == ["0.002800000000", f"genai-prices {version} openai:o3"]
    assert out["x/unknown"] == [None, None]
    assert out["threads"] == 1 and out["updated"] is False
