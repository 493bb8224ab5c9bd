"""Sign-in for the dashboard: Streamlit's own ``st.login`` / ``st.user`` (OpenID Connect through
Authlib), configured by ``[auth]`` in ``.streamlit/secrets.toml``, and an allow-list of e-mail
addresses and domains. docs/auth.md shows the configuration.

The page calls ``gate()`` right after ``st.set_page_config`` and draws nothing when it returns
False::

    if not auth.gate():
        return

A fragment that reruns on its own (``run_every``) skips the gate; it starts with
``if not auth.still_allowed(): st.rerun()`` so a removed or expired sign-in stops there too.

Without an ``[auth]`` section ``gate()`` returns True (the dashboard as before), unless an
allow-list is configured: then sign-in was meant and is missing, and nobody gets in.

The allow-list is ``SPENDLOG_ALLOWED`` (comma separated) or ``allowed = [...]`` under
``[spendlog]`` in the secrets file (the variable wins when it is set and not blank). An entry is
an address (``alice@example.com``) or a domain (``example.com`` or ``@example.com``). Matching
ignores ASCII case only and compares whole addresses and whole domains: ``example.com`` does
not let in ``evil-example.com``, ``example.com.evil.org`` or ``eng.example.com``. An address
the provider marks ``email_verified = false`` is refused. An empty list lets nobody in.

Streamlit's identity cookie lasts 30 days; spendlog also asks for a fresh sign-in when the ID
token behind it is older than ``sign_in_hours`` (``[spendlog]``, default 12), so someone the
provider no longer vouches for is out within that time.
"""

from __future__ import annotations

import os
import re
import string
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import streamlit as st

__all__ = ["ALLOWED_ENV", "AllowList", "AuthConfigError", "auth_configured", "gate", "is_allowed",
           "parse_allowed", "sign_in_expired", "still_allowed"]

ALLOWED_ENV = "SPENDLOG_ALLOWED"
DEFAULT_SIGN_IN_HOURS = 12.0
_SHARED_KEYS = ("redirect_uri", "cookie_secret")
_PROVIDER_KEYS = ("client_id", "client_secret", "server_metadata_url")
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_LOCAL = re.compile(r"[^\s@,]+")


class AuthConfigError(ValueError):
    """A sign-in setting that cannot be used (an allow-list entry that is neither an e-mail
    address nor a domain, a bad ``sign_in_hours``)."""


@dataclass(frozen=True)
class AllowList:
    """Whole addresses and whole domains, in lower case (ASCII letters only)."""

    addresses: frozenset[str] = frozenset()
    domains: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.addresses or self.domains)


def _fold(text: str) -> str:
    """Lower-case ASCII letters only: no Unicode folding turns a look-alike into a listed name."""
    return text.translate(_ASCII_LOWER)


def parse_allowed(entries: str | Iterable[str]) -> AllowList:
    """The allow-list from a comma-separated string or a list of entries; AuthConfigError names a
    bad entry. Blank entries are skipped."""
    items = entries.split(",") if isinstance(entries, str) else list(entries)
    addresses, domains = set(), set()
    for raw in items:
        if not isinstance(raw, str):
            raise AuthConfigError(f"allow-list entry {raw!r} is not text")
        entry = _fold(raw.strip())
        if not entry:
            continue
        local, _, domain = entry.rpartition("@")
        if not _DOMAIN.fullmatch(domain) or (local and not _LOCAL.fullmatch(local)):
            raise AuthConfigError(f"allow-list entry {raw.strip()!r} is neither an e-mail address nor a domain")
        if local:
            addresses.add(entry)
        else:
            domains.add(domain)
    return AllowList(frozenset(addresses), frozenset(domains))


def _unverified(verified: Any) -> bool:
    if isinstance(verified, str):
        return verified.strip().lower() == "false"
    return verified is False or (type(verified) is int and verified == 0)


def is_allowed(email: Any, verified: Any, allowed: AllowList | str | Iterable[str]) -> bool:
    """May the holder of ``email`` see the dashboard? ``verified`` is the provider's
    ``email_verified`` claim: only an explicit false refuses (some providers never send it)."""
    if not isinstance(allowed, AllowList):
        allowed = parse_allowed(allowed)
    if not isinstance(email, str) or _unverified(verified):
        return False
    address = _fold(email)
    local, at, domain = address.rpartition("@")
    return bool(local and at) and (address in allowed.addresses or domain in allowed.domains)


def sign_in_expired(issued_at: Any, max_hours: float, now: float | None = None) -> bool:
    """Is an ID token issued at ``issued_at`` (its ``iat``, seconds since the epoch) too old?
    A missing or malformed ``iat`` counts as too old; ``max_hours`` 0 never expires."""
    if max_hours <= 0:
        return False
    if isinstance(issued_at, bool) or not isinstance(issued_at, (int, float)):
        return True
    return (time.time() if now is None else now) - issued_at > max_hours * 3600


def _secrets_section(name: str) -> Mapping[str, Any] | None:
    if not st.secrets.load_if_toml_exists():
        return None
    value = st.secrets.get(name)
    return value if isinstance(value, Mapping) else None


def auth_configured() -> bool:
    """Is there an ``[auth]`` section in the secrets file?"""
    return _secrets_section("auth") is not None


def _allowed_source() -> tuple[str, str | list]:
    env = os.environ.get(ALLOWED_ENV)
    if env is not None and env.strip():
        return ALLOWED_ENV, env
    value = (_secrets_section("spendlog") or {}).get("allowed", [])
    return "`allowed` under [spendlog] in secrets.toml", value


