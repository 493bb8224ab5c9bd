"""Hostile text never poisons the ledger (issue 12, finding 1).

Every text column of a record (ids, models, error type and message, finish reason, app, user, tag
keys and values, the key hint) is cleaned by one function before the record exists: lone
surrogates (what invalid UTF-8 becomes when read with ``surrogateescape``, as aiohttp reads header
bytes) and NUL are replaced or removed, over-long values cut to their column. Checked on records
built from hostile requests and answers and then really written (SQLite and PostgreSQL), and end
to end: a key with invalid UTF-8 bytes sent through a real ``spendlog proxy`` and through the
hook is answered 200 and stored, with the same clean hint on both paths, and the calls after it
are stored too.
"""

from __future__ import annotations

import json

import httpx
import httpx2
import pytest
from fixture_proxy import CHAT, Recorder, json_response, raw_request, rows, status_of
from sqlalchemy import select

from spendlog.capture import CallCapture
from spendlog.db.engine import make_engine
from spendlog.db.migrate import ensure_schema
from spendlog.db.models import Completion
from spendlog.db.store import insert_records
from spendlog.transport import LoggingTransport

HOSTILE = "bad\udcff\udcfe\ud800 nul\x00 " + "x" * 2000  # invalid UTF-8 as read, a lone surrogate, NUL, too long
BAD_KEY = b"sr_test_abcdefghijkl\xff\xfe"  # a key whose last bytes are not UTF-8
CLEAN_HINT = "sr_...kl\ufffd\ufffd"
OK_ANSWER = {"id": "chatcmpl-ok", "object": "chat.completion", "created": 1, "model": "openai/gpt-4o-mini",
             "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
             "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7, "cost": 0.000012}}
URL = "http://127.0.0.1:9/v1/chat/completions"


def _unclean(record: dict) -> list[str]:
    """The text fields of ``record`` that a database could refuse: not UTF-8, NUL, or longer than
    the column (lengths from the model, not from the code under test)."""
    bad = []
    texts = [(name, value) for name, value in record.items() if isinstance(value, str)]
    texts += [(f"tags key {k!r}", k) for k in (record.get("tags") or {})]
    texts += [(f"tags value of {k!r}", v) for k, v in (record.get("tags") or {}).items()]
    for name, value in texts:
        column = Completion.__table__.c.get(name)
        limit = getattr(column.type, "length", None) if column is not None else None
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            bad.append(f"{name}: not UTF-8")
        if "\x00" in value:
            bad.append(f"{name}: NUL")
        if limit is not None and len(value) > limit:
            bad.append(f"{name}: {len(value)} > {limit} characters")
    return bad


def _hostile_records() -> list[dict]:
    headers = [("Authorization", "Bearer sr_test_abcdefghijkl\udcff\udcfe"), ("X-Spendlog-App", HOSTILE),
               ("X-Spendlog-User", HOSTILE), ("X-Spendlog-Tags", f"k{HOSTILE}=v{HOSTILE},{HOSTILE}")]
    body = json.dumps({"model": HOSTILE, "messages": []}).encode()  # JSON escapes: the surrogates come back
    records = []
    # a whole answer whose id, model and finish reason are hostile
    answer = json.dumps({**OK_ANSWER, "id": HOSTILE, "model": HOSTILE,
                         "choices": [{"index": 0, "finish_reason": HOSTILE}]}).encode()
    # an error answer whose message is hostile, and a transport error named by the caller
    error = json.dumps({"error": {"message": HOSTILE}}).encode()
    for status, content in ((200, answer), (400, error), (None, b"")):
        capture = CallCapture.start("POST", URL, headers, body, app=HOSTILE, tags={HOSTILE: HOSTILE})
        assert capture is not None
        if status is not None:
            capture.response_started(status, [("content-type", "application/json")])
            capture.feed(content)
            capture.end_of_body()
            records.append(capture.record())
        else:
            records.append(capture.record(error_type=HOSTILE, error_message=HOSTILE))
    return records


def test_every_text_column_is_cleaned_before_the_record_and_the_ledger_takes_it(db_url):
    records = _hostile_records()
    problems = {r["status_code"]: _unclean(r) for r in records}
    assert not any(problems.values()), problems
    assert all(r["api_key_hint"] == CLEAN_HINT for r in records)
    engine = make_engine(db_url)
    try:
        ensure_schema(engine)
        with engine.begin() as conn:  # one batch, as the writer would write it: none refused
            assert insert_records(conn, records) == len(records)
        with engine.connect() as conn:
            # by status code: ids made within one millisecond are in random order (uuid7)
            stored = list(conn.execute(select(Completion).order_by(Completion.status_code.nulls_last())))
    finally:
        engine.dispose()
    assert len(stored) == 3
    assert {row.api_key_hint for row in stored} == {CLEAN_HINT}
    assert stored[0].model.startswith("bad\ufffd\ufffd\ufffd nul ")
    assert stored[1].error_type == "http_400" and stored[1].error_message.startswith("bad\ufffd")


@pytest.fixture
def accepting_upstream():
    """An upstream that answers 200 to any key (SolRouter's fake would refuse a malformed one)."""
    rec = Recorder(lambda request: json_response(200, OK_ANSWER))
    yield rec
    rec.stop()


def test_a_key_that_is_not_utf8_through_a_real_proxy_is_answered_and_stored(accepting_upstream, proxy_process,
                                                                             sqlite_url):
    proc = proxy_process("--upstream", accepting_upstream.origin + "/v1", "--db", sqlite_url)
    body = json.dumps(CHAT).encode()
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + BAD_KEY
            + b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode()
            + b"\r\nConnection: close\r\n\r\n")
    assert status_of(raw_request(proc.port, head + body)) == 200
    for _ in range(3):  # calls after it, which one unwritable record used to take down with it
        later = httpx.post(proc.base_url + "/chat/completions", json=CHAT,
                           headers={"Authorization": "Bearer sr_test_" + "a" * 20 + "wxyz"})
        assert later.status_code == 200
    code, _, err = proc.stop()
    assert code == 0, err
    found = rows(sqlite_url, expect=4)
    assert [r.api_key_hint for r in found] == [CLEAN_HINT] + ["sr_...wxyz"] * 3, err
    assert all(r.total_tokens == 7 for r in found)


def test_a_key_that_is_not_utf8_through_the_hook_is_stored_with_the_proxys_hint(accepting_upstream):
    client = httpx2.Client(transport=LoggingTransport(httpx2.HTTPTransport()))
    with client:
        resp = client.post(accepting_upstream.origin + "/v1/chat/completions", json=CHAT,
                           headers={"Authorization": b"Bearer " + BAD_KEY})
    assert resp.status_code == 200
    [row] = rows(expect=1)
    assert row.api_key_hint == CLEAN_HINT and row.total_tokens == 7
