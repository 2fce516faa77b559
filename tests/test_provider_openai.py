"""The ``openai`` builtin provider against a real Chat Completions server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import gc
import json
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from openai_wire_server import Reply, WireServer, WireToolCall

import lash
import lash_plugins_builtin.openai as openai_plugin
from lash import (
    ModelDone,
    ModelEvent,
    ModelNotFound,
    ModelRequest,
    Provider,
    ProviderAuthError,
    ProviderError,
    ProviderRequestError,
    RateLimited,
    TextDelta,
    ToolCallReady,
    ToolSpec,
    collect_response,
)
from lash_plugins_builtin.openai import OpenAIProvider

KEY = "sk-test-SECRET-0123456789"
MODEL = "gpt-test"
WEATHER = ToolSpec(
    name="get_weather",
    description="Current weather of a city.",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
)


def ask(text: str = "hi", **options: Any) -> ModelRequest:
    return ModelRequest(model=MODEL, messages=(lash.Message("user", text),), options=options)


@pytest.fixture
def server() -> Iterator[WireServer]:
    with WireServer() as wire:
        yield wire


@pytest.fixture
async def provider(server: WireServer) -> AsyncIterator[OpenAIProvider]:
    # Explicit environ: the developer's own OPENAI_* variables must not leak into tests.
    openai = OpenAIProvider(
        base_url=server.base_url, api_key=KEY, backoff=0.01, timeout=5.0, environ={}
    )
    async with openai:
        yield openai


async def events(provider: OpenAIProvider, request: ModelRequest) -> list[ModelEvent]:
    return [event async for event in provider.stream(request)]


def test_openai_provider_satisfies_the_provider_protocol() -> None:
    """An OpenAIProvider is a Provider."""
    assert isinstance(OpenAIProvider(environ={}), Provider)


# --------------------------------------------------------------------------------------------
# Requests and responses
# --------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_tool_call_round_trip(server: WireServer, provider: OpenAIProvider) -> None:
    """Tools go out; a tool call comes back; the second request carries the assistant's tool
    call and the tool result in Chat Completions shape."""
    server.push(
        Reply(tool_calls=[WireToolCall("call_abc", "get_weather", ['{"city": ', '"Paris"}'])]),
        Reply(text=["Sunny in Paris."]),
    )
    system = lash.Message("system", "Be brief.")
    user = lash.Message("user", "Weather in Paris?")
    first = await collect_response(
        provider.stream(
            ModelRequest(MODEL, (system, user), (WEATHER,), {"temperature": 0.2, "max_tokens": 64})
        )
    )
    call = lash.ToolCall("call_abc", "get_weather", {"city": "Paris"})
    assert first.tool_calls == (call,)
    assert first.finish_reason == "tool_calls"

    history = (
        system,
        user,
        lash.Message("assistant", "", tool_calls=(call,)),
        lash.Message("tool", "18C, sunny", tool_call_id="call_abc"),
    )
    second = await collect_response(provider.stream(ModelRequest(MODEL, history, (WEATHER,))))
    assert second.text == "Sunny in Paris."

    sent = [r.body for r in server.requests]
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather of a city.",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            },
        }
    ]
    assert sent[0]["model"] == MODEL
    assert sent[0]["tools"] == tools
    assert sent[0]["temperature"] == 0.2
    assert sent[0]["max_tokens"] == 64
    assert sent[0]["stream"] is True
    assert sent[0]["stream_options"] == {"include_usage": True}
    assert sent[0]["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
    ]
    assert sent[1]["tools"] == tools
    assert sent[1]["messages"][2:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_abc",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_abc", "content": "18C, sunny"},
    ]
    assert [r.path for r in server.requests] == ["/v1/chat/completions"] * 2


@pytest.mark.anyio
async def test_streaming_text_arrives_in_several_deltas(
    server: WireServer, provider: OpenAIProvider
) -> None:
    """Each streamed content chunk becomes its own TextDelta; ModelDone comes last."""
    server.push(Reply(text=["Hel", "lo, ", "world"]))
    got = await events(provider, ask())
    assert got[:-1] == [TextDelta("Hel"), TextDelta("lo, "), TextDelta("world")]
    assert got[-1] == ModelDone(finish_reason="stop")
    assert server.requests[0].headers["accept"] == "text/event-stream"


@pytest.mark.anyio
async def test_parallel_streamed_tool_calls_are_assembled(
    server: WireServer, provider: OpenAIProvider
) -> None:
    """Two calls whose argument fragments interleave across chunks are assembled by index and
    delivered complete, in index order, once the response finishes."""
    server.push(
        Reply(
            text=["Checking both."],
            tool_calls=[
                WireToolCall("call_1", "get_weather", ['{"ci', 'ty": "Pa', 'ris"}']),
                WireToolCall("call_2", "get_weather", ['{"city"', ': "Oslo"', "}"]),
            ],
        )
    )
    got = await events(provider, ask())
    assert got == [
        TextDelta("Checking both."),
        ToolCallReady(lash.ToolCall("call_1", "get_weather", {"city": "Paris"})),
        ToolCallReady(lash.ToolCall("call_2", "get_weather", {"city": "Oslo"})),
        ModelDone(finish_reason="tool_calls"),
    ]


@pytest.mark.anyio
async def test_usage_is_reported(server: WireServer, provider: OpenAIProvider) -> None:
    """prompt/completion/cached tokens from the final usage chunk land in ModelDone."""
    usage = {
        "prompt_tokens": 120,
        "completion_tokens": 7,
        "total_tokens": 127,
        "prompt_tokens_details": {"cached_tokens": 100},
    }
    server.push(Reply(text=["ok"], usage=usage))
    response = await collect_response(provider.stream(ask()))
    assert response.usage == lash.Usage(input_tokens=120, output_tokens=7, cached_tokens=100)


@pytest.mark.anyio
async def test_non_streaming_mode(server: WireServer) -> None:
    """With stream = false the request says so and one JSON response is parsed."""
    server.push(
        Reply(
            text=["Calling a tool."],
            tool_calls=[WireToolCall("call_9", "get_weather", ['{"city": "Rome"}'])],
            usage={"prompt_tokens": 9, "completion_tokens": 4},
        )
    )
    async with OpenAIProvider(base_url=server.base_url, stream=False, environ={}) as provider:
        got = await events(provider, ask())
    assert got == [
        TextDelta("Calling a tool."),
        ToolCallReady(lash.ToolCall("call_9", "get_weather", {"city": "Rome"})),
        ModelDone(usage=lash.Usage(9, 4), finish_reason="tool_calls"),
    ]
    body = server.requests[0].body
    assert body["stream"] is False
    assert "stream_options" not in body
    assert server.requests[0].headers["accept"] == "application/json"


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [False, True])
async def test_a_tool_call_with_a_numeric_id_or_a_null_name_is_stored_as_text(
    server: WireServer, stream: bool
) -> None:
    """A server sending ``"id": 7`` or ``"name": null`` (the API documents strings): the call's
    id is the number's text and its name empty, values a session can store (the turn then
    answers the call as an unknown tool) rather than a call the kernel must refuse."""
    calls = [WireToolCall(7, "echo", ['{"a": 1}']), WireToolCall("c2", None, ["{}"])]  # type: ignore[arg-type]
    server.push(Reply(tool_calls=calls))
    async with OpenAIProvider(base_url=server.base_url, stream=stream, environ={}) as provider:
        got = await events(provider, ask())
    ready = [e.call for e in got if isinstance(e, ToolCallReady)]
    assert ready == [lash.ToolCall("7", "echo", {"a": 1}), lash.ToolCall("c2", "", {})]


@pytest.mark.anyio
async def test_stream_option_per_request(server: WireServer, provider: OpenAIProvider) -> None:
    """`stream` in the request options overrides the provider's setting for that call."""
    server.push(Reply(text=["whole"]))
    assert await events(provider, ask(stream=False)) == [TextDelta("whole"), ModelDone()]
    assert server.requests[0].body["stream"] is False
    assert "stream_options" not in server.requests[0].body


