"""`spendlog reprice` (db/reprice.py): estimated and missing rows priced again, rollups fixed in the
same transaction, upstream rows and their sums byte-identical, safe under concurrent writes."""

from __future__ import annotations

import threading
from datetime import timedelta, timezone
from decimal import Decimal

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select, text

from helpers import make_record
from spendlog.cli import cli
from spendlog.db.engine import file_lock, make_engine, write_lock_path
from spendlog.db.migrate import upgrade
from spendlog.db.models import Completion, RollupHourly
from spendlog.db.pricing import load_price_book
from spendlog.db.reprice import reprice
from spendlog.db.store import insert_records, rebuild_rollups
from test_estimate import AFTER_CUT, AT, BEFORE_CUT, rollup_snapshot, stored, unbilled

UTC = timezone.utc
HOUSE = "acme/house-model-9"
PRICES = '[[price]]\nmodel = "acme/house-model-9"\ninput = 3\noutput = 4\n'


def _raw_upstream(conn) -> list[tuple]:
    return conn.execute(text("SELECT * FROM completions WHERE cost_source = 'upstream' ORDER BY id")).all()


def _raw_rollup_costs(conn) -> tuple:
    return tuple(conn.execute(text("SELECT SUM(billed_cost_usd), SUM(requests) FROM rollup_hourly")).one())


def _rebuilt_equals_rollup(engine) -> bool:
    with engine.begin() as conn:
        now = rollup_snapshot(conn)
        rebuild_rollups(conn)
        again = rollup_snapshot(conn)
        conn.rollback()
    return now == again


@pytest.fixture
def ledger(db_url, monkeypatch, tmp_path):
    """Billed, estimated and missing calls over 30 hours; the house model is unknown when stored."""
    monkeypatch.delenv("SPENDLOG_PRICES", raising=False)
    engine = make_engine(db_url)
    upgrade(engine)
    records = []
    for i in range(120):
        at = AT + timedelta(minutes=15 * i)
        kind = i % 4
        if kind == 0:
            records.append(make_record(created_at=at, cost_usd=Decimal("0.000123456789") * i, prompt_tokens=i + 1))
        elif kind == 1:
            records.append(unbilled(created_at=at, prompt_tokens=1000 + i))
        else:
            records.append(unbilled(created_at=at, model=HOUSE, upstream="127.0.0.1:8000", app=f"app{i % 3}"))
    with engine.begin() as conn:
        insert_records(conn, records)
    prices = tmp_path / "house.toml"
    prices.write_text(PRICES)
    yield engine, records, prices
    engine.dispose()


def test_reprice_prices_missing_rows_and_never_touches_upstream_rows(ledger):
    engine, records, prices = ledger
    with engine.connect() as conn:
        upstream_before, sums_before = _raw_upstream(conn), _raw_rollup_costs(conn)
        estimated_before = conn.scalar(select(func.sum(Completion.cost_usd)).where(Completion.cost_source == "estimated"))
    result = reprice(engine, load_price_book(prices), batch_size=7)
    assert (result.rows, result.changed) == (90, 60)
    assert result.old_total == estimated_before
    rows = stored(engine)
    house = [rows[r["id"]] for r in records if r["model"] == HOUSE]
    assert {(r.cost_source, r.cost_usd, r.list_cost_usd) for r in house} == {("estimated", Decimal("0.006800000000"),
                                                                               Decimal("0.006800000000"))}
    assert result.new_total == estimated_before + 60 * Decimal("0.0068")
    with engine.connect() as conn:
        assert _raw_upstream(conn) == upstream_before  # byte-identical
        assert _raw_rollup_costs(conn) == sums_before  # billed sums and request counts unchanged
        total = conn.execute(select(func.sum(RollupHourly.estimated_cost_usd), func.sum(RollupHourly.calls_missing_cost))).one()
        assert total == (result.new_total, 0)
    assert _rebuilt_equals_rollup(engine)
    # a second run changes nothing; without the prices file the house model is missing again
    assert reprice(engine, load_price_book(prices)).changed == 0
    back = reprice(engine, load_price_book(None))
    assert (back.changed, back.new_total) == (60, estimated_before)
    with engine.connect() as conn:
        assert conn.scalar(select(func.sum(RollupHourly.calls_missing_cost))) == 60
        assert _raw_upstream(conn) == upstream_before
    assert _rebuilt_equals_rollup(engine)


