"""Believable history for the demo (and for benchmarks), made by the real record builder.

``generate_records(days, seed, per_day, end=...)`` yields one ledger record per simulated HTTP
attempt, oldest first. Records come from ``spendlog.capture.CallCapture``, exactly as the hook and
the proxy build theirs: the request body goes in, the fake upstream's own bytes for that request
come back (``spendlog.fake_upstream.shapes``, priced by ``pricing.compute``, the function behind
``expected_usage``), and ``record()`` reads usage, cost, finish reason and errors out of them.

Speed: a capture costs about a millisecond, too slow for 60 days in seconds. So each distinct
request (app, model, endpoint, stream, outcome, one of ``PROMPTS_PER_MODEL`` prompts) is captured
once, and its repeats (apps do repeat their prompts) copy that record, changing only what differs
between two sends of the same request: id and ``created_at`` (in the past), user, key hint, tags,
the upstream's request id, and the latencies (synthetic, per model).

The traffic model (drawn from ``random.Random`` instances seeded from ``seed`` alone, so the same
arguments give the same records):

- volume grows linearly over the period (half the mean at the start, 1.5x at the end), weekdays
  carry 2.4x the traffic of weekend days, hours follow an office-day curve (UTC) except for the
  nightly batch app; one "incident" day has many more 429s;
- for issue 15's spikes and changes: one weekday at least 3 days before the end is a spend spike
  (``SPIKE_APP``'s agent loops: ``SPIKE_FACTOR`` x its calls), and ``LAUNCH_APP`` serves
  ``LAUNCH_FACTOR`` x its calls in the last 7 days (a launch: this week over last week);
- five apps with their own models, users, keys, stream habits and prompt sizes (long prompts
  get cached tokens; two reasoning models report reasoning tokens);
- 429s (more at peak), 500s, streams cut mid-way, calls whose usage has no cost (``NO_COST_SHARE``
  of them, more of one provider's, as a router's calls made before it billed or a provider's own
  API answer: the ledger estimates them, so the demo shows estimates), answers capped by
  ``max_tokens``.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from spendlog.capture import CallCapture, hint_for
from spendlog.fake_upstream import shapes
from spendlog.fake_upstream.pricing import compute

__all__ = ["APPS", "ENDPOINTS", "HOUR_WEIGHTS", "KEY_NAMES", "USERS", "Prompts", "day_volume", "demo_keys",
           "generate_records", "sample_call"]

UPSTREAM = "https://api.solrouter.io/v1"
ENDPOINTS = {"chat": "/chat/completions", "embeddings": "/embeddings", "responses": "/responses"}

USERS = ("alice", "bob", "carol", "dan", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory", "nick")

# Relative traffic per UTC hour on an office day: quiet nights, a lunch dip, a long evening tail.
HOUR_WEIGHTS = (0.08, 0.06, 0.05, 0.05, 0.06, 0.10, 0.20, 0.45, 0.80, 1.00, 1.00, 0.95,
                0.75, 0.90, 1.00, 1.00, 0.90, 0.70, 0.50, 0.40, 0.32, 0.25, 0.16, 0.10)
# The nightly batch: most of it between 01:00 and 05:00 UTC, a trickle the rest of the day.
BATCH_WEIGHTS = tuple(1.0 if 1 <= h <= 4 else 0.05 for h in range(24))
WEEKDAY_FACTOR = 1.2  # x 5 days + WEEKEND_FACTOR x 2 days = 7: `per_day` stays the mean
WEEKEND_FACTOR = 0.5
SPIKE_APP, SPIKE_FACTOR = "research-agent", 12.0  # a runaway agent loop on one weekday
LAUNCH_APP, LAUNCH_FACTOR = "code-review", 1.5  # rolled out to more teams a week before the end


@dataclass(frozen=True)
class App:
    name: str
    share: float                      # of all traffic
    models: tuple[tuple[str, float], ...]
    users: tuple[str, ...]            # the first ones call most (a Pareto tail)
    keys: tuple[tuple[int, float], ...]  # index into demo_keys(), weight
    stream: float                     # share of chat calls that stream
    context: tuple[int, int]          # characters of context pasted into the prompt
    hours: tuple[float, ...] = HOUR_WEIGHTS
    weekend: float = WEEKEND_FACTOR
    responses_api: float = 0.0        # share of chat-model calls sent to /v1/responses


APPS: tuple[App, ...] = (
    App("support-bot", 0.32,
        (("openai/gpt-4o-mini", 0.62), ("anthropic/claude-3.5-sonnet", 0.23), ("google/gemini-1.5-flash", 0.15)),
        ("alice", "bob", "carol", "dan", "erin", "frank"), ((0, 0.85), (1, 0.15)), 0.8, (200, 3000)),
    App("code-review", 0.18,
        (("anthropic/claude-3.5-sonnet", 0.5), ("openai/gpt-4o", 0.35), ("openai/o3-mini", 0.15)),
        ("grace", "heidi", "ivan", "alice"), ((2, 0.8), (1, 0.2)), 0.35, (3000, 24000), weekend=0.25),
    App("search-rag", 0.22,
        (("openai/text-embedding-3-small", 0.45), ("google/gemini-1.5-flash", 0.35), ("openai/gpt-4o-mini", 0.2)),
        ("judy", "bob", "carol", "nick", "erin"), ((0, 0.9), (1, 0.1)), 0.5, (4000, 16000)),
    App("data-pipeline", 0.14,
        (("meta-llama/llama-3.1-70b-instruct", 0.55), ("mistralai/mistral-large", 0.45)),
        ("mallory",), ((3, 1.0),), 0.0, (1000, 8000), hours=BATCH_WEIGHTS, weekend=1.0),
    App("research-agent", 0.14,
        (("deepseek/deepseek-r1", 0.55), ("openai/o3-mini", 0.25), ("openai/gpt-4o", 0.2)),
        ("nick", "ivan", "frank", "dan"), ((2, 0.7), (1, 0.3)), 0.5, (500, 6000), responses_api=0.3),
)
KEY_NAMES = ("live", "staging", "team", "batch")  # environment of each key, stored as a tag
# tags as a dimension (issue 15): each app's team and features; customers drawn from a fixed pool
TEAMS = {"support-bot": "support", "code-review": "platform", "search-rag": "search", "data-pipeline": "data",
         "research-agent": "research"}
FEATURES = {"support-bot": ("chat", "triage", "summarise"), "code-review": ("review", "explain"),
            "search-rag": ("search", "answer"), "data-pipeline": ("extract", "classify", "embed"),
            "research-agent": ("plan", "browse", "report")}
CUSTOMERS = tuple(f"cust-{i:03d}" for i in range(40))
PROMPTS_PER_MODEL = 48  # distinct prompts an app sends to one model (per stream/outcome)

_VOCAB = ("invoice refund order account shipping delay customer ticket request error timeout deploy "
          "review function module test coverage latency index query vector document summary table "
          "report revenue churn forecast cluster schema migration password reset billing plan upgrade "
          "cancel subscription region europe asia support escalation priority incident outage").split()
_QUESTIONS = ("Summarize the above.", "What should we answer?", "List the risks.", "Is this a bug?",
              "Draft a reply.", "Classify the intent.", "Extract the entities.", "Suggest a fix.")


def demo_keys(seed: int) -> tuple[str, ...]:
    """The demo's API keys: made up from the seed; only their hints are ever stored."""
    return tuple(f"sr_{name}_" + hashlib.sha256(f"spendlog-demo:{seed}:{name}".encode()).hexdigest()[:32]
                 for name in KEY_NAMES)


