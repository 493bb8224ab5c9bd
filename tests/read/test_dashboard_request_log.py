"""The request log's query layer (db.request_log) and the hourly sums (db.hourly), on real
SQLite files and real PostgreSQL: pages, orders, search (wildcards matched literally), one call,
error kinds, and hourly sums equal to the read layer's own."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from helpers import make_record

from spendlog.db.engine import make_engine
from spendlog.db.hourly import hourly_totals
from spendlog.db.migrate import upgrade
from spendlog.db.queries import Filters, grouped_totals
from spendlog.db.request_log import error_kinds, get_call, log_count, log_page
from spendlog.db.store import insert_records

UTC = timezone.utc
T0 = datetime(2025, 3, 14, 0, 0, tzinfo=UTC)


def _records() -> list[dict]:
    out = []
    for i in range(23):
        error = i % 5 == 4
        out.append(make_record(
            created_at=T0 + timedelta(minutes=97 * i), model=f"m{i % 3}", app="100%_off" if i == 7 else f"app{i % 2}",
            user=f"u{i % 4}", cost_usd=None if error else Decimal(i + 1) / 10_000,
            total_tokens=None if error else 10 * i, latency_ms=1000 - i, status_code=500 if error else 200,
            error_type="http_500" if error else None, error_message="boom: " + "x" * 500 if error else None,
            request_id=f"req-{i:03d}", tags={"team": "blue" if i == 3 else "red"}))
    return out


@pytest.fixture(params=["sqlite", pytest.param("pg", marks=pytest.mark.pg)])
def ledger(request, tmp_path):
    url = f"sqlite:///{tmp_path / 'l.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    engine = make_engine(url, pool=False)
    upgrade(engine)
    records = _records()
    with engine.begin() as conn:
        insert_records(conn, records)
    yield engine, records
    engine.dispose()


WHOLE = Filters(start=T0, end=T0 + timedelta(days=3))


def test_pages_newest_first_without_gaps_or_repeats(ledger):
    engine, records = ledger
    with engine.connect() as conn:
        pages = [log_page(conn, WHOLE, page=p, size=10) for p in range(3)]
        assert log_count(conn, WHOLE) == len(records)
    ids = [r["id"] for p in pages for r in p.rows]
    newest = sorted(records, key=lambda r: (r["created_at"], r["id"]), reverse=True)
    assert ids == [r["id"] for r in newest]
    assert [p.has_next for p in pages] == [True, True, False]


def test_orders_by_cost_tokens_latency_with_missing_figures_last(ledger):
    engine, records = ledger
    with engine.connect() as conn:
        by_cost = log_page(conn, WHOLE, sort="cost", size=100).rows
        by_latency = log_page(conn, WHOLE, sort="latency", size=100).rows
        by_tokens = log_page(conn, WHOLE, sort="tokens", size=100).rows
    costs = [r["cost_usd"] for r in by_cost]
    known = [c for c in costs if c is not None]
    assert known == sorted(known, reverse=True) and costs[len(known):] == [None] * (len(costs) - len(known))
    assert by_cost[0]["cost_usd"] == max(r["cost_usd"] for r in records if r["cost_usd"] is not None)
    assert [r["latency_ms"] for r in by_latency] == sorted((r["latency_ms"] for r in records), reverse=True)
    assert by_tokens[0]["total_tokens"] == max(r["total_tokens"] or 0 for r in records)
    with pytest.raises(ValueError):
        with engine.connect() as conn:
            log_page(conn, WHOLE, sort="id; drop table completions")


@pytest.mark.parametrize(("text", "expected"), [
    ("req-007", lambda r: r["request_id"] == "req-007"),
    ("M2", lambda r: r["model"] == "m2"),  # case does not matter
    ("u3", lambda r: r["user"] == "u3"),
    ("blue", lambda r: r["tags"]["team"] == "blue"),
    ("boom", lambda r: r["error_message"] is not None),
    ("100%_", lambda r: r["app"] == "100%_off"),  # wildcards are literal
    ("%", lambda r: "%" in (r["app"] or "")),
    ("' OR 1=1 --", lambda r: False),
])
def test_search_finds_by_model_app_user_tag_request_id_and_error(ledger, text, expected):
    engine, records = ledger
    with engine.connect() as conn:
        found = {r["id"] for r in log_page(conn, WHOLE, search=text, size=100).rows}
        assert log_count(conn, WHOLE, search=text) == len(found)
    assert found == {r["id"] for r in records if expected(r)}


def test_a_substring_search_looks_at_the_newest_window_unless_asked_for_all(ledger):
    # "red" is in the tags of 22 of the 23 calls; with a window of 5 only the newest 5 are searched,
    # and the page says from when; an id found exactly is never bounded
    engine, records = ledger
    newest = sorted(records, key=lambda r: r["created_at"])[-5:]
    with engine.connect() as conn:
        bounded = log_page(conn, WHOLE, search="red", size=100, window=5)
        whole = log_page(conn, WHOLE, search="red", size=100, window=5, search_all=True)
        assert log_count(conn, WHOLE, search="red", search_all=False, window=5) == len(bounded.rows)
        exact = log_page(conn, WHOLE, search="req-000", window=5)
        wide = log_page(conn, WHOLE, search="red", size=100, window=50)
    assert bounded.searched_since == newest[0]["created_at"]
    assert {r["id"] for r in bounded.rows} == {r["id"] for r in newest if r["tags"]["team"] == "red"}
    assert whole.searched_since is None and len(whole.rows) == 22
    assert [r["request_id"] for r in exact.rows] == ["req-000"] and exact.searched_since is None
    assert wide.searched_since is None and len(wide.rows) == 22  # fewer calls than the window: no bound


def test_one_call_in_full_and_error_kinds(ledger):
    engine, records = ledger
    failed = [r for r in records if r["error_type"]]
    with engine.connect() as conn:
        call = get_call(conn, failed[0]["id"])
        assert get_call(conn, "no-such-id") is None
        kinds = error_kinds(conn, WHOLE)
    assert call["error_message"] == failed[0]["error_message"] and len(call["error_message"]) > 500
    assert sum(k["errors"] for k in kinds) == len(failed)
    assert {(k["error_type"], k["status_code"]) for k in kinds} == {("http_500", 500)}


def test_hourly_sums_equal_the_read_layers(ledger):
    engine, records = ledger
    window = Filters(start=T0 + timedelta(minutes=30), end=T0 + timedelta(hours=40, minutes=10))
    with engine.connect() as conn:
        hours = list(hourly_totals(conn, window))
        total = next(grouped_totals(conn, window, ()))
    assert sum((h["cost_usd"] for h in hours), Decimal(0)) == total["cost_usd"]
    assert sum(h["requests"] for h in hours) == total["requests"] > 0
    for h in hours:
        inside = [r for r in records if h["hour"] <= r["created_at"] < h["hour"] + timedelta(hours=1)
                  and window.start <= r["created_at"] < window.end and r["model"] == h["model"]]
        assert h["requests"] == len(inside)
    with engine.connect() as conn, pytest.raises(ValueError):
        list(hourly_totals(conn, Filters(start=T0, end=T0 + timedelta(days=5))))


def test_an_id_search_finds_the_exact_call_first_and_falls_back_to_substrings(ledger):
    """A one-word search equal to a call's request id or id shows that call only (found by its
    index); a text no call of the view has exactly is a substring search."""
    engine, records = ledger
    mention = make_record(created_at=T0 + timedelta(minutes=5), model="m9", user="u9", request_id="other",
                          error_message="retry of req-007")
    with engine.begin() as conn:
        insert_records(conn, [mention])
    exact = next(r for r in records if r["request_id"] == "req-007")
    with engine.connect() as conn:
        def found(text, filters=WHOLE):
            ids = {r["id"] for r in log_page(conn, filters, search=text, size=100).rows}
            assert log_count(conn, filters, search=text) == len(ids)
            return ids
        assert found("req-007") == {exact["id"]}
        assert found("  req-007 ") == {exact["id"]}
        assert found(exact["id"]) == {exact["id"]}
        assert found("of req-007") == {mention["id"]}  # not one word: substrings
        assert found("req-00") == {r["id"] for r in records if r["request_id"].startswith("req-00")} | {mention["id"]}
        # the exact call is outside the view: the search falls back to substrings within it
        assert found("req-007", Filters(start=T0, end=T0 + timedelta(days=3), users=("u9",))) == {mention["id"]}


@pytest.mark.parametrize("walk_from", [1, 10**9])
def test_ranked_orders_are_the_same_whichever_index_the_range_is_read_by(ledger, monkeypatch, walk_from):
    """SQLite reads a range of ``RANKED_WALK_MIN`` calls or more through the ranked column's index
    (``+created_at``), fewer through the created_at index: the pages are the same."""
    from spendlog.db import request_log

    engine, records = ledger
    monkeypatch.setattr(request_log, "RANKED_WALK_MIN", walk_from)
    part = Filters(start=T0 + timedelta(hours=3), end=T0 + timedelta(hours=30))
    inside = [r for r in records if part.start <= r["created_at"] < part.end]
    with engine.connect() as conn:
        for sort, column in (("cost", "cost_usd"), ("tokens", "total_tokens"), ("latency", "latency_ms")):
            pages = [log_page(conn, part, sort=sort, page=p, size=4) for p in range(5)]
            got = [r["id"] for p in pages for r in p.rows]
            want = sorted(inside, key=lambda r: (r[column] is None, -(r[column] or 0),
                                                 -r["created_at"].timestamp()))
            assert got == [r["id"] for r in want], sort


def _plan(conn, sort: str) -> str:
    """The database's plan for the request log's first page by ``sort`` over WHOLE."""
    from sqlalchemy import event

    seen = []

    def keep(conn_, cursor, statement, parameters, context, executemany):
        seen.append((statement, parameters))

    event.listen(conn.engine, "before_cursor_execute", keep)
    try:
        log_page(conn, WHOLE, sort=sort)
    finally:
        event.remove(conn.engine, "before_cursor_execute", keep)
    statement, parameters = seen[-1]
    prefix = "EXPLAIN QUERY PLAN " if conn.dialect.name == "sqlite" else "EXPLAIN "
    cursor = conn.connection.driver_connection.cursor()
    cursor.execute(prefix + statement, parameters)
    return "\n".join(" ".join(str(v) for v in row) for row in cursor.fetchall())


@pytest.mark.parametrize(("sort", "index"), [("cost", "ix_completions_cost_usd"),
                                              ("tokens", "ix_completions_total_tokens"),
                                              ("latency", "ix_completions_latency_ms")])
def test_ranked_orders_walk_their_index(ledger, monkeypatch, sort, index):
    """Biggest first is read off the column's index (revision 0003), not a sort of the range: on
    SQLite via ``+created_at``; on PostgreSQL the DESC NULLS LAST index matches the ORDER BY (with
    sorting and sequential scans priced out, a plain index would leave only a full sort)."""
    from sqlalchemy import text

    from spendlog.db import request_log

    engine, _ = ledger
    monkeypatch.setattr(request_log, "RANKED_WALK_MIN", 1)
    with engine.connect() as conn:
        if conn.dialect.name != "sqlite":
            conn.execute(text("SET enable_seqscan = off"))
            conn.execute(text("SET enable_sort = off"))
        plan = _plan(conn, sort)
    assert index in plan, plan
    if engine.dialect.name == "sqlite":
        assert "TEMP B-TREE FOR ORDER BY" not in plan.split("\n")[0], plan
