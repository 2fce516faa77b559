"""Structured output: ``session.turn(text, output=...)`` returns a validated value in
``result.output``; invalid answers go back to the model with their errors, a bounded number of
times, then the turn fails with them.

Providers without a JSON-schema response format (the scripted one, Anthropic) get a final-answer
tool; OpenAI gets ``response_format: {"type": "json_schema", "json_schema": {"name", "schema"}}``
as its Chat Completions reference describes. Error lines are JSON Schema's own messages with the
JSON path of each problem.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from _cores import Echo, make_core, sqlite_url
from _recorder import Recorder
from anthropic_wire_server import AnthropicWireServer
from openai_wire_server import Reply, WireServer, WireToolCall

import lash
import lash_plugins_builtin.anthropic as anthropic_plugin
import lash_plugins_builtin.openai as openai_plugin
from lash_plugins_builtin import standard, stores

MODEL = "test-model"


@attrs.frozen
class Forecast:
    """A weather forecast."""

    city: str
    high: int
    notes: tuple[str, ...] = ()


FORECAST_SCHEMA = {
    "title": "Forecast",
    "type": "object",
    "properties": {"city": {"type": "string"}, "high": {"type": "integer"}},
    "required": ["city", "high"],
}


def final(arguments: Any) -> dict[str, Any]:
    """A scripted response calling the final-answer tool with these arguments."""
    return {"tool_calls": [{"name": "final_result", "arguments": arguments}]}


def tool_results(request: lash.ModelRequest) -> list[str]:
    return [m.content for m in request.messages if m.role == "tool"]


@pytest.mark.anyio
async def test_wrong_twice_then_right(tmp_path: Path) -> None:
    """Two invalid answers are sent back with their errors; the third validates."""
    rec = Recorder(
        [
            final({"city": "Paris", "high": "warm"}),
            final({"high": 21}),
            final({"city": "Paris", "high": 21}),
        ]
    )
    async with make_core(tmp_path, rec) as core:
        session = await core.session("s").open()
        result = await session.turn("Forecast for Paris?", output=Forecast).run()
    assert result.outcome == "completed"
    assert result.output == Forecast("Paris", 21)
    assert json.loads(result.text) == {"city": "Paris", "high": 21, "notes": []}
    assert result.tool_calls == ()  # the final-answer tool is not a tool of the session
    first = rec.requests[0]
    offered = {t.name: t for t in first.tools}
    assert offered["final_result"].parameters["required"] == ["city", "high"]
    assert first.options.tool_choice == "required"  # a text answer would not be the output
    assert first.output is None  # the scripted provider has no response format
    second = tool_results(rec.requests[1])
    assert "$.high: 'warm' is not of type 'integer'" in second[-1]
    third = tool_results(rec.requests[2])
    assert "$: 'city' is a required property" in third[-1]


@pytest.mark.anyio
async def test_keeps_getting_it_wrong_fails_with_the_errors(tmp_path: Path) -> None:
    """After output_retries invalid answers are sent back, the next one fails the turn, and the
    failure survives in the store."""
    rec = Recorder([final({"city": 1, "high": "x"})] * 3)
    async with make_core(tmp_path, rec) as core:
        session = await core.session("s").open()
        result = await session.turn("?", output=Forecast, output_retries=1, id="t1").run()
    assert result.outcome == "failed"
    assert result.output is None
    assert result.output_errors == (
        "$.city: 1 is not of type 'string'",
        "$.high: 'x' is not of type 'integer'",
    )
    assert "still invalid after 2 attempt(s)" in (result.error or "")
    assert "$.high: 'x' is not of type 'integer'" in (result.error or "")
    assert len(rec.requests) == 2  # one answer, one retry: the third response is never asked for
    async with make_core(tmp_path, Recorder([])) as core:
        session = await core.session("s").open()
        again = await session.turn("?", output=Forecast, id="t1").run()
    assert (again.outcome, again.output_errors) == ("failed", result.output_errors)


@pytest.mark.anyio
async def test_the_class_validators_count_too(tmp_path: Path) -> None:
    """An attrs class's own validators reject an answer the schema allows; it is sent back."""

    @attrs.frozen
    class Score:
        value: int = attrs.field(validator=attrs.validators.le(10))

    rec = Recorder([final({"value": 11}), final({"value": 7})])
    async with make_core(tmp_path, rec) as core:
        session = await core.session("s").open()
        result = await session.turn("?", output=Score).run()
    assert result.output == Score(7)
    assert "'value' must be <= 10: 11" in tool_results(rec.requests[1])[-1]


