"""``lash sessions``: list, show, export and delete the sessions a store holds.

These commands only touch the configured store: they need no provider, and they read without
taking a session's lease, so they are safe to run while a host works on the same sessions. They
never create a store: a SQLite store is opened with ``mode=ro`` to read (``mode=rw`` to delete),
so a URL that points at nothing is an error naming the path, not a new empty database.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import click

from lash._contract.graph import (
    AssistantMessage,
    FrameBoundary,
    GraphNode,
    PluginNode,
    ToolCallNode,
    ToolResultNode,
    TurnOutcome,
    UserMessage,
)
from lash._contract.serialization import to_data
from lash._contract.types import ToolCall, Usage
from lash._store.protocol import Store
from lash._store.records import SessionRecord, SessionSummary
from lash.cli._approval_cmds import approvals_command, approve_command, reject_command
from lash.cli._context import with_store_option
from lash.cli._mailbox_cmds import (
    cancel_input_command,
    drain_command,
    enqueue_command,
    inputs_command,
    watch_command,
)
from lash.cli._sessions_common import (
    NO_SESSIONS_YET,
    configured_url,
    dumps,
    iso,
    local,
    one_line,
    run_on_store,
    table,
)
from lash.errors import SessionBusy, UnknownSession, _lease_left

#: Characters of the last user message shown in `lash sessions list`.
_MESSAGE_PREVIEW = 48
#: Arguments and data up to this length stay on one line in `lash sessions show`.
_INLINE_JSON = 100
#: Version of the `lash sessions export` format (in its header line).
EXPORT_FORMAT = 1


async def _load(store: Store, session_id: str, *, full: bool) -> SessionRecord:
    """The session, for show, export and delete.

    :raises click.ClickException: for a session that has input queued but no commit yet
        (``lash sessions enqueue`` made it): it has no history, and is no unknown one.
    :raises UnknownSession: for a session the store holds nothing of.
    """
    record = await store.load(session_id, full=full)
    if record is not None:
        return record
    queued = len(await store.list_inputs(session_id))
    if queued:
        inputs = "1 input is" if queued == 1 else f"{queued} inputs are"
        them = "it" if queued == 1 else "them"
        raise click.ClickException(
            f"session {session_id!r} has no turn committed yet: {inputs} queued for it "
            f"(`lash sessions inputs {session_id}` lists {them}; `lash sessions drain "
            f"{session_id}` or a `lash worker` runs {them}, `lash sessions cancel-input "
            f"{session_id} ID` cancels {them})"
        )
    raise UnknownSession(session_id)


async def _load_with_inputs(store: Store, session_id: str) -> tuple[SessionRecord, int]:
    """The whole session (as :func:`_load`), and how many inputs are queued for it (pending or
    claimed)."""
    record = await _load(store, session_id, full=True)
    return record, len(await store.list_inputs(session_id))


# -- data ------------------------------------------------------------------------------------


def _total(usage: Mapping[str, Usage]) -> Usage:
    total = Usage()
    for part in usage.values():
        total = total + part
    return total


def _summary_data(row: SessionSummary) -> dict[str, Any]:
    return {
        "session_id": row.session_id,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
        "turns": row.turns,
        "revision": row.revision,
        "last_user_message": row.last_user_message,
        "usage": to_data(row.usage),
        "status": row.status,
        "pending_inputs": row.pending_inputs,
        "parent_id": row.parent_id,
    }


def _head_data(record: SessionRecord, pending_inputs: int) -> dict[str, Any]:
    """The head of a fully loaded session: the listing's fields, then the rest of the head."""
    last_user = next((n.text for n in reversed(record.nodes) if isinstance(n, UserMessage)), None)
    status = next((n.outcome for n in reversed(record.nodes) if isinstance(n, TurnOutcome)), None)
    return {
        "session_id": record.session_id,
        "created_at": iso(record.created_at),
        "updated_at": iso(record.updated_at),
        "turns": record.turns,
        "revision": record.revision,
        "last_user_message": last_user,
        "usage": to_data(_total(record.usage)),
        "status": status,
        "pending_inputs": pending_inputs,
        "parent_id": record.parent_id,
        "usage_by_source": {k: to_data(v) for k, v in sorted(record.usage.items())},
        "config": to_data(record.config),
        "plugin_states": dict(record.plugin_states),
        "node_count": len(record.nodes),
    }


def _node_data(node: GraphNode) -> Any:
    return to_data(node, GraphNode)


# -- text ------------------------------------------------------------------------------------


def _turns(n: int) -> str:
    return f"{n} turn{'s' if n != 1 else ''}"


def _tokens(usage: Usage) -> str:
    return f"{usage.input_tokens}/{usage.output_tokens}/{usage.cached_tokens}"


