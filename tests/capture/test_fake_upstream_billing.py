"""The fake upstream's no-cost flavour (`--no-cost`, `X-Fake-No-Cost`: usage without cost, as OpenAI
itself answers) and its bill, `GET /v1/activity` (OpenRouter's shape): exact sums over many calls,
UTC days from the test clock, what fails bills nothing, management-key auth, query filters, the CLI."""

from __future__ import annotations

import random
import re
import threading
from collections import defaultdict
from datetime import date, datetime, timezone
from decimal import Decimal

import httpx
import openai
import pytest
from fixture_upstream import CHAT, assert_openai_error, data_events, get_activity, jdec, post

from spendlog.fake_upstream import (PRICES, Ledger, expected_bill, expected_usage, new_management_key,
                                    spawn_fake_upstream)
from spendlog.fake_upstream.pricing import compute

# path, endpoint, request: one of each endpoint, a reasoning model among them
REQUESTS = [
    ("chat/completions", "chat", {"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "hi there"}]}),
    ("completions", "completions", {"model": "openai/gpt-4o-mini", "prompt": "Say hi"}),
    ("responses", "responses", {"model": "openai/o3-mini", "input": "Tell me a joke", "instructions": "be brief"}),
    ("embeddings", "embeddings", {"model": "openai/text-embedding-3-small", "input": ["first text", "second"]}),
]
USAGE_LITERAL = re.compile(rb'"usage":([^,]+),')


def _answer_usage(endpoint: str, r: httpx.Response, stream: bool) -> dict:
    """The usage an answer carries, in expected_usage's terms (cost None when absent)."""
    if not stream:
        u = jdec(r.content)["usage"]
    elif endpoint == "responses":
        u = data_events(r.text)[-1]["response"]["usage"]
    else:
        events = data_events(r.text)
        assert events[-1] == "[DONE]" and events[-2]["choices"] == []
        u = events[-2]["usage"]
    if endpoint == "responses":
        return {"prompt_tokens": u["input_tokens"], "completion_tokens": u["output_tokens"],
                "total_tokens": u["total_tokens"], "cached_tokens": u["input_tokens_details"]["cached_tokens"],
                "reasoning_tokens": u["output_tokens_details"]["reasoning_tokens"], "cost": u.get("cost")}
    return {"prompt_tokens": u["prompt_tokens"], "completion_tokens": u.get("completion_tokens"),
            "total_tokens": u["total_tokens"], "cost": u.get("cost"),
            "cached_tokens": u["prompt_tokens_details"]["cached_tokens"] if endpoint == "chat" else None,
            "reasoning_tokens": u["completion_tokens_details"]["reasoning_tokens"] if endpoint == "chat" else None}


def _streamed(req: dict, endpoint: str) -> dict:
    return {**req, "stream": True, **({} if endpoint == "responses" else {"stream_options": {"include_usage": True}})}


# --- the no-cost flavour ----------------------------------------------------------------------

def test_no_cost_fake_answers_every_endpoint_without_cost_and_exact_tokens(fake_upstream_factory):
    fake = fake_upstream_factory(no_cost=True)
    for path, endpoint, req in REQUESTS:
        for stream in (False, True) if endpoint != "embeddings" else (False,):
            body = _streamed(req, endpoint) if stream else req
            r = post(fake, path, body)
            assert r.status_code == 200 and b'"cost"' not in r.content, (path, stream)
            exp = expected_usage(req["model"], req, endpoint, no_cost=True)
            assert _answer_usage(endpoint, r, stream) == exp
            assert exp["cost"] is None
            assert exp == {**expected_usage(req["model"], req, endpoint), "cost": None}  # the same tokens
            assert exp["prompt_tokens"] > 0
    # X-Fake-No-Cost: 0 puts the cost back on a no-cost fake, to the exact literal
    path, endpoint, req = REQUESTS[0]
    r = post(fake, path, req, headers={"X-Fake-No-Cost": "0"})
    assert _answer_usage(endpoint, r, False) == expected_usage(req["model"], req, endpoint)


@pytest.mark.parametrize("path, endpoint, req", REQUESTS)
def test_no_cost_header_per_request(fake_upstream, path, endpoint, req):
    priced = post(fake_upstream, path, req)
    bare = post(fake_upstream, path, req, headers={"X-Fake-No-Cost": "1"})
    assert b'"cost":' in priced.content and b'"cost"' not in bare.content
    assert _answer_usage(endpoint, bare, False) == {**_answer_usage(endpoint, priced, False), "cost": None}
    if endpoint != "embeddings":
        r = post(fake_upstream, path, _streamed(req, endpoint), headers={"X-Fake-No-Cost": "true"})
        assert b'"cost"' not in r.content
        assert _answer_usage(endpoint, r, True) == expected_usage(req["model"], req, endpoint, no_cost=True)
    err = assert_openai_error(post(fake_upstream, path, req, headers={"X-Fake-No-Cost": "maybe"}), 400)
    assert "X-Fake-No-Cost" in err["message"]


def test_no_cost_through_the_openai_sdk(fake_upstream):
    with openai.OpenAI(base_url=fake_upstream.base_url, api_key=fake_upstream.api_key, max_retries=0,
                       default_headers={"X-Fake-No-Cost": "1"}) as client:
        priced = client.chat.completions.create(model="openai/gpt-4o-mini", messages=CHAT["messages"],
                                                extra_headers={"X-Fake-No-Cost": "0"})
        assert "cost" in priced.usage.model_extra  # the SDK keeps an unknown usage field: absence is visible
        exp = expected_usage("openai/gpt-4o-mini", CHAT, no_cost=True)
        c = client.chat.completions.create(model="openai/gpt-4o-mini", messages=CHAT["messages"])
        assert "cost" not in c.usage.model_extra
        assert (c.usage.prompt_tokens, c.usage.completion_tokens, c.usage.total_tokens) == (
            exp["prompt_tokens"], exp["completion_tokens"], exp["total_tokens"])
        chunks = list(client.chat.completions.create(model="openai/gpt-4o-mini", messages=CHAT["messages"],
                                                     stream=True, stream_options={"include_usage": True}))
        assert chunks[-1].usage.total_tokens == exp["total_tokens"] and "cost" not in chunks[-1].usage.model_extra
        req = {"model": "openai/gpt-4o", "input": "hi"}
        resp = client.responses.create(**req)
        assert resp.usage.output_tokens == expected_usage("openai/gpt-4o", req)["completion_tokens"]
        assert "cost" not in resp.usage.model_extra
        with client.responses.stream(**req) as stream:
            final = stream.get_final_response()
        assert final.usage.total_tokens == resp.usage.total_tokens and "cost" not in final.usage.model_extra
        e = client.embeddings.create(model="openai/text-embedding-3-small", input="hello world")
        assert e.usage.prompt_tokens == 3 and "cost" not in e.usage.model_extra


# --- GET /v1/activity: the bill ----------------------------------------------------------------

_WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()
_DAYS = ["2026-11-28T10:00:00Z", "2026-11-29T23:59:59Z", "2026-11-30T00:00:00Z", "2026-11-30T23:59:59.999Z",
         "2026-12-01T00:00:00Z", "2026-12-01T01:30:00+02:00"]  # the last one is 2026-11-30 23:30 UTC


def _utc_day(stamp: str) -> str:
    return datetime.fromisoformat(stamp).astimezone(timezone.utc).date().isoformat()


def test_activity_sums_equal_the_per_call_costs_exactly(fake_upstream_factory):
    fake = fake_upstream_factory()
    rng = random.Random(20261130)
    chat_models = [m for m, p in PRICES.items() if p.kind == "chat"]
    want: dict = defaultdict(lambda: [0, 0, 0, 0, Decimal(0)])
    priced_calls = 0
    for i in range(320):
        text = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 40)))
        if i % 40 == 0:
            text = "long " * 1100  # >= 1024 prompt tokens: a cached share at the cached price
        path, endpoint, _ = REQUESTS[rng.randrange(4)]
        if endpoint == "embeddings":
            req = {"model": "openai/text-embedding-3-small", "input": [text, text[::-1]]}
        else:
            model = rng.choice(chat_models + ["fake/auto"])
            req = {"chat": {"model": model, "messages": [{"role": "user", "content": text}]},
                   "completions": {"model": model, "prompt": text},
                   "responses": {"model": model, "input": text}}[endpoint]
        stream = endpoint != "embeddings" and rng.random() < 0.4
        no_cost = rng.random() < 0.3
        stamp = rng.choice(_DAYS)
        r = post(fake, path, _streamed(req, endpoint) if stream else req,
                 headers={"X-Fake-Time": stamp, "X-Fake-No-Cost": "1" if no_cost else "0"})
        assert r.status_code == 200
        u = _answer_usage(endpoint, r, stream)
        bill = expected_bill(req["model"], req, endpoint, no_cost=no_cost)
        assert bill["usage"] == (u["cost"] if not no_cost else 0) and (u["cost"] is None) == no_cost
        for field in ("prompt_tokens", "completion_tokens", "reasoning_tokens"):  # where the answer says
            assert u[field] in (None, bill[field])
        served = jdec(r.content)["model"] if not stream else bill["model"]
        assert bill["model"] == served
        w = want[(_utc_day(stamp), served)]
        w[0] += 1
        w[1] += u["prompt_tokens"]
        w[2] += bill["completion_tokens"]  # embeddings: 0
        w[3] += bill["reasoning_tokens"]  # legacy completions do not show them; the router counts them
        w[4] += u["cost"] or 0
        priced_calls += not no_cost
    assert 150 < priced_calls < 320 and len({d for d, _ in want}) == 4

    r = get_activity(fake)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    rows = jdec(r.content)["data"]
    assert [(x["date"], x["model"]) for x in rows] == sorted(want)  # by date then model, one row each
    for row in rows:
        n, p, c, reasoning, cost = want[(row["date"], row["model"])]
        assert (row["requests"], row["prompt_tokens"], row["completion_tokens"], row["reasoning_tokens"]) == (
            n, p, c, reasoning)
        assert row["usage"] == cost and isinstance(row["usage"], Decimal)
        assert row["byok_usage_inference"] == 0 and row["model_permaslug"] == row["model"]
        assert row["provider_name"] == {"openai": "OpenAI", "anthropic": "Anthropic", "google": "Google",
                                        "meta-llama": "Meta", "mistralai": "Mistral",
                                        "deepseek": "DeepSeek"}[row["model"].split("/")[0]]
    assert len({x["endpoint_id"] for x in rows}) == len({x["model"] for x in rows})
    # every usage is written as the exact decimal's own text: no exponent, no float rounding
    literals = [m.decode() for m in USAGE_LITERAL.findall(r.content)]
    assert literals == [format(want[(x["date"], x["model"])][4].normalize(), "f") if x["usage"] else "0"
                        for x in rows]
    assert sum(x["usage"] for x in rows) == sum(w[4] for w in want.values())
    assert [tuple(x) for x in fake.activity()] == [
        (x["date"], x["model"], x["provider_name"], x["usage"], x["requests"], x["prompt_tokens"],
         x["completion_tokens"], x["reasoning_tokens"]) for x in rows]


