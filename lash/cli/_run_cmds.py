"""``lash run``: one turn of a session, from a terminal, a pipe or a script.

The conventions are those of ``llm`` and of Unix filters: the prompt may come from stdin, stdout
carries the answer and nothing else (one JSON object with ``--json``), everything about the turn
(tool activity, the status line, errors) goes to stderr, and the exit status says how the turn
ended (the ``EXIT_*`` constants).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import signal
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import attrs
import click

from lash._contract.events import (
    TextDeltaEvent,
    ToolCallFinished,
    ToolCallStarted,
    TurnFinished,
    TurnResult,
)
from lash._contract.serialization import to_data
from lash._kernel.core import LashCore
from lash._kernel.session import Session
from lash._kernel.turn import Turn
from lash.cli._context import load_config, store_option
from lash.cli._sessions_common import on_signals
from lash.errors import (
    ConfigError,
    ExclusiveHookConflict,
    LashError,
    PluginLoadError,
    SessionBusy,
    _lease_left,
)

#: How ``lash run`` exits: completed, failed, usage or configuration error, stopped (the tool
#: round limit, a plugin's abort), interrupted (SIGINT) or terminated (SIGTERM), the turn
#: committed as cancelled.
EXIT_COMPLETED = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_STOPPED = 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for a command ended by Ctrl-C
EXIT_TERMINATED = 143  # 128 + SIGTERM, what shells report for a command ended by SIGTERM
#: The cancel reason a turn cancelled by SIGTERM records (Ctrl-C's records none).
SIGTERM_REASON = "SIGTERM"

#: Errors that say the host's configuration or plugin composition cannot work: retrying the same
#: command cannot help, so they exit like a usage error.
_CONFIG_ERRORS = (ConfigError, PluginLoadError, ExclusiveHookConflict)

_PREVIEW = 160


class ConfigProblem(click.ClickException):
    """A configuration or composition error: printed on stderr, exit status 2."""

    exit_code = EXIT_USAGE


def exit_code(result: TurnResult) -> int:
    """The exit status of ``lash run`` for a turn that ended with ``result``."""
    if result.outcome == "completed":
        return EXIT_COMPLETED
    if result.outcome == "failed":
        return EXIT_FAILED
    if result.reason != "cancelled":
        return EXIT_STOPPED
    return EXIT_TERMINATED if result.cancel_reason == SIGTERM_REASON else EXIT_INTERRUPTED


def _preview(text: str, limit: int = _PREVIEW) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _arguments(arguments: Mapping[str, Any]) -> str:
    return _preview(json.dumps(dict(arguments), ensure_ascii=False), 120)


@attrs.frozen
class Layout:
    """Where the parts of a streamed turn are printed.

    ``text``: the assistant's text goes to stdout as it streams; ``prefix``: after an
    ``assistant>`` label (a transcript for people); ``activity_to_stderr``: tool activity and the
    status line go to stderr, so stdout carries the answer alone.
    """

    text: bool = True
    prefix: bool = True
    activity_to_stderr: bool = False


#: ``lash demo``: a transcript, everything on stdout.
TRANSCRIPT = Layout()


def status_line(result: TurnResult) -> str:
    """``[turn 1 completed | 7 in / 3 out tokens | revision 2]``, with the reason or error."""
    status = result.outcome + (f" ({result.reason})" if result.reason else "")
    if result.error:
        status += f": {result.error}"
    elif result.detail:
        status += f": {result.detail}"
    usage = result.usage
    return (
        f"[turn {result.index} {status} | {usage.input_tokens} in / {usage.output_tokens} out "
        f"tokens | revision {result.revision}]"
    )


async def stream_turn(turn: Turn, layout: Layout = TRANSCRIPT) -> TurnResult:
    """Run ``turn``, printing its text as it streams and each tool call as it runs."""
    err = layout.activity_to_stderr
    line_open = False  # assistant text was printed on stdout without its newline yet

    def end_text_line() -> None:
        nonlocal line_open
        if line_open:
            click.echo()
            line_open = False

    result: TurnResult | None = None
    async for event in turn.stream():
        if isinstance(event, TextDeltaEvent):
            if not layout.text:
                continue
            if not line_open and layout.prefix:
                click.echo(click.style("assistant> ", bold=True), nl=False)
            click.echo(event.text, nl=False)
            line_open = True
        elif isinstance(event, ToolCallStarted):
            # The text of the next model call starts on a line of its own, in a pipe too.
            end_text_line()
            click.echo(f"  tool {event.call.name}({_arguments(event.call.arguments)})", err=err)
        elif isinstance(event, ToolCallFinished):
            mark = "error" if event.result.is_error else "->"
            click.echo(f"    {mark} {_preview(event.result.content)}", err=err)
        elif isinstance(event, TurnFinished):
            result = event.result
    end_text_line()
    assert result is not None  # a stream always ends with TurnFinished
    click.echo(click.style(status_line(result), dim=True), err=err)
    return result


def result_data(result: TurnResult) -> dict[str, Any]:
    """The object ``lash run --json`` prints for ``result``.

    ``turn`` is an object so it can grow (a turn id beside the index) without breaking readers.
    """
    return {
        "session": result.session_id,
        "turn": {"index": result.index, "id": result.turn_id},
        "revision": result.revision,
        "outcome": result.outcome,
        "reason": result.reason,
        "detail": result.detail,
        "error": result.error,
        "error_plugin": result.error_plugin,
        "error_hook": result.error_hook,
        "text": result.text,
        "tool_calls": [
            {
                "id": record.call.id,
                "name": record.call.name,
                "arguments": dict(record.call.arguments),
                "invalid_arguments": record.call.invalid_arguments,
                "result": record.result.content,
                "is_error": record.result.is_error,
            }
            for record in result.tool_calls
        ],
        "usage": to_data(result.usage),
    }


@contextlib.contextmanager
def cancel_on_interrupt(turn: Turn) -> Iterator[None]:
    """While the block runs, the first SIGINT (Ctrl-C) or SIGTERM (a service manager, ``kill``)
    cancels ``turn``, which then commits as ``stopped(cancelled)`` (by SIGTERM: with
    :data:`SIGTERM_REASON` as its cancel reason) and ends its stream normally; a second signal
    ends the process at once."""
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)

    def interrupted(received: signal.Signals) -> None:
        # From now on SIGINT raises KeyboardInterrupt and SIGTERM terminates again (asyncio
        # restores the defaults).
        for sig in signals:
            loop.remove_signal_handler(sig)
        if received == signal.SIGINT:
            click.echo(
                "lash: interrupted: cancelling the turn (Ctrl-C again to quit now)", err=True
            )
            turn.cancel()
        else:
            click.echo(
                "lash: terminated (SIGTERM): cancelling the turn (a second signal quits now)",
                err=True,
            )
            turn.cancel(reason=SIGTERM_REASON)

    # Where the loop has no signal handlers (Windows), Ctrl-C cancels the task running the turn,
    # whose stream still commits the turn as cancelled before KeyboardInterrupt surfaces.
    with (
        on_signals(functools.partial(interrupted, signal.SIGINT), signal.SIGINT),
        on_signals(functools.partial(interrupted, signal.SIGTERM), signal.SIGTERM),
    ):
        yield


def _read_text(stream: Any) -> str:
    """All of ``stream``, decoded strictly: Python's stdin may let undecodable bytes through as
    lone surrogates (surrogateescape), text that a strict UTF-8 encoder then refuses."""
    encoding = getattr(stream, "encoding", None) or "utf-8"
    binary = getattr(stream, "buffer", None)
    if binary is None:
        return str(stream.read())
    data = binary.read()
    try:
        return str(data.decode(encoding))
    except UnicodeDecodeError as exc:
        raise click.UsageError(
            f"the prompt on stdin is not {encoding} text (byte {data[exc.start]:#04x} at offset "
            f"{exc.start}); convert it first, for instance with iconv"
        ) from None


def read_prompt(prompt: str | None) -> str:
    """The prompt: the argument, or stdin when it is ``-`` or missing and stdin is not a
    terminal.

    :raises click.UsageError: when there is no prompt, or stdin holds only whitespace.
    """
    if prompt is not None and prompt != "-":
        return prompt
    stdin = sys.stdin
    if prompt is None and (stdin is None or stdin.isatty()):
        raise click.UsageError(
            "no prompt: give PROMPT, or pipe it on stdin (`echo hi | lash run`, `lash run -`)"
        )
    if stdin is not None and stdin.isatty():  # `lash run -` at a terminal: say what it waits for
        click.echo("lash: reading the prompt until end of input (Ctrl-D)", err=True)
    text = _read_text(stdin) if stdin is not None else ""
    if not text.strip():
        raise click.UsageError("the prompt read from stdin is empty")
    # `echo hi |` ends with a newline that is no part of the prompt.
    return text.rstrip("\r\n")


#: ``--wait SECONDS``: how long ``lash run`` and ``lash sessions drain`` wait for a session
#: another process is running a turn of (its lease), before they give up.
wait_option = click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="How long to wait while another process runs a turn of the session.",
)


def busy_message(exc: SessionBusy, wait: float) -> str:
    """What the command line says when the session stayed busy for longer than ``--wait``."""
    return (
        f"session {exc.session_id!r} is busy: another process runs it (its lease is held by "
        f"{exc.owner!r}, {_lease_left(exc.expires_at)}); waited {wait:g} s; try again, or "
        "wait longer with --wait SECONDS"
    )


def waiting_note(wait: float) -> Callable[[SessionBusy], None]:
    """What to say on stderr when the session is busy and the command starts to wait for it
    (``Session.open(on_wait=...)``)."""

    def note(busy: SessionBusy) -> None:
        click.echo(
            f"lash: session {busy.session_id!r} is busy: another process runs it (its lease is "
            f"held by {busy.owner!r}); waiting for it up to {wait:g} s (--wait)",
            err=True,
        )

    return note


def _shown(value: str | None) -> str:
    return value if value is not None else "(default)"


@attrs.frozen
class RunOptions:
    """The arguments of one ``lash run``."""

    prompt: str | None
    session_id: str
    provider: str | None
    model: str | None
    system: str | None
    as_json: bool
    wait: float = 30.0


def _not_blank(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Refuse an empty ``--model``/``--provider`` (a script's unset ``--model "$MODEL"``): it
    would be committed to the session, and kept by its later runs."""
    if value is not None and not value.strip():
        raise click.BadParameter(
            "empty: give a name, or leave the option out to keep the session's"
        )
    return value