def _block(text: str, indent: str) -> list[str]:
    """``text`` as indented lines (``(empty)`` for no text)."""
    lines = text.splitlines() or ["(empty)"]
    return [f"{indent}{line}".rstrip() for line in lines]


def _prefixed(prefix: str, text: str, indent: str) -> list[str]:
    """``prefix`` then the first line of ``text``; further lines aligned under it."""
    first, *rest = text.splitlines() or [""]
    pad = indent + " " * len(prefix)
    return [f"{indent}{click.style(prefix, bold=True)}{first}", *(pad + line for line in rest)]


def _data_lines(label: str, data: Any, indent: str) -> list[str]:
    """``label: <json>`` on one line when short, else the label and indented pretty JSON."""
    compact = dumps(data)
    if len(compact) <= _INLINE_JSON and "\n" not in compact:
        return [f"{indent}{label}: {compact}"]
    return [f"{indent}{label}:", *_block(dumps(data, indent=2), indent + "  ")]


def _frame_lines(node: FrameBoundary) -> list[str]:
    frame = node.frame_id[:8]
    if node.previous_frame_id is None and node.reason == "root":
        lines = [f"--- agent frame {frame} (root)"]
    else:
        after = f", after frame {node.previous_frame_id[:8]}" if node.previous_frame_id else ""
        lines = [f"--- new agent frame {frame} ({node.reason}{after})"]
    if node.summary:
        lines += _prefixed("summary: ", node.summary, "    ")
    return [click.style(line, fg="cyan") for line in lines]


def _assistant_lines(node: AssistantMessage, executed: set[str]) -> list[str]:
    if node.text or not node.tool_calls:
        lines = _prefixed("assistant> ", node.text or "(no text)", "  ")
    else:
        # Said even without text: the model and usage lines below belong to this message, and
        # would read as the previous node's (the user's) without it.
        names = ", ".join(call.name for call in node.tool_calls)
        lines = _prefixed("assistant> ", f"(tool calls: {names})", "  ")
    meta = [node.model] if node.model else []
    if node.usage != Usage():
        meta.append(
            f"{node.usage.input_tokens} in / {node.usage.output_tokens} out / "
            f"{node.usage.cached_tokens} cached tokens"
        )
    if meta:
        lines.append(click.style(f"    ({', '.join(meta)})", dim=True))
    # A call the kernel records a ToolCallNode for is shown there; others (a protocol that
    # records none) are shown here so the transcript never hides a request.
    for call in node.tool_calls:
        if call.id not in executed:
            lines.append(f"  requested tool call {call.name} [{call.id}] (no execution recorded)")
            lines += _arguments_lines(call, "    ")
    return lines


def _arguments_lines(call: ToolCall, indent: str) -> list[str]:
    if call.invalid_arguments is not None:
        return [f"{indent}invalid arguments (not a JSON object): {call.invalid_arguments}"]
    return _data_lines("arguments", dict(call.arguments), indent)


def _tool_call_lines(node: ToolCallNode, requested: Mapping[str, ToolCall]) -> list[str]:
    call = node.call
    by = f" (plugin {node.plugin})" if node.plugin else ""
    lines = [f"  {click.style('tool call', bold=True)} {call.name} [{call.id}]{by}"]
    lines += _arguments_lines(call, "    ")
    asked = requested.get(call.id)
    if asked is not None and (
        asked.arguments != call.arguments or asked.invalid_arguments != call.invalid_arguments
    ):
        lines += _data_lines("model asked for", dict(asked.arguments), "    ")
    return lines


def _tool_result_lines(node: ToolResultNode) -> list[str]:
    mark = " " + click.style("ERROR", fg="red", bold=True) if node.is_error else ""
    lines = [f"  {click.style('tool result', bold=True)} {node.name} [{node.call_id}]{mark}:"]
    lines += _block(node.content, "    ")
    if node.projected is not None and node.projected != node.content:
        lines.append("  shown to the model (projected):")
        lines += _block(node.projected, "    ")
    return lines


def _plugin_lines(node: PluginNode) -> list[str]:
    lines = [f"  {click.style('plugin', bold=True)} {node.plugin}: {node.kind}"]
    if node.data is not None:
        lines += _data_lines("data", node.data, "    ")
    return lines


def _outcome_line(node: TurnOutcome) -> str:
    """``ended: stopped (max_tool_rounds) [turn-...]``: how the turn ended, and its id."""
    said: str = node.outcome
    why = node.reason if node.outcome == "stopped" else node.error
    if why:
        said += f" ({one_line(why, 100)})"
    if node.cancelled_by:
        said += f", cancelled by {node.cancelled_by}"
    if node.detail:
        said += f": {one_line(node.detail, 100)}"
    return f"  {click.style('ended', bold=True)}: {said} [{node.turn_id}]"


