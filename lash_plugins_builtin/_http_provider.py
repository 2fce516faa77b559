"""What the HTTP model providers (``openai``, ``anthropic``) share: an httpx client bound to the
event loop that uses it, the retry loop of a request, and the helpers their error messages use.

Each provider says what differs: its auth headers (:meth:`HTTPProvider._headers`), its endpoint
(``url``) and the words of its errors (``_timed_out``, ``_unreachable``, ``_raise_for_status``).
httpx and asyncio are imported only when a provider first talks to a server (see the module
docstring of ``lash_plugins_builtin.openai``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NoReturn, Self

import lash
from lash import ProviderError

if TYPE_CHECKING:
    import asyncio

    import httpx

    from lash import ModelRequest

#: Longest ``Retry-After`` wait honoured; a server asking for more is retried after this long.
MAX_RETRY_AFTER = 60.0

REDACTED = "***"


def image_base64(image: lash.Image) -> str:
    """An image's bytes as base64 text, for a request body (a prompt's images carry their bytes,
    or a URL)."""
    if image.data is None:
        raise lash.ImageError(f"{image!r} has no bytes to send (neither loaded nor a URL)")
    import base64  # here: every `lash` command loads this module, few send an image

    return base64.b64encode(image.data).decode("ascii")


def os_reason(exc: BaseException) -> str:
    """What the operating system said, for a failed connection: httpx's message for a refused
    connection is "All connection attempts failed"; the OS error it wraps says "Connection
    refused" (or "Name or service not known"...)."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno is not None and cause.errno > 0:
            return os.strerror(cause.errno)  # asyncio words it "Connect call failed (...)"
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror  # DNS errors: negative codes that os.strerror does not know
        cause = cause.__cause__ or cause.__context__
    return str(exc)


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms``, or ``Retry-After`` as seconds or
    an HTTP date), or ``None``."""
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            return max(0.0, float(value) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        import email.utils  # only to parse a Retry-After date

        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class HTTPProvider:
    """The client and the retrying ``POST`` of a provider that speaks JSON over HTTP."""

    name: str
    base_url: str
    timeout: float
    max_retries: int
    backoff: float
    _api_key: str | None
    _client: httpx.AsyncClient | None
    _client_loop: asyncio.AbstractEventLoop | None

    @property
    def url(self) -> str:
        """The endpoint requests are posted to."""
        raise NotImplementedError

    def _headers(self) -> dict[str, str]:
        """The headers of every request (auth included)."""
        raise NotImplementedError

    def _timed_out(self) -> ProviderError:
        """The error of a request that timed out once sent (never retried)."""
        raise NotImplementedError

    def _unreachable(self, exc: Exception, url: str, attempts: int) -> ProviderError:
        """The error of a server that could not be reached in ``attempts`` attempts."""
        raise NotImplementedError

    def _raise_for_status(
        self, status: int, content: bytes, model: str, url: str, attempts: int
    ) -> NoReturn:
        """Raise the typed error of an HTTP error answer."""
        raise NotImplementedError

    # -- the client -----------------------------------------------------------------------------

    def _http(self) -> httpx.AsyncClient:
        import asyncio  # here, not at the top: see the module docstring

        loop = asyncio.get_running_loop()
        if self._client is not None and self._client_loop is not loop:
            # The pool's connections belong to the loop that opened them; reusing them from
            # another loop fails with "Event loop is closed". That loop can no longer close them,
            # so drop the client (its sockets are freed when it is garbage-collected). Hosts
            # avoid this by calling `aclose()` before their event loop ends.
            self._client = None
        if self._client is None:
            import httpx  # lazily: see the module docstring

            self._client = httpx.AsyncClient(
                headers=self._headers(), timeout=httpx.Timeout(self.timeout)
            )
            self._client_loop = loop
        return self._client

    async def aclose(self) -> None:
        """Close the HTTP client and its connections (a later call builds a new one).

        Call it on the event loop that used the provider, before that loop ends.
        """
        import asyncio  # here, not at the top: see the module docstring

        client, self._client = self._client, None
        if client is not None and self._client_loop is asyncio.get_running_loop():
            await client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _redact(self, text: str) -> str:
        # Servers sometimes echo the key they refused; never let it into a message.
        return text.replace(self._api_key, REDACTED) if self._api_key else text

    # -- sending --------------------------------------------------------------------------------

    async def _send(self, body: dict[str, Any], request: ModelRequest) -> httpx.Response:
        """POST the body; retry 429, 5xx and failed connections; return a 2xx response whose
        body is not read yet (the caller closes it)."""
        import asyncio  # here, not at the top: see the module docstring

        import httpx

        client = self._http()
        accept = "text/event-stream" if body["stream"] else "application/json"
        attempts = self.max_retries + 1
        for attempt in range(1, attempts + 1):
            last = attempt == attempts
            delay = self.backoff * 2 ** (attempt - 1)
            try:
                response = await client.send(
                    client.build_request("POST", self.url, json=body, headers={"Accept": accept}),
                    stream=True,
                )
            except (httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout):
                # Not retried: the server got the request and may still be generating; a retry
                # would pay for the same tokens again.
                raise self._timed_out() from None
            except httpx.TransportError as exc:
                # Connection refused or reset, DNS failure, connect timeout: nothing was
                # generated, so retrying is safe.
                if not last:
                    await asyncio.sleep(delay)
                    continue
                raise self._unreachable(exc, self.url, attempts) from None
            if response.is_success:
                return response
            try:
                await response.aread()
            finally:
                await response.aclose()
            status = response.status_code
            if (status == 429 or status >= 500) and not last:
                wait = retry_after(response.headers)
                await asyncio.sleep(min(wait, MAX_RETRY_AFTER) if wait is not None else delay)
                continue
            self._raise_for_status(status, response.content, request.model, self.url, attempts)
        raise AssertionError("unreachable")  # the loop always returns or raises
