"""``plan``: an ``update_plan`` tool whose plan lives in declared per-session state.

The plan survives resume because the kernel snapshots the plugin's state in every turn commit;
the prompt fragment showing it is gated on the tool being in the catalog, and the tool is offered
to root sessions only.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import attrs

import lash

Status = Literal["pending", "in_progress", "completed"]
_MARKS = {"pending": "[ ]", "in_progress": "[~]", "completed": "[x]"}


@attrs.define
class PlanStep:
    """One step of the plan."""

    step: str
    status: Status = "pending"


@attrs.define
class PlanState:
    """The session's current plan (persisted with every turn)."""

    steps: list[PlanStep] = attrs.field(factory=list)
    updates: int = 0


@attrs.frozen
class PlanOptions:
    """Options of the plan plugin."""

    max_steps: int = lash.option(default=20, help="Most steps a plan may have.")


lash_plugin = lash.PluginMeta(
    options=PlanOptions,
    state=PlanState,
    description="An update_plan tool with the plan kept in per-session state.",
)


def render(steps: Iterable[PlanStep]) -> str:
    """The plan as text, one ``[x] step`` line per step."""
    return "\n".join(f"{_MARKS[s.status]} {s.step}" for s in steps) or "(empty plan)"


async def update_plan(steps: list[PlanStep], context: lash.ToolContext) -> str:
    """Replace the session's plan with these steps (each with a status).

    Call it when you start a multi-step task and whenever a step's status changes.
    """
    options = context.session.options(PlanOptions)
    if len(steps) > options.max_steps:
        raise ValueError(f"a plan has at most {options.max_steps} steps, got {len(steps)}")
    state = context.state(PlanState)
    state.steps = list(steps)
    state.updates += 1
    return "plan updated:\n" + render(state.steps)


@lash.hookimpl
def register_tools(register: lash.RegisterTool) -> None:
    register(update_plan)


@lash.hookimpl
def filter_tool_catalog(session: lash.SessionView) -> list[str] | None:
    # Sub-agents work on their parent's plan; only root sessions get the tool.
    return None if session.is_root else ["update_plan"]


@lash.hookimpl
def prompt_contributions(session: lash.SessionView) -> lash.PromptContribution:
    state = session.state(PlanState)
    text = "Keep a plan for multi-step work with the update_plan tool."
    if state.steps:
        text += "\nCurrent plan:\n" + render(state.steps)
    return lash.PromptContribution(text, slot="context", requires_tool="update_plan")
