"""``lash sessions enqueue / inputs / cancel-input / watch / drain``: a session's mailbox from
the command line (docs: the mailbox page).

Queueing, listing and cancelling input and watching a session take no lease, so they work while
any process runs the session; only ``drain`` runs turns (and needs a provider). ``inputs``,
``cancel-input`` and ``watch`` never create a store (SQLite: ``mode=ro``, ``mode=rw`` to
cancel); ``enqueue`` and ``drain`` open it as ``lash run`` does, since queueing input for a
session id is how a new session may start.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any, cast

import click

from lash._contract.events import TurnResult
from lash._contract.serialization import to_data
from lash._kernel.core import LashCore
from lash._kernel.event_json import gap_json
from lash._kernel.observation import ObservationGap, ObservedEvent, parse_cursor
from lash._store.records import Ingress, InputCancellation, PendingInput
from lash.cli._run_cmds import (
    EXIT_COMPLETED,
    EXIT_INTERRUPTED,
    busy_message,
    exit_code,
    read_prompt,
    result_data,
    status_line,
    wait_option,
    waiting_note,
)
from lash.cli._sessions_common import (
    dumps,
    iso,
    local,
    on_signals,
    one_line,
    require_session,
    run_on_core,
    table,
)
from lash.errors import SessionBusy

#: How ``lash sessions cancel-input`` exits when not every input it names is cancelled.
EXIT_NOT_CANCELLED = 3

#: Characters of an input's text shown in tables and event lines.
_TEXT_PREVIEW = 48


# -- inputs ----------------------------------------------------------------------------------


def input_data(item: PendingInput) -> dict[str, Any]:
    """The JSON form of a queued input (``inputs --json``, ``enqueue --json``)."""
    return {
        "id": item.id,
        "session_id": item.session_id,
        "seq": item.seq,
        "state": item.state,
        "key": item.key,
        "ingress": item.ingress,
        "source": item.source,
        "created_at": iso(item.created_at),
        "settled_at": iso(item.settled_at) if item.settled_at is not None else None,
        "turn_id": item.turn_id,
        "text": item.text,
        "items": to_data(list(item.items)),
    }


def _inputs_table(items: Sequence[PendingInput]) -> list[str]:
    header = ("INPUT", "STATE", "INGRESS", "KEY", "CREATED", "TURN", "TEXT")
    rows = [
        (
            item.id,
            item.state,
            item.ingress,
            item.key or "-",
            local(item.created_at),
            item.turn_id or "-",
            one_line(item.text, _TEXT_PREVIEW) or "-",
        )
        for item in items
    ]
    return table(header, rows, right=set())


@click.command("enqueue", short_help="Queue input for a session, from any process.")
@click.argument("session_id")
@click.argument("text")
@click.option(
    "--key",
    default=None,
    metavar="KEY",
    help="Idempotency key: the same key with the same text returns the input already queued.",
)
@click.option(
    "--active",
    is_flag=True,
    help="Join the turn running now at its next checkpoint (else the next drained turn).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the input as one JSON object.")
@click.pass_context
def enqueue_command(
    ctx: click.Context, session_id: str, text: str, key: str | None, active: bool, as_json: bool
) -> None:
    """Queue TEXT as input for SESSION_ID and print the queued input.

    Takes no lease: it works while any process runs the session. Whoever drains the session
    (`lash sessions drain`, a host's session.drain()) runs it as a turn of its own, oldest
    first; with --active it joins the turn running when it arrives, at that turn's next
    checkpoint. A session id the store does not know yet is created (with input and no history).
    TEXT `-` reads the text from stdin.

    With --key, queueing is idempotent: the same key with the same text (and ingress) prints the
    input already queued under it, in whatever state it is now; the same key with other text is
    an error (exit 1), and nothing is queued.

    \b
    JSON keys: id, session_id, seq, state (pending, claimed, completed,
    cancelled), key, ingress (next_turn, active_turn), source, created_at,
    settled_at (ISO 8601, UTC, or null), turn_id (the turn that consumed it),
    text, items.
    """
    body = read_prompt(text)

    async def action(core: LashCore) -> PendingInput:
        ingress: Ingress = "active_turn" if active else "next_turn"
        return await core.enqueue(session_id, body, key=key, ingress=ingress, source="cli")

    queued = run_on_core(ctx, action, mode=None)
    if as_json:
        click.echo(dumps(input_data(queued)))
        return
    for line in _inputs_table([queued]):
        click.echo(line)


@click.command("inputs", short_help="List the input queued for a session.")
@click.argument("session_id")
@click.option("--all", "settled", is_flag=True, help="Also list completed and cancelled input.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array, one object per input.")
@click.pass_context
def inputs_command(ctx: click.Context, session_id: str, settled: bool, as_json: bool) -> None:
    """List the input queued for SESSION_ID, oldest first: pending, and claimed by a running
    turn; with --all, completed and cancelled input too.

    TURN is the turn that consumed a completed input. JSON: the objects `lash sessions enqueue
    --json` prints.
    """

    async def action(core: LashCore) -> list[PendingInput]:
        await require_session(core.store, session_id)
        return await core.inputs(session_id, settled=settled)

    items = run_on_core(ctx, action)
    if as_json:
        click.echo(dumps([input_data(item) for item in items], indent=2))
        return
    if not items:
        click.echo(f"no {'' if settled else 'queued '}input for session {session_id!r}")
        return
    for line in _inputs_table(items):
        click.echo(line)


def _cancellation_text(session_id: str, outcome: InputCancellation) -> str:
    item = outcome.input
    if outcome.outcome == "cancelled":
        return "cancelled"
    if outcome.outcome == "already_claimed":
        return "already claimed by a running turn: left alone (cancel the turn instead)"
    if outcome.outcome == "already_completed":
        turn = f" by {item.turn_id}" if item is not None and item.turn_id else ""
        return f"already completed{turn}"
    if outcome.outcome == "already_cancelled":
        return "already cancelled"
    return f"unknown: session {session_id!r} has no input with this id or key"


@click.command("cancel-input", short_help="Cancel input queued for a session.")
@click.argument("session_id")
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option(
    "--suffix",
    is_flag=True,
    help="Cancel INPUT and every input queued after it (one INPUT).",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array, one object per input.")
@click.pass_context
def cancel_input_command(
    ctx: click.Context, session_id: str, inputs: tuple[str, ...], suffix: bool, as_json: bool
) -> None:
    """Cancel input queued for SESSION_ID, by id or key, atomically; print each outcome.

    An INPUT still pending is cancelled: no turn will consume it. Input a running turn has
    claimed is left alone (cancel the turn), as is input already completed; cancelling
    cancelled input again changes nothing. With --suffix, INPUT and every input queued after
    it are cancelled (claimed ones stay): a queued end of a conversation withdrawn at once.

    \b
    Outcomes: cancelled, already_claimed, already_completed,
    already_cancelled, unknown. JSON keys: target, outcome, input (the input
    as it is now, or null when unknown).

    \b
    Exit status:
      0  every input named (with --suffix: every input from INPUT on) is cancelled,
         now or before
      3  some were not (claimed, completed or unknown: the outcomes say which)
      1  an error: nothing was cancelled (no such session, no store...)
    """
    if suffix and len(inputs) != 1:
        raise click.UsageError(f"--suffix takes one INPUT (the first to cancel), got {len(inputs)}")

    async def action(core: LashCore) -> list[InputCancellation]:
        await require_session(core.store, session_id)
        return await core.cancel_inputs(session_id, *inputs, suffix=suffix)

    outcomes = run_on_core(ctx, action, mode="rw")
    if as_json:
        data = [
            {
                "target": outcome.target,
                "outcome": outcome.outcome,
                "input": input_data(outcome.input) if outcome.input is not None else None,
            }
            for outcome in outcomes
        ]
        click.echo(dumps(data, indent=2))
    else:
        for outcome in outcomes:
            click.echo(f"{outcome.target}: {_cancellation_text(session_id, outcome)}")
    if any(o.outcome not in ("cancelled", "already_cancelled") for o in outcomes):
        ctx.exit(EXIT_NOT_CANCELLED)


# -- watch -----------------------------------------------------------------------------------


def _quoted(text: Any) -> str:
    return dumps(one_line(str(text or ""), _TEXT_PREVIEW), ensure_ascii=False)


def _input_summary(data: Mapping[str, Any]) -> str:
    item = data.get("input") or {}
    key = f" (key {item['key']})" if item.get("key") else ""
    return f"{item.get('id', '?')}{key}: {_quoted(item.get('text'))}"


def _committed_summary(data: Mapping[str, Any]) -> str:
    said = f"turn {data.get('index', '?')} {data.get('outcome', '?')}"
    if data.get("reason"):
        said += f" ({data['reason']})"
    said += f", revision {data.get('revision', '?')} [{data.get('turn_id', '?')}]"
    result = data.get("result") or {}
    if result.get("error"):
        return f"{said}: {one_line(str(result['error']), 100)}"
    if result.get("text"):
        return f"{said}: {_quoted(result['text'])}"
    return said


def _config_summary(data: Mapping[str, Any]) -> str:
    before, after = data.get("previous") or {}, data.get("current") or {}
    changed = [
        f"{field} {before.get(field) or '(default)'} -> {after.get(field) or '(default)'}"
        for field in sorted(set(before) | set(after))
        if before.get(field) != after.get(field)
    ]
    return "; ".join(changed) or "(no field changed)"


def event_summary(event: ObservedEvent) -> str:
    """One readable line about ``event``'s data (the text form of `lash sessions watch`)."""
    data, kind = event.data, event.type
    if kind == "turn_started":
        return f"{data.get('turn_id', '?')}: {_quoted(data.get('input'))}"
    if kind == "turn_committed":
        return _committed_summary(data)
    if kind.startswith("input_"):
        return _input_summary(data)
    if kind.startswith("command_"):
        command = data.get("command") or {}
        error = f": {one_line(str(data['error']), 100)}" if data.get("error") else ""
        return f"{command.get('name', '?')} (key {command.get('key', '?')}){error}"
    if kind == "frame_opened":
        return f"agent frame {str(data.get('frame_id', '?'))[:8]} ({data.get('reason', '?')})"
    if kind == "config_changed":
        return _config_summary(data)
    if kind == "text_delta":
        return _quoted(data.get("text"))
    if kind == "plugin_event":
        payload = dumps(data.get("data"), ensure_ascii=False)
        return f"{data.get('plugin', '?')}: {data.get('type', '?')} {one_line(payload, 100)}"
    return one_line(dumps(dict(data), ensure_ascii=False), 120)


def _gap_line(gap: ObservationGap, after: str | None) -> str:
    view = gap.snapshot
    queued = len(view.inputs)
    return (
        f"gap: the events after {after} are gone (older than the store's replay window); "
        f"session {gap.session_id!r} is now at revision {view.revision} ({view.turns} turns, "
        f"{queued} queued input{'s' if queued != 1 else ''}); following from {gap.cursor}"
    )


def _print_item(item: ObservedEvent | ObservationGap, after: str | None, as_json: bool) -> None:
    if isinstance(item, ObservationGap):
        click.echo(dumps(gap_json(item, after)) if as_json else _gap_line(item, after))
    elif as_json:
        click.echo(dumps(item.to_json()))
    else:
        live = " (live)" if item.live else ""
        click.echo(f"{local(item.at)}  {item.cursor}  {item.type}{live}: {event_summary(item)}")


@click.command("watch", short_help="Follow a session's events as they happen (from any process).")
@click.argument("session_id")
@click.option(
    "--after",
    default=None,
    metavar="CURSOR",
    help="Start after this event's cursor (e.g. e42) instead of now: replay, then follow.",
)
@click.option(
    "--count",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Exit after N events (a gap counts as one); default: follow until interrupted.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON Lines, one event each.")
@click.pass_context
def watch_command(
    ctx: click.Context, session_id: str, after: str | None, count: int | None, as_json: bool
) -> None:
    """Print the events of SESSION_ID as they are committed, from now (or after --after CURSOR),
    until interrupted (Ctrl-C or SIGTERM: exit 0).

    Takes no lease and writes nothing: it follows turns run by any process on the store. Each
    line is one event: local time, cursor, type (turn_started, turn_committed, input_queued,
    input_claimed, input_cancelled, command_queued, command_applied, frame_opened,
    config_changed, plugin_event) and a summary. Pass a line's cursor to --after to resume
    right after it. A cursor older than the store's replay window first prints one gap item
    (type gap) with the session as it is now, then the events from there on.

    \b
    --json prints each event as one JSON object per line: v (format version),
    type, session_id, cursor, live, at (epoch seconds), data. A gap has
    type "gap" and data: after, revision, turns, inputs.
    """

    async def action(core: LashCore) -> None:
        await require_session(core.store, session_id)
        if after is not None:
            parse_cursor(session_id, after)  # a bad cursor is an error before anything prints

        async def follow() -> None:
            seen = 0
            # observe() is typed as an AsyncIterator; it is an async generator, closed here.
            events = cast(
                "AsyncGenerator[ObservedEvent | ObservationGap, None]",
                core.observe(session_id, after=after),
            )
            async with contextlib.aclosing(events):
                async for item in events:
                    _print_item(item, after, as_json)
                    seen += 1
                    if count is not None and seen >= count:
                        return

        stop = asyncio.Event()
        with on_signals(stop.set, signal.SIGINT, signal.SIGTERM):
            following = asyncio.ensure_future(follow())
            stopped = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait((following, stopped), return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (following, stopped):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task  # the observation's own error (if it ended with one) is raised

    run_on_core(ctx, action)


# -- drain -----------------------------------------------------------------------------------


@click.command("drain", short_help="Run a session's queued input, one turn per input.")
@click.argument("session_id")
@wait_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per turn.")
@click.pass_context
def drain_command(ctx: click.Context, session_id: str, wait: float, as_json: bool) -> None:
    """Run the input queued for SESSION_ID, one turn per input, oldest first, until none is
    left (input queued meanwhile included); print each turn's answer once it is committed.

    Like `lash run`, stdout carries the answers (or, with --json, one object per turn: the
    object of `lash run --json`) and stderr a status line per turn. Other processes may drain
    the same session at once: each input is consumed by exactly one turn. Ctrl-C stops the
    running turn (committed as cancelled) and the drain; input not reached stays queued.

    \b
    Exit status:
      0    every drained turn completed (or there was nothing to drain)
      1    a turn failed (the first turn that did not complete decides), or an error
      3    a turn stopped (max_tool_rounds, plugin_abort)
      130  interrupted (Ctrl-C)
    """
    results: list[TurnResult] = []

    def report(result: TurnResult) -> None:
        results.append(result)
        if as_json:
            click.echo(dumps(result_data(result), ensure_ascii=False))
        elif result.text:
            click.echo(result.text)
        click.echo(click.style(status_line(result), dim=True), err=True)

    async def action(core: LashCore) -> bool:
        session = await core.session(session_id).open(
            must_exist=True, wait=wait, on_wait=waiting_note(wait)
        )
        try:
            draining = asyncio.ensure_future(session.drain(on_result=report))

            def interrupted() -> None:
                click.echo(
                    "lash: interrupted: stopping the drain (the running turn commits as "
                    "cancelled; the input not reached stays queued)",
                    err=True,
                )
                draining.cancel()

            with on_signals(interrupted, signal.SIGINT):
                await asyncio.wait((draining,))
            if draining.cancelled():
                return True
            draining.result()
            return False
        except SessionBusy as exc:
            raise click.ClickException(busy_message(exc, wait)) from None
        finally:
            await session.close()

    stopped = run_on_core(ctx, action, mode=None)
    if stopped:
        ctx.exit(EXIT_INTERRUPTED)
    if not results:
        click.echo(f"lash: nothing to drain: session {session_id!r} has no queued input", err=True)
    unfinished = [r for r in results if r.outcome != "completed"]
    ctx.exit(exit_code(unfinished[0]) if unfinished else EXIT_COMPLETED)


__all__ = [
    "cancel_input_command",
    "drain_command",
    "enqueue_command",
    "event_summary",
    "inputs_command",
    "watch_command",
]