def test_dry_run_and_filters(ledger):
    engine, records, prices = ledger
    with engine.connect() as conn:
        before = rollup_snapshot(conn)
    dry = reprice(engine, load_price_book(prices), dry_run=True)
    assert dry.changed == 60
    with engine.connect() as conn:
        assert rollup_snapshot(conn) == before
    assert {r.cost_source for r in stored(engine).values() if r.model == HOUSE} == {"missing"}
    day = reprice(engine, load_price_book(prices), start=AT, end=AT + timedelta(hours=12), models=[HOUSE])
    assert (day.rows, day.changed) == (24, 24)  # 48 calls in 12 hours, half of them to the house model
    assert _rebuilt_equals_rollup(engine)


def test_reprice_during_concurrent_writes_loses_and_doubles_nothing(ledger):
    engine, records, prices = ledger
    lock = write_lock_path(engine.url)
    added, stop = [], threading.Event()

    def write():  # as the writer does: batches in their own transactions under the write lock
        writer_engine = make_engine(engine.url)
        n = 0
        while not stop.is_set() and n < 200:  # among the stored calls' hours, before and after the cursor
            batch = [unbilled(created_at=AT + timedelta(minutes=(n * 37 + k * 11) % 1800), model=HOUSE,
                              upstream=None, app="concurrent") for k in range(5)]
            with file_lock(lock, optional=True), writer_engine.begin() as conn:
                insert_records(conn, batch)
            added.extend(batch)
            n += 1
        writer_engine.dispose()

    thread = threading.Thread(target=write)
    thread.start()
    try:
        for _ in range(3):
            reprice(engine, load_price_book(prices), batch_size=5)
            reprice(engine, load_price_book(None), batch_size=5)
    finally:
        stop.set()
        thread.join(60)
    reprice(engine, load_price_book(prices), batch_size=11)
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Completion)) == len(records) + len(added)
        assert conn.scalar(select(func.sum(RollupHourly.requests))) == len(records) + len(added)
        assert conn.scalar(select(func.sum(RollupHourly.calls_missing_cost))) == 0
    assert _rebuilt_equals_rollup(engine)


def run(*args: str, env: dict | None = None):
    result = CliRunner().invoke(cli, ["reprice", *args], env=env)
    return result.exit_code, result.stdout, result.stderr


def test_cli_prints_rows_and_totals(ledger):
    engine, records, prices = ledger
    code, out, err = run("--db", str(engine.url.render_as_string(hide_password=False)), "--prices", str(prices))
    assert code == 0, err
    assert "90 estimated or missing calls looked at, 60 changed" in out
    assert "new total" in out and "old total" in out
    code, out, err = run("--db", str(engine.url.render_as_string(hide_password=False)), "--dry-run")
    assert code == 0 and "60 would change" in out


@pytest.mark.parametrize("args, message", [
    (["--from", "2026-13-01"], "--from '2026-13-01' is not a date"),
    (["--from", "2026-11-02", "--to", "2026-11-01"], "--to 2026-11-01 is before --from 2026-11-02"),
])
def test_cli_bad_dates_are_one_line_exit_2(args, message, sqlite_url):
    code, out, err = run("--db", sqlite_url, *args)
    assert code == 2 and err.strip().splitlines() == [f"spendlog: error: {message}: use YYYY-MM-DD"
                                                       if "not a date" in message else f"spendlog: error: {message}"]


def test_cli_bad_prices_file_is_one_line_naming_the_line(tmp_path, sqlite_url):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[price]]\nmodel = "x"\ninput = "1"\noutput = "2"\ncurrency = "EUR"\n')
    code, out, err = run("--db", sqlite_url, "--prices", str(bad))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("spendlog: error: ") and "bad.toml: line 5: currency: unknown key" in err
    code, out, err = run("--db", sqlite_url, env={"SPENDLOG_PRICES": str(bad)})
    assert code == 2 and "line 5" in err and len(err.strip().splitlines()) == 1


DATED = ('[[price]]\nmodel = "acme/house-model-9"\ninput = 3\noutput = 4\ncached_input = 1\n'
         '[[price]]\nmodel = "acme/house-model-9"\nfrom = 2026-11-20T14:00:00Z\ninput = "2.5"\noutput = 5\n'
         '[[price]]\nmodel = "acme/house-model-9"\nfrom = 2026-11-20T17:00:00Z\ninput = 1\noutput = "1.25"\n')


