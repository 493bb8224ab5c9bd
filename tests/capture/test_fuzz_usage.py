"""Hypothesis fuzz of usage reading, end to end (issue 8, bad input): arbitrary JSON shapes and number
literals for every usage field (negative, huge, float, exponent, string, NaN, Infinity, bool,
arrays, objects), in a whole JSON answer and in an SSE stream cut at arbitrary points, read by the
record builder and stored in a real SQLite file. Checked against an oracle written here from the
rules (not from the code): a field is stored only when it is right, exactly; anything else is
stored as null and the record says so (``error_type='bad_usage'``); nothing ever raises.

tests/test_capture.py fuzzes the byte level (arbitrary bytes, splits, event soup) and
tests/test_usage.py lists hand-picked bad values; this adds generated usage shapes through to
stored rows. ``test_extreme_accepted_values_never_poison_the_ledger`` checks that the largest
values accepted as right can be summed by the ledger (rollup) on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from spendlog.capture import CallCapture
from spendlog.db.engine import make_engine
from spendlog.db.migrate import ensure_schema
from spendlog.db.models import Completion
from spendlog.db.queries import Filters, grouped_totals
from spendlog.db.store import insert_records
from spendlog.db.types import quantize_money
from spendlog.usage import MAX_COST_USD, MAX_TOKENS

EXAMPLES = int(os.environ.get("SPENDLOG_HYPOTHESIS_EXAMPLES", "200"))
URL = "http://127.0.0.1:8790/v1/chat/completions"
HEADERS = [("Authorization", "Bearer sr_test_fuzz0123456789abcdef"), ("Content-Type", "application/json")]
TOKEN_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens", "reasoning_tokens")

# -- JSON literals, with the oracle's reading of each --------------------------------------------

SPECIAL = ["NaN", "Infinity", "-Infinity", "-0", "0", "0.0", "-0.0", "1e400", "-1e400", "1E-400", "1e-7", "15.0",
           "null", "true", "false", "[]", "{}", "[1]", '{"value":5}', '"15"', '"0.001"', '""', '"NaN"',
           str(MAX_TOKENS), str(MAX_TOKENS + 1), str(2**64), "-1", str(-(2**63))]
# numbers Decimal or int() cannot take at all: exponents beyond Decimal's range (InvalidOperation, not
# ValueError), integers past Python's 4,300-digit limit, and huge digit strings (issue 12, finding 4)
BEYOND = ["1e-99999999999999999999", "1e99999999999999999999", "-1e-99999999999999999999", "1E+999999999999999999",
          "1e-999999999999999999", "9" * 5000, "1" * 4300, "0." + "0" * 5000 + "1", "1" + "0" * 5000 + ".5"]

number_literals = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.integers(min_value=0, max_value=10**7).map(str),
    st.decimals(allow_nan=False, allow_infinity=False, places=None, min_value=-(10**8), max_value=10**8).map(
        lambda d: format(d, "f") if d.as_tuple().exponent < 0 else format(d, "f") + ".0"),
    st.tuples(st.integers(-999, 999), st.integers(-30, 30)).map(lambda t: f"{t[0]}e{t[1]}"),
)
literals = st.one_of(number_literals, st.sampled_from(SPECIAL), st.sampled_from(BEYOND),
                     st.text(max_size=8).map(json.dumps))


def oracle_tokens(text: str) -> int | None:
    """A token count is right only as a JSON integer literal in [0, MAX_TOKENS]."""
    try:
        value = json.loads(text, parse_float=Decimal)
    except (ValueError, ArithmeticError):
        return None
    if type(value) is int and 0 <= value <= MAX_TOKENS and not any(c in text for c in ".eE"):
        return value
    return None


def oracle_cost(text: str) -> Decimal | None:
    """A cost is right only as a finite JSON number in [0, MAX_COST_USD], read exactly."""
    try:
        value = json.loads(text, parse_float=Decimal)
    except (ValueError, ArithmeticError):
        return None
    if type(value) is bool or not isinstance(value, (int, Decimal)):
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    if not value.is_finite() or not Decimal(0) <= value <= MAX_COST_USD:
        return None
    return value


@st.composite
def usages(draw):
    """``(usage JSON text, expected record fields, bad?)``"""
    if draw(st.integers(0, 19)) == 0:  # usage itself is not an object
        text = draw(st.sampled_from(["5", '"usage"', "[]", "[1,2]", "true", "1.5"]))
        return text, {f: None for f in (*TOKEN_FIELDS, "cost_usd")}, True
    members, expected, bad = [], {}, False

    def field(name: str, container: list, oracle) -> None:
        nonlocal bad
        if draw(st.booleans()):
            text = draw(literals)
            container.append(f'"{name}":{text}')
            value = oracle(text)
            expected[name] = value
            bad = bad or (value is None and text != "null")
        else:
            expected[name] = None

    for name in ("prompt_tokens", "completion_tokens", "total_tokens"):
        field(name, members, oracle_tokens)
    for outer, inner in (("prompt_tokens_details", "cached_tokens"), ("completion_tokens_details", "reasoning_tokens")):
        shape = draw(st.sampled_from(["absent", "null", "object", "bad"]))
        if shape == "object":
            inside: list[str] = []
            field(inner, inside, oracle_tokens)
            members.append(f'"{outer}":{{{",".join(inside)}}}')
        else:
            expected[inner] = None
            if shape == "null":
                members.append(f'"{outer}":null')
            elif shape == "bad":
                members.append(f'"{outer}":{draw(st.sampled_from(["5", "[]", chr(34) + "x" + chr(34), "true"]))}')
                bad = True
    field("cost", members, oracle_cost)
    expected["cost_usd"] = expected.pop("cost")
    members = draw(st.permutations(members))
    return "{" + ",".join(members) + "}", expected, bad


# -- driving the record builder --------------------------------------------------------------------

def _capture(stream: bool, asked: bool) -> CallCapture:
    body = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}
    if stream:
        body["stream"] = True
        if asked:
            body["stream_options"] = {"include_usage": True}
    capture = CallCapture.start("POST", URL, HEADERS, json.dumps(body).encode())
    assert capture is not None
    return capture


def _cut(data: bytes, points: list[int]) -> list[bytes]:
    bounds = sorted({0, len(data), *(p % (len(data) + 1) for p in points)})
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


def _whole_answer(usage: str) -> bytes:
    return ('{"id":"chatcmpl-fuzz","object":"chat.completion","created":1,"model":"openai/gpt-4o-mini",'
            '"choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],'
            f'"usage":{usage}}}').encode()


def _stream_answer(usage: str) -> bytes:
    head = 'data: {"id":"chatcmpl-fuzz","object":"chat.completion.chunk","created":1,"model":"openai/gpt-4o-mini"'
    return (f'{head},"choices":[{{"index":0,"delta":{{"content":"ok"}},"finish_reason":null}}]}}\n\n'
            ": keep-alive\n\n"
            f'{head},"choices":[{{"index":0,"delta":{{}},"finish_reason":"stop"}}]}}\n\n'
            f'{head},"choices":[],"usage":{usage}}}\n\n'
            "data: [DONE]\n\n").encode()


@pytest.fixture(scope="module")
def ledger_engine(tmp_path_factory):
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'fuzz.db'}")
    ensure_schema(engine)
    yield engine
    engine.dispose()


def _stored(engine, record: dict) -> Completion:
    with engine.begin() as conn:
        assert insert_records(conn, [record]) == 1
    with engine.connect() as conn:
        return conn.execute(select(Completion).where(Completion.id == record["id"])).one()


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@example(usage=('{"prompt_tokens":-1,"total_tokens":1e400,"cost":NaN}',
                {"prompt_tokens": None, "completion_tokens": None, "total_tokens": None, "cached_tokens": None,
                 "reasoning_tokens": None, "cost_usd": None}, True), stream=True, asked=False, points=[3, 200])
@example(usage=('{"prompt_tokens":15.0,"completion_tokens":"7","cost":-0.5}',
                {"prompt_tokens": None, "completion_tokens": None, "total_tokens": None, "cached_tokens": None,
                 "reasoning_tokens": None, "cost_usd": None}, True), stream=False, asked=False, points=[])
@example(usage=('{"prompt_tokens":11,"completion_tokens":7,"total_tokens":18,"cost":1.23e-5}',
                {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18, "cached_tokens": None,
                 "reasoning_tokens": None, "cost_usd": Decimal("0.0000123")}, False),
         stream=False, asked=False, points=[])
@given(usage=usages(), stream=st.booleans(), asked=st.booleans(),
       points=st.lists(st.integers(min_value=0, max_value=4000), max_size=12))
def test_any_usage_shape_is_stored_exactly_right_or_as_null_and_flagged(ledger_engine, usage, stream, asked, points):
    usage_text, expected, bad = usage
    assume(not (stream and not usage_text.startswith("{")))  # its own test below (a known gap)
    capture = _capture(stream, asked)
    answer = _stream_answer(usage_text) if stream else _whole_answer(usage_text)
    capture.response_started(200, [("content-type", "text/event-stream" if stream else "application/json")])
    delivered = b"".join(capture.feed(c) for c in _cut(answer, points)) + capture.end_of_body()
    capture.finish  # the record is built below, exactly as finish() would
    record = capture.record()

    if not stream or asked:
        assert delivered == answer  # the caller's bytes are untouched
    for name in (*TOKEN_FIELDS, "cost_usd"):
        assert record[name] == expected[name], (name, usage_text)
    assert record["cost_source"] == ("missing" if expected["cost_usd"] is None else "upstream")
    if bad:
        assert record["error_type"] == "bad_usage" and record["error_message"], usage_text
    else:
        assert record["error_type"] is None, (record["error_type"], record["error_message"], usage_text)

    row = _stored(ledger_engine, record)  # and what the ledger gives back is the same
    for name in TOKEN_FIELDS:
        assert getattr(row, name) == expected[name]
    want = expected["cost_usd"]
    if want is None:  # no usable bill: the store estimates it where the tokens and the model allow (issue 14)
        from spendlog.db.estimate import price_book, price_record

        priced = price_record(price_book(), record)
        assert row.cost_source == priced["cost_source"]
        assert row.cost_usd == (None if priced["cost_usd"] is None else quantize_money(priced["cost_usd"]))
    else:
        assert (row.cost_source, row.cost_usd) == ("upstream", quantize_money(want))


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("field", ["cost", "prompt_tokens"])
@pytest.mark.parametrize("literal", BEYOND[:3] + BEYOND[5:7], ids=lambda t: t if len(t) < 30 else f"{len(t)} digits")
def test_numbers_beyond_decimal_are_bad_usage_never_a_lost_call(ledger_engine, literal, field, stream):
    """A usage number that cannot be parsed (``1e-99999999999999999999`` raises InvalidOperation,
    a 5,000-digit integer ValueError) is one unusable field: the call is recorded, the field is
    null, the rest of the usage is kept, and the record says ``bad_usage``."""
    other = "completion_tokens"
    usage = f'{{"{field}":{literal},"{other}":7}}'
    capture = _capture(stream, asked=True)
    answer = _stream_answer(usage) if stream else _whole_answer(usage)
    capture.response_started(200, [("content-type", "text/event-stream" if stream else "application/json")])
    delivered = capture.feed(answer) + capture.end_of_body()
    assert delivered == answer
    capture.finish  # built below, by the writer's own entry point
    record = capture.build()
    assert record is not None, "the call was not recorded"
    assert record["error_type"] == "bad_usage", (record["error_type"], record["error_message"])
    assert record["cost_usd"] is None and record["prompt_tokens"] is None  # the bad one, and the one not sent
    assert record[other] == 7 and record["model"] == "openai/gpt-4o-mini"
    row = _stored(ledger_engine, record)
    assert row.error_type == "bad_usage" and row.completion_tokens == 7


def test_stream_usage_that_is_not_an_object_is_flagged():
    """A stream's usage chunk with ``"usage": 5``: nothing is stored (right), and the record must say
    the usage was unusable, as it does for a whole answer with the same usage."""
    unflagged = []
    for usage in ("5", '"usage"', "[]", "[1,2]", "true", "1.5"):
        for stream in (False, True):
            capture = _capture(stream, asked=True)
            answer = _stream_answer(usage) if stream else _whole_answer(usage)
            capture.response_started(200, [("content-type", "text/event-stream" if stream else "application/json")])
            capture.feed(answer)
            capture.end_of_body()
            record = capture.record()
            assert all(record[f] is None for f in (*TOKEN_FIELDS, "cost_usd"))
            if record["error_type"] != "bad_usage":
                unflagged.append(f"{'stream' if stream else 'whole'} usage={usage}")
    assert not unflagged, f"unusable usage stored as null without a flag: {unflagged}"


# -- the largest values accepted as right -------------------------------------------------------------

@pytest.mark.parametrize("what", ["tokens", "cost"])
def test_extreme_accepted_values_never_poison_the_ledger(db_url, what):
    """Calls reporting the largest token count (or cost) the usage reader accepts as right, in one
    hour for one model, then an ordinary call: each is stored, and the sums the dashboard reads are
    exact (or such values are refused up front, as unusable usage). A sum that overflows must not
    turn the rollup into floats (SQLite) or make every later batch fail (PostgreSQL). The cost case
    passes SQLite's int64 pico-dollars in that one rollup row (930 calls at 10,000 USD: 9.3M USD)."""
    from helpers import make_record

    engine = make_engine(db_url)
    ensure_schema(engine)
    now = datetime.now(timezone.utc)
    if what == "tokens":
        big = [make_record(created_at=now, prompt_tokens=MAX_TOKENS, total_tokens=MAX_TOKENS) for _ in range(2)]
        want = ("prompt_tokens", 2 * MAX_TOKENS + 15)
    else:
        big = [make_record(created_at=now, cost_usd=MAX_COST_USD) for _ in range(930)]
        want = ("cost_usd", 930 * MAX_COST_USD + Decimal("0.0000148"))
    failures = []
    calls = [*big, make_record(created_at=now)]
    step = max(1, len(calls) // 10)  # ten batches or so, as a writer would make of separate calls
    for i in range(0, len(calls), step):
        try:
            with engine.begin() as conn:
                insert_records(conn, calls[i : i + step])
        except Exception as exc:  # noqa: BLE001 - collected: the test reports every failing batch
            failures.append(f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}")
    totals = None
    try:
        with engine.connect() as conn:
            [totals] = grouped_totals(conn, Filters(), [])
    except Exception as exc:  # noqa: BLE001
        failures.append(f"reading totals: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}")
    engine.dispose()
    assert not failures, f"batches refused or totals unreadable: {failures}"
    assert totals[want[0]] == want[1], f"{want[0]} sum is {totals[want[0]]!r}, not {want[1]}"
