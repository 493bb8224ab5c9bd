"""An "app" for the fault tests: it makes LLM calls through spendlog's hook and says how far it got.

    python tests/fault_app.py --calls 5000 --app p3                 # calls answered in-process
    python tests/fault_app.py --calls 50 --base-url URL --key KEY    # real HTTP (the fake upstream)
    python tests/fault_app.py --dashboard --stop-file F              # "dashboard queries" in a loop

Calls go through ``spendlog.LoggingTransport(inner)``: the whole hook (stream wrapper, record
builder, writer) runs for real. With ``--base-url`` they are made by an ``httpx.Client`` over real
HTTP; without it the inner transport is an ``httpx.MockTransport`` answering ``ANSWER`` and the
app calls the transport directly (the database is what these tests stress, not HTTP). Each call is tagged ``i=<n>`` (``X-Spendlog-Tags``), so a test can tell exactly which
calls were recorded. After each call has returned (its record handed to the writer) the app
prints ``<n>`` on stdout, flushed: the parent knows what was submitted when it kills the app.
The database is ``SPENDLOG_DB_URL``.

The test side: ``AppProcess`` starts this script and follows its progress; ``ledger`` reads back
what a database holds and checks it is consistent (no id or call twice, rollup = rows).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

ANSWER = (
    b'{"id":"chatcmpl-fault","object":"chat.completion","created":1700000000,"model":"openai/gpt-4o-mini",'
    b'"choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":11,"completion_tokens":7,"total_tokens":18,"cost":0.0000123}}'
)
PROMPT_TOKENS, COMPLETION_TOKENS, COST = 11, 7, "0.0000123"
BODY = b'{"model":"openai/gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'


def _answer(request):
    import httpx

    return httpx.Response(200, headers={"content-type": "application/json"}, content=ANSWER)


def run_calls(args) -> int:
    import httpx

    import spendlog
    from spendlog.transport import LoggingTransport

    if args.base_url:
        inner = httpx.HTTPTransport()
        url = args.base_url.rstrip("/") + "/chat/completions"
    else:
        inner = httpx.MockTransport(_answer)
        url = "https://api.solrouter.io/v1/chat/completions"
    headers = {"Authorization": f"Bearer {args.key}", "Content-Type": "application/json"}
    transport = LoggingTransport(inner, app=args.app)
    client = httpx.Client(transport=transport, timeout=30)
    out = sys.stdout
    for i in range(args.calls):
        if args.until_file and os.path.exists(args.until_file):
            break
        call_headers = {**headers, "X-Spendlog-Tags": f"i={i}"}
        if args.base_url:
            r = client.post(url, content=BODY, headers=call_headers)
        else:  # the hook without the client's own per-call work (auth, cookies, redirects): 2x cheaper
            r = transport.handle_request(httpx.Request("POST", url, content=BODY, headers=call_headers))
            r.read()
            r.close()
        if r.status_code != 200:
            print(f"call {i}: HTTP {r.status_code}", file=sys.stderr)
            return 1
        out.write(f"{i + 1}\n")
        out.flush()
        if args.delay_ms:
            time.sleep(args.delay_ms / 1000)
    if args.flush:
        spendlog.flush(30)
    if args.hang:  # wait to be killed, records already handed over
        time.sleep(3600)
    return 0


def run_dashboard(args) -> int:
    """``grouped_totals`` in a loop on a read-only engine until the stop file appears."""
    from spendlog.db.engine import make_engine
    from spendlog.db.queries import Filters, grouped_totals

    engine = make_engine(os.environ["SPENDLOG_DB_URL"], readonly=True)
    queries = 0
    groupings = (("day", "model"), ("app",), ("user", "key"), ())
    started = time.monotonic()
    while not os.path.exists(args.stop_file):
        try:
            with engine.connect() as conn:
                list(grouped_totals(conn, Filters(), groupings[queries % len(groupings)]))
            queries += 1
        except Exception as exc:  # noqa: BLE001 - counted and shown; the test wants zero
            missing = any(m in str(exc) for m in ("no such table", "does not exist", "unable to open database file"))
            if missing and time.monotonic() - started < 30:
                time.sleep(0.05)  # the writers have not created the schema yet
                continue
            print(f"dashboard query failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        time.sleep(0.01)
    print(queries)
    return 0


# -- the test side ------------------------------------------------------------------------------

class AppProcess:
    """This script in a child process; ``progress`` is the number of calls it has finished."""

    def __init__(self, *args: str, db_url: str, env: dict | None = None, stop_file: Path | None = None,
                 script: Path | None = None):
        """``script``: run that file (which calls ``fault_app.main()``) instead of this one."""
        self.stop_file = stop_file
        cmd = [sys.executable, str(script or __file__), *args]
        if stop_file is not None:
            cmd += ["--until-file", str(stop_file)]
        full_env = {**os.environ, "SPENDLOG_DB_URL": db_url, **(env or {})}
        self.proc = subprocess.Popen(cmd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.progress = 0
        self.stderr = ""
        self._out = threading.Thread(target=self._follow, daemon=True)
        self._err = threading.Thread(target=self._collect_stderr, daemon=True)
        self._out.start()
        self._err.start()

    def _follow(self) -> None:
        for line in self.proc.stdout:
            if line.strip().isdigit():
                self.progress = int(line)

    def _collect_stderr(self) -> None:
        self.stderr = self.proc.stderr.read()

    def wait_progress(self, n: int, timeout: float = 120) -> int:
        deadline = time.monotonic() + timeout
        while self.progress < n:
            if self.proc.poll() is not None:
                self._out.join(5)
                if self.progress >= n:
                    break
                raise AssertionError(f"app exited ({self.proc.returncode}) at {self.progress} calls: {self.stderr_now()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"app reached {self.progress} calls, not {n}, in {timeout} s")
            time.sleep(0.01)
        return self.progress

    def signal(self, sig: int = signal.SIGTERM) -> int:
        """Send ``sig``; returns the calls finished before it was sent."""
        done = self.progress
        self.proc.send_signal(sig)
        return done

    def stop(self) -> None:
        assert self.stop_file is not None
        self.stop_file.write_text("stop")

    def finish(self, timeout: float = 120) -> int:
        """Wait for the exit; returns the return code (stdout and stderr fully read)."""
        rc = self.proc.wait(timeout)
        self._out.join(10)
        self._err.join(10)
        return rc

    def stderr_now(self) -> str:
        self._err.join(2)
        return self.stderr[-2000:]


def ledger(url: str) -> dict:
    """What the database holds, checked for consistency: ``calls`` maps app -> sorted call numbers;
    raises AssertionError when an id or a call is stored twice or the rollup (hourly or daily) disagrees."""
    from sqlalchemy import func, select, text

    from spendlog.db.engine import make_engine
    from spendlog.db.models import Completion, RollupDaily, RollupHourly

    engine = make_engine(url, pool=False)
    if engine.dialect.name == "postgresql":  # one snapshot for rows and rollup, even while apps write
        engine = engine.execution_options(isolation_level="REPEATABLE READ")
    try:
        with engine.begin() as conn:  # SQLite: BEGIN IMMEDIATE, so no commit lands between the reads
            rows = conn.execute(select(Completion.id, Completion.app, Completion.tags, Completion.cost_usd)).all()
            rollup_requests = conn.scalar(select(func.sum(RollupHourly.requests))) or 0
            rollup_cost = conn.scalar(select(func.sum(RollupHourly.cost_usd))) or Decimal(0)
            daily = conn.execute(select(func.sum(RollupDaily.requests), func.sum(RollupDaily.cost_usd))).one()
            integrity = conn.scalar(text("PRAGMA integrity_check")) if engine.dialect.name == "sqlite" else "ok"
    finally:
        engine.dispose()
    ids = [r.id for r in rows]
    assert len(ids) == len(set(ids)), "an id is stored twice"
    calls: dict[str, list[int]] = {}
    for r in rows:
        calls.setdefault(r.app, []).append(int((r.tags or {}).get("i", -1)))
    for app, numbers in calls.items():
        numbers.sort()
        assert len(numbers) == len(set(numbers)), f"a call of {app} is stored twice"
    cost = sum((r.cost_usd for r in rows if r.cost_usd is not None), Decimal(0))
    assert rollup_requests == len(rows), f"rollup counts {rollup_requests} requests, table has {len(rows)} rows"
    assert rollup_cost == cost, f"rollup cost {rollup_cost} != rows {cost}"
    assert (daily[0] or 0, daily[1] or Decimal(0)) == (len(rows), cost), f"daily rollup {tuple(daily)} != rows"
    return {"rows": len(rows), "calls": calls, "cost": cost, "integrity": integrity}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=1, help="how many calls to make")
    p.add_argument("--app", default="fault-app", help="the app name recorded")
    p.add_argument("--delay-ms", type=float, default=0, help="pause between calls")
    p.add_argument("--base-url", help="call this upstream over HTTP instead of answering in-process")
    p.add_argument("--key", default="sr_test_faultapp0123456789", help="the API key sent")
    p.add_argument("--until-file", help="stop calling (before --calls) once this file exists")
    p.add_argument("--flush", action="store_true", help="spendlog.flush() before exiting")
    p.add_argument("--hang", action="store_true", help="after the calls, sleep until killed")
    p.add_argument("--dashboard", action="store_true", help="run dashboard queries instead of calls")
    p.add_argument("--stop-file", help="with --dashboard: stop when this file exists")
    args = p.parse_args()
    return run_dashboard(args) if args.dashboard else run_calls(args)


if __name__ == "__main__":
    sys.exit(main())
