"""Hard budgets: the proxy and the enforcing hook answer a call in an exhausted scope with a 402
themselves, never call the upstream, record the attempt; the in-memory spend follows the process's
own calls and the ledger; the overshoot stays within the calls in flight."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import httpx
import pytest
from fixture_proxy import CHAT, rows
from helpers import make_record

import spendlog
from spendlog.db.budgets import BudgetSpec, add_budget
from spendlog.db.engine import make_engine
from spendlog.db.migrate import upgrade
from spendlog.db.store import insert_records

UTC = timezone.utc


def _ledger(db_url=None, *, budgets=(), spent=()):
    """The ledger with these budgets ((name, amount, scope)) and calls ((cost, overrides))."""
    engine = make_engine(db_url)
    upgrade(engine)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        for name, amount, scope in budgets:
            add_budget(conn, BudgetSpec(name=name, amount_usd=Decimal(amount), period="month", scope=scope,
                                        hard=True), now)
        if spent:
            insert_records(conn, [make_record(created_at=now - timedelta(seconds=2), cost_usd=Decimal(cost), **extra)
                                  for cost, extra in spent])
    engine.dispose()


def _post(proxy, app=None, *, key):
    headers = {"Authorization": f"Bearer {key}"}
    if app:
        headers["X-Spendlog-App"] = app
    return httpx.post(proxy.url("/v1/chat/completions"), json=CHAT, headers=headers, timeout=30)


def test_the_proxy_answers_402_in_an_exhausted_scope_and_never_calls_upstream(db_url, fake_upstream, proxy_factory):
    _ledger(db_url, budgets=[("billing-cap", "1", {"apps": ["billing"]})], spent=[("1", {"app": "billing"})])
    proxy = proxy_factory(fake_upstream.base_url, db_url=db_url)
    refused = _post(proxy, "billing", key=fake_upstream.api_key)
    assert refused.status_code == 402
    error = refused.json()["error"]
    assert (error["type"], error["code"], error["budget"]) == ("budget_exceeded", "budget_exceeded", "billing-cap")
    assert datetime.fromisoformat(error["resets_at"]) > datetime.now(UTC)
    assert "billing-cap" in error["message"] and refused.headers["x-should-retry"] == "false"
    assert fake_upstream.requests == []
    assert _post(proxy, "search", key=fake_upstream.api_key).status_code == 200  # another scope goes through
    assert len(fake_upstream.requests) == 1
    stored = rows(db_url, expect=3)
    attempt = [r for r in stored if r.error_type == "budget_exceeded"]
    assert len(attempt) == 1
    [r] = attempt
    assert (r.status_code, r.app, r.cost_usd, r.prompt_tokens, r.cost_source) == (402, "billing", None, None, "missing")


@pytest.mark.parametrize("scope, headers, blocked", [
    ({"tags": [["team", "core"]]}, {"X-Spendlog-Tags": "team=core"}, True),
    ({"tags": [["team", "core"]]}, {"X-Spendlog-Tags": "team=ops"}, False),
    ({"key_hints": ["HINT"]}, {}, True),
    ({"models": ["openai/gpt-4o-mini"]}, {}, True),
    ({"providers": ["anthropic"]}, {}, False),
])
def test_scopes_by_tag_key_and_model(fake_upstream, proxy_factory, scope, headers, blocked):
    from spendlog.headers import hint_for

    scope = {k: [hint_for(fake_upstream.api_key) if v == "HINT" else v for v in vs] if k == "key_hints" else vs
             for k, vs in scope.items()}
    _ledger(budgets=[("cap", "0.5", scope)], spent=[("0.5", {"tags": {"team": "core"},
                                                            "api_key_hint": hint_for(fake_upstream.api_key)})])
    proxy = proxy_factory(fake_upstream.base_url)
    answer = httpx.post(proxy.url("/v1/chat/completions"), json=CHAT, timeout=30,
                        headers={"Authorization": f"Bearer {fake_upstream.api_key}", **headers})
    assert answer.status_code == (402 if blocked else 200)
    assert len(fake_upstream.requests) == (0 if blocked else 1)


def test_the_proxys_own_calls_exhaust_the_budget_in_memory(fake_upstream, proxy_factory):
    from spendlog.fake_upstream import expected_usage

    cost = expected_usage(CHAT["model"], CHAT)["cost"]
    _ledger(budgets=[("cap", str(cost * 2), {})])
    proxy = proxy_factory(fake_upstream.base_url, budget_refresh=3600)  # no ledger re-read: own calls only
    assert [_post(proxy, key=fake_upstream.api_key).status_code for _ in range(2)] == [200, 200]
    assert spendlog.flush(10)  # committed: the guard has counted both
    assert _post(proxy, key=fake_upstream.api_key).status_code == 402
    assert len(fake_upstream.requests) == 2


def test_spend_from_other_processes_counts_after_a_refresh(fake_upstream, proxy_factory):
    _ledger(budgets=[("cap", "1", {})])
    proxy = proxy_factory(fake_upstream.base_url, budget_refresh=0.2)
    assert _post(proxy, key=fake_upstream.api_key).status_code == 200
    _ledger(spent=[("1", {"app": "elsewhere"})])  # another host's calls reach the ledger
    deadline = time.monotonic() + 30
    while _post(proxy, key=fake_upstream.api_key).status_code != 402:
        assert time.monotonic() < deadline, "the refresh never saw the other spend"
        time.sleep(0.1)


def test_32_concurrent_calls_overshoot_by_at_most_the_calls_in_flight(fake_upstream, proxy_factory):
    from spendlog.fake_upstream import expected_usage

    cost = expected_usage(CHAT["model"], CHAT)["cost"]
    amount = Decimal("0.01")
    _ledger(budgets=[("cap", str(amount), {})], spent=[(str(amount - cost / 2), {})])  # half a call left
    fake_upstream.state.latency_ms = 200  # all 32 are in flight together
    proxy = proxy_factory(fake_upstream.base_url, budget_refresh=3600)

    async def wave():
        async with httpx.AsyncClient(timeout=60) as client:
            answers = await asyncio.gather(*(client.post(proxy.url("/v1/chat/completions"), json=CHAT,
                                                         headers={"Authorization": f"Bearer {fake_upstream.api_key}"})
                                             for _ in range(32)))
        return [a.status_code for a in answers]

    first = asyncio.run(wave())
    admitted = first.count(200)
    assert set(first) <= {200, 402} and 1 <= admitted <= 32
    assert spendlog.flush(10)
    second = asyncio.run(wave())
    assert second == [402] * 32  # once the admitted calls are counted, nothing more goes through
    assert len(fake_upstream.requests) == admitted
    stored = rows(expect=65)
    spent = sum((r.cost_usd or 0 for r in stored), Decimal(0))
    overshoot = spent - amount
    assert Decimal(0) < overshoot <= admitted * cost  # the bound: the calls in flight when the line was crossed
    assert sum(r.error_type == "budget_exceeded" for r in stored) == 64 - admitted


def test_the_hook_refuses_with_enforce_budgets(fake_upstream):
    import openai

    _ledger(budgets=[("cap", "1", {"apps": ["bot"]})], spent=[("2", {"app": "bot"})])
    client = openai.OpenAI(base_url=fake_upstream.base_url, api_key=fake_upstream.api_key, max_retries=2,
                           http_client=spendlog.http_client(app="bot", enforce_budgets=True))
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(**CHAT)
    assert info.value.status_code == 402 and info.value.body["type"] == "budget_exceeded"
    assert fake_upstream.requests == []
    [row] = [r for r in rows(expect=2) if r.status_code == 402]  # one attempt: the SDK did not retry the 402
    assert (row.error_type, row.status_code, row.cost_usd, row.app) == ("budget_exceeded", 402, None, "bot")
    plain = openai.OpenAI(base_url=fake_upstream.base_url, api_key=fake_upstream.api_key,
                          http_client=spendlog.http_client(app="bot"))  # not enforcing: the call goes
    assert plain.chat.completions.create(**CHAT).choices
    assert len(fake_upstream.requests) == 1
