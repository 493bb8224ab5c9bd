"""A faithful local stand-in for SolRouter, for tests, the demo and benchmarks.

    with run_fake_upstream() as fake:          # real HTTP on 127.0.0.1, a free port, in a thread
                                                # (spawn_fake_upstream(): in a child process)
        OpenAI(base_url=fake.base_url, api_key=fake.api_key).chat.completions.create(...)
        expected_usage("openai/gpt-4o-mini", body)   # exactly what the fake reported
        fake.activity()                               # what it billed, per UTC day x model

Endpoints: POST /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/responses; GET /v1/models;
GET /v1/activity (the router's own activity, see below).
Auth: `Authorization: Bearer sr_...` (any well-formed sr_ key), else 401 with an OpenAI-style body;
a management key is refused there (403).
Models: the price table `PRICES`, plus the behaviour models in `FAKE_MODELS` (errors, cut streams,
missing usage or cost, slow answers...). Request headers: `X-Fake-Latency-Ms` (wait before
answering), `X-Fake-Chunk-Delay-Ms` (between stream events), `X-Fake-Chunks` (force N content chunks),
`X-Fake-No-Cost: 1` (usage without `cost`, as OpenAI itself answers; `0` puts it back on a fake
started with `no_cost=True` / `--no-cost`; tokens are unchanged, `expected_usage(..., no_cost=True)`),
`X-Fake-Time: 2026-11-30T23:59:59Z` (test-only clock: the answer's `created` and the day it is billed
on; any ISO 8601 instant with a zone).

`GET /v1/activity` answers in the shape of OpenRouter's `GET /api/v1/activity`: `{"data": [{date,
model, model_permaslug, endpoint_id, provider_name, usage (USD, an exact decimal literal),
byok_usage_inference (0), requests, prompt_tokens, completion_tokens, reasoning_tokens}]}`, one row
per UTC day x model x provider (one provider per model), by date then model, built from what the fake
billed (`billing.py` has the rules: answered calls bill their cost, no-cost calls count with usage 0,
errors bill nothing; calls made straight to the fake around spendlog count too). It needs the
management key: `Bearer <key>` as set by `management_key=` / `--management-key` /
`SOLROUTER_MANAGEMENT_KEY`, else any `sr_mgmt_...` key; no key 401, an API key 403. Query: `date=
YYYY-MM-DD` (one UTC day, as OpenRouter), or `from=` / `to=` (inclusive days, this fake's extension);
none: every day billed. Unlike OpenRouter (the last 30 completed UTC days) it keeps every day, today
included, so a test can reconcile at once; `expected_bill()` says what one request adds.
"""

from .app import CutConnection, FakeState, SeenRequest, create_app
from .billing import ActivityRow, Ledger, expected_bill
from .pricing import FAKE_MODELS, PRICES, Price, expected_usage, format_cost, resolve_model
from .runner import (FakeUpstream, FakeUpstreamProcess, new_management_key, new_test_key, run_fake_upstream,
                     spawn_fake_upstream, start_fake_upstream)

__all__ = [
    "FAKE_MODELS",
    "PRICES",
    "ActivityRow",
    "CutConnection",
    "FakeState",
    "FakeUpstream",
    "FakeUpstreamProcess",
    "Ledger",
    "Price",
    "SeenRequest",
    "create_app",
    "expected_bill",
    "expected_usage",
    "format_cost",
    "new_management_key",
    "new_test_key",
    "resolve_model",
    "run_fake_upstream",
    "spawn_fake_upstream",
    "start_fake_upstream",
]
