"""db/changes.py and db/caching.py on SQLite and PostgreSQL: the previous period of the same length,
the change per model / app / user against it, the biggest movers, and what prompt caching saved."""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
from helpers import add_records, make_record

from spendlog.db.caching import cache_savings, cache_total
from spendlog.db.changes import compare, movers, period_days, previous_filters
from spendlog.db.estimate import price_book
from spendlog.db.periods import date_bounds
from spendlog.db.pricing import load_price_book
from spendlog.db.queries import Filters
from spendlog.db.types import quantize_money
from spendlog.report.changes import cache_lines, change_text, hit_rate_text, percent_text, saved_text

UTC = timezone.utc
MINI, SONNET, HOUSE = "openai/gpt-4o-mini", "anthropic/claude-3.5-sonnet", "selfhosted/house-model-7b"


@pytest.fixture
def conn(ledger_conn):
    return ledger_conn


add = add_records


def at(day: int, hour: int = 12) -> datetime:
    return datetime(2025, 3, day, hour, tzinfo=UTC)


def week(first: int, last: int, tz: str = "UTC") -> Filters:
    start, end = date_bounds(date(2025, 3, first), date(2025, 3, last), tz)
    return Filters(start=start, end=end)


def test_the_previous_period_has_the_same_length_in_local_days():
    f = week(8, 14)
    prev = previous_filters(f)
    assert (prev.start, prev.end) == (datetime(2025, 3, 1, tzinfo=UTC), f.start)
    assert period_days(f, "UTC") == 7
    # Europe/Berlin springs forward on 2025-03-30: that week is 167 hours; the one before is 168
    spring = week(31, 31, "Europe/Berlin")
    spring = Filters(start=date_bounds(date(2025, 3, 24), None, "Europe/Berlin")[0], end=spring.end)
    prev = previous_filters(spring, "Europe/Berlin")
    assert prev.start == date_bounds(date(2025, 3, 16), None, "Europe/Berlin")[0]
    assert prev.end == spring.start and period_days(spring, "Europe/Berlin") == 8
    odd = Filters(start=at(10, 6), end=at(10, 9), apps=("bot",))  # not whole days: a duration
    assert previous_filters(odd) == Filters(start=at(10, 3), end=at(10, 6), apps=("bot",))
    with pytest.raises(ValueError):
        previous_filters(Filters(start=at(1)))


def ledger() -> list[dict]:
    """Week 1 (Mar 1-7) and week 2 (Mar 8-14): mini rises, sonnet falls, house is new in week 2,
    app etl stops, user carol is unknown (None) in week 2."""
    out = []
    for day, model, app, user, cost in [
        (2, MINI, "bot", "alice", "1.00"), (3, MINI, "bot", "bob", "1.50"), (4, SONNET, "etl", "alice", "4.00"),
        (5, SONNET, "bot", "bob", "2.00"),
        (9, MINI, "bot", "alice", "3.00"), (10, MINI, "bot", "bob", "2.25"), (11, SONNET, "bot", "alice", "1.00"),
        (12, HOUSE, "bot", None, "0.000000000007"),
    ]:
        out.append(make_record(created_at=at(day), model=model, provider=model.split("/")[0], app=app, user=user,
                               cost_usd=Decimal(cost)))
    return out


