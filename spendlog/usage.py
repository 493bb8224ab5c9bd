"""Reading a ``usage`` object from an OpenAI-compatible answer, defensively.

Every field is optional. Token counts must be non-negative ints (not bool, float or str) up to
``MAX_TOKENS``; ``cost`` must be a finite, non-negative JSON number parsed as ``Decimal`` (the caller
parses with ``json.loads(..., parse_float=Decimal)``) and at most ``MAX_COST_USD``. A field that
breaks these rules is stored as unknown (None) and named in ``Usage.problems``: a wrong number is
never stored as a right one.

Shapes understood:
- Chat / Completions / Embeddings: ``prompt_tokens``, ``completion_tokens``, ``total_tokens``,
  ``prompt_tokens_details.cached_tokens``, ``completion_tokens_details.reasoning_tokens``.
- Responses API: ``input_tokens``, ``output_tokens``, ``total_tokens``,
  ``input_tokens_details.cached_tokens``, ``output_tokens_details.reasoning_tokens``.
- ``cost`` (USD) as SolRouter and OpenRouter send it.

``loads_answer`` parses a whole (non-streamed) answer so that ``cost`` arrives as ``Decimal``;
``error_message`` pulls the message out of an error body. A number Python cannot hold at all (an
exponent beyond Decimal's range such as ``1e-99999999999999999999``, which raises
``InvalidOperation``; an integer past ``int``'s 4,300-digit limit) does not make the answer
unreadable: it arrives as ``Unreadable`` (its text), so that field alone is reported unusable.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from decimal import Decimal

__all__ = ["Usage", "Unreadable", "parse_usage", "loads_exact", "loads_answer", "error_message", "MAX_COST_USD",
           "MAX_TOKENS"]

# Beyond these, one call's figures are not usage but a bug, refused as unusable: they also keep the
# ledger's sums exact (an hour's rollup row on SQLite holds at most 2**63 tokens and 9.2 million USD).
MAX_TOKENS = 10**12
MAX_COST_USD = Decimal(10_000)


@dataclass(slots=True)
class Usage:
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None
    cost_usd: Decimal | None = None
    problems: list[str] = field(default_factory=list)

    def as_record(self) -> dict:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "cached_tokens": self.cached_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "cost_usd": self.cost_usd,
            "cost_source": "missing" if self.cost_usd is None else "upstream",
        }


def _tokens(container: dict, name: str, problems: list[str], label: str | None = None) -> int | None:
    if name not in container:
        return None
    value = container[name]
    if value is None:
        return None
    if type(value) is int and 0 <= value <= MAX_TOKENS:
        return value
    problems.append(f"{label or name}={_short(value)}")
    return None


def _cost(value: object, problems: list[str]) -> Decimal | None:
    if value is None:
        return None
    if type(value) is int:
        value = Decimal(value)
    if isinstance(value, Decimal) and value.is_finite() and Decimal(0) <= value <= MAX_COST_USD:
        return value.copy_abs()  # turns -0 into 0, never rounds
    problems.append(f"cost={_short(value)}")
    return None


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _details(usage: dict, name: str, problems: list[str]) -> dict:
    details = usage.get(name)
    if details is None:
        return {}
    if isinstance(details, dict):
        return details
    problems.append(f"{name}={_short(details)}")
    return {}


def parse_usage(usage: object) -> Usage | None:
    """The usage fields of ``usage`` (a decoded JSON object), or None when there is no usage."""
    if usage is None:
        return None
    out = Usage()
    problems = out.problems
    if not isinstance(usage, dict):
        problems.append(f"usage={_short(usage)}")
        return out
    if "input_tokens" in usage or "output_tokens" in usage:  # Responses API
        out.prompt_tokens = _tokens(usage, "input_tokens", problems)
        out.completion_tokens = _tokens(usage, "output_tokens", problems)
        prompt_details = _details(usage, "input_tokens_details", problems)
        completion_details = _details(usage, "output_tokens_details", problems)
    else:
        out.prompt_tokens = _tokens(usage, "prompt_tokens", problems)
        out.completion_tokens = _tokens(usage, "completion_tokens", problems)
        prompt_details = _details(usage, "prompt_tokens_details", problems)
        completion_details = _details(usage, "completion_tokens_details", problems)
    out.total_tokens = _tokens(usage, "total_tokens", problems)
    out.cached_tokens = _tokens(prompt_details, "cached_tokens", problems, "cached_tokens")
    out.reasoning_tokens = _tokens(completion_details, "reasoning_tokens", problems, "reasoning_tokens")
    out.cost_usd = _cost(usage.get("cost"), problems)
    return out


# -- whole answers ------------------------------------------------------------------------------

# Above this size a body is parsed with plain floats first (embeddings: thousands of floats) and
# only the ``usage`` object is re-read with Decimal.
_DECIMAL_PARSE_LIMIT = 256 * 1024
_USAGE_KEY = re.compile(rb'"usage"\s*:\s*\{')
_DECIMAL_JSON = json.JSONDecoder(parse_float=Decimal)
_FLOAT_JSON = json.JSONDecoder()


class Unreadable(str):
    """A JSON number that neither ``Decimal`` nor ``int`` can hold, kept as its text (its repr is
    the literal, as ``Usage.problems`` shows it)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return str.__str__(self)


