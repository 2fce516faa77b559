"""The ``anthropic`` builtin provider against a real Messages API server on 127.0.0.1.

Expected request and response shapes are those of Anthropic's published Messages API reference
(``POST /v1/messages``, its streaming event types, ``usage`` with cache tokens, ``error``
objects), not of the implementation.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from anthropic_wire_server import AnthropicWireServer, Reply, WireToolCall

import lash
import lash_plugins_builtin.anthropic as anthropic_plugin
from lash import (
    ModelDone,
    ModelEvent,
    ModelRequest,
    Provider,
    ProviderAuthError,
    ProviderError,
    RateLimited,
    TextDelta,
    ToolCallReady,
    ToolSpec,
    collect_response,
)
from lash_plugins_builtin.anthropic import AnthropicOptions, AnthropicProvider

KEY = "sk-ant-test-SECRET-0123456789"
MODEL = "claude-test"
WEATHER = ToolSpec(
    name="get_weather",
    description="Current weather of a city.",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
)
OVERLOADED = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}


def ask(text: str = "hi", **options: Any) -> ModelRequest:
    return ModelRequest(model=MODEL, messages=(lash.Message("user", text),), options=options)


@pytest.fixture
def server() -> Iterator[AnthropicWireServer]:
    with AnthropicWireServer() as wire:
        yield wire


@pytest.fixture
async def provider(server: AnthropicWireServer) -> AsyncIterator[AnthropicProvider]:
    # Explicit environ: the developer's own ANTHROPIC_* variables must not leak into tests.
    anthropic = AnthropicProvider(
        base_url=server.base_url, api_key=KEY, backoff=0.01, timeout=5.0, environ={}
    )
    async with anthropic:
        yield anthropic


async def events(provider: AnthropicProvider, request: ModelRequest) -> list[ModelEvent]:
    return [event async for event in provider.stream(request)]


def test_anthropic_provider_satisfies_the_provider_protocol() -> None:
    """An AnthropicProvider is a Provider, talking to the Anthropic API by default."""
    provider = AnthropicProvider(environ={})
    assert isinstance(provider, Provider)
    assert provider.url == "https://api.anthropic.com/v1/messages"


# --------------------------------------------------------------------------------------------
# Requests and responses
# --------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_tool_use_round_trip(
    server: AnthropicWireServer, provider: AnthropicProvider
) -> None:
    """The system prompt goes top-level, tools with input_schema, max_tokens by default; a
    streamed tool_use block comes back as one call; the next request carries the assistant's
    tool_use block and the tool_result block in a user message; the headers are the API's."""
    server.push(
        Reply(
            text=["Let me check."],
            tool_calls=[WireToolCall("toolu_01A", "get_weather", ['{"city": ', '"Paris"}'])],
        ),
        Reply(text=["Sunny in Paris."]),
    )
    system = lash.Message("system", "Be brief.")
    user = lash.Message("user", "Weather in Paris?")
    first = await collect_response(
        provider.stream(ModelRequest(MODEL, (system, user), (WEATHER,), {"temperature": 0.2}))
    )
    call = lash.ToolCall("toolu_01A", "get_weather", {"city": "Paris"})
    assert first.text == "Let me check."
    assert first.tool_calls == (call,)
    assert first.finish_reason == "tool_use"

    history = (
        system,
        user,
        lash.Message("assistant", "Let me check.", tool_calls=(call,)),
        lash.Message("tool", "18C, sunny", tool_call_id="toolu_01A"),
    )
    second = await collect_response(provider.stream(ModelRequest(MODEL, history, (WEATHER,))))
    assert second.text == "Sunny in Paris."
    assert second.finish_reason == "end_turn"

    tools = [
        {
            "name": "get_weather",
            "description": "Current weather of a city.",
            "input_schema": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        }
    ]
    first_body, second_body = (r.body for r in server.requests)
    assert first_body == {
        "model": MODEL,
        "max_tokens": 4096,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": tools,
        "temperature": 0.2,
        "stream": True,
    }
    assert second_body["messages"] == [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me check."},
                {
                    "type": "tool_use",
                    "id": "toolu_01A",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "18C, sunny"}
            ],
        },
    ]
    headers = server.requests[0].headers
    assert headers["x-api-key"] == KEY
    assert headers["anthropic-version"] == "2023-06-01"
    assert headers["content-type"] == "application/json"
    assert "authorization" not in headers
    assert [r.path for r in server.requests] == ["/v1/messages"] * 2


