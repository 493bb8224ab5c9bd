"""``spendlog demo`` end to end: the fake upstream, the proxy, the dashboard, history and live calls.

Order: check the port, start the fake upstream (a thread, port 0), the proxy in front of it (a
thread, port 0) and the dashboard (``streamlit`` in a child process, its own session so Ctrl+C
reaches only us); backfill history through the ledger writer while the dashboard boots; wait
until the dashboard answers; print its URL; open the browser; send live calls until SIGINT or
SIGTERM. Stopping: live senders first, then the proxy and the fake, the dashboard child
(terminate, then kill after a bounded wait), and the writer is flushed. Exit code 0.

The database is the demo's own (``sqlite:///<data dir>/demo.db``, started afresh each run) unless
``--db`` names one; ``SPENDLOG_DB_URL`` is deliberately ignored: the demo never writes fake
traffic into a real ledger by accident.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
import webbrowser
from datetime import datetime, timezone
from pathlib import Path

import httpx

from spendlog.db import writer
from spendlog.db.engine import data_dir, mask_url, resolve_url, sqlite_path
from spendlog.db.spool import dropped_path, rejected_path, spool_files, spool_path
from spendlog.db.status import database_status

from .closes import LATE_RECORDS, close_past_month
from .traffic import demo_keys, generate_records
from .live import start_live_traffic

__all__ = ["DemoOptions", "demo_db_url", "backfill", "run_demo"]

READY_TIMEOUT = 90.0  # seconds for the dashboard to answer (a cold Streamlit import is slow)
BACKPRESSURE = 20_000  # records queued in the writer before the backfill waits for it


class DemoOptions:
    def __init__(self, *, db_url: str | None = None, days: int = 60, per_day: float = 400, seed: int = 7,
                 host: str = "127.0.0.1", port: int = 8501, open_browser: bool = True, per_minute: float = 30):
        self.db_url, self.days, self.per_day, self.seed = db_url, days, per_day, seed
        self.host, self.port, self.open_browser, self.per_minute = host, port, open_browser, per_minute


def demo_db_url() -> str:
    """The demo's own database: ``demo.db`` in the spendlog data dir."""
    return f"sqlite:///{data_dir() / 'demo.db'}"


def _say(message: str) -> None:
    print(f"spendlog demo: {message}", file=sys.stderr, flush=True)


def _fresh_demo_db(url: str) -> None:
    """Remove the previous run's demo database (ours alone), its spool files and their counts."""
    resolved = resolve_url(url)
    path = sqlite_path(resolved)
    if path is not None:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(str(path) + suffix).unlink(missing_ok=True)
    for leftover in (*spool_files(spool_path(resolved)), rejected_path(resolved), dropped_path(resolved)):
        leftover.unlink(missing_ok=True)


class _Progress:
    """A one-line progress bar on stderr (a terminal), or a line every 25% (a pipe or a file)."""

    def __init__(self, days: int, end: datetime):
        self.days, self.end, self.tty = days, end, sys.stderr.isatty()
        self.next_note = 0.25

    def __call__(self, count: int, at: datetime, *, done: bool = False) -> None:
        frac = 1.0 if done else min(1.0, max(0.0, 1 - (self.end - at).total_seconds() / (self.days * 86400)))
        if self.tty:
            bar = "#" * int(frac * 30)
            sys.stderr.write(f"\r  backfilling {self.days} days [{bar:<30}] {frac:4.0%}  {count:,} calls")
            if done:
                sys.stderr.write("\n")
            sys.stderr.flush()
        elif done or frac >= self.next_note:
            self.next_note = frac + 0.25
            _say(f"backfilling {self.days} days: {frac:.0%}, {count:,} calls")


def backfill(url: str, days: int, *, per_day: float = 400, seed: int = 7, end: datetime | None = None,
             stop: threading.Event | None = None, progress=None) -> int:
    """Write ``days`` days of generated history into ``url`` through the ledger writer; returns the
    number of records (fewer if ``stop`` was set on the way)."""
    end = end or datetime.now(timezone.utc)
    w = writer.get_writer(url)
    count = 0
    last = end
    for record in generate_records(days, seed, per_day, end=end, db_url=url):
        w.submit(record)
        count += 1
        last = record["created_at"]
        if count % 500 == 0:
            if stop is not None and stop.is_set():
                break
            while w.pending > BACKPRESSURE and not (stop is not None and stop.is_set()):
                time.sleep(0.01)
            if progress:
                progress(count, last)
    w.flush()
    if progress and not (stop is not None and stop.is_set()):
        progress(count, last, done=True)
    return count