def transcript(record: SessionRecord, pending_inputs: int = 0) -> Iterator[str]:
    """The lines of a readable transcript of every node of ``record``, in order (after its
    head, which says how many inputs are queued for it when there are some)."""
    total = _total(record.usage)
    yield click.style(f"session {record.session_id!r}", bold=True) + (
        f": {_turns(record.turns)}, revision {record.revision}"
    )
    yield f"  created {local(record.created_at)}, updated {local(record.updated_at)}"
    yield (
        f"  usage: {total.input_tokens} input / {total.output_tokens} output / "
        f"{total.cached_tokens} cached tokens"
    )
    if record.config.provider or record.config.model:
        yield f"  provider: {record.config.provider or '-'}; model: {record.config.model or '-'}"
    if pending_inputs:
        yield (
            f"  queued input: {pending_inputs} (`lash sessions inputs {record.session_id}` "
            "lists it)"
        )
    if not record.nodes:
        yield "  (no nodes)"
        return

    requested = {
        call.id: call
        for node in record.nodes
        if isinstance(node, AssistantMessage)
        for call in node.tool_calls
    }
    executed = {node.call.id for node in record.nodes if isinstance(node, ToolCallNode)}
    turn: int | None = None
    for node in record.nodes:
        if isinstance(node, FrameBoundary):
            yield ""
            yield from _frame_lines(node)
            turn = None  # the turn continues in the new frame: say so again
            continue
        if node.turn != turn:
            turn = node.turn
            yield ""
            yield click.style(f"turn {turn}", bold=True)
        yield from _node_lines(node, requested, executed)


def _node_lines(
    node: GraphNode, requested: Mapping[str, ToolCall], executed: set[str]
) -> list[str]:
    if isinstance(node, UserMessage):
        lines = _prefixed("user> ", node.text, "  ")
        if node.items:
            lines += _data_lines("items", to_data(node.items), "    ")
        return lines
    if isinstance(node, AssistantMessage):
        return _assistant_lines(node, executed)
    if isinstance(node, ToolCallNode):
        return _tool_call_lines(node, requested)
    if isinstance(node, ToolResultNode):
        return _tool_result_lines(node)
    if isinstance(node, PluginNode):
        return _plugin_lines(node)
    if isinstance(node, TurnOutcome):
        return [_outcome_line(node)]
    return [f"  {dumps(_node_data(node))}"]  # a node kind this lash does not know how to show


def _listing(rows: Iterable[SessionSummary]) -> list[str]:
    header = (
        "SESSION",
        "UPDATED",
        "CREATED",
        "TURNS",
        "REVISION",
        "STATUS",
        "QUEUED",
        "TOKENS IN/OUT/CACHED",
        "LAST USER MESSAGE",
    )
    cells = [
        (
            row.session_id,
            local(row.updated_at),
            local(row.created_at),
            str(row.turns),
            str(row.revision),
            row.status or "-",
            str(row.pending_inputs),
            _tokens(row.usage),
            one_line(row.last_user_message, _MESSAGE_PREVIEW)
            if row.last_user_message is not None
            else "-",
        )
        for row in rows
    ]
    return table(header, cells, right={3, 4, 6})


# -- commands --------------------------------------------------------------------------------


@click.group("sessions")
def sessions_group() -> None:
    """List, show, export and delete sessions; queue input for them, watch and drain them.

    The store is the one of the config (`store = "sqlite:///path/lash.db"` in lash.toml). These
    commands need no provider (except drain, which runs turns) and never take a session's lease
    to read it or to queue input for it.
    """


@sessions_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array, one object per session.")
@click.pass_context
def list_command(ctx: click.Context, as_json: bool) -> None:
    """List the sessions of the store, most recently updated first.

    Text mode shows local times, how the last turn ended (STATUS), how many inputs are queued
    (QUEUED), token usage as input/output/cached and the last user message (shortened).

    \b
    JSON keys: session_id, created_at, updated_at (ISO 8601, UTC), turns, revision,
    last_user_message (full, or null), usage (input_tokens, output_tokens, cached_tokens; a
    parent's includes its child sessions'), status (completed, stopped, failed, or null before
    any turn), pending_inputs, parent_id (a child session's parent, or null).
    """

    async def action(store: Store) -> tuple[list[SessionSummary], str]:
        empty = (
            f"no sessions in store {configured_url(ctx)!r} "
            "(`lash run PROMPT --session ID` starts one)"
        )
        return await store.list_sessions(), empty

    def no_store_yet(path: str) -> tuple[list[SessionSummary], str]:
        # The default store is made by the first session: not having one yet is no error.
        return [], NO_SESSIONS_YET.format(path=path)

    rows, empty = run_on_store(ctx, action, if_no_default_store=no_store_yet)
    if as_json:
        click.echo(dumps([_summary_data(row) for row in rows], indent=2))
        return
    if not rows:
        click.echo(empty)
        return
    for line in _listing(rows):
        click.echo(line)