def test_activity_usage_is_the_decimal_literal_a_float_would_not_write(fake_upstream):
    req = {"model": "openai/text-embedding-3-small", "input": "hi"}  # 1 token at $0.02 per 1M
    post(fake_upstream, "embeddings", req, headers={"X-Fake-Time": "2026-11-30T12:00:00Z"})
    for _ in range(3):
        post(fake_upstream, "chat/completions", {**CHAT, "model": "google/gemini-1.5-flash"},
             headers={"X-Fake-Time": "2026-11-30T12:00:00Z"})
    body = get_activity(fake_upstream).content
    assert USAGE_LITERAL.findall(body)[1] == b"0.00000002"  # json.dumps(2e-08) would write 2e-08
    gemini = expected_bill("google/gemini-1.5-flash", {**CHAT, "model": "google/gemini-1.5-flash"})["usage"]
    assert jdec(body)["data"][0]["usage"] == 3 * gemini
    assert USAGE_LITERAL.findall(body)[0] == format((3 * gemini).normalize(), "f").encode()


def test_failed_calls_bill_nothing_and_undelivered_answers_bill_in_full(fake_upstream_factory):
    fake = fake_upstream_factory()
    mgmt = {"Authorization": f"Bearer {fake.management_key}"}
    failing = [("chat/completions", {**CHAT, "model": m}, {}) for m in ("fake/error-429", "fake/error-500",
                                                                       "fake/non-json", "acme/nope")]
    failing += [("chat/completions", {**CHAT, "model": "fake/reject-stream-options", "stream": True,
                                      "stream_options": {"include_usage": True}}, {}),
                ("chat/completions", {**CHAT, "max_tokens": 0}, {}),
                ("embeddings", {"model": "openai/gpt-4o", "input": "x"}, {}),
                ("chat/completions", CHAT, {"X-Fake-Time": "yesterday"}),
                ("chat/completions", CHAT, mgmt)]
    for path, req, headers in failing:
        assert post(fake, path, req, headers=headers).status_code != 200 or req["model"] == "fake/non-json"
        if req.get("model") in ("fake/error-429", "fake/non-json", "fake/reject-stream-options"):
            assert expected_bill(req["model"], req) is None
    assert post(fake, "chat/completions", CHAT, key=False).status_code == 401
    assert jdec(get_activity(fake).content) == {"data": []}

    billed = [{**CHAT, "model": "fake/no-usage"}, {**CHAT, "stream": True},  # usage never shown to the app
              {**CHAT, "model": "fake/cut-stream", "stream": True, "stream_options": {"include_usage": True}},
              {**CHAT, "model": "fake/no-cost"}]
    for req in billed[:2] + billed[3:]:
        assert post(fake, "chat/completions", req).status_code == 200
    with pytest.raises(httpx.RemoteProtocolError):
        post(fake, "chat/completions", billed[2])
    with pytest.raises(httpx.RemoteProtocolError):
        post(fake, "chat/completions", {**CHAT, "model": "fake/cut-stream"})
    billed.append({**CHAT, "model": "fake/cut-stream"})
    with httpx.stream("POST", fake.url("chat/completions"), json={**CHAT, "model": "openai/gpt-4o", "stream": True},
                      headers={"Authorization": f"Bearer {fake.api_key}", "X-Fake-Chunks": "400"}) as r:
        next(r.iter_bytes())  # the app hangs up after the first bytes
    billed.append({**CHAT, "model": "openai/gpt-4o"})
    bills = [expected_bill(req["model"], req) for req in billed]
    assert bills[0]["usage"] == compute("fake/no-usage", billed[0], "chat").cost > 0 and bills[3]["usage"] == 0
    rows = {x["model"]: x for x in jdec(get_activity(fake).content)["data"]}
    assert set(rows) == {"fake/no-usage", "openai/gpt-4o-mini", "fake/cut-stream", "fake/no-cost", "openai/gpt-4o"}
    for model, row in rows.items():
        mine = [b for b in bills if b["model"] == model]
        assert row["requests"] == len(mine) and row["usage"] == sum(b["usage"] for b in mine)
        assert row["prompt_tokens"] == sum(b["prompt_tokens"] for b in mine)
        assert row["completion_tokens"] == sum(b["completion_tokens"] for b in mine)
    assert rows["fake/no-cost"]["usage"] == 0 and rows["fake/no-cost"]["requests"] == 1
    assert rows["fake/cut-stream"]["requests"] == 2 and rows["fake/cut-stream"]["provider_name"] == "SolRouter Fake"


