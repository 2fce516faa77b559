"""``standard``: the builtin turn protocol, the native tool-calling loop.

Each round calls the model; if it asks for tools, the calls of that one assistant message run
concurrently (results recorded in emission order) and the model is called again, until it
answers without tool calls or ``max_tool_rounds`` rounds of tools have run. Before it finishes,
the turn's "before completion" checkpoint runs: messages that join the turn there (input queued
for the running turn, or added by a ``checkpoint`` hook) make one more round.
"""

from __future__ import annotations

import attrs

import lash


@attrs.frozen
class StandardOptions:
    """Per-session options of the standard protocol."""

    max_tool_rounds: int = lash.option(
        default=8, help="Rounds of tool calls a turn may run before it stops (max_tool_rounds)."
    )


lash_plugin = lash.PluginMeta(
    options=StandardOptions,
    description="The standard turn protocol: native tool calling.",
)


class StandardProtocol:
    """Model → tools → model … until a final answer or the round limit."""

    async def run(self, turn: lash.TurnDriver) -> None:
        # Read at each turn: a configure(plugin_options=...) applies to the next turn.
        max_rounds = turn.session.options(StandardOptions).max_tool_rounds
        rounds = 0
        while True:
            response = await turn.call_model()
            if response.tool_calls:
                if rounds >= max_rounds:
                    turn.stop(
                        "max_tool_rounds",
                        f"the model still asked for tools after {max_rounds} round(s)",
                    )
                await turn.run_tool_calls(response.tool_calls)
            elif not await turn.checkpoint():
                turn.finish(response.text)
                return
            elif rounds >= max_rounds:
                # Messages joined at the checkpoint (queued for the running turn, or added by a
                # checkpoint hook) get an answer in this turn, within the same round limit.
                turn.stop(
                    "max_tool_rounds", f"messages kept joining the turn after {max_rounds} round(s)"
                )
            rounds += 1


@lash.hookimpl
def register_protocol(register: lash.RegisterProtocol) -> None:
    register("standard", StandardProtocol())
