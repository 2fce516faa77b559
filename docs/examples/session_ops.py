"""Operations between turns: configure, compact, tool membership, session commands, park.

A ``Journal`` plugin logs every lifecycle event it receives, so the output shows when each one
fires; a ``ModelGuard`` plugin vets configuration changes. Run it with
``python docs/examples/session_ops.py``.
"""

from __future__ import annotations

import asyncio

import attrs

import lash
from lash_plugins_builtin.compaction import CompactionOptions

# -- two small plugins -----------------------------------------------------------------------


@attrs.frozen
class GuardOptions:
    """Options of the model guard."""

    models: tuple[str, ...] = lash.option(default=("small", "large"), help="Models allowed.")


class ModelGuard:
    """Vets configuration changes: only allowed models, and the prompt layers always start with
    the house rules."""

    lash_plugin = lash.PluginMeta(name="model_guard", options=GuardOptions)

    @lash.hookimpl
    def mutate_session_config(
        self, session: lash.SessionView, proposed: lash.SessionConfig
    ) -> lash.SessionConfig | None:
        allowed = session.options(GuardOptions).models
        if proposed.model is not None and proposed.model not in allowed:
            raise lash.ConfigRejected(f"model {proposed.model!r} is not one of {list(allowed)}")
        if proposed.prompt_layers and proposed.prompt_layers[0] != HOUSE_RULES:
            # Amend the proposal: the plugins after this one, and the commit, see the amended one.
            return attrs.evolve(proposed, prompt_layers=(HOUSE_RULES, *proposed.prompt_layers))
        return None


HOUSE_RULES = "Never book anything without asking first."


class Journal:
    """Logs the session lifecycle events (all broadcast hooks)."""

    lash_plugin = lash.PluginMeta(name="journal")

    def __init__(self) -> None:
        self.lines: list[str] = []

    @lash.hookimpl
    def session_opened(self, session: lash.SessionView, restored: bool) -> None:
        self.lines.append(f"session_opened ({session.id!r}{', restored' if restored else ''})")

    @lash.hookimpl
    def turn_persisted(self, turn: lash.TurnView, revision: int) -> None:
        self.lines.append(f"turn_persisted (turn {turn.index}, revision {revision})")

    @lash.hookimpl
    def session_config_changed(
        self, previous: lash.SessionConfig, current: lash.SessionConfig
    ) -> None:
        self.lines.append(f"session_config_changed (model {previous.model} -> {current.model})")

    @lash.hookimpl
    def frame_opened(self, frame: lash.AgentFrame) -> None:
        self.lines.append(f"frame_opened (reason {frame.reason!r})")

    @lash.hookimpl
    def session_parked(self, session: lash.SessionView) -> None:
        self.lines.append("session_parked")

    @lash.hookimpl
    def session_closed(self, session: lash.SessionView) -> None:
        self.lines.append("session_closed")


# -- the host --------------------------------------------------------------------------------

PLAN = {"steps": [{"step": "Book the flight"}, {"step": "Book the hotel"}]}
SCRIPT = [
    # turn 1: the model writes a plan, then answers
    {"tool_calls": [{"name": "update_plan", "arguments": PLAN}]},
    {"text": "I have a plan: flight first, then the hotel.", "usage": {"input_tokens": 80}},
    # compact(): the builtin compaction plugin asks the model for a summary
    {
        "text": "The user is planning a trip to Lisbon; the plan is flight, then hotel.",
        "usage": {"input_tokens": 120, "output_tokens": 16},
    },
    # turn 2 (after a reset), turn 3 (after resume)
    {"text": "Starting afresh: where to?"},
    {"text": "Still here."},
]


def build_core(journal: Journal) -> lash.LashCore:
    return lash.LashCore(
        plugins=["standard", "stores", "scripted", "plan", "compaction", ModelGuard, journal],
        autoload=False,
        store="memory://",
        provider="scripted",
        model="small",
        options={"scripted": {"responses": SCRIPT}},
    )


async def configure(session: lash.Session) -> None:
    """Change the model, the prompt layers and a plugin's options; one commit each call."""
    config = await session.configure(
        model="large",
        prompt_layers=["You plan trips."],
        plugin_options={"compaction": {"keep_recent_turns": 0}},
    )
    print(f"configured: model={config.model}, prompt_layers={list(config.prompt_layers)}")
    print(f"  compaction options now: {session.options(CompactionOptions)}")
    try:
        await session.configure(model="huge")
    except lash.ConfigRejected as rejected:
        print(f"rejected: {rejected}")
    print(f"  still in force: model={session.config.model}, revision {session.revision}")


async def compact(session: lash.Session) -> None:
    """Summarize the context into a new agent frame; the old nodes stay in the store."""
    frame = await session.compact("Keep the destination.")
    assert frame is not None  # None: no plugin compacted
    summary = session.nodes[0]
    assert isinstance(summary, lash.FrameBoundary)
    print(f"compacted: new frame ({frame.reason}), {len(session.nodes)} node(s) in it")
    print(f"  summary: {summary.summary}")
    usage = session.usage_report()["by_source"]
    tokens = {source: (u["input_tokens"], u["output_tokens"]) for source, u in usage.items()}
    print(f"  tokens (in, out) by source: {tokens}")


async def tool_catalog(session: lash.Session) -> None:
    """Take a tool out of the session's catalog (durably), and look at the catalog."""
    generation = await session.set_tool_membership({"update_plan": False})
    for entry in session.tools():
        print(f"tool {entry.name} (plugin {entry.plugin}): member={entry.member}")
    print(f"  catalog generation {generation}, revision {session.revision}")


async def commands(session: lash.Session) -> None:
    """Queue a reset: a durable command, idempotent by key, applied before the next turn."""
    first = await session.enqueue_command("reset", key="reset-2024-06-01")
    again = await session.enqueue_command("reset", key="reset-2024-06-01")
    print(f"queued: {first.name} ({first.state}); again, the same command: {again.id == first.id}")
    result = await session.turn("Let us start over.").run()
    print(f"turn {result.index}: {result.text!r}; the frame holds {len(session.nodes)} nodes")


async def main() -> list[str]:
    journal = Journal()
    async with build_core(journal) as core:
        session = await core.session("ops").open()
        await session.turn("Plan my trip to Lisbon.").run()
        await configure(session)
        await compact(session)
        await tool_catalog(session)
        await commands(session)
        parked = await session.park()
        resumed = await core.resume(parked)
        (plan_tool,) = resumed.tools()
        print(f"resumed at revision {resumed.revision}: update_plan member={plan_tool.member}")
        await resumed.turn("Are you there?").run()
        await resumed.close()
    print("-- lifecycle events, in order:")
    print("\n".join(journal.lines))
    return journal.lines


if __name__ == "__main__":
    asyncio.run(main())
