"""db/insights.py on SQLite and PostgreSQL: latency percentiles, the most expensive calls,
recent errors, and filters that stay bound parameters."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from helpers import add_records, make_record

from spendlog.db import insights
from spendlog.db.queries import Filters

UTC = timezone.utc
T0 = datetime(2025, 3, 10, tzinfo=UTC)


@pytest.fixture
def conn(ledger_conn):
    return ledger_conn


add = add_records


def test_percentile_nearest_rank():
    values = list(range(1, 101))
    assert insights.percentile(values, 50) == 50
    assert insights.percentile(values, 95) == 95
    assert insights.percentile([7], 95) == 7
    assert insights.percentile([], 50) is None


def test_latency_by_model_uses_the_most_recent_sample(conn):
    old = [make_record(created_at=T0 + timedelta(minutes=i), model="m", latency_ms=10_000) for i in range(5)]
    new = [make_record(created_at=T0 + timedelta(hours=1, minutes=i), model="m", latency_ms=(i + 1) * 10)
           for i in range(20)]
    other = [make_record(created_at=T0, model=None, latency_ms=5), make_record(created_at=T0, model="n", latency_ms=None)]
    add(conn, old + new + other)
    stats = insights.latency_by_model(conn, Filters(), ["m", None, "n"], sample=20)
    assert stats[0] == {"model": "m", "p50": 100, "p95": 190, "sample": 20}
    assert stats[1] == {"model": None, "p50": 5, "p95": 5, "sample": 1}
    assert stats[2] == {"model": "n", "p50": None, "p95": None, "sample": 0}
    everything = insights.latency_by_model(conn, Filters(), ["m"], sample=1000)[0]
    assert everything["sample"] == 25 and everything["p95"] == 10_000


def test_most_expensive_calls_in_order_within_the_filters(conn):
    costs = ["0.000000000001", "5", "0.3", "12.000000000001", "0.02"]
    records = [make_record(created_at=T0 + timedelta(hours=i), cost_usd=Decimal(c), app="a" if i % 2 else "b")
               for i, c in enumerate(costs)]
    records.append(make_record(created_at=T0, cost_usd=None))
    records.append(make_record(created_at=T0 - timedelta(days=2), cost_usd=Decimal("999")))  # out of range
    add(conn, records)
    top = insights.most_expensive_calls(conn, Filters(start=T0 - timedelta(hours=1), end=T0 + timedelta(days=1)), limit=3)
    assert [c["cost_usd"] for c in top] == [Decimal("12.000000000001"), Decimal(5), Decimal("0.3")]
    only_b = insights.most_expensive_calls(conn, Filters(start=T0, apps=("b",)))
    assert [c["app"] for c in only_b] == ["b", "b", "b"]
    assert set(top[0]) >= {"id", "created_at", "model", "api_key_hint", "total_tokens", "latency_ms", "error_message"}


def test_recent_errors_newest_first_and_cancellations_are_not_errors(conn):
    records = [
        make_record(created_at=T0 + timedelta(minutes=1), status_code=429, error_type="http_429", error_message="x" * 5000),
        make_record(created_at=T0 + timedelta(minutes=2), status_code=None, error_type="connect_error"),
        make_record(created_at=T0 + timedelta(minutes=3), status_code=200, error_type="cancelled"),
        make_record(created_at=T0 + timedelta(minutes=4), status_code=200, error_type="stream_interrupted"),
        make_record(created_at=T0 + timedelta(minutes=5)),
    ]
    add(conn, records)
    errors = insights.recent_errors(conn, Filters())
    assert [e["error_type"] for e in errors] == ["stream_interrupted", "connect_error", "http_429"]
    assert len(errors[-1]["error_message"]) == insights.MESSAGE_CHARS
    assert insights.recent_errors(conn, Filters(status="ok")) == []


@pytest.mark.parametrize("value", ["' OR 1=1 --", "a'); DELETE FROM completions; --", "%", "_"])
def test_filter_values_are_bound_parameters(conn, value):
    add(conn, [make_record(created_at=T0, app="bot", model="m", status_code=500, error_type="http_500")])
    f = Filters(apps=(value,))
    assert insights.most_expensive_calls(conn, f) == []
    assert insights.recent_errors(conn, f) == []
    assert insights.latency_by_model(conn, f, [value])[0]["sample"] == 0
    assert conn.exec_driver_sql("SELECT count(*) FROM completions").scalar() == 1


def test_unknown_dimension_filter_matches_null(conn):
    add(conn, [make_record(created_at=T0, user=None, cost_usd=Decimal(1)),
               make_record(created_at=T0, user="u", cost_usd=Decimal(2))])
    assert [c["user"] for c in insights.most_expensive_calls(conn, Filters(users=("",)))] == [None]


def test_has_calls_and_schema(conn):
    assert insights.has_schema(conn)
    assert not insights.has_calls(conn)
    conn.commit()
    add(conn, [make_record()])
    assert insights.has_calls(conn)


def test_latency_window_bounds_the_walk_for_selective_filters(conn):
    old_errors = [make_record(created_at=T0 + timedelta(minutes=i), model="m", status_code=500, error_type="http_500",
                              latency_ms=999) for i in range(10)]
    recent_ok = [make_record(created_at=T0 + timedelta(hours=1, minutes=i), model="m", latency_ms=50) for i in range(20)]
    add(conn, old_errors + recent_ok)
    errors = Filters(status="errors")
    assert insights.latency_by_model(conn, errors, ["m"], window=20)[0]["sample"] == 0
    wide = insights.latency_by_model(conn, errors, ["m"], window=30)[0]
    assert (wide["sample"], wide["p50"]) == (10, 999)
    assert insights.latency_by_model(conn, Filters(status="ok"), ["m"], window=30)[0]["p95"] == 50
