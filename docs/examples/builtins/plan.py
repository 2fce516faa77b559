"""The builtin ``plan``: the model keeps a plan in session state, shown in every prompt."""

import asyncio

import lash

# Listed by object so the example also runs where the builtin is not installed as an entry point.
from lash_plugins_builtin import plan
from lash_plugins_builtin.plan import PlanState


def update_plan(*steps: tuple[str, str]) -> dict[str, object]:
    """A scripted model call of the ``update_plan`` tool."""
    arguments = {"steps": [{"step": step, "status": status} for step, status in steps]}
    return {"tool_calls": [{"name": "update_plan", "arguments": arguments}]}


SCRIPT = [
    update_plan(("Book the flight", "in_progress"), ("Book the hotel", "pending")),
    {"text": "I am booking the flight first."},
    # The next turn: one step too many for max_steps = 3, then a plan that fits.
    update_plan(*[(f"Step {n}", "pending") for n in range(1, 5)]),
    update_plan(("Book the flight", "completed"), ("Book the hotel", "in_progress")),
    {"text": "Flight booked; now the hotel."},
]


async def main() -> PlanState:
    core = lash.LashCore(
        plugins=["standard", "stores", "scripted", plan],
        autoload=False,
        store="memory://",
        provider="scripted",
        options={"scripted": {"responses": SCRIPT}, "plan": {"max_steps": 3}},
    )
    async with core:
        async with core.session("trip") as session:
            first = await session.turn("Book my trip to Lisbon.").run()
            print(f"turn 1, the tool said:\n{first.tool_calls[0].result.content}")
            preview = await session.prompt_preview()
            print(f"the next system prompt:\n{preview.messages[0].content}")
            second = await session.turn("Go on.").run()
            for record in second.tool_calls:
                error = " (error)" if record.result.is_error else ""
                print(f"turn 2, update_plan{error}: {record.result.content}")
        # The plan is the plugin's declared state: committed with each turn, restored on open.
        resumed = await core.session("trip").open(must_exist=True)
        state = resumed.state(PlanState)
        print(f"after resume, {state.updates} updates:\n{plan.render(state.steps)}")
        await resumed.close()
        return state


if __name__ == "__main__":
    asyncio.run(main())
