"""The ``anthropic`` provider: Anthropic's Messages API (``POST /v1/messages``), over httpx.

Opt-in: name it in ``plugins`` to enable it. Configure it in ``[options.anthropic]`` or the
environment::

    [options.anthropic]
    api_key = "$env:MY_KEY"        # default: $ANTHROPIC_API_KEY
    base_url = "http://proxy/v1"   # default: $ANTHROPIC_BASE_URL, else Anthropic
    max_tokens = 4096              # the API requires a limit; a request option wins

Responses stream by Server-Sent Events (``stream = false`` asks for one JSON message instead).
Rate limits (429), server errors (5xx, including 529 "overloaded") and failed connections are
retried with exponential backoff, honouring ``retry-after``; other failures raise typed errors
that say what to fix. httpx is imported only on the first call, as in the ``openai`` provider.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, NoReturn

import attrs

import lash
from lash import (
    ModelNotFound,
    ProviderAuthError,
    ProviderError,
    ProviderRequestError,
    RateLimited,
)
from lash_plugins_builtin._http_provider import REDACTED, HTTPProvider, image_base64, os_reason
from lash_plugins_builtin.openai import _server_message, _tool_call

if TYPE_CHECKING:
    import asyncio

    import httpx

    # Types only: the model event classes load when a provider first streams (every `lash`
    # command imports this plugin).
    from lash import ModelEvent, ModelRequest

__all__ = [
    "ANTHROPIC_VERSION",
    "DEFAULT_BASE_URL",
    "AnthropicOptions",
    "AnthropicProvider",
    "register_providers",
    "wire_options",
]

#: The name the plugin registers its provider under.
PROVIDER_NAME = "anthropic"
DEFAULT_BASE_URL = "https://api.anthropic.com/v1"
ENV_BASE_URL = "ANTHROPIC_BASE_URL"
ENV_API_KEY = "ANTHROPIC_API_KEY"
#: The ``anthropic-version`` header sent with every request.
ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096


@attrs.frozen(repr=False)
class AnthropicOptions:
    """Options of the ``anthropic`` plugin (``[options.anthropic]``)."""

    base_url: str | None = lash.option(
        default=None,
        help=f"server URL up to /v1 (default: ${ENV_BASE_URL}, else {DEFAULT_BASE_URL})",
    )
    api_key: str | None = lash.option(
        default=None, secret=True, help=f"API key (default: ${ENV_API_KEY})"
    )
    max_tokens: int = lash.option(
        default=DEFAULT_MAX_TOKENS,
        help="output token limit sent with every request (the API requires one)",
    )
    timeout: float = lash.option(
        default=60.0, help="seconds to wait to connect, and between streamed events"
    )
    max_retries: int = lash.option(
        default=3, help="retries after a 429, a 5xx (529: overloaded) or a failed connection"
    )
    backoff: float = lash.option(
        default=0.5, help="first retry delay in seconds, doubled for each retry"
    )
    stream: bool = lash.option(default=True, help="stream responses (Server-Sent Events)")

    def __repr__(self) -> str:
        # Hand-written so the key never reaches a log line or traceback through repr().
        key = None if self.api_key is None else REDACTED
        return (
            f"AnthropicOptions(base_url={self.base_url!r}, api_key={key!r}, "
            f"max_tokens={self.max_tokens!r}, timeout={self.timeout!r}, "
            f"max_retries={self.max_retries!r}, backoff={self.backoff!r}, "
            f"stream={self.stream!r})"
        )


def _usage(data: Any, usage: lash.Usage | None = None) -> lash.Usage:
    """lash usage from an Anthropic ``usage`` object, updating ``usage`` with the fields present
    (``message_delta`` repeats some fields of ``message_start``, cumulatively).

    Anthropic's ``input_tokens`` excludes cached input: lash's ``input_tokens`` is the whole
    prompt (``input_tokens + cache_creation_input_tokens + cache_read_input_tokens``) and its
    ``cached_tokens`` the part read from the cache, as for the ``openai`` provider.
    """
    base = usage or lash.Usage()
    if not isinstance(data, Mapping):
        return base
    fresh = int(data.get("input_tokens") or 0)
    written = int(data.get("cache_creation_input_tokens") or 0)
    read = int(data.get("cache_read_input_tokens") or 0)
    has_input = any(
        k in data
        for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    )
    return lash.Usage(
        input_tokens=fresh + written + read if has_input else base.input_tokens,
        output_tokens=int(data["output_tokens"] or 0)
        if "output_tokens" in data
        else base.output_tokens,
        cached_tokens=read if has_input else base.cached_tokens,
    )


def _blocks(message: lash.Message) -> list[dict[str, Any]]:
    """The content blocks of one lash message."""
    if message.role == "tool":
        return [
            {"type": "tool_result", "tool_use_id": message.tool_call_id, "content": message.content}
        ]
    blocks: list[dict[str, Any]] = []
    for image in message.images:  # images first, then the text about them (Anthropic's advice)
        if image.url is not None:
            source: dict[str, Any] = {"type": "url", "url": image.url}
        else:
            source = {
                "type": "base64",
                "media_type": image.media_type,
                "data": image_base64(image),
            }
        blocks.append({"type": "image", "source": source})
    if message.content:  # the API rejects empty text blocks
        blocks.append({"type": "text", "text": message.content})
    for call in message.tool_calls:
        # `input` must be an object: arguments that were not one are sent as {}; the tool's
        # error result (which quotes them) tells the model what went wrong.
        blocks.append(
            {"type": "tool_use", "id": call.id, "name": call.name, "input": dict(call.arguments)}
        )
    return blocks


def wire_messages(messages: tuple[lash.Message, ...]) -> tuple[str | None, list[dict[str, Any]]]:
    """``(system, messages)`` in Messages API shape: system messages become the top-level
    ``system`` string; tool results become ``tool_result`` blocks of a user message; consecutive
    messages of one role are merged (the API wants user and assistant turns to alternate)."""
    system = "\n\n".join(m.content for m in messages if m.role == "system") or None
    out: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system":
            continue
        role = "assistant" if message.role == "assistant" else "user"
        blocks = _blocks(message)
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    for entry in out:
        content = entry["content"]
        # A lone text block is sent as the plain-string shorthand.
        if len(content) == 1 and content[0]["type"] == "text":
            entry["content"] = content[0]["text"]
        elif not content:
            entry["content"] = ""
    return system, out


def wire_options(
    options: lash.ModelOptions, *, tools: bool, provider: str = PROVIDER_NAME
) -> dict[str, Any]:
    """The Messages API body fields for ``options`` (``extra`` excepted): ``max_tokens``,
    ``temperature`` (the API takes 0 to 1), ``top_p``, ``stop`` as ``stop_sequences``, and,
    only when tools are offered, ``tool_choice``: ``auto`` → ``{"type": "auto"}``, ``none`` →
    ``{"type": "none"}``, ``required`` → ``{"type": "any"}``, a tool's name → ``{"type":
    "tool", "name": ...}``, with ``parallel_tool_calls = false`` as its
    ``disable_parallel_tool_use``.

    :raises ProviderRequestError: for ``seed`` (the Messages API has none) and a
        ``temperature`` above 1, naming the field, rather than dropping them silently.
    """
    body: dict[str, Any] = {}
    if options.seed is not None:
        raise ProviderRequestError(
            "anthropic provider: model_options.seed is not supported (the Messages API has no "
            "seed); unset it for this provider",
            provider=provider,
        )
    if options.temperature is not None:
        if options.temperature > 1:
            raise ProviderRequestError(
                "anthropic provider: model_options.temperature must be between 0 and 1 for the "
                f"Messages API, got {options.temperature!r}",
                provider=provider,
            )
        body["temperature"] = options.temperature
    if options.max_tokens is not None:
        body["max_tokens"] = options.max_tokens
    if options.top_p is not None:
        body["top_p"] = options.top_p
    if options.stop is not None:
        body["stop_sequences"] = list(options.stop)
    if tools and (options.tool_choice is not None or options.parallel_tool_calls is False):
        kinds = {"auto": "auto", "none": "none", "required": "any"}
        choice = options.tool_choice or "auto"
        tool_choice: dict[str, Any] = (
            {"type": kinds[choice]} if choice in kinds else {"type": "tool", "name": choice}
        )
        if options.parallel_tool_calls is False and choice != "none":
            tool_choice["disable_parallel_tool_use"] = True
        body["tool_choice"] = tool_choice
    return body


@attrs.define
class _Block:
    # A content block being streamed (keyed by its `index`).
    type: str
    id: str | None = None
    name: str = ""
    json: list[str] = attrs.field(factory=list)


class AnthropicProvider(HTTPProvider):
    """A provider for Anthropic's Messages API.

    ``base_url`` and ``api_key`` default to ``$ANTHROPIC_BASE_URL`` (else the Anthropic API)
    and ``$ANTHROPIC_API_KEY``, read when the provider is built; the key is sent as
    ``x-api-key``, with ``anthropic-version: 2023-06-01``. One ``httpx.AsyncClient`` is built on
    first use and shared by every call; close it with :meth:`aclose` (or ``async with``).
    """

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        timeout: float = 60.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        stream: bool = True,
        name: str = PROVIDER_NAME,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self.name = name
        self.base_url = (base_url or env.get(ENV_BASE_URL) or DEFAULT_BASE_URL).rstrip("/")
        self._api_key = api_key if api_key is not None else (env.get(ENV_API_KEY) or None)
        self.max_tokens = max_tokens
        self.timeout = timeout
        self.max_retries = max(0, max_retries)
        self.backoff = max(0.0, backoff)
        self.stream_responses = stream
        self._client: httpx.AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def from_options(
        cls, options: AnthropicOptions, *, environ: Mapping[str, str] | None = None
    ) -> AnthropicProvider:
        """A provider configured by the plugin's options (``None`` fields fall back to env)."""
        return cls(
            base_url=options.base_url,
            api_key=options.api_key,
            max_tokens=options.max_tokens,
            timeout=options.timeout,
            max_retries=options.max_retries,
            backoff=options.backoff,
            stream=options.stream,
            environ=environ,
        )

    @property
    def url(self) -> str:
        """The Messages endpoint."""
        return f"{self.base_url}/messages"

    @property
    def has_api_key(self) -> bool:
        """Whether an API key is configured (the key itself is never exposed)."""
        return bool(self._api_key)

    def __repr__(self) -> str:
        key = REDACTED if self._api_key else None
        return f"<AnthropicProvider {self.name!r} base_url={self.base_url!r} api_key={key!r}>"

    # ----------------------------------------------------------------------------------------
    # The provider protocol
    # ----------------------------------------------------------------------------------------

    def payload(self, request: ModelRequest) -> dict[str, Any]:
        """The JSON body sent for ``request``: model, ``max_tokens``, ``system``, messages,
        tools, the model options (:func:`wire_options`; they win, ``max_tokens`` included),
        then ``request.options.extra`` as given (``stream`` there overrides the provider's
        setting). Structured output reaches this provider as a final-answer tool."""
        system, messages = wire_messages(request.messages)
        body: dict[str, Any] = {
            "model": request.model,
            "max_tokens": self.max_tokens,
            "messages": messages,
        }
        if system is not None:
            body["system"] = system
        if request.tools:
            body["tools"] = [
                {
                    "name": tool.name,
                    "description": tool.description,
                    "input_schema": dict(tool.parameters),
                }
                for tool in request.tools
            ]
        body.update(wire_options(request.options, tools=bool(request.tools), provider=self.name))
        body.update(request.options.extra)
        body["stream"] = bool(body.get("stream", self.stream_responses))
        return body

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        """Send ``request`` and yield its text deltas, tool calls and finally usage.

        :raises ProviderAuthError: 401/403.
        :raises ModelNotFound: 404.
        :raises ProviderRequestError: 400/413/422 (with the server's message).
        :raises RateLimited: still 429 after every retry.
        :raises lash.ProviderError: 5xx (529: overloaded) after every retry, timeouts, an
            unreachable server, an ``error`` event, a malformed stream.
        """
        import httpx  # lazily: see the module docstring

        body = self.payload(request)
        response = await self._send(body, request)
        try:
            if body["stream"]:
                async with contextlib.aclosing(self._read_stream(response)) as events:
                    async for event in events:
                        yield event
            else:
                await response.aread()
                for event in self._read_json(response.content):
                    yield event
        except httpx.TimeoutException:
            raise ProviderError(
                f"anthropic provider: {self.url} timed out after {self.timeout:g}s waiting for "
                "the response; raise [options.anthropic] timeout if the model is slow",
                provider=self.name,
            ) from None
        except httpx.TransportError as exc:
            raise ProviderError(
                f"anthropic provider: the connection to {self.url} broke mid-response: "
                f"{type(exc).__name__}: {self._redact(str(exc))}",
                provider=self.name,
            ) from None
        finally:
            await response.aclose()

    async def check(self, model: str) -> str:
        """Check that the server answers at ``base_url``, accepts the API key and knows
        ``model``, with one ``GET {base_url}/models/{model}`` (free: no tokens are spent,
        nothing is retried); return what was checked. ``lash doctor --online`` calls it.

        :raises ProviderAuthError: the server refuses the key (401, 403).
        :raises ModelNotFound: the server does not know ``model`` (404).
        :raises lash.ProviderError: the server cannot be reached or answers another error.
        """
        import urllib.parse

        import httpx  # lazily: see the module docstring

        url = f"{self.base_url}/models/{urllib.parse.quote(model, safe='')}"
        try:
            response = await self._http().get(url, headers={"Accept": "application/json"})
        except httpx.TransportError as exc:
            raise ProviderError(
                f"anthropic provider: cannot reach {url} ({type(exc).__name__}: "
                f"{self._redact(os_reason(exc)) or 'connection failed'}); check the server "
                f"and base_url / {ENV_BASE_URL}",
                provider=self.name,
            ) from None
        if not response.is_success:
            self._raise_for_status(response.status_code, response.content, model, url, 1)
        return f"{self.base_url} answers, accepts the API key and serves model {model!r}"

    # ----------------------------------------------------------------------------------------
    # Sending, retrying, errors
    # ----------------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        headers = {
            "User-Agent": "lash",
            "Content-Type": "application/json",
            "anthropic-version": ANTHROPIC_VERSION,
        }
        if self._api_key:
            headers["x-api-key"] = self._api_key
        return headers

    def _timed_out(self) -> ProviderError:
        return ProviderError(
            f"anthropic provider: {self.url} timed out after {self.timeout:g}s; raise "
            "[options.anthropic] timeout if the model is slow, or check the server",
            provider=self.name,
        )

    def _unreachable(self, exc: Exception, url: str, attempts: int) -> ProviderError:
        return ProviderError(
            f"anthropic provider: cannot reach {url} ({type(exc).__name__}: "
            f"{self._redact(os_reason(exc)) or 'connection failed'}) after {attempts} "
            f"attempt(s); check the server and base_url / {ENV_BASE_URL}",
            provider=self.name,
        )

    def _raise_for_status(
        self, status: int, content: bytes, model: str, url: str, attempts: int
    ) -> NoReturn:
        detail = self._redact(_server_message(content))
        where = f"{url} answered HTTP {status}"
        if status in (401, 403):
            hint = "" if self._api_key else f" (no API key is set: {ENV_API_KEY} is unset)"
            raise ProviderAuthError(
                f"anthropic provider: {where}, refusing the credentials: {detail}{hint}; check "
                f"{ENV_API_KEY} / [options.anthropic] api_key",
                provider=self.name,
                status=status,
            )
        if status == 404:
            raise ModelNotFound(
                f"anthropic provider: model {model!r} or the endpoint was not found at "
                f"{self.base_url} (HTTP 404: {detail}); check the model name and base_url / "
                f"{ENV_BASE_URL}",
                provider=self.name,
                status=status,
            )
        if status in (400, 413, 422):
            raise ProviderRequestError(
                f"anthropic provider: {where}, rejecting the request: {detail}",
                provider=self.name,
                status=status,
            )
        if status == 429:
            raise RateLimited(
                f"anthropic provider: {where} (rate limited) on all {attempts} attempt(s): "
                f"{detail}; wait and try again, or lower the request rate",
                provider=self.name,
                status=status,
            )
        retried = f" on all {attempts} attempt(s)" if status >= 500 else ""
        overloaded = " (Anthropic is overloaded)" if status == 529 else ""
        raise ProviderError(
            f"anthropic provider: {where}{overloaded}{retried}: {detail}",
            provider=self.name,
            status=status,
        )

    def _malformed(self, what: str) -> ProviderError:
        return ProviderError(
            f"anthropic provider: {self.url} sent a malformed stream: {self._redact(what)[:200]}",
            provider=self.name,
        )

    # ----------------------------------------------------------------------------------------
    # Reading responses
    # ----------------------------------------------------------------------------------------

    async def _read_stream(self, response: httpx.Response) -> AsyncGenerator[ModelEvent, None]:
        """Parse the Messages API events until ``message_stop``."""
        blocks: dict[int, _Block] = {}
        usage = lash.Usage()
        stop_reason: str | None = None
        started = stopped = False
        async for line in response.aiter_lines():
            # The `event:` line repeats the data's `type`; only `data:` lines are read.
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            try:
                event = json.loads(data)
            except ValueError:
                raise self._malformed(f"an event that is not JSON: {data!r}") from None
            if not isinstance(event, Mapping) or not isinstance(event.get("type"), str):
                raise self._malformed(f"an event without a type: {data!r}")
            kind = event["type"]
            if kind == "error":
                error = event.get("error")
                error = error if isinstance(error, Mapping) else {}
                raise ProviderError(
                    f"anthropic provider: {self.url} reported an error mid-stream: "
                    f"{error.get('type', 'error')}: {self._redact(str(error.get('message')))}",
                    provider=self.name,
                )
            if kind == "message_start":
                started = True
                message = event.get("message")
                if isinstance(message, Mapping):
                    usage = _usage(message.get("usage"), usage)
            elif kind == "content_block_start":
                block = event.get("content_block")
                if not isinstance(block, Mapping):
                    raise self._malformed(f"a content block without content_block: {data!r}")
                index = int(event.get("index") or 0)
                blocks[index] = _Block(
                    type=str(block.get("type")), id=block.get("id"), name=block.get("name") or ""
                )
                if block.get("type") == "text" and block.get("text"):
                    yield lash.TextDelta(block["text"])
            elif kind == "content_block_delta":
                delta = event.get("delta")
                index = int(event.get("index") or 0)
                if not isinstance(delta, Mapping) or index not in blocks:
                    raise self._malformed(f"a delta for no open content block: {data!r}")
                if delta.get("type") == "text_delta" and delta.get("text"):
                    yield lash.TextDelta(delta["text"])
                elif delta.get("type") == "input_json_delta":
                    blocks[index].json.append(str(delta.get("partial_json") or ""))
                # Other deltas (thinking, signatures, citations) carry nothing lash models.
            elif kind == "content_block_stop":
                block_done = blocks.pop(int(event.get("index") or 0), None)
                if block_done is not None and block_done.type == "tool_use":
                    raw = "".join(block_done.json)
                    yield lash.ToolCallReady(_tool_call(block_done.id, block_done.name, raw))
            elif kind == "message_delta":
                delta = event.get("delta")
                if isinstance(delta, Mapping) and delta.get("stop_reason"):
                    stop_reason = str(delta["stop_reason"])
                usage = _usage(event.get("usage"), usage)
            elif kind == "message_stop":
                stopped = True
                break
            # "ping" and event types added later are ignored, as the API reference asks.
        if not started or not stopped:
            missing = "message_start" if not started else "message_stop"
            raise self._malformed(f"the stream ended without {missing}")
        yield lash.ModelDone(usage=usage, finish_reason=stop_reason or "end_turn")

    def _read_json(self, content: bytes) -> list[ModelEvent]:
        """Parse a non-streamed Message."""
        try:
            data = json.loads(content)
        except ValueError:
            data = None
        if not isinstance(data, Mapping) or not isinstance(data.get("content"), list):
            if isinstance(data, Mapping) and data.get("type") == "error":
                raise ProviderError(
                    f"anthropic provider: {self.url} reported an error: "
                    f"{self._redact(_server_message(content))}",
                    provider=self.name,
                )
            raise ProviderError(
                f"anthropic provider: {self.url} sent a response that is not a message: "
                f"{self._redact(content[:200].decode('utf-8', 'replace'))!r}",
                provider=self.name,
            )
        events: list[ModelEvent] = []
        for block in data["content"]:
            if not isinstance(block, Mapping):
                continue
            if block.get("type") == "text" and block.get("text"):
                events.append(lash.TextDelta(block["text"]))
            elif block.get("type") == "tool_use":
                arguments = block.get("input")
                raw = json.dumps(arguments) if arguments is not None else ""
                events.append(
                    lash.ToolCallReady(_tool_call(block.get("id"), block.get("name", ""), raw))
                )
        events.append(
            lash.ModelDone(
                usage=_usage(data.get("usage")),
                finish_reason=str(data.get("stop_reason") or "end_turn"),
            )
        )
        return events


lash_plugin = lash.PluginMeta(
    options=AnthropicOptions,
    description="Anthropic's Messages API (Claude models).",
    opt_in=True,
)


@lash.hookimpl
def register_providers(register: lash.RegisterProvider, options: AnthropicOptions | None) -> None:
    """Register the ``anthropic`` provider (no network I/O until its first call)."""
    register(PROVIDER_NAME, AnthropicProvider.from_options(options or AnthropicOptions()))
