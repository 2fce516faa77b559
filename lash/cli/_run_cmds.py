"""``lash run`` and ``lash demo``: drive sessions from the terminal."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import click

from lash._contract.events import (
    TextDeltaEvent,
    ToolCallFinished,
    ToolCallStarted,
    TurnFinished,
    TurnResult,
)
from lash._kernel.core import LashCore
from lash._kernel.session import Session
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
