"""A faithful local stand-in for SolRouter, for tests, the demo and benchmarks.

    with run_fake_upstream() as fake:          # real HTTP on 127.0.0.1, a free port, in a thread
                                                # (spawn_fake_upstream(): in a child process)
        OpenAI(base_url=fake.base_url, api_key=fake.api_key).chat.completions.create(...)
        expected_usage("openai/gpt-4o-mini", body)   # exactly what the fake reported

Endpoints: POST /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/responses; GET /v1/models.
Auth: `Authorization: Bearer sr_...` (any well-formed sr_ key), else 401 with an OpenAI-style body.
Models: the price table `PRICES`, plus the behaviour models in `FAKE_MODELS` (errors, cut streams,
missing usage or cost, slow answers...). Request headers: `X-Fake-Latency-Ms` (wait before
answering), `X-Fake-Chunk-Delay-Ms` (between stream events), `X-Fake-Chunks` (force N content chunks).
"""

from .app import CutConnection, FakeState, SeenRequest, create_app
from .pricing import FAKE_MODELS, PRICES, Price, expected_usage, format_cost, resolve_model
from .runner import (FakeUpstream, FakeUpstreamProcess, new_test_key, run_fake_upstream, spawn_fake_upstream,
                     start_fake_upstream)

__all__ = [
    "FAKE_MODELS",
    "PRICES",
    "CutConnection",
    "FakeState",
    "FakeUpstream",
    "FakeUpstreamProcess",
    "Price",
    "SeenRequest",
    "create_app",
    "expected_usage",
    "format_cost",
    "new_test_key",
    "resolve_model",
    "run_fake_upstream",
    "spawn_fake_upstream",
    "start_fake_upstream",
]
