"""Embed lash: a core with the offline ``scripted`` model, one session, one turn."""

import asyncio

import lash

# What the model will answer, one response per model call (the scripted provider plays them).
SCRIPT = [{"text": "Hello! I am a scripted model, so I always say this."}]


async def main() -> lash.TurnResult:
    core = lash.LashCore(provider="scripted", options={"scripted": {"responses": SCRIPT}})
    async with core:
        session = await core.session("quickstart").open()
        result = await session.turn("Hi, who are you?").run()
        print(f"{result.outcome}: {result.text}")
        return result


if __name__ == "__main__":
    asyncio.run(main())