def test_the_test_clock_dates_answers_and_bills_around_midnight_utc(fake_upstream):
    stamps = ["2026-11-30T23:59:59Z", "2026-12-01T00:00:00Z", "2026-12-01T01:00:00+02:00", "2026-12-01T00:00:00Z"]
    for stamp, (path, endpoint, req) in zip(stamps, REQUESTS[:3] + REQUESTS[:1]):
        body = jdec(post(fake_upstream, path, req, headers={"X-Fake-Time": stamp}).content)
        assert body["created_at" if endpoint == "responses" else "created"] == int(
            datetime.fromisoformat(stamp).timestamp())
    days = {(x["date"], x["model"]): x["requests"] for x in jdec(get_activity(fake_upstream).content)["data"]}
    assert days == {("2026-11-30", "openai/gpt-4o"): 1, ("2026-11-30", "openai/o3-mini"): 1,
                    ("2026-12-01", "openai/gpt-4o-mini"): 1, ("2026-12-01", "openai/gpt-4o"): 1}
    for query, want in [({"date": "2026-11-30"}, {"2026-11-30"}), ({"from": "2026-12-01"}, {"2026-12-01"}),
                        ({"to": "2026-11-30"}, {"2026-11-30"}), ({"from": "2026-11-30", "to": "2026-12-01"},
                                                                 {"2026-11-30", "2026-12-01"}),
                        ({"date": "2026-11-29"}, set())]:
        assert {x["date"] for x in jdec(get_activity(fake_upstream, **query).content)["data"]} == want, query
    for bad in ("yesterday", "2026-11-30T23:59:59", "1764547199"):  # a clock needs a zone
        err = assert_openai_error(post(fake_upstream, "chat/completions", CHAT, headers={"X-Fake-Time": bad}), 400)
        assert "X-Fake-Time" in err["message"]
    assert sum(x.requests for x in fake_upstream.activity()) == 4


