"""Tool approval that survives a restart: a turn stops for a person's answer, another process
answers, a third continues the turn.

Three cores over one SQLite file stand in for three processes: ``agent`` runs the turn until it
stops for approval (and then exits), ``desk`` lists the pending calls and answers them, and
``worker`` (a fresh process: nothing of the turn is in its memory) continues the turn. Run it
with ``python docs/examples/approvals.py``.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

import lash

# -- the plugin ---------------------------------------------------------------------------------


def delete_branch(name: str) -> str:
    """Delete a git branch."""
    return f"deleted branch {name}"


def list_branches() -> list[str]:
    """List the git branches."""
    return ["main", "old-ui", "spike"]


def push(branch: str, force: bool = False) -> str:
    """Push a branch."""
    return f"pushed {branch}" + (" (forced)" if force else "")


class Git:
    """Git tools: deleting a branch always needs approval; a push needs it when forced."""

    lash_plugin = lash.PluginMeta(name="git")

    @lash.hookimpl
    def register_tools(self, register: lash.RegisterTool) -> None:
        register(lash.tool(delete_branch, approval="always"))
        register(list_branches)
        register(push)

    @lash.hookimpl
    def before_tool_call(self, call: lash.ToolCall, context: lash.ToolContext) -> Any:
        if call.name == "push" and call.arguments.get("force"):
            return lash.RequireApproval("a forced push rewrites the remote branch")
        return None


# -- the three processes ------------------------------------------------------------------------


def build_core(db: Path, script: list[dict[str, Any]]) -> lash.LashCore:
    return lash.LashCore(
        plugins=["standard", "stores", "scripted", Git()],
        autoload=False,
        store=f"sqlite:///{db}",
        provider="scripted",
        options={"scripted": {"responses": script}},
    )


def call(tool: str, call_id: str, **arguments: Any) -> dict[str, Any]:
    return {"name": tool, "id": call_id, "arguments": arguments}


async def agent(db: Path) -> None:
    """Runs the turn: the model asks for four calls; two of them wait for a person."""
    script = [
        {
            "tool_calls": [
                call("list_branches", "c1"),
                call("delete_branch", "c2", name="old-ui"),
                call("delete_branch", "c3", name="main"),
                call("push", "c4", branch="spike", force=True),
            ]
        }
    ]
    async with build_core(db, script) as core, core.session("repo") as session:
        result = await session.turn("Tidy up the branches.").run()
        print(f"agent: {result.outcome} ({result.reason}): {result.detail}")


async def desk(db: Path) -> None:
    """Lists the calls waiting for approval and answers them (no lease, no model)."""
    async with build_core(db, []) as core:
        for pending in await core.approvals("repo"):
            why = f" ({pending.why})" if pending.why else ""
            print(f"desk: {pending.call_id} {pending.tool} {pending.arguments}{why}")
        answers = [
            await core.approve("repo", "c2"),
            await core.approve("repo", "c3", decision="reject", reason="main stays"),
            await core.approve("repo", "c4", key="push-spike"),
            await core.approve("repo", "c4", decision="reject"),  # a second answer: no-op
            await core.approve("repo", "c9"),
        ]
        for answer in answers:
            print(f"desk: {answer.call_id}: {answer.outcome} (decision {answer.decision})")


async def worker(db: Path) -> None:
    """A fresh process continues the same turn: the model is not asked for the calls again."""
    script = [{"text": "Deleted old-ui and force-pushed spike; main stays, as you asked."}]
    async with build_core(db, script) as core, core.session("repo") as session:
        (result,) = await session.drain()
        print(f"worker: turn {result.index} {result.outcome}: {result.text}")
        for record in result.tool_calls:
            print(f"worker:   {record.call.id} -> {record.result.content}")
        print(f"worker: the session has {session.turns} turn")


async def main(directory: Path | None = None) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        db = (directory or Path(scratch)) / "approvals.db"
        await agent(db)
        await desk(db)
        await worker(db)


if __name__ == "__main__":
    asyncio.run(main())