@pytest.mark.anyio
async def test_a_text_answer_is_asked_to_use_the_tool(tmp_path: Path) -> None:
    """A plain-text answer is no output: the model is told to call the final-answer tool."""
    rec = Recorder(["It will be warm.", final({"city": "Oslo", "high": 3})])
    async with make_core(tmp_path, rec) as core:
        session = await core.session("s").open()
        result = await session.turn("?", output=FORECAST_SCHEMA).run()
    assert result.output == {"city": "Oslo", "high": 3}  # a schema dict gives JSON values
    last = rec.requests[1].messages[-1]
    assert last.role == "user" and "final_result" in last.content


@pytest.mark.anyio
async def test_real_tools_run_before_the_final_answer(tmp_path: Path) -> None:
    """Tool calls beside no final answer run as usual; then the final answer ends the turn."""
    rec = Recorder(
        [
            {"tool_calls": [{"name": "echo", "arguments": {"text": "21"}}]},
            final({"city": "Rome", "high": 21}),
        ]
    )
    async with make_core(tmp_path, rec, Echo()) as core:
        session = await core.session("s").open()
        result = await session.turn("?", output=Forecast).run()
    assert result.output == Forecast("Rome", 21)
    assert [r.result.content for r in result.tool_calls] == ["21"]


@pytest.mark.anyio
async def test_a_non_object_schema_is_wrapped(tmp_path: Path) -> None:
    """Tools take objects: a list schema is asked for under "result" and unwrapped."""
    rec = Recorder([final({"result": ["a", "b"]})])
    async with make_core(tmp_path, rec) as core:
        session = await core.session("s").open()
        result = await session.turn(
            "?", output={"type": "array", "items": {"type": "string"}}
        ).run()
    assert result.output == ["a", "b"]
    schema = {t.name: t for t in rec.requests[0].tools}["final_result"].parameters
    assert schema["required"] == ["result"]


@pytest.mark.anyio
async def test_output_survives_a_reload(tmp_path: Path) -> None:
    """The output is stored with the turn: resubmitting its id in a new core returns it typed."""
    rec = Recorder([final({"city": "Lima", "high": 25, "notes": ["dry"]})])
    async with make_core(tmp_path, rec) as core:
        session = await core.session("s").open()
        first = await session.turn("?", output=Forecast, id="t1").run()
    assert first.output == Forecast("Lima", 25, ("dry",))
    async with make_core(tmp_path, Recorder([])) as core:
        session = await core.session("s").open()
        typed = await session.turn("?", output=Forecast, id="t1").run()
        plain = await session.turn("?", id="t1").run()
        record = await core.store.turn_record("s", "t1")
    assert typed.output == Forecast("Lima", 25, ("dry",))
    assert plain.output == {"city": "Lima", "high": 25, "notes": ["dry"]}
    assert record is not None and record.result["output"] == plain.output


@pytest.mark.anyio
async def test_works_with_streaming(tmp_path: Path) -> None:
    """A streamed structured turn yields its events and ends with the validated output."""
    rec = Recorder([{"text": "thinking...", **final({"city": "Nice", "high": 19})}])
    async with make_core(tmp_path, rec) as core:
        session = await core.session("s").open()
        events = [e async for e in session.turn("?", output=Forecast).stream()]
    assert isinstance(events[0], lash.TextDeltaEvent)
    finished = events[-1]
    assert isinstance(finished, lash.TurnFinished)
    assert finished.result.output == Forecast("Nice", 19)


@pytest.mark.anyio
async def test_bad_output_requests_are_refused(tmp_path: Path) -> None:
    """Something that is no schema, an invalid schema or negative retries: SessionError."""
    async with make_core(tmp_path, Recorder([])) as core:
        session = await core.session("s").open()
        with pytest.raises(lash.SessionError, match="expected an attrs class, a JSON schema"):
            session.turn("?", output=42)
        with pytest.raises(lash.SessionError, match="not a valid JSON schema"):
            session.turn("?", output={"type": "nonsense"})
        with pytest.raises(lash.SessionError, match="output_retries must be an int >= 0"):
            session.turn("?", output=Forecast, output_retries=-1)


# -- the wire ----------------------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[WireServer]:
    with WireServer() as wire:
        yield wire


