"""Secrets and hostile values (issue 8, security).

1. Keys sent every way a client sends them (``Authorization: Bearer``, ``api-key``, ``x-api-key``,
   ``?key=``), on success, 401 and 429 paths, through the hook and through the proxy (a real
   ``spendlog proxy`` process), and echoed back by an upstream in its error message, never appear
   in: the database files (ledger, WAL, spool), spendlog's logs (caplog, the proxy's stdout and
   stderr: it has no other access log), the CSV / JSON lines / FOCUS exports and ``summary``,
   ``spendlog db status``, or anything the dashboard renders (every element AppTest sees,
   dataframes included, searched as bytes).
2. Hostile attribution values (formula prefixes in app, user, tags and model names, sent as
   request headers through the proxy) come out of every CSV export neutralised.

Covered elsewhere, cited in docs/reliability.md: SSRF and redirects (test_proxy_safety.py), the
bind and token rules (test_proxy_safety.py), bound dashboard filters (test_dashboard.py
::test_injection_like_url_values_match_nothing, test_queries.py, test_dashboard_insights.py),
every formula prefix and the header row (test_export.py::test_every_injection_prefix_is_neutralised,
::test_neutralise_and_the_header_row).
"""

from __future__ import annotations

import base64
import csv
import io
import json
import logging
import secrets
from pathlib import Path

import httpx
import httpx2
import openai
import pytest
from click.testing import CliRunner
from fixture_proxy import Recorder, json_response, rows
from streamlit.testing.v1 import AppTest

import spendlog
from spendlog.cli import cli
from spendlog.transport import LoggingTransport

pytestmark = pytest.mark.timeout(300)

APP = Path(__file__).resolve().parents[2] / "dashboard" / "app.py"
MESSAGES = [{"role": "user", "content": "keep my keys safe"}]
# libraries of the *app* that log their own request lines (httpx logs URLs with their query at INFO):
# what they print is the app's business, not spendlog's
APP_LIBRARY_LOGGERS = ("httpx", "httpcore", "httpx2", "httpcore2", "openai")


def _keys() -> dict[str, str]:
    return {
        "bearer": "sr_live_" + secrets.token_hex(16),               # SolRouter style, Authorization
        "api-key": secrets.token_hex(16),                           # Azure style, api-key header
        "x-api-key": "sk-ant-api03-" + secrets.token_urlsafe(30),  # Anthropic style, x-api-key
        "query": "AIzaSy" + secrets.token_urlsafe(25)[:33],         # Google style, ?key=
        "bad-bearer": "sk-proj-" + secrets.token_urlsafe(30),       # refused by the upstream (401)
    }