@pytest.mark.parametrize("query, param", [
    ({"date": "2026-11-31"}, "date"), ({"date": "20261130"}, "date"), ({"date": "2026-W48-1"}, "date"),
    ({"from": "2026-12-01", "to": "2026-11-30"}, "from"), ({"date": "2026-11-30", "from": "2026-11-01"}, "date"),
    ({"to": "30/11/2026"}, "to"),
])
def test_activity_query_errors_name_the_parameter(fake_upstream, query, param):
    assert assert_openai_error(get_activity(fake_upstream, **query), 400)["param"] == param


@pytest.mark.parametrize("authorization, status", [
    (None, 401), ("Bearer sk-0123456789abcdef", 401), ("sr_mgmt_0123456789", 401), ("Bearer sr_mgmt_", 401),
    ("Bearer sr_test_0123456789abcdef", 403), ("Bearer sr_live_0123456789", 403),
    ("Bearer sr_mgmt_0123456789", 200),
])
def test_activity_needs_a_management_key(fake_upstream, authorization, status):
    headers = {"Authorization": authorization} if authorization else {}
    r = httpx.get(fake_upstream.url("activity"), headers=headers, timeout=10)
    if status == 200:
        assert r.status_code == 200 and r.json() == {"data": []}
    else:
        err = assert_openai_error(r, status)
        assert err["code"] == ("invalid_api_key" if status == 401 else "insufficient_permissions")