@pytest.mark.anyio
async def test_parallel_tool_results_share_one_user_message(
    server: AnthropicWireServer, provider: AnthropicProvider
) -> None:
    """Two tool results (and a user message after them) go in one user message, as the API
    requires alternating roles, tool_result blocks first."""
    server.push(Reply(text=["ok"]))
    calls = (
        lash.ToolCall("toolu_1", "get_weather", {"city": "Paris"}),
        lash.ToolCall("toolu_2", "get_weather", {"city": "Oslo"}),
    )
    history = (
        lash.Message("user", "Both?"),
        lash.Message("assistant", "", tool_calls=calls),
        lash.Message("tool", "sunny", tool_call_id="toolu_1"),
        lash.Message("tool", "snow", tool_call_id="toolu_2"),
        lash.Message("user", "Thanks."),
    )
    await events(provider, ModelRequest(MODEL, history))
    messages = server.requests[0].body["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert [b["type"] for b in messages[1]["content"]] == ["tool_use", "tool_use"]
    assert messages[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
        {"type": "tool_result", "tool_use_id": "toolu_2", "content": "snow"},
        {"type": "text", "text": "Thanks."},
    ]
    assert "system" not in server.requests[0].body


@pytest.mark.anyio
async def test_reference_stream(server: AnthropicWireServer, provider: AnthropicProvider) -> None:
    """The basic streaming example of the API reference, event for event (with its ping): two
    text deltas, then end_turn with input 25 and output 15 tokens."""
    server.push(
        Reply(
            events=[
                '{"type": "message_start", "message": '
                '{"id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY", "type": "message", '
                '"role": "assistant", "content": [], "model": "claude-test", '
                '"stop_reason": null, "stop_sequence": null, '
                '"usage": {"input_tokens": 25, "output_tokens": 1}}}',
                '{"type": "content_block_start", "index": 0, '
                '"content_block": {"type": "text", "text": ""}}',
                '{"type": "ping"}',
                '{"type": "content_block_delta", "index": 0, '
                '"delta": {"type": "text_delta", "text": "Hello"}}',
                '{"type": "content_block_delta", "index": 0, '
                '"delta": {"type": "text_delta", "text": "!"}}',
                '{"type": "content_block_stop", "index": 0}',
                '{"type": "message_delta", "delta": {"stop_reason": "end_turn", '
                '"stop_sequence": null}, "usage": {"output_tokens": 15}}',
                '{"type": "message_stop"}',
            ]
        )
    )
    assert await events(provider, ask()) == [
        TextDelta("Hello"),
        TextDelta("!"),
        ModelDone(usage=lash.Usage(input_tokens=25, output_tokens=15), finish_reason="end_turn"),
    ]
    assert server.requests[0].headers["accept"] == "text/event-stream"


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "whole"])
async def test_cache_tokens_reach_usage(server: AnthropicWireServer, stream: bool) -> None:
    """Anthropic's input_tokens excludes cached input: lash's input is input_tokens +
    cache_creation_input_tokens + cache_read_input_tokens, cached is the cache read."""
    usage = {
        "input_tokens": 50,
        "cache_creation_input_tokens": 200,
        "cache_read_input_tokens": 1000,
        "output_tokens": 7,
    }
    server.push(Reply(text=["ok"], usage=usage))
    async with AnthropicProvider(base_url=server.base_url, stream=stream, environ={}) as provider:
        response = await collect_response(provider.stream(ask()))
    assert response.usage == lash.Usage(input_tokens=1250, output_tokens=7, cached_tokens=1000)
    assert server.requests[0].body["stream"] is stream


