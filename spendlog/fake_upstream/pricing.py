"""The fake upstream's price table and its deterministic usage arithmetic.

One function decides what a request costs: `compute` (used by the server) and its public face
`expected_usage` (used by tests), so the two can never disagree.

Token rules (chosen to be cheap and stable, not to imitate a real tokenizer):
- a text is ``ceil(len(chars) / 4)`` tokens; a chat message adds 4 tokens of overhead, a chat prompt
  3 more (reply priming); an image part is 85 tokens; `tools` add the tokens of their canonical JSON.
- the answer's visible length is ``5 + h % 60`` words (one word = one token), ``h`` a CRC-32 of the
  model and the canonical request input; reasoning models (`deepseek/deepseek-r1`, `openai/o3-mini`)
  think ``10 + (h >> 8) % 90`` more tokens, counted in completion_tokens (as OpenAI does).
- `max_tokens` / `max_completion_tokens` / `max_output_tokens` caps the completion (reasoning first);
  a capped answer finishes with 'length'.
- a prompt of 1024 tokens or more is partly cached: 3/4 of it, rounded down to a multiple of 128.
- cost = (uncached * input + cached * cached_input + completion * output) / 1e6, exact Decimal.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from decimal import Decimal

__all__ = [
    "FAKE_MODELS",
    "PRICES",
    "Price",
    "Usage",
    "compute",
    "expected_usage",
    "format_cost",
    "resolve_model",
]

_M = Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class Price:
    """USD per 1M tokens. `cached` is the price of cached input (None: same as `input`)."""

    input: Decimal
    output: Decimal
    cached: Decimal | None = None
    kind: str = "chat"  # "chat" or "embedding"
    reasoning: bool = False


def _p(i: str, o: str, c: str | None = None, **kw) -> Price:
    return Price(Decimal(i), Decimal(o), Decimal(c) if c is not None else None, **kw)


PRICES: dict[str, Price] = {
    "openai/gpt-4o-mini": _p("0.15", "0.60", "0.075"),
    "openai/gpt-4o": _p("2.50", "10.00", "1.25"),
    "openai/o3-mini": _p("1.10", "4.40", "0.55", reasoning=True),
    "anthropic/claude-3.5-sonnet": _p("3.00", "15.00", "0.30"),
    "google/gemini-1.5-flash": _p("0.075", "0.30", "0.01875"),
    "meta-llama/llama-3.1-70b-instruct": _p("0.52", "0.75"),
    "mistralai/mistral-large": _p("2.00", "6.00"),
    "deepseek/deepseek-r1": _p("0.55", "2.19", "0.14", reasoning=True),
    "openai/text-embedding-3-small": _p("0.02", "0", kind="embedding"),
}

# Test models: each selects a behaviour and is billed like the model it serves.
FAKE_MODELS: dict[str, str] = {
    "fake/error-429": "429 with Retry-After and an OpenAI-style error body",
    "fake/error-500": "500 with an OpenAI-style error body",
    "fake/non-json": "200 with a text/html body",
    "fake/cut-stream": "connection dropped mid-body (streams: after a few chunks, no [DONE])",
    "fake/no-usage": "no usage object at all (streams too, even with include_usage)",
    "fake/no-cost": "usage without cost",
    "fake/slow": "sleeps X-Fake-Latency-Ms (default 2000 ms) before answering",
    "fake/repeat-id": "id is always chatcmpl-repeated",
    "fake/reject-stream-options": "400 naming stream_options when the request carries it",
    "fake/content-filter": "finish_reason content_filter",
    "fake/auto": "a router alias: served and billed as openai/gpt-4o-mini",
}
_FAKE_BASE = "openai/gpt-4o-mini"
_NO_USAGE_MODES = {"fake/error-429", "fake/error-500", "fake/non-json", "fake/cut-stream", "fake/no-usage"}

_VOCAB = (
    "the of and to in is that for it as with was on be by this are from at or an have not they which "
    "one you were all we her she there would their will when who him been has more if no out so said "
    "what up its about into than them can only other new some could time these two may then do first "
    "any my now such like our over man me even most made after also did many before must through back"
).split()


def resolve_model(model: str) -> tuple[str, Price] | None:
    """(served model id, price) for a model the fake knows, else None."""
    price = PRICES.get(model)
    if price is not None:
        return model, price
    if model in FAKE_MODELS:
        return ("openai/gpt-4o-mini" if model == "fake/auto" else model), PRICES[_FAKE_BASE]
    return None


def _tokens(text: str) -> int:
    return (len(text) + 3) // 4


def _content_tokens(content) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return _tokens(content)
    n = 0
    if isinstance(content, list):
        for part in content:
            if isinstance(part, dict):
                if isinstance(part.get("text"), str):
                    n += _tokens(part["text"])
                elif part.get("type") in ("image_url", "input_image"):
                    n += 85
            elif isinstance(part, str):
                n += _tokens(part)
    return n


def _canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _chat_prompt(messages: list, tools) -> int:
    n = 3
    for m in messages:
        if isinstance(m, dict):
            n += 4 + _content_tokens(m.get("content"))
            if m.get("name"):
                n += 1
            if m.get("tool_calls"):
                n += _tokens(_canonical(m["tool_calls"]).decode())
    if tools:
        n += _tokens(_canonical(tools).decode())
    return n


def _embedding_tokens(inp) -> int:
    if isinstance(inp, str):
        return _tokens(inp)
    if isinstance(inp, list):
        if inp and all(isinstance(x, int) for x in inp):
            return len(inp)
        return sum(_embedding_tokens(x) for x in inp)
    return 0


def responses_messages(body: dict) -> list:
    """The Responses API's `instructions` + `input` as chat messages (for counting and hashing)."""
    msgs: list = []
    if isinstance(body.get("instructions"), str):
        msgs.append({"role": "system", "content": body["instructions"]})
    inp = body.get("input")
    if isinstance(inp, str):
        msgs.append({"role": "user", "content": inp})
    elif isinstance(inp, list):
        msgs.extend(x for x in inp if isinstance(x, dict))
    return msgs


