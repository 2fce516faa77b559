"""The builtin ``subagent``: the model hands a task to a sub-agent and ends its turn; a worker
runs the sub-agent (a child session that may only look things up) and the answer comes back to
the parent as a new turn."""

import asyncio

import lash

# Listed by object so the example also runs where the builtin is not installed as an entry point.
from lash_plugins_builtin import subagent


def lookup(topic: str) -> str:
    """Look a topic up in the (pretend) encyclopedia."""
    return f"{topic}: twice a day, pulled by the moon"


class Encyclopedia:
    lash_plugin = lash.PluginMeta(name="encyclopedia")

    @lash.hookimpl
    def register_tools(self, register: lash.RegisterTool) -> None:
        register(lookup)


def usage(tokens_in: int, tokens_out: int) -> dict[str, int]:
    return {"input_tokens": tokens_in, "output_tokens": tokens_out}


SCRIPT = [
    # The parent's turn: delegate, then end the turn without waiting.
    {"tool_calls": [{"name": "subagent", "arguments": {"task": "How often are tides?"}}]},
    {"text": "A sub-agent is looking into it.", "usage": usage(90, 8)},
    # The worker runs the sub-agent's turn in a child session...
    {"tool_calls": [{"name": "lookup", "arguments": {"topic": "tides"}}]},
    {"text": "Twice a day (the moon).", "usage": usage(40, 6)},
    # ...and the parent's turn that its answer woke.
    {"text": "Tides come twice a day, pulled by the moon.", "usage": usage(120, 10)},
]


async def main() -> None:
    core = lash.LashCore(
        plugins=["standard", "stores", "scripted", Encyclopedia(), subagent],
        autoload=False,
        store="memory://",
        provider="scripted",
        # The sub-agent may use lookup, and nothing else.
        options={"scripted": {"responses": SCRIPT}, "subagent": {"tools": ["lookup"]}},
    )
    async with core:
        session = await core.session("desk").open()
        result = await session.turn("How often are tides?").run()
        print(f"turn 1, the tool said: {result.tool_calls[0].result.content}")
        print(f"turn 1 ended: {result.text}")

        # What `lash worker --once` does: run the process, then drain the woken session.
        await core.run_worker(once=True)

        (process,) = await core.processes.list(session_id="desk")
        print(f"process {process.kind}: {process.status}")
        print(f"  answer: {process.result['answer']!r} (child {process.result['session_id']})")
        await session.close()
        session = await core.session("desk").open()
        woken = [n for n in session.nodes if isinstance(n, lash.UserMessage)][-1]
        print(f"turn {session.turns} read:\n{woken.text}")
        answer = [n for n in session.nodes if isinstance(n, lash.AssistantMessage)][-1]
        print(f"turn {session.turns} answered: {answer.text}")
        print("usage by source:")
        for source, row in session.usage_report()["by_source"].items():
            print(f"  {source}: {row['input_tokens']} in, {row['output_tokens']} out")
        await session.close()


if __name__ == "__main__":
    asyncio.run(main())