def test_connections_are_reused(server: WireServer) -> None:
    """Streamed calls read the body to its end, so one keep-alive connection serves them all."""
    server.push(Reply(text=["one"]), Reply(text=["two"]), Reply(text=["three"]))

    async def calls() -> list[str]:
        async with OpenAIProvider(base_url=server.base_url, environ={}) as provider:
            texts = [(await collect_response(provider.stream(ask()))).text for _ in range(2)]
            texts.append((await collect_response(provider.stream(ask(stream=False)))).text)
            return texts

    assert asyncio.run(calls()) == ["one", "two", "three"]
    assert server.connections == 1


@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_provider_survives_a_new_event_loop(server: WireServer) -> None:
    """A provider left open when its event loop ended keeps working under the next loop.

    (The abandoned client's socket is reported as unclosed when collected: the warnings filters
    above, because this test makes that mistake on purpose.)
    """
    provider = OpenAIProvider(base_url=server.base_url, environ={})
    server.push(Reply(text=["one"]), Reply(text=["two"]))

    async def call(close: bool) -> str:
        try:
            return (await collect_response(provider.stream(ask()))).text
        finally:
            if close:
                await provider.aclose()

    assert asyncio.run(call(close=False)) == "one"
    assert asyncio.run(call(close=True)) == "two"
    gc.collect()