def _allow_list() -> AllowList:
    source, value = _allowed_source()
    if not isinstance(value, (str, list, tuple)):
        raise AuthConfigError(f"{source} must be a list of e-mail addresses and domains")
    try:
        return parse_allowed(value)
    except AuthConfigError as exc:
        raise AuthConfigError(f"{source}: {exc}") from None


def _sign_in_hours() -> float:
    value = (_secrets_section("spendlog") or {}).get("sign_in_hours", DEFAULT_SIGN_IN_HOURS)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise AuthConfigError("`sign_in_hours` under [spendlog] in secrets.toml must be a number of hours >= 0")
    return float(value)


def _providers(auth: Mapping[str, Any]) -> list[str | None]:
    """None for the default provider (keys straight under [auth]), else the named ones."""
    if all(key in auth for key in _PROVIDER_KEYS):
        return [None]
    return [name for name, section in auth.items()
            if isinstance(section, Mapping) and all(key in section for key in _PROVIDER_KEYS)]


def _config_problem(auth: Mapping[str, Any]) -> str | None:
    missing = [key for key in _SHARED_KEYS if not auth.get(key)]
    if missing:
        return f"the [auth] section of secrets.toml lacks {', '.join(missing)}"
    if not _providers(auth):
        return "the [auth] section of secrets.toml names no provider with " + ", ".join(_PROVIDER_KEYS)
    return None


@dataclass(frozen=True)
class _Verdict:
    page: str  # "open" (no sign-in), "allowed", "config", "sign_in", "expired", "refused"
    problem: str = ""
    providers: tuple[str | None, ...] = ()
    hours: float = 0.0
    allowed: AllowList = AllowList()


def _verdict() -> _Verdict:
    auth = _secrets_section("auth")
    try:
        allowed = _allow_list()
        hours = _sign_in_hours()
    except AuthConfigError as exc:
        return _Verdict("config", str(exc))
    if auth is None:
        if allowed:
            return _Verdict("config", f"an allow-list is set ({_allowed_source()[0]}) but secrets.toml has no [auth] "
                                      "section, so nobody can sign in")
        return _Verdict("open")
    problem = _config_problem(auth)
    if problem:
        return _Verdict("config", problem)
    providers = tuple(_providers(auth))
    user = st.user
    if not user.is_logged_in:
        return _Verdict("sign_in", providers=providers)
    if sign_in_expired(user.get("iat"), hours):
        return _Verdict("expired", providers=providers, hours=hours)
    if not is_allowed(user.get("email"), user.get("email_verified"), allowed):
        return _Verdict("refused", allowed=allowed)
    return _Verdict("allowed")


def still_allowed() -> bool:
    """``gate()``'s answer without drawing anything, for code that reruns without the gate (a
    fragment with ``run_every``): when it turns False, ``st.rerun()`` lets the gate take over."""
    return _verdict().page in ("open", "allowed")


def gate() -> bool:
    """True when the page may draw: sign-in is not configured, or the signed-in user is allowed
    (then the sidebar shows who it is and a sign-out button). Otherwise it draws the sign-in
    page, the "not allowed" page or the configuration error, and returns False."""
    verdict = _verdict()
    if verdict.page == "open":
        return True
    if verdict.page == "config":
        return _refuse_config(verdict.problem)
    if verdict.page == "sign_in":
        return _sign_in_page(verdict.providers)
    if verdict.page == "expired":
        return _sign_in_page(verdict.providers,
                             note=f"Your sign-in is more than {verdict.hours:g} hours old: sign in again.")
    email = st.user.get("email")
    if verdict.page == "refused":
        return _not_allowed_page(email, st.user.get("email_verified"), verdict.allowed)
    with st.sidebar:
        st.text(f"Signed in as {email}")
        if st.button("Sign out", key="spendlog_sign_out", icon=":material/logout:"):
            st.logout()
    return True


def _refuse_config(problem: str) -> bool:
    st.title("spendlog")
    st.error(f"**Sign-in is misconfigured**, so the dashboard stays closed: {problem}.", icon=":material/lock:")
    st.caption("See docs/auth.md.")
    return False


def _sign_in_page(providers: tuple[str | None, ...], note: str | None = None) -> bool:
    st.title("spendlog")
    st.write("This dashboard is private: sign in to see the spend.")
    if note:
        st.info(note, icon=":material/schedule:")
    for name in providers:
        label = "Sign in" if name is None else f"Sign in with {name}"
        if st.button(label, key=f"spendlog_sign_in_{name or 'default'}", type="primary", icon=":material/login:"):
            st.login(name)
    return False


def _not_allowed_page(email: Any, verified: Any, allowed: AllowList) -> bool:
    st.title("Not allowed")
    if not isinstance(email, str) or not email:
        st.write("Your sign-in carries no e-mail address, so this dashboard cannot tell who you are.")
    else:
        st.text(f"You are signed in as {email}, which may not see this dashboard.")
        if not allowed:
            st.warning(f"Nobody may see it yet: the allow-list ({ALLOWED_ENV}, or `allowed` under [spendlog] in "
                       "secrets.toml) is empty.", icon=":material/block:")
        elif _unverified(verified):
            st.write("Your provider has not verified this e-mail address.")
        else:
            st.write("Ask the dashboard's owner to add your address or your domain to the allow-list.")
    if st.button("Sign out", key="spendlog_sign_out", icon=":material/logout:"):
        st.logout()
    return False
