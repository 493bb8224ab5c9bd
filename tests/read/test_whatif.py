"""`spendlog whatif` (db/whatif.py): per source model, what the same calls would have cost on another
model; totals are the per-call sums; bad --as, dates and prices files are one line, exit 2."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from click.testing import CliRunner

from helpers import make_record
from spendlog.cli import cli
from spendlog.db.engine import make_engine
from spendlog.db.migrate import upgrade
from spendlog.db.pricing import load_price_book
from spendlog.db.queries import Filters
from spendlog.db.store import insert_records
from spendlog.db.whatif import WhatIfError, whatif
from test_estimate import AT, unbilled

TARGET = "openai/gpt-4o"


@pytest.fixture
def ledger(db_url, monkeypatch):
    monkeypatch.delenv("SPENDLOG_PRICES", raising=False)
    engine = make_engine(db_url)
    upgrade(engine)
    records = []
    for i in range(60):
        at = AT + timedelta(hours=i)
        if i % 3 == 0:
            records.append(make_record(created_at=at, cost_usd=Decimal("0.000123456789") * i, prompt_tokens=10 * i + 1,
                                       completion_tokens=i, cached_tokens=i // 2))
        elif i % 3 == 1:
            records.append(unbilled(created_at=at, prompt_tokens=1000 + i, completion_tokens=500 + i))
        else:
            records.append(unbilled(created_at=at, model="acme/house-model-9", upstream=None,
                                    prompt_tokens=None if i % 6 == 5 else 2000 + i, completion_tokens=None if i % 6 == 5 else 7,
                                    cached_tokens=None, reasoning_tokens=None))
    with engine.begin() as conn:
        insert_records(conn, records)
    yield engine, records
    engine.dispose()


def _expected(records, book, target):
    per: dict[str, list] = {}
    for r in records:
        row = per.setdefault(r["model"], [0, Decimal(0), Decimal(0)])
        row[0] += 1
        priced = book.estimate(target, at=r["created_at"], prompt_tokens=r["prompt_tokens"],
                               completion_tokens=r["completion_tokens"], cached_tokens=r.get("cached_tokens"),
                               reasoning_tokens=r.get("reasoning_tokens"))
        row[2] += priced.cost if priced else 0
    return per


def test_totals_are_the_per_call_sums(ledger):
    engine, records = ledger
    book = load_price_book(None)
    with engine.connect() as conn:
        result = whatif(conn, book, TARGET)
        stored_costs = {}
        from sqlalchemy import select

        from spendlog.db.models import Completion
        for model, cost in conn.execute(select(Completion.model, Completion.cost_usd)):
            stored_costs[model] = stored_costs.get(model, Decimal(0)) + (cost or 0)
    expected = _expected(records, book, TARGET)
    assert [r.model for r in result.rows] == sorted(expected)
    for row in result.rows:
        requests, _, cost_as = expected[row.model]
        assert (row.requests, row.cost_as_usd, row.actual_cost_usd) == (requests, cost_as, stored_costs[row.model])
        assert row.difference_usd == row.cost_as_usd - row.actual_cost_usd
    house = next(r for r in result.rows if r.model == "acme/house-model-9")
    assert (house.unpriced, house.not_priced_as) == (20, 10)  # unknown model; 10 calls without tokens
    assert result.total.requests == 60
    assert result.total.cost_as_usd == sum(v[2] for v in expected.values()) > 0
    assert result.total.actual_cost_usd == sum(stored_costs.values())
    assert result.target_entry == "openrouter:openai/gpt-4o"
    with engine.connect() as conn:
        only = whatif(conn, book, TARGET, Filters(start=AT, end=AT + timedelta(hours=6), models=("gpt-4o-mini",)))
    assert [(r.model, r.requests) for r in only.rows] == [("gpt-4o-mini", 2)]
    with engine.connect() as conn, pytest.raises(WhatIfError):
        whatif(conn, book, "acme/nothing-prices-this")


def run(*args: str):
    result = CliRunner().invoke(cli, ["whatif", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a crash shows its traceback, not an empty stderr
    return result.exit_code, result.stdout, result.stderr


def test_cli_formats(ledger):
    engine, records = ledger
    db = engine.url.render_as_string(hide_password=False)
    code, out, err = run("--db", db, "--as", TARGET, "--format", "json")
    assert code == 0, err
    data = json.loads(out)
    assert data["total"]["requests"] == 60 and len(data["models"]) == 3
    assert Decimal(data["total"]["cost_as_usd"]) == sum(Decimal(m["cost_as_usd"]) for m in data["models"])
    code, out, err = run("--db", db, "--as", TARGET, "--format", "csv", "--model", "gpt-4o-mini")
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("model,requests,actual_cost_usd") and lines[1].startswith("gpt-4o-mini,20,")
    assert lines[2].startswith("total,20,")
    code, out, err = run("--db", db, "--as", TARGET, "--from", "2026-11-20", "--to", "2026-11-20", "--tz", "UTC")
    assert code == 0 and "What if these calls had gone to openai/gpt-4o" in out and "total" in out


@pytest.mark.parametrize("args, message", [
    (["--as", "acme/nothing-prices-this"], "--as 'acme/nothing-prices-this': no price for this model"),
    (["--as", TARGET, "--from", "2026-02-30"], "--from '2026-02-30' is not a date"),
    (["--as", TARGET, "--tz", "Mars/Base"], "--tz: unknown timezone 'Mars/Base'"),
])
def test_cli_bad_input_is_one_line_exit_2(args, message, sqlite_url):
    code, out, err = run("--db", sqlite_url, *args)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith(f"spendlog: error: {message}")


def test_cli_bad_prices_file(tmp_path, sqlite_url):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[price]]\nmodel = "x"\ninput = "1"\n')
    code, out, err = run("--db", sqlite_url, "--as", TARGET, "--prices", str(bad))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "bad.toml: line 1" in err


def test_every_filter_narrows_the_calls_and_empty_means_unknown(db_url, monkeypatch):
    # the dashboard passes its whole view: app, status, tags and "" (calls with no model) select
    # exactly those calls; `models=[""]` once became `model IN ('')`, which matches no NULL model
    monkeypatch.delenv("SPENDLOG_PRICES", raising=False)
    engine = make_engine(db_url)
    upgrade(engine)
    calls = [make_record(created_at=AT, app="etl", tags={"team": "core"}),
             make_record(created_at=AT, app="web", status_code=500, tags={"team": "growth"}),
             make_record(created_at=AT, model=None, app="etl")]
    with engine.begin() as conn:
        insert_records(conn, calls)
    book = load_price_book(None)

    def requests(**f) -> dict[str, int]:
        with engine.connect() as conn:
            return {r.model: r.requests for r in whatif(conn, book, TARGET, Filters(**f)).rows}

    assert requests() == {"": 1, "openai/gpt-4o-mini": 2}
    assert requests(apps=("etl",)) == {"": 1, "openai/gpt-4o-mini": 1}
    assert requests(status="errors") == {"openai/gpt-4o-mini": 1}
    assert requests(tags={"team": "growth"}) == {"openai/gpt-4o-mini": 1}
    assert requests(models=("",)) == {"": 1}
    engine.dispose()


def test_cli_csv_writes_a_hostile_model_id_as_text(sqlite_url):
    engine = make_engine(sqlite_url)
    upgrade(engine)
    with engine.begin() as conn:
        insert_records(conn, [make_record(created_at=AT, model='=HYPERLINK("http://x","y")')])
    engine.dispose()
    code, out, err = run("--db", sqlite_url, "--as", TARGET, "--format", "csv")
    assert code == 0, err
    row = out.splitlines()[1]
    assert row.startswith("\"'=HYPERLINK(") and not row.startswith("=")


def test_cli_tag_narrows_the_calls(sqlite_url):
    engine = make_engine(sqlite_url)
    upgrade(engine)
    with engine.begin() as conn:
        insert_records(conn, [make_record(created_at=AT, tags={"team": "core"}),
                              make_record(created_at=AT, tags={"team": "growth"}),
                              make_record(created_at=AT, tags=None)])
    engine.dispose()
    code, out, err = run("--db", sqlite_url, "--as", TARGET, "--format", "json", "--tag", "team=core")
    assert code == 0, err
    assert json.loads(out)["total"]["requests"] == 1
    code, out, err = run("--db", sqlite_url, "--as", TARGET, "--tag", "team")
    assert code == 2 and err.startswith("spendlog: error: --tag") and len(err.strip().splitlines()) == 1
