"""Run the notebook's tools through a scripted model and show what the model reads back."""

import asyncio

import notebook

import lash


def call(name: str, **arguments: object) -> dict[str, object]:
    return {"name": name, "arguments": arguments}


SCRIPT = [
    {  # Round 1: two calls, run concurrently; the second has an argument of the wrong value.
        "tool_calls": [
            call("add_note", text="Ada prefers tea", tags=["ada", "drinks"]),
            call("add_note", text="Ada is allergic to nuts", priority="urgent"),
        ]
    },
    {  # Round 2: a search, a call that runs past its timeout, a raw tool refusing its input.
        "tool_calls": [
            call("search_notes", query="ada"),
            call("count_primes", below=10**12),
            call("retag", old="drinks", new="Hot Drinks"),
        ]
    },
    {  # Round 3: a tool that raises, a tool that does not exist, arguments that are not JSON.
        "tool_calls": [
            call("add_note", text="Bob drinks coffee"),
            call("delete_note", id=1),
            {"name": "search_notes", "invalid_arguments": "{query: ada"},
        ]
    },
    {"text": "Noted: Ada prefers tea."},
]


async def main() -> lash.TurnResult:
    core = lash.LashCore(
        plugins=["standard", "stores", "scripted", notebook],
        autoload=False,
        provider="scripted",
        options={
            "scripted": {"responses": SCRIPT},
            # A small notebook, and a short timeout so the demo does not wait long.
            "notebook": {"max_notes": 1, "prime_timeout": 0.2},
        },
    )
    async with core:
        session = await core.session("notes").open()
        result = await session.turn("Remember that Ada prefers tea.").run()
        for record in result.tool_calls:
            flag = "error" if record.result.is_error else "ok"
            print(f"{record.call.name}({dict(record.call.arguments)}) -> {flag}")
            print("   " + record.result.content.replace("\n", "\n   "))
        print(f"{result.outcome}: {result.text}")
        return result


if __name__ == "__main__":
    asyncio.run(main())