def day_volume(day_index: int, days: int, weekday: int, per_day: float, weekend: float = WEEKEND_FACTOR) -> float:
    """Expected calls on one day: linear growth 0.5x -> 1.5x over the period, weekday rhythm
    (``weekend`` is the weekend factor; 1.0 means no rhythm at all)."""
    growth = 0.5 + (day_index + 0.5) / max(days, 1)
    if weekend == 1.0:
        return per_day * growth
    return per_day * growth * (WEEKDAY_FACTOR if weekday < 5 else weekend)


def _spike_day(end: datetime):
    """The demo's spike: the last weekday (UTC) at least 3 days before ``end``."""
    day = (end - timedelta(days=3)).date()
    while day.weekday() >= 5:
        day -= timedelta(days=1)
    return day


def _uuid7_at(ms: int, rng: random.Random) -> str:
    value = (ms << 80) | (0x7 << 76) | (rng.getrandbits(12) << 64) | (0b10 << 62) | rng.getrandbits(62)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _pick(rng: random.Random, weighted: tuple[tuple[object, float], ...]):
    return rng.choices([w[0] for w in weighted], [w[1] for w in weighted])[0]


def _user(rng: random.Random, app: App) -> str:
    """The app's first users call most (a Pareto tail)."""
    return app.users[min(int(rng.paretovariate(1.2)) - 1, len(app.users) - 1)]


