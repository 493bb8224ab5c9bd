"""The dashboard's sign-in gate without a browser: the allow-list rules as pure functions, and the
pages ``gate()`` draws, through Streamlit's AppTest on tests/oidc/app.py (the browser half is
tests/test_oidc_browser.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from spendlog.cli.dashboard import is_loopback, secrets_auth
from spendlog.dashboard.auth import AllowList, AuthConfigError, is_allowed, parse_allowed, sign_in_expired

APP = Path(__file__).resolve().parent.parent / "oidc" / "app.py"
FIGURE = "TOTAL $123.45"
AUTH = {"redirect_uri": "http://127.0.0.1:8501/oauth2callback", "cookie_secret": "a-long-enough-cookie-secret",
        "client_id": "spendlog", "client_secret": "client-secret",
        "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration"}
LIST = ["alice@example.com", "@example.org", "team.example.net"]


@pytest.mark.parametrize(("email", "ok"), [
    ("alice@example.com", True),
    ("ALICE@Example.COM", True),  # case does not matter
    ("bob@example.com", False),  # an address entry lets in that address only
    ("bob@example.org", True),
    ("Bob@EXAMPLE.ORG", True),
    ("carol@team.example.net", True),  # a domain without the @ works the same
    ("carol@evil-example.org", False),  # no suffix tricks
    ("carol@example.org.evil.com", False),
    ("carol@eng.example.org", False),  # subdomains are other domains
    ("carol@example.org.", False),
    ("example.org", False),  # not an address
    ("@example.org", False),
    ("alice@example.com@evil.com", False),
    ("alice@example.com ", False),
    ("\u212aarol@example.org", True),  # the Kelvin sign is not folded to k, but the domain is listed
    ("alice@\u212a.example.org", False),
    ("\u212alice@example.com", False),
    ("", False),
    (None, False),
    (["alice@example.com"], False),
])
def test_allow_list_matching(email, ok):
    assert is_allowed(email, True, LIST) is ok


def test_a_kelvin_sign_does_not_pass_for_a_listed_address():
    assert is_allowed("kelvin@example.com", True, ["kelvin@example.com"])
    assert not is_allowed("\u212aelvin@example.com", True, ["kelvin@example.com"])


@pytest.mark.parametrize(("verified", "ok"), [
    (True, True), (None, True), ("true", True),  # some providers never send email_verified
    (False, False), ("false", False), ("False", False), (0, False),
])
def test_an_unverified_address_is_refused(verified, ok):
    assert is_allowed("alice@example.com", verified, LIST) is ok


def test_an_empty_allow_list_lets_nobody_in():
    for empty in ([], "", " , ", AllowList()):
        assert not is_allowed("alice@example.com", True, empty)
    assert not AllowList() and not parse_allowed(" ,, ")


def test_parse_allowed_from_the_variable_and_from_a_list():
    expected = AllowList(frozenset({"alice@example.com"}), frozenset({"example.org", "team.example.net"}))
    assert parse_allowed(" Alice@Example.com, @EXAMPLE.org ,team.example.net,") == expected
    assert parse_allowed(LIST) == expected


@pytest.mark.parametrize("entry", ["*", "*.example.com", "alice@", "a@b@example.com", "exa mple.com", "example..com",
                                   "-example.com", "example.com.", "al ice@example.com", "bücher.example"])
def test_a_bad_entry_is_an_error_naming_it(entry):
    with pytest.raises(AuthConfigError, match="neither an e-mail address nor a domain") as info:
        parse_allowed(["alice@example.com", entry])
    assert repr(entry.strip()) in str(info.value)


def test_sign_in_age():
    now = 1_700_000_000
    assert not sign_in_expired(now - 11 * 3600, 12, now)
    assert sign_in_expired(now - 13 * 3600, 12, now)
    assert not sign_in_expired(now - 400 * 86400, 0, now)  # 0: only Streamlit's own 30 days
    for bad in (None, "1700000000", True, [now]):
        assert sign_in_expired(bad, 12, now)


# --- the pages, through AppTest ------------------------------------------------------------------


def run(secrets: dict, user: dict | None = None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=30)
    at.secrets = secrets
    at.user = user or {"is_logged_in": False}
    return at.run()


def everything(at: AppTest) -> str:
    """Every piece of text on the page (the sidebar's too)."""
    parts = []
    for kind in ("title", "header", "markdown", "text", "caption", "error", "warning", "info", "button"):
        for el in getattr(at, kind):
            parts.append(str(getattr(el, "label", None) or el.value))
    return "\n".join(parts)


def signed_in(email: str, **claims) -> dict:
    return {"is_logged_in": True, "email": email, "email_verified": True, "iat": int(time.time()) - 60, **claims}


def test_without_auth_the_page_shows_as_before():
    at = run({"unrelated": "value"})
    assert not at.exception
    assert [h.value for h in at.header] == [FIGURE]
    assert not at.button


def test_an_allow_list_without_auth_keeps_the_page_closed(monkeypatch):
    monkeypatch.setenv("SPENDLOG_ALLOWED", "example.com")
    at = run({"unrelated": "value"})
    assert FIGURE not in everything(at)
    assert "SPENDLOG_ALLOWED" in at.error[0].value and "no [auth]" in at.error[0].value


def test_signed_out_sees_the_sign_in_page():
    at = run({"auth": AUTH, "spendlog": {"allowed": LIST}})
    assert not at.exception
    assert [t.value for t in at.title] == ["spendlog"]
    assert [b.label for b in at.button] == ["Sign in"]
    assert FIGURE not in everything(at)


def test_an_allowed_user_sees_the_figure_and_who_they_are():
    at = run({"auth": AUTH, "spendlog": {"allowed": LIST}}, signed_in("Bob@Example.org"))
    assert [h.value for h in at.header] == [FIGURE]
    assert [t.value for t in at.sidebar.text] == ["Signed in as Bob@Example.org"]
    assert [b.label for b in at.sidebar.button] == ["Sign out"]


def test_a_user_outside_the_list_is_told_and_sees_nothing():
    at = run({"auth": AUTH, "spendlog": {"allowed": LIST}}, signed_in("mallory@evil-example.org"))
    assert [t.value for t in at.title] == ["Not allowed"]
    assert "You are signed in as mallory@evil-example.org, which may not see this dashboard." in everything(at)
    assert "add your address or your domain" in everything(at)
    assert [b.label for b in at.button] == ["Sign out"]
    assert FIGURE not in everything(at) and not at.header


def test_sign_out_from_the_not_allowed_page_signs_out():
    at = run({"auth": AUTH, "spendlog": {"allowed": LIST}}, signed_in("mallory@evil-example.org"))
    at.button(key="spendlog_sign_out").click().run()
    assert at.user == {"is_logged_in": False}  # st.logout() ran (a browser is sent to /auth/logout)
    assert [b.label for b in at.run().button] == ["Sign in"]


@pytest.mark.parametrize(("user", "says"), [
    (signed_in("alice@example.com", email_verified=False), "has not verified this e-mail address"),
    ({"is_logged_in": True, "name": "No Mail", "iat": int(time.time())}, "carries no e-mail address"),
])
def test_the_not_allowed_page_says_why(user, says):
    at = run({"auth": AUTH, "spendlog": {"allowed": LIST}}, user)
    assert says in everything(at) and FIGURE not in everything(at)


def test_an_empty_allow_list_says_nobody_is_allowed():
    at = run({"auth": AUTH}, signed_in("alice@example.com"))
    assert "Nobody may see it yet" in at.warning[0].value
    assert FIGURE not in everything(at)


def test_the_variable_replaces_the_secrets_list(monkeypatch):
    monkeypatch.setenv("SPENDLOG_ALLOWED", "carol@example.com")
    secrets = {"auth": AUTH, "spendlog": {"allowed": LIST}}
    assert FIGURE in everything(run(secrets, signed_in("carol@example.com")))
    assert FIGURE not in everything(run(secrets, signed_in("alice@example.com")))


def test_an_old_sign_in_must_be_renewed():
    old = signed_in("alice@example.com", iat=int(time.time()) - 3 * 3600)
    at = run({"auth": AUTH, "spendlog": {"allowed": LIST, "sign_in_hours": 2}}, old)
    assert "Your sign-in is more than 2 hours old: sign in again." in at.info[0].value
    assert [b.label for b in at.button] == ["Sign in"] and FIGURE not in everything(at)
    at = run({"auth": AUTH, "spendlog": {"allowed": LIST, "sign_in_hours": 4}}, old)
    assert FIGURE in everything(at)


@pytest.mark.parametrize(("secrets", "says"), [
    ({"auth": {k: v for k, v in AUTH.items() if k != "cookie_secret"}}, "lacks cookie_secret"),
    ({"auth": {k: v for k, v in AUTH.items() if k != "client_secret"}}, "names no provider"),
    ({"auth": AUTH, "spendlog": {"allowed": ["alice@example.com", "*"]}}, "entry '*' is neither"),
    ({"auth": AUTH, "spendlog": {"allowed": 3}}, "must be a list"),
    ({"auth": AUTH, "spendlog": {"allowed": LIST, "sign_in_hours": "12"}}, "sign_in_hours"),
])
def test_a_broken_configuration_keeps_the_page_closed(secrets, says):
    at = run(secrets, signed_in("alice@example.com"))
    assert says in at.error[0].value
    assert FIGURE not in everything(at) and not at.button


def test_named_providers_get_a_button_each():
    shared = {"redirect_uri": AUTH["redirect_uri"], "cookie_secret": AUTH["cookie_secret"]}
    provider = {k: AUTH[k] for k in ("client_id", "client_secret", "server_metadata_url")}
    at = run({"auth": {**shared, "google": provider, "okta": provider}, "spendlog": {"allowed": LIST}})
    assert [b.label for b in at.button] == ["Sign in with google", "Sign in with okta"]


STILL = """
import streamlit as st
from spendlog.dashboard import auth
st.header(f"still allowed: {auth.still_allowed()}")
"""


@pytest.mark.parametrize(("secrets", "user", "expected"), [
    ({"unrelated": "value"}, {"is_logged_in": False}, True),
    ({"auth": AUTH, "spendlog": {"allowed": LIST}}, signed_in("alice@example.com"), True),
    ({"auth": AUTH, "spendlog": {"allowed": LIST}}, {"is_logged_in": False}, False),
    ({"auth": AUTH, "spendlog": {"allowed": LIST}}, signed_in("mallory@evil-example.org"), False),
    ({"auth": AUTH, "spendlog": {"allowed": LIST}}, signed_in("alice@example.com", iat=int(time.time()) - 13 * 3600),
     False),
    ({"auth": AUTH, "spendlog": {"allowed": ["*"]}}, signed_in("alice@example.com"), False),
])
def test_still_allowed_answers_like_the_gate_and_draws_nothing(secrets, user, expected):
    """What a self-refreshing fragment checks before it draws (it then calls st.rerun())."""
    at = AppTest.from_string(STILL, default_timeout=30)
    at.secrets, at.user = secrets, user
    at.run()
    assert [h.value for h in at.header] == [f"still allowed: {expected}"]
    assert not at.button and not at.text and not at.error and not at.title


# `spendlog dashboard`: who may reach it without sign-in, and the address it prints with sign-in

def _dashboard(tmp_path: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "HOME": str(tmp_path), "BROWSER": "/bin/false"}  # no ~/.streamlit of the user's
    return subprocess.run([sys.executable, "-m", "spendlog", "dashboard", "--no-browser", *args], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.7"])
def test_another_address_without_sign_in_needs_allow_anonymous(tmp_path, host):
    out = _dashboard(tmp_path, "--host", host)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"spendlog: error: --host {host} without sign-in lets anyone who reaches it read the spend: add an [auth] "
        "section to the secrets file (docs/auth.md) or pass --allow-anonymous"]


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_needs_no_sign_in(host):
    assert is_loopback(host)


def test_a_folder_secrets_file_with_auth_opens_other_addresses(tmp_path, monkeypatch):
    (tmp_path / ".streamlit").mkdir()
    (tmp_path / ".streamlit" / "secrets.toml").write_text(toml_text(AUTH))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert secrets_auth() == AUTH
    assert secrets_auth(tmp_path / ".streamlit" / "secrets.toml") == AUTH
    other = tmp_path / "other.toml"
    other.write_text('[spendlog]\nallowed = ["example.com"]\n')
    assert secrets_auth(other) is None  # --secrets replaces Streamlit's default locations


@pytest.mark.parametrize(("content", "says"), [
    (None, "--secrets {path}: no such file"),
    ("[auth\n", "cannot read the secrets file {path}: "),
])
def test_a_bad_secrets_file_is_one_line_exit_2(tmp_path, content, says):
    path = tmp_path / "s.toml"
    if content is not None:
        path.write_text(content)
    out = _dashboard(tmp_path, "--secrets", str(path))
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spendlog: error: " + says.format(path=path))


@pytest.mark.slow
def test_with_sign_in_it_serves_any_address_and_prints_the_redirect_origin(tmp_path):
    from fixture_dashboard import _stop, free_port, wait_healthy

    port = free_port()
    secrets = tmp_path / "secrets.toml"
    secrets.write_text(toml_text({**AUTH, "redirect_uri": f"http://localhost:{port}/oauth2callback"}))
    env = {**os.environ, "HOME": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "spendlog", "dashboard", "--no-browser", "--host", "0.0.0.0",
                             "--port", str(port), "--secrets", str(secrets)], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stderr.readline()
        wait_healthy(port, proc)
    finally:
        _stop(proc)
    assert first.startswith(f"spendlog dashboard: http://localhost:{port}/  (listening on 0.0.0.0:{port}; sign-in; ")


def toml_text(auth: dict) -> str:
    return "[auth]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in auth.items())
