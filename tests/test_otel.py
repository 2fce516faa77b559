"""The ``otel`` builtin: spans for turns, model calls and tool calls, read from the SDK's
in-memory exporter through real turns with the scripted provider; and no cost when it is off.

Expected names and attributes come from the OpenTelemetry GenAI semantic conventions (inference
span ``chat {gen_ai.request.model}``, kind CLIENT; tool span ``execute_tool {gen_ai.tool.name}``,
kind INTERNAL; ``error.type`` and status ERROR on failure).
"""

from __future__ import annotations

import asyncio
import importlib
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import lash
from lash._plugins.dispatch import HookDispatcher
from lash_plugins_builtin.otel import OtelTracing


class Tools:
    """A tool that works and one that raises."""

    lash_plugin = lash.PluginMeta(name="tools")

    @lash.hookimpl
    def register_tools(self, register: lash.RegisterTool) -> None:
        def lookup(city: str) -> str:
            """Look a city up."""
            return f"{city}: 21 C"

        def broken(city: str) -> str:
            """Always fails."""
            raise RuntimeError(f"no data for {city}")

        register(lookup)
        register(broken)


def call(name: str, call_id: str, **arguments: Any) -> dict[str, Any]:
    return {"name": name, "id": call_id, "arguments": arguments}


#: Two tool calls in one round (one fails), then the answer.
ROUND_TRIP: list[Any] = [
    {
        "tool_calls": [call("lookup", "c1", city="Oslo"), call("broken", "c2", city="Rome")],
        "usage": {"input_tokens": 100, "output_tokens": 20},
    },
    {"text": "Oslo is mild.", "usage": {"input_tokens": 150, "output_tokens": 8}},
]


def make_core(
    script: Sequence[Any], *plugins: object, exporter: InMemorySpanExporter | None = None
) -> lash.LashCore:
    extra: list[object] = list(plugins)
    if exporter is not None:
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        extra.append(OtelTracing(tracer_provider=provider))
    return lash.LashCore(
        plugins=["standard", "stores", "scripted", Tools(), *extra],
        autoload=False,
        provider="scripted",
        model="m-1",
        store="memory://",
        options={"scripted": {"responses": list(script)}},
    )


def genai(span: ReadableSpan) -> dict[str, Any]:
    """The span's ``gen_ai.*`` attributes."""
    return {k: v for k, v in (span.attributes or {}).items() if k.startswith("gen_ai.")}


def by_name(spans: Sequence[ReadableSpan]) -> dict[str, ReadableSpan]:
    named = {span.name: span for span in spans}
    assert len(named) == len(spans), [s.name for s in spans]
    return named


