"""Dashboard speed and memory: the overview's first render, filter changes, server memory.

    python bench/bench_dashboard.py                          # 100k, 1M, 10M rows (generated once, kept)
    python bench/bench_dashboard.py --rows 100000 --repeat 1
    python bench/bench_dashboard.py --rows 10000000 --browser  # also a real server + headless Chromium

Ledgers come from ``bench_export.generate_sqlite`` (the export benchmark's SQL generator: 90 days
ending today, 8 models x 20 users, rollup computed in SQL) and are kept in ``--workdir``.

AppTest mode: each size runs in a fresh interpreter whose session first renders a tiny ledger
(imports and AppTest's one-off set-up are not counted), then times ``AppTest.run()`` for the first
render of the big ledger's default view (last 30 days, data caches cold) and for each filter
change, with the process CPU time beside the wall time, and reports the process's peak RSS.
Browser mode: ``spendlog dashboard`` in a subprocess, Chromium (headless, /usr/bin/chromium)
times from navigation until the exact total is on screen, and from a filter click until the
new total is; the server's peak RSS is its VmHWM. Targets at 10M rows: first render <= 1.5 s,
filter change <= 0.5 s, server < 500 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
APP = HERE.parent / "dashboard" / "app.py"
TARGETS = {"first": 1.5, "change": 0.5, "rss": 500, "log page": 0.3}


def ensure_ledger(rows: int, workdir: Path, *, name: str = "ledger", tags: str | None = None) -> Path:
    """``workdir/<name>-<rows>.db`` from ``bench_export.generate_sqlite`` (``tags``: its SQL tag
    expression), generated once and kept (a ``.ok`` marker says it is whole)."""
    sys.path.insert(0, str(HERE))
    from bench_export import generate_sqlite

    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / f"{name}-{rows}.db"
    marker = Path(f"{db}.ok")
    if not marker.exists():
        started = time.perf_counter()
        generate_sqlite(db, rows, **({"tags": tags} if tags is not None else {}))
        marker.write_text(time.strftime("%Y-%m-%d"))
        print(f"  generated {rows:,} rows{' with tags' if tags else ''} in {time.perf_counter() - started:.0f} s "
              f"-> {db}", flush=True)
    return db


# -- AppTest mode (runs in a child interpreter) ----------------------------------------------------

CHANGES = [
    ("model", lambda at: at.sidebar.multiselect(key="f_model").set_value(["openai/gpt-4o"])),
    ("status", lambda at: at.sidebar.radio(key="f_status").set_value("errors")),
    ("granularity", lambda at: at.sidebar.radio(key="f_by").set_value("week")),
    ("range 7d", lambda at: at.sidebar.selectbox(key="f_range").set_value("7d")),
]
# measured and shown, not held to the 0.5 s target: a +05:30 zone reads raw rows (issue 5 allows it)
INFO = [("tz Kolkata", lambda at: at.sidebar.selectbox(key="f_tz").set_value("Asia/Kolkata"))]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _url(db: str) -> str:
    """A ledger path as a SQLite URL; a URL (``bench_pg_year.py`` passes PostgreSQL's) as it is."""
    return db if "://" in db else f"sqlite:///{db}"


def child(db: str, query: dict | None = None, only: list[str] | None = None) -> None:
    """Time the first render of ``db`` (a path or URL) at the view ``query`` (URL parameters, e.g.
    ``{"range": "all"}``), then each change of ``CHANGES`` + ``INFO`` (those named in ``only``)."""
    from streamlit.testing.v1 import AppTest

    sys.path.insert(0, str(HERE))
    from bench_export import generate_sqlite

    tiny = generate_sqlite(Path(tempfile.mkdtemp()) / "tiny.db", 500)
    os.environ["SPENDLOG_DB_URL"] = f"sqlite:///{tiny}"
    # One session renders a tiny ledger first: imports every code path and lets AppTest do its
    # one-off set-up (it scans installed packages for components, ~1 s), neither of which a
    # running server repeats. Then the same session opens the big ledger with cold data caches.
    at = AppTest.from_file(str(APP), default_timeout=300)
    at.query_params.update(query or {})
    at.run()
    os.environ["SPENDLOG_DB_URL"] = _url(db)
    started, cpu = time.perf_counter(), _cpu()
    at.run()
    result = {"first": time.perf_counter() - started, "first cpu": _cpu() - cpu}
    assert not at.exception, [e.value for e in at.exception]
    result["total"] = next(m.value for m in at.metric if m.label.startswith("Total spend"))  # "(incl. $x estimated)"
    for name, change in [*CHANGES, *INFO]:
        if only is not None and name not in only:
            continue
        change(at)
        started, cpu = time.perf_counter(), _cpu()
        at.run()
        result[name] = time.perf_counter() - started
        result[f"{name} cpu"] = _cpu() - cpu
        assert not at.exception, [e.value for e in at.exception]
    started = time.perf_counter()
    at.run()
    result["rerun cached"] = time.perf_counter() - started
    result["rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def apptest(db: Path | str, query: dict | None = None, only: list[str] | None = None) -> dict:
    """``child`` in a fresh interpreter; its figures (seconds, MB) by name."""
    extra = ["--child-query", json.dumps(query or {})] + (["--child-only", ",".join(only)] if only is not None else [])
    out = subprocess.run([sys.executable, __file__, "--child", str(db), *extra], capture_output=True, text=True,
                         timeout=1800)
    if out.returncode != 0:
        raise SystemExit(f"child failed: {out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- the request log (db.request_log, what the page asks for one page) ------------------------------

# (name, log_page keywords); the default view: the last 30 days, newest first
LOG_CASES = [
    ("time, page 1", {}),
    ("time, page 20", {"page": 19}),
    ("cost, page 1", {"sort": "cost"}),
    ("cost, page 20", {"sort": "cost", "page": 19}),
    ("tokens, page 1", {"sort": "tokens"}),
    ("latency, page 1", {"sort": "latency"}),
    ("search user", {"search": "user-07"}),
    ("search request id", {"search": "gen-9000123"}),  # one call, 8 days before the end
    ("search an id's part", {"search": "gen-900012"}),  # no exact match: the substring search
]


def migrate(db: Path) -> None:
    """Bring a kept ledger to the newest revision (0003 adds the request log's indexes: minutes at 10M)."""
    from spendlog.db.engine import make_engine
    from spendlog.db.migrate import current_revision, head_revision, upgrade

    engine = make_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        at = current_revision(conn)
    if at != head_revision():
        started = time.perf_counter()
        upgrade(engine)
        print(f"  upgraded {db.name} from {at} to {head_revision()} in {time.perf_counter() - started:.0f} s", flush=True)
    engine.dispose()


def request_log(db: Path, repeat: int = 3) -> dict:
    """Seconds per page (best of ``repeat``, after one warm-up read) for each of ``LOG_CASES``."""
    from datetime import date, timedelta

    from spendlog.db.engine import make_engine
    from spendlog.db.queries import Filters, date_bounds
    from spendlog.db.request_log import log_page

    today = date.today()
    start, end = date_bounds(today - timedelta(days=29), today, "UTC")
    filters = Filters(start=start, end=end)
    engine = make_engine(f"sqlite:///{db}", readonly=True)
    out = {}
    with engine.connect() as conn:
        for name, kwargs in LOG_CASES:
            log_page(conn, filters, **kwargs)
            best = float("inf")
            for _ in range(repeat):
                started = time.perf_counter()
                found = log_page(conn, filters, **kwargs)
                best = min(best, time.perf_counter() - started)
            out[name] = best
            out[f"{name} rows"] = len(found.rows)
    engine.dispose()
    return out


# -- browser mode ------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def browser(db: Path) -> dict:
    import urllib.request

    from playwright.sync_api import sync_playwright

    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "spendlog", "dashboard", "--no-browser", "--port", str(port),
                             "--db", f"sqlite:///{db}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    result: dict = {}
    try:
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1):
                    break
            except OSError:
                time.sleep(0.2)
        with sync_playwright() as p:
            chromium = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"])
            page = chromium.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(120_000)
            page.goto(f"http://127.0.0.1:{port}/?range=7d")  # warm the server's imports on another view
            page.get_by_text("Total spend, exact:").wait_for()
            started = time.perf_counter()
            page.goto(f"http://127.0.0.1:{port}/")
            caption = page.get_by_text("Total spend, exact:")
            caption.wait_for()
            page.get_by_test_id("stVegaLiteChart").first.locator("canvas, svg").first.wait_for()
            result["first"] = time.perf_counter() - started
            before = caption.inner_text()
            started = time.perf_counter()
            page.get_by_test_id("stSidebar").get_by_text("Errors", exact=True).click()
            page.wait_for_function("(before) => { const e = [...document.querySelectorAll('p')].find("
                                   "p => p.innerText.startsWith('Total spend, exact:')); return e && e.innerText !== before; }",
                                   arg=before)
            result["status"] = time.perf_counter() - started
            chromium.close()
        result["rss"] = _hwm_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="100000,1000000,10000000", help="comma list of ledger sizes")
    parser.add_argument("--repeat", type=int, default=2, help="fresh processes per size; the best time counts")
    parser.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "spendlog-dash-bench"),
                        help="where the generated ledgers are kept")
    parser.add_argument("--browser", action="store_true", help="also measure a real server with headless Chromium")
    parser.add_argument("--log-only", action="store_true",
                        help="only the request log's page times")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-query", default="{}", help=argparse.SUPPRESS)
    parser.add_argument("--child-only", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, json.loads(args.child_query), args.child_only.split(",") if args.child_only else None)
        return 0
    print(f"machine: {os.cpu_count()} cores, {platform.machine()}, Python {sys.version.split()[0]}, "
          f"load average {os.getloadavg()[0]:.1f} at start")
    rows_list = [int(r) for r in args.rows.split(",")]
    if args.log_only:
        for rows in rows_list:
            db = ensure_ledger(rows, Path(args.workdir))
            migrate(db)
            found = request_log(db)
            print(f"\nRequest log at {rows:,} calls (last 30 days, 50 a page), best of 3, s")
            print("| page | s | calls on it |\n|---|---:|---:|")
            for name, _ in LOG_CASES:
                print(f"| {name} | {found[name]:.3f} | {found[name + ' rows']} |")
            slowest = max(found[name] for name, _ in LOG_CASES[:-1])
            print(f"slowest page (the substring search aside) {slowest:.3f} s (target {TARGETS['log page']})")
        return 0
    table = []
    for rows in rows_list:
        db = ensure_ledger(rows, Path(args.workdir))
        migrate(db)
        runs = [apptest(db) for _ in range(args.repeat)]
        best = min(runs, key=lambda r: r["first"] + sum(r[c] for c, _ in CHANGES))  # the least disturbed run
        best["rows"] = rows
        if args.browser:
            best["browser"] = browser(db)
        table.append(best)
        print(f"  {rows:,} rows: {json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in best.items()})}",
              flush=True)
    changes = [name for name, _ in CHANGES]
    shown = [*changes, *(name for name, _ in INFO)]
    print(f"\nAppTest: wall s (process CPU s), best of {args.repeat} fresh processes; peak RSS of that process, MB")
    print("| rows | first render | " + " | ".join(f"then {c}" for c in shown) + " | cached rerun | peak RSS MB |")
    print("|---:|---:|" + "---:|" * len(shown) + "---:|---:|")
    for r in table:
        cells = " | ".join(f"{r[c]:.2f} ({r[c + ' cpu']:.2f})" for c in ["first", *shown])
        print(f"| {r['rows']:,} | {cells} | {r['rerun cached']:.2f} | {r['rss']:.0f} |")
    if args.browser:
        print("\nBrowser: wall s; RSS = the server's VmHWM, MB\n| rows | first render | change: status | server peak RSS MB |")
        print("|---:|---:|---:|---:|")
        for r in table:
            b = r["browser"]
            print(f"| {r['rows']:,} | {b['first']:.2f} | {b['status']:.2f} | {b['rss']:.0f} |")
    big = table[-1]
    worst_change = max(big[c] for c in changes)
    ok = big["first"] <= TARGETS["first"] and worst_change <= TARGETS["change"] and big["rss"] < TARGETS["rss"]
    print(f"\nat {big['rows']:,} rows: first {big['first']:.2f} s (target {TARGETS['first']}), slowest change "
          f"{worst_change:.2f} s (target {TARGETS['change']}), RSS {big['rss']:.0f} MB (target {TARGETS['rss']}): "
          f"{'targets met' if ok else 'TARGETS MISSED'}; load average now {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
