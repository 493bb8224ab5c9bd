"""Fixtures that run the fake upstream (see spendlog/fake_upstream/).

- `fake_upstream`: a running fake (real HTTP on 127.0.0.1, a free port) with `.base_url`
  ("http://127.0.0.1:PORT/v1"), `.api_key` (a valid `sr_test_...` key), `.management_key` (reads
  `GET /v1/activity`), `.url(path)`, `.requests` (what it received) and `.activity()` (what it
  billed); both emptied before each test. One server is shared by the session; its options are
  reset before each test.
- `fake_upstream_factory`: `fake_upstream_factory(latency_ms=..., no_cost=..., management_key=...)`
  starts a private fake with those options, stopped after the test.
"""

from __future__ import annotations

import json
from decimal import Decimal

import httpx
import pytest

from spendlog.fake_upstream import FakeUpstream, start_fake_upstream


@pytest.fixture(scope="session")
def _fake_upstream_session():
    fake = start_fake_upstream()
    yield fake
    fake.stop()


@pytest.fixture
def fake_upstream(_fake_upstream_session) -> FakeUpstream:
    fake = _fake_upstream_session
    state = fake.state
    state.latency_ms = state.chunk_delay_ms = 0
    state.keepalive_every, state.retry_after = 4, 1
    state.no_cost, state.management_key = False, None
    fake.clear_requests()
    fake.clear_activity()
    return fake


@pytest.fixture
def fake_upstream_factory():
    started: list[FakeUpstream] = []

    def start(**opts) -> FakeUpstream:
        fake = start_fake_upstream(**opts)
        started.append(fake)
        return fake

    yield start
    for fake in started:
        fake.stop()


# --- helpers for tests that talk to the fake with plain httpx ------------------------------------

CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hello there"}]}


_client: httpx.Client | None = None


def post(fake, path, body, *, key=True, headers=None, timeout=10):
    """POST `body` as JSON to the fake (with its key unless key=False), on one shared keep-alive client."""
    global _client
    if _client is None:
        _client = httpx.Client()  # building a client per call costs ~30 ms (its SSL context)
    h = {"Authorization": f"Bearer {fake.api_key}"} if key else {}
    return _client.post(fake.url(path), json=body, headers={**h, **(headers or {})}, timeout=timeout)


def get_activity(fake, key=None, **params):
    """GET /v1/activity with the fake's management key (or `key`), query `params`."""
    global _client
    if _client is None:
        _client = httpx.Client()
    return _client.get(fake.url("activity"), params=params,
                       headers={"Authorization": f"Bearer {key or fake.management_key}"}, timeout=10)


def jdec(data):
    return json.loads(data, parse_float=Decimal)


def sse(text: str) -> list[str]:
    """Raw SSE blocks (separated by blank lines), comments included."""
    return [b for b in text.split("\n\n") if b]


def data_events(text: str) -> list:
    out = []
    for block in sse(text):
        for line in block.split("\n"):
            if line.startswith("data: "):
                payload = line[6:]
                out.append(payload if payload == "[DONE]" else jdec(payload))
    return out


def assert_openai_error(r, status):
    assert r.status_code == status and r.headers["content-type"] == "application/json"
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    return err
