"""Small builders shared by tests (records, engines, subprocess scripts)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import datetime, timezone
from decimal import Decimal

from spendlog.db.ids import uuid7


def make_record(**overrides) -> dict:
    record = {
        "id": uuid7(),
        "created_at": datetime.now(timezone.utc),
        "request_id": "chatcmpl-test",
        "endpoint": "/v1/chat/completions",
        "upstream": "api.solrouter.io",
        "requested_model": "openai/gpt-4o-mini",
        "model": "openai/gpt-4o-mini",
        "provider": "openai",
        "stream": False,
        "status_code": 200,
        "prompt_tokens": 15,
        "completion_tokens": 83,
        "total_tokens": 98,
        "cost_usd": Decimal("0.0000148"),
        "cost_source": "upstream",
        "finish_reason": "stop",
        "latency_ms": 120,
        "app": "billing-bot",
        "user": "alice",
        "tags": {"team": "core"},
        "api_key_hint": "sr_...abcd",
    }
    record.update(overrides)
    return record


def run_python(code: str, *, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (the project's venv) and return the finished process."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
