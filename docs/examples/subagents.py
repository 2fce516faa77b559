"""Sub-agents: a tool that hands a question to a child session restricted to one tool, and a
host that creates a child of its own; the parent's usage report counts what both spent.

Run it with ``python docs/examples/subagents.py`` (a scripted model: no network).
"""

from __future__ import annotations

import asyncio

import lash
from lash_plugins_builtin import standard, stores


def search(query: str) -> str:
    """Search the (pretend) web."""
    return f"3 pages about {query}"


async def research(question: str, context: lash.ToolContext) -> str:
    """Hand a question to a research sub-agent that may only search."""
    # One child per call (its id says which); it may only search.
    child_id = f"{context.session.id}/research-{context.call_id}"
    async with context.session.child(id=child_id, tools=["search"]) as child:
        result = await child.turn(question).run()
    return result.text


class Research:
    lash_plugin = lash.PluginMeta(name="research")

    @lash.hookimpl
    def register_tools(self, register: lash.RegisterTool) -> None:
        register(search)
        register(research)

    @lash.hookimpl
    def prepare_session(self, session: lash.SessionView, is_root: bool) -> None:
        print(f"  prepare_session({session.id!r}, is_root={is_root})")


def usage(tokens_in: int, tokens_out: int) -> dict[str, int]:
    return {"input_tokens": tokens_in, "output_tokens": tokens_out}


SCRIPT = [
    # The parent's model delegates...
    {"tool_calls": [{"name": "research", "arguments": {"question": "Who makes lash?"}}]},
    # ...the child's model searches, then answers...
    {"tool_calls": [{"name": "search", "arguments": {"query": "lash sdk"}}], "usage": usage(40, 5)},
    {"text": "Its authors, per 3 pages.", "usage": usage(60, 7)},
    # ...and the parent's model answers with what the child found.
    {"text": "Its authors make it.", "usage": usage(100, 9)},
    # The host's own child (a summary, with the parent's configuration).
    {"text": "Summary: lash is made by its authors.", "usage": usage(30, 6)},
]


async def main() -> None:
    core = lash.LashCore(
        plugins=[standard, stores, "scripted", Research()],
        store="memory://",
        provider="scripted",
        options={"scripted": {"responses": SCRIPT}},
    )
    async with core:
        print("parent turn:")
        parent = await core.session("trip").open()
        result = await parent.turn("Who makes lash?").run()
        print(f"  answer: {result.text}")
        print("host child:")
        child = await core.child_session("trip", id="trip/summary").open()
        summary = await child.turn("Summarize what we learned.").run()
        await child.close()
        print(f"  {child.id}: parent {child.parent_id!r}, answer {summary.text!r}")
        print("usage by source, in the parent:")
        for source, row in parent.usage_report()["by_source"].items():
            print(f"  {source}: {row['input_tokens']} in, {row['output_tokens']} out")
        print("sessions:")
        for row in sorted(await core.store.list_sessions(), key=lambda r: r.session_id):
            print(f"  {row.session_id}: parent {row.parent_id!r}, {row.usage.input_tokens} in")


if __name__ == "__main__":
    asyncio.run(main())