@pytest.mark.anyio
async def test_non_streaming_mode(server: AnthropicWireServer) -> None:
    """With stream = false one message object is parsed: text and tool_use blocks in order."""
    server.push(
        Reply(
            text=["Calling a tool."],
            tool_calls=[WireToolCall("toolu_9", "get_weather", ['{"city": "Rome"}'])],
            usage={"input_tokens": 9, "output_tokens": 4},
        )
    )
    async with AnthropicProvider(base_url=server.base_url, stream=False, environ={}) as provider:
        got = await events(provider, ask())
    assert got == [
        TextDelta("Calling a tool."),
        ToolCallReady(lash.ToolCall("toolu_9", "get_weather", {"city": "Rome"})),
        ModelDone(usage=lash.Usage(9, 4), finish_reason="tool_use"),
    ]
    assert server.requests[0].body["stream"] is False
    assert server.requests[0].headers["accept"] == "application/json"


@pytest.mark.anyio
async def test_request_options_win(
    server: AnthropicWireServer, provider: AnthropicProvider
) -> None:
    """max_tokens from the options (plugin option, then request option) reaches the body."""
    server.push(Reply(text=["a"]), Reply(text=["b"]))
    await events(provider, ask(max_tokens=64, stop_sequences=["END"]))
    async with AnthropicProvider(base_url=server.base_url, max_tokens=512, environ={}) as other:
        await events(other, ask())
    assert server.requests[0].body["max_tokens"] == 64
    assert server.requests[0].body["stop_sequences"] == ["END"]
    assert server.requests[1].body["max_tokens"] == 512


@pytest.mark.anyio
async def test_tool_without_input_and_invalid_json(
    server: AnthropicWireServer, provider: AnthropicProvider
) -> None:
    """A tool_use whose input_json_delta fragments are all "" has no arguments; fragments that
    do not make a JSON object become invalid_arguments."""
    server.push(
        Reply(
            tool_calls=[
                WireToolCall("toolu_e", "list_cities", []),
                WireToolCall("toolu_b", "get_weather", ['{"city": ', "Paris"]),
            ]
        )
    )
    response = await collect_response(provider.stream(ask()))
    assert response.tool_calls == (
        lash.ToolCall("toolu_e", "list_cities", {}),
        lash.ToolCall("toolu_b", "get_weather", {}, invalid_arguments='{"city": Paris'),
    )


# --------------------------------------------------------------------------------------------
# Stream errors
# --------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_error_event_mid_stream(
    server: AnthropicWireServer, provider: AnthropicProvider
) -> None:
    """An `error` event (the reference's overloaded_error) raises ProviderError with its type
    and message, after the text already streamed."""
    start = {"type": "message_start", "message": {"usage": {"input_tokens": 1}}}
    block = {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    delta = {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "text_delta", "text": "pa"},
    }
    server.push(Reply(events=[json.dumps(e) for e in (start, block, delta, OVERLOADED)]))
    seen: list[ModelEvent] = []
    with pytest.raises(ProviderError, match="overloaded_error: Overloaded") as info:
        async for event in provider.stream(ask()):
            seen.append(event)
    assert seen == [TextDelta("pa")]
    assert info.value.provider == "anthropic"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("payloads", "expected"),
    [
        (['{"type": "message_start", "message": {}}', "{not json"], "not JSON: '{not json'"),
        (['{"type": "message_start", "message": {}}'], "ended without message_stop"),
        (['{"type": "message_stop"}'], "ended without message_start"),
        (['{"index": 0}'], "an event without a type"),
        (
            [
                '{"type": "message_start", "message": {}}',
                '{"type": "content_block_delta", "index": 3, '
                '"delta": {"type": "text_delta", "text": "x"}}',
            ],
            "a delta for no open content block",
        ),
    ],
    ids=["not-json", "truncated", "no-start", "no-type", "orphan-delta"],
)
async def test_malformed_stream(
    server: AnthropicWireServer, provider: AnthropicProvider, payloads: list[str], expected: str
) -> None:
    """A stream that breaks the event grammar raises ProviderError naming the provider, the
    URL and what was wrong (a truncated stream is not taken for a complete answer)."""
    server.push(Reply(events=payloads))
    with pytest.raises(ProviderError) as info:
        await events(provider, ask())
    message = str(info.value)
    assert message.startswith(f"anthropic provider: {server.base_url}/messages sent a malformed")
    assert expected in message