@pytest.mark.anyio
async def test_openai_gets_a_json_schema_response_format(
    tmp_path: Path, server: WireServer
) -> None:
    """OpenAI: response_format json_schema; a streamed invalid answer is sent back, then the
    streamed valid one is the output."""
    server.push(
        Reply(text=['{"city": "Par', 'is"}']),
        Reply(text=['```json\n{"city": "Paris", ', '"high": 22}\n```']),
    )
    core = lash.LashCore(
        plugins=[standard, stores, openai_plugin],
        builtins=(),
        store=sqlite_url(tmp_path),
        provider="openai",
        model=MODEL,
        options={"openai": {"base_url": server.base_url, "backoff": 0.01}},
    )
    async with core:
        session = await core.session("s").open()
        events = [e async for e in session.turn("?", output=Forecast).stream()]
    result = events[-1].result  # type: ignore[union-attr]
    assert result.output == Forecast("Paris", 22)
    deltas = [e.text for e in events if isinstance(e, lash.TextDeltaEvent)]
    assert deltas[:2] == ['{"city": "Par', 'is"}']
    first = server.requests[0].body
    assert first["response_format"]["type"] == "json_schema"
    assert first["response_format"]["json_schema"]["name"] == "Forecast"
    schema = first["response_format"]["json_schema"]["schema"]
    assert schema["required"] == ["city", "high"] and schema["additionalProperties"] is False
    assert "tools" not in first and "tool_choice" not in first
    retry = server.requests[1].body["messages"][-1]
    assert retry["role"] == "user"
    assert "$: 'high' is a required property" in retry["content"]


@pytest.mark.anyio
async def test_openai_can_use_the_final_answer_tool(tmp_path: Path, server: WireServer) -> None:
    """structured_output = false (a server without json_schema): the tool, tool_choice required."""
    server.push(
        Reply(tool_calls=[WireToolCall("c1", "final_result", ['{"city": "Bern", "high": 9}'])])
    )
    core = lash.LashCore(
        plugins=[standard, stores, openai_plugin],
        builtins=(),
        store=sqlite_url(tmp_path),
        provider="openai",
        model=MODEL,
        options={"openai": {"base_url": server.base_url, "structured_output": False}},
    )
    async with core:
        session = await core.session("s").open()
        result = await session.turn("?", output=Forecast).run()
    assert result.output == Forecast("Bern", 9)
    body = server.requests[0].body
    assert "response_format" not in body
    assert [t["function"]["name"] for t in body["tools"]] == ["final_result"]
    assert body["tool_choice"] == "required"


@pytest.mark.anyio
async def test_anthropic_gets_a_final_answer_tool(tmp_path: Path) -> None:
    """Anthropic: a final_result tool with the schema as input_schema and tool_choice any; an
    invalid tool_use input gets a tool_result with is_error and the errors."""
    with AnthropicWireServer() as server:
        server.push(
            Reply(tool_calls=[WireToolCall("toolu_1", "final_result", ['{"city": "Bonn"}'])]),
            Reply(
                tool_calls=[
                    WireToolCall("toolu_2", "final_result", ['{"city": "Bonn", "high": 12}'])
                ]
            ),
        )
        core = lash.LashCore(
            plugins=[standard, stores, anthropic_plugin],
            builtins=(),
            store=sqlite_url(tmp_path),
            provider="anthropic",
            model=MODEL,
            options={"anthropic": {"base_url": server.base_url, "api_key": "k"}},
        )
        async with core:
            session = await core.session("s").open()
            result = await session.turn("?", output=Forecast).run()
        requests = [r.body for r in server.requests]
    assert result.output == Forecast("Bonn", 12)
    tool = requests[0]["tools"][0]
    assert tool["name"] == "final_result"
    assert tool["input_schema"]["required"] == ["city", "high"]
    assert requests[0]["tool_choice"] == {"type": "any"}
    reply = requests[1]["messages"][-1]["content"][0]
    assert (reply["type"], reply["tool_use_id"]) == ("tool_result", "toolu_1")
    assert "$: 'high' is a required property" in reply["content"]


def final_result(answer: str) -> str:
    """A session tool that happens to have the final-answer tool's name."""
    return answer


class Clashing:
    """A plugin contributing a tool named ``final_result``."""

    lash_plugin = lash.PluginMeta(name="clashing")

    @lash.hookimpl
    def register_tools(self, register: lash.RegisterTool) -> None:
        register(final_result)


@pytest.mark.anyio
async def test_a_tool_named_like_the_final_answer_tool_fails_the_turn(tmp_path: Path) -> None:
    """The final-answer tool's name is taken: the turn fails, naming it, before any model call."""
    rec = Recorder([final({"city": "x", "high": 1})])
    async with make_core(tmp_path, rec, Clashing()) as core:
        session = await core.session("s").open()
        result = await session.turn("?", output=Forecast).run()
    assert result.outcome == "failed"
    assert "a tool named 'final_result' is in the catalog" in (result.error or "")
    assert rec.requests == []
