"""`spendlog proxy --workers N`: N processes on one port (SO_REUSEPORT), each with its own writer.

The key proxy tests run again here with ``proxy_workers`` = 2 (the ``proxy`` and ``proxy_factory``
fixtures then start ``ProxyWorkers``): streams, attribution, SSRF refusals, 413, 502, cancelled
streams, health. Then: both workers take connections and ``/healthz`` names them, a SIGTERM to
the supervisor under load loses no record, and ``--workers`` mistakes are one line, exit 2.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest
from fixture_proxy import CHAT, rows
from test_proxy_safety import other_host  # noqa: F401 - the fixture the rerun safety tests use
from test_proxy import (test_attribution_headers_are_recorded_and_not_forwarded,  # noqa: F401 - rerun here
                        test_body_over_the_limit_gets_413_and_is_not_forwarded,
                        test_client_leaving_mid_stream_gives_one_cancelled_record,
                        test_curl_gets_the_same_bytes_and_attribution_is_recorded,
                        test_healthz_describes_upstream_and_writer, test_sdk_plain_call_is_unchanged_and_recorded_exactly,
                        test_sdk_stream_gets_the_direct_chunks_without_a_usage_chunk,
                        test_sdk_stream_that_asked_for_usage_gets_it, test_stream_cut_by_upstream_is_cut_for_the_client_and_recorded,
                        test_upstream_down_gives_502_and_a_record)
from test_proxy_safety import (test_absolute_form_targets_are_refused,  # noqa: F401 - rerun here
                               test_connect_tunnels_are_refused, test_host_and_forwarding_headers_do_not_choose_the_host,
                               test_path_tricks_are_refused, test_token_is_required_when_configured_and_never_forwarded)

from spendlog.proxy.workers import parse_workers

pytestmark = pytest.mark.slow


@pytest.fixture
def proxy_workers() -> int:
    return 2


def test_both_workers_take_connections_and_health_names_them(proxy):
    seen: dict[int, dict] = {}
    for _ in range(200):  # new connections; the kernel spreads them over the two sockets
        health = httpx.get(proxy.url("/healthz")).json()
        seen[health["worker"]["pid"]] = health
        if len(seen) == 2:
            break
    assert len(seen) == 2
    assert all(os.getpid() != pid for pid in seen)  # served by the worker processes, not this one
    last = health
    assert last["worker_count"] == 2
    assert {w["pid"] for w in last["workers"]} == set(seen)
    assert [w["index"] for w in last["workers"]] == [0, 1]
    assert sum(w["requests"] for w in last["workers"]) >= 2
    assert last["writer"]["state"] == "ok"


def test_sigterm_under_load_loses_no_record(proxy_process, fake_upstream):
    fake_upstream.state.latency_ms = 100  # requests are in flight when the signal comes
    proc = proxy_process("--workers", "2", "--upstream", fake_upstream.base_url, "--shutdown-timeout", "20")
    answered, failed = [], []
    lock = threading.Lock()
    go = threading.Event()

    def client() -> None:
        with httpx.Client(timeout=30) as http:
            while True:
                try:
                    resp = http.post(proc.base_url + "/chat/completions", json=CHAT,
                                     headers={"Authorization": f"Bearer {fake_upstream.api_key}"})
                except httpx.HTTPError:
                    with lock:
                        failed.append(1)
                    return  # the proxy has stopped accepting
                with lock:
                    (answered if resp.status_code == 200 and resp.json()["usage"] else failed).append(resp.status_code)
                if go.is_set() and len(answered) > 400:
                    return

    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    while len(answered) < 40:  # load first
        threads[0].join(0.05)
    go.set()
    code, out, _err = proc.stop(signal.SIGTERM, timeout=60)
    for t in threads:
        t.join(60)
    assert code == 0, out
    assert "stopping 2 workers" in out
    forwarded = [r for r in fake_upstream.requests if r.path == "/v1/chat/completions"]
    assert len(answered) >= 40 and [c for c in failed if c != 1] == []  # stopped calls fail to connect only
    found = rows(expect=len(answered), timeout=30)
    assert len(found) == len(answered) == len(forwarded)  # every call forwarded was answered and recorded
    assert all(r.status_code == 200 for r in found)


def test_a_worker_that_dies_is_replaced(proxy_process, fake_upstream):
    proc = proxy_process("--workers", "2", "--upstream", fake_upstream.base_url)
    first = [int(p) for p in proc.banner.rsplit("pids ", 1)[1].rstrip(")\n").split()]
    assert len(first) == 2
    os.kill(first[0], signal.SIGKILL)
    deadline = time.monotonic() + 90
    while True:  # the supervisor looks every 0.5 s; the new worker needs its imports first
        pids = {w["pid"] for w in httpx.get(proc.origin + "/healthz", timeout=10).json()["workers"]}
        if first[0] not in pids and len(pids) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert first[1] in pids and first[0] not in pids and len(pids) == 2
    code, out, _err = proc.stop(signal.SIGTERM, timeout=60)
    assert code == 0
    assert f"worker 0 (pid {first[0]}) exited with code -9; starting another" in out


@pytest.mark.parametrize(("value", "says"), [
    ("0", "--workers must be at least 1, got 0"),
    ("many", "--workers must be a number of processes or auto, got 'many'"),
])
def test_bad_workers_is_one_line_exit_2(value, says):
    out = subprocess.run([sys.executable, "-m", "spendlog", "proxy", "--workers", value], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [f"spendlog: error: {says}"]


def test_auto_is_the_cores():
    assert parse_workers("auto") == os.cpu_count()
    assert parse_workers("3") == 3
