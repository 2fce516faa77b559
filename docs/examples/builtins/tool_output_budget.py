"""The builtin ``tool_output_budget``: the model sees only the end of a long build log."""

import asyncio
from collections.abc import Mapping
from typing import Any

import lash

# Listed by object so the example also runs where the builtin is not installed as an entry point.
from lash_plugins_builtin import tool_output_budget


def build_log(steps: int) -> str:
    """Run the build; return its log, one line per step."""
    return "".join(f"step {n}: ok\n" for n in range(1, steps + 1)) + "build succeeded\n"


class BuildTools:
    """The host's own tool."""

    lash_plugin = lash.PluginMeta(name="build_tools")

    @lash.hookimpl
    def register_tools(self, register: lash.RegisterTool) -> None:
        register(build_log)


# Each session's turn: the model runs the build, then answers.
SCRIPT = [
    {"tool_calls": [{"name": "build_log", "arguments": {"steps": 40}}]},
    {"text": "The build succeeded."},
] * 2

# The host's options for the budget: the same keys as [options.tool_output_budget] in lash.toml.
BUDGET = {
    "max_bytes": 16_000,
    "max_lines": 400,
    # What matters in a build log is at its end: the model sees its last 3 lines.
    "per_tool": {"build_log": {"keep": "tail", "max_lines": 3}},
}


async def run_build(
    core: lash.LashCore, session_id: str, options: Mapping[str, Any] | None = None
) -> lash.ToolResultNode:
    """One turn in session ``session_id``; print and return the build log's result node."""
    session = await core.session(session_id, options=options).open()
    await session.turn("Run the build.").run()
    (node,) = [n for n in session.nodes if isinstance(n, lash.ToolResultNode)]
    # The graph holds the whole log; `projected` is what the model was shown instead.
    print(f"{session_id}: the log has {len(node.content.splitlines())} lines; the model saw:")
    print(node.projected, end="")
    return node


async def main() -> list[lash.ToolResultNode]:
    core = lash.LashCore(
        plugins=["standard", "stores", "scripted", tool_output_budget, BuildTools],
        autoload=False,
        provider="scripted",
        options={"scripted": {"responses": SCRIPT}, "tool_output_budget": BUDGET},
    )
    async with core:
        tail = await run_build(core, "host-options")
        # A session's options replace the host's, key by key (here the whole per_tool table).
        both_ends = {"per_tool": {"build_log": {"keep": "head_tail", "max_lines": 4}}}
        ends = await run_build(core, "session-options", {"tool_output_budget": both_ends})
        return [tail, ends]


if __name__ == "__main__":
    asyncio.run(main())