@pytest.mark.anyio
async def test_invalid_json_tool_arguments(server: WireServer, provider: OpenAIProvider) -> None:
    """Arguments that are not a JSON object become invalid_arguments with the raw text."""
    server.push(
        Reply(
            tool_calls=[
                WireToolCall("call_bad", "get_weather", ['{"city": ', "Paris"]),
                WireToolCall("call_list", "get_weather", ["[1, 2]"]),
                WireToolCall("call_empty", "list_cities", []),
            ]
        )
    )
    response = await collect_response(provider.stream(ask()))
    assert response.tool_calls == (
        lash.ToolCall("call_bad", "get_weather", {}, invalid_arguments='{"city": Paris'),
        lash.ToolCall("call_list", "get_weather", {}, invalid_arguments="[1, 2]"),
        lash.ToolCall("call_empty", "list_cities", {}),
    )


@pytest.mark.anyio
async def test_tool_arguments_holding_nan_or_infinity_are_invalid(
    server: WireServer, provider: OpenAIProvider
) -> None:
    """Arguments whose text holds ``NaN``, ``Infinity`` or a number beyond a double (Python's
    json reads them, JSON has no such values) become invalid_arguments with the raw text, as
    other text that is not JSON does: kept as floats, they went into the session as text no
    other JSON reader takes (lash serve's responses and events, a provider's request). A
    large integer is JSON, and stays as it is."""
    server.push(
        Reply(
            tool_calls=[
                WireToolCall("call_nan", "get_weather", ['{"days": NaN}']),
                WireToolCall("call_inf", "get_weather", ['{"days": -Infinity}']),
                WireToolCall("call_big", "get_weather", ['{"days": 1e999}']),
                WireToolCall("call_int", "get_weather", ['{"days": 1' + "0" * 400 + "}"]),
            ]
        )
    )
    response = await collect_response(provider.stream(ask()))
    assert response.tool_calls == (
        lash.ToolCall("call_nan", "get_weather", {}, invalid_arguments='{"days": NaN}'),
        lash.ToolCall("call_inf", "get_weather", {}, invalid_arguments='{"days": -Infinity}'),
        lash.ToolCall("call_big", "get_weather", {}, invalid_arguments='{"days": 1e999}'),
        lash.ToolCall("call_int", "get_weather", {"days": 10**400}),
    )


@pytest.mark.anyio
async def test_invalid_arguments_are_replayed_verbatim(
    server: WireServer, provider: OpenAIProvider
) -> None:
    """An assistant message with invalid arguments is sent back with the raw text the model
    produced, so the model can see its mistake."""
    server.push(Reply(text=["ok"]))
    bad = lash.ToolCall("c1", "get_weather", {}, invalid_arguments="{oops")
    history = (
        lash.Message("assistant", "Trying.", tool_calls=(bad,)),
        lash.Message("tool", "error: invalid JSON", tool_call_id="c1"),
    )
    await events(provider, ModelRequest(MODEL, history))
    assistant = server.requests[0].body["messages"][0]
    assert assistant["content"] == "Trying."
    assert assistant["tool_calls"][0]["function"]["arguments"] == "{oops"


@pytest.mark.anyio
async def test_error_event_mid_stream(server: WireServer, provider: OpenAIProvider) -> None:
    """An error object sent inside the stream raises ProviderError with its message."""
    server.push(
        Reply(
            events=[
                json.dumps({"choices": [{"index": 0, "delta": {"content": "par"}}]}),
                json.dumps({"error": {"message": "upstream overloaded"}}),
            ]
        )
    )
    seen: list[ModelEvent] = []
    with pytest.raises(ProviderError, match="upstream overloaded"):
        async for event in provider.stream(ask()):
            seen.append(event)
    assert seen == [TextDelta("par")]


@pytest.mark.anyio
async def test_stream_without_done_or_finish_still_completes(
    server: WireServer, provider: OpenAIProvider
) -> None:
    """A server that closes the stream without [DONE] or a finish reason still yields the calls
    and a ModelDone."""
    call = {"index": 0, "id": "c", "function": {"name": "t", "arguments": "{}"}}
    server.push(
        Reply(events=[json.dumps({"choices": [{"index": 0, "delta": {"tool_calls": [call]}}]})])
    )
    assert await events(provider, ask()) == [
        ToolCallReady(lash.ToolCall("c", "t", {})),
        ModelDone(finish_reason="stop"),
    ]


