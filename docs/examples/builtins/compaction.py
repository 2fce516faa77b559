"""The builtin ``compaction``: summarize a long conversation into a new agent frame."""

import asyncio

import lash

# Listed by object so the example also runs where the builtin is not installed as an entry point.
from lash_plugins_builtin import compaction


def answer(text: str, prompt_tokens: int) -> dict[str, object]:
    """A scripted answer whose prompt took ``prompt_tokens`` input tokens."""
    return {"text": text, "usage": {"input_tokens": prompt_tokens, "output_tokens": 10}}


SCRIPT = [
    answer("Lisbon in May is mild, about 22 degrees.", 900),
    answer("The Alfama is the old quarter, good for walking.", 1800),
    # Turn 3's prompt goes over threshold_tokens: a summary is asked for right after the turn.
    answer("A tram ticket costs about 3 euros.", 2600),
    answer("The user plans a trip to Lisbon in May: mild weather, the Alfama for walks.", 700),
    answer("You asked about the weather, the Alfama and tram tickets.", 400),
    # compact() on request, with instructions for the summarizer.
    answer("A trip to Lisbon in May; the user notes prices (tram: 3 euros).", 500),
]


def show(label: str, lines: list[str]) -> None:
    print(label)
    for line in lines:
        print(f"  {line}")


async def main() -> lash.Session:
    core = lash.LashCore(
        plugins=["standard", "stores", "scripted", compaction],
        disable=["plan"],
        autoload=False,
        store="memory://",
        provider="scripted",
        options={
            "scripted": {"responses": SCRIPT},
            "compaction": {"threshold_tokens": 2000, "keep_recent_turns": 1},
        },
    )
    async with core:
        model = core.registry.of("provider")["scripted"].value
        session = await core.session("lisbon").open()
        for question in ("Weather in May?", "Where to walk?", "Tram prices?"):
            await session.turn(question).run()

        # The summarizer got the turns that are not kept, as plain text (its 4th model call).
        summarized = model.requests[3].messages[-1].content
        show("after turn 3, the summarizer was sent:", summarized.splitlines())
        frame = [f"{type(node).__name__}: {node_text(node)}" for node in session.nodes]
        show(f"the new frame ({session.nodes[0].reason}):", frame)

        await session.turn("What did I ask so far?").run()
        seen = [f"{m.role}: {m.content}".replace("\n", " ") for m in model.requests[-1].messages]
        show("the next model call sees:", seen)

        await session.compact("Keep every price mentioned.")
        asked = model.requests[-1].messages[-1].content.splitlines()[-1]
        show("compact(instructions) adds to the summarizer's request:", [asked])
        print(f"usage by source: {sorted(session.usage_report()['by_source'])}")
        await session.close()
        return session


def node_text(node: lash.GraphNode) -> str:
    """The summary of a frame boundary, the outcome of a turn, the text of a message."""
    if isinstance(node, lash.FrameBoundary):
        return f"summary={node.summary!r}"
    if isinstance(node, lash.TurnOutcome):
        return node.outcome
    return getattr(node, "text", "")


if __name__ == "__main__":
    asyncio.run(main())