def test_compare_gives_both_periods_per_value(conn):
    add(conn, ledger())
    rows = {c.value: c for c in compare(conn, week(8, 14), "model")}
    assert (rows[MINI].current, rows[MINI].previous, rows[MINI].change) == (Decimal("5.25"), Decimal("2.5"),
                                                                            Decimal("2.75"))
    assert rows[MINI].percent == Decimal(110) and percent_text(rows[MINI]) == "+110.0%"
    assert (rows[SONNET].current, rows[SONNET].previous) == (Decimal(1), Decimal(6))
    assert percent_text(rows[SONNET]) == "-83.3%" and change_text(rows[SONNET]) == "-$5.00"
    assert rows[HOUSE].is_new and rows[HOUSE].percent is None and percent_text(rows[HOUSE]) == "new"
    apps = {c.value: c for c in compare(conn, week(8, 14), "app")}
    assert (apps["etl"].current, apps["etl"].previous) == (Decimal(0), Decimal(4))
    assert percent_text(apps["etl"]) == "-100.0%"
    users = {c.value: c for c in compare(conn, week(8, 14), "user")}
    assert users[None].current == Decimal("0.000000000007") and users[None].is_new
    bot = Filters(start=week(8, 14).start, end=week(8, 14).end, apps=("bot",))
    only_bot = {c.value: c for c in compare(conn, bot, "model")}
    assert only_bot[SONNET].previous == Decimal(2)  # the previous period keeps the filters
    with pytest.raises(ValueError):
        compare(conn, week(8, 14), "day")


def test_movers_across_a_list_of_dimensions(conn):
    add(conn, ledger())
    found = movers(conn, week(8, 14), ["model", "app", "user"], limit=3)
    tiny = Decimal("0.000000000007")  # house (model) and the unknown user are new by as much: model first
    assert [(c.dim, c.value, c.change) for c in found.up] == [
        ("model", MINI, Decimal("2.75")), ("app", "bot", Decimal("1.75") + tiny), ("model", HOUSE, tiny)]
    assert [(c.dim, c.value, c.change) for c in found.down] == [
        ("model", SONNET, Decimal(-5)), ("app", "etl", Decimal(-4)), ("user", "bob", Decimal("-1.25"))]
    single = movers(conn, week(8, 14), ["app"])
    assert [c.value for c in single.up] == ["bot"] and [c.value for c in single.down] == ["etl"]


def cached_call(day: int, model: str, app: str, prompt: int, cached: int, **kw) -> dict:
    return make_record(created_at=at(day), model=model, provider=model.split("/")[0], app=app,
                       prompt_tokens=prompt, cached_tokens=cached, completion_tokens=10, total_tokens=prompt + 10,
                       **kw)


def _saved_by_engine(book, model: str, day: int, cached: int) -> Decimal:
    """What ``cached`` tokens saved, priced by the price book's own per-call path: the cost of the
    tokens as uncached prompt tokens minus their cost as cached ones."""
    full = book.list_price(model, at=at(day, 0), prompt_tokens=cached, completion_tokens=0)
    as_cached = book.list_price(model, at=at(day, 0), prompt_tokens=cached, completion_tokens=0, cached_tokens=cached)
    return full.cost - as_cached.cost


def test_cache_hit_rate_and_savings_per_model_and_app(conn):
    add(conn, [cached_call(9, MINI, "bot", 4000, 3000), cached_call(10, MINI, "bot", 2000, 1000),
               cached_call(10, MINI, "etl", 1000, 0), cached_call(11, SONNET, "bot", 5000, 2000),
               cached_call(11, HOUSE, "bot", 800, 400, cost_usd=None, cost_source="missing")])
    book = price_book()
    rows = {(r.model, r.app): r for r in cache_savings(conn, week(8, 14), book)}
    mini = rows[(MINI, "bot")]
    assert (mini.prompt_tokens, mini.cached_tokens) == (6000, 4000)
    assert mini.hit_rate == Decimal(4000) / Decimal(6000) and hit_rate_text(mini) == "66.7%"
    expected = _saved_by_engine(book, MINI, 9, 3000) + _saved_by_engine(book, MINI, 10, 1000)
    assert mini.saved_usd == expected == Decimal("0.0003")  # 4000 x (0.15 - 0.075) / 1M
    assert saved_text(mini) == "$0.0003"
    assert rows[(MINI, "etl")].cached_tokens == 0 and saved_text(rows[(MINI, "etl")]) == "–"
    sonnet = rows[(SONNET, "bot")]  # its list price has no cached-input rate: cached tokens billed as input
    assert sonnet.no_cache_price and sonnet.saved_usd == 0 and saved_text(sonnet) == "$0.00 (no cached price)"
    house = rows[(HOUSE, "bot")]  # nothing prices it: never $0
    assert house.saved_usd is None and house.unpriced_cached_tokens == 400 and saved_text(house) == "no price"
    total = cache_total(list(rows.values()))
    assert (total.cached_tokens, total.prompt_tokens, total.saved_usd) == (6400, 12800, expected)
    assert saved_text(total) == "$0.0003 (+400 tokens with no price)"
    lines = cache_lines(list(rows.values()))
    assert lines[0] == ("Cache         6,400 of 12,800 prompt tokens cached (50.0%); saved $0.0003 "
                        "(+400 tokens with no price) at list prices")
    assert any(line.split()[:2] == [MINI, "bot"] and line.endswith("$0.0003") for line in lines)
    assert not any("etl" in line for line in lines)  # no cached tokens: not listed


