"""The dashboard's price figures (issue 14 phase 2) through AppTest on real ledgers: the total's
split into billed / estimated / unpriced, the per-model list cost and markup, the what-if panel.

Expected figures come from the records as the store prices them (``price_record``) and from the
price book's own per-call ``estimate``, summed in Python; not from the page's code."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal

import pytest
from helpers import make_record
from test_dashboard import RANGE, metric, open_app, seed

from spendlog.dashboard import prices
from spendlog.db.estimate import price_book, price_record
from spendlog.report.money import money_display

UTC = timezone.utc
START = datetime(2025, 3, 10, 9, tzinfo=UTC)
MINI, SONNET, UNKNOWN = "openai/gpt-4o-mini", "anthropic/claude-3.5-sonnet", "selfhosted/house-model-7b"


def priced_ledger() -> list[dict]:
    """Billed calls (their cost about 1.1x list), unbilled calls to priced models (estimated) and
    unbilled calls to a model no price list knows (unpriced)."""
    out = []
    for i in range(12):
        model = (MINI, SONNET)[i % 2]
        tokens = {"prompt_tokens": 1000 * (i + 1), "completion_tokens": 400 * (i + 1)}
        tokens["total_tokens"] = tokens["prompt_tokens"] + tokens["completion_tokens"]
        at = START + timedelta(hours=5 * i)
        record = make_record(created_at=at, model=model, provider=model.split("/")[0], cost_usd=None,
                             cost_source="missing", status_code=200, **tokens)
        if i % 3 != 2:  # billed at 1.1x the list price the store gives the same call
            listed = price_record(price_book(), dict(record))["list_cost_usd"]
            record.update(cost_usd=(listed * Decimal("1.1")).quantize(Decimal("0.000000000001")),
                          cost_source="upstream")
        out.append(record)  # else no bill: the store estimates it
    out.append(make_record(created_at=START + timedelta(hours=3), model=UNKNOWN, provider=None, cost_usd=None,
                           cost_source="missing", status_code=200, prompt_tokens=50, completion_tokens=5,
                           total_tokens=55))
    book = price_book()
    return [price_record(book, r) for r in out]


def _sums(records):
    zero = Decimal(0)
    return {
        "billed": sum((r["cost_usd"] for r in records if r["cost_source"] == "upstream"), zero),
        "estimated": sum((r["cost_usd"] for r in records if r["cost_source"] == "estimated"), zero),
        "list": sum((r["list_cost_usd"] for r in records if r.get("list_cost_usd") is not None), zero),
        "unpriced": sum(1 for r in records if r["cost_source"] == "missing"),
    }


@pytest.fixture
def ledger(db_url):  # SQLite and PostgreSQL
    records = priced_ledger()
    seed(db_url, records)
    return db_url, records


def test_the_total_is_split_into_billed_estimated_and_unpriced(monkeypatch, ledger):
    url, records = ledger
    exp = _sums(records)
    assert exp["billed"] > 0 and exp["estimated"] > 0 and exp["unpriced"] == 1
    at = open_app(monkeypatch, url, RANGE)
    labels = [m.label for m in at.metric]
    assert f"Total spend (incl. {money_display(exp['estimated'])} estimated)" in labels
    assert metric(at, "Total spend") == money_display(exp["billed"] + exp["estimated"])
    split = next(c.value for c in at.caption if c.value.startswith("Of it: "))
    assert split == (f"Of it: billed \\{money_display(exp['billed'])} · estimated \\{money_display(exp['estimated'])}"
                     f" · unpriced 1 call · list price \\{money_display(exp['list'])}")


def test_a_total_of_bills_only_is_not_labelled_estimated(monkeypatch, sqlite_url):
    records = [r for r in priced_ledger() if r["cost_source"] == "upstream"]
    seed(sqlite_url, records)
    at = open_app(monkeypatch, sqlite_url, RANGE)
    assert "Total spend" in [m.label for m in at.metric]
    assert not any(m.label.startswith("Total spend (incl.") for m in at.metric)


def _pct(value: Decimal) -> str:
    pct = (value * 100).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
    return f"{'+' if pct > 0 else ''}{pct}%"


def test_the_per_model_table_shows_list_cost_and_markup(monkeypatch, ledger):
    url, records = ledger
    at = open_app(monkeypatch, url, RANGE)
    table = next(d.value for d in at.dataframe if "Markup" in d.value.columns)
    rows = {r["Model"]: r for _, r in table.iterrows()}
    for model in (MINI, SONNET):
        mine = [r for r in records if r["model"] == model]
        exp = _sums(mine)
        billed_list = sum((r["list_cost_usd"] for r in mine if r["cost_source"] == "upstream"), Decimal(0))
        assert rows[model]["List cost"] == money_display(exp["list"])
        assert rows[model]["Estimated"] == money_display(exp["estimated"])
        # the bills were 1.1x their list price; the estimates are at list price
        assert rows[model]["Markup"] == _pct((exp["billed"] - billed_list) / billed_list) == "+10.0%"
    assert rows[UNKNOWN]["Markup"] == "–" and rows[UNKNOWN]["List cost"] == "$0.00"


def test_the_what_if_panel_prices_the_calls_on_the_picked_model(monkeypatch, ledger):
    url, records = ledger
    at = open_app(monkeypatch, url, RANGE)
    assert not any("Cost on" in " ".join(d.value.columns) for d in at.dataframe)  # nothing read before a pick
    at.selectbox(key="whatif_model").select(SONNET)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    table = next(d.value for d in at.dataframe if f"Cost on {SONNET}" in d.value.columns)
    rows = {r["Model"]: r for _, r in table.iterrows()}
    book = price_book()
    total_as = Decimal(0)
    for model in (MINI, SONNET, UNKNOWN):
        mine = [r for r in records if r["model"] == model]
        actual = sum((r["cost_usd"] for r in mine if r["cost_usd"] is not None), Decimal(0))
        as_target = sum((book.estimate(SONNET, at=r["created_at"], prompt_tokens=r["prompt_tokens"],
                                       completion_tokens=r["completion_tokens"]).cost for r in mine), Decimal(0))
        total_as += as_target
        assert rows[model]["Requests"] == str(len(mine))
        assert rows[model]["Actual cost"] == money_display(actual)
        assert rows[model][f"Cost on {SONNET}"] == money_display(as_target)
        diff = as_target - actual
        assert rows[model]["Difference"] == ("+" if diff > 0 else "") + money_display(diff)
    assert rows["Total"][f"Cost on {SONNET}"] == money_display(total_as)
    assert rows[UNKNOWN]["Unpriced"] == "1"


def test_markup_and_labels_as_functions():
    row = {"billed_cost_usd": Decimal("1.2"), "estimated_cost_usd": Decimal("0.5"), "list_cost_usd": Decimal("1.5")}
    assert prices.markup(row) == Decimal("0.2")  # the bills' list price is 1.5 - 0.5 = 1.0
    assert prices.markup({**row, "billed_cost_usd": Decimal(0)}) is None
    assert prices.markup({**row, "list_cost_usd": Decimal("0.5")}) is None  # no list price for the bills
    assert prices.total_label({"estimated_cost_usd": Decimal(0)}) == "Total spend"
    assert prices.total_label({"estimated_cost_usd": Decimal("0.000148")}) == "Total spend (incl. $0.000148 estimated)"
