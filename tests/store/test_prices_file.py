"""The user's prices file (db/prices_file.py) through the price engine: it overrides and extends
genai-prices, dated entries, exact amounts, and a one-line error naming the file and the line for
every mistake."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from spendlog.db.pricing import PriceBook, PricesFileError, UnitPrices, load_price_book
from spendlog.db.prices_file import parse_prices, read_prices_file

UTC = timezone.utc
AT = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
ROUTER = "api.solrouter.io"
BOOK = PriceBook()

PRICES = """\
# negotiated rates and a self-hosted model
[[price]]
model = "openai/gpt-4o-mini"
input = "0.12"
output = "0.48"
cached_input = "0.06"
from = 2026-11-01

[[price]]
model = "openai/gpt-4o-mini"
input = 0.1
output = 0.4
from = 2026-12-01T00:00:00+05:30

[[price]]
model = "self-hosted/llama-70b"
input = "0.30"    # a GPU-hour rate expressed as a token rate
output = 0.3

[[price]]
model = "gpt-4o"
input = 2
output = 8
"""


@pytest.fixture
def prices_path(tmp_path) -> Path:
    path = tmp_path / "team-prices.toml"
    path.write_text(PRICES)
    return path


def test_the_prices_file_overrides_genai_prices_from_its_date(prices_path):
    book = load_price_book(prices_path)
    call = {"upstream": ROUTER, "prompt_tokens": 1_000_000, "completion_tokens": 1_000_000, "cached_tokens": 500_000}
    before = book.estimate("openai/gpt-4o-mini", at=datetime(2026, 10, 31, 23, 59, tzinfo=UTC), **call)
    assert before == BOOK.estimate("openai/gpt-4o-mini", at=datetime(2026, 10, 31, 23, 59, tzinfo=UTC), **call)
    first = book.estimate("openai/gpt-4o-mini", at=datetime(2026, 11, 1, tzinfo=UTC), **call)
    assert first.cost == Decimal("0.570000000000")  # 0.5 x 0.12 + 0.5 x 0.06 + 1 x 0.48
    assert first.source == "prices-file team-prices.toml line 2 openai/gpt-4o-mini"
    assert str(prices_path.parent) not in first.source
    assert first.unit == UnitPrices(Decimal("0.12"), Decimal("0.06"), None, Decimal("0.48"), None)
    # the second entry starts at 2026-11-30 18:30 UTC; TOML floats are read exactly (0.1, not 0.1000000000000000055)
    second = book.estimate("openai/gpt-4o-mini", at=datetime(2026, 11, 30, 18, 30, tzinfo=UTC), **call)
    assert second.cost == Decimal("0.500000000000")  # no cached price: cached tokens billed as input
    assert second.source == "prices-file team-prices.toml line 9 openai/gpt-4o-mini"
    assert second.unit.input == Decimal("0.1")
    assert book.estimate("openai/gpt-4o-mini", at=datetime(2026, 11, 30, 18, 29, tzinfo=UTC), **call) == first
    # the list price stays genai-prices'
    assert book.list_price("openai/gpt-4o-mini", at=AT, **call) == BOOK.estimate("openai/gpt-4o-mini", at=AT, **call)
    assert book.unit_prices("openai/gpt-4o-mini", at=AT, list_price=True) == BOOK.unit_prices("openai/gpt-4o-mini", at=AT)
    assert book.resolve("openai/gpt-4o-mini") == "prices-file:openai/gpt-4o-mini"


def test_the_prices_file_extends_genai_prices(prices_path):
    book = load_price_book(prices_path)
    assert BOOK.resolve("self-hosted/llama-70b") is None
    priced = book.estimate("self-hosted/llama-70b", upstream="10.0.0.7:8000", at=AT, prompt_tokens=3_000,
                           completion_tokens=7_000)
    assert priced.cost == Decimal("0.003000000000")
    assert priced.source == "prices-file team-prices.toml line 15 self-hosted/llama-70b"
    # a model genai-prices does not know: its list price is the file's (there is no other)
    assert book.list_price("self-hosted/llama-70b", at=AT, prompt_tokens=3_000, completion_tokens=7_000) == priced
    assert book.resolve("SELF-HOSTED/Llama-70B") == "prices-file:self-hosted/llama-70b"


def test_an_entry_without_a_provider_prices_every_providers_id_unless_an_exact_one_exists(prices_path):
    book = load_price_book(prices_path)
    for model in ("gpt-4o", "openai/gpt-4o", "azure/gpt-4o"):
        priced = book.estimate(model, at=AT, prompt_tokens=1_000_000, completion_tokens=0)
        assert (priced.cost, priced.source) == (Decimal("2.000000000000"), "prices-file team-prices.toml line 20 gpt-4o")
    assert book.estimate("lab/openai/gpt-4o", at=AT, prompt_tokens=1, completion_tokens=0) is None  # only one prefix


def test_an_unknown_model_before_its_first_price_is_none(tmp_path):
    book = PriceBook(parse_prices('[[price]]\nmodel = "mine/m"\ninput = 1\noutput = 1\nfrom = 2026-11-01\n'))
    assert book.estimate("mine/m", at=datetime(2026, 10, 31, tzinfo=UTC), prompt_tokens=1, completion_tokens=1) is None
    assert book.estimate("mine/m", at=datetime(2026, 11, 1, tzinfo=UTC), prompt_tokens=1, completion_tokens=1) is not None


def test_the_prices_file_comes_from_the_environment(prices_path, monkeypatch):
    monkeypatch.setenv("SPENDLOG_PRICES", str(prices_path))
    assert load_price_book().resolve("self-hosted/llama-70b") == "prices-file:self-hosted/llama-70b"
    monkeypatch.setenv("SPENDLOG_PRICES", "")
    assert load_price_book().prices_file is None
    monkeypatch.setenv("SPENDLOG_PRICES", str(prices_path.parent / "missing.toml"))
    with pytest.raises(PricesFileError, match=r"missing\.toml \(from SPENDLOG_PRICES\): cannot read"):
        load_price_book()


def test_an_empty_prices_file_is_genai_prices_alone(tmp_path):
    path = tmp_path / "empty.toml"
    path.write_text("# nothing yet\n")
    book = load_price_book(path)
    assert book.estimate("openai/gpt-4o-mini", at=AT, prompt_tokens=5, completion_tokens=5) == \
        BOOK.estimate("openai/gpt-4o-mini", at=AT, prompt_tokens=5, completion_tokens=5)


def _entry(*lines: str) -> str:
    return "\n".join(["# prices", "[[price]]", 'model = "a/b"', *lines]) + "\n"


BAD_FILES = [
    ('model = "x"\n[[price]\n', 2, "expected ']]' at the end of an array declaration (column 8)"),
    ("[[price]]\nmodel = \n", 2, "invalid value"),
    ('[[price]]\nmodel = "a"\nmodel = "b"\n', 3, "cannot overwrite a value"),
    ('x = """abc\n', 1, "unterminated string (at the end of the file)"),
    ('[[price]]\nmodel="a"\ninput=1\noutput=1\n\n[pricing]\ncurrency = "EUR"\n', 6, "unknown top-level key 'pricing'"),
    ("price = 3\n", 1, "'price' must be [[price]] tables"),
    ("price = [1, 2]\n", 1, "each price must be a table"),
    (_entry("input = 1", "output = 1", "currency = 'EUR'"), 6, "currency: unknown key (known keys: model, input"),
    (_entry("input = 1"), 2, "this price has no 'output'"),
    ("[[price]]\ninput = 1\noutput = 2\n", 1, "this price has no 'model'"),
    (_entry("input = -0.01", "output = 1"), 4, "input: must not be negative (got -0.01)"),
    (_entry("input = 1", 'output = "-2"'), 5, "output: must not be negative (got -2)"),
    (_entry("input = 1", 'output = "cheap"'), 5, "output: must be a price in USD per 1M tokens (got 'cheap')"),
    (_entry("input = 1", 'output = "NaN"'), 5, "output: must be a finite price"),
    (_entry("input = inf", "output = 1"), 4, "input: must be a finite price"),
    (_entry("input = true", "output = 1"), 4, "input: must be a price in USD per 1M tokens, not true"),
    (_entry("input = [1]", "output = 1"), 4, "input: must be a price in USD per 1M tokens (got a list)"),
    (_entry("input = 1", "output = 1", "cached_input = {a = 1}"), 6, "cached_input: must be a price"),
    (_entry("input = 1", "output = 1", 'from = "next week"'), 6, "from: must be a date such as 2026-11-01"),
    (_entry("input = 1", "output = 1", "from = 2026-11-01T10:00:00"), 6, "from: a date-time needs an offset"),
    (_entry("input = 1", "output = 1", "from = 10:00:00"), 6, "from: must be a date such as 2026-11-01 (got a time of day)"),
    (_entry("input = 1", "output = 1", "from = 2026-02-30"), 6, "invalid date or datetime"),
    ('[[price]]\nmodel = ""\ninput = 1\noutput = 1\n', 2, "model: must be a non-empty string"),
    ("[[price]]\nmodel = 7\ninput = 1\noutput = 1\n", 2, "model: must be a non-empty string"),
    ('[[price]]\nmodel = " a/b"\ninput = 1\noutput = 1\n', 2, "model: must be a model id as recorded"),
    (f'[[price]]\nmodel = "{"m" * 256}"\ninput = 1\noutput = 1\n', 2, "model: must be a model id as recorded"),
    ('[[price]]\nmodel = "a/b"\ninput = 1\noutput = 1\n\n[[price]]\nmodel = "A/B"\ninput = 2\noutput = 2\n', 6,
     "a second price for 'A/B' without 'from' (the first is at line 1)"),
    ('[[price]]\nmodel = "a/b"\ninput = 1\noutput = 1\nfrom = 2026-01-01\n[[ price ]]\nmodel = "a/b"\ninput = 2\n'
     'output = 2\nfrom = "2026-01-01"\n', 6, "a second price for 'a/b' from 2026-01-01T00:00:00+00:00 (the first is at line 1)"),
]


