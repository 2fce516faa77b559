"""A host running queued follow-up turns: ``session.drain()``."""

import asyncio

import autopilot

import lash


def plan(flight: str, hotel: str) -> dict[str, object]:
    steps = [{"step": "Flight", "status": flight}, {"step": "Hotel", "status": hotel}]
    return {
        "tool_calls": [{"name": "update_plan", "arguments": {"steps": steps}}],
        "usage": {"input_tokens": 100, "output_tokens": 20},
    }


def answer(text: str) -> dict[str, object]:
    return {"text": text, "usage": {"input_tokens": 150, "output_tokens": 10}}


SCRIPT = [
    plan("in_progress", "pending"),
    answer("Plan made; the flight is next."),
    plan("completed", "in_progress"),
    answer("Flight booked; the hotel is next."),
    plan("completed", "completed"),
    answer("Hotel booked: all done."),
]


async def main() -> list[lash.TurnResult]:
    core = lash.LashCore(
        plugins=["standard", "stores", "scripted", "plan", autopilot],
        autoload=False,
        provider="scripted",
        options={"scripted": {"responses": SCRIPT}},
    )
    async with core:
        session = await core.session("trip").open()
        results = [await session.turn("Book my trip to Lisbon.").run()]
        print(f"queued: {[i.text for i in await session.inputs()]}")
        results += await session.drain()  # one turn per queued input, oldest first
        for result in results:
            print(f"turn {result.index}: {result.text} ({result.usage.total_tokens} tokens)")
        print(f"session: {session.usage_report()['total']}")
        return results


if __name__ == "__main__":
    asyncio.run(main())
