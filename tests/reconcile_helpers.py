"""Shared by the reconcile tests: calls through the hook, the proxy and around spendlog, the fake's
activity as files, and running `spendlog reconcile`."""

from __future__ import annotations

import csv
import io
import json
import time
from datetime import datetime, timezone
from decimal import Decimal

import httpx
import openai
from click.testing import CliRunner

import spendlog
from spendlog.cli import cli
from spendlog.fake_upstream import expected_bill
from spendlog.transport import LoggingTransport

MESSAGES = [{"role": "user", "content": "What is the meaning of life?"}]
ACTIVITY_HEADER = ["date", "model", "requests", "usage", "prompt_tokens", "completion_tokens", "reasoning_tokens",
                   "provider_name", "byok_usage_inference", "model_permaslug", "endpoint_id"]


def away_from_midnight() -> str:
    """Today's UTC date, after waiting out the last 3 s of a day: the hook stamps a call when it
    starts, the fake bills it when it arrives, and a test must not straddle midnight."""
    now = datetime.now(timezone.utc)
    left = 86_400 - (now.hour * 3600 + now.minute * 60 + now.second + now.microsecond / 1e6)
    if left < 3:
        time.sleep(left + 0.1)
    return datetime.now(timezone.utc).date().isoformat()


def hooked_client(base_url: str, api_key: str, db_url: str) -> openai.OpenAI:
    transport = LoggingTransport(httpx.HTTPTransport(), app="reconcile-test", db_url=db_url)
    return openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, http_client=httpx.Client(transport=transport))


def plain_client(base_url: str, api_key: str) -> openai.OpenAI:
    """A client that does not log: calls made around spendlog."""
    return openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, http_client=httpx.Client())


def chat(client: openai.OpenAI, model: str, n: int = 1, **kw) -> list:
    return [client.chat.completions.create(model=model, messages=MESSAGES, **kw) for _ in range(n)]


def billed(model: str, n: int = 1) -> Decimal:
    """What the fake bills for n `chat(...)` calls of `model` (exact, from its own rules)."""
    return expected_bill(model, {"model": model, "messages": MESSAGES})["usage"] * n


def activity_json(fake, first: str, last: str) -> bytes:
    """The fake's GET /v1/activity for the days first..last, one `date=` request per day, merged
    into one `{"data": [...]}` document with the exact decimal literals the fake wrote."""
    from datetime import date, timedelta

    items = []
    day, end = date.fromisoformat(first), date.fromisoformat(last)
    with httpx.Client() as client:
        while day <= end:
            r = client.get(fake.url("activity"), params={"date": day.isoformat()},
                           headers={"Authorization": f"Bearer {fake.management_key}"})
            assert r.status_code == 200, r.text
            body = r.text
            inner = body[body.index("[") + 1 : body.rindex("]")]
            if inner:
                items.append(inner)
            day += timedelta(days=1)
    return ('{"data":[' + ",".join(items) + "]}").encode()


def activity_csv(doc: bytes) -> bytes:
    """The same activity as CSV with OpenRouter's headers (money cells as the exact literals)."""
    rows = json.loads(doc, parse_float=Decimal)["data"]
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(ACTIVITY_HEADER)
    for r in rows:
        w.writerow([r.get(h) if not isinstance(r.get(h), Decimal) else format(r[h], "f") for h in ACTIVITY_HEADER])
    return buf.getvalue().encode()


def reconcile(*args: str, env: dict | None = None) -> tuple[int, str, str]:
    """Run `spendlog reconcile ARGS` in process: (exit code, stdout, stderr)."""
    spendlog.flush(10)
    result = CliRunner().invoke(cli, ["reconcile", *args], env=env)
    return result.exit_code, result.stdout_bytes.decode(), result.stderr


def reconcile_json(*args: str, env: dict | None = None) -> tuple[int, dict]:
    code, out, err = reconcile(*args, "--format", "json", env=env)
    assert code in (0, 1), err
    return code, json.loads(out)


def rows_by_key(doc: dict) -> dict:
    return {(r["day"], r["model"]): r for r in doc["rows"]}