class Prompts:
    """A pool of prompt text (system prompts per app, a corpus to cut contexts from), made once."""

    def __init__(self, rng: random.Random):
        words = [rng.choice(_VOCAB) for _ in range(6000)]
        self.corpus = " ".join(words)
        self.system = {app.name: f"You are {app.name}, an assistant for the {app.name.split('-')[0]} team. "
                       + " ".join(words[i * 40:(i + 1) * 40]) for i, app in enumerate(APPS)}

    def context(self, rng: random.Random, lo: int, hi: int) -> str:
        n = rng.randint(lo, hi)
        start = rng.randrange(0, max(1, len(self.corpus) - n))
        return self.corpus[start:start + n]


def _error_body(status: int) -> bytes:
    if status == 429:
        err = {"message": "Rate limit reached for requests. Please try again in 1s.", "type": "rate_limit_error",
               "param": None, "code": "rate_limit_exceeded"}
    else:
        err = {"message": "The server had an error while processing your request.", "type": "server_error",
               "param": None, "code": "internal_error"}
    return json.dumps({"error": err}).encode()


_CUT_MESSAGE = "RemoteProtocolError: peer closed connection without sending complete message body (incomplete chunked read)"
# Shares of successful calls answered with usage but no cost (X-Fake-No-Cost's answer, as OpenAI answers).
NO_COST_SHARE = 0.15
NO_COST_SHARE_MISTRAL = 0.4
_JSON_HEADERS = [(b"content-type", b"application/json")]
_SSE_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8")]
# Rough speed per model: (ms before the first token, ms per output token).
_SPEED = {"openai/gpt-4o-mini": (250, 9), "openai/gpt-4o": (400, 14), "openai/o3-mini": (900, 8),
          "anthropic/claude-3.5-sonnet": (600, 16), "google/gemini-1.5-flash": (200, 6),
          "meta-llama/llama-3.1-70b-instruct": (350, 12), "mistralai/mistral-large": (450, 15),
          "deepseek/deepseek-r1": (1200, 20), "openai/text-embedding-3-small": (60, 0)}


class _Call:
    """One simulated call: who sends what, and how the upstream behaves."""

    __slots__ = ("app", "model", "endpoint", "stream", "capped", "outcome", "variant")

    def key(self) -> tuple:
        return (self.app.name, self.model, self.endpoint, self.stream, self.capped, self.outcome, self.variant)


def _plan(rng: random.Random, app: App, error_boost: float) -> _Call:
    c = _Call()
    c.app = app
    c.model = _pick(rng, app.models)
    if c.model == "openai/text-embedding-3-small":
        c.endpoint, c.stream, c.capped = "embeddings", False, False
    else:
        c.endpoint = "responses" if rng.random() < app.responses_api else "chat"
        c.stream = rng.random() < app.stream
        c.capped = rng.random() < 0.03
    r = rng.random()
    if r < 0.015 * error_boost:
        c.outcome = "429"
    elif r < 0.015 * error_boost + 0.004:
        c.outcome = "500"
    elif c.stream and r < 0.015 * error_boost + 0.016:
        c.outcome = "cut"
    elif rng.random() < (NO_COST_SHARE_MISTRAL if c.model.startswith("mistralai/") else NO_COST_SHARE):
        c.outcome = "no-cost"
    else:
        c.outcome = "ok"
    c.variant = 0 if c.outcome in ("429", "500") else rng.randrange(PROMPTS_PER_MODEL)
    return c


