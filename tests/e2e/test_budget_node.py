"""The official `openai` npm package through the proxy against an exhausted hard budget: a 402 it does
not retry (its default policy retries 408/409/429/5xx twice), and the upstream sees nothing."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from fixture_proxy import rows
from helpers import make_record
from test_proxy_node import NODE_DIR, node_sdk  # noqa: F401 - the session fixture that installs the SDK

from spendlog.db.budgets import BudgetSpec, add_budget
from spendlog.db.engine import make_engine
from spendlog.db.migrate import upgrade
from spendlog.db.store import insert_records


def test_node_sdk_gets_a_402_it_does_not_retry(node_sdk, fake_upstream, proxy_factory):  # noqa: F811
    engine = make_engine()
    upgrade(engine)
    now = datetime.now(timezone.utc)
    with engine.begin() as conn:
        add_budget(conn, BudgetSpec(name="all-in", amount_usd=Decimal(1), period="day", hard=True), now)
        # today (UTC) even in the day's first second, so the day budget counts it
        when = max(now - timedelta(seconds=1), now.replace(hour=0, minute=0, second=0, microsecond=0))
        insert_records(conn, [make_record(created_at=when, cost_usd=Decimal(1))])
    engine.dispose()
    proxy = proxy_factory(fake_upstream.base_url)  # reads the hard budgets as it starts
    done = subprocess.run([node_sdk, str(NODE_DIR / "budget.mjs"), proxy.base_url, fake_upstream.api_key],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    error = json.loads(done.stdout)["error"]
    assert error["status"] == 402 and error["body"]["type"] == "budget_exceeded" and error["body"]["budget"] == "all-in"
    assert fake_upstream.requests == []
    refused = [r for r in rows(expect=2) if r.error_type == "budget_exceeded"]
    assert len(refused) == 1  # one attempt: no retry
