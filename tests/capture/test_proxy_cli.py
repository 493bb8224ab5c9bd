"""`spendlog proxy` as a process: banner, serving, SIGTERM/Ctrl+C with requests in flight, flushed records."""

from __future__ import annotations

import signal
import threading
import time

import httpx
import pytest
from fixture_proxy import CHAT, rows


def _slow_call(base_url: str, key: str, latency_ms: int, out: dict) -> None:
    try:
        resp = httpx.post(base_url + "/chat/completions", json=CHAT, timeout=30,
                          headers={"Authorization": f"Bearer {key}", "X-Fake-Latency-Ms": str(latency_ms)})
        out["status"] = resp.status_code
    except httpx.HTTPError as exc:
        out["error"] = exc


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stop_lets_requests_in_flight_finish_and_flushes(fake_upstream, proxy_process, sqlite_url, sig):
    proc = proxy_process("--upstream", fake_upstream.base_url, "--db", sqlite_url)
    assert fake_upstream.base_url in proc.banner and "ledger sqlite:///" in proc.banner
    ok = httpx.post(proc.base_url + "/chat/completions", json=CHAT,
                    headers={"Authorization": f"Bearer {fake_upstream.api_key}"})
    assert ok.status_code == 200
    result: dict = {}
    t = threading.Thread(target=_slow_call, args=(proc.base_url, fake_upstream.api_key, 1500, result))
    t.start()
    time.sleep(0.5)  # the slow call is now waiting on the upstream
    code, out, err = proc.stop(sig)
    t.join(10)
    assert result == {"status": 200}
    assert code == 0, err
    assert "stopping" in out
    assert "Traceback" not in err
    found = rows(sqlite_url, expect=2)
    assert [r.status_code for r in found] == [200, 200]
    with pytest.raises(httpx.ConnectError):
        httpx.get(proc.base_url.replace("/v1", "/healthz"))


@pytest.mark.slow
def test_the_wait_for_requests_in_flight_is_bounded(fake_upstream, proxy_process, sqlite_url):
    proc = proxy_process("--upstream", fake_upstream.base_url, "--db", sqlite_url, "--shutdown-timeout", "1")
    result: dict = {}
    t = threading.Thread(target=_slow_call, args=(proc.base_url, fake_upstream.api_key, 8000, result))
    t.start()
    time.sleep(0.5)
    t0 = time.monotonic()
    code, _, err = proc.stop()
    assert code == 0, err
    assert time.monotonic() - t0 < 6
    t.join(10)
    assert "error" in result  # the client saw the connection end rather than a made-up answer
    [row] = rows(sqlite_url, expect=1)
    assert row.error_type == "cancelled"


def test_help_names_every_option():
    from click.testing import CliRunner

    from spendlog.cli import cli

    result = CliRunner().invoke(cli, ["proxy", "--help"])
    assert result.exit_code == 0
    for option in ("--host", "--port", "--upstream", "--allow-remote", "--max-body-bytes", "--header-timeout", "--db"):
        assert option in result.output
    assert "SPENDLOG_UPSTREAM" in result.output and "SPENDLOG_PROXY_TOKEN" in result.output


def test_upstream_defaults_to_the_environment(monkeypatch):
    from spendlog.proxy import DEFAULT_UPSTREAM, default_upstream

    assert default_upstream() == DEFAULT_UPSTREAM == "https://api.solrouter.io/v1"
    monkeypatch.setenv("SPENDLOG_UPSTREAM", "http://127.0.0.1:9/v1")
    assert default_upstream() == "http://127.0.0.1:9/v1"


def test_port_in_use_is_one_line(fake_upstream, proxy):
    from click.testing import CliRunner

    from spendlog.cli import cli

    result = CliRunner().invoke(cli, ["proxy", "--port", str(proxy.port), "--upstream", fake_upstream.base_url])
    assert result.exit_code == 2
    assert result.stderr.startswith("spendlog: error: cannot listen on 127.0.0.1:") and result.stderr.count("\n") == 1
