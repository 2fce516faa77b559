"""The ``openai`` provider: any OpenAI-compatible Chat Completions server, over httpx.

Works with OpenAI itself and with the servers that speak its wire protocol (Ollama, vLLM,
llama.cpp, OpenRouter, LM Studio...). Configure it in ``[options.openai]`` or the environment::

    [options.openai]
    base_url = "http://localhost:11434/v1"   # default: $OPENAI_BASE_URL, else OpenAI
    api_key = "$env:MY_KEY"                   # default: $OPENAI_API_KEY; unset: no auth header

Responses stream by Server-Sent Events (``stream = false`` asks for one JSON response instead).
Rate limits (429), server errors (5xx) and failed connections are retried with exponential
backoff, honouring ``Retry-After``; other failures raise typed errors that say what to fix.

httpx (and asyncio) are imported only when a provider first talks to a server: plugin modules are
imported by ``lash --help`` and ``lash plugins``, and importing them would slow every command's
cold start.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import uuid
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

if TYPE_CHECKING:
    import asyncio

    import httpx

    # Types only: the model event classes load when a provider first streams (every `lash`
    # command imports this plugin).
    from lash import ModelEvent, ModelRequest, ToolCallReady

__all__ = [
    "DEFAULT_BASE_URL",
    "OpenAIOptions",
    "OpenAIProvider",
    "register_providers",
    "wire_options",
]

#: The name the plugin registers its provider under.
PROVIDER_NAME = "openai"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
ENV_BASE_URL = "OPENAI_BASE_URL"
ENV_API_KEY = "OPENAI_API_KEY"

#: How much of a server's error text goes into an error message.
_MAX_SERVER_MESSAGE = 500

#: Longest wait for the end of the body after ``[DONE]`` (see :func:`_drain`).
_DRAIN_TIMEOUT = 1.0


@attrs.frozen(repr=False)
class OpenAIOptions:
    """Options of the ``openai`` plugin (``[options.openai]``)."""

    base_url: str | None = lash.option(
        default=None,
        help=f"server URL up to /v1 (default: ${ENV_BASE_URL}, else {DEFAULT_BASE_URL})",
    )
    api_key: str | None = lash.option(
        default=None,
        secret=True,
        help=f"API key (default: ${ENV_API_KEY}; unset sends no Authorization header)",
    )
    timeout: float = lash.option(
        default=60.0, help="seconds to wait to connect, and between streamed chunks"
    )
    max_retries: int = lash.option(
        default=3, help="retries after a 429, a 5xx or a failed connection"
    )
    backoff: float = lash.option(
        default=0.5, help="first retry delay in seconds, doubled for each retry"
    )
    stream: bool = lash.option(default=True, help="stream responses (Server-Sent Events)")
    structured_output: bool = lash.option(
        default=True,
        help="ask for structured output with response_format json_schema (false: the server "
        "lacks it; a final-answer tool is offered instead)",
    )
    max_tokens_field: str = lash.option(
        default="max_tokens",
        help='the body field model_options.max_tokens goes in: "max_tokens" (most servers) or '
        '"max_completion_tokens" (OpenAI\'s reasoning models)',
        validator=attrs.validators.in_(("max_tokens", "max_completion_tokens")),
    )

    def __repr__(self) -> str:
        # Hand-written so the key never reaches a log line or traceback through repr().
        key = None if self.api_key is None else REDACTED
        return (
            f"OpenAIOptions(base_url={self.base_url!r}, api_key={key!r}, "
            f"timeout={self.timeout!r}, max_retries={self.max_retries!r}, "
            f"backoff={self.backoff!r}, stream={self.stream!r}, "
            f"structured_output={self.structured_output!r}, "
            f"max_tokens_field={self.max_tokens_field!r})"
        )


@attrs.define
class _PartialCall:
    # A tool call being assembled from streamed fragments (keyed by the call's `index`).
    id: str | None = None
    name: str = ""
    arguments: list[str] = attrs.field(factory=list)


def _not_json(name: str) -> float:
    """``json.loads`` reads ``NaN`` and ``Infinity``; JSON has no such values: refused."""
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    """A JSON number as a float, refused beyond a double (``1e999``, read as infinity)."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is beyond what a double holds")
    return value