def test_a_management_key_set_at_start_is_the_only_one_and_never_makes_calls(fake_upstream_factory):
    key = "custom-management-key-123"
    fake = fake_upstream_factory(management_key=key)
    assert fake.management_key == key
    assert post(fake, "chat/completions", CHAT).status_code == 200
    assert jdec(get_activity(fake).content)["data"][0]["requests"] == 1
    assert assert_openai_error(get_activity(fake, key=new_management_key()), 401)["code"] == "invalid_api_key"
    assert assert_openai_error(get_activity(fake, key=fake.api_key), 403)
    for k in (key, new_management_key()):  # neither the set key nor an sr_mgmt_ key may make calls
        r = httpx.post(fake.url("chat/completions"), json=CHAT, headers={"Authorization": f"Bearer {k}"})
        assert assert_openai_error(r, 403)["code"] == "insufficient_permissions"
    assert sum(x.requests for x in fake.activity()) == 1
    with openai.OpenAI(base_url=fake.base_url, api_key=key, max_retries=0) as admin, \
            openai.OpenAI(base_url=fake.base_url, api_key=fake.api_key, max_retries=0) as app:
        today = datetime.now(timezone.utc).date().isoformat()
        assert admin.get("/activity", cast_to=object, options={"params": {"date": today}})[
            "data"][0]["model"] == "openai/gpt-4o-mini"
        with pytest.raises(openai.PermissionDeniedError):
            app.get("/activity", cast_to=object)
        with pytest.raises(openai.PermissionDeniedError):
            admin.chat.completions.create(model="openai/gpt-4o-mini", messages=CHAT["messages"])


