"""What hard budgets cost the proxy: CPU per request with 20 hard budgets against none.

    python bench/bench_budgets.py                 # CPU time from /proc, alternating rounds
    python bench/bench_budgets.py --callgrind     # instruction counts (valgrind), load-independent

Two processes as in bench_proxy.py: the fake upstream (no latency) and `spendlog proxy` recording
into a SQLite ledger in a temp dir; this script sends sequential chat completions on one keep-alive
connection. Three ledgers, each with its own proxy:

- ``none``: no budget;
- ``20``: 20 hard budgets (scopes by app, tag, model, key hint and everything), none spent: the
  usual case, the check is one attribute read, every record is matched against 20 scopes on the
  writer's thread;
- ``20+1 spent``: the same plus one spent hard budget of another app: every request is matched
  against it before going on.

CPU mode: rounds alternate (none, 20, 20+1, 20+1, 20, none, ...); each round's proxy CPU (user +
system, /proc/PID/stat) over its requests. Callgrind mode: every setup's proxy runs under
``valgrind --tool=callgrind --separate-threads=yes`` at the same time, the requests interleaved, once
with ``--small`` and once with ``--large`` requests; the difference of the counts divided by the
difference of the requests is the instructions per request (start-up cancels out), for the main
thread (the request path) and for all threads. The ledger refresh (every 5 s by default) is left out of the per-request
figure (``--budget-refresh 3600``) and timed on its own: one read of 20 budgets.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent))
from bench_proxy import _cpu_seconds, _spawn, _stop  # noqa: E402

CHAT = json.dumps({"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).encode()
KEY = "sr_bench_" + "0" * 24


SETUPS = ("none", "20", "20+1 spent")


def _ledger(url: str, setup: str) -> None:
    """A ledger for ``setup`` (see the module docstring)."""
    from spendlog.db.budgets import BudgetSpec, add_budget
    from spendlog.db.engine import make_engine
    from spendlog.db.migrate import upgrade
    from spendlog.db.store import insert_records
    from spendlog.db.ids import uuid7
    from spendlog.headers import hint_for

    engine = make_engine(url)
    upgrade(engine)
    now = datetime.now(timezone.utc)
    scopes = ([{"apps": [f"app-{i}"]} for i in range(5)] + [{"tags": [["team", f"t{i}"]]} for i in range(5)]
              + [{"models": [f"vendor/model-{i}"]} for i in range(5)]
              + [{"key_hints": [hint_for(KEY)]}, {"providers": ["openai"]}, {}, {"users": ["alice"]},
                 {"apps": ["app-0"], "tags": [["env", "prod"]]}])
    with engine.begin() as conn:
        if setup != "none":
            for i, scope in enumerate(scopes):
                add_budget(conn, BudgetSpec(name=f"hard-{i}", amount_usd=Decimal(10**6), period="month",
                                            scope=scope, hard=True), now)
        if setup == "20+1 spent":
            add_budget(conn, BudgetSpec(name="spent", amount_usd=Decimal(1), period="month",
                                        scope={"apps": ["elsewhere"]}, hard=True), now)
            insert_records(conn, [{"id": uuid7(), "created_at": now, "endpoint": "/v1/chat/completions",
                                   "app": "elsewhere", "cost_usd": Decimal(2), "cost_source": "upstream",
                                   "status_code": 200}])
    engine.dispose()


def _send(port: int, n: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    for _ in range(n):
        conn.request("POST", "/v1/chat/completions", body=CHAT, headers=headers)
        answer = conn.getresponse()
        answer.read()
        if answer.status != 200:
            raise RuntimeError(f"the proxy answered {answer.status}")
    conn.close()


def _proxy_cmd(py: str, upstream: str) -> list[str]:
    return [py, "-m", "spendlog", "proxy", "--port", "0", "--upstream", upstream, "--budget-refresh", "3600"]


def cpu_mode(args, py: str, upstream: str, tmp: str) -> None:
    proxies = {}
    for setup in SETUPS:
        url = f"sqlite:///{tmp}/{setup.replace(' ', '_').replace('+', 'p')}.db"
        _ledger(url, setup)
        env = {**os.environ, "SPENDLOG_DATA_DIR": tmp, "SPENDLOG_DB_URL": url}
        proxies[setup] = _spawn(_proxy_cmd(py, upstream), r"127\.0\.0\.1:(\d+)/v1", env, None)
    per: dict[str, list[float]] = {s: [] for s in SETUPS}
    try:
        for proc, port in proxies.values():
            _send(port, 200)  # warm-up
        order = [*SETUPS, *reversed(SETUPS)] * args.rounds
        for setup in order:
            proc, port = proxies[setup]
            before = _cpu_seconds(proc.pid)
            _send(port, args.requests)
            time.sleep(0.3)  # the writer's last batch
            per[setup].append((_cpu_seconds(proc.pid) - before) / args.requests * 1e6)
    finally:
        for proc, _ in proxies.values():
            _stop(proc)
    print("| setup | proxy CPU µs/request, median of rounds | min | max | vs none |")
    print("|---|---|---|---|---|")
    base = sorted(per["none"])[len(per["none"]) // 2]
    for setup in SETUPS:
        values = sorted(per[setup])
        median = values[len(values) // 2]
        print(f"| {setup} | {median:.0f} | {values[0]:.0f} | {values[-1]:.0f} | {100 * (median / base - 1):+.1f}% |")


def _callgrind_total(path: Path) -> int:
    for line in path.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {path}")


def _callgrind_threads(out: Path) -> tuple[int, int]:
    """``(main thread, all threads)`` from ``--separate-threads=yes`` files (``out-01``, ``out-02``, ...).
    The main thread (the event loop and the guard's check) is the request path; the writer thread's count
    depends on how records fall into batches and how often it wakes, i.e. on wall time under valgrind."""
    parts = sorted(out.parent.glob(out.name + "-*"))
    if not parts:
        raise RuntimeError(f"no callgrind files {out}-*")
    counts = [_callgrind_total(p) for p in parts]
    return counts[0], sum(counts)


def callgrind_mode(args, py: str, upstream: str, tmp: str) -> None:
    """Every setup's proxy under valgrind at the same time, the requests interleaved (one to each in
    turn), once with ``--small`` and once with ``--large`` requests: the setups then run for the same
    wall time, which the periodic work (the writer's wake-ups, timers) follows under valgrind. Run one
    after another, the same setup counted 3.1M and 5.6M instructions per request."""
    setups = [s for s in SETUPS if s in args.setups.split(",")]
    envs = {}
    for setup in setups:
        url = f"sqlite:///{tmp}/cg_{setup.replace(' ', '_').replace('+', 'p')}.db"
        _ledger(url, setup)
        envs[setup] = {**os.environ, "SPENDLOG_DATA_DIR": tmp, "SPENDLOG_DB_URL": url}
    counts: dict[str, dict[int, tuple[int, int]]] = {s: {} for s in setups}
    for n in (args.small, args.large):
        running = {}
        try:
            for setup in setups:
                out = Path(tmp) / f"cg.{SETUPS.index(setup)}.{n}.out"
                cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--separate-threads=yes",
                       "--trace-children=no", *_proxy_cmd(py, upstream)]
                running[setup] = (out, *_spawn(cmd, r"127\.0\.0\.1:(\d+)/v1", envs[setup], None))
            for _ in range(n):
                for setup in setups:
                    _send(running[setup][2], 1)
            time.sleep(1.0)
        finally:  # valgrind writes its counts at exit, which is slow under it: wait for each
            for _, proc, _ in running.values():
                proc.terminate()
            for _, proc, _ in running.values():
                proc.wait(600)
        for setup, (out, _, _) in running.items():
            counts[setup][n] = _callgrind_threads(out)
            print(f"  {setup}: {n} requests -> main thread {counts[setup][n][0]:,}, all threads "
                  f"{counts[setup][n][1]:,} instructions", flush=True)
    print("| setup | main thread per request | vs none | all threads per request | vs none |")
    print("|---|---|---|---|---|")
    span = args.large - args.small
    per = {s: [(c[args.large][i] - c[args.small][i]) / span for i in (0, 1)] for s, c in counts.items()}
    for setup in setups:
        main, every = per[setup]
        print(f"| {setup} | {main:,.0f} | {100 * (main / per['none'][0] - 1):+.1f}% | {every:,.0f} | "
              f"{100 * (every / per['none'][1] - 1):+.1f}% |")
    print("The main thread is the request path (load-independent); all threads include the writer's, whose "
          "count follows wall time under valgrind: compare setups by the main thread.")


def in_process(tmp: str, n: int = 20000) -> None:
    """The guard's own work per call, timed in this process: ``check`` on the request path and
    ``observe`` on the writer's thread (one record), for each setup."""
    from spendlog.budget_guard import BudgetGuard
    from spendlog.capture import CallCapture

    headers = [(b"authorization", f"Bearer {KEY}".encode()), (b"content-type", b"application/json")]
    record = {"cost_usd": Decimal("0.0000148"), "created_at": datetime.now(timezone.utc), "model": "openai/gpt-4o-mini",
              "provider": "openai", "app": None, "user": None, "api_key_hint": "sr_...0000", "tags": None}
    print("\n| setup | check() per call µs | observe() per record µs |\n|---|---|---|")
    for setup in SETUPS:
        url = f"sqlite:///{tmp}/inproc_{SETUPS.index(setup)}.db"
        _ledger(url, setup)
        guard = BudgetGuard(url, refresh_every=3600)
        guard.refresh()
        cap = CallCapture.start_parts("POST", "127.0.0.1", "/v1/chat/completions", headers, CHAT)
        t0 = time.process_time()
        for _ in range(n):
            guard.check(cap)
        check_us = (time.process_time() - t0) / n * 1e6
        t0 = time.process_time()
        for _ in range(n):
            guard.observe([record])
        observe_us = (time.process_time() - t0) / n * 1e6
        print(f"| {setup} | {check_us:.2f} | {observe_us:.2f} |")


def refresh_cost(tmp: str) -> None:
    """One ledger read of 20 hard budgets (what the guard's thread does every --budget-refresh s)."""
    from spendlog.db.budget_limits import HardBudgetReader

    url = f"sqlite:///{tmp}/refresh.db"
    _ledger(url, "20")
    reader = HardBudgetReader(url)
    reader.read(datetime.now(timezone.utc))
    times = []
    for _ in range(20):
        t0 = time.process_time()
        reader.read(datetime.now(timezone.utc))
        times.append(time.process_time() - t0)
    reader.close()
    times.sort()
    print(f"\nguard refresh, 20 hard budgets, empty ledger: {times[len(times) // 2] * 1000:.1f} ms CPU (median of 20); "
          "every 5 s by default")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--callgrind", action="store_true", help="Count instructions with valgrind instead of CPU time.")
    ap.add_argument("--requests", type=int, default=1000, help="Requests per round (CPU mode).")
    ap.add_argument("--rounds", type=int, default=3, help="Alternating rounds per setup, times 2 (CPU mode).")
    ap.add_argument("--small", type=int, default=50, help="Requests in the short callgrind run.")
    ap.add_argument("--large", type=int, default=250, help="Requests in the long callgrind run.")
    ap.add_argument("--setups", default=",".join(SETUPS), help="Callgrind: which setups (comma separated; 'none' first).")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="spendlog-bench-budgets-")
    env = {**os.environ, "SPENDLOG_DATA_DIR": tmp, "SPENDLOG_DB_URL": f"sqlite:///{tmp}/fake.db"}
    py = sys.executable
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"load {os.getloadavg()[0]:.2f} (1-min average before the run)")
    fake, fake_port = _spawn([py, "-m", "spendlog", "fake-upstream", "--port", "0", "--latency-ms", "0"],
                             r":(\d+)/v1", env, None)
    upstream = f"http://127.0.0.1:{fake_port}/v1"
    try:
        if args.callgrind:
            callgrind_mode(args, py, upstream, tmp)
        else:
            cpu_mode(args, py, upstream, tmp)
        in_process(tmp)
        refresh_cost(tmp)
    finally:
        _stop(fake)
    print(f"load {os.getloadavg()[0]:.2f} after the run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
