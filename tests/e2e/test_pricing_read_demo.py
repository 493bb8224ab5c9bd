"""The live demo's traffic shows estimates (issue 14): a share of its calls is answered without a cost."""

from __future__ import annotations

import threading
from collections import Counter

from sqlalchemy import select

from spendlog.db import registry
from spendlog.db.engine import make_engine
from spendlog.db.models import Completion
from spendlog.demo.live import LiveSender


def test_live_hook_traffic_mixes_bills_and_estimates(fake_upstream, sqlite_url):
    sender = LiveSender("hook", fake_upstream.base_url, interval=1.0, seed=3, db_url=sqlite_url,
                        stop=threading.Event())
    try:
        statuses = [sender.send_one() for _ in range(60)]
    finally:
        sender.client.close()
    assert registry.flush(60)
    sent = [h.get("x-fake-no-cost") for h in (r.headers for r in fake_upstream.requests)]
    assert len(sent) == 60 and 0 < sent.count("1") < 60
    engine = make_engine(sqlite_url)
    with engine.connect() as conn:
        sources = Counter(conn.scalars(select(Completion.cost_source)))
    engine.dispose()
    assert sum(sources.values()) == 60
    ok = statuses.count(200)
    assert sources["estimated"] > 0 and sources["upstream"] > 0, (sources, ok)
