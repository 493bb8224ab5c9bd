"""The public names are the ones we mean (httpx tests/test_exported_members.py)."""

from __future__ import annotations

import inspect

import spendlog

PUBLIC = {
    "__version__",
    "LoggingTransport", "AsyncLoggingTransport", "http_client", "async_http_client", "Client", "AsyncClient",
    "flush",
    "SpendlogError", "ConfigError", "APIConnectionError", "APITimeoutError", "APIError", "AuthenticationError",
    "RateLimitError", "ServerError",
}


def test_all_is_exactly_the_public_api():
    assert set(spendlog.__all__) == PUBLIC
    assert len(spendlog.__all__) == len(PUBLIC)  # no duplicates


def test_every_exported_name_exists_and_is_documented():
    for name in spendlog.__all__:
        member = getattr(spendlog, name)
        if name != "__version__":
            assert member.__doc__, f"spendlog.{name} has no docstring"
            assert member.__module__.startswith("spendlog."), name


def test_no_public_name_outside_all():
    """Every public non-module attribute of the package is listed (submodules are reached by name)."""
    public = {n for n in dir(spendlog) if not n.startswith("_") and not inspect.ismodule(getattr(spendlog, n))}
    assert public <= set(spendlog.__all__), sorted(public - set(spendlog.__all__))


def test_version():
    from importlib.metadata import version

    assert spendlog.__version__ == version("spendlog")