@pytest.mark.anyio
async def test_turn_model_and_tool_spans_follow_the_genai_conventions() -> None:
    """A turn with a round of two tool calls gives a turn span, two chat spans and two tool
    spans, all children of the turn span in one trace, with the conventions' attributes."""
    exporter = InMemorySpanExporter()
    async with make_core(ROUND_TRIP, exporter=exporter) as core:
        session = await core.session("s1").open()
        result = await session.turn("Weather in Oslo?", id="turn-a").run()
    assert result.outcome == "completed"
    spans = exporter.get_finished_spans()
    assert sorted(s.name for s in spans) == [
        "chat m-1",
        "chat m-1",
        "execute_tool broken",
        "execute_tool lookup",
        "invoke_agent lash",
    ]
    turn = next(s for s in spans if s.name == "invoke_agent lash")
    assert turn.parent is None
    assert turn.attributes is not None
    assert dict(turn.attributes) == {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": "lash",
        "gen_ai.conversation.id": "s1",
        "lash.session.id": "s1",
        "lash.turn.id": "turn-a",
        "lash.turn.index": 1,
        "lash.turn.outcome": "completed",
        "gen_ai.usage.input_tokens": 250,
        "gen_ai.usage.output_tokens": 28,
    }
    assert turn.status.status_code is StatusCode.UNSET
    assert turn.context is not None
    for span in spans:
        assert span.context is not None and span.context.trace_id == turn.context.trace_id
        if span is not turn:
            assert span.parent is not None and span.parent.span_id == turn.context.span_id
            assert span.attributes is not None
            assert span.attributes["lash.session.id"] == "s1"
            assert span.attributes["lash.turn.id"] == "turn-a"
            assert span.attributes["gen_ai.conversation.id"] == "s1"
            # Children end before their parent.
            assert span.end_time is not None and turn.end_time is not None
            assert span.end_time <= turn.end_time

    first, second = sorted(
        (s for s in spans if s.name == "chat m-1"), key=lambda s: s.start_time or 0
    )
    assert first.kind is SpanKind.CLIENT
    assert first.attributes is not None and second.attributes is not None
    assert genai(first) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "scripted",
        "gen_ai.request.model": "m-1",
        "gen_ai.conversation.id": "s1",
        "gen_ai.usage.input_tokens": 100,
        "gen_ai.usage.output_tokens": 20,
        "gen_ai.response.finish_reasons": ("tool_calls",),
    }
    assert second.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert "gen_ai.request.temperature" not in first.attributes  # no options set
    assert (
        second.attributes["gen_ai.usage.input_tokens"],
        second.attributes["gen_ai.usage.output_tokens"],
    ) == (150, 8)
    assert first.status.status_code is StatusCode.UNSET
    # The model spans cover the calls: the first ends before the tools start, the second after.
    tools = by_name([s for s in spans if s.name.startswith("execute_tool")])
    assert first.end_time is not None and second.start_time is not None
    for tool in tools.values():
        assert tool.start_time is not None and tool.end_time is not None
        assert first.end_time <= tool.start_time and tool.end_time <= second.start_time

    lookup, broken = tools["execute_tool lookup"], tools["execute_tool broken"]
    assert lookup.kind is SpanKind.INTERNAL
    assert lookup.attributes is not None and broken.attributes is not None
    assert genai(lookup) == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "lookup",
        "gen_ai.tool.call.id": "c1",
        "gen_ai.tool.type": "function",
        "gen_ai.conversation.id": "s1",
    }
    assert lookup.status.status_code is StatusCode.UNSET
    assert broken.attributes["gen_ai.tool.call.id"] == "c2"
    assert broken.status.status_code is StatusCode.ERROR
    assert broken.attributes["error.type"] == "tool_error"
    assert "no data for Rome" in (broken.status.description or "")


@pytest.mark.anyio
async def test_a_failing_model_call_is_an_error_span_and_fails_the_turn_span() -> None:
    """A provider error ends the chat span with status ERROR, the exception recorded and
    error.type naming its class; the failed turn's span is an error too."""
    exporter = InMemorySpanExporter()
    script = [{"text": "partial", "error": "upstream 503"}]
    async with make_core(script, exporter=exporter) as core:
        session = await core.session("s2").open()
        result = await session.turn("hi").run()
    assert result.outcome == "failed"
    spans = by_name(exporter.get_finished_spans())
    assert set(spans) == {"chat m-1", "invoke_agent lash"}
    chat, turn = spans["chat m-1"], spans["invoke_agent lash"]
    assert chat.status.status_code is StatusCode.ERROR
    assert "upstream 503" in (chat.status.description or "")
    assert chat.attributes is not None
    assert chat.attributes["error.type"] == "lash.ProviderError"
    assert "gen_ai.usage.input_tokens" not in chat.attributes  # no response, no usage
    assert [event.name for event in chat.events] == ["exception"]
    assert turn.status.status_code is StatusCode.ERROR
    assert "upstream 503" in (turn.status.description or "")
    assert turn.attributes is not None
    assert turn.attributes["lash.turn.outcome"] == "failed"
    assert chat.parent is not None and turn.context is not None
    assert chat.parent.span_id == turn.context.span_id