@sessions_group.command("show", short_help="Print the whole history of a session.")
@click.argument("session_id")
@click.option("--json", "as_json", is_flag=True, help="Print the head and every node as JSON.")
@click.pass_context
def show_command(ctx: click.Context, session_id: str, as_json: bool) -> None:
    """Print the whole history of SESSION_ID: every agent frame, turn and node.

    Shows user messages, assistant text, tool calls with their arguments and full results
    (errors marked, and what the model was shown when a plugin projected the result), plugin
    nodes, and where a new agent frame starts (with its compaction summary).

    \b
    JSON: {"session": {...}, "nodes": [...]}. "session" has the keys of `lash sessions list
    --json` plus usage_by_source, config, plugin_states and
    node_count; each node is the stored form of a graph node, tagged by "type" (user,
    assistant, tool_call, tool_result, plugin, frame, outcome).
    """

    async def action(store: Store) -> tuple[SessionRecord, int]:
        return await _load_with_inputs(store, session_id)

    record, pending = run_on_store(ctx, action)
    if as_json:
        data = {
            "session": _head_data(record, pending),
            "nodes": [_node_data(n) for n in record.nodes],
        }
        click.echo(dumps(data, indent=2))
        return
    for line in transcript(record, pending):
        click.echo(line)


@sessions_group.command("export", short_help="Write a session as JSON Lines to stdout.")
@click.argument("session_id")
@click.pass_context
def export_command(ctx: click.Context, session_id: str) -> None:
    """Write SESSION_ID as JSON Lines to stdout (`lash sessions export ID > ID.jsonl`).

    \b
    Line 1, the header: {"type": "session", "export_format": 1, ...} with the keys of the
    "session" object of `lash sessions show --json`.
    Then one line per node, oldest first, in the stored form of `lash sessions show --json`.
    """

    async def action(store: Store) -> tuple[SessionRecord, int]:
        return await _load_with_inputs(store, session_id)

    record, pending = run_on_store(ctx, action)
    header = {"type": "session", "export_format": EXPORT_FORMAT, **_head_data(record, pending)}
    click.echo(dumps(header))
    for node in record.nodes:
        click.echo(dumps(_node_data(node)))


def _busy_message(exc: SessionBusy, session_id: str) -> str:
    return (
        f"cannot delete session {session_id!r}: it is running, its lease is held by "
        f"{exc.owner!r} ({_lease_left(exc.expires_at)}); retry once that execution has ended "
        "or its lease has expired"
    )


@sessions_group.command("delete", short_help="Delete a session (asks first; --yes in scripts).")
@click.argument("session_id")
@click.option(
    "--yes",
    "-y",
    is_flag=True,
    help="Delete without asking (required when stdin is not a terminal).",
)
@click.pass_context
def delete_command(ctx: click.Context, session_id: str, yes: bool) -> None:
    """Delete SESSION_ID and everything the store holds for it; this cannot be undone.

    Asks for confirmation on a terminal. Without a terminal (scripts, pipes), --yes is required:
    without it nothing is deleted and the command exits 1. A session open in another process
    (its lease is live) is not deleted: the error names the lease's owner.
    """

    async def action(store: Store) -> SessionRecord | None:
        record = await _load(store, session_id, full=False)
        if not yes:
            if not sys.stdin.isatty():
                raise click.ClickException(
                    f"not deleting session {session_id!r} without confirmation: stdin is not "
                    "a terminal; pass --yes to delete it"
                )
            question = (
                f"Delete session {session_id!r} ({_turns(record.turns)}, revision "
                f"{record.revision}, updated {local(record.updated_at)})? This cannot be undone."
            )
            if not click.confirm(question, default=False):
                return None
        try:
            await store.delete(session_id)
        except SessionBusy as exc:
            raise click.ClickException(_busy_message(exc, session_id)) from None
        return record

    deleted = run_on_store(ctx, action, mode="rw")
    if deleted is None:
        click.echo("nothing deleted")
        return
    click.echo(
        f"deleted session {session_id!r} ({_turns(deleted.turns)}, revision {deleted.revision})"
    )


for _command in (
    enqueue_command,
    inputs_command,
    cancel_input_command,
    watch_command,
    drain_command,
    approvals_command,
    approve_command,
    reject_command,
):
    sessions_group.add_command(_command)
with_store_option(sessions_group)

__all__ = [
    "delete_command",
    "export_command",
    "list_command",
    "sessions_group",
    "show_command",
    "transcript",
]
