"""Turn directives: queue a follow-up turn while the plan has unfinished steps."""

from __future__ import annotations

import attrs

import lash
from lash_plugins_builtin.plan import PlanState


@attrs.frozen
class AutopilotOptions:
    max_follow_ups: int = lash.option(3, help="Follow-up turns queued in a row, at most.")


@attrs.define
class AutopilotState:
    follow_ups: int = 0  # follow-ups queued since the user last spoke


lash_plugin = lash.PluginMeta(
    name="autopilot",
    description="Keeps working through the plan with queued follow-up turns.",
    options=AutopilotOptions,
    state=AutopilotState,
    requires=("plan",),
)

FOLLOW_UP = "Continue with the next step of the plan."


@lash.hookimpl
def before_turn(turn: lash.TurnView) -> lash.AbortTurn | None:
    if not turn.input.strip():
        return lash.AbortTurn("empty input")  # stopped(plugin_abort); no model call is made
    if turn.input != FOLLOW_UP:
        turn.session.state(AutopilotState).follow_ups = 0  # the user spoke
    return None


@lash.hookimpl
def after_turn(turn: lash.TurnView) -> lash.EnqueueMessages | None:
    if turn.result is None or turn.result.outcome != "completed":
        return None
    session = turn.session
    steps = session.state(PlanState).steps
    state = session.state(AutopilotState)
    limit = session.options(AutopilotOptions).max_follow_ups
    if any(step.status != "completed" for step in steps) and state.follow_ups < limit:
        state.follow_ups += 1
        return lash.EnqueueMessages((FOLLOW_UP,))  # committed with this turn
    return None
