"""Issue 12, finding 3: every wait on a lock or the database is bounded.

Another process frozen while it holds ``<db>.write.lock`` or the spool's lock (SIGSTOP: what
Ctrl+Z and ``docker pause`` do) must not hang the app's exit past ``SPENDLOG_EXIT_TIMEOUT``, nor
block ``submit()``; its records are spooled and replayed once the other process goes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from helpers import make_record, spool_line, stored, wait_for
from spendlog.db.engine import make_engine, resolve_url, write_lock_path
from spendlog.db.migrate import upgrade
from spendlog.db.writer import Writer, dropped_count, spool_path, spooled_count

TESTS = str(Path(__file__).parent.parent)

HOLDER = """
import contextlib, sys, time
from pathlib import Path
from spendlog.db.engine import file_lock
with contextlib.ExitStack() as stack:
    for p in sys.argv[1:]:
        stack.enter_context(file_lock(Path(p)))
    print("locked", flush=True)
    time.sleep(600)
"""


@pytest.fixture
def frozen_holder():
    """``freeze(*paths)``: a process takes an flock on each path and is then SIGSTOPped; it is
    resumed and killed at the end of the test (or by ``thaw()``)."""
    procs: list[subprocess.Popen] = []

    def freeze(*paths: Path) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", HOLDER, *map(str, paths)], stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "locked"
        proc.send_signal(signal.SIGSTOP)
        return proc

    yield freeze
    for proc in procs:
        thaw(proc)


def thaw(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGCONT)
        proc.kill()
        proc.wait(10)


EXIT_APP = """
import sys, time
sys.path.insert(0, {tests!r})
from helpers import make_record
from spendlog.db.writer import get_writer
w = get_writer({url!r})
w.submit(make_record(app="first"))
assert w.flush(30)
print("ready", flush=True)
sys.stdin.readline()
time.sleep(0.5)  # the idle writer sees the spool and replays it: it waits for the write lock now
for i in range(20):
    w.submit(make_record(app="late"))
print("submitted", flush=True)
"""


def test_a_frozen_process_holding_the_write_lock_never_holds_up_the_exit(sqlite_url, frozen_holder):
    """Finding 3: the replay waited on the flock without a timeout while holding the spool lock,
    and the exit then waited on the spool lock past SPENDLOG_EXIT_TIMEOUT (still hung after 20 s).
    Now the app exits within the timeout (plus a margin), its records spooled, and they are
    replayed once the frozen process is gone."""
    url = resolve_url(sqlite_url)
    exit_timeout = 2.0
    env = {**os.environ, "SPENDLOG_EXIT_TIMEOUT": str(exit_timeout), "SPENDLOG_LOCK_TIMEOUT": "60"}
    app = subprocess.Popen([sys.executable, "-c", EXIT_APP.format(tests=TESTS, url=sqlite_url)], env=env,
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert app.stdout.readline().strip() == "ready", app.stderr.read()
        holder = frozen_holder(write_lock_path(url))
        seeded = [make_record(app="seeded") for _ in range(5)]  # left by an earlier outage
        spool_path(url).write_text("".join(spool_line(r) for r in seeded))
        started = time.monotonic()
        app.stdin.write("go\n")
        app.stdin.flush()
        try:
            app.wait(timeout=exit_timeout + 0.5 + 12)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the app was still running {time.monotonic() - started:.1f} s after its last call")
        elapsed = time.monotonic() - started
    finally:
        if app.poll() is None:
            app.kill()
            app.wait(10)
    err = app.stderr.read()
    assert app.returncode == 0, err
    print(f"\nexit {elapsed:.1f} s after the go (0.5 s sleep + {exit_timeout} s exit wait)")
    assert elapsed < exit_timeout + 0.5 + 3, f"the exit took {elapsed:.1f} s"
    assert spooled_count(url) >= 20
    thaw(holder)
    writer = Writer(sqlite_url)
    writer.submit(make_record(app="final"))
    assert writer.flush(30)
    wait_for(lambda: spooled_count(url) == 0, what="the replay of what the app spooled")
    apps: dict[str, int] = {}
    for row in stored(sqlite_url).values():
        apps[row["app"]] = apps.get(row["app"], 0) + 1
    assert apps == {"first": 1, "seeded": 5, "late": 20, "final": 1}
    writer.close()


def test_submit_never_blocks_even_with_a_full_queue_and_a_frozen_spool(sqlite_url, frozen_holder, monkeypatch):
    """Finding 3: with a full queue, ``submit()`` spooled on the caller's thread, under the spool
    lock, with fsync; a frozen process holding that lock blocked the caller's own call. Now the
    overflow is spooled by a thread of the writer's (into a file of its own past the frozen lock)."""
    monkeypatch.setenv("SPENDLOG_LOCK_TIMEOUT", "1")
    url = resolve_url(sqlite_url)
    writer = Writer(sqlite_url, max_pending=10)
    writer.submit(make_record())
    assert writer.flush(30)  # the schema exists and the writer thread runs
    holder = frozen_holder(write_lock_path(url), spool_path(url).with_suffix(".lock"))
    records = [make_record() for _ in range(200)]
    caller = threading.Thread(target=lambda: [writer.submit(r) for r in records], daemon=True)
    caller.start()
    caller.join(10)
    blocked = caller.is_alive()
    if not blocked:
        assert writer.flush(30)  # everything handed over is written or spooled: the lock holder is frozen
    thaw(holder)
    caller.join(30)
    assert not blocked, "submit() blocked the caller"
    wait_for(lambda: spooled_count(url) == 0 and writer.pending == 0, what="the spool draining")
    assert writer.flush(30)
    rows = stored(sqlite_url)
    missing = [r["id"] for r in records if r["id"] not in rows]
    assert not missing, f"{len(missing)} of 200 records missing"
    assert dropped_count(url) == 0 and writer.status()["dropped"] == 0
    writer.close()