def _tool_call(call_id: Any, name: Any, raw: str) -> lash.ToolCall:
    """A finished tool call; arguments that are not a JSON object are kept as raw text (so are
    arguments holding NaN, an infinity or a number beyond a double, which are not JSON: kept as
    floats, they made the session's node text that other JSON readers refuse).

    Servers that say less than the API documents get what lash can store: a missing or null id
    one of ours, a number its text; a name that is not a string no name (the turn answers the
    call as an unknown tool, which the model reads, rather than failing)."""
    if type(call_id) is not str or not call_id:
        numeric = isinstance(call_id, int) and not isinstance(call_id, bool)
        call_id = str(call_id) if numeric else f"call_{uuid.uuid4().hex[:24]}"
    ident: str = call_id
    if type(name) is not str:
        name = ""
    if not raw.strip():
        # Tools without parameters: servers send "" (or nothing) for the arguments.
        return lash.ToolCall(id=ident, name=name, arguments={})
    try:
        parsed = json.loads(raw, parse_constant=_not_json, parse_float=_finite)
    except (ValueError, RecursionError):  # RecursionError: nested too deep for the parser
        parsed = None
    if not isinstance(parsed, dict):
        return lash.ToolCall(id=ident, name=name, arguments={}, invalid_arguments=raw)
    return lash.ToolCall(id=ident, name=name, arguments=parsed)


def _usage(data: Any) -> lash.Usage:
    if not isinstance(data, Mapping):
        return lash.Usage()
    details = data.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, Mapping) else None
    return lash.Usage(
        input_tokens=int(data.get("prompt_tokens") or 0),
        output_tokens=int(data.get("completion_tokens") or 0),
        cached_tokens=int(cached or 0),
    )


def _wire_message(message: lash.Message) -> dict[str, Any]:
    """A lash message in Chat Completions shape."""
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    if message.role == "assistant" and message.tool_calls:
        return {
            "role": "assistant",
            # null, not "": some servers reject an empty string beside tool calls.
            "content": message.content or None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {
                        "name": call.name,
                        # Replay what the model actually sent, even when it was not valid JSON,
                        # so it can see (and fix) its own mistake.
                        "arguments": call.invalid_arguments
                        if call.invalid_arguments is not None
                        else json.dumps(dict(call.arguments)),
                    },
                }
                for call in message.tool_calls
            ],
        }
    if message.images:
        # Content parts: the text, then each image as a URL (an https one, or a data: URL).
        parts: list[dict[str, Any]] = []
        if message.content:
            parts.append({"type": "text", "text": message.content})
        for image in message.images:
            url = image.url or f"data:{image.media_type};base64,{image_base64(image)}"
            parts.append({"type": "image_url", "image_url": {"url": url}})
        return {"role": message.role, "content": parts}
    return {"role": message.role, "content": message.content}


def wire_options(
    options: lash.ModelOptions, *, tools: bool, max_tokens_field: str = "max_tokens"
) -> dict[str, Any]:
    """The Chat Completions body fields for ``options`` (``extra`` excepted): ``temperature``,
    ``top_p``, ``max_tokens`` (or ``max_completion_tokens``), ``stop``, ``seed``, and, only when
    tools are offered (the API refuses them otherwise), ``tool_choice`` (a tool's name becomes
    ``{"type": "function", "function": {"name": ...}}``) and ``parallel_tool_calls``."""
    body: dict[str, Any] = {}
    for field in ("temperature", "top_p", "seed"):
        value = getattr(options, field)
        if value is not None:
            body[field] = value
    if options.max_tokens is not None:
        body[max_tokens_field] = options.max_tokens
    if options.stop is not None:
        body["stop"] = list(options.stop)
    if tools:
        choice = options.tool_choice
        if choice in ("auto", "none", "required"):
            body["tool_choice"] = choice
        elif choice is not None:
            body["tool_choice"] = {"type": "function", "function": {"name": choice}}
        if options.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = options.parallel_tool_calls
    return body