def test_ledger_sums_exactly_under_concurrent_bills():
    ledger = Ledger()
    u = compute("google/gemini-1.5-flash", {**CHAT, "model": "google/gemini-1.5-flash"}, "chat")
    at = datetime(2026, 11, 30, 23, 59, 59, tzinfo=timezone.utc).timestamp()

    def work() -> None:
        for i in range(2000):
            ledger.bill(at + i % 2, "google/gemini-1.5-flash", u, no_cost=i % 5 == 0)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    reader = [ledger.rows() for _ in range(50)]  # reading while they write never breaks
    for t in threads:
        t.join()
    nov, dec = ledger.rows()
    assert (nov.date, dec.date) == ("2026-11-30", "2026-12-01") and nov.requests == dec.requests == 6000
    assert nov.usage == dec.usage == 4800 * u.cost and nov.prompt_tokens == 6000 * u.prompt_tokens
    assert all(len(rows) <= 2 for rows in reader)
    assert ledger.rows(date(2026, 12, 1)) == [dec]
    ledger.clear()
    assert ledger.rows() == []


# --- the CLI ------------------------------------------------------------------------------------

def test_cli_help_documents_no_cost_and_the_management_key():
    from click.testing import CliRunner

    from spendlog.cli import cli

    out = CliRunner().invoke(cli, ["fake-upstream", "--help"]).output
    assert "--no-cost" in out and "--management-key" in out and "SOLROUTER_MANAGEMENT_KEY" in out


@pytest.mark.parametrize("key", ["short", "has a space in it"])
def test_cli_bad_management_key_is_one_line_exit_2_without_the_key(key):
    from click.testing import CliRunner

    from spendlog.cli import cli

    result = CliRunner().invoke(cli, ["fake-upstream", "--port", "0"], env={"SOLROUTER_MANAGEMENT_KEY": key})
    assert result.exit_code == 2 and result.stderr.startswith("spendlog: error: the management key")
    assert len(result.stderr.strip().splitlines()) == 1 and key not in result.output


def test_spawned_no_cost_fake_with_a_management_key_from_the_environment():
    key = new_management_key()
    with spawn_fake_upstream(no_cost=True, management_key=key) as fake:
        assert fake.management_key == key and key not in " ".join(fake._proc.args)
        banner = fake._proc.stdout.readline() + fake._proc.stdout.readline()  # after the URL line
        assert "the management key it was given" in banner and "no cost" in banner and key not in banner
        r = post(fake, "chat/completions", CHAT)
        assert r.status_code == 200 and b'"cost"' not in r.content
        assert post(fake, "chat/completions", CHAT, headers={"X-Fake-No-Cost": "0"}).json()["usage"]["cost"] > 0
        rows = jdec(get_activity(fake).content)["data"]
        assert [(x["requests"], x["usage"] > 0) for x in rows] == [(2, True)]
        assert rows[0]["usage"] == expected_bill("openai/gpt-4o-mini", CHAT)["usage"]
        assert get_activity(fake, key=new_management_key()).status_code == 401
