"""`spendlog reconcile --from-upstream`: the router's GET /activity one day at a time, its refusals
and failures as one line (exit 2), and the management key never shown, stored or sent elsewhere."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from fixture_proxy import Recorder, json_response
from reconcile_helpers import away_from_midnight, chat, hooked_client, plain_client, reconcile

from spendlog.fake_upstream import new_management_key

ROW = ('{"date":"%s","model":"openai/gpt-4o-mini","requests":1,"usage":0.0000148,"prompt_tokens":15,'
       '"completion_tokens":83,"reasoning_tokens":0}')


@pytest.fixture
def recorder():
    started = []

    def start(respond) -> Recorder:
        r = Recorder(respond)
        started.append(r)
        return r

    yield start
    for r in started:
        r.stop()


def _upstream(base_url: str, key: str | None, *args: str, day: str = "2025-06-03"):
    env = {"SOLROUTER_MANAGEMENT_KEY": key} if key is not None else {}
    return reconcile("--from-upstream", "--upstream", base_url, "--from", day, "--to", day,
                     "--db", os.environ["SPENDLOG_DB_URL"], *args, env=env)


@pytest.fixture
def ledger():
    """The test's default ledger, with one call in it (the command reads an existing ledger)."""
    from helpers import make_record

    from spendlog.db.engine import make_engine
    from spendlog.db.migrate import upgrade
    from spendlog.db.store import insert_records

    engine = make_engine(os.environ["SPENDLOG_DB_URL"])
    upgrade(engine)
    with engine.begin() as conn:
        insert_records(conn, [make_record(created_at=datetime(2025, 6, 3, 12, tzinfo=timezone.utc))])
    engine.dispose()


def _one_line(code: int, out: str, err: str, needle: str, key: str | None = None) -> None:
    assert (code, out) == (2, ""), err
    assert len(err.splitlines()) == 1 and err.startswith("spendlog: error: ") and needle in err, err
    if key:
        assert key not in err


def test_a_missing_key_is_one_line(ledger, fake_upstream, monkeypatch):
    monkeypatch.delenv("SOLROUTER_MANAGEMENT_KEY", raising=False)
    _one_line(*_upstream(fake_upstream.base_url, None), "needs the router's management key in $SOLROUTER_MANAGEMENT_KEY")
    _one_line(*_upstream(fake_upstream.base_url, "  "), "needs the router's management key")


def test_refusals_are_one_line_without_the_key(ledger, fake_upstream, fake_upstream_factory):
    strict = fake_upstream_factory(management_key=new_management_key())
    wrong = new_management_key()
    _one_line(*_upstream(strict.base_url, wrong), "the router refused the management key (401) on GET "
              "/v1/activity?date=2025-06-03: Missing or invalid management key", wrong)
    _one_line(*_upstream(fake_upstream.base_url, fake_upstream.api_key), "refused the management key (403)",
              fake_upstream.api_key)


@pytest.mark.parametrize("status,body,needle", [
    (502, b"<html><body>Bad Gateway</body></html>", "the router failed (502) on GET /v1/activity?date=2025-06-03: "
     "<html><body>Bad Gateway</body></html>"),
    (500, {"error": {"message": "boom"}}, "the router failed (500) on GET /v1/activity?date=2025-06-03: boom"),
    (429, {"error": {"message": "slow down"}}, "the router is rate limiting (429)"),
    (404, {"error": {"message": "no such route"}}, "the router answered 404"),
    (302, b"", "the router answered 302"),  # redirects are not followed: the key goes nowhere else
])
def test_router_failures_are_one_line(ledger, recorder, status, body, needle):
    key = new_management_key()
    if isinstance(body, dict):
        server = recorder(lambda req: json_response(status, body))
    else:
        server = recorder(lambda req: (f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n"
                                       "Location: http://127.0.0.1:9/elsewhere\r\nConnection: close\r\n\r\n").encode() + body)
    _one_line(*_upstream(server.origin + "/v1", key), needle, key)
    assert len(server.hits) == 1 and f"Bearer {key}".encode() in server.hits[0]


def test_a_router_that_echoes_the_key_has_it_masked(ledger, recorder):
    key = new_management_key()
    message = f"key {key} is revoked (Bearer {key}); did you mean {key[:-3]}?"
    server = recorder(lambda req: json_response(401, {"error": {"message": message}}))
    code, out, err = _upstream(server.origin + "/v1", key)
    _one_line(code, out, err, "key *** is revoked (Bearer ***); did you mean sr_***?", key)
    assert key[8:-3] not in err


