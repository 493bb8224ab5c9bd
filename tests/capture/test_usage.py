"""Reading usage: every field optional, wrong values stored as unknown, never as numbers."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from spendlog.usage import MAX_COST_USD, MAX_TOKENS, error_message, loads_answer, parse_usage


def usage_of(text: str):
    return parse_usage(json.loads(text, parse_float=Decimal))


def test_chat_usage_with_details_and_exact_cost():
    u = usage_of('{"prompt_tokens":15,"completion_tokens":83,"total_tokens":98,"cost":0.0000148,'
                 '"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":7}}')
    assert (u.prompt_tokens, u.completion_tokens, u.total_tokens, u.cached_tokens, u.reasoning_tokens) == (15, 83, 98, 0, 7)
    assert u.cost_usd == Decimal("0.0000148") and isinstance(u.cost_usd, Decimal)
    assert u.problems == []
    assert u.as_record()["cost_source"] == "upstream"


def test_responses_api_names():
    u = usage_of('{"input_tokens":10,"output_tokens":5,"total_tokens":15,"input_tokens_details":{"cached_tokens":2},'
                 '"output_tokens_details":{"reasoning_tokens":1},"cost":1e-7}')
    assert (u.prompt_tokens, u.completion_tokens, u.total_tokens, u.cached_tokens, u.reasoning_tokens) == (10, 5, 15, 2, 1)
    assert u.cost_usd == Decimal("1E-7")


def test_embeddings_usage_has_no_completion_tokens():
    u = usage_of('{"prompt_tokens":8,"total_tokens":8}')
    assert u.completion_tokens is None and u.cost_usd is None
    assert u.as_record()["cost_source"] == "missing"


def test_no_usage_is_none():
    assert parse_usage(None) is None


@pytest.mark.parametrize(
    "text, field",
    [
        ('{"prompt_tokens":-1}', "prompt_tokens"),
        ('{"prompt_tokens":1.5}', "prompt_tokens"),
        ('{"prompt_tokens":true}', "prompt_tokens"),
        ('{"prompt_tokens":"12"}', "prompt_tokens"),
        ('{"prompt_tokens":99999999999999999999999}', "prompt_tokens"),
        ('{"completion_tokens_details":{"reasoning_tokens":-3}}', "reasoning_tokens"),
        ('{"prompt_tokens_details":[1]}', "prompt_tokens_details"),
        ('{"cost":-0.1}', "cost"),
        ('{"cost":"0.1"}', "cost"),
        ('{"cost":NaN}', "cost"),
        ('{"cost":Infinity}', "cost"),
        ('{"cost":1e400}', "cost"),
        ('{"cost":true}', "cost"),
    ],
)
def test_bad_values_become_unknown_and_are_named(text, field):
    u = usage_of(text)
    assert u.problems and u.problems[0].startswith(field)
    assert u.prompt_tokens is None and u.reasoning_tokens is None and u.cost_usd is None


def test_bad_field_does_not_spoil_good_ones():
    u = usage_of('{"prompt_tokens":5,"completion_tokens":-2,"cost":0.5}')
    assert u.prompt_tokens == 5 and u.completion_tokens is None and u.cost_usd == Decimal("0.5")


def test_usage_not_an_object():
    u = parse_usage([1, 2])
    assert u.problems and u.prompt_tokens is None


def test_token_limit():
    assert usage_of(f'{{"prompt_tokens":{MAX_TOKENS}}}').prompt_tokens == MAX_TOKENS
    assert usage_of(f'{{"prompt_tokens":{MAX_TOKENS + 1}}}').prompt_tokens is None


def test_integer_cost_and_limits():
    assert usage_of('{"cost":0}').cost_usd == Decimal(0)
    assert usage_of('{"cost":-0.0}').cost_usd == Decimal(0)
    assert usage_of(f'{{"cost":{MAX_COST_USD}}}').cost_usd == MAX_COST_USD
    assert usage_of(f'{{"cost":{MAX_COST_USD + 1}}}').cost_usd is None


def test_loads_answer_big_body_reads_cost_exactly():
    floats = ",".join(["0.123456"] * 60_000)
    body = ('{"object":"list","data":[{"embedding":[' + floats + ']}],'
            '"usage":{"prompt_tokens":3,"total_tokens":3,"cost":0.00000006}}').encode()
    assert len(body) > 256 * 1024
    obj = loads_answer(body)
    assert obj["usage"]["cost"] == Decimal("0.00000006")
    assert isinstance(obj["usage"]["cost"], Decimal)


def test_loads_answer_rejects_non_json():
    with pytest.raises(ValueError):
        loads_answer(b"<html>")


@pytest.mark.parametrize(
    "body, message",
    [
        (b'{"error":{"message":"Rate limit reached","type":"rate_limit_error"}}', "Rate limit reached"),
        (b'{"error":"plain"}', "plain"),
        (b'{"detail":"nope"}', "nope"),
        (b"<html>  Bad\n Gateway </html>", "<html> Bad Gateway </html>"),
        (b"", None),
    ],
)
def test_error_message(body, message):
    assert error_message(body) == message


def test_error_message_is_short():
    assert len(error_message(b'{"error":{"message":"' + b"x" * 5000 + b'"}}')) == 300
