"""Tracing a turn with the ``otel`` builtin: an OpenTelemetry SDK set up by the host, one turn
with a tool call, and the spans it produced; plus a plugin of its own on model_call_finished."""

from __future__ import annotations

import asyncio

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import lash
from lash_plugins_builtin.otel import OtelTracing

# The model asks for the weather tool, then answers.
SCRIPT = [
    {
        "tool_calls": [{"name": "weather", "id": "call-1", "arguments": {"city": "Oslo"}}],
        "usage": {"input_tokens": 120, "output_tokens": 18},
    },
    {"text": "It is 21 C in Oslo.", "usage": {"input_tokens": 160, "output_tokens": 9}},
]


class Weather:
    lash_plugin = lash.PluginMeta(name="weather")

    @lash.hookimpl
    def register_tools(self, register: lash.RegisterTool) -> None:
        def weather(city: str) -> str:
            """The current weather in a city."""
            return f"{city}: 21 C, clear"

        register(weather)


class CallLog:
    """A plugin of its own on the same hook the tracer uses: one line per model call."""

    lash_plugin = lash.PluginMeta(name="call_log")

    @lash.hookimpl
    def model_call_finished(
        self,
        provider: str,
        request: lash.ModelRequest,
        response: lash.ModelResponse | None,
        error: BaseException | None,
    ) -> None:
        if response is None:
            print(f"model call to {provider}:{request.model} failed: {error}")
            return
        usage = response.usage
        print(
            f"model call to {provider}:{request.model}: {response.finish_reason}, "
            f"{usage.input_tokens} in / {usage.output_tokens} out"
        )


def show(spans: tuple[ReadableSpan, ...]) -> None:
    """Print the spans as a tree, in start order, with their main attributes."""
    keys = (
        "lash.turn.outcome",
        "gen_ai.tool.call.id",
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens",
        "gen_ai.response.finish_reasons",
    )
    for span in sorted(spans, key=lambda s: s.start_time or 0):
        depth = 0 if span.parent is None else 1
        attributes = span.attributes or {}
        shown = ", ".join(f"{k}={attributes[k]}" for k in keys if k in attributes)
        print(f"{'  ' * depth}{span.name} [{span.status.status_code.name}] {shown}")


async def main() -> tuple[ReadableSpan, ...]:
    # The host's OpenTelemetry set-up: here an in-memory exporter; in production an OTLP one.
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))

    core = lash.LashCore(
        # OtelTracing(tracer_provider=...) uses that provider; listing "otel" by name uses the
        # global one (opentelemetry.trace.set_tracer_provider).
        plugins=[
            "standard",
            "stores",
            "scripted",
            Weather(),
            CallLog(),
            OtelTracing(tracer_provider=tracer_provider),
        ],
        autoload=False,
        provider="scripted",
        model="demo-model",
        store="memory://",
        options={"scripted": {"responses": SCRIPT}},
    )
    async with core:
        session = await core.session("trip-planner").open()
        result = await session.turn("What is the weather in Oslo?", id="turn-1").run()
        print(f"{result.outcome}: {result.text}")
    spans = exporter.get_finished_spans()
    show(spans)
    return spans


if __name__ == "__main__":
    asyncio.run(main())
