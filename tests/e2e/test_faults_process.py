"""The app's process ends while calls are being recorded (issue 8, faults 5 and 6): SIGINT, SIGTERM
and kill -9 mid-traffic, a script that makes one call and exits at once, and scripts that run
every call in a fresh ``asyncio.run()``. Apps are real child processes calling through the hook
(``tests/fault_app.py`` for the signal tests; the official SDK over real HTTP for the others).
"""

from __future__ import annotations

import signal
import textwrap
import time
from pathlib import Path

import pytest

from fault_app import AppProcess, ledger
from helpers import run_python
from fixture_proxy import rows
from spendlog.fake_upstream import expected_usage

pytestmark = pytest.mark.timeout(300)

TESTS = str(Path(__file__).parent.parent)
MESSAGES = [{"role": "user", "content": "one call then exit"}]


def _calls_stored(url: str, app: str = "a") -> list[int]:
    return ledger(url)["calls"].get(app, [])


# -- 5: signals mid-traffic ----------------------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_mid_traffic_flushes_every_record_handed_over(sqlite_url, sig):
    """Every call that returned before the signal was sent (its record handed to the writer) is in
    the ledger once the app has exited, within the exit wait (5 s)."""
    app = AppProcess("--calls", "1000000", "--app", "a", "--delay-ms", "1", db_url=sqlite_url)
    app.wait_progress(300)
    time.sleep(0.05)
    handed_over = app.signal(sig)
    t0 = time.monotonic()
    rc = app.finish(timeout=30)
    took = time.monotonic() - t0
    assert rc != 0  # the signal stopped it (KeyboardInterrupt / terminated)
    assert took < 5 + 3, f"the app took {took:.1f} s to exit"
    stored = _calls_stored(sqlite_url)
    missing = sorted(set(range(handed_over)) - set(stored))
    assert not missing, (f"{signal.Signals(sig).name}: {len(missing)} of {handed_over} records handed to the writer "
                         f"were lost (calls {missing[0]}..{missing[-1]})")
    assert len(stored) <= handed_over + 2  # at most the calls in flight when the signal landed


def test_app_that_exits_on_sigterm_itself_flushes_every_record(sqlite_url, tmp_path):
    """An app with the usual SIGTERM handler (sys.exit) runs the atexit flush."""
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(f"""
        import signal, sys
        sys.path.insert(0, {TESTS!r})
        signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
        import fault_app
        sys.exit(fault_app.main())
    """))
    app = AppProcess("--calls", "1000000", "--app", "a", "--delay-ms", "1", db_url=sqlite_url, script=script)
    app.wait_progress(300)
    handed_over = app.signal(signal.SIGTERM)
    assert app.finish(timeout=30) == 143
    stored = _calls_stored(sqlite_url)
    assert set(range(handed_over)) <= set(stored)


def test_kill_9_loses_at_most_the_last_moments_and_never_corrupts(sqlite_url):
    app = AppProcess("--calls", "1000000", "--app", "a", "--delay-ms", "1", db_url=sqlite_url)
    app.wait_progress(300)
    handed_a_second_before = app.progress
    time.sleep(1.0)
    handed_over = app.signal(signal.SIGKILL)
    assert app.finish(timeout=30) == -signal.SIGKILL
    book = ledger(sqlite_url)  # no id or call twice, rollup = rows
    assert book["integrity"] == "ok"
    stored = book["calls"].get("a", [])
    assert stored == list(range(len(stored))), "the stored calls are not a prefix: a batch was torn"
    assert handed_a_second_before <= len(stored) <= handed_over + 1
    # the ledger is healthy for the next process
    AppProcess("--calls", "10", "--app", "after", "--flush", db_url=sqlite_url).finish(timeout=60)
    after = ledger(sqlite_url)
    assert after["calls"]["after"] == list(range(10)) and after["integrity"] == "ok"
    print(f"\nkill -9: {handed_over} calls handed over, {len(stored)} stored, {handed_over - len(stored)} lost")


# -- 6: short-lived scripts and event loops ----------------------------------------------------------

ONE_CALL = """
import httpx2, openai, sys
from spendlog.transport import LoggingTransport
client = openai.OpenAI(base_url={base!r}, api_key={key!r}, max_retries=0,
                       http_client=httpx2.Client(transport=LoggingTransport(httpx2.HTTPTransport())))
r = client.chat.completions.create(model="openai/gpt-4o-mini", messages={messages!r}, stream={stream})
if {stream}:
    r = list(r)
"""


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_script_with_one_call_that_exits_at_once_leaves_its_record(fake_upstream, stream):
    result = run_python(ONE_CALL.format(base=fake_upstream.base_url, key=fake_upstream.api_key,
                                        messages=MESSAGES, stream=stream))
    assert result.returncode == 0, result.stderr
    [row] = rows(expect=1)
    expected = expected_usage("openai/gpt-4o-mini", {"model": "openai/gpt-4o-mini", "messages": MESSAGES,
                                                     "stream": stream})
    assert (row.prompt_tokens, row.completion_tokens, row.cost_usd) == (
        expected["prompt_tokens"], expected["completion_tokens"], expected["cost"])
    assert row.error_type is None and row.stream is stream


FRESH_LOOPS = """
import asyncio, httpx2, openai
from spendlog.transport import AsyncLoggingTransport

def client():
    transport = httpx2.AsyncHTTPTransport()
    if {hooked}:
        transport = AsyncLoggingTransport(transport)
    return openai.AsyncOpenAI(base_url={base!r}, api_key={key!r}, max_retries=0,
                              http_client=httpx2.AsyncClient(transport=transport))

shared = client() if {shared} else None

async def one(i):
    c = shared or client()
    if i % 2:
        s = await c.chat.completions.create(model="openai/gpt-4o-mini", messages={messages!r}, stream=True)
        return "stream:" + "".join([x.choices[0].delta.content or "" async for x in s if x.choices])
    r = await c.chat.completions.create(model="openai/gpt-4o-mini", messages={messages!r})
    return "whole:" + r.choices[0].message.content

for i in range({n}):
    try:
        print(asyncio.run(one(i)))
    except Exception as exc:
        print("error:", type(exc).__name__, exc)
"""


@pytest.mark.parametrize("shared", [False, True], ids=["client-per-run", "client-shared-across-runs"])
def test_each_call_in_a_fresh_asyncio_run_is_recorded(fake_upstream, shared):
    n = 12

    def run(hooked):
        result = run_python(FRESH_LOOPS.format(base=fake_upstream.base_url, key=fake_upstream.api_key,
                                               messages=MESSAGES, hooked=hooked, shared=shared, n=n))
        assert result.returncode == 0, result.stderr
        return result.stdout.splitlines()

    plain = run(False)
    hooked = run(True)
    assert hooked == plain  # the app sees the same answers (or the same errors) with the hook
    reached = [line for line in hooked if not line.startswith("error:")]
    recs = rows(expect=n)
    assert len(recs) == n, f"{len(recs)} records for {n} calls ({len(reached)} answered)"
    answered = [r for r in recs if r.error_type is None]
    assert len(answered) == len(reached)
