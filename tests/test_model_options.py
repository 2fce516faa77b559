"""Model options: host ``[model_options]`` < ``configure(model_options=...)`` < ``turn(...,
model_options=...)``, validated by field, and what reaches the wire.

Expected request bodies are those of the published API references: OpenAI Chat Completions
(``temperature``, ``top_p``, ``max_tokens`` / ``max_completion_tokens``, ``stop``, ``seed``,
``tool_choice`` as ``"auto" | "none" | "required"`` or ``{"type": "function", "function":
{"name": ...}}``, ``parallel_tool_calls``) and Anthropic Messages (``stop_sequences``,
``tool_choice`` ``{"type": "auto" | "any" | "tool" | "none"}`` with
``disable_parallel_tool_use``; no ``seed``; ``temperature`` 0 to 1).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from _cores import Echo, make_core
from _recorder import Recorder
from anthropic_wire_server import AnthropicWireServer
from openai_wire_server import Reply, WireServer

import lash
import lash_plugins_builtin.anthropic as anthropic_plugin
import lash_plugins_builtin.openai as openai_plugin
from lash_plugins_builtin import standard, stores
from lash_plugins_builtin.anthropic import AnthropicProvider
from lash_plugins_builtin.openai import OpenAIProvider

MODEL = "test-model"
WEATHER = lash.ToolSpec(
    name="get_weather",
    description="Current weather of a city.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}},
)


def request(options: lash.ModelOptions, *, tools: bool = True) -> lash.ModelRequest:
    return lash.ModelRequest(
        model=MODEL,
        messages=(lash.Message("user", "hi"),),
        tools=(WEATHER,) if tools else (),
        options=options,
    )


@pytest.fixture
def server() -> Iterator[WireServer]:
    with WireServer() as wire:
        yield wire


@pytest.fixture
def anthropic_server() -> Iterator[AnthropicWireServer]:
    with AnthropicWireServer() as wire:
        yield wire


@pytest.fixture
async def openai(server: WireServer) -> AsyncIterator[OpenAIProvider]:
    provider = OpenAIProvider(base_url=server.base_url, backoff=0.01, environ={})
    async with provider:
        yield provider


@pytest.fixture
async def anthropic(anthropic_server: AnthropicWireServer) -> AsyncIterator[AnthropicProvider]:
    provider = AnthropicProvider(
        base_url=anthropic_server.base_url, api_key="k", backoff=0.01, environ={}
    )
    async with provider:
        yield provider


def openai_core(tmp_path: Path, server: WireServer, **kwargs: Any) -> lash.LashCore:
    return lash.LashCore(
        plugins=[standard, stores, openai_plugin],
        builtins=(),
        store=f"sqlite:///{tmp_path}/lash.db",
        provider="openai",
        model=MODEL,
        options={"openai": {"base_url": server.base_url, "backoff": 0.01}},
        **kwargs,
    )


# -- layers ------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_layers_merge_host_session_turn_on_the_wire(
    tmp_path: Path, server: WireServer
) -> None:
    """Host < session < turn, field by field (extra per key), in the Chat Completions body."""
    server.push(Reply(text=["one"]), Reply(text=["two"]))
    core = openai_core(
        tmp_path,
        server,
        model_options={"temperature": 0.2, "max_tokens": 100, "extra": {"user": "host"}},
    )
    async with core:
        session = await core.session("s").open()
        await session.configure(model_options={"temperature": 0.5, "stop": ["END"]})
        first = await session.turn(
            "hi", model_options={"seed": 7, "extra": {"metadata": {"k": "v"}}}
        ).run()
        second = await session.turn("again").run()
    assert (first.text, second.text) == ("one", "two")
    body = server.requests[0].body
    assert body["temperature"] == 0.5  # the session's, over the host's 0.2
    assert body["max_tokens"] == 100  # the host's
    assert body["stop"] == ["END"]
    assert body["seed"] == 7  # the turn's
    assert (body["user"], body["metadata"]) == ("host", {"k": "v"})  # extra, merged per key
    # Without tools the API refuses tool_choice / parallel_tool_calls: none are sent.
    assert "tool_choice" not in body and "parallel_tool_calls" not in body
    later = server.requests[1].body
    assert "seed" not in later and "metadata" not in later  # the turn's layer was that turn's
    assert (later["temperature"], later["user"]) == (0.5, "host")


@pytest.mark.anyio
async def test_session_model_options_are_committed_and_survive_reload(
    tmp_path: Path, server: WireServer
) -> None:
    """configure(model_options=...) is committed: a new core reading the file sees and uses it;
    a field given as None is unset."""
    async with openai_core(tmp_path, server) as core:
        session = await core.session("s").open()
        await session.configure(model_options={"top_p": 0.9, "seed": 3, "extra": {"a": 1}})
        config = await session.configure(model_options={"seed": None, "extra": {"b": 2}})
    assert config.model_options == lash.ModelOptions(top_p=0.9, extra={"a": 1, "b": 2})
    server.push(Reply(text=["ok"]))
    async with openai_core(tmp_path, server) as core:
        session = await core.session("s").open(must_exist=True)
        assert session.config.model_options == lash.ModelOptions(top_p=0.9, extra={"a": 1, "b": 2})
        await session.turn("hi").run()
    body = server.requests[0].body
    assert (body["top_p"], body["a"], body["b"]) == (0.9, 1, 2)
    assert "seed" not in body


def test_host_config_file_model_options(tmp_path: Path) -> None:
    """`[model_options]` in lash.toml is the host layer; LashCore(model_options=) goes over it."""
    path = tmp_path / "lash.toml"
    path.write_text(
        '[model_options]\ntemperature = 0.3\nstop = ["###"]\n[model_options.extra]\nuser = "x"\n'
    )
    config = lash.HostConfig.load(path)
    assert config.model_options == lash.ModelOptions(
        temperature=0.3, stop=("###",), extra={"user": "x"}
    )
    core = lash.LashCore(config=config, builtins=(), model_options={"temperature": 0.0})
    assert core.config.model_options == lash.ModelOptions(
        temperature=0.0, stop=("###",), extra={"user": "x"}
    )


# -- validation --------------------------------------------------------------------------------


def test_bad_host_config_names_the_file_and_field(tmp_path: Path) -> None:
    """A bad [model_options] value fails the load, naming the file and each field."""
    path = tmp_path / "lash.toml"
    path.write_text("[model_options]\ntop_p = 1.5\ncolour = 'red'\n")
    with pytest.raises(lash.ConfigError) as info:
        lash.HostConfig.load(path)
    message = str(info.value)
    assert str(path) in message
    assert "model_options.colour: unknown key" in message


def test_bad_core_argument_names_the_field() -> None:
    """LashCore(model_options=...) is checked by field."""
    with pytest.raises(lash.ConfigError, match=r"model_options: max_tokens: must be at least 1"):
        lash.LashCore(builtins=(), model_options={"max_tokens": 0})


@pytest.mark.anyio
async def test_bad_session_and_turn_options_name_session_and_field(tmp_path: Path) -> None:
    """configure() and turn() refuse bad options before anything runs, naming session and field."""
    rec = Recorder([])
    async with make_core(tmp_path, rec) as core:
        session = await core.session("s").open()
        with pytest.raises(lash.SessionError) as info:
            await session.configure(model_options={"top_p": 2})
        assert "'s'" in str(info.value)
        assert "model_options.top_p: must be between 0 and 1, got 2" in str(info.value)
        with pytest.raises(lash.SessionError, match=r"model_options\.temperature: must be between"):
            session.turn("hi", model_options={"temperature": 2.5})
        with pytest.raises(lash.SessionError, match=r"model_options\.stop: expected"):
            session.turn("hi", model_options={"stop": "END"})
        with pytest.raises(lash.SessionError, match=r"model_options\.seed: expected int"):
            session.turn("hi", model_options=lash.ModelOptions(seed="7"))  # type: ignore[arg-type]
        assert session.config.model_options == lash.ModelOptions()
    assert rec.requests == []


@pytest.mark.anyio
async def test_tool_choice_naming_an_unknown_tool_fails_the_turn(tmp_path: Path) -> None:
    """tool_choice naming a tool the model is not offered fails the turn, naming it."""
    rec = Recorder(["never"])
    async with make_core(tmp_path, rec, Echo()) as core:
        session = await core.session("s").open()
        result = await session.turn("hi", model_options={"tool_choice": "nope"}).run()
    assert result.outcome == "failed"
    assert "model_options.tool_choice names tool 'nope'" in (result.error or "")
    assert "offered: echo" in (result.error or "")
    assert rec.requests == []


@pytest.mark.anyio
async def test_providers_receive_the_merged_typed_options(tmp_path: Path) -> None:
    """A provider gets one lash.ModelOptions: host < session < turn."""
    rec = Recorder(["a"])
    async with make_core(tmp_path, rec, Echo(), model_options={"max_tokens": 9}) as core:
        session = await core.session("s").open()
        await session.configure(model_options=lash.ModelOptions(parallel_tool_calls=False))
        await session.turn("hi", model_options={"tool_choice": "echo"}).run()
    assert rec.requests[0].options == lash.ModelOptions(
        max_tokens=9, parallel_tool_calls=False, tool_choice="echo"
    )


# -- the wire ----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_openai_tool_choice_and_parallel_calls(
    server: WireServer, openai: OpenAIProvider
) -> None:
    """A tool's name becomes a function choice; required/none/auto pass as strings."""
    server.push(Reply(text=["x"]), Reply(text=["y"]))
    options = lash.ModelOptions(tool_choice="get_weather", parallel_tool_calls=False, top_p=0.5)
    await lash.collect_response(openai.stream(request(options)))
    await lash.collect_response(openai.stream(request(lash.ModelOptions(tool_choice="required"))))
    first, second = (r.body for r in server.requests)
    assert first["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert (first["parallel_tool_calls"], first["top_p"]) == (False, 0.5)
    assert second["tool_choice"] == "required"
    assert "parallel_tool_calls" not in second


@pytest.mark.anyio
async def test_openai_max_completion_tokens_option(server: WireServer) -> None:
    """max_tokens_field = "max_completion_tokens" (OpenAI's reasoning models) moves the field."""
    server.push(Reply(text=["x"]))
    core = lash.LashCore(
        plugins=[openai_plugin],
        builtins=(),
        options={
            "openai": {"base_url": server.base_url, "max_tokens_field": "max_completion_tokens"}
        },
    )
    provider = core.registry.of("provider")["openai"].value
    async with provider:
        await lash.collect_response(provider.stream(request(lash.ModelOptions(max_tokens=64))))
    body = server.requests[0].body
    assert body["max_completion_tokens"] == 64 and "max_tokens" not in body


@pytest.mark.anyio
async def test_anthropic_fields(
    anthropic_server: AnthropicWireServer, anthropic: AnthropicProvider
) -> None:
    """stop → stop_sequences, max_tokens overrides the plugin's, tool_choice objects with
    disable_parallel_tool_use."""
    anthropic_server.push(Reply(text=["a"]), Reply(text=["b"]), Reply(text=["c"]))
    named = lash.ModelOptions(
        tool_choice="get_weather",
        parallel_tool_calls=False,
        stop=("END",),
        max_tokens=77,
        temperature=0.4,
        top_p=0.8,
    )
    await lash.collect_response(anthropic.stream(request(named)))
    await lash.collect_response(
        anthropic.stream(request(lash.ModelOptions(tool_choice="required")))
    )
    await lash.collect_response(
        anthropic.stream(request(lash.ModelOptions(parallel_tool_calls=False)))
    )
    first, second, third = (r.body for r in anthropic_server.requests)
    assert first["tool_choice"] == {
        "type": "tool",
        "name": "get_weather",
        "disable_parallel_tool_use": True,
    }
    assert first["stop_sequences"] == ["END"]
    assert (first["max_tokens"], first["temperature"], first["top_p"]) == (77, 0.4, 0.8)
    assert "stop" not in first
    assert second["tool_choice"] == {"type": "any"}
    assert third["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}


@pytest.mark.anyio
async def test_anthropic_refuses_what_the_api_cannot_honour(
    anthropic_server: AnthropicWireServer, anthropic: AnthropicProvider
) -> None:
    """seed (no such field) and temperature > 1 fail by name, before any request is sent."""
    with pytest.raises(lash.ProviderRequestError, match=r"model_options\.seed is not supported"):
        await lash.collect_response(anthropic.stream(request(lash.ModelOptions(seed=1))))
    with pytest.raises(lash.ProviderRequestError, match=r"model_options\.temperature must be"):
        await lash.collect_response(anthropic.stream(request(lash.ModelOptions(temperature=1.5))))
    assert anthropic_server.requests == []


@pytest.mark.anyio
async def test_anthropic_session_turn_end_to_end(
    tmp_path: Path, anthropic_server: AnthropicWireServer
) -> None:
    """Through a session, the turn's options reach the Messages API body."""
    anthropic_server.push(Reply(text=["fine"]))
    core = lash.LashCore(
        plugins=[standard, stores, anthropic_plugin],
        builtins=(),
        store=f"sqlite:///{tmp_path}/lash.db",
        provider="anthropic",
        model=MODEL,
        options={"anthropic": {"base_url": anthropic_server.base_url, "api_key": "k"}},
        model_options={"temperature": 0.1},
    )
    async with core:
        session = await core.session("s").open()
        result = await session.turn("hi", model_options={"stop": ["\n\n"]}).run()
    assert result.text == "fine"
    body = anthropic_server.requests[0].body
    assert (body["temperature"], body["stop_sequences"]) == (0.1, ["\n\n"])