def test_malformed_answers_and_a_router_that_ignores_the_date(ledger, recorder):
    key = new_management_key()
    truncated = b'{"data":[{"date":"2025-06-03","model":"openai/gpt-4o-mini","req'
    server = recorder(lambda req: (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                                   + str(len(truncated)).encode() + b"\r\nConnection: close\r\n\r\n" + truncated))
    _one_line(*_upstream(server.origin + "/v1", key), "the router's answer to GET /v1/activity?date=2025-06-03: "
              "data[0]", key)
    other_day = recorder(lambda req: json_response(200, {"data": [{"date": "2025-06-02", "model": "m", "requests": 1,
                                                                   "usage": 1, "prompt_tokens": 1,
                                                                   "completion_tokens": 1}]}))
    _one_line(*_upstream(other_day.origin + "/v1", key), "with rows of other days: it does not filter by date", key)


def test_a_silent_router_times_out(ledger):
    with socket.socket() as listener:  # accepts connections (the kernel's backlog) and never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        _one_line(*_upstream(f"http://127.0.0.1:{port}/v1", new_management_key(), "--timeout", "0.3"),
                  "the router at 127.0.0.1 did not answer GET /v1/activity?date=2025-06-03 within 0.3 s")
    _one_line(*_upstream(f"http://127.0.0.1:{port}/v1", new_management_key()), "cannot read GET /v1/activity")


@pytest.mark.parametrize("url,needle", [
    ("http://192.0.2.1/v1", "use https:// (the management key would cross the network in clear text)"),
    ("https://user:pw@api.solrouter.io/v1", "--upstream must not hold credentials"),
    ("ftp://127.0.0.1/v1", "use an http(s):// URL"),
    ("https://api.solrouter.io/v1?x=1", "without a query"),
])
def test_unsafe_upstream_urls_are_refused_before_any_request(ledger, url, needle):
    _one_line(*_upstream(url, new_management_key()), needle)


def test_one_request_per_day_and_the_default_window(ledger, recorder):
    key = new_management_key()
    server = recorder(lambda req: json_response(200, {"data": [] if b"date=2025-06-03" not in req else
                                                      [json.loads(ROW % "2025-06-03")]}))
    code, out, err = reconcile("--from-upstream", "--upstream", server.origin + "/v1", "--from", "2025-06-01",
                               "--to", "2025-06-05", "--db", os.environ["SPENDLOG_DB_URL"],
                               env={"SOLROUTER_MANAGEMENT_KEY": key})
    assert (code, err) == (0, ""), out
    days = [parse_qs(urlsplit(h.split(b" ")[1].decode()).query)["date"][0] for h in server.hits]
    assert days == ["2025-06-01", "2025-06-02", "2025-06-03", "2025-06-04", "2025-06-05"]
    server.hits.clear()
    code, out, err = reconcile("--from-upstream", "--upstream", server.origin + "/v1",
                               "--db", os.environ["SPENDLOG_DB_URL"], env={"SOLROUTER_MANAGEMENT_KEY": key})
    today = datetime.now(timezone.utc).date()
    asked = [date.fromisoformat(parse_qs(urlsplit(h.split(b" ")[1].decode()).query)["date"][0]) for h in server.hits]
    assert asked == [today - timedelta(days=n) for n in range(30, 0, -1)]  # the last 30 completed UTC days
    assert (code, err) == (0, "") and "All 0 day x model rows match" in out  # 2025-06-03 is long gone
    _one_line(*reconcile("--from-upstream", "--upstream", server.origin + "/v1", "--from", today.isoformat(),
                         "--db", os.environ["SPENDLOG_DB_URL"], env={"SOLROUTER_MANAGEMENT_KEY": key}),
              f"--from {today} is after --to {today - timedelta(days=1)} (yesterday, the default)")


def test_the_key_is_never_printed_stored_or_put_on_the_command_line(fake_upstream, tmp_path, sqlite_url):
    day = away_from_midnight()
    chat(hooked_client(fake_upstream.base_url, fake_upstream.api_key, sqlite_url), "openai/gpt-4o-mini")
    chat(plain_client(fake_upstream.base_url, fake_upstream.api_key), "openai/gpt-4o")
    key = fake_upstream.management_key
    env = {**os.environ, "SOLROUTER_MANAGEMENT_KEY": key}
    out_file = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "spendlog", "reconcile", "--from-upstream", "--upstream", fake_upstream.base_url,
           "--from", day, "--to", day, "--db", sqlite_url]
    runs = [subprocess.run([*cmd, *extra], env=env, capture_output=True, text=True, timeout=60)
            for extra in ([], ["--format", "json", "-o", str(out_file)], ["--format", "csv", "--all"])]
    bad = subprocess.run([*cmd[:6], "http://127.0.0.1:9/v1", *cmd[7:]], env=env, capture_output=True, text=True,
                         timeout=60)
    assert [r.returncode for r in runs] == [1, 1, 1] and bad.returncode == 2
    assert "missing_in_ledger" in runs[0].stdout and out_file.stat().st_size > 0
    for r in [*runs, bad]:
        assert key not in r.stdout and key not in r.stderr
        assert key not in " ".join(r.args)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]  # the ledger, its WAL, the data dir, the report
    assert Path(sqlite_url.removeprefix("sqlite:///")) in files and out_file in files
    assert [p for p in files if key.encode() in p.read_bytes()] == []