@pytest.mark.anyio
async def test_model_options_are_request_attributes() -> None:
    """The turn's model options appear as gen_ai.request.* attributes of its chat span."""
    exporter = InMemorySpanExporter()
    async with make_core([{"text": "ok"}], exporter=exporter) as core:
        session = await core.session("s7").open()
        options = {"temperature": 0.2, "max_tokens": 64, "top_p": 0.9, "seed": 7, "stop": ["END"]}
        assert (await session.turn("hi", model_options=options).run()).outcome == "completed"
    chat = by_name(exporter.get_finished_spans())["chat m-1"]
    assert {k: v for k, v in genai(chat).items() if k.startswith("gen_ai.request.")} == {
        "gen_ai.request.model": "m-1",
        "gen_ai.request.temperature": 0.2,
        "gen_ai.request.max_tokens": 64,
        "gen_ai.request.top_p": 0.9,
        "gen_ai.request.seed": 7,
        "gen_ai.request.stop_sequences": ("END",),
    }


@pytest.mark.anyio
async def test_each_structured_output_retry_is_a_chat_span() -> None:
    """A structured-output answer sent back as invalid and given again: two chat spans under
    the turn's span, one per request."""
    exporter = InMemorySpanExporter()
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}

    def answer(**arguments: object) -> dict[str, Any]:
        return {"tool_calls": [{"name": "final_result", "arguments": arguments}]}

    async with make_core([answer(n="x"), answer(n=3)], exporter=exporter) as core:
        session = await core.session("s8").open()
        result = await session.turn("Count", output=schema).run()
    assert (result.outcome, result.output) == ("completed", {"n": 3})
    spans = exporter.get_finished_spans()
    turn = by_name([s for s in spans if s.name.startswith("invoke_agent")])["invoke_agent lash"]
    chats = [s for s in spans if s.name == "chat m-1"]
    assert len(chats) == 2
    assert all(c.parent is not None and turn.context is not None for c in chats)
    assert {c.parent.span_id for c in chats if c.parent} == {turn.context.span_id}


@pytest.mark.anyio
async def test_a_short_circuited_tool_call_still_ends_its_span() -> None:
    """A tool call that another plugin short-circuits (after_tool_call never runs) still gets
    its span ended, as not completed, when the turn ends; the next turn is traced as usual."""
    exporter = InMemorySpanExporter()

    class Guard:
        lash_plugin = lash.PluginMeta(name="guard")

        @lash.hookimpl
        def before_tool_call(self, call: lash.ToolCall) -> lash.ShortCircuitToolCall:
            return lash.ShortCircuitToolCall(f"{call.name} is not allowed here", is_error=True)

    script = [{"tool_calls": [call("lookup", "c9", city="Oslo")]}, {"text": "no"}, {"text": "ok"}]
    async with make_core(script, Guard(), exporter=exporter) as core:
        session = await core.session("s3").open()
        first = await session.turn("one").run()
        second = await session.turn("two").run()
    assert (first.outcome, second.outcome) == ("completed", "completed")
    spans = exporter.get_finished_spans()
    turns = [s for s in spans if s.name == "invoke_agent lash"]
    assert len(turns) == 2
    (tool,) = [s for s in spans if s.name == "execute_tool lookup"]
    assert tool.status.status_code is StatusCode.ERROR
    assert tool.attributes is not None and tool.attributes["error.type"] == "not_completed"
    assert turns[0].context is not None and tool.parent is not None
    assert tool.parent.span_id == turns[0].context.span_id
    assert turns[0].context.trace_id != (turns[1].context.trace_id if turns[1].context else 0)


class Deploy:
    """A tool that needs a person's approval."""

    lash_plugin = lash.PluginMeta(name="deploy")

    @lash.hookimpl
    def register_tools(self, register: lash.RegisterTool) -> None:
        def deploy(target: str) -> str:
            """Deploy to a target."""
            return f"deployed to {target}"

        register(lash.tool(deploy, approval="always"))


