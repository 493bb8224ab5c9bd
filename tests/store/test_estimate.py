"""Estimates in the ledger (db/estimate.py through db/store.py): a call with tokens and no upstream
cost is stored with genai-prices' own calc_price for its tokens at its created_at, a billed call
gets its list price beside its bill and is otherwise unchanged, an unknown model stays missing, a
prices file overrides, and the rollup splits billed / estimated / list cost exactly."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest
from genai_prices import Usage, calc_price
from sqlalchemy import func, select

from helpers import make_record
from spendlog.db import estimate
from spendlog.db.engine import make_engine
from spendlog.db.migrate import upgrade
from spendlog.db.models import Completion, RollupDaily, RollupHourly, RollupTagDays, RollupTags, RollupTagsDaily
from spendlog.db.pricing import GENAI_PRICES_VERSION
from spendlog.db.store import insert_records, rebuild_rollups
from spendlog.db.types import quantize_money

UTC = timezone.utc
AT = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
BEFORE_CUT = datetime(2025, 6, 9, 23, 0, tzinfo=UTC)  # o3's price was cut by 80% on 2025-06-10
AFTER_CUT = datetime(2025, 6, 10, 1, 0, tzinfo=UTC)


def unbilled(**overrides) -> dict:
    """A call answered with usage but no cost (as OpenAI answers)."""
    base = dict(cost_usd=None, cost_source="missing", upstream="api.openai.com", model="gpt-4o-mini",
                provider=None, created_at=AT, prompt_tokens=1200, completion_tokens=800, total_tokens=2000,
                cached_tokens=300, reasoning_tokens=200)
    base.update(overrides)
    return make_record(**base)


def genai_cost(model: str, at: datetime, r: dict, **where) -> Decimal:
    """genai-prices' own figure for a record's tokens, quantised to the ledger's scale."""
    usage = Usage(input_tokens=r["prompt_tokens"] or 0, cache_read_tokens=r.get("cached_tokens") or 0,
                  output_tokens=r["completion_tokens"] or 0, output_reasoning_tokens=r.get("reasoning_tokens") or 0)
    return quantize_money(calc_price(usage, model, genai_request_timestamp=at, **where).total_price)


def stored(engine) -> dict[str, Completion]:
    from sqlalchemy.orm import Session

    with Session(engine) as session:
        return {r.id: r for r in session.scalars(select(Completion))}


def rollup_snapshot(conn) -> list[list[tuple]]:
    """Every row of the five rollups (hourly, daily, tags, tags daily, tag days), each table sorted."""
    return [sorted(tuple(r) for r in conn.execute(select(model.__table__)))
            for model in (RollupHourly, RollupDaily, RollupTags, RollupTagsDaily, RollupTagDays)]


@pytest.fixture
def ledger(db_url, monkeypatch):
    monkeypatch.delenv("SPENDLOG_PRICES", raising=False)
    engine = make_engine(db_url)
    upgrade(engine)
    yield engine
    engine.dispose()


def test_estimates_equal_calc_price_and_billed_calls_keep_their_bill(ledger):
    records = {
        "mini": unbilled(),
        "o3-before": unbilled(model="o3", created_at=BEFORE_CUT),
        "o3-after": unbilled(model="o3", created_at=AFTER_CUT),
        "router": unbilled(model="openai/gpt-4o-mini", upstream="api.solrouter.io", provider="openai"),
        "billed": make_record(created_at=AT, cost_usd=Decimal("0.0000148"), cost_source="upstream",
                              prompt_tokens=15, completion_tokens=83, cached_tokens=None, reasoning_tokens=None),
        "unknown": unbilled(model="acme/house-model-9", upstream="127.0.0.1:8000"),
        "no-tokens": unbilled(prompt_tokens=None, completion_tokens=None, total_tokens=None, cached_tokens=None,
                              reasoning_tokens=None, status_code=500),
    }
    with ledger.begin() as conn:
        assert insert_records(conn, list(records.values())) == len(records)
    rows = stored(ledger)
    row = {name: rows[r["id"]] for name, r in records.items()}
    openai = {"provider_api_url": "https://api.openai.com"}
    for name, model, at in (("mini", "gpt-4o-mini", AT), ("o3-before", "o3", BEFORE_CUT), ("o3-after", "o3", AFTER_CUT)):
        expected = genai_cost(model, at, records[name], **openai)
        assert (row[name].cost_usd, row[name].list_cost_usd, row[name].cost_source) == (expected, expected, "estimated")
        assert row[name].price_source == f"genai-prices {GENAI_PRICES_VERSION} openai:{model}"
    # a dated price change prices calls before and after it differently (o3: 80% less after, cache reads aside)
    assert row["o3-before"].cost_usd > 4 * row["o3-after"].cost_usd > 0
    expected = genai_cost("openai/gpt-4o-mini", AT, records["router"], provider_id="openrouter")
    assert (row["router"].cost_usd, row["router"].cost_source) == (expected, "estimated")
    assert row["router"].price_source == f"genai-prices {GENAI_PRICES_VERSION} openrouter:openai/gpt-4o-mini"
    billed = row["billed"]
    assert (billed.cost_usd, billed.cost_source) == (Decimal("0.0000148"), "upstream")
    assert billed.list_cost_usd == genai_cost("openai/gpt-4o-mini", AT, records["billed"], provider_id="openrouter")
    for name in ("unknown", "no-tokens"):
        assert (row[name].cost_usd, row[name].cost_source, row[name].price_source, row[name].list_cost_usd) == (
            None, "missing", None, None)

    with ledger.connect() as conn:
        sums = conn.execute(select(func.sum(RollupHourly.cost_usd), func.sum(RollupHourly.billed_cost_usd),
                                   func.sum(RollupHourly.estimated_cost_usd), func.sum(RollupHourly.list_cost_usd),
                                   func.sum(RollupHourly.calls_missing_cost))).one()
    estimated = sum(r.cost_usd for r in rows.values() if r.cost_source == "estimated")
    assert sums == (estimated + Decimal("0.0000148"), Decimal("0.0000148"), estimated,
                    sum(r.list_cost_usd for r in rows.values() if r.list_cost_usd is not None), 2)
    with ledger.begin() as conn:  # rebuilding from the rows gives the same rollup
        before = rollup_snapshot(conn)
        rebuild_rollups(conn)
        assert rollup_snapshot(conn) == before


