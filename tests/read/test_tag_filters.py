"""Filters.tags: calls whose tags hold every key=value pair (one tag from the tag rollup, more from the calls)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from helpers import make_record
from spendlog.db.engine import make_engine
from spendlog.db.migrate import upgrade
from spendlog.db.queries import Filters, distinct_values, grouped_totals, plan_grouped, total_spend
from spendlog.db.store import insert_records

BASE = datetime(2026, 11, 3, 10, tzinfo=timezone.utc)
CALLS = [  # (tags, cost)
    ({"team": "core", "feature": "search"}, "0.000000000001"),
    ({"team": "core", "feature": "chat"}, "1.25"),
    ({"team": "growth", "feature": "search"}, "2.5"),
    ({"feature": "search"}, "4"),
    (None, "8"),
    ({"team": "' OR 1=1 --"}, "16"),
]


@pytest.fixture
def engine(db_url):
    engine = make_engine(db_url)
    upgrade(engine)
    with engine.begin() as conn:
        insert_records(conn, [make_record(created_at=BASE + timedelta(minutes=7 * i), tags=tags, cost_usd=Decimal(cost))
                              for i, (tags, cost) in enumerate(CALLS)])
    yield engine
    engine.dispose()


def spend(engine, **filters) -> Decimal:
    with engine.connect() as conn:
        return total_spend(conn, Filters(start=BASE - timedelta(hours=2), end=BASE + timedelta(hours=3), **filters))


def test_one_tag_selects_exactly_its_calls(engine):
    assert spend(engine, tags={"team": "core"}) == Decimal("1.250000000001")
    assert spend(engine, tags=[("feature", "search")]) == Decimal("6.500000000001")


def test_two_tags_intersect(engine):
    assert spend(engine, tags={"team": "core", "feature": "search"}) == Decimal("0.000000000001")
    assert spend(engine, tags={"team": "growth", "feature": "chat"}) == Decimal(0)


def test_a_hostile_value_is_a_value_not_sql(engine):
    assert spend(engine, tags={"team": "' OR 1=1 --"}) == Decimal(16)
    assert spend(engine, tags={"team": "x' OR '1'='1"}) == Decimal(0)


def test_tag_filters_read_the_tag_rollup_and_combine_with_other_filters(engine):
    with engine.connect() as conn:
        f = Filters(start=BASE - timedelta(hours=2), end=BASE + timedelta(hours=3), tags={"feature": "search"})
        assert {p.source for p in plan_grouped(conn, f, ["day"])} == {"tags"}
        two = Filters(start=f.start, end=f.end, tags={"feature": "search", "team": "core"})
        assert {p.source for p in plan_grouped(conn, two, ["day"])} == {"raw"}
        with pytest.raises(ValueError, match="cannot answer"):
            plan_grouped(conn, two, ["day"], source="rollup")
        rows = grouped_totals(conn, f, ["day"])
        assert [r["cost_usd"] for r in rows] == [Decimal("6.500000000001")]
        assert distinct_values(conn, "model", f) == ["openai/gpt-4o-mini"]
    assert spend(engine, tags={"feature": "search"}, apps=("nobody",)) == Decimal(0)


def test_tags_are_normalised_to_a_sorted_hashable_tuple():
    a = Filters(tags={"b": "2", "a": "1"})
    assert a.tags == (("a", "1"), ("b", "2"))
    assert a == Filters(tags=[("b", "2"), ("a", "1")]) and hash(a) == hash(Filters(tags=(("a", "1"), ("b", "2"))))
