"""The SSE splitter: events come out whole and byte-exact wherever the network split them."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spendlog.sse import EventSplitter, EventTooLarge, parse_event

STREAM = (
    b": keep-alive\n\n"
    b'data: {"id":"c1","choices":[{"delta":{"content":"a"}}]}\n\n'
    b'data: {"id":"c1",\r\ndata: "x":1}\r\n\r\n'
    b"event: response.created\ndata: {}\n\n"
    b"data: one\rdata: two\r\r"
    b"data: [DONE]\n\n"
)
EVENTS = [
    b": keep-alive\n\n",
    b'data: {"id":"c1","choices":[{"delta":{"content":"a"}}]}\n\n',
    b'data: {"id":"c1",\r\ndata: "x":1}\r\n\r\n',
    b"event: response.created\ndata: {}\n\n",
    b"data: one\rdata: two\r\r",
    b"data: [DONE]\n\n",
]


def split_all(chunks: list[bytes]) -> tuple[list[bytes], bytes]:
    splitter = EventSplitter()
    events = []
    for chunk in chunks:
        events.extend(splitter.split(chunk))
    return events, splitter.take_pending()


def cut(data: bytes, points: list[int]) -> list[bytes]:
    points = sorted({p % (len(data) + 1) for p in points})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


def test_whole_stream_in_one_read():
    events, rest = split_all([STREAM])
    assert events == EVENTS
    assert rest == b""


def test_one_byte_at_a_time():
    events, rest = split_all([STREAM[i : i + 1] for i in range(len(STREAM))])
    assert events == EVENTS
    assert rest == b""


def test_unfinished_tail_is_kept():
    events, rest = split_all([b"data: a\n\ndata: b\n"])
    assert events == [b"data: a\n\n"]
    assert rest == b"data: b\n"


def test_parse_event_fields():
    assert parse_event(EVENTS[0]) == (None, None)
    assert parse_event(EVENTS[1]) == (None, b'{"id":"c1","choices":[{"delta":{"content":"a"}}]}')
    assert parse_event(EVENTS[2]) == (None, b'{"id":"c1",\n"x":1}')
    assert parse_event(EVENTS[3]) == ("response.created", b"{}")
    assert parse_event(EVENTS[4]) == (None, b"one\ntwo")
    assert parse_event(b"data:no-space\n\n") == (None, b"no-space")
    assert parse_event(b"id: 3\nretry: 10\n\n") == (None, None)


@given(st.lists(st.integers(min_value=0, max_value=10_000), max_size=30))
def test_any_split_gives_the_same_events(points):
    events, rest = split_all(cut(STREAM, points))
    assert events == EVENTS
    assert rest == b""


@given(st.binary(max_size=400), st.lists(st.integers(min_value=0, max_value=400), max_size=10))
def test_arbitrary_bytes_round_trip(data, points):
    whole, whole_rest = split_all([data])
    events, rest = split_all(cut(data, points))
    assert events == whole and rest == whole_rest
    assert b"".join(events) + rest == data
    for raw in events:
        parse_event(raw)  # never raises


# long events: past 64 KiB an unfinished event grows in place (issue 12, finding 5)
BIG = [b"data: " + b"x" * 100_000 + b"\n\n", b"data: " + b"y" * 70_000 + b"\r\n\r\n", b"data: small\n\n",
       b"data: " + b"z" * 200_000 + b"\r\r", b": " + b"c" * 65_536 + b"\n\n"]


@settings(max_examples=50, deadline=None)
@given(st.permutations(BIG), st.lists(st.integers(min_value=0, max_value=500_000), max_size=40))
def test_long_events_split_anywhere_come_out_whole_and_as_bytes(events, points):
    data = b"".join(events)
    out, rest = split_all(cut(data, points))
    assert out == list(events) and rest == b""
    assert all(type(raw) is bytes for raw in out)


def test_an_event_past_the_limit_raises_and_keeps_what_was_held():
    splitter = EventSplitter(limit=100_000)
    assert splitter.take_complete(b"data: a\n\ndata: " + b"x" * 70_000) == b"data: a\n\n"
    assert splitter.take_complete(b"x" * 20_000) == b""  # grown in place, still under the limit
    with pytest.raises(EventTooLarge):
        splitter.take_complete(b"x" * 20_000)
    rest = splitter.take_pending()
    assert type(rest) is bytes and rest == b"data: " + b"x" * 90_000