@click.command("run")
@store_option
@click.argument("prompt", required=False)
@click.option("--session", "session_id", default="default", show_default=True, help="Session id.")
@click.option(
    "--provider",
    default=None,
    callback=_not_blank,
    help="Provider of the session (overrides config; committed to an existing session).",
)
@click.option(
    "--model",
    default=None,
    callback=_not_blank,
    help="Model of the session (overrides config; committed to an existing session).",
)
@click.option(
    "--system",
    default=None,
    metavar="TEXT",
    help="System prompt of the session, saved with it ('' removes it).",
)
@wait_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object describing the turn.")
@click.pass_context
def run_command(
    ctx: click.Context,
    prompt: str | None,
    session_id: str,
    provider: str | None,
    model: str | None,
    system: str | None,
    wait: float,
    as_json: bool,
) -> None:
    """Run one turn of PROMPT in a session, streaming the answer and tool activity.

    PROMPT may come from stdin: `echo hi | lash run`, or `lash run -`. In a terminal the answer
    follows `assistant>`; otherwise stdout carries only the answer text. Tool activity, the
    status line and errors go to stderr. --system sets the session's prompt layers to TEXT, and
    is committed with the session: its later runs keep TEXT until another --system changes it.
    --provider and --model work the same way on an existing session: a change is committed
    before the turn and shown on stderr (`config: model a -> b`).

    While another process runs a turn of the session, the turn waits for it, up to --wait
    seconds (then exit 1, naming the process holding the session).

    \b
    --json prints one object: session, turn (an object: index, id), revision,
    outcome (completed, stopped, failed), reason (cancelled, max_tool_rounds,
    plugin_abort), detail, error, error_plugin, error_hook, text (the final
    answer), tool_calls (id, name, arguments, invalid_arguments, result,
    is_error), usage (input_tokens, output_tokens, cached_tokens).

    \b
    Exit status:
      0    completed
      1    failed (or another error)
      2    usage or configuration error
      3    stopped (max_tool_rounds, plugin_abort)
      130  interrupted (Ctrl-C): the turn is committed as stopped (cancelled);
           a second Ctrl-C quits at once
      143  terminated (SIGTERM): the same, its cancel reason "SIGTERM"
    """
    options = RunOptions(prompt, session_id, provider, model, system, as_json, wait)
    try:
        result = _run(ctx, options)
    except KeyboardInterrupt:
        # Outside the turn (reading stdin, opening, closing) or a second Ctrl-C: nothing more to
        # report. Caught here because click would turn it into "Aborted!" and exit 1.
        click.echo("lash: interrupted", err=True)
        ctx.exit(EXIT_INTERRUPTED)
    if as_json:
        click.echo(json.dumps(result_data(result), ensure_ascii=False))
    ctx.exit(exit_code(result))


