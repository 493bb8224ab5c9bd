"""spendlog: usage and cost tracking for LLM APIs called through SolRouter.

The public API, by job:

- capture: ``LoggingTransport`` / ``AsyncLoggingTransport`` (the hook for httpx and httpx2 clients,
  the OpenAI SDK included), ``http_client`` / ``async_http_client`` (such clients ready-made),
  ``Client`` / ``AsyncClient`` (a thin SolRouter client);
- storage: ``flush`` (wait until every recorded call is written);
- errors: ``SpendlogError`` and its subclasses (see ``spendlog.errors``).
"""

from spendlog.client import AsyncClient, Client
from spendlog.db.writer import flush
from spendlog.errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    ConfigError,
    RateLimitError,
    ServerError,
    SpendlogError,
)
from spendlog.transport import AsyncLoggingTransport, LoggingTransport, async_http_client, http_client

__version__ = "0.1.0"

__all__ = [
    "__version__",
    # capture
    "LoggingTransport",
    "AsyncLoggingTransport",
    "http_client",
    "async_http_client",
    "Client",
    "AsyncClient",
    # storage
    "flush",
    # errors
    "SpendlogError",
    "ConfigError",
    "APIConnectionError",
    "APITimeoutError",
    "APIError",
    "AuthenticationError",
    "RateLimitError",
    "ServerError",
]
