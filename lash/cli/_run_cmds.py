"""``lash run`` and ``lash demo``: drive sessions from the terminal."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from typing import Any

import click

from lash._core import LashCore
from lash._events import TextDeltaEvent, ToolCallFinished, ToolCallStarted, TurnFinished, TurnResult
from lash._session import Session
from lash.cli._main import cli, config_or_exit
from lash.errors import LashError

_PREVIEW = 160


def _preview(text: str, limit: int = _PREVIEW) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _arguments(arguments: Mapping[str, Any]) -> str:
    return _preview(json.dumps(dict(arguments), ensure_ascii=False), 120)


async def stream_turn(session: Session, text: str, *, echo_user: bool = False) -> TurnResult:
    """Run one turn, printing assistant text as it streams and each tool call as it runs."""
    if echo_user:
        click.echo(click.style("user> ", bold=True) + text)
    started_text = False
    result: TurnResult | None = None
    async for event in session.turn(text).stream():
        if isinstance(event, TextDeltaEvent):
            if not started_text:
                click.echo(click.style("assistant> ", bold=True), nl=False)
                started_text = True
            click.echo(event.text, nl=False)
        elif isinstance(event, ToolCallStarted):
            if started_text:
                click.echo()
                started_text = False
            click.echo(f"  tool {event.call.name}({_arguments(event.call.arguments)})")
        elif isinstance(event, ToolCallFinished):
            mark = "error" if event.result.is_error else "->"
            click.echo(f"    {mark} {_preview(event.result.content)}")
        elif isinstance(event, TurnFinished):
            result = event.result
    if started_text:
        click.echo()
    assert result is not None  # a stream always ends with TurnFinished
    usage = result.usage
    status = result.outcome + (f" ({result.reason})" if result.reason else "")
    if result.error:
        status += f": {result.error}"
    click.echo(
        click.style(
            f"[turn {result.index} {status} | {usage.input_tokens} in / "
            f"{usage.output_tokens} out tokens | revision {result.revision}]",
            dim=True,
        )
    )
    return result


@cli.command("run")
@click.argument("prompt")
@click.option("--session", "session_id", default="default", show_default=True, help="Session id.")
@click.option("--provider", default=None, help="Provider name (overrides config).")
@click.option("--model", default=None, help="Model name (overrides config).")
@click.pass_context
def run_command(
    ctx: click.Context, prompt: str, session_id: str, provider: str | None, model: str | None
) -> None:
    """Run one turn of PROMPT in a session, streaming the answer and tool activity."""
    config = config_or_exit(ctx)

    async def go() -> TurnResult:
        async with LashCore(config=config, provider=provider, model=model) as core:
            session = await core.session(session_id).open()
            try:
                return await stream_turn(session, prompt)
            finally:
                await session.close()  # release the lease now, not when it expires

    try:
        result = asyncio.run(go())
    except LashError as exc:
        raise click.ClickException(str(exc)) from None
    if result.outcome == "failed":
        ctx.exit(1)


def _call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"name": name, "arguments": arguments}


#: The demo's scripted model: what a model would answer to the demo's turns, tool calls included.
DEMO_SCRIPT: list[dict[str, Any]] = [
    {
        "text": "Let me lay out a plan first.",
        "tool_calls": [
            _call(
                "update_plan",
                steps=[
                    {"step": "Pick a park", "status": "in_progress"},
                    {"step": "Shop for food"},
                    {"step": "Invite friends"},
                ],
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
    {
        "tool_calls": [
            _call(
                "update_plan",
                steps=[
                    {"step": "Pick a park", "status": "completed"},
                    {"step": "Shop for food", "status": "in_progress"},
                    {"step": "Invite friends"},
                ],
            )
        ],
        "usage": {"input_tokens": 301, "output_tokens": 38},
    },
    {
        "text": "Riverside Park it is. Next up: shopping.",
        "usage": {"input_tokens": 352, "output_tokens": 11},
        "chunk_size": 8,
    },
]

DEMO_TURNS: Sequence[str] = (
    "Help me organise a picnic on Saturday.",
    "We chose Riverside Park.",
)

DEMO_PLUGINS = ("standard", "stores", "scripted", "plan")


@cli.command("demo")
@click.pass_context
def demo_command(ctx: click.Context) -> None:
    """Run an offline demo session (scripted model) and print its transcript."""

    async def go() -> None:
        core = LashCore(
            plugins=list(DEMO_PLUGINS),
            autoload=False,
            disable=["openai"],
            provider="scripted",
            model="demo",
            options={"scripted": {"responses": DEMO_SCRIPT}},
        )
        async with core:
            click.echo(click.style("lash demo", bold=True) + " (offline, scripted model)")
            click.echo(f"plugins: {', '.join(core.plugin_names)}")
            for name in core.plugin_names:
                contributions = core.registry.by_plugin(name)
                if contributions:
                    parts = [f"{k}s: {', '.join(v)}" for k, v in contributions.items()]
                    click.echo(f"  {name} contributes {'; '.join(parts)}")
            session = await core.session(
                "demo", options={"standard": {"max_tool_rounds": 4}}
            ).open_fresh()
            click.echo(
                f"session options: standard.max_tool_rounds = "
                f"{session.protocol_options.get('max_tool_rounds')}"
            )
            preview = await session.prompt_preview()
            system = preview.messages[0].content if preview.messages else ""
            click.echo("system prompt (fragments contributed by plugins):")
            for line in system.splitlines():
                click.echo(f"  | {line}")
            click.echo()
            for text in DEMO_TURNS:
                result = await stream_turn(session, text, echo_user=True)
                if result.outcome != "completed":
                    raise click.ClickException(f"demo turn did not complete: {result}")
                click.echo()
            report = session.usage_report()["total"]
            click.echo(
                f"session {session.id!r}: {session.turns} turns committed, revision "
                f"{session.revision}, {report['input_tokens']} input / "
                f"{report['output_tokens']} output tokens"
            )

    try:
        asyncio.run(go())
    except LashError as exc:
        raise click.ClickException(str(exc)) from None