async def _reconfigure(session: Session, options: RunOptions) -> None:
    """Commit what --system, --provider and --model change in the session's configuration (a
    new session starts with the host's, which --provider and --model already override), and
    say what --provider and --model changed on stderr."""
    patch: dict[str, Any] = {}
    if options.system is not None:
        patch["prompt_layers"] = [options.system] if options.system else []
    before = session.config
    named = {"provider": options.provider, "model": options.model}
    patch.update({k: v for k, v in named.items() if v is not None and getattr(before, k) != v})
    if not patch:
        return
    after = await session.configure(**patch)
    for field in ("provider", "model"):
        if getattr(before, field) != getattr(after, field):
            old, new = _shown(getattr(before, field)), _shown(getattr(after, field))
            click.echo(f"config: {field} {old} -> {new}", err=True)


def _run(ctx: click.Context, options: RunOptions) -> TurnResult:
    text = read_prompt(options.prompt)
    try:
        config = load_config(ctx)
    except ConfigError as exc:
        raise ConfigProblem(str(exc)) from None
    terminal = sys.stdout.isatty() and not options.as_json
    layout = Layout(text=not options.as_json, prefix=terminal, activity_to_stderr=True)

    async def go() -> TurnResult:
        async with LashCore(config=config, provider=options.provider, model=options.model) as core:
            session = await core.session(options.session_id).open(
                wait=options.wait, on_wait=waiting_note(options.wait)
            )
            try:
                await _reconfigure(session, options)
                turn = session.turn(text)
                with cancel_on_interrupt(turn):
                    return await stream_turn(turn, layout)
            finally:
                await session.close()  # release the lease now, not when it expires

    try:
        return asyncio.run(go())
    except SessionBusy as exc:
        raise click.ClickException(busy_message(exc, options.wait)) from None
    except _CONFIG_ERRORS as exc:
        raise ConfigProblem(str(exc)) from None
    except LashError as exc:
        raise click.ClickException(str(exc)) from None
