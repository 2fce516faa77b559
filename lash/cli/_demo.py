"""``lash demo``: an offline session where builtin plugins show what plugins contribute."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import click

from lash._kernel.core import LashCore
from lash._kernel.session import Session
from lash.cli._run_cmds import stream_turn
from lash.errors import LashError, UnknownSession


def _option(core: LashCore, session: Session, plugin: str, field: str) -> Any:
    """One field of a plugin's options for ``session`` (the class is the plugin's own)."""
    declared = core.composition.plugin(plugin).info.meta.options
    return getattr(session.options(declared), field) if declared is not None else None


def _call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"name": name, "arguments": arguments}


def _plan(*steps: tuple[str, str]) -> dict[str, Any]:
    return _call("update_plan", steps=[{"step": s, "status": st} for s, st in steps])


#: The demo's scripted model: what a model would answer to the demo's turns, tool calls and the
#: compaction summary included. One entry per model call, in order.
DEMO_SCRIPT: list[dict[str, Any]] = [
    {  # turn 1: plan
        "text": "Let me lay out a plan first.",
        "tool_calls": [
            _plan(
                ("Pick a park", "in_progress"),
                ("Shop for food", "pending"),
                ("Invite friends", "pending"),
            )
        ],
        "usage": {"input_tokens": 182, "output_tokens": 41},
        "chunk_size": 8,
    },
    {
        "text": "Plan is set: park first, then food, then invitations.",
        "usage": {"input_tokens": 260, "output_tokens": 14},
        "chunk_size": 8,
    },
    {  # turn 2: progress
        "tool_calls": [
            _plan(
                ("Pick a park", "completed"),
                ("Shop for food", "in_progress"),
                ("Invite friends", "pending"),
            )
        ],
        "usage": {"input_tokens": 301, "output_tokens": 38},
    },
    {
        "text": "Riverside Park it is. Next up: shopping.",
        "usage": {"input_tokens": 352, "output_tokens": 11},
        "chunk_size": 8,
    },
    {  # the compaction plugin's summary request
        "text": "The user is organising a Saturday picnic. Riverside Park was chosen; "
        "shopping for food is in progress; inviting friends is still to do.",
        "usage": {"input_tokens": 410, "output_tokens": 30},
    },
    {  # turn 3, after compaction, on the larger model
        "text": "Next: buy sandwiches, fruit and lemonade, then send the invitations.",
        "usage": {"input_tokens": 150, "output_tokens": 16},
        "chunk_size": 8,
    },
]

DEMO_TURNS: Sequence[str] = (
    "Help me organise a picnic on Saturday.",
    "We chose Riverside Park.",
)
AFTER_COMPACTION = "What should I do next?"

DEMO_PLUGINS = ("standard", "stores", "scripted", "plan", "compaction")


#: The session the demo runs in; each run starts it over.
DEMO_SESSION = "demo"


async def _turn(session: Session, text: str) -> None:
    click.echo(click.style("user> ", bold=True) + text)
    result = await stream_turn(session.turn(text))
    if result.outcome != "completed":
        raise click.ClickException(f"demo turn did not complete: {result}")
    click.echo()


def _note(text: str) -> None:
    click.echo(click.style(f"== {text}", fg="cyan"))


@click.command("demo")
def demo_command() -> None:
    """Run an offline demo session (scripted model) and print its transcript."""

    async def go() -> None:
        core = LashCore(
            plugins=list(DEMO_PLUGINS),
            autoload=False,
            disable=["openai"],
            provider="scripted",
            model="demo",
            options={
                "scripted": {"responses": DEMO_SCRIPT},
                "compaction": {"keep_recent_turns": 1},
            },
        )
        async with core:
            click.echo(click.style("lash demo", bold=True) + " (offline, scripted model)")
            click.echo(f"store: {core.store_url}")
            click.echo(f"plugins: {', '.join(core.plugin_names)}")
            for name in core.plugin_names:
                contributions = core.registry.by_plugin(name)
                if contributions:
                    parts = [f"{k}s: {', '.join(v)}" for k, v in contributions.items()]
                    click.echo(f"  {name} contributes {'; '.join(parts)}")
            # Deleted, not opened with open_fresh(): a fresh open keeps counting revisions from
            # the old record, and each run should read the same (revision 1 is its first commit).
            with contextlib.suppress(UnknownSession):
                await core.delete_session(DEMO_SESSION)
                click.echo(f"session {DEMO_SESSION!r}: the previous run's session was deleted")
            session = await core.session(
                DEMO_SESSION, options={"standard": {"max_tool_rounds": 4}}
            ).open()
            click.echo(
                "session options: standard.max_tool_rounds = "
                f"{_option(core, session, 'standard', 'max_tool_rounds')}, "
                "compaction.keep_recent_turns = 1"
            )
            preview = await session.prompt_preview()
            system = preview.messages[0].content if preview.messages else ""
            click.echo("system prompt (fragments contributed by plugins):")
            for line in system.splitlines():
                click.echo(f"  | {line}")
            click.echo()
            for text in DEMO_TURNS:
                await _turn(session, text)

            config = await session.configure(
                model="demo-large", prompt_layers=["You are a concise picnic planner."]
            )
            _note(
                f"configured: model demo -> {config.model}; prompt layer added "
                f"(committed as revision {session.revision})"
            )
            frame = await session.compact()
            assert frame is not None  # the compaction plugin always answers
            boundary = session.nodes[0]
            _note(
                f"compacted into agent frame {frame.id[:8]} (the old one stays in history; "
                f"committed as revision {session.revision})"
            )
            click.echo(f"   summary: {getattr(boundary, 'summary', '')}")
            click.echo(f"   carried over verbatim: the last turn ({len(session.nodes) - 1} nodes)")
            click.echo()
            await _turn(session, AFTER_COMPACTION)

            report = session.usage_report()
            by_source = ", ".join(
                f"{src} {u['input_tokens']} in / {u['output_tokens']} out"
                for src, u in report["by_source"].items()
            )
            click.echo(
                f"session {session.id!r}: {session.turns} turns committed, revision "
                f"{session.revision}; usage by source: {by_source}"
            )
            await session.close()

    try:
        asyncio.run(go())
    except LashError as exc:
        raise click.ClickException(str(exc)) from None
