"""What a request's headers say about attribution and the key, and keeping secrets out of text.

- ``X-Spendlog-App``, ``X-Spendlog-User``, ``X-Spendlog-Tags`` (``k=v,k2=v2``), any case: read and
  removed before the request leaves the machine (``split_attribution``).
- The key in ``Authorization: Bearer``, ``api-key``, ``x-api-key`` or ``x-goog-api-key``: only its
  hint is ever kept (``hint_for``: ``sr_live_0123456789abcdef3456`` -> ``sr_...3456``). A hint shows
  at most a third of a key, and at most 4 characters of a key shorter than 20.
- ``scrub``: text with every credential replaced by its hint (error messages are stored, and
  upstreams sometimes quote the request back): the call's own key; any value named by a
  credential header or parameter (``Authorization`` with any scheme or none, ``api-key``,
  ``x-api-key``, ``x-goog-api-key``, ``Proxy-Authorization``, ``api_key=``, ``key=``, ``token=``,
  ``access_token=``, ``secret=``, ``password=``, ``sig=``..., as ``Name: value``, ``name=value`` or
  JSON); and anything that looks like a key (``sk-...``, ``sr_...``, 32+ key characters). Basic,
  Digest, Negotiate and NTLM credentials are replaced whole (``[redacted]``): they are not keys.

Headers may be ``(str, str)`` or ``(bytes, bytes)`` pairs (httpx hands out raw bytes); pairs are
passed on as they came. Byte values that are read (the key, attribution) are decoded as UTF-8 with
``surrogateescape``, as aiohttp reads them, so the hook and the proxy see the same text; the record
builder then cleans it (``spendlog.capture.clean_text``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["split_attribution", "parse_tags", "key_hint", "hint_for", "scrub", "read_headers", "with_content_length"]

_ATTRIBUTION = {"x-spendlog-app": "app", "x-spendlog-user": "user", "x-spendlog-tags": "tags"}
# lower-cased header name -> what it carries; the same table for bytes and str headers
_ROLES = {**_ATTRIBUTION, "authorization": "authorization", "api-key": "key", "x-api-key": "key",
          "x-goog-api-key": "key"}
_ROLES_B = {k.encode(): v for k, v in _ROLES.items()}
_SECRET = re.compile(
    r"(?i)(?:bearer\s+)?\b(?:sr|sk|pk|rk|key|api)[-_][A-Za-z0-9_\-]{6,}|\b[A-Za-z0-9_\-]{32,}"
)
_VALUE = r"(?P<value>[^\s\"'\\&,;)\]}]+)"
# names that only ever carry a credential: as a header (Name: value), a parameter or a JSON key
_NAMED = re.compile(
    r"(?i)(?<![\w-])(?P<name>proxy-authorization|authorization|x-goog-api-key|x-api-key|api-key|"
    r"x-spendlog-proxy-token|access_token|refresh_token|id_token|client_secret|api_key|apikey)"
    r"(?P<sep>[\\\"']*\s*[:=]\s*[\\\"']*)(?P<scheme>(?:basic|bearer|token|digest|negotiate|ntlm|apikey|key)\s+)?"
    + _VALUE)
# common words that are credentials only as a parameter (key=...) or a quoted JSON key ("key": "...")
_NAMED_PARAM = re.compile(
    r"(?i)(?<![\w-])(?P<name>key|token|secret|password|passwd|sig|signature)"
    r"(?P<sep>=|\\?[\"']\s*:\s*\\?[\"'])(?P<scheme>)" + _VALUE)
_NOT_KEYS = ("basic", "digest", "negotiate", "ntlm")  # schemes whose credentials are not keys: no hint
_SHORT_KEY = 20  # a key shorter than this shows at most 4 characters in its hint


def text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def _value_text(value: str | bytes) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


def parse_tags(value: str) -> dict[str, str] | None:
    """``"k=v,k2=v2"`` -> ``{"k": "v", "k2": "v2"}``; a bare ``k`` becomes ``{"k": ""}``."""
    tags = {}
    for item in value.split(","):
        key, _, val = item.partition("=")
        key = key.strip()
        if key:
            tags[key] = val.strip()
    return tags or None


def read_headers(headers: Sequence[tuple]) -> tuple[list[tuple], dict[str, str], str | None]:
    """One pass over the headers: ``(headers without attribution, {"app"/"user"/"tags": value},
    the API key)``. The list is the caller's own when there is nothing to remove."""
    found: dict[str, str] = {}
    key = None
    for name, value in headers:
        role = (_ROLES_B if type(name) is bytes else _ROLES).get(name.lower())
        if role is None:
            continue
        value = _value_text(value).strip()
        if role == "authorization":
            scheme, _, value = value.partition(" ")
            if scheme.lower() != "bearer":
                continue
            value = value.strip()
            role = "key"
        if role == "key":
            key = key or value or None
        else:
            found[role] = value
    if found:
        left = [pair for pair in headers if text(pair[0]).lower() not in _ATTRIBUTION]
    else:
        left = headers if type(headers) is list else list(headers)
    return left, found, key