def _start_dashboard(url: str, host: str, port: int, log_path: Path) -> subprocess.Popen:
    from spendlog.cli.dashboard import streamlit_command

    argv, env = streamlit_command(host=host, port=port, db_url=url)
    log = open(log_path, "wb")  # the child writes to it until it ends
    try:
        return subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    finally:
        log.close()


def _wait_ready(proc: subprocess.Popen, origin: str, stop: threading.Event, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline and not stop.is_set():
            if proc.poll() is not None:
                return False
            with contextlib.suppress(httpx.HTTPError):
                if client.get(origin + "/_stcore/health").status_code == 200:
                    return True
            stop.wait(0.25)
    return False


def _stop_dashboard(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(5)


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def run_demo(options: DemoOptions) -> int:
    """Run the demo until SIGINT/SIGTERM; returns the exit code (0 after a clean stop)."""
    from spendlog.cli.dashboard import port_free
    from spendlog.fake_upstream import start_fake_upstream
    from spendlog.proxy import start_proxy

    url = options.db_url or demo_db_url()
    resolve_url(url)  # a bad --db fails here, before anything starts
    if not port_free(options.host, options.port):
        raise DemoError(f"port {options.port} on {options.host} is in use; pass --port with a free one")
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    fake = proxy = dashboard = None
    senders = []
    try:
        if options.db_url is None:
            _fresh_demo_db(url)
        existing = database_status(url)["rows"] or 0
        fake = start_fake_upstream(api_key=demo_keys(options.seed)[0])
        proxy = start_proxy(fake.base_url, db_url=url, shutdown_timeout=2)
        log_path = data_dir() / "demo-dashboard.log"
        dashboard = _start_dashboard(url, options.host, options.port, log_path)
        _say(f"database {mask_url(url)}; fake upstream {fake.base_url}; proxy {proxy.base_url}")

        if existing:
            _say(f"the database already holds {existing:,} calls: no backfill, live calls only")
        elif options.days > 0:
            started = time.perf_counter()
            end = datetime.now(timezone.utc)
            n = backfill(url, options.days, per_day=options.per_day, seed=options.seed, end=end, stop=stop,
                         progress=_Progress(options.days, end))
            took = time.perf_counter() - started
            if stop.is_set():
                _say(f"backfill interrupted after {n:,} calls")
            else:
                _say(f"backfilled {n:,} calls over {options.days} days in {took:.1f} s")
                closed = close_past_month(url, options.days, seed=options.seed, end=end)
                if closed:
                    _say(f"closed {closed} and wrote {LATE_RECORDS} late records for it (spendlog close --list)")
                from .budgets import add_demo_budgets

                add_demo_budgets(url)  # three budgets, one near its line (the dashboard's Budgets section)

        origin = f"http://{options.host}:{options.port}"
        if not stop.is_set() and not _wait_ready(dashboard, origin, stop, READY_TIMEOUT):
            if not stop.is_set():
                raise DemoError(f"the dashboard did not start (log {log_path}):\n{_log_tail(log_path)}")
        if not stop.is_set():
            senders = start_live_traffic(hook_base_url=fake.base_url, proxy_base_url=proxy.base_url,
                                         per_minute=options.per_minute, seed=options.seed, db_url=url, stop=stop)
            page = f"{origin}/?live=1"
            print(f"spendlog demo: dashboard at {page}  (live calls: {options.per_minute:g}/min through the hook "
                  f"and the proxy; Ctrl+C stops)", flush=True)
            if options.open_browser:
                with contextlib.suppress(Exception):
                    webbrowser.open(page)
        while not stop.is_set():
            if dashboard.poll() is not None:
                raise DemoError(f"the dashboard stopped (exit code {dashboard.returncode}; log {log_path}):\n"
                                f"{_log_tail(log_path)}")
            stop.wait(0.5)
        _say("stopping")
        return 0
    finally:
        stop.set()
        for sender in senders:
            sender.join(10)
        if proxy is not None:
            proxy.stop(timeout=2)
        if fake is not None:
            fake.stop(timeout=2)
        if dashboard is not None:
            _stop_dashboard(dashboard)
        if not writer.flush(10):
            _say("some records were still queued at exit; they go to the spool and are replayed next time")
        if senders:
            failed = sum(s.failed for s in senders)
            _say(f"sent {sum(s.sent for s in senders):,} live calls" + (f" ({failed:,} failed)" if failed else "")
                 + "; stopped")
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class DemoError(Exception):
    """The demo cannot run (the message is for the user)."""