# --------------------------------------------------------------------------------------------
# Retries and HTTP errors
# --------------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("status", [529, 429])
async def test_overloaded_or_rate_limited_then_success_honours_retry_after(
    server: AnthropicWireServer, status: int
) -> None:
    """A 529 (overloaded) or 429 with retry-after is retried after that long, not after the
    (long) backoff."""
    server.push(
        Reply(status=status, headers={"retry-after": "0.05"}, body=OVERLOADED),
        Reply(text=["finally"]),
    )
    # backoff=5 s: if retry-after were ignored, this test would take 5 seconds.
    async with AnthropicProvider(base_url=server.base_url, backoff=5.0, environ={}) as provider:
        started = time.monotonic()
        response = await collect_response(provider.stream(ask()))
        elapsed = time.monotonic() - started
    assert response.text == "finally"
    assert len(server.requests) == 2
    assert server.requests[0].body == server.requests[1].body
    assert 0.05 <= elapsed < 2.0


@pytest.mark.anyio
async def test_persistent_529_says_overloaded(server: AnthropicWireServer) -> None:
    """After the last retry a 529 raises ProviderError with status 529, saying so."""
    server.push(Reply(status=529, body=OVERLOADED), Reply(status=529, body=OVERLOADED))
    async with AnthropicProvider(
        base_url=server.base_url, max_retries=1, backoff=0.01, environ={}
    ) as provider:
        with pytest.raises(ProviderError) as info:
            await events(provider, ask())
    assert type(info.value) is ProviderError
    assert info.value.status == 529
    assert "HTTP 529 (Anthropic is overloaded) on all 2 attempt(s): Overloaded" in str(info.value)


@pytest.mark.anyio
async def test_persistent_429_raises_rate_limited(server: AnthropicWireServer) -> None:
    """After max_retries retries a 429 becomes RateLimited."""
    limited = Reply(
        status=429,
        headers={"retry-after": "0"},
        body={"type": "error", "error": {"type": "rate_limit_error", "message": "Rate limited"}},
    )
    server.push(limited, limited)
    async with AnthropicProvider(
        base_url=server.base_url, max_retries=1, backoff=0.01, environ={}
    ) as provider:
        with pytest.raises(RateLimited, match="Rate limited") as info:
            await events(provider, ask())
    assert info.value.status == 429
    assert len(server.requests) == 2


@pytest.mark.anyio
async def test_401_names_the_fix_and_hides_the_key(
    server: AnthropicWireServer, provider: AnthropicProvider
) -> None:
    """401 (the reference's authentication_error body) raises ProviderAuthError naming
    ANTHROPIC_API_KEY, never showing the key even when the server echoes it; not retried."""
    server.push(
        Reply(
            status=401,
            body={
                "type": "error",
                "error": {"type": "authentication_error", "message": f"invalid x-api-key {KEY}"},
            },
        )
    )
    with pytest.raises(ProviderAuthError) as info:
        await events(provider, ask())
    message = str(info.value)
    assert message.startswith("anthropic provider:")
    assert "invalid x-api-key ***" in message
    assert "ANTHROPIC_API_KEY" in message
    assert "[options.anthropic] api_key" in message
    assert KEY not in message
    assert KEY not in repr(provider)
    assert KEY not in repr(AnthropicOptions(api_key=KEY))
    assert (info.value.status, info.value.provider) == (401, "anthropic")
    assert len(server.requests) == 1


@pytest.mark.anyio
async def test_400_carries_the_server_message(
    server: AnthropicWireServer, provider: AnthropicProvider
) -> None:
    """An invalid_request_error's message reaches the error."""
    body = {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "max_tokens: Field required"},
    }
    server.push(Reply(status=400, body=body))
    with pytest.raises(lash.ProviderRequestError, match="max_tokens: Field required"):
        await events(provider, ask())


