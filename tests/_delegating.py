"""A plugin kernel tests share: a tool that runs a task as one turn of a child session made in
the calling session's turn (so before the parent's commit, in its first turn)."""

from __future__ import annotations

import lash


class Delegating:
    """Registers ``delegate``: its n-th call runs the task in a new child ``<parent>/sub<n>``
    of the session that called it, and returns the child's answer."""

    lash_plugin = lash.PluginMeta(name="delegating")

    def __init__(self) -> None:
        self.calls = 0

    @lash.hookimpl
    def register_tools(self, register: lash.RegisterTool) -> None:
        async def delegate(task: str, context: lash.ToolContext) -> str:
            """Delegates a task to a sub-agent."""
            self.calls += 1
            child_id = f"{context.session.id}/sub{self.calls}"
            async with await context.session.child(id=child_id).open() as child:
                return (await child.turn(task).run()).text

        register(delegate)
