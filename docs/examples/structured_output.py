"""Structured output: a typed answer, validated; invalid answers go back to the model."""

import asyncio

import attrs

import lash


@attrs.frozen
class Forecast:
    """A weather forecast."""

    city: str
    high_c: int
    summary: str = ""


def answer(**arguments: object) -> dict[str, object]:
    # The scripted model has no JSON-schema response format: it answers with the final-answer
    # tool lash offers it, `final_result`, whose arguments are the answer.
    return {"tool_calls": [{"name": "final_result", "arguments": arguments}]}


SCRIPT = [
    answer(city="Paris", high_c="warm"),  # wrong type: sent back with the error...
    answer(city="Paris", high_c=24, summary="Sunny"),  # ...and answered again
    {"text": "It will be nice."},  # the next turn's model never calls the tool
    {"text": "Really nice, trust me."},
]


async def main() -> list[lash.TurnResult]:
    options = {"scripted": {"responses": SCRIPT}}
    core = lash.LashCore(provider="scripted", store="memory://", options=options)
    async with core:
        session = await core.session("weather").open()
        result = await session.turn("Weather in Paris?", output=Forecast).run()
        print(result.output)
        told = next(n for n in session.nodes if isinstance(n, lash.ToolResultNode))
        print(f"the model was told:\n{told.content}")
        # A plain JSON schema works too (the output is then JSON data); after output_retries
        # answers were sent back, the next invalid one fails the turn with its errors.
        schema = {"type": "object", "properties": {"rain": {"type": "boolean"}}}
        failed = await session.turn("Rain?", output=schema, output_retries=1).run()
        print(f"{failed.outcome}: {failed.output_errors}")
        return [result, failed]


if __name__ == "__main__":
    asyncio.run(main())
