"""Which key may do what on the fake SolRouter.

Inference endpoints take any well-formed API key, `Bearer sr_` + 8 or more of [A-Za-z0-9_-]. The
activity takes the management key: the one set at start (`--management-key` /
`SOLROUTER_MANAGEMENT_KEY`), else any well-formed `sr_mgmt_...` key. As on OpenRouter the two do not
mix: an API key cannot read the activity (403), a management key cannot make calls (403).
"""

from __future__ import annotations

import hmac
import re

__all__ = ["MANAGEMENT_PREFIX", "inference_refusal", "is_management_key", "management_refusal"]

MANAGEMENT_PREFIX = "sr_mgmt_"
_BEARER = re.compile(r"Bearer (\S+)")
_KEY = re.compile(r"sr_[A-Za-z0-9_\-]{8,}")


def _bearer(headers) -> str | None:
    m = _BEARER.fullmatch(headers.get("authorization", ""))
    return m.group(1) if m else None


def _same(key: str, configured: str) -> bool:
    return hmac.compare_digest(key.encode(), configured.encode())


def is_management_key(key: str, configured: str | None) -> bool:
    """`key` is the management key set at start, or (none set) a well-formed `sr_mgmt_` key."""
    if configured is not None:
        return _same(key, configured)
    return key.startswith(MANAGEMENT_PREFIX) and _KEY.fullmatch(key) is not None


def inference_refusal(headers, configured: str | None) -> tuple[int, str] | None:
    """(401 or 403, message) unless the request carries an API key; None when it may go on."""
    key = _bearer(headers)
    if key is not None and (key.startswith(MANAGEMENT_PREFIX) or (configured is not None and _same(key, configured))):
        return 403, "A management key cannot make inference calls; use an API key."
    if key is None or _KEY.fullmatch(key) is None:
        return 401, "Missing or invalid API key. Send 'Authorization: Bearer sr_...'."
    return None


def management_refusal(headers, configured: str | None) -> tuple[int, str] | None:
    """(401 or 403, message) unless the request carries the management key; None when it may go on."""
    key = _bearer(headers)
    if key is not None and is_management_key(key, configured):
        return None
    if key is not None and _KEY.fullmatch(key) and not key.startswith(MANAGEMENT_PREFIX):
        return 403, "This endpoint needs a management key; an API key cannot read the activity."
    return 401, "Missing or invalid management key. Send 'Authorization: Bearer <management key>'."
