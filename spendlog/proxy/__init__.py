"""``spendlog proxy``: a local OpenAI-compatible proxy that records every call it forwards.

Any client in any language starts logging by changing its base URL to
``http://127.0.0.1:8787/v1``. Each ``/v1/...`` request, any method, goes to the same path under
the configured upstream (default ``$SPENDLOG_UPSTREAM``, else ``https://api.solrouter.io/v1``)
with the client's own key; the answer comes back as the upstream sent it, streams chunk by chunk.
Tracked calls are recorded by the same builder the httpx hook uses (``spendlog.capture``).

    from spendlog.proxy import start_proxy
    proxy = start_proxy("http://127.0.0.1:8790/v1")      # a free port, in a background thread
    OpenAI(base_url=proxy.base_url, api_key=key)...
    proxy.stop()

Modules: ``config`` (settings and their checks), ``safety`` (targets, headers, token, error
bodies), ``forward`` (one request), ``connections`` (head deadline, connection cap, parser errors),
``app`` (serving, shutdown, the thread runner).
"""

from .app import ProxyServer, serve, start_proxy
from .config import (DEFAULT_HOST, DEFAULT_MAX_BODY_BYTES, DEFAULT_PORT, DEFAULT_UPSTREAM, ProxyConfig,
                     ProxyConfigError, default_upstream, is_loopback)
from .safety import TOKEN_HEADER

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_PORT",
    "DEFAULT_UPSTREAM",
    "TOKEN_HEADER",
    "ProxyConfig",
    "ProxyConfigError",
    "ProxyServer",
    "default_upstream",
    "is_loopback",
    "serve",
    "start_proxy",
]