@pytest.mark.parametrize(("text", "line", "message"), BAD_FILES, ids=[m[:40] for _, _, m in BAD_FILES])
def test_a_bad_prices_file_is_one_line_naming_the_file_and_the_line(tmp_path, text, line, message):
    path = tmp_path / "prices.toml"
    path.write_text(text)
    with pytest.raises(PricesFileError) as caught:
        load_price_book(path)
    text = str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert "\n" not in text
    assert text.startswith(f"{path}: line {line}: "), text
    assert message in text, text


def test_a_prices_file_that_is_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[[price]]\nmodel = "caf\xe9"\n')
    with pytest.raises(PricesFileError, match=r"latin1\.toml: line 2: not UTF-8 text$"):
        read_prices_file(path)


def test_a_missing_prices_file_is_one_line(tmp_path):
    with pytest.raises(PricesFileError, match=r"nope\.toml: cannot read the prices file: No such file"):
        load_price_book(tmp_path / "nope.toml")


@pytest.mark.parametrize(("model", "tokens"), [
    ("openai/gpt-4o-mini", (1000, 100)), ("self-hosted/llama-70b", (1000, 100)), ("openai/gpt-4o", (5, 5)),
    ("gpt-4o-mini", (1000, 100)), ("x/unknown", (1000, 100)), ("openai/gpt-4o-mini", (0, 0)),
])
def test_estimate_and_list_price_is_the_pair_of_both(prices_path, model, tokens):
    book = load_price_book(prices_path)
    call = {"upstream": ROUTER, "at": AT, "prompt_tokens": tokens[0], "completion_tokens": tokens[1]}
    assert book.estimate_and_list_price(model, **call) == (book.estimate(model, **call), book.list_price(model, **call))