def _server_message(body: bytes) -> str:
    """The human-readable part of an error response body."""
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, Mapping):
        error = data.get("error", data)
        if isinstance(error, Mapping):
            for key in ("message", "detail", "error"):
                value = error.get(key)
                if isinstance(value, str):
                    return value[:_MAX_SERVER_MESSAGE]
            if "detail" in error:  # FastAPI-style 422 bodies (vLLM) carry a list of problems
                return json.dumps(error["detail"])[:_MAX_SERVER_MESSAGE]
        elif isinstance(error, str):
            return error[:_MAX_SERVER_MESSAGE]
    if len(text) > _MAX_SERVER_MESSAGE:
        text = text[:_MAX_SERVER_MESSAGE] + "..."
    return text or "(empty response body)"


def _model_ids(body: bytes) -> set[str] | None:
    """The ids of a ``GET /models`` answer (``{"data": [{"id": ...}, ...]}``), or ``None`` when
    the body is not such a list."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    listed = data.get("data") if isinstance(data, Mapping) else None
    if not isinstance(listed, list):
        return None
    return {m["id"] for m in listed if isinstance(m, Mapping) and isinstance(m.get("id"), str)}


async def _drain(lines: AsyncIterator[str]) -> None:
    """Read what follows ``[DONE]`` (the end of the chunked body), so the connection goes back to
    the pool for the next call instead of being closed; a server that keeps the stream open
    after ``[DONE]`` costs at most :data:`_DRAIN_TIMEOUT`, then the connection is dropped."""
    import asyncio  # here, not at the top: see the module docstring

    import httpx

    try:
        async with asyncio.timeout(_DRAIN_TIMEOUT):
            async for _ in lines:
                pass
    except (TimeoutError, httpx.HTTPError):
        pass  # the response is complete; only connection reuse is lost


class OpenAIProvider(HTTPProvider):
    """A provider for an OpenAI-compatible Chat Completions endpoint.

    ``base_url`` and ``api_key`` default to ``$OPENAI_BASE_URL`` (else the OpenAI API) and
    ``$OPENAI_API_KEY``, read when the provider is built. Without a key no ``Authorization``
    header is sent, which local servers expect.

    One ``httpx.AsyncClient`` (one connection pool) is built on first use and shared by every
    call; close it with :meth:`aclose` (or use the provider as an ``async with`` block).
    """

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        stream: bool = True,
        structured_output: bool = True,
        max_tokens_field: str = "max_tokens",
        name: str = PROVIDER_NAME,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self.name = name
        self.base_url = (base_url or env.get(ENV_BASE_URL) or DEFAULT_BASE_URL).rstrip("/")
        #: Structured-output turns send ``response_format`` (the kernel reads this attribute).
        self.supports_output_schema = structured_output
        self.max_tokens_field = max_tokens_field
        # Kept private and out of repr and messages: secrets are never shown or persisted.
        self._api_key = api_key if api_key is not None else (env.get(ENV_API_KEY) or None)
        self.timeout = timeout
        self.max_retries = max(0, max_retries)
        self.backoff = max(0.0, backoff)
        self.stream_responses = stream
        self._client: httpx.AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def from_options(
        cls, options: OpenAIOptions, *, environ: Mapping[str, str] | None = None
    ) -> OpenAIProvider:
        """A provider configured by the plugin's options (``None`` fields fall back to env)."""
        return cls(
            base_url=options.base_url,
            api_key=options.api_key,
            timeout=options.timeout,
            max_retries=options.max_retries,
            backoff=options.backoff,
            stream=options.stream,
            structured_output=options.structured_output,
            max_tokens_field=options.max_tokens_field,
            environ=environ,
        )

    @property
    def url(self) -> str:
        """The Chat Completions endpoint."""
        return f"{self.base_url}/chat/completions"

    @property
    def has_api_key(self) -> bool:
        """Whether an API key is configured (the key itself is never exposed)."""
        return bool(self._api_key)

    def __repr__(self) -> str:
        key = REDACTED if self._api_key else None
        return f"<OpenAIProvider {self.name!r} base_url={self.base_url!r} api_key={key!r}>"

    # ----------------------------------------------------------------------------------------
    # Client lifecycle
    # ----------------------------------------------------------------------------------------

    # ----------------------------------------------------------------------------------------
    # The provider protocol
    # ----------------------------------------------------------------------------------------

    def payload(self, request: ModelRequest) -> dict[str, Any]:
        """The JSON body sent for ``request``: model, messages, tools, the model options
        (:func:`wire_options`), ``response_format`` for structured output (``json_schema``,
        not strict: lash validates the answer itself), then ``request.options.extra`` as given.
        ``stream`` in ``extra`` overrides the provider's setting for this call."""
        body: dict[str, Any] = {
            "model": request.model,
            "messages": [_wire_message(m) for m in request.messages],
        }
        if request.tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": tool.name,
                        "description": tool.description,
                        "parameters": dict(tool.parameters),
                    },
                }
                for tool in request.tools
            ]
        body.update(
            wire_options(
                request.options, tools=bool(request.tools), max_tokens_field=self.max_tokens_field
            )
        )
        output = request.output
        if output is not None:
            schema: dict[str, Any] = {"name": output.name, "schema": dict(output.schema)}
            if output.description:
                schema["description"] = output.description
            body["response_format"] = {"type": "json_schema", "json_schema": schema}
        body.update(request.options.extra)
        stream = bool(body.get("stream", self.stream_responses))
        body["stream"] = stream
        if stream:
            body.setdefault("stream_options", {"include_usage": True})
        else:
            body.pop("stream_options", None)
        return body

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        """Send ``request`` and yield its text deltas, tool calls and finally usage.

        :raises ProviderAuthError: 401/403.
        :raises ModelNotFound: 404.
        :raises ProviderRequestError: 400/422 (with the server's message).
        :raises RateLimited: still 429 after every retry.
        :raises lash.ProviderError: 5xx after every retry, timeouts, unreachable server,
            a malformed or failed stream.
        """
        import httpx  # lazily: see the module docstring

        body = self.payload(request)
        response = await self._send(body, request)
        try:
            if body["stream"]:
                # aclosing: a consumer that stops early closes the parser too, not the GC.
                async with contextlib.aclosing(self._read_stream(response)) as events:
                    async for event in events:
                        yield event
            else:
                await response.aread()
                for event in self._read_json(response.content):
                    yield event
        except httpx.TimeoutException:
            raise ProviderError(
                f"openai provider: {self.url} timed out after {self.timeout:g}s waiting for the "
                "response; raise [options.openai] timeout if the model is slow",
                provider=self.name,
            ) from None
        except httpx.TransportError as exc:
            raise ProviderError(
                f"openai provider: the connection to {self.url} broke mid-response: "
                f"{type(exc).__name__}: {self._redact(str(exc))}",
                provider=self.name,
            ) from None
        finally:
            await response.aclose()

    async def check(self, model: str) -> str:
        """Check that the server answers at ``base_url``, accepts the API key and serves
        ``model``, with one ``GET {base_url}/models`` (free: no tokens are spent, nothing is
        retried); return what was checked. ``lash doctor --online`` calls it.

        :raises ProviderAuthError: the server refuses the key (401, 403).
        :raises ModelNotFound: the server has no ``/models`` (``base_url`` is probably wrong), or
            its list of models does not include ``model``.
        :raises lash.ProviderError: the server cannot be reached, times out, or answers with
            another error or something that is not a list of models.
        """
        import httpx  # lazily: see the module docstring

        url = f"{self.base_url}/models"
        try:
            response = await self._http().get(url, headers={"Accept": "application/json"})
        except httpx.TransportError as exc:
            raise self._unreachable(exc, url, 1) from None
        status = response.status_code
        if status == 404:
            raise ModelNotFound(
                f"openai provider: {url} answered HTTP 404: there is no OpenAI-compatible API at "
                f"{self.base_url}; check base_url / {ENV_BASE_URL} (it usually ends in /v1)",
                provider=self.name,
                status=status,
            )
        if not response.is_success:
            self._raise_for_status(status, response.content, model, url, 1)
        models = _model_ids(response.content)
        if models is None:
            raise ProviderError(
                f"openai provider: {url} answered, but not with a list of models: "
                f"{self._redact(response.text[:200])!r}; check base_url / {ENV_BASE_URL}",
                provider=self.name,
            )
        key = "accepts the API key" if self._api_key else "needs no API key"
        if model in models:
            return f"{self.base_url} answers, {key} and serves model {model!r}"
        if not models:
            return f"{self.base_url} answers and {key}, but lists no models to find {model!r} in"
        shown = ", ".join(sorted(models)[:10]) + (", ..." if len(models) > 10 else "")
        raise ModelNotFound(
            f"openai provider: {self.base_url} {key} but does not serve model {model!r} (it "
            f"serves: {shown}); set `model` in lash.toml, or pass --model",
            provider=self.name,
        )

    # ----------------------------------------------------------------------------------------
    # Sending, retrying, errors
    # ----------------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        headers = {"User-Agent": "lash", "Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _timed_out(self) -> ProviderError:
        return ProviderError(
            f"openai provider: {self.url} timed out after {self.timeout:g}s; raise "
            "[options.openai] timeout if the model is slow, or check the server",
            provider=self.name,
        )

    def _unreachable(self, exc: Exception, url: str, attempts: int) -> ProviderError:
        import httpx  # here, not at the top: see the module docstring

        what = (
            f"timed out connecting after {self.timeout:g}s"
            if isinstance(exc, httpx.TimeoutException)
            else f"{type(exc).__name__}: {self._redact(os_reason(exc)) or 'connection failed'}"
        )
        return ProviderError(
            f"openai provider: cannot reach {url} ({what}) after {attempts} attempt(s); check "
            f"that the server is running and base_url / {ENV_BASE_URL} is right",
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
                f"openai provider: {where}, refusing the credentials: {detail}{hint}; check "
                f"{ENV_API_KEY} / [options.openai] api_key",
                provider=self.name,
                status=status,
            )
        if status == 404:
            raise ModelNotFound(
                f"openai provider: model {model!r} or the endpoint was not found at "
                f"{self.base_url} (HTTP 404: {detail}); check the model name and base_url / "
                f"{ENV_BASE_URL}",
                provider=self.name,
                status=status,
            )
        if status in (400, 422):
            raise ProviderRequestError(
                f"openai provider: {where}, rejecting the request: {detail}",
                provider=self.name,
                status=status,
            )
        if status == 429:
            raise RateLimited(
                f"openai provider: {where} (rate limited) on all {attempts} attempt(s): "
                f"{detail}; wait and try again, or lower the request rate",
                provider=self.name,
                status=status,
            )
        retried = f" on all {attempts} attempt(s)" if status >= 500 else ""
        raise ProviderError(
            f"openai provider: {where}{retried}: {detail}", provider=self.name, status=status
        )

    def _reported_error(self, data: Mapping[str, Any], when: str) -> ProviderError:
        # An error object inside a 200 response (OpenRouter and proxies do this).
        error = data.get("error")
        message = error.get("message") if isinstance(error, Mapping) else error
        return ProviderError(
            f"openai provider: {self.url} reported an error {when}: {self._redact(str(message))}",
            provider=self.name,
        )

    # ----------------------------------------------------------------------------------------
    # Reading responses
    # ----------------------------------------------------------------------------------------

    async def _read_stream(self, response: httpx.Response) -> AsyncGenerator[ModelEvent, None]:
        """Parse Server-Sent Events until ``[DONE]`` (or the end of the body)."""
        calls: dict[int, _PartialCall] = {}
        usage = lash.Usage()
        finish: str | None = None
        done = False
        lines = response.aiter_lines()
        async for line in lines:
            # Only `data:` lines matter; comments (":"), `event:` and blank lines are framing.
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                done = True
                break
            try:
                chunk = json.loads(data)
            except ValueError:
                raise ProviderError(
                    f"openai provider: {self.url} sent a malformed stream event: {data[:200]!r}",
                    provider=self.name,
                ) from None
            if not isinstance(chunk, Mapping):
                continue
            if chunk.get("error") is not None:
                raise self._reported_error(chunk, "mid-stream")
            if chunk.get("usage"):
                usage = _usage(chunk["usage"])
            # One completion per request (n=1): read the first choice only.
            choices = chunk.get("choices") or []
            choice = choices[0] if choices and isinstance(choices[0], Mapping) else {}
            delta = choice.get("delta") or {}
            content = delta.get("content")
            if content:
                yield lash.TextDelta(content)
            for position, fragment in enumerate(delta.get("tool_calls") or []):
                if not isinstance(fragment, Mapping):
                    continue
                index = fragment.get("index", position)
                partial = calls.setdefault(index, _PartialCall())
                if fragment.get("id"):
                    partial.id = fragment["id"]
                function = fragment.get("function") or {}
                if function.get("name") and not partial.name:
                    partial.name = function["name"]
                if function.get("arguments"):
                    partial.arguments.append(function["arguments"])
            if choice.get("finish_reason"):
                finish = choice["finish_reason"]
                # The calls are complete at the finish; usage may still follow in its own chunk.
                for event in self._ready(calls):
                    yield event
        if done:
            await _drain(lines)
        # Servers that end the stream without a finish reason still get their calls delivered.
        for event in self._ready(calls):
            yield event
        yield lash.ModelDone(usage=usage, finish_reason=finish or "stop")

    def _ready(self, calls: dict[int, _PartialCall]) -> list[ToolCallReady]:
        events = [
            lash.ToolCallReady(_tool_call(p.id, p.name, "".join(p.arguments)))
            for _, p in sorted(calls.items())
        ]
        calls.clear()
        return events

    def _read_json(self, content: bytes) -> list[ModelEvent]:
        """Parse a non-streamed Chat Completions response."""
        try:
            data = json.loads(content)
        except ValueError:
            raise ProviderError(
                f"openai provider: {self.url} sent a response that is not JSON: {content[:200]!r}",
                provider=self.name,
            ) from None
        if not isinstance(data, Mapping):
            raise ProviderError(
                f"openai provider: {self.url} sent an unexpected response: {str(data)[:200]}",
                provider=self.name,
            )
        if data.get("error") is not None:
            raise self._reported_error(data, "instead of a completion")
        choices = data.get("choices") or []
        choice = choices[0] if choices and isinstance(choices[0], Mapping) else {}
        message = choice.get("message") or {}
        events: list[ModelEvent] = []
        if message.get("content"):
            events.append(lash.TextDelta(message["content"]))
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {}
            arguments = function.get("arguments")
            raw = arguments if isinstance(arguments, str) else json.dumps(arguments or {})
            events.append(
                lash.ToolCallReady(_tool_call(call.get("id"), function.get("name", ""), raw))
            )
        events.append(
            lash.ModelDone(
                usage=_usage(data.get("usage")),
                finish_reason=choice.get("finish_reason") or "stop",
            )
        )
        return events


lash_plugin = lash.PluginMeta(
    options=OpenAIOptions,
    description="OpenAI-compatible Chat Completions (OpenAI, Ollama, vLLM, llama.cpp, ...).",
)


@lash.hookimpl
def register_providers(register: lash.RegisterProvider, options: OpenAIOptions | None) -> None:
    """Register the ``openai`` provider (no network I/O until its first call)."""
    register(PROVIDER_NAME, OpenAIProvider.from_options(options or OpenAIOptions()))
