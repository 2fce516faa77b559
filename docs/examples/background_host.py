"""A turn starts a background process; a worker runs it and wakes the session, whose next turn
reads the result. Offline: a scripted model, an in-memory store, the worker in this process."""

import asyncio

import background

import lash

SCRIPT = [
    {"tool_calls": [{"name": "start_report", "arguments": {"topic": "tides"}}]},
    {"text": "I started the report; I will tell you when it is ready."},
    {"text": "Your report on tides is ready: 3 sections."},
]


async def main() -> list[str]:
    lines: list[str] = []
    core = lash.LashCore(
        plugins=["standard", "stores", "scripted", background],
        autoload=False,
        store="memory://",
        provider="scripted",
        options={"scripted": {"responses": SCRIPT}},
    )
    async with core:
        session = await core.session("desk").open()
        result = await session.turn("Write me a report on tides.").run()
        lines.append(f"turn 1: {result.tool_calls[0].result.content}")
        lines.append(f"turn 1: {result.text}")
        (process,) = await core.processes.list(session_id="desk")
        lines.append(f"{process.kind}: {process.status}, payload {process.payload}")

        # What `lash worker --once` does: run the process, then drain the woken session.
        await core.run_worker(once=True)

        done = await core.processes.get(process.id)
        assert done is not None
        lines.append(f"{done.kind}: {done.status} after {done.attempts} attempt(s)")
        lines.append(f"result: {done.result}")
        lines.append(f"last progress: {done.progress}")
        (woken,) = await core.inputs("desk", settled=True)
        lines.append(f"queued for the session ({woken.key}): {woken.text!r}")
        await session.close()
        session = await core.session("desk").open()
        last = [n for n in session.nodes if isinstance(n, lash.AssistantMessage)][-1]
        lines.append(f"turn {session.turns}: {last.text}")
    for line in lines:
        print(line)
    return lines


if __name__ == "__main__":
    asyncio.run(main())
