"""The errors spendlog's user-facing API raises, all in one place.

    SpendlogError
    ├── ConfigError              configuration missing or wrong (no SOLROUTER_API_KEY, a bad base URL)
    ├── APIConnectionError       no answer from the upstream (cannot connect, connection dropped)
    │   └── APITimeoutError      no answer in time
    └── APIError                 the upstream answered, with an error: ``status``, ``message``, ``body``
        ├── AuthenticationError  401 or 403: a missing, wrong or revoked key
        ├── RateLimitError       429: slow down (``retry_after`` seconds when the upstream says)
        └── ServerError          5xx: the upstream or the provider behind it failed

``APIError`` itself covers the other 4xx answers, an error event inside a stream (status 200) and
a success answer that is not JSON. The underlying httpx exception, when there is one, is chained
as ``__cause__``.

Only the thin client (``spendlog.Client``) raises these. The hook (``spendlog.LoggingTransport``)
never raises anything of its own: the app sees exactly the exceptions it would see without it,
and storage problems are warnings inside the writer, never exceptions in the caller's request.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "SpendlogError",
    "ConfigError",
    "APIConnectionError",
    "APITimeoutError",
    "APIError",
    "AuthenticationError",
    "RateLimitError",
    "ServerError",
]


class SpendlogError(Exception):
    """Base class of every error spendlog's API raises."""


class ConfigError(SpendlogError):
    """Configuration is missing or wrong."""


class APIConnectionError(SpendlogError):
    """The upstream could not be reached, or the connection dropped before the answer ended."""


class APITimeoutError(APIConnectionError):
    """The upstream did not answer in time."""


class APIError(SpendlogError):
    """The upstream answered with an error."""

    def __init__(self, message: str, *, status: int | None, body: Any = None):
        super().__init__(f"{status}: {message}" if status is not None else message)
        self.status = status
        self.message = message
        self.body = body


class AuthenticationError(APIError):
    """401 or 403: the key is missing, wrong or revoked."""


class RateLimitError(APIError):
    """429: too many requests or tokens; ``retry_after`` is the upstream's hint in seconds, if any."""

    def __init__(self, message: str, *, status: int | None, body: Any = None, retry_after: float | None = None):
        super().__init__(message, status=status, body=body)
        self.retry_after = retry_after


class ServerError(APIError):
    """5xx: the upstream or the provider behind it failed."""
