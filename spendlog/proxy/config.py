"""What a proxy runs with, checked once at start: the upstream, the address, the token, the limits.

Everything a user can get wrong here raises ``ProxyConfigError`` with one line saying what to do;
the CLI turns it into ``spendlog: error: ...`` and exit code 2.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from yarl import URL

from spendlog.db.hosts import is_loopback

__all__ = [
    "DEFAULT_UPSTREAM",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "DEFAULT_MAX_BODY_BYTES",
    "MIN_TOKEN_LENGTH",
    "ProxyConfig",
    "ProxyConfigError",
    "default_upstream",
    "is_loopback",
]

DEFAULT_UPSTREAM = "https://api.solrouter.io/v1"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8787
DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
MIN_TOKEN_LENGTH = 16


class ProxyConfigError(ValueError):
    """A proxy setting that cannot work (the message is one line for the user)."""


def default_upstream() -> str:
    """``$SPENDLOG_UPSTREAM``, else SolRouter."""
    return os.environ.get("SPENDLOG_UPSTREAM") or DEFAULT_UPSTREAM


def _check_upstream(raw: str) -> URL:
    try:
        url = URL(raw.strip())
    except (ValueError, TypeError) as exc:
        raise ProxyConfigError(f"--upstream {raw!r} is not a URL") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise ProxyConfigError(f"--upstream must be an http:// or https:// URL with a host, got {raw!r}")
    if url.user or url.password:
        raise ProxyConfigError("--upstream must not carry credentials; clients send their own key")
    if url.query_string or url.fragment:
        raise ProxyConfigError(f"--upstream must not have a query or fragment, got {raw!r}")
    return url.with_path(url.path.rstrip("/"))


@dataclass(frozen=True)
class ProxyConfig:
    """One proxy's settings. ``upstream`` is the base URL clients would otherwise use (it ends in
    ``/v1`` for SolRouter): a request for ``/v1/chat/completions`` goes to
    ``{upstream}/chat/completions``."""

    upstream: str = DEFAULT_UPSTREAM
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    allow_remote: bool = False
    token: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    db_url: str | None = None
    connect_timeout: float = 30.0
    read_timeout: float = 600.0  # longest silence between two bytes of an answer (reasoning models think)
    shutdown_timeout: float = 10.0
    header_timeout: float = 10.0  # deadline for each request head (spendlog.proxy.connections)
    pool_size: int = 1024
    enforce_budgets: bool = True  # hard budgets answer 402 (spendlog.budget_guard); off: never checked
    budget_refresh: float = 5.0  # seconds between the guard's reads of the ledger

    def __post_init__(self) -> None:
        object.__setattr__(self, "upstream", str(_check_upstream(self.upstream)))
        if self.token is not None and not self.token:
            object.__setattr__(self, "token", None)
        if not is_loopback(self.host):
            if not self.allow_remote:
                raise ProxyConfigError(
                    f"refusing to listen on {self.host}: only loopback addresses are safe without a token "
                    "(pass --allow-remote and set SPENDLOG_PROXY_TOKEN to accept other machines)")
            if not self.token:
                raise ProxyConfigError(
                    f"--allow-remote on {self.host} needs SPENDLOG_PROXY_TOKEN (at least {MIN_TOKEN_LENGTH} "
                    "characters); clients then send it in the X-Spendlog-Proxy-Token header")
        if self.token is not None and len(self.token) < MIN_TOKEN_LENGTH:
            raise ProxyConfigError(f"SPENDLOG_PROXY_TOKEN must be at least {MIN_TOKEN_LENGTH} characters")
        if not 0 <= self.port <= 65535:
            raise ProxyConfigError(f"--port must be between 0 and 65535, got {self.port}")
        if self.max_body_bytes < 1:
            raise ProxyConfigError(f"--max-body-bytes must be positive, got {self.max_body_bytes}")
        if not self.header_timeout > 0:
            raise ProxyConfigError(f"--header-timeout must be positive, got {self.header_timeout:g}")
        if not self.budget_refresh > 0:
            raise ProxyConfigError(f"the budget refresh interval must be positive, got {self.budget_refresh:g}")
        if self.shutdown_timeout < 0:
            raise ProxyConfigError(f"--shutdown-timeout must not be negative, got {self.shutdown_timeout:g}")

    @property
    def upstream_url(self) -> URL:
        return URL(self.upstream)
