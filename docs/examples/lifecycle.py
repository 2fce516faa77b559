"""Where each hook fires: a plugin that logs every session and turn hook it receives."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import lash
from lash_plugins_builtin.scripted import ScriptedProvider


class Tracer:
    """Logs each hook call; also contributes a tool and a provider, to log their use too."""

    lash_plugin = lash.PluginMeta(name="tracer")

    def __init__(self, script: list[dict[str, object]]) -> None:
        self.lines: list[str] = []
        self.model = ScriptedProvider(script)

    def log(self, line: str) -> None:
        self.lines.append(line)

    # -- contributions: a tool and a provider that log when they are used

    @lash.hookimpl
    def register_tools(self, register: lash.RegisterTool) -> None:
        def multiply(a: int, b: int) -> int:
            """Multiply two integers."""
            self.log(f"    tool multiply({a}, {b}) runs")
            return a * b

        register(multiply)

    @lash.hookimpl
    def register_providers(self, register: lash.RegisterProvider) -> None:
        register("traced", self)

    async def stream(self, request: lash.ModelRequest) -> AsyncIterator[lash.ModelEvent]:
        self.log(f"  model call: {len(request.messages)} messages")
        async for event in self.model.stream(request):
            yield event

    # -- opening a session

    @lash.hookimpl
    def prepare_session(self, is_root: bool) -> None:
        self.log(f"prepare_session(is_root={is_root})")

    @lash.hookimpl
    def session_opened(self, session: lash.SessionView, restored: bool) -> None:
        self.log(f"session_opened({session.id!r}, restored={restored})")

    # -- a turn

    @lash.hookimpl
    def before_turn(self, turn: lash.TurnView) -> None:
        self.log(f"before_turn(#{turn.index}, {turn.input!r})")

    @lash.hookimpl
    def filter_tool_catalog(self, catalog: tuple[lash.ToolCatalogEntry, ...]) -> None:
        self.log(f"  filter_tool_catalog({', '.join(entry.name for entry in catalog)})")

    @lash.hookimpl
    def prompt_contributions(self) -> lash.PromptContribution:
        self.log("  prompt_contributions")
        return lash.PromptContribution("Use the tools for arithmetic.")

    @lash.hookimpl
    def transform_prompt_view(self, view: lash.PromptView) -> None:
        roles = " ".join(message.role for message in view.messages)
        self.log(f"  transform_prompt_view({roles})")

    @lash.hookimpl
    def before_tool_call(self, call: lash.ToolCall) -> None:
        self.log(f"    before_tool_call({call.name}, {dict(call.arguments)})")

    @lash.hookimpl
    def after_tool_call(self, call: lash.ToolCall, result: lash.ToolResult) -> None:
        self.log(f"    after_tool_call({call.name}) -> {result.content!r}")

    @lash.hookimpl
    def project_tool_result(self, call: lash.ToolCall) -> None:
        self.log(f"    project_tool_result({call.name})")

    @lash.hookimpl
    def after_turn(self, turn: lash.TurnView) -> None:
        assert turn.result is not None
        self.log(f"after_turn({turn.result.outcome}, {turn.result.text!r})")

    @lash.hookimpl
    def turn_finalized(self, turn: lash.TurnView) -> None:
        self.log("turn_finalized")

    @lash.hookimpl
    def turn_persisted(self, revision: int) -> None:
        self.log(f"turn_persisted(revision={revision})")

    @lash.hookimpl
    def session_closed(self, session: lash.SessionView) -> None:
        self.log(f"session_closed({session.id!r})")


SCRIPT: list[dict[str, object]] = [
    {"tool_calls": [{"name": "multiply", "arguments": {"a": 6, "b": 7}}]},
    {"text": "6 x 7 = 42."},
]


async def main() -> list[str]:
    tracer = Tracer(SCRIPT)
    core = lash.LashCore(
        plugins=["standard", "stores", tracer],
        autoload=False,
        disable=["plan", "scripted", "openai", "tool_output_budget"],
        provider="traced",
    )
    async with core:
        async with core.session("trace") as session:  # opens, and closes at the end
            await session.turn("What is 6 x 7?").run()
        tracer.log("-- resume --")
        await core.session("trace").open()
    print("\n".join(tracer.lines))
    return tracer.lines


if __name__ == "__main__":
    asyncio.run(main())
