"""Live traffic for the demo: gentle, believable calls through the real hook and the real proxy.

Two sender threads, one per way in:

- ``hook``: an ``httpx.Client`` whose transport is ``spendlog.transport.LoggingTransport`` (what an
  app using the hook runs), calling the fake upstream directly;
- ``proxy``: a plain ``httpx.Client`` calling the logging proxy (``spendlog.proxy``) over HTTP,
  with ``X-Spendlog-App`` / ``-User`` / ``-Tags`` headers, as any non-Python client would.

Every live record is tagged ``via=hook`` or ``via=proxy`` (the backfill's are ``via=backfill``), so
the two paths can be told apart in the ledger. A sender never raises: a failed call is counted,
and the loop goes on until ``stop`` is set.
"""

from __future__ import annotations

import json
import random
import sys
import threading

import httpx

from spendlog import LoggingTransport

from .traffic import (ENDPOINTS, FEATURES, KEY_NAMES, NO_COST_SHARE, NO_COST_SHARE_MISTRAL, TEAMS, Prompts, demo_keys,
                      sample_call)

__all__ = ["LiveSender", "start_live_traffic"]

_TIMEOUT = httpx.Timeout(30.0, connect=5.0)


class LiveSender:
    """One thread sending a call every ``interval`` seconds (+-50%) until ``stop`` is set."""

    def __init__(self, via: str, base_url: str, *, interval: float, seed: int, db_url: str,
                 stop: threading.Event):
        self.via, self.base_url, self.interval, self.stop = via, base_url.rstrip("/"), interval, stop
        self.rng = random.Random(f"{seed}:live:{via}")
        self.prompts = Prompts(random.Random(f"{seed}:texts"))
        self.keys = demo_keys(seed)
        self.sent = self.failed = 0
        self.last_error: str | None = None
        if via == "hook":
            transport = LoggingTransport(httpx.HTTPTransport(), tags={"via": "hook"}, db_url=db_url)
            self.client = httpx.Client(transport=transport, timeout=_TIMEOUT)
        else:
            self.client = httpx.Client(timeout=_TIMEOUT)
        self.thread = threading.Thread(target=self._run, name=f"spendlog-demo-{via}", daemon=True)

    def start(self) -> LiveSender:
        self.thread.start()
        return self

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)
        self.client.close()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                self.send_one()
                self.sent += 1
            except Exception as exc:  # noqa: BLE001 - the demo keeps going; said once, counted after
                self.failed += 1
                if self.last_error is None:
                    print(f"spendlog demo: a live call through the {self.via} failed ({type(exc).__name__}: "
                          f"{str(exc)[:200]}); still trying", file=sys.stderr, flush=True)
                self.last_error = f"{type(exc).__name__}: {exc}"[:200]
            self.stop.wait(self.interval * self.rng.uniform(0.5, 1.5))

    def send_one(self) -> int:
        """Send one call (and read its whole answer); returns the HTTP status."""
        rng = self.rng
        app, user, key_index, endpoint, body = sample_call(rng, self.prompts)
        team = f"team={TEAMS.get(app.name, 'other')},feature={rng.choice(FEATURES.get(app.name, ('general',)))}"
        headers = {
            "Authorization": f"Bearer {self.keys[key_index]}",
            "Content-Type": "application/json",
            "X-Spendlog-App": app.name,
            "X-Spendlog-User": user,
            "X-Spendlog-Tags": f"via={self.via},env={KEY_NAMES[key_index]},{team}",
            "X-Fake-Latency-Ms": str(rng.randint(80, 600)),
            "X-Fake-Chunk-Delay-Ms": "15",
        }
        # like the backfill, a share of calls is answered as OpenAI answers (usage, no cost), so the
        # live ledger shows spendlog's estimates beside the router's bills
        share = NO_COST_SHARE_MISTRAL if str(body.get("model", "")).startswith("mistralai/") else NO_COST_SHARE
        if rng.random() < share:
            headers["X-Fake-No-Cost"] = "1"
        if self.via == "hook":  # the transport adds its own via=hook tag; the header one would win
            headers["X-Spendlog-Tags"] = f"env={KEY_NAMES[key_index]},{team}"
        url = self.base_url + ENDPOINTS[endpoint]
        with self.client.stream("POST", url, content=json.dumps(body).encode(), headers=headers) as response:
            for _ in response.iter_raw():
                pass
            return response.status_code


def start_live_traffic(*, hook_base_url: str, proxy_base_url: str, per_minute: float, seed: int, db_url: str,
                       stop: threading.Event) -> list[LiveSender]:
    """Start the hook and the proxy senders, ``per_minute`` calls a minute between them."""
    if per_minute <= 0:
        return []
    interval = 2 * 60.0 / per_minute
    return [LiveSender(via, base, interval=interval, seed=seed, db_url=db_url, stop=stop).start()
            for via, base in (("hook", hook_base_url), ("proxy", proxy_base_url))]