def _request(c: _Call, texts: Prompts, rng: random.Random) -> dict:
    """The request body the app sends for this call's prompt variant."""
    if c.endpoint == "embeddings":
        return {"model": c.model, "input": [texts.context(rng, 200, 1500) for _ in range(rng.randint(1, 8))]}
    prompt = texts.context(rng, *c.app.context) + "\n\n" + rng.choice(_QUESTIONS)
    if c.endpoint == "responses":
        body = {"model": c.model, "instructions": texts.system[c.app.name], "input": prompt}
    else:
        body = {"model": c.model, "messages": [{"role": "system", "content": texts.system[c.app.name]},
                                               {"role": "user", "content": prompt}]}
    if c.stream:
        body["stream"] = True
    if c.capped:
        body["max_output_tokens" if c.endpoint == "responses" else "max_tokens"] = 16
    return body


def _answer(c: _Call, body: dict, cap: CallCapture, rng: random.Random) -> tuple[int, list, list[bytes]]:
    """(status, headers, body chunks): what the fake upstream sends for the request ``cap`` sends."""
    if c.outcome in ("429", "500"):
        return int(c.outcome), _JSON_HEADERS, [_error_body(int(c.outcome))]
    if cap.injected_usage:  # what capture added, as the fake would read it
        body = {**body, "stream_options": {"include_usage": True}}
    u = compute(c.model, body, c.endpoint)
    prefix = {"chat": "chatcmpl-", "responses": "resp_"}.get(c.endpoint, "emb-")
    a = shapes.Answer(id=prefix + "%024x" % rng.getrandbits(96), created=0, model=c.model, u=u,
                      finish="length" if u.capped else "stop",
                      mode="fake/no-cost" if c.outcome == "no-cost" else c.model,
                      include_usage=cap.injected_usage, tools=None, n_chunks=0)
    if not c.stream:
        data = {"chat": lambda: shapes.chat_body(a), "embeddings": lambda: shapes.embedding_body(a, body),
                "responses": lambda: shapes.responses_body(a, body)}[c.endpoint]()
        return 200, _JSON_HEADERS, [data]
    events = shapes.chat_events(a, 4) if c.endpoint == "chat" else shapes.responses_events(a, body, 4)
    if c.outcome == "cut":
        events = events[: max(3, len(events) // 2)]
    cut = len(events) // 2  # as the network delivers it: a few events per read
    return 200, _SSE_HEADERS, [b"".join(events[:cut]), b"".join(events[cut:])]


def _capture(c: _Call, texts: Prompts, rng: random.Random, key: str, db_url: str | None) -> dict | None:
    """The record CallCapture builds for this call's request and the fake's answer to it."""
    body = _request(c, texts, rng)
    headers = [(b"authorization", b"Bearer " + key.encode()), (b"content-type", b"application/json")]
    raw = json.dumps(body, separators=(",", ":")).encode()
    cap = CallCapture.start("POST", UPSTREAM + ENDPOINTS[c.endpoint], headers, raw, app=c.app.name, db_url=db_url)
    if cap is None:
        return None
    status, resp_headers, parts = _answer(c, body, cap, rng)
    cap.response_started(status, resp_headers)
    for part in parts:
        cap.feed(part)
    if c.outcome == "cut":
        return cap.record(error_type="stream_interrupted", error_message=_CUT_MESSAGE)
    cap.end_of_body()
    return cap.record()


def sample_call(rng: random.Random, prompts: Prompts) -> tuple[App, str, int, str, dict]:
    """One call as the apps make them, for live traffic: (app, user, key index, endpoint, body)."""
    app = rng.choices(APPS, [a.share for a in APPS])[0]
    c = _Call()
    c.app, c.model, c.capped = app, _pick(rng, app.models), False
    if c.model == "openai/text-embedding-3-small":
        c.endpoint, c.stream = "embeddings", False
    else:
        c.endpoint = "responses" if rng.random() < app.responses_api else "chat"
        c.stream = rng.random() < app.stream
    return app, _user(rng, app), _pick(rng, app.keys), c.endpoint, _request(c, prompts, rng)


def _latencies(c: _Call, record: dict, rng: random.Random) -> tuple[int, int | None]:
    first, per_token = _SPEED.get(c.model, (400, 12))
    if c.outcome in ("429", "500"):
        return int(rng.uniform(40, 400)), None
    ttft = int(first * rng.lognormvariate(0, 0.35))
    total = ttft + int((record.get("completion_tokens") or 0) * per_token * rng.uniform(0.8, 1.3))
    if c.outcome == "cut":
        total //= 2
    return max(total, 1), (ttft if c.stream else None)


def _team_tags(rng: random.Random, app: str) -> dict[str, str]:
    """A call's team, feature and (most of the time) customer tags: a few customers spend most."""
    tags = {"team": TEAMS.get(app, "other"), "feature": rng.choice(FEATURES.get(app, ("general",)))}
    if rng.random() < 0.8:
        tags["customer"] = CUSTOMERS[min(int(rng.paretovariate(1.2)) - 1, len(CUSTOMERS) - 1)]
    return tags


def generate_records(days: int = 60, seed: int = 7, per_day: float = 400, *, end: datetime | None = None,
                     db_url: str | None = None) -> Iterator[dict]:
    """Records for the ``days`` days before ``end`` (default: now), about ``per_day`` calls a day
    on average, oldest first. Deterministic for a given (days, seed, per_day, end).

    Each distinct request (app, model, endpoint, stream, outcome, prompt variant) is captured once
    by CallCapture; its repeats (apps repeat their prompts) reuse that record's usage and cost with
    their own id, time, user, key hint, tags, request id and latency. ``db_url`` is only carried on
    the captures: nothing is submitted here."""
    end = (end or datetime.now(timezone.utc)).astimezone(timezone.utc)
    rng = random.Random(seed)
    texts = Prompts(random.Random(f"{seed}:texts"))
    keys = demo_keys(seed)
    hints = tuple(hint_for(k) for k in keys)
    start = end - timedelta(days=days)
    hour0 = start.replace(minute=0, second=0, microsecond=0)
    incident = (start + timedelta(days=days * 0.4)).date()  # one bad day, 40% of the way in
    spike = _spike_day(end)
    launch = end - timedelta(days=7)
    hour_sums = {app.name: sum(app.hours) for app in APPS}
    templates: dict[tuple, dict | None] = {}
    tag_rng = random.Random(f"{seed}:tags")  # its own stream: the other fields stay as they were
    t = hour0
    while t < end:
        day_index = (t - hour0).days
        day_noise = random.Random(f"{seed}:day:{day_index}").uniform(0.85, 1.15)
        error_boost = 12.0 if t.date() == incident else 1.0 + HOUR_WEIGHTS[t.hour]
        calls: list[tuple[datetime, App]] = []
        for app in APPS:
            expected = (day_volume(day_index, days, t.weekday(), per_day, app.weekend) * app.share * day_noise
                        * app.hours[t.hour] / hour_sums[app.name])
            if app.name == SPIKE_APP and t.date() == spike:
                expected *= SPIKE_FACTOR
            elif app.name == LAUNCH_APP and t >= launch:
                expected *= LAUNCH_FACTOR
            for _ in range(int(expected) + (rng.random() < expected % 1)):
                ts = t + timedelta(microseconds=rng.randrange(3_600_000_000))
                if start <= ts < end:
                    calls.append((ts, app))
        calls.sort(key=lambda item: item[0])
        for ts, app in calls:
            c = _plan(rng, app, error_boost)
            k = c.key()
            if k not in templates:
                templates[k] = _capture(c, texts, random.Random(f"{seed}:{k}"), keys[app.keys[0][0]], db_url)
            template = templates[k]
            if template is None:
                continue
            key_index = _pick(rng, app.keys)
            record = dict(template)
            record["id"] = _uuid7_at(int(ts.timestamp() * 1000), rng)
            record["created_at"] = ts
            record["user"] = _user(rng, app)
            record["api_key_hint"] = hints[key_index]
            record["tags"] = {"via": "backfill", "env": KEY_NAMES[key_index], **_team_tags(tag_rng, app.name)}
            if template["request_id"]:
                record["request_id"] = template["request_id"][:-24] + "%024x" % rng.getrandbits(96)
            record["latency_ms"], record["ttft_ms"] = _latencies(c, record, rng)
            yield record
        t += timedelta(hours=1)