# --------------------------------------------------------------------------------------------
# Retries
# --------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_429_then_success_honours_retry_after(server: WireServer) -> None:
    """A 429 with Retry-After is retried after that long, not after the (long) backoff."""
    server.push(
        Reply(
            status=429,
            headers={"Retry-After": "0.05"},
            body={"error": {"message": "slow down"}},
        ),
        Reply(text=["finally"]),
    )
    # backoff=5 s: if Retry-After were ignored, this test would take 5 seconds.
    async with OpenAIProvider(base_url=server.base_url, backoff=5.0, environ={}) as provider:
        started = time.monotonic()
        response = await collect_response(provider.stream(ask()))
        elapsed = time.monotonic() - started
    assert response.text == "finally"
    assert len(server.requests) == 2
    assert 0.05 <= elapsed < 2.0


@pytest.mark.anyio
async def test_500_then_success(server: WireServer, provider: OpenAIProvider) -> None:
    """A 5xx is retried with backoff and the next answer is used."""
    server.push(Reply(status=500, body={"error": {"message": "boom"}}), Reply(text=["ok"]))
    assert (await collect_response(provider.stream(ask()))).text == "ok"
    assert len(server.requests) == 2
    assert server.requests[0].body == server.requests[1].body


@pytest.mark.anyio
async def test_persistent_429_raises_rate_limited(server: WireServer) -> None:
    """After max_retries retries a 429 becomes RateLimited with status 429."""
    limited = Reply(status=429, headers={"Retry-After": "0"}, body={"error": {"message": "quota"}})
    server.push(limited, limited, limited)
    async with OpenAIProvider(
        base_url=server.base_url, max_retries=2, backoff=0.01, environ={}
    ) as provider:
        with pytest.raises(RateLimited) as info:
            await events(provider, ask())
    assert info.value.status == 429
    assert "quota" in str(info.value)
    assert "3 attempt(s)" in str(info.value)
    assert len(server.requests) == 3


@pytest.mark.anyio
async def test_persistent_5xx_raises_provider_error_with_status(server: WireServer) -> None:
    """After the last retry a 5xx raises ProviderError carrying the status."""
    server.push(Reply(status=503, body={"error": {"message": "down"}}), Reply(status=503))
    async with OpenAIProvider(
        base_url=server.base_url, max_retries=1, backoff=0.01, environ={}
    ) as provider:
        with pytest.raises(ProviderError) as info:
            await events(provider, ask())
    assert type(info.value) is ProviderError
    assert info.value.status == 503
    assert "HTTP 503" in str(info.value)
    assert len(server.requests) == 2


@pytest.mark.anyio
async def test_unreachable_server_is_retried_then_reported() -> None:
    """A refused connection is retried, then reported with the URL and what to check."""
    with socket.socket() as sock:  # a port nobody listens on once the socket is closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    async with OpenAIProvider(base_url=url, max_retries=2, backoff=0.01, environ={}) as provider:
        with pytest.raises(ProviderError) as info:
            await events(provider, ask())
    message = str(info.value)
    assert f"cannot reach {url}/chat/completions" in message
    assert "after 3 attempt(s)" in message
    assert "OPENAI_BASE_URL" in message


# --------------------------------------------------------------------------------------------
# Errors that say what to fix
# --------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_401_names_the_fix_and_hides_the_key(
    server: WireServer, provider: OpenAIProvider
) -> None:
    """401 raises ProviderAuthError naming OPENAI_API_KEY / api_key, never showing the key, even
    when the server echoes it; it is not retried."""
    server.push(Reply(status=401, body={"error": {"message": f"Incorrect API key: {KEY}"}}))
    with pytest.raises(ProviderAuthError) as info:
        await events(provider, ask())
    message = str(info.value)
    assert "OPENAI_API_KEY" in message
    assert "[options.openai] api_key" in message
    assert "Incorrect API key: ***" in message
    assert KEY not in message
    assert KEY not in repr(provider)
    assert KEY not in repr(openai_plugin.OpenAIOptions(api_key=KEY))
    assert info.value.status == 401
    assert len(server.requests) == 1


@pytest.mark.anyio
async def test_403_without_key_says_no_key_is_set(server: WireServer) -> None:
    """A refusal while no key is configured says the key is unset."""
    server.push(Reply(status=403, body={"error": "forbidden"}))
    async with OpenAIProvider(base_url=server.base_url, environ={}) as provider:
        with pytest.raises(ProviderAuthError, match="OPENAI_API_KEY is unset"):
            await events(provider, ask())


