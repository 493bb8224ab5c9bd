"""The dashboard's sign-in in real Chromium against a real OpenID provider (tests/oidc/).

The real dashboard (`spendlog dashboard --secrets FILE`) on a ledger of one call that cost $123.45.
Chromium signs in through the provider's own login and consent pages, sees that total, signs out
through the provider's logout page; a user outside the allow-list, a forged cookie and an expired
one see no figure anywhere in the DOM. Requests to anything but 127.0.0.1 are aborted (the
provider's pages link a web font).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from fixture_dashboard import _stop as stop_server
from fixture_dashboard import wait_healthy
from fixture_oidc import secrets_toml
from helpers import make_record

from spendlog.db.engine import make_engine
from spendlog.db.migrate import upgrade
from spendlog.db.store import insert_records

pytestmark = [pytest.mark.browser, pytest.mark.slow]

COST = Decimal("123.45")  # the ledger's one call
FIGURE = "$123.45"  # the dashboard's total spend for it
COOKIE_SECRET = "spendlog-test-cookie-secret-0123456789"
USER_COOKIE = "_streamlit_user"  # streamlit/web/server/starlette/starlette_server_config.py
ALLOWED = ["alice@example.com", "@team.example.org"]


@pytest.fixture(scope="module")
def app(oidc_provider, tmp_path_factory):
    """`spendlog dashboard --secrets FILE` on a one-call ledger, signing in with ``oidc_provider``;
    its URL."""
    home = tmp_path_factory.mktemp("oidc-app")
    secrets = home / "secrets.toml"
    secrets.write_text(secrets_toml(oidc_provider, cookie_secret=COOKIE_SECRET, allowed=ALLOWED))
    ledger = f"sqlite:///{home / 'ledger.db'}"
    engine = make_engine(ledger, pool=False)
    upgrade(engine)
    with engine.begin() as conn:
        insert_records(conn, [make_record(created_at=datetime.now(timezone.utc), cost_usd=COST)])
    engine.dispose()
    env = {k: v for k, v in os.environ.items() if k not in ("SPENDLOG_ALLOWED", "SPENDLOG_TZ")}
    env["HOME"] = str(home)  # no ~/.streamlit of the user's
    argv = [sys.executable, "-m", "spendlog", "dashboard", "--no-browser", "--port", str(oidc_provider.app_port),
            "--db", ledger, "--secrets", str(secrets)]
    proc = subprocess.Popen(argv, cwd=home, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_healthy(oidc_provider.app_port, proc)
        yield oidc_provider.app_url
    finally:
        stop_server(proc)


def figure(page):
    """The "Total spend" card showing the ledger's total."""
    card = page.get_by_test_id("stMetric").filter(has_text="Total spend").first
    return card.get_by_test_id("stMetricValue").filter(has_text=FIGURE)


@pytest.fixture
def page(chromium):
    context = chromium.new_context()
    context.route("**/*", lambda route: route.continue_() if route.request.url.startswith("http://127.0.0.1:")
                  else route.abort())
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()


def settled(page) -> str:
    """The DOM once Streamlit has finished running the script."""
    page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for()
    return page.content()