def test_postgres_lock_waits_are_bounded(pg_url, monkeypatch):
    """A transaction elsewhere holding the rollup table: the writer gives up after
    SPENDLOG_LOCK_TIMEOUT (PostgreSQL's lock_timeout on its connections), spools, and replays
    once the lock is gone. Before, it waited as long as the other transaction lasted."""
    other = make_engine(pg_url, pool=False)
    upgrade(other)  # first, with no bound: tests elsewhere may be migrating (one advisory lock per database)
    monkeypatch.setenv("SPENDLOG_LOCK_TIMEOUT", "1")
    writer = Writer(pg_url)
    writer.submit(make_record())
    assert writer.flush(30)
    conn = other.connect()
    trans = conn.begin()
    conn.execute(text("LOCK TABLE rollup_hourly IN ACCESS EXCLUSIVE MODE"))
    try:
        records = [make_record() for _ in range(5)]
        for r in records:
            writer.submit(r)
        bounded = writer.flush(15)
        spooled = spooled_count(writer.url)
    finally:
        trans.rollback()
        conn.close()
        other.dispose()
    assert bounded, "the writer waited on PostgreSQL's lock without a bound"
    assert spooled == 5
    wait_for(lambda: spooled_count(writer.url) == 0, what="the replay")
    assert {r["id"] for r in records} <= set(stored(pg_url))
    writer.close()


def test_a_lock_wait_given_up_never_keeps_the_lock_when_it_comes(tmp_path):
    """``flock_within`` waits in the kernel's queue on a helper thread; a caller that gave up
    must not end up holding the lock once the holder lets go."""
    import fcntl

    from spendlog.db.engine import LockTimeout, flock_within

    path = tmp_path / "x.lock"
    holder = os.open(path, os.O_RDWR | os.O_CREAT)
    fcntl.flock(holder, fcntl.LOCK_EX)
    gave_up = os.open(path, os.O_RDWR)
    started = time.monotonic()
    with pytest.raises(LockTimeout):
        flock_within(gave_up, 0.3)
    assert time.monotonic() - started < 3
    os.close(gave_up)
    fcntl.flock(holder, fcntl.LOCK_UN)  # the helper still waiting gets it now, and must let it go
    later = os.open(path, os.O_RDWR)
    flock_within(later, 10)
    fcntl.flock(later, fcntl.LOCK_UN)
    os.close(later)
    os.close(holder)


def test_a_forked_child_never_keeps_the_write_lock_its_parent_let_go(tmp_path):
    """A fork while the writer holds ``<db>.write.lock``: the child inherits the descriptor.
    Closing it released the lock only once every copy was closed, so every writer of the ledger
    waited for the child to exit. The lock is now let go explicitly."""
    import fcntl

    from spendlog.db.engine import file_lock

    path = tmp_path / "ledger.db.write.lock"
    read_end, write_end = os.pipe()
    with file_lock(path):
        pid = os.fork()
        if pid == 0:  # the child lives on, holding its copy of the descriptor, until told to go
            os.close(write_end)
            os.read(read_end, 1)
            os._exit(0)
    try:
        probe = os.open(path, os.O_RDWR)
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
            free = True
        except BlockingIOError:
            free = False
        os.close(probe)
    finally:
        os.close(write_end)
        os.waitpid(pid, 0)
        os.close(read_end)
    assert free, "the lock stayed held by the forked child's copy of the descriptor"
