"""The router's activity from its API: ``GET {base}/activity?date=YYYY-MM-DD``, one UTC day a request.

OpenRouter's endpoint, which SolRouter and the fake upstream serve in the same shape, takes one
``date`` (a UTC day among the last 30 completed ones) or none (those 30 days at once). The fake
also takes ``from``/``to``; the real API does not, so spendlog asks one day at a time: every router
answers that the same way, each answer stays small, and an answer holding rows of another day
(a router that ignores ``date``) is refused instead of being counted twice. Each answer is read
as a stream through the same checks as a file (``db.activity``).

The management key is read from ``SOLROUTER_MANAGEMENT_KEY`` only (a flag would show in ``ps``),
sent as ``Authorization: Bearer`` to the base URL's host alone (redirects are not followed; plain
``http://`` only to a loopback host), and never stored or shown: every error is one line, and any
text from the router in it is cut short with key-like strings masked.

This module reads the router's figures for the read side (``spendlog reconcile``, the dashboard);
it records nothing.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta, timezone

import httpx

from .activity import Activity, read_json_chunks
from .hosts import is_loopback

__all__ = ["BASE_URL_ENV", "DEFAULT_BASE_URL", "DEFAULT_TIMEOUT", "KEY_ENV", "ROUTER_WINDOW_DAYS",
           "UpstreamError", "activity_url", "default_range", "fetch_activity", "management_key"]

KEY_ENV = "SOLROUTER_MANAGEMENT_KEY"
BASE_URL_ENV = "SOLROUTER_BASE_URL"
DEFAULT_BASE_URL = "https://api.solrouter.io/v1"  # the router's API, as spendlog.client has it
DEFAULT_TIMEOUT = 30.0
ROUTER_WINDOW_DAYS = 30  # the completed UTC days the router's activity keeps
_KEYLIKE = re.compile(r"(?i)(bearer\s+)?\bsr_[A-Za-z0-9_\-]{4,}")
_ERROR_BODY_BYTES = 4096


class UpstreamError(Exception):
    """The router could not be asked, or refused: one line, never the key."""


def management_key(environ: Mapping[str, str] | None = None) -> str:
    key = (os.environ if environ is None else environ).get(KEY_ENV, "").strip()
    if not key:
        raise UpstreamError(f"--from-upstream needs the router's management key in ${KEY_ENV} "
                            "(read from the environment only, never from a flag)")
    return key


def activity_url(base: str | None = None, environ: Mapping[str, str] | None = None) -> httpx.URL:
    """``{base}/activity`` for ``base`` (else ``$SOLROUTER_BASE_URL``, else the router's URL)."""
    raw = base or (os.environ if environ is None else environ).get(BASE_URL_ENV) or DEFAULT_BASE_URL
    try:
        url = httpx.URL(raw.strip())
    except (httpx.InvalidURL, TypeError, ValueError):
        raise UpstreamError(f"--upstream {raw[:80]!r} is not a URL") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise UpstreamError(f"--upstream {raw[:80]!r}: use an http(s):// URL such as {DEFAULT_BASE_URL}")
    if url.userinfo:
        raise UpstreamError("--upstream must not hold credentials: the management key comes from "
                            f"${KEY_ENV}")
    if url.scheme == "http" and not is_loopback(url.host):
        raise UpstreamError(f"--upstream {url.host}: use https:// (the management key would cross the "
                            "network in clear text)")
    if url.query or url.fragment:
        raise UpstreamError("--upstream takes the API's base URL, without a query")
    return url.copy_with(path=url.path.rstrip("/") + "/activity")


def default_range(today: date | None = None) -> tuple[date, date]:
    """The router's window: the last ``ROUTER_WINDOW_DAYS`` completed UTC days."""
    today = today or datetime.now(timezone.utc).date()
    return today - timedelta(days=ROUTER_WINDOW_DAYS), today - timedelta(days=1)


def _masked(text: str, key: str) -> str:
    text = text.replace(key, "***") if key else text
    text = _KEYLIKE.sub("sr_***", text)
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    return text if len(text) <= 200 else text[:197] + "..."


def _router_message(body: bytes) -> str:
    try:
        data = json.loads(body)
        message = data.get("error", {}).get("message") if isinstance(data, dict) else None
        if isinstance(message, str):
            return message
    except (ValueError, AttributeError):
        pass
    return body.decode("utf-8", "replace")


def _refusal(status: int, body: bytes, key: str, what: str) -> UpstreamError:
    message = _masked(_router_message(body), key) or "(no message)"
    if status in (401, 403):
        return UpstreamError(f"the router refused the management key ({status}) on {what}: {message} "
                             f"(check ${KEY_ENV})")
    if status == 429:
        return UpstreamError(f"the router is rate limiting (429) on {what}: {message}; try again later")
    if status >= 500:
        return UpstreamError(f"the router failed ({status}) on {what}: {message}")
    return UpstreamError(f"the router answered {status} to {what}: {message}")


def _head(response: httpx.Response) -> bytes:
    out = b""
    for chunk in response.iter_bytes():
        out += chunk
        if len(out) >= _ERROR_BODY_BYTES:
            break
    return out[:_ERROR_BODY_BYTES]


def fetch_activity(url: httpx.URL, key: str, first: date, last: date, *, timeout: float = DEFAULT_TIMEOUT,
                   progress: Callable[[int], None] | None = None,
                   transport: httpx.BaseTransport | None = None) -> Activity:
    """The router's activity for the UTC days ``first``..``last``, one ``GET url?date=`` per day,
    summed per (day, model). Raises ``UpstreamError`` (refusals, timeouts, unreachable router)
    or ``db.activity.ActivityError`` (a malformed answer)."""
    activity = Activity(first, last)
    headers = {"Authorization": f"Bearer {key}", "Accept": "application/json"}
    with httpx.Client(timeout=timeout, follow_redirects=False, headers=headers, transport=transport) as client:
        day = first
        while day <= last:
            what = f"GET {url.path}?date={day}"
            one = Activity(day, day)
            try:
                with client.stream("GET", url, params={"date": day.isoformat()}) as response:
                    if response.status_code != 200:
                        raise _refusal(response.status_code, _head(response), key, what)
                    read_json_chunks(response.iter_text(), one, name=f"the router's answer to {what}")
            except httpx.TimeoutException:
                raise UpstreamError(f"the router at {url.host} did not answer {what} within {timeout:g} s") from None
            except httpx.HTTPError as exc:
                detail = _masked(str(exc), key) or type(exc).__name__
                raise UpstreamError(f"cannot read {what} from {url.host}: {detail}") from None
            if one.skipped:
                raise UpstreamError(f"the router answered {what} with rows of other days: it does not "
                                    "filter by date, so its figures cannot be read one day at a time")
            activity.merge(one)
            if progress is not None:
                progress(1)
            day += timedelta(days=1)
    return activity
