"""A turn protocol plugin: the standard loop, plus a token budget per turn."""

from __future__ import annotations

import attrs

import lash


@attrs.frozen
class BudgetOptions:
    """Per-session options (``[options.budget]``, or ``core.session(id, options=...)``)."""

    max_tool_rounds: int = lash.option(8, help="Rounds of tool calls per turn.")
    token_budget: int = lash.option(20_000, help="Tokens a turn may spend on model calls.")


class BudgetedProtocol:
    """Model → tools → model … until an answer, the round limit, or the token budget."""

    async def run(self, turn: lash.TurnDriver) -> None:
        # The protocol's settings are its plugin's typed options, read at every turn.
        options = turn.session.options(BudgetOptions)
        budget, max_rounds = options.token_budget, options.max_tool_rounds
        spent = rounds = 0
        while True:
            response = await turn.call_model()  # records the assistant message and its usage
            spent += response.usage.total_tokens
            if not response.tool_calls and not await turn.checkpoint():
                # Nothing joined the turn at its "before completion" checkpoint (input queued for
                # the running turn, a checkpoint hook's message): it completes with this answer.
                turn.finish(response.text)
                return
            if spent > budget:
                # stop() ends the turn "stopped"; the calls asked for get error results.
                turn.stop("plugin_abort", f"token budget spent: {spent} of {budget} tokens")
            if rounds == max_rounds:
                turn.stop("max_tool_rounds", f"still going after {rounds} rounds")
            if response.tool_calls:
                await turn.run_tool_calls(response.tool_calls)  # concurrently; hooks included
            rounds += 1


lash_plugin = lash.PluginMeta(
    name="budget",
    description="The standard tool loop with a per-turn token budget.",
    options=BudgetOptions,
)


@lash.hookimpl
def register_protocol(register: lash.RegisterProtocol) -> None:
    register("budgeted", BudgetedProtocol())