@pytest.mark.anyio
async def test_404_names_model_and_base_url(server: WireServer, provider: OpenAIProvider) -> None:
    """404 raises ModelNotFound naming the model and the base URL."""
    server.push(
        Reply(status=404, body={"error": {"message": f"The model `{MODEL}` does not exist"}})
    )
    with pytest.raises(ModelNotFound) as info:
        await events(provider, ask())
    message = str(info.value)
    assert repr(MODEL) in message
    assert server.base_url in message
    assert info.value.status == 404
    assert len(server.requests) == 1


@pytest.mark.anyio
async def test_400_includes_server_message(server: WireServer, provider: OpenAIProvider) -> None:
    """400 raises ProviderRequestError carrying the server's own error message."""
    server.push(
        Reply(
            status=400,
            body={"error": {"message": "'top_logprobs' must be <= 20", "type": "invalid_request"}},
        )
    )
    # (lash itself refuses an out-of-range temperature: an extra field reaches the server.)
    with pytest.raises(ProviderRequestError, match="'top_logprobs' must be <= 20") as info:
        await events(provider, ask(top_logprobs=99))
    assert info.value.status == 400
    assert server.requests[0].body["top_logprobs"] == 99


@pytest.mark.anyio
async def test_422_with_detail_list(server: WireServer, provider: OpenAIProvider) -> None:
    """A FastAPI-style 422 body (vLLM) is shown too."""
    server.push(Reply(status=422, body={"detail": [{"loc": ["body", "model"], "msg": "missing"}]}))
    with pytest.raises(ProviderRequestError, match="missing"):
        await events(provider, ask())


@pytest.mark.anyio
async def test_timeout_names_url_and_duration(server: WireServer) -> None:
    """A server that does not answer in time raises ProviderError naming the URL and timeout."""
    server.push(Reply(text=["too late"], delay=2.0))
    async with OpenAIProvider(
        base_url=server.base_url, timeout=0.2, backoff=0.01, environ={}
    ) as provider:
        started = time.monotonic()
        with pytest.raises(ProviderError) as info:
            await events(provider, ask())
        elapsed = time.monotonic() - started
    message = str(info.value)
    assert f"{server.base_url}/chat/completions timed out after 0.2s" in message
    assert "timeout" in message
    assert elapsed < 1.5


# --------------------------------------------------------------------------------------------
# Environment and plugin
# --------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_env_base_url_and_key_are_honoured(
    server: WireServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OPENAI_BASE_URL picks the server and OPENAI_API_KEY becomes the Bearer token."""
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    server.push(Reply(text=["hi"]))
    async with OpenAIProvider() as provider:
        assert provider.has_api_key
        await events(provider, ask())
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"


@pytest.mark.anyio
async def test_no_key_sends_no_authorization_header(
    server: WireServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a key (local servers) no Authorization header is sent."""
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    server.push(Reply(text=["hi"]))
    async with OpenAIProvider() as provider:
        await events(provider, ask())
    assert "authorization" not in server.requests[0].headers


def test_default_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without option or env the provider talks to the OpenAI API."""
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    assert OpenAIProvider().url == "https://api.openai.com/v1/chat/completions"


@pytest.mark.anyio
async def test_as_plugin(server: WireServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The plugin registers "openai" from [options.openai], which win over the environment."""
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/never")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    core = lash.LashCore(
        plugins=[openai_plugin],
        autoload=False,
        options={
            "openai": {
                "base_url": server.base_url,
                "api_key": KEY,
                "stream": False,
                "backoff": 0.01,
                "max_retries": 1,
            }
        },
    )
    contribution = core.registry.of("provider")["openai"]
    assert contribution.plugin == "openai"
    provider = contribution.value
    assert isinstance(provider, OpenAIProvider)
    assert provider.max_retries == 1
    server.push(Reply(text=["from the plugin"]))
    async with provider:
        assert (await collect_response(provider.stream(ask()))).text == "from the plugin"
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"
    assert server.requests[0].body["stream"] is False


def test_plugin_with_default_options(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no options the plugin still registers a provider, configured from the env."""
    monkeypatch.setenv("OPENAI_BASE_URL", "http://localhost:11434/v1/")
    core = lash.LashCore(plugins=[openai_plugin], autoload=False)
    provider = core.registry.of("provider")["openai"].value
    assert provider.url == "http://localhost:11434/v1/chat/completions"


def test_importing_the_plugin_does_not_import_httpx() -> None:
    """Cold start: importing the plugin module (as `lash --help` does) leaves httpx unloaded."""
    code = (
        "import sys, lash_plugins_builtin.openai as m; "
        "m.OpenAIProvider(environ={}); "
        "assert 'httpx' not in sys.modules, 'httpx imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
