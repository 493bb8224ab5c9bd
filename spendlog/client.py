"""A thin SolRouter client whose calls are always recorded.

    with spendlog.Client(app="billing-bot") as client:
        answer = client.chat.completions.create(model="openai/gpt-4o-mini", messages=[...])
        for chunk in client.chat.completions.create(model=..., messages=[...], stream=True):
            ...

``Client`` / ``AsyncClient`` are ``httpx`` clients with the logging transport inside. Answers are
the parsed JSON (dicts); numbers with a fraction are ``Decimal``, so ``usage["cost"]`` is exact (a
number no ``Decimal`` or ``int`` can hold, such as ``1e-99999999999999999999``, arrives as its text,
a ``spendlog.usage.Unreadable``, rather than failing the whole answer).
``stream=True`` returns an iterator (async iterator) of chunk dicts, already open: an error status
raises from ``create``. Errors: see ``spendlog.errors``.

The base URL is ``base_url``, else ``$SOLROUTER_BASE_URL``, else ``https://api.solrouter.io/v1``;
the key is ``api_key``, else ``$SOLROUTER_API_KEY`` (``ConfigError`` when neither is set).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx

from spendlog.errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    ConfigError,
    RateLimitError,
    ServerError,
)
from spendlog.sse import EventSplitter, parse_event
from spendlog.transport import AsyncLoggingTransport, LoggingTransport
from spendlog.usage import error_message, loads_exact

__all__ = ["Client", "AsyncClient", "ChunkStream", "AsyncChunkStream", "DEFAULT_BASE_URL"]

DEFAULT_BASE_URL = "https://api.solrouter.io/v1"
DEFAULT_TIMEOUT = httpx.Timeout(600.0, connect=10.0)


def _settings(base_url: str | None, api_key: str | None) -> tuple[str, str]:
    base_url = base_url or os.environ.get("SOLROUTER_BASE_URL") or DEFAULT_BASE_URL
    api_key = api_key or os.environ.get("SOLROUTER_API_KEY")
    if not api_key:
        raise ConfigError("no SolRouter API key: pass api_key= or set SOLROUTER_API_KEY")
    if not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"base URL must start with http:// or https://, got {base_url!r}")
    return base_url.rstrip("/") + "/", api_key


def _loads(data: bytes, status: int) -> Any:
    try:
        return loads_exact(data)
    except ValueError:
        raise APIError(f"the answer is not JSON ({len(data)} bytes)", status=status, body=data[:1000]) from None


def _status_error(response: httpx.Response, body: bytes) -> APIError:
    status = response.status_code
    message = error_message(body) or response.reason_phrase or "error"
    try:
        parsed: Any = json.loads(body)
    except ValueError:
        parsed = body.decode("utf-8", "replace")
    if status in (401, 403):
        return AuthenticationError(message, status=status, body=parsed)
    if status == 429:
        try:
            retry_after = float(response.headers.get("retry-after", ""))
        except ValueError:
            retry_after = None
        return RateLimitError(message, status=status, body=parsed, retry_after=retry_after)
    if status >= 500:
        return ServerError(message, status=status, body=parsed)
    return APIError(message, status=status, body=parsed)


def _transport_error(exc: httpx.TransportError) -> APIConnectionError:
    cls = APITimeoutError if isinstance(exc, httpx.TimeoutException) else APIConnectionError
    return cls(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)


def _events(splitter: EventSplitter, data: bytes) -> Iterator[dict | None]:
    """Chunk dicts in ``data``; None marks ``[DONE]``."""
    for raw in splitter.split(data):
        _name, payload = parse_event(raw)
        if payload is None:
            continue
        if payload.strip() == b"[DONE]":
            yield None
            return
        obj = _loads(payload, 200)
        if isinstance(obj, dict) and obj.get("error"):
            err = obj["error"]
            raise APIError(err.get("message", "error") if isinstance(err, dict) else str(err), status=200, body=err)
        yield obj


def _body(model: str, messages: list, stream: bool, params: dict) -> dict:
    body = {"model": model, "messages": messages, **params}
    if stream:
        body["stream"] = True
    return body


# -- sync ---------------------------------------------------------------------------------------

class ChunkStream:
    """The chunks of a streamed answer, as dicts. Close it (or use ``with``) if you stop early."""

    def __init__(self, response: httpx.Response):
        self._response = response
        self._chunks = self._read()

    def _read(self) -> Iterator[dict]:
        splitter = EventSplitter()
        try:
            for data in self._response.iter_bytes():
                for chunk in _events(splitter, data):
                    if chunk is None:
                        return
                    yield chunk
        except httpx.TransportError as exc:
            raise _transport_error(exc) from exc
        finally:
            self._response.close()

    def __iter__(self) -> Iterator[dict]:
        return self

    def __next__(self) -> dict:
        return next(self._chunks)

    def close(self) -> None:
        self._chunks.close()
        self._response.close()

    def __enter__(self) -> ChunkStream:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class _Completions:
    def __init__(self, client: Client):
        self._client = client

    def create(self, *, model: str, messages: list, stream: bool = False, extra_headers: dict | None = None,
               **params) -> dict | ChunkStream:
        """POST /chat/completions. ``params``: any other request field (temperature, tools...)."""
        http = self._client._http
        request = http.build_request("POST", "chat/completions", json=_body(model, messages, stream, params),
                                     headers=extra_headers)
        try:
            response = http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise _transport_error(exc) from exc
        try:
            if response.status_code >= 400 or not stream:
                body = response.read()
                response.close()
                if response.status_code >= 400:
                    raise _status_error(response, body)
                return _loads(body, response.status_code)
        except httpx.TransportError as exc:
            response.close()
            raise _transport_error(exc) from exc
        return ChunkStream(response)


class _Chat:
    def __init__(self, client):
        self.completions = _Completions(client) if isinstance(client, Client) else _AsyncCompletions(client)


class _BaseClient:
    """What ``Client`` and ``AsyncClient`` share: the settings (arguments, else the environment),
    the logging transport inside and the key on every request. One constructor, so the two
    never disagree on where a setting comes from. Subclasses name their sync or async classes."""

    _transport: type  # LoggingTransport or AsyncLoggingTransport
    _inner: type  # the httpx transport it wraps
    _http_client: type  # the httpx client around it

    def __init__(self, base_url: str | None = None, api_key: str | None = None, *, app: str | None = None,
                 user: str | None = None, tags: dict[str, str] | None = None,
                 timeout: float | httpx.Timeout = DEFAULT_TIMEOUT, db_url: str | None = None):
        base_url, api_key = _settings(base_url, api_key)
        transport = self._transport(self._inner(), app=app, user=user, tags=tags, db_url=db_url)
        self._http = self._http_client(base_url=base_url, transport=transport, timeout=timeout,
                                       headers={"Authorization": f"Bearer {api_key}"})
        self.base_url = base_url
        self.chat = _Chat(self)


class Client(_BaseClient):
    """A SolRouter client that records every call (see the module docstring)."""

    _transport, _inner, _http_client = LoggingTransport, httpx.HTTPTransport, httpx.Client

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


# -- async --------------------------------------------------------------------------------------

class AsyncChunkStream:
    """The chunks of a streamed answer, as dicts (``async for``). ``aclose()`` it if you stop early."""

    def __init__(self, response: httpx.Response):
        self._response = response
        self._chunks = self._read()

    async def _read(self) -> AsyncIterator[dict]:
        splitter = EventSplitter()
        try:
            async for data in self._response.aiter_bytes():
                for chunk in _events(splitter, data):
                    if chunk is None:
                        return
                    yield chunk
        except httpx.TransportError as exc:
            raise _transport_error(exc) from exc
        finally:
            await self._response.aclose()

    def __aiter__(self) -> AsyncIterator[dict]:
        return self

    async def __anext__(self) -> dict:
        return await self._chunks.__anext__()

    async def aclose(self) -> None:
        await self._chunks.aclose()
        await self._response.aclose()

    async def __aenter__(self) -> AsyncChunkStream:
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.aclose()


class _AsyncCompletions:
    def __init__(self, client: AsyncClient):
        self._client = client

    async def create(self, *, model: str, messages: list, stream: bool = False, extra_headers: dict | None = None,
                     **params) -> dict | AsyncChunkStream:
        """POST /chat/completions. ``params``: any other request field (temperature, tools...)."""
        http = self._client._http
        request = http.build_request("POST", "chat/completions", json=_body(model, messages, stream, params),
                                     headers=extra_headers)
        try:
            response = await http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise _transport_error(exc) from exc
        try:
            if response.status_code >= 400 or not stream:
                body = await response.aread()
                await response.aclose()
                if response.status_code >= 400:
                    raise _status_error(response, body)
                return _loads(body, response.status_code)
        except httpx.TransportError as exc:
            await response.aclose()
            raise _transport_error(exc) from exc
        return AsyncChunkStream(response)


class AsyncClient(_BaseClient):
    """The async twin of ``Client``: ``await client.chat.completions.create(...)``."""

    _transport, _inner, _http_client = AsyncLoggingTransport, httpx.AsyncHTTPTransport, httpx.AsyncClient

    async def aclose(self) -> None:
        await self._http.aclose()

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.aclose()
