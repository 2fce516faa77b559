"""Example class and instance plugins that declare their order and adjust single hooks."""

from __future__ import annotations

import lash


class Summaries:
    """A class plugin: lash instantiates it once per core.

    It needs the greeter and runs after it, whatever order the host lists them in.
    """

    lash_plugin = lash.PluginMeta(
        name="summaries",
        description="Fallback compaction.",
        after=("greeter",),
        requires=("greeter",),
    )

    # trylast: a fallback for a "first" hook; any other plugin's compaction wins.
    @lash.hookimpl(trylast=True)
    def compact_context(
        self, session: lash.SessionView, instructions: str | None
    ) -> lash.Compaction:
        summary = instructions or "The earlier conversation was compacted."
        return lash.Compaction(summary=summary, keep_recent_turns=2)


class Audit:
    """A class plugin whose ``before_tool_call`` runs before every other plugin's."""

    lash_plugin = lash.PluginMeta(name="audit", description="Refuses denied tools.")

    def __init__(self) -> None:
        # Built once per core, shared by every session: read-only configuration only.
        self.denied = frozenset({"delete_everything"})

    @lash.hookimpl(tryfirst=True)
    def before_tool_call(self, call: lash.ToolCall) -> lash.ToolCallDirective | None:
        if call.name in self.denied:
            return lash.AbortToolCall(f"the {call.name} tool is not allowed here")
        return None


class OutputBudget:
    """An instance plugin: the host passes an instance it configured itself."""

    lash_plugin = lash.PluginMeta(name="output_budget", description="Truncates tool output.")

    def __init__(self, max_chars: int = 2000) -> None:
        self.max_chars = max_chars

    # project_tool_result is exclusive: a host using this plugin disables the builtin one.
    @lash.hookimpl
    async def project_tool_result(self, result: lash.ToolResult) -> str | None:
        if len(result.content) <= self.max_chars:
            return None
        hidden = len(result.content) - self.max_chars
        return f"{result.content[: self.max_chars]}\n[{hidden} more characters]"
