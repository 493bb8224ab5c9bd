"""What may pass the proxy: request targets, headers both ways, the access token, error bodies.

The upstream is fixed at start. Nothing in a request (its target, Host, X-Forwarded-*, a
``base_url`` in the body) can choose another host: only the path after ``/v1`` and the query are
taken from the request, and the URL built from them is checked to still point at the upstream.

Paths are forwarded as they were sent (percent-encoding kept), so they are checked as every
server on the way might read them: the path is percent-decoded again and again (up to 8 times)
and refused if any reading has a dot segment (``.``, ``..``, also ``..;x`` as Tomcat reads it) with
``/`` or ``\\`` as separator, or a backslash at all: ``/v1/..%2fadmin``, ``/v1/%2e%2e/x``,
``/v1/..%5cadmin`` and ``/v1/%252e%252e/x`` are all refused. An encoded slash alone is kept: the
openai SDK sends ``models.retrieve("openai/gpt-4o-mini")`` as ``/v1/models/openai%2Fgpt-4o-mini``.
"""

from __future__ import annotations

import hmac
import json
import re
from urllib.parse import unquote

from yarl import URL

__all__ = [
    "HOP_BY_HOP",
    "TOKEN_HEADER",
    "BadTarget",
    "error_body",
    "forward_request_headers",
    "forward_response_headers",
    "target_url",
    "token_ok",
]

TOKEN_HEADER = "X-Spendlog-Proxy-Token"

# RFC 9110 7.6.1 hop-by-hop fields, plus the de-facto ones; they describe one connection, not the message.
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization",
    "te", "trailer", "trailers", "transfer-encoding", "upgrade",
})
# Set again for the upstream hop by the client library (Host, Content-Length) or answered here (Expect).
_REQUEST_DROP = HOP_BY_HOP | {"host", "content-length", "expect"}
_DOT_SEGMENT = re.compile(r"(?:^|[/\\])\.{1,2}(?:;[^/\\]*)?(?:[/\\]|$)")
_DECODINGS = 8  # a path still changing after this many percent-decodings is refused


class BadTarget(Exception):
    """A request target the proxy will not forward; ``status`` and ``code`` say how to answer."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error_body(message: str, type_: str, code: str) -> bytes:
    """An OpenAI-style error: ``{"error": {"message", "type", "code"}}``."""
    return json.dumps({"error": {"message": message, "type": type_, "code": code}}).encode()


def token_ok(supplied: str | None, expected: str | None) -> bool:
    """No token configured: everyone on the (loopback) address may use the proxy. Else a
    constant-time comparison with the header's value."""
    if expected is None:
        return True
    if supplied is None:
        return False
    return hmac.compare_digest(supplied.encode("utf-8", "surrogateescape"), expected.encode("utf-8", "surrogateescape"))


def target_url(raw_target: str, upstream: URL) -> URL:
    """The upstream URL for a request target like ``/v1/chat/completions?x=1``.

    Only origin-form targets under ``/v1`` are forwarded; absolute-form (``http://other/...``),
    authority-form and dot segments are refused, and the result must have the upstream's origin."""
    if not raw_target.startswith("/") or raw_target.startswith("//"):
        raise BadTarget(400, "absolute_target_refused",
                        "only origin-form paths under /v1 are forwarded, to the configured upstream")
    path, sep, query = raw_target.partition("?")
    if path != "/v1" and not path.startswith("/v1/"):
        raise BadTarget(404, "unknown_url", f"only /v1/... paths are forwarded, not {path[:200]!r}")
    if _traverses(path):
        raise BadTarget(400, "bad_path", "dot segments and backslashes are not allowed in the path, encoded or not")
    tail = path[3:]
    try:
        url = URL(f"{upstream}{tail}{sep}{query}", encoded=True)
    except ValueError as exc:
        raise BadTarget(400, "bad_path", "the request target is not a valid URL path") from exc
    if (url.scheme, url.host, url.port) != (upstream.scheme, upstream.host, upstream.port) or url.user:
        raise BadTarget(400, "absolute_target_refused", "the request target would leave the configured upstream")
    return url


def _traverses(path: str) -> bool:
    """True when any percent-decoding of ``path`` (see the module docstring) has a dot segment or a
    backslash, or it keeps changing past ``_DECODINGS``."""
    for _ in range(_DECODINGS):
        if "\\" in path or _DOT_SEGMENT.search(path):
            return True
        if "%" not in path:
            return False
        decoded = unquote(path, errors="surrogateescape")
        if decoded == path:
            return False
        path = decoded
    return True


def _connection_listed(headers) -> set[str]:
    listed: set[str] = set()
    for name, value in headers:
        if name.lower() == "connection":
            listed.update(tok.strip().lower() for tok in value.split(","))
    return listed


def forward_request_headers(headers) -> list[tuple[str, str]]:
    """The client's headers minus hop-by-hop ones, Host, Content-Length, Expect and every
    ``X-Spendlog-*`` header (attribution is read before this; the proxy token never leaves)."""
    drop = _REQUEST_DROP | _connection_listed(headers)
    return [(n, v) for n, v in headers if (low := n.lower()) not in drop and not low.startswith("x-spendlog-")]


def forward_response_headers(headers, *, keep_length: bool) -> list[tuple[str, str]]:
    """The upstream's headers minus hop-by-hop ones (and Content-Length when the body may change)."""
    drop = HOP_BY_HOP | _connection_listed(headers)
    if not keep_length:
        drop = drop | {"content-length"}
    return [(n, v) for n, v in headers if n.lower() not in drop]