def test_cache_savings_use_the_price_of_the_calls_day(conn, tmp_path):
    prices = tmp_path / "prices.toml"
    prices.write_text('[[price]]\nmodel = "selfhosted/house-model-7b"\ninput = "2"\noutput = "4"\n'
                      'cached_input = "0.5"\n\n[[price]]\nmodel = "selfhosted/house-model-7b"\ninput = "1"\n'
                      'output = "2"\ncached_input = "0.75"\nfrom = 2025-03-10\n')
    book = load_price_book(prices)
    add(conn, [cached_call(9, HOUSE, "bot", 3_000_000, 1_000_000), cached_call(10, HOUSE, "bot", 3_000_000, 2_000_000)])
    (row,) = cache_savings(conn, week(8, 14), book)
    # Mar 9: 1M x (2 - 0.5); Mar 10: 2M x (1 - 0.75)
    assert row.saved_usd == Decimal("1.5") + Decimal("0.5")
    assert row.saved_usd == quantize_money(_saved_by_engine(book, HOUSE, 9, 1_000_000)
                                           + _saved_by_engine(book, HOUSE, 10, 2_000_000))


def test_cache_savings_of_two_models_whose_prices_change_in_the_range(conn, tmp_path):
    """Both dated models are read per day in one read and each day priced at its own price; a model
    with one price in the range is priced once."""
    other = "selfhosted/house-model-13b"
    prices = tmp_path / "prices.toml"
    prices.write_text('[[price]]\nmodel = "selfhosted/house-model-7b"\ninput = "2"\noutput = "4"\n'
                      'cached_input = "0.5"\n\n[[price]]\nmodel = "selfhosted/house-model-7b"\ninput = "1"\n'
                      'output = "2"\ncached_input = "0.75"\nfrom = 2025-03-10\n\n'
                      f'[[price]]\nmodel = "{other}"\ninput = "3"\noutput = "4"\ncached_input = "1"\n\n'
                      f'[[price]]\nmodel = "{other}"\ninput = "5"\noutput = "4"\ncached_input = "1"\nfrom = 2025-03-10\n')
    book = load_price_book(prices)
    add(conn, [cached_call(9, HOUSE, "bot", 3_000_000, 1_000_000), cached_call(10, HOUSE, "web", 3_000_000, 2_000_000),
               cached_call(9, other, "bot", 3_000_000, 1_000_000), cached_call(10, other, "bot", 3_000_000, 3_000_000)])
    saved = {(r.model, r.app): r.saved_usd for r in cache_savings(conn, week(8, 14), book)}
    # house: Mar 9 1M x (2 - 0.5), Mar 10 2M x (1 - 0.75); other: Mar 9 1M x (3 - 1), Mar 10 3M x (5 - 1)
    assert saved == {(HOUSE, "bot"): Decimal("1.5"), (HOUSE, "web"): Decimal("0.5"),
                     (other, "bot"): Decimal("2") + Decimal("12")}
