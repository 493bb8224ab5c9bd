"""What a caller may tag a call with: 20 tags, 64-character keys, 256-character values; the rest is
cut and the call flagged ``spendlog.truncated``, never an exception (db.tag_limits)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from helpers import make_record
from spendlog.capture import CallCapture
from spendlog.db.engine import make_engine
from spendlog.db.migrate import upgrade
from spendlog.db.models import Completion
from spendlog.db.queries import Filters, grouped_totals
from spendlog.db.store import insert_records
from spendlog.db.tag_limits import MAX_KEY, MAX_TAGS, MAX_VALUE, TRUNCATED_KEY, bound_tags

URL = "http://127.0.0.1:8790/v1/chat/completions"
HEADERS = [("Authorization", "Bearer sr_test_0123456789abcdef01234567"), ("Content-Type", "application/json")]


def test_within_the_limits_nothing_changes():
    tags = {f"k{i}": "v" * MAX_VALUE for i in range(MAX_TAGS - 1)} | {"k" * MAX_KEY: "x"}
    assert bound_tags(tags) is tags
    assert bound_tags({}) is None and bound_tags(None) is None


@pytest.mark.parametrize("tags, kept, flag", [
    ({f"k{i:02d}": "v" for i in range(50)}, {f"k{i:02d}": "v" for i in range(MAX_TAGS)}, "count"),
    ({"k" * 100: "v"}, {"k" * MAX_KEY: "v"}, "key"),
    ({"team": "v" * 10_000}, {"team": "v" * MAX_VALUE}, "value"),
    ({"a" * 70: "1", "a" * 80: "2", "b": "x" * 300}, {"a" * MAX_KEY: "1", "b": "x" * MAX_VALUE}, "key,value"),
    ({TRUNCATED_KEY: "forged", "team": "core"}, {"team": "core"}, None),  # a caller cannot set the flag
    ({"n": 5, "none": None, 7: "seven"}, {"n": "5", "none": "", "7": "seven"}, None),
])
def test_excess_is_cut_and_flagged(tags, kept, flag):
    out = bound_tags(tags)
    assert {k: v for k, v in out.items() if k != TRUNCATED_KEY} == kept
    assert out.get(TRUNCATED_KEY) == flag
    assert len(out) <= MAX_TAGS + 1 and all(len(k) <= MAX_KEY and len(v) <= MAX_VALUE for k, v in out.items())


def test_the_store_keeps_the_capture_flag_and_bounds_records_from_elsewhere(db_url):
    engine = make_engine(db_url)
    upgrade(engine)
    flagged = bound_tags({f"k{i:02d}": "v" for i in range(30)})  # the capture's: 20 tags + flag
    raw = {f"r{i:03d}": "w" * 1000 for i in range(200)}  # a record built by hand, never bounded
    records = [make_record(tags=flagged), make_record(tags=raw)]
    with engine.begin() as conn:
        assert insert_records(conn, records) == 2
    with engine.connect() as conn:
        stored = {row.id: row.tags for row in conn.execute(select(Completion.id, Completion.tags))}
        assert stored[records[0]["id"]] == flagged
        other = stored[records[1]["id"]]
        assert len(other) == MAX_TAGS + 1 and other[TRUNCATED_KEY] == "count,value"
        groups = {r["tag:spendlog.truncated"]: r["requests"]
                  for r in grouped_totals(conn, Filters(), ["tag:spendlog.truncated"])}
        assert groups == {"count": 1, "count,value": 1}
    engine.dispose()


def test_a_capture_with_a_flood_of_tags_records_them_bounded_without_an_exception():
    header = ",".join(f"key{i}=value{i}" for i in range(500)) + ",long=" + "x" * 5000
    tags = {"k" * 300: "v", "team": "core"}
    capture = CallCapture.start("POST", URL, [*HEADERS, ("X-Spendlog-Tags", header)],
                                json.dumps({"model": "m"}).encode(), tags=tags)
    assert capture is not None
    capture.response_started(200, [("content-type", "application/json")])
    capture.feed(b'{"id":"x","model":"m","choices":[]}')
    capture.end_of_body()
    record = capture.record()
    assert len(record["tags"]) == MAX_TAGS + 1
    assert record["tags"][TRUNCATED_KEY] == "count,key"
    assert record["tags"]["k" * MAX_KEY] == "v" and record["tags"]["team"] == "core"