def test_the_callers_record_is_never_changed_in_place(ledger):
    record = unbilled()
    copy = dict(record)
    with ledger.begin() as conn:
        insert_records(conn, [record])
    assert record == copy


def test_a_prices_file_overrides_the_estimate_not_the_list_price(ledger, tmp_path, monkeypatch):
    prices = tmp_path / "team-prices.toml"
    prices.write_text('[[price]]\nmodel = "gpt-4o-mini"\ninput = "1"\noutput = "2"\n\n'
                      '[[price]]\nmodel = "acme/house-model-9"\ninput = 3\noutput = 4\nfrom = 2026-11-01\n')
    monkeypatch.setenv("SPENDLOG_PRICES", str(prices))
    mini = unbilled(cached_tokens=0, reasoning_tokens=0)
    house = unbilled(model="acme/house-model-9", upstream="127.0.0.1:8000")
    early = unbilled(model="acme/house-model-9", upstream="127.0.0.1:8000", created_at=datetime(2026, 10, 31, tzinfo=UTC))
    with ledger.begin() as conn:
        insert_records(conn, [mini, house, early])
    rows = stored(ledger)
    assert rows[mini["id"]].cost_usd == Decimal("0.002800000000")  # 1200 x $1 + 800 x $2 per 1M
    assert rows[mini["id"]].price_source == "prices-file team-prices.toml line 1 gpt-4o-mini"
    assert rows[mini["id"]].list_cost_usd == genai_cost("gpt-4o-mini", AT, mini, provider_api_url="https://api.openai.com")
    assert (rows[house["id"]].cost_usd, rows[house["id"]].list_cost_usd) == (Decimal("0.006800000000"),) * 2
    assert rows[house["id"]].price_source == "prices-file team-prices.toml line 6 acme/house-model-9"
    assert (rows[early["id"]].cost_source, rows[early["id"]].cost_usd) == ("missing", None)  # before its `from`


def test_a_bad_prices_file_in_the_writer_never_costs_a_record(ledger, tmp_path, monkeypatch, caplog):
    prices = tmp_path / "bad.toml"
    prices.write_text('[[price]]\nmodel = "gpt-4o-mini"\ninput = "-1"\noutput = "2"\n')
    monkeypatch.setenv("SPENDLOG_PRICES", str(prices))
    record = unbilled()
    with ledger.begin() as conn:
        assert insert_records(conn, [record]) == 1
    row = stored(ledger)[record["id"]]
    assert row.cost_usd == genai_cost("gpt-4o-mini", AT, record, provider_api_url="https://api.openai.com")
    assert "bad.toml: line 3" in caplog.text


def test_the_price_book_is_loaded_once_per_file(monkeypatch, tmp_path):
    monkeypatch.delenv("SPENDLOG_PRICES", raising=False)
    assert estimate.price_book() is estimate.price_book()
    prices = tmp_path / "p.toml"
    prices.write_text('[[price]]\nmodel = "x/y"\ninput = 1\noutput = 1\n')
    monkeypatch.setenv("SPENDLOG_PRICES", str(prices))
    book = estimate.price_book()
    assert book.prices_file is not None and estimate.price_book() is book


def test_records_written_by_the_background_writer_are_estimated(db_url, monkeypatch):
    from spendlog.db import writer

    monkeypatch.delenv("SPENDLOG_PRICES", raising=False)
    record = unbilled()
    w = writer.get_writer(db_url)
    w.submit(record)
    w.flush(timeout=30)
    engine = make_engine(db_url)
    row = stored(engine)[record["id"]]
    engine.dispose()
    assert (row.cost_source, row.cost_usd) == (
        "estimated", genai_cost("gpt-4o-mini", AT, record, provider_api_url="https://api.openai.com"))


def test_token_counts_that_would_price_a_call_past_the_bound_leave_it_unpriced(db_url):
    """2**62 prompt tokens would be estimated at ~$700bn, past what a money column holds on SQLite
    (the whole batch failed with OverflowError): such a call stays missing, the others are priced."""
    from spendlog.db.estimate import MAX_PRICE_USD

    engine = make_engine(db_url)
    upgrade(engine)
    huge = make_record(created_at=AT, model="openai/gpt-4o-mini", prompt_tokens=2**62, completion_tokens=1,
                       total_tokens=2**62 + 1, cost_usd=None, cost_source="missing")
    fine = make_record(created_at=AT, model="openai/gpt-4o-mini", prompt_tokens=1000, completion_tokens=10,
                       total_tokens=1010, cost_usd=None, cost_source="missing")
    with engine.begin() as conn:
        assert insert_records(conn, [huge, fine]) == 2
    with engine.connect() as conn:
        rows = {r.id: r for r in conn.execute(select(Completion))}
    engine.dispose()
    assert (rows[huge["id"]].cost_source, rows[huge["id"]].cost_usd, rows[huge["id"]].list_cost_usd) == ("missing", None, None)
    assert rows[fine["id"]].cost_source == "estimated" and 0 < rows[fine["id"]].cost_usd <= MAX_PRICE_USD
