"""Stream a turn: assistant text as it arrives, tool calls as they run, then the result."""

import asyncio

import lash

PLAN = [{"step": "Pick a park", "status": "completed"}, {"step": "Buy food"}]
SCRIPT = [
    {
        "text": "Let me write that down.",
        "chunk_size": 8,  # stream the text in pieces of 8 characters
        "tool_calls": [{"name": "update_plan", "arguments": {"steps": PLAN}}],
        "usage": {"input_tokens": 120, "output_tokens": 30},
    },
    {
        "text": "Done: the park is picked, food is next.",
        "chunk_size": 8,
        "usage": {"input_tokens": 180, "output_tokens": 12},
    },
]


async def main() -> lash.TurnResult:
    core = lash.LashCore(provider="scripted", options={"scripted": {"responses": SCRIPT}})
    async with core:
        session = await core.session("picnic").open()
        async for event in session.turn("We picked a park. What's next?").stream():
            match event:
                case lash.TextDeltaEvent(text=text):
                    print(text, end="", flush=True)
                case lash.ToolCallStarted(call=call):
                    print(f"\n-> {call.name}({dict(call.arguments)})")
                case lash.ToolCallFinished(result=tool_result):
                    print(f"<- {tool_result.content}")
                case lash.TurnFinished(result=result):
                    print(f"\n[{result.outcome}, {result.usage.total_tokens} tokens]")
        return result


if __name__ == "__main__":
    asyncio.run(main())