@pytest.mark.parametrize("batch_size", [4, 50_000])
def test_batch_pricing_matches_the_writers_rule_row_for_row(ledger, tmp_path, batch_size):
    """``reprice``'s per-batch pricing (each id's prices resolved once and kept while they hold)
    gives every row exactly what the writer's ``priced_fields`` gives it: prices-file entries that
    change inside a batch, a genai-prices price cut (o3, 2025-06-10), fixed genai-prices models,
    unknown models, counts that contradict each other, no tokens, and a call past the largest price."""
    from spendlog.db.estimate import priced_fields

    engine, _, _ = ledger
    odd = [
        dict(model=HOUSE, upstream=None, prompt_tokens=10, cached_tokens=20),  # cached > prompt
        dict(model=HOUSE, upstream=None, prompt_tokens=0, completion_tokens=0, total_tokens=0,
             cached_tokens=0, reasoning_tokens=0),
        dict(model=HOUSE, upstream=None, prompt_tokens=2**50, total_tokens=2**50 + 800),  # past MAX_PRICE_USD
        dict(model="nobody/unknown-model-x", upstream=None),
        dict(model="gpt-4o-mini", upstream="api.openai.com"),
        dict(model="o3", upstream="api.openai.com", created_at=BEFORE_CUT),
        dict(model="o3", upstream="api.openai.com", created_at=AFTER_CUT),
    ]
    records = [unbilled(created_at=AT + timedelta(minutes=7 * i), model=HOUSE, upstream=None,
                        tags={"team": f"t{i % 3}"} if i % 2 else None, prompt_tokens=500 + i, cached_tokens=i)
               for i in range(90)]
    records += [unbilled(**{"created_at": AT + timedelta(minutes=13 * i), **o}) for i, o in enumerate(odd * 3)]
    with engine.begin() as conn:
        insert_records(conn, records)
    prices = tmp_path / "dated.toml"
    prices.write_text(DATED)
    book = load_price_book(prices)
    result = reprice(engine, book, batch_size=batch_size)
    rows = stored(engine)
    assert result.rows == 90 + len(records)  # the fixture's estimated and missing calls, then these
    house = {r.price_source for r in rows.values() if r.model == HOUSE and r.price_source}
    assert len(house) == 3  # every entry of the file priced some of the calls
    for row in (r for r in rows.values() if r.cost_source != "upstream"):
        record = {c: getattr(row, c) for c in ("model", "provider", "upstream", "created_at", "prompt_tokens",
                                               "completion_tokens", "cached_tokens", "reasoning_tokens")}
        want = priced_fields(book, record, billed=False) or {
            "cost_usd": None, "cost_source": "missing", "price_source": None, "list_cost_usd": None}
        got = {c: getattr(row, c) for c in want}
        assert got == want, (row.model, row.created_at, row.prompt_tokens)
    o3 = sorted((r.created_at, r.cost_usd) for r in rows.values() if r.model == "o3")
    assert o3[0][1] > o3[-1][1]  # the cut shows
    assert {r.cost_source for r in rows.values() if r.model == "nobody/unknown-model-x"} == {"missing"}
    assert _rebuilt_equals_rollup(engine)
    with engine.connect() as conn:  # rollup_tag_days holds the re-priced tagged calls' new costs, per team
        from spendlog.db.models import RollupTagDays
        days = conn.execute(select(RollupTagDays.tag_value, func.sum(RollupTagDays.cost_usd))
                            .where(RollupTagDays.tag_key == "team").group_by(RollupTagDays.tag_value)).all()
    teams: dict = {}
    for r in rows.values():
        if r.tags and r.tags.get("team"):
            teams[r.tags["team"]] = teams.get(r.tags["team"], Decimal(0)) + (r.cost_usd or 0)
    assert dict(days) == teams and {"t0", "t1", "t2"} <= set(teams) and all(teams.values())
    with engine.begin() as conn:  # and the tag rollup too
        from spendlog.db.models import RollupTags
        tags_now = sorted(tuple(r) for r in conn.execute(select(RollupTags.__table__)))
        rebuild_rollups(conn)
        assert sorted(tuple(r) for r in conn.execute(select(RollupTags.__table__))) == tags_now
        conn.rollback()