@dataclass(frozen=True, slots=True)
class Usage:
    """Everything the server needs to answer one request. `words` is the visible answer."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    cost: Decimal
    capped: bool
    words: tuple[str, ...]
    seed: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def _limit(body: dict, endpoint: str) -> int | None:
    keys = ("max_output_tokens",) if endpoint == "responses" else ("max_completion_tokens", "max_tokens")
    for k in keys:
        v = body.get(k)
        if v is not None:
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"Invalid '{k}': expected an integer >= 1, got {v!r}.")
            return v
    return None


def endpoint_for(model: str, body: dict) -> str:
    """Guess the endpoint from the body: messages -> chat, prompt -> completions, input -> embeddings
    (embedding models) or responses."""
    if "messages" in body:
        return "chat"
    if "prompt" in body:
        return "completions"
    resolved = resolve_model(model)
    if resolved and resolved[1].kind == "embedding":
        return "embeddings"
    return "responses"


def compute(model: str, body: dict, endpoint: str) -> Usage:
    """The usage the fake reports for `body` sent to `endpoint` ('chat', 'completions', 'embeddings',
    'responses'). Raises KeyError for an unknown model, ValueError for an invalid limit."""
    resolved = resolve_model(model)
    if resolved is None:
        raise KeyError(model)
    _, price = resolved
    if endpoint == "embeddings":
        prompt = _embedding_tokens(body.get("input"))
        cost = prompt * price.input / _M
        return Usage(prompt, 0, 0, 0, _norm(cost), False, (), zlib.crc32(_canonical(body.get("input"))))
    if endpoint == "completions":
        src = body.get("prompt")
        prompt = _embedding_tokens(src)
    else:
        src = body.get("messages") if endpoint == "chat" else responses_messages(body)
        tools = body.get("tools") if endpoint == "chat" else None
        prompt = _chat_prompt(src if isinstance(src, list) else [], tools)
        src = [src, tools] if tools else src
    h = zlib.crc32(model.encode() + b"\n" + _canonical(src))
    visible = 5 + h % 60
    reasoning = 10 + (h >> 8) % 90 if price.reasoning else 0
    limit = _limit(body, endpoint)
    capped = False
    if limit is not None and visible + reasoning > limit:
        capped = True
        reasoning = min(reasoning, limit)
        visible = limit - reasoning
    completion = visible + reasoning
    cached = (prompt * 3 // 4) // 128 * 128 if prompt >= 1024 else 0
    cached_price = price.cached if price.cached is not None else price.input
    cost = ((prompt - cached) * price.input + cached * cached_price + completion * price.output) / _M
    return Usage(prompt, completion, cached, reasoning, _norm(cost), capped, _words(h, visible), h)


def _make_text(n: int) -> tuple[str, ...]:
    x, out = 1, []
    for _ in range(n):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        out.append(_VOCAB[(x >> 8) % len(_VOCAB)])
    return tuple(out)


_TEXT_LEN = 4096
_TEXT = _make_text(_TEXT_LEN) * 2  # an answer is a slice of this pseudo-random text


def _words(h: int, n: int) -> tuple[str, ...]:
    start = (h >> 4) % _TEXT_LEN
    if n <= _TEXT_LEN:
        return _TEXT[start:start + n]
    return (_TEXT[start:] * (n // _TEXT_LEN + 1))[:n]


def _norm(d: Decimal) -> Decimal:
    return d.normalize() if d else Decimal(0)


def format_cost(d: Decimal) -> str:
    """The exact JSON literal for a cost: plain decimal notation, never an exponent."""
    return format(d, "f")


def expected_usage(model: str, body: dict, endpoint: str | None = None, *, no_cost: bool = False) -> dict | None:
    """The usage the fake will report for this request, as {prompt_tokens, completion_tokens,
    total_tokens, cached_tokens, reasoning_tokens, cost: Decimal}.

    `endpoint` is 'chat', 'completions', 'embeddings' or 'responses' (default: guessed from the body,
    see `endpoint_for`). Responses API input/output tokens are returned as prompt/completion tokens.
    A field the fake's answer does not carry is None: cost for `fake/no-cost` and for a no-cost
    answer (`no_cost=True`: the fake runs with `--no-cost` or the request sent `X-Fake-No-Cost: 1`;
    the token counts stay the same); completion, cached and reasoning tokens for embeddings; cached
    and reasoning tokens for legacy completions. Models whose answer carries no usage at all
    (`fake/no-usage`, the error modes, `fake/cut-stream`) give None. Unknown models raise KeyError.
    """
    endpoint = endpoint or endpoint_for(model, body)
    u = compute(model, body, endpoint)
    if model in _NO_USAGE_MODES or (model == "fake/reject-stream-options" and "stream_options" in body):
        return None
    out = {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
        "cached_tokens": u.cached_tokens,
        "reasoning_tokens": u.reasoning_tokens,
        "cost": None if no_cost or model == "fake/no-cost" else u.cost,
    }
    if endpoint == "embeddings":
        out.update(completion_tokens=None, cached_tokens=None, reasoning_tokens=None)
    elif endpoint == "completions":
        out.update(cached_tokens=None, reasoning_tokens=None)
    return out