def split_attribution(headers: Sequence[tuple]) -> tuple[list[tuple], str | None, str | None, dict[str, str] | None]:
    """Remove the ``X-Spendlog-App/User/Tags`` headers (any case): ``(headers_left, app, user, tags)``."""
    left, found, _key = read_headers(headers)
    tags = parse_tags(found["tags"]) if "tags" in found else None
    return left, found.get("app") or None, found.get("user") or None, tags


def hint_for(key: str) -> str:
    """``sr_live_0123456789abcdef3456`` -> ``sr_...3456``: the prefix (up to the first ``_`` or ``-``,
    if it fits) and up to the last 4 characters, which is all that is ever stored. The hint shows at
    most a third of the key, and at most 4 characters of a key shorter than 20 (``short_1`` ->
    ``..._1``; ``sk-1234`` -> ``...34``)."""
    shown = len(key) // 3 if len(key) >= _SHORT_KEY else min(len(key) // 3, 4)
    cut = min((i for i in (key.find("_"), key.find("-")) if 0 <= i < 8), default=-1)
    prefix = key[: cut + 1] if 0 <= cut < shown else ""
    tail = min(4, shown - len(prefix))
    return prefix + "..." + (key[-tail:] if tail > 0 else "")


def key_hint(headers: Sequence[tuple]) -> str | None:
    """The stored hint of the key in ``Authorization: Bearer``, ``api-key``, ``x-api-key`` or
    ``x-goog-api-key``."""
    key = read_headers(headers)[2]
    return hint_for(key) if key else None


def scrub(value: str, secret: str | None = None) -> str:
    """``value`` with the given secret, every value named as a credential and anything that looks
    like a key replaced by its hint (see the module docstring)."""
    if secret and secret in value:
        value = value.replace(secret, hint_for(secret))
    value = _NAMED.sub(_hide_named, value)
    value = _NAMED_PARAM.sub(_hide_named, value)
    return _SECRET.sub(lambda m: hint_for(m.group(0).split()[-1]), value)


def _hide_named(m: re.Match) -> str:
    value, scheme = m.group("value"), m.group("scheme") or ""
    if scheme.strip().lower() in _NOT_KEYS:
        hidden = "[redacted]"
    elif "..." in value or value == "[redacted]":
        hidden = value  # a hint already
    else:
        hidden = hint_for(value)
    return m.group("name") + m.group("sep") + scheme + hidden


def with_content_length(headers: list[tuple], length: int) -> list[tuple]:
    """``headers`` with Content-Length set to ``length`` (kept absent when absent)."""
    out = []
    for name, value in headers:
        if text(name).lower() == "content-length":
            value = str(length).encode() if isinstance(value, bytes) else str(length)
        out.append((name, value))
    return out