@pytest.mark.anyio
async def test_a_turn_held_for_approval_and_its_continuation_are_traced() -> None:
    """A call held for approval ends its span with the turn (awaiting approval, not an error);
    the continuation (no before_turn) gets a span of its own, same turn id, marked continued,
    with its model call as a child."""
    exporter = InMemorySpanExporter()
    script = [{"tool_calls": [call("deploy", "d1", target="prod")]}, {"text": "Deployed."}]
    async with make_core(script, Deploy(), exporter=exporter) as core:
        session = await core.session("s6").open()
        held = await session.turn("Ship it", id="turn-ship").run()
        assert (held.outcome, held.reason) == ("stopped", "awaiting_approval")
        await core.approve("s6", "d1")
        (continued,) = await session.drain()
        assert (continued.outcome, continued.turn_id) == ("completed", "turn-ship")
    spans = exporter.get_finished_spans()
    first, second = sorted(
        (s for s in spans if s.name == "invoke_agent lash"), key=lambda s: s.start_time or 0
    )
    assert first.attributes is not None and second.attributes is not None
    assert first.attributes["lash.turn.reason"] == "awaiting_approval"
    assert "lash.turn.continued" not in first.attributes
    assert (second.attributes["lash.turn.id"], second.attributes["lash.turn.continued"]) == (
        "turn-ship",
        True,
    )
    assert second.attributes["lash.turn.outcome"] == "completed"
    (tool,) = [s for s in spans if s.name == "execute_tool deploy"]
    assert tool.status.status_code is StatusCode.UNSET
    assert tool.attributes is not None and tool.attributes["lash.tool.awaiting_approval"] is True
    chats = sorted((s for s in spans if s.name == "chat m-1"), key=lambda s: s.start_time or 0)
    assert [c.parent.span_id if c.parent else None for c in chats] == [
        first.context.span_id if first.context else 0,
        second.context.span_id if second.context else 0,
    ]


@pytest.mark.anyio
async def test_a_turn_nests_under_the_hosts_current_span() -> None:
    """A turn run while the host has a span current is that span's child (same trace)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("host")
    core = make_core([{"text": "ok"}], OtelTracing(tracer_provider=provider))
    async with core:
        session = await core.session("s4").open()
        with tracer.start_as_current_span("handle request") as request_span:
            await session.turn("hi").run()
    spans = by_name(exporter.get_finished_spans())
    turn = spans["invoke_agent lash"]
    assert turn.parent is not None
    assert turn.parent.span_id == request_span.get_span_context().span_id
    assert spans["chat m-1"].parent is not None and turn.context is not None
    assert spans["chat m-1"].parent.span_id == turn.context.span_id


@pytest.mark.anyio
async def test_a_cancelled_model_call_is_reported_as_an_error_span() -> None:
    """A turn cancelled while the model streams ends the chat span as an error
    (CancelledError) and the turn span with outcome stopped(cancelled)."""
    exporter = InMemorySpanExporter()
    calling = asyncio.Event()

    class Signal:
        lash_plugin = lash.PluginMeta(name="signal")

        @lash.hookimpl
        def transform_prompt_view(self) -> None:
            calling.set()  # the provider is called next, without a suspension in between

    async with make_core([{"text": "slow", "delay": 30}], Signal(), exporter=exporter) as core:
        session = await core.session("s5").open()
        turn = session.turn("hi")
        running = asyncio.create_task(turn.run())
        await calling.wait()
        turn.cancel(reason="enough")
        result = await running
    assert (result.outcome, result.reason) == ("stopped", "cancelled")
    spans = by_name(exporter.get_finished_spans())
    chat, turn_span = spans["chat m-1"], spans["invoke_agent lash"]
    assert chat.status.status_code is StatusCode.ERROR
    assert (
        chat.attributes is not None
        and chat.attributes["error.type"] == "asyncio.exceptions.CancelledError"
    )
    assert turn_span.attributes is not None
    assert turn_span.attributes["lash.turn.outcome"] == "stopped"
    assert turn_span.attributes["lash.turn.reason"] == "cancelled"
    assert turn_span.status.status_code is StatusCode.UNSET


@pytest.mark.anyio
async def test_model_calls_are_not_dispatched_without_an_observer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without a model_call_finished implementation the kernel never dispatches it (and with
    the otel plugin, once per model call)."""
    dispatched: list[str] = []
    original = HookDispatcher.broadcast

    async def counting(self: HookDispatcher, hook: str, /, **kwargs: Any) -> Any:
        dispatched.append(hook)
        return await original(self, hook, **kwargs)

    monkeypatch.setattr(HookDispatcher, "broadcast", counting)
    async with make_core(ROUND_TRIP) as core:
        session = await core.session("off").open()
        assert (await session.turn("hi").run()).outcome == "completed"
    assert "model_call_finished" not in dispatched
    assert "turn_finalized" in dispatched  # the counter does see the turn's broadcasts
    dispatched.clear()
    async with make_core(ROUND_TRIP, exporter=InMemorySpanExporter()) as core:
        session = await core.session("on").open()
        assert (await session.turn("hi").run()).outcome == "completed"
    assert dispatched.count("model_call_finished") == 2