def _or_unreadable(parse):
    def read(literal: str):
        try:
            return parse(literal)
        except (ValueError, ArithmeticError):
            return Unreadable(literal)
    return read


# Used only after the fast decoder failed on a number (rare): every number goes through Python.
_TOLERANT_JSON = json.JSONDecoder(parse_float=_or_unreadable(Decimal), parse_int=_or_unreadable(int))


def _decode(decoder: json.JSONDecoder, text: str) -> object:
    try:
        return decoder.decode(text)
    except json.JSONDecodeError:
        raise  # not JSON
    except (ValueError, ArithmeticError):  # JSON, with a number Python cannot hold
        return _TOLERANT_JSON.decode(text)


def loads_exact(data: bytes) -> object:
    """JSON (UTF-8) with fractions as ``Decimal`` (numbers beyond ``Decimal`` or ``int`` as
    ``Unreadable``). Raises ``ValueError`` when it is not JSON."""
    return _decode(_DECIMAL_JSON, data.decode("utf-8"))


def loads_answer(body: bytes) -> object:
    """A JSON answer with every number that could be money parsed as ``Decimal`` (numbers beyond
    ``Decimal`` or ``int`` as ``Unreadable``).

    Raises ``ValueError`` when the body is not JSON."""
    text = body.decode("utf-8")  # JSON is UTF-8 (RFC 8259); UnicodeDecodeError is a ValueError
    if len(body) <= _DECIMAL_PARSE_LIMIT:
        return _decode(_DECIMAL_JSON, text)
    obj = _decode(_FLOAT_JSON, text)
    if isinstance(obj, dict) and isinstance(obj.get("usage"), dict):
        obj["usage"] = _exact_usage(body)
    return obj


def _exact_usage(body: bytes) -> object:
    """The top-level ``usage`` object of a big answer, re-read with Decimal (the last one in the
    text: OpenAI-style answers put usage after the data). None if it cannot be found."""
    matches = list(_USAGE_KEY.finditer(body))
    if not matches:
        return None
    text = body[matches[-1].end() - 1 :].decode("utf-8", "replace")
    try:
        usage, _ = _DECIMAL_JSON.raw_decode(text)
    except json.JSONDecodeError:
        return None
    except (ValueError, ArithmeticError):
        usage, _ = _TOLERANT_JSON.raw_decode(text)
    return usage


def error_message(body: bytes, limit: int = 300) -> str | None:
    """The upstream's error message from an error body (OpenAI style or not), shortened."""
    if not body:
        return None
    message = None
    try:
        obj = json.loads(body)
    except ValueError:
        obj = None
    if isinstance(obj, dict):
        err = obj.get("error", obj)
        if isinstance(err, dict):
            message = err.get("message") or err.get("detail") or err.get("msg")
        elif isinstance(err, str):
            message = err
        if message is not None and not isinstance(message, str):
            message = json.dumps(message)[:limit]
    if message is None:
        message = body[: limit * 4].decode("utf-8", "replace").strip()
    message = " ".join(message.split())
    return message[: limit - 3] + "..." if len(message) > limit else (message or None)