# --------------------------------------------------------------------------------------------
# Plugin, environment, and a real lash turn
# --------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_env_base_url_and_key_are_honoured(
    server: AnthropicWireServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ANTHROPIC_BASE_URL picks the server and ANTHROPIC_API_KEY becomes the x-api-key header."""
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.base_url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    server.push(Reply(text=["hi"]))
    async with AnthropicProvider() as provider:
        assert provider.has_api_key
        await events(provider, ask())
    assert server.requests[0].headers["x-api-key"] == KEY


def test_plugin_is_opt_in() -> None:
    """The default builtins do not register `anthropic`; naming it in `plugins` does."""
    default = lash.LashCore(plugins=[], builtins="default", store="memory://")
    assert "anthropic" not in default.registry.of("provider")
    listed = lash.LashCore(plugins=["anthropic"], builtins=(), store="memory://")
    assert isinstance(listed.registry.of("provider")["anthropic"].value, AnthropicProvider)


class WeatherTools:
    """A weather tool recording its calls."""

    lash_plugin = lash.PluginMeta(name="weather_tools")

    def __init__(self) -> None:
        self.calls: list[str] = []

    @lash.hookimpl
    def register_tools(self, register: lash.RegisterTool) -> None:
        calls = self.calls

        def get_weather(city: str) -> str:
            """Current weather of a city."""
            calls.append(city)
            return f"18C and sunny in {city}"

        register(get_weather)


@pytest.mark.anyio
async def test_a_lash_turn_with_a_tool_round_trip(
    server: AnthropicWireServer, tmp_path: Path
) -> None:
    """A real turn on a SQLite store: the model asks for the tool, lash runs it and sends the
    result back as a tool_result block, the model answers; usage is summed over both calls."""
    server.push(
        Reply(
            tool_calls=[WireToolCall("toolu_w", "get_weather", ['{"city": "Paris"}'])],
            usage={"input_tokens": 100, "cache_read_input_tokens": 400, "output_tokens": 20},
        ),
        Reply(text=["It is ", "sunny."], usage={"input_tokens": 30, "output_tokens": 5}),
    )
    tools = WeatherTools()
    core = lash.LashCore(
        plugins=["standard", "stores", anthropic_plugin, tools],
        store=f"sqlite:///{tmp_path}/lash.db",
        provider="anthropic",
        model=MODEL,
        options={"anthropic": {"base_url": server.base_url, "api_key": KEY, "backoff": 0.01}},
        autoload=False,
    )
    async with core:
        session = await core.session("weather").open()
        result = await session.turn("Weather in Paris?").run()
    assert (result.outcome, result.text) == ("completed", "It is sunny.")
    assert tools.calls == ["Paris"]
    assert result.usage == lash.Usage(input_tokens=530, output_tokens=25, cached_tokens=400)
    second = server.requests[1].body
    assert second["model"] == MODEL
    assert [t["name"] for t in second["tools"]] == ["get_weather"]
    assert second["messages"][-2:] == [
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": "toolu_w",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                }
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_w",
                    "content": "18C and sunny in Paris",
                }
            ],
        },
    ]


@pytest.mark.anyio
async def test_check_asks_for_the_model(
    server: AnthropicWireServer, provider: AnthropicProvider
) -> None:
    """`lash doctor --online`: GET /v1/models/{model} with the key; 200 passes, 404 is
    ModelNotFound naming the model, 401 is ProviderAuthError without the key."""
    model = {"type": "model", "id": MODEL, "display_name": "Claude Test"}
    missing = {"type": "error", "error": {"type": "not_found_error", "message": "model: nope"}}
    refused = {
        "type": "error",
        "error": {"type": "authentication_error", "message": f"invalid x-api-key {KEY}"},
    }
    server.push(Reply(body=model), Reply(status=404, body=missing), Reply(status=401, body=refused))
    assert "serves model 'claude-test'" in await provider.check(MODEL)
    with pytest.raises(lash.ModelNotFound, match="'nope'"):
        await provider.check("nope")
    with pytest.raises(ProviderAuthError) as info:
        await provider.check(MODEL)
    assert KEY not in str(info.value)
    assert [(r.method, r.path) for r in server.requests] == [
        ("GET", "/v1/models/claude-test"),
        ("GET", "/v1/models/nope"),
        ("GET", "/v1/models/claude-test"),
    ]
    assert server.requests[0].headers["x-api-key"] == KEY


def test_importing_the_plugin_does_not_import_httpx() -> None:
    """Cold start: importing the plugin module leaves httpx unloaded."""
    code = (
        "import sys, lash_plugins_builtin.anthropic as m; "
        "m.AnthropicProvider(environ={}); "
        "assert 'httpx' not in sys.modules, 'httpx imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