def _fragments(keys: dict[str, str]) -> dict[str, bytes]:
    """Each key, and a middle part of it long enough to identify it (the hint keeps only the
    prefix and the last 4 characters)."""
    out = {}
    for name, key in keys.items():
        out[name] = key.encode()
        out[f"{name} (middle)"] = key[len(key) // 4: -4].encode()
    return out


def _leaks(blob: bytes | str, keys: dict[str, str]) -> list[str]:
    data = blob.encode() if isinstance(blob, str) else blob
    return [name for name, frag in _fragments(keys).items() if frag in data]


# -- traffic ----------------------------------------------------------------------------------------

def _calls(base_url: str, keys: dict[str, str], *, hooked: bool) -> list[int]:
    """Every way of sending a key, on success, 401 and 429 paths. Returns the statuses seen."""
    def client(**kw):
        inner = httpx2.HTTPTransport()
        return httpx2.Client(transport=LoggingTransport(inner) if hooked else inner, **kw)

    statuses = []
    sdk = openai.OpenAI(base_url=base_url, api_key=keys["bearer"], max_retries=0,
                        default_headers={"api-key": keys["api-key"], "x-api-key": keys["x-api-key"]},
                        default_query={"key": keys["query"]}, http_client=client())
    for model, stream in (("openai/gpt-4o-mini", False), ("openai/gpt-4o-mini", True), ("fake/error-429", False)):
        try:
            result = sdk.chat.completions.create(model=model, messages=MESSAGES, stream=stream)
            if stream:
                list(result)
            statuses.append(200)
        except openai.APIStatusError as exc:
            statuses.append(exc.status_code)
    plain = client()
    body = {"model": "openai/gpt-4o-mini", "messages": MESSAGES}
    for headers, query in (({"api-key": keys["api-key"]}, {}), ({"x-api-key": keys["x-api-key"]}, {}),
                           ({}, {"key": keys["query"]}), ({"Authorization": f"Bearer {keys['bad-bearer']}"}, {}),
                           ({"Authorization": keys["bearer"]}, {})):  # no scheme: still a secret
        r = plain.post(base_url + "/chat/completions", json=body, headers=headers, params=query)
        statuses.append(r.status_code)
    return statuses


def _echo(request_head: bytes) -> bytes:
    """An upstream that repeats the whole request (line and headers) in its error message."""
    return json_response(401, {"error": {"message": "Unauthorized request: " + request_head.decode("latin-1"),
                                         "type": "invalid_request_error"}})


# -- sinks --------------------------------------------------------------------------------------------

def _walk(node):
    yield node
    for child in getattr(node, "children", {}).values():
        yield from _walk(child)


def _dashboard_bytes(monkeypatch, params: dict) -> bytes:
    at = AppTest.from_file(str(APP), default_timeout=90)
    at.query_params.update(params)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return b"".join(n.proto.SerializeToString() for n in _walk(at._tree) if getattr(n, "proto", None) is not None)


def _cli(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result.output


@pytest.mark.slow
def test_keys_never_appear_in_the_ledger_logs_exports_proxy_output_or_dashboard(
        fake_upstream, proxy_process, monkeypatch, caplog, _isolated_data_dir):
    caplog.set_level(logging.DEBUG)
    keys = _keys()
    statuses = {}
    # the hook, in this process
    statuses["hook"] = _calls(fake_upstream.base_url, keys, hooked=True)
    echo = Recorder(_echo)
    try:
        statuses["hook, echoing upstream"] = _calls(echo.origin + "/v1", keys, hooked=True)
        # the proxy, as the user runs it
        proxy = proxy_process("--upstream", fake_upstream.base_url, "--shutdown-timeout", "2")
        echo_proxy = proxy_process("--upstream", echo.origin + "/v1", "--shutdown-timeout", "2")
        try:
            statuses["proxy"] = _calls(proxy.base_url, keys, hooked=False)
            statuses["proxy, echoing upstream"] = _calls(echo_proxy.base_url, keys, hooked=False)
        finally:
            proxy_output = "".join(p.banner + "".join(p.stop()[1:]) for p in (proxy, echo_proxy))
    finally:
        echo.stop()
    assert statuses["hook"] == statuses["proxy"] == [200, 200, 429, 401, 401, 401, 401, 401]
    assert set(statuses["hook, echoing upstream"]) == set(statuses["proxy, echoing upstream"]) == {401}
    assert spendlog.flush(15)
    recorded = rows(expect=32, timeout=20)
    assert len(recorded) == 32  # 8 calls x (hook, hook to echo, proxy, proxy to echo)
    assert any("Unauthorized request" in (r.error_message or "") for r in recorded)  # the echo was recorded
    assert {r.api_key_hint for r in recorded} >= {"sr_..." + keys["bearer"][-4:]}

    leaks: dict[str, list[str]] = {}

    def check(where: str, blob) -> None:
        found = _leaks(blob, keys)
        if found:
            leaks[where] = found

    for path in sorted(Path(_isolated_data_dir).rglob("*")):  # ledger, WAL, spool, counters
        if path.is_file():
            check(f"file {path.name}", path.read_bytes())
    check("spendlog's log records", "\n".join(
        f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records
        if not r.name.startswith(APP_LIBRARY_LOGGERS)))
    check("proxy stdout/stderr", proxy_output)
    for fmt in ("csv", "jsonl", "focus"):
        check(f"export {fmt} per call", _cli("export", "--by", "call", "--format", fmt))
    check("export csv by key", _cli("export", "--by", "key,app,user,model"))
    check("export jsonl by key", _cli("export", "--by", "day,key", "--format", "jsonl"))
    check("summary", _cli("summary", "--by", "model,key"))
    check("db status", _cli("db", "status"))
    check("dashboard", _dashboard_bytes(monkeypatch, {}))
    check("dashboard, errors only", _dashboard_bytes(monkeypatch, {"status": "errors"}))
    assert not leaks, f"keys found in: {leaks}"


# -- hostile attribution through to the exports --------------------------------------------------------

# (a header value cannot start with a tab or CR; those come from the upstream, in the model test below)
HOSTILE = ["=HYPERLINK(\"http://evil\",\"x\")", "+1+2", "-2+3", "@SUM(A1)", "=cmd|' /C calc'!A0", "-@x"]


def test_hostile_attribution_sent_through_the_proxy_is_neutralised_in_every_csv_export(fake_upstream, proxy):
    for i, value in enumerate(HOSTILE):
        r = httpx.post(proxy.url("/v1/chat/completions"), json={"model": "openai/gpt-4o-mini", "messages": MESSAGES},
                       headers={"Authorization": f"Bearer {fake_upstream.api_key}", "X-Spendlog-App": value,
                                "X-Spendlog-User": value, "X-Spendlog-Tags": f"{value.strip()}={value.strip()},n={i}"})
        assert r.status_code == 200
    recorded = rows(expect=len(HOSTILE))
    assert {r.app for r in recorded} == set(HOSTILE)  # stored as sent
    bad = []
    for args in (["--by", "call"], ["--by", "app,user"], ["--by", "call", "--format", "focus"],
                 ["--by", "day,app", "--format", "focus"]):
        out = _cli("export", *args)
        for row in csv.reader(io.StringIO(out, newline="")):
            for cell in row:
                if cell[:1] in ("=", "+", "-", "@", "\t", "\r") and not _is_number(cell):
                    bad.append((args, cell))
    assert not bad, f"formula cells in exports: {bad[:5]}"


def _is_number(cell: str) -> bool:
    try:
        float(cell)
        return True
    except ValueError:
        return False


@pytest.mark.parametrize("model", ["=IMPORTXML(\"http://evil\")", "\t=1+2", "\r@SUM(1)", "+cmd", "-1+x"])
def test_hostile_model_names_from_the_upstream_are_neutralised(proxy_factory, model):
    """The served model name comes from the upstream's answer: untrusted too."""
    answer = {"id": "x", "object": "chat.completion", "created": 1, "model": model,
              "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
              "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2, "cost": 0.001}}
    upstream = Recorder(lambda req: json_response(200, answer))
    try:
        proxy = proxy_factory(upstream.origin + "/v1")
        r = httpx.post(proxy.url("/v1/chat/completions"), json={"model": "m", "messages": MESSAGES},
                       headers={"Authorization": "Bearer sr_test_hostilemodel0000"})
        assert r.status_code == 200
    finally:
        upstream.stop()
    [row] = rows(expect=1)
    assert row.model == model
    for args in (["--by", "call"], ["--by", "model,provider"], ["--by", "call", "--format", "focus"],
                 ["--by", "day,model", "--format", "focus"]):
        out = _cli("export", *args)
        cells = [c for line in csv.reader(io.StringIO(out, newline="")) for c in line]
        assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r") and not _is_number(c)], \
            (args, out[:400])
    assert json.loads(_cli("export", "--by", "call", "--format", "jsonl").splitlines()[0])["model"] == model


HOOK_APP = """
import logging, sys
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="LOG %(name)s %(levelname)s %(message)s")
import httpx
from spendlog.transport import LoggingTransport
keys = {keys!r}

def answer(request):  # an upstream that echoes every header and the URL, with odd usage
    echo = str(request.url) + " " + " ".join(f"{{k}}={{v}}" for k, v in request.headers.items())
    if request.url.path.endswith("/bad-usage/chat/completions"):
        return httpx.Response(200, json={{"model": "m", "choices": [], "usage": {{"prompt_tokens": echo}}}})
    return httpx.Response(401, json={{"error": {{"message": "denied: " + echo}}}})

client = httpx.Client(transport=LoggingTransport(httpx.MockTransport(answer)))
headers = {{"Authorization": "Bearer " + keys["bearer"], "api-key": keys["api-key"], "x-api-key": keys["x-api-key"]}}
for base in ("http://upstream.test/v1", "http://upstream.test/bad-usage"):
    client.post(base + "/chat/completions", params={{"key": keys["query"]}}, headers=headers,
                json={{"model": "m", "messages": []}})
"""


@pytest.mark.parametrize("db", ["ok", "unwritable"])
def test_keys_never_appear_in_a_hook_apps_log_output(tmp_path, db):
    """A hook app logging at DEBUG: an upstream echoing the keys in errors and usage, and (second
    run) a database that cannot be written, so the writer's warnings run too."""
    keys = _keys()
    env = {"SPENDLOG_DB_URL": f"sqlite:///{tmp_path / 'ledger.db'}" if db == "ok" else
           f"postgresql+psycopg://u:{keys['bearer']}@127.0.0.1:1/x"}
    from helpers import run_python

    result = run_python(HOOK_APP.format(keys=keys), env=env)
    assert result.returncode == 0, result.stderr
    ours = [line for line in result.stderr.splitlines()
            if not line.startswith(tuple(f"LOG {name}" for name in APP_LIBRARY_LOGGERS))]
    said = [line for line in ours if line.startswith("LOG spendlog ")]  # spendlog's own warnings are there to check:
    assert any("unusable usage fields" in line for line in said), ours  # the echoed usage, in both runs
    if db == "unwritable":
        assert any("not writable" in line for line in said), ours  # and the writer's, naming the URL
    assert not _leaks("\n".join(ours), keys), "\n".join(ours)[-2000:]
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert not _leaks(path.read_bytes(), keys), path
    if db == "ok":  # the echoes were recorded (scrubbed), so the check above had something to find
        recorded = rows(env["SPENDLOG_DB_URL"], expect=2)
        assert [r.error_type for r in recorded] == ["http_401", "bad_usage"]
        assert recorded[0].error_message.startswith("denied: http://upstream.test/v1/chat/completions")


# -- every auth scheme, echoed back by an upstream (issue 12, finding 7) -------------------------------

# (where it goes, its name, its value): values short enough that no "looks like a key" pattern finds
# them; only the header or parameter name gives them away
CREDENTIALS = [
    ("header", "Authorization", "Basic " + base64.b64encode(b"alice:Pw9xQz7Lm2").decode()),
    ("header", "Authorization", "Token tK4nR8vW2pY6"),
    ("header", "Authorization", "Bearer bR3aXw9Kq2Lm"),
    ("header", "Authorization", "bAre7Hq2Lx9Cv"),  # no scheme at all
    ("header", "x-goog-api-key", "AIzaG00gK3yQ7w"),
    ("header", "api-key", "az9Key4Wq7Lp"),
    ("header", "x-api-key", "xK7eyQ2Wn8Pz"),
    ("query", "api_key", "qA9pIk3yW7zL"),
    ("query", "key", "qK3yV4lu9Wx"),
    ("query", "token", "qT0k3nV8lWx"),
    ("query", "access_token", "qAcc3ssT8kW"),
]


def _echo_credentials(request: bytes) -> bytes:
    """An upstream that quotes the request line and the headers that may carry a credential in its
    error message, as ``Name: value`` and as a JSON object (both are seen in the wild)."""
    line, *headers = request.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    quoted = [h for h in headers if h.lower().startswith(("authorization:", "x-goog-api-key:", "api-key:", "x-api-key:"))]
    as_json = json.dumps(dict(h.split(": ", 1) for h in quoted))
    return json_response(401, {"error": {"message": f"denied {line} {' '.join(quoted)} {as_json}"}})


@pytest.mark.parametrize("path", ["hook", "proxy"])
def test_credentials_of_every_scheme_echoed_by_an_upstream_are_scrubbed(path, proxy_factory):
    echo = Recorder(_echo_credentials)
    try:
        base = echo.origin + "/v1" if path == "hook" else proxy_factory(echo.origin + "/v1").base_url
        inner = httpx2.HTTPTransport()
        with httpx2.Client(transport=LoggingTransport(inner) if path == "hook" else inner) as client:
            for where, name, value in CREDENTIALS:
                headers, params = ({name: value}, {}) if where == "header" else ({}, {name: value})
                r = client.post(base + "/chat/completions", json={"model": "m", "messages": MESSAGES},
                                headers=headers, params=params)
                assert r.status_code == 401 and value.split()[-1] in r.text  # the caller sees the echo as sent
    finally:
        echo.stop()
    recorded = rows(expect=len(CREDENTIALS))
    assert len(recorded) == len(CREDENTIALS)
    assert all(r.error_message.startswith("denied POST /v1/chat/completions") for r in recorded)
    secrets_sent = [value.split()[-1] for _, _, value in CREDENTIALS] + ["Pw9xQz7Lm2"]
    leaks = []
    for row in recorded:
        for secret in secrets_sent:  # any 5 characters in a row give too much away: a hint shows 4 at most
            stored = f"{row.error_message} {row.api_key_hint}"
            if any(secret[i:i + 5] in stored for i in range(len(secret) - 4)):
                leaks.append((secret, stored))
    assert not leaks, leaks
