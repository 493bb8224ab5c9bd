"""What the fake SolRouter billed, and `GET /v1/activity`: that bill in the shape of OpenRouter's
`GET /api/v1/activity` (one row per UTC day x model x provider; the fake serves each model through one
provider, so one row per day x model).

What the fake bills (the rules a real router follows, kept simple):
- Every call answered with a generated answer is billed at the instant its request arrived (or the test
  clock `X-Fake-Time`): one request, its prompt, completion and reasoning tokens, and `usage` = the
  cost its answer carries, exact. Billed in full too when the app never sees that cost: a stream
  without `include_usage`, `fake/no-usage`, a client that hangs up early, and `fake/cut-stream` (the
  router finished and billed the generation; the connection to the app broke on the way).
- A no-cost answer (`--no-cost`, `X-Fake-No-Cost: 1`, `fake/no-cost`) is still a request the router
  counts, with its tokens, but it charged nothing for it: `usage` 0 (as a free or BYOK-billed call).
- An error answer (400, 401, 403, 404, 429, 500, and `fake/non-json`'s 502 page) bills nothing and is
  not counted.
"""

from __future__ import annotations

import decimal
import json
import re
import threading
import uuid
from datetime import date, timedelta
from decimal import Decimal
from typing import NamedTuple

from .pricing import Usage, compute, endpoint_for, format_cost, resolve_model

__all__ = ["ActivityRow", "BadQuery", "Ledger", "activity_json", "activity_range", "expected_bill",
           "provider_name"]

_EXACT = decimal.Context(prec=60)  # sums of 12-decimal costs never round
_EPOCH = date(1970, 1, 1)
_UNBILLED = {"fake/error-429", "fake/error-500", "fake/non-json"}
_PROVIDERS = {"openai": "OpenAI", "anthropic": "Anthropic", "google": "Google", "meta-llama": "Meta",
              "mistralai": "Mistral", "deepseek": "DeepSeek", "fake": "SolRouter Fake"}


def provider_name(model: str) -> str:
    """The provider the fake serves `model` through, as the activity's `provider_name` says it."""
    prefix = model.split("/", 1)[0]
    return _PROVIDERS.get(prefix, prefix)


class ActivityRow(NamedTuple):
    """One day x model of the fake's bill. `date` is the UTC day (YYYY-MM-DD); `usage` is USD."""

    date: str
    model: str
    provider_name: str
    usage: Decimal
    requests: int
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int


class Ledger:
    """The fake's bill, summed per UTC day x model as calls are answered (bounded by days x models,
    however many calls). Thread-safe: the server adds from its event loop, tests read from theirs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sums: dict[tuple[int, str], list] = {}  # (days since 1970-01-01 UTC, model) -> sums

    def bill(self, at: float, model: str, u: Usage, *, no_cost: bool) -> None:
        """Bill one answered call made at `at` (Unix seconds) for `model` (the served id)."""
        key = (int(at // 86400), model)
        with self._lock:
            s = self._sums.get(key)
            if s is None:
                s = self._sums[key] = [0, 0, 0, 0, Decimal(0)]
            s[0] += 1
            s[1] += u.prompt_tokens
            s[2] += u.completion_tokens
            s[3] += u.reasoning_tokens
            if not no_cost:
                s[4] = _EXACT.add(s[4], u.cost)

    def rows(self, first: date | None = None, last: date | None = None) -> list[ActivityRow]:
        """The bill per day x model from `first` to `last` (UTC days, inclusive; None: unbounded),
        by date then model."""
        lo = (first - _EPOCH).days if first else None
        hi = (last - _EPOCH).days if last else None
        with self._lock:
            picked = [(k, list(v)) for k, v in self._sums.items()
                      if (lo is None or k[0] >= lo) and (hi is None or k[0] <= hi)]
        picked.sort()
        return [ActivityRow((_EPOCH + timedelta(days=day)).isoformat(), model, provider_name(model),
                            usage.normalize() if usage else Decimal(0), n, p, c, r)
                for (day, model), (n, p, c, r, usage) in picked]

    def clear(self) -> None:
        with self._lock:
            self._sums.clear()


def _endpoint_id(model: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "https://api.solrouter.io/fake/" + model))


def activity_json(rows: list[ActivityRow]) -> bytes:
    """`{"data": [...]}` with OpenRouter's fields in its order; `usage` is the exact decimal literal
    (json.dumps would go through float). The fake has no dated model versions (`model_permaslug` is
    the model id) and no BYOK (`byok_usage_inference` is 0)."""
    items = []
    for r in rows:
        fields = (("date", json.dumps(r.date)), ("model", json.dumps(r.model)),
                  ("model_permaslug", json.dumps(r.model)), ("endpoint_id", json.dumps(_endpoint_id(r.model))),
                  ("provider_name", json.dumps(r.provider_name)), ("usage", format_cost(r.usage)),
                  ("byok_usage_inference", "0"), ("requests", str(r.requests)),
                  ("prompt_tokens", str(r.prompt_tokens)), ("completion_tokens", str(r.completion_tokens)),
                  ("reasoning_tokens", str(r.reasoning_tokens)))
        items.append("{" + ",".join(f'"{k}":{v}' for k, v in fields) + "}")
    return ('{"data":[' + ",".join(items) + "]}").encode()


class BadQuery(ValueError):
    """A malformed `GET /v1/activity` query parameter (`param` names it)."""

    def __init__(self, param: str, message: str):
        super().__init__(message)
        self.param = param


_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _day(params, name: str) -> date | None:
    value = params.get(name)
    if value is None:
        return None
    if _DAY.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:  # no such day (2026-11-31)
            pass
    raise BadQuery(name, f"Invalid '{name}': expected a UTC date as YYYY-MM-DD, got {value!r}.")


def activity_range(params) -> tuple[date | None, date | None]:
    """(first, last) UTC day from the query: OpenRouter's `date` (one day), or this fake's `from` /
    `to` extension (inclusive, either may be left out); none of them: every day billed."""
    one, first, last = _day(params, "date"), _day(params, "from"), _day(params, "to")
    if one is not None:
        if first is not None or last is not None:
            raise BadQuery("date", "Give either 'date' or 'from'/'to', not both.")
        return one, one
    if first is not None and last is not None and first > last:
        raise BadQuery("from", f"'from' ({first}) is after 'to' ({last}).")
    return first, last


def expected_bill(model: str, body: dict, endpoint: str | None = None, *, no_cost: bool = False) -> dict | None:
    """What the fake bills for this request (see the rules above): {model (the served id),
    provider_name, requests: 1, prompt_tokens, completion_tokens, reasoning_tokens, usage: Decimal},
    or None for a request it answers with an error. `no_cost` as in `expected_usage`."""
    refused = "stream_options" in body and (model == "fake/reject-stream-options" or (
        body.get("stream") is not True and body["stream_options"] is not None))
    if model in _UNBILLED or refused:
        return None
    resolved = resolve_model(model)
    if resolved is None:
        raise KeyError(model)
    u = compute(model, body, endpoint or endpoint_for(model, body))
    return {"model": resolved[0], "provider_name": provider_name(resolved[0]), "requests": 1,
            "prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
            "reasoning_tokens": u.reasoning_tokens,
            "usage": Decimal(0) if no_cost or model == "fake/no-cost" else u.cost}