def sign_in(page, app_url: str, issuer: str, login: str) -> None:
    """From the app's sign-in page through the provider's login (and, the first time, consent) forms."""
    page.goto(app_url)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{issuer}/interaction/**")
    page.locator("input[name=login]").fill(login)
    page.locator("input[name=password]").fill("any password")
    page.get_by_role("button", name="Sign-in").click()
    consent = page.locator("form:has(input[name=prompt][value=consent])").get_by_role("button", name="Continue")
    consent.or_(page.get_by_test_id("stApp")).first.wait_for()
    if consent.count():  # the first sign-in of an account asks to share its e-mail and profile
        consent.click()
    page.wait_for_url(f"{app_url}**")


def test_sign_in_see_the_figure_then_sign_out(app, oidc_provider, page):
    sign_in(page, app, oidc_provider.issuer, "alice@example.com")
    figure(page).wait_for()
    assert "Signed in as alice@example.com" in page.get_by_test_id("stSidebar").inner_text()
    assert any(c["name"] == USER_COOKIE for c in page.context.cookies())

    page.get_by_test_id("stSidebar").get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{oidc_provider.issuer}/session/end**")  # the provider's own logout page
    page.get_by_role("button", name="Yes, sign me out").click()
    page.wait_for_url(f"{app}**")
    page.get_by_role("button", name="Sign in").wait_for()
    assert "123.45" not in settled(page)
    assert not any(c["name"] == USER_COOKIE for c in page.context.cookies())

    page.reload()
    page.get_by_role("button", name="Sign in").wait_for()
    assert "123.45" not in settled(page)


def test_a_user_outside_the_allow_list_sees_no_figure(app, oidc_provider, page):
    sign_in(page, app, oidc_provider.issuer, "mallory@evil-example.com")
    page.get_by_role("heading", name="Not allowed").wait_for()
    dom = settled(page)
    assert "You are signed in as mallory@evil-example.com, which may not see this dashboard." in page.inner_text("body")
    assert "123.45" not in dom and "stMetric" not in dom and "stVegaLiteChart" not in dom
    assert page.get_by_role("button", name="Sign out").is_visible()


def _cookie(secret: str, claims: dict, *, age_seconds: float = 0) -> str:
    """A ``_streamlit_user`` value as Streamlit signs it (itsdangerous, the cookie name as salt),
    dated ``age_seconds`` ago."""
    class Dated(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time() - age_seconds)

    return URLSafeTimedSerializer(secret, salt=USER_COOKIE, signer=Dated).dumps(json.dumps(claims))


def _claims(app_url: str, email: str, *, iat_age: float = 0) -> dict:
    now = int(time.time())
    return {"sub": email, "email": email, "email_verified": True, "iat": now - int(iat_age), "exp": now + 300,
            "origin": app_url.rstrip("/"), "is_logged_in": True, "provider": "default"}


def _visit_with(page, app_url: str, value: str, expect) -> str:
    """The settled DOM of the app opened with only ``value`` as the identity cookie, once
    ``expect`` (a locator on the page) is visible."""
    page.context.clear_cookies()
    page.context.add_cookies([{"name": USER_COOKIE, "value": value, "url": app_url, "httpOnly": True,
                               "sameSite": "Lax"}])
    page.goto(app_url)
    expect(page).wait_for()
    return settled(page)


def sign_in_button(page):
    return page.get_by_role("button", name="Sign in")


def test_a_forged_or_expired_cookie_is_refused(app, page):
    month = 32 * 86400  # Streamlit signs a timestamp into the cookie and refuses it after 30 + 1 days
    alice, mallory = _claims(app, "alice@example.com"), _claims(app, "mallory@evil-example.com")
    signed_mallory = _cookie(COOKIE_SECRET, mallory)
    alice_payload = _cookie(COOKIE_SECRET, alice).rsplit(".", 2)[0]  # payload.timestamp.signature
    refused = {
        "signed with another secret": _cookie("not-the-dashboard-secret-0123456789", alice),
        "not signed at all": json.dumps(alice),
        "mallory's signature on alice's claims": ".".join([alice_payload, *signed_mallory.rsplit(".", 2)[1:]]),
        "signed 32 days ago": _cookie(COOKIE_SECRET, alice, age_seconds=month),
    }
    for case, value in refused.items():
        assert "123.45" not in _visit_with(page, app, value, sign_in_button), case

    # spendlog's own limit: an ID token issued more than sign_in_hours (default 12) ago
    old = _cookie(COOKIE_SECRET, _claims(app, "alice@example.com", iat_age=13 * 3600))
    assert "123.45" not in _visit_with(page, app, old, sign_in_button)
    assert "Your sign-in is more than 12 hours old: sign in again." in page.inner_text("body")

    # the controls: the same recipe with the right secret and fresh dates is let in, so the
    # refusals above are the signature's and the dates' doing
    assert "123.45" not in _visit_with(page, app, signed_mallory, lambda p: p.get_by_role("heading", name="Not allowed"))
    fresh = _cookie(COOKIE_SECRET, _claims(app, "alice@example.com", iat_age=3600))
    assert FIGURE in _visit_with(page, app, fresh, figure)
