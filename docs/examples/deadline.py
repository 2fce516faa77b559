"""Stop a running turn: a deadline per turn, with ``session.cancel_running_turns()``."""

from __future__ import annotations

import asyncio

import lash


async def run_with_deadline(session: lash.Session, text: str, seconds: float) -> lash.TurnResult:
    """Run one turn, stopping it after ``seconds`` (a "stop" button would do the same)."""
    timer = asyncio.get_running_loop().call_later(seconds, session.cancel_running_turns)
    try:
        return await session.turn(text).run()  # a stopped turn is still committed
    finally:
        timer.cancel()


async def wait_for_build(build: int) -> str:
    """Wait until a CI build finishes and return its status."""
    while True:  # a real tool would poll the CI server about `build` here
        await asyncio.sleep(5)  # cancelling the turn interrupts an async tool at an await


class Builds:
    lash_plugin = lash.PluginMeta(name="builds")

    @lash.hookimpl
    def register_tools(self, register: lash.RegisterTool) -> None:
        register(lash.tool(wait_for_build, timeout=3600))


SCRIPT = [
    {
        "text": "Waiting for build 42.",
        "tool_calls": [{"name": "wait_for_build", "arguments": {"build": 42}}],
    },
    {"text": "OK, I stopped waiting."},
]


async def main(seconds: float = 1.0) -> tuple[lash.TurnResult, lash.TurnResult]:
    core = lash.LashCore(
        plugins=["standard", "stores", "scripted", Builds],
        autoload=False,
        provider="scripted",
        options={"scripted": {"responses": SCRIPT}},
    )
    async with core:
        session = await core.session("ci").open()
        stopped = await run_with_deadline(session, "Tell me when build 42 is green.", seconds)
        print(f"{stopped.outcome} ({stopped.reason}), committed as revision {stopped.revision}")
        for record in stopped.tool_calls:
            print(f"  {record.call.name}: {record.result.content}")
        # The session goes on: the model sees the interrupted call and its error result.
        after = await session.turn("Never mind, stop waiting.").run()
        print(f"{after.outcome}: {after.text}")
        return stopped, after


if __name__ == "__main__":
    asyncio.run(main())