def run_python(code: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LASH_")}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_nothing_of_opentelemetry_is_imported_when_otel_is_not_enabled() -> None:
    """A host with the default builtins (otel installed but not listed) runs a turn without
    importing OpenTelemetry; listing ``otel`` loads the class plugin through its entry point,
    which uses the global tracer provider."""
    out = run_python(
        """
        import asyncio, sys
        import lash

        async def main():
            core = lash.LashCore(
                provider="scripted", store="memory://",
                options={"scripted": {"responses": [{"text": "hello"}]}},
            )
            async with core:
                session = await core.session("s").open()
                print((await session.turn("hi").run()).outcome)
                info = {p.name: p.status for p in core.plugins}
                print("otel", info.get("otel"))
            print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))

        asyncio.run(main())
        """
    )
    assert out.splitlines() == ["completed", "otel disabled", "[]"]
    out = run_python(
        """
        import asyncio
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )
        import lash

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)

        async def main():
            core = lash.LashCore(
                plugins=["standard", "stores", "scripted", "otel"], autoload=False,
                provider="scripted", model="m", store="memory://",
                options={"scripted": {"responses": [{"text": "hello"}]}},
            )
            async with core:
                session = await core.session("s").open()
                await session.turn("hi").run()
            print(sorted(s.name for s in exporter.get_finished_spans()))

        asyncio.run(main())
        """
    )
    assert out.splitlines() == ["['chat m', 'invoke_agent lash']"]


EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"


@pytest.mark.usefixtures("_example_path")
def test_tracing_example_prints_what_the_page_shows(capsys: pytest.CaptureFixture[str]) -> None:
    """docs/examples/tracing.py: a turn span with two chat spans and a tool span under it, and
    the model_call_finished plugin's lines; the output is docs/examples/tracing.txt."""
    tracing = importlib.import_module("tracing")  # docs/examples/tracing.py

    spans = asyncio.run(tracing.main())
    assert sorted(s.name for s in spans) == [
        "chat demo-model",
        "chat demo-model",
        "execute_tool weather",
        "invoke_agent lash",
    ]
    out = capsys.readouterr().out
    assert out == (EXAMPLES / "tracing.txt").read_text(encoding="utf-8")
    assert out.splitlines()[:2] == [
        "model call to scripted:demo-model: tool_calls, 120 in / 18 out",
        "model call to scripted:demo-model: stop, 160 in / 9 out",
    ]


@pytest.fixture
def _example_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    sys.modules.pop("tracing", None)
    yield
    sys.modules.pop("tracing", None)
