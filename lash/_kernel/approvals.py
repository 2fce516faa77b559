"""Tool approval that survives a restart: held calls, answers, and what the next execution does.

A turn whose round of tool calls holds calls for approval (a tool declared
``approval="always"``, a ``RequireApproval`` directive) stops ``awaiting_approval``; its commit
writes the held calls into the kernel state (:class:`~lash._kernel.state.AwaitingTurn`), so they
are as durable as the turn itself and every store keeps them without a schema of its own.

Answers ride on the durable **command queue**: ``core.approve()`` queues the builtin command
``approval`` under the key ``approval:<turn id>:<call id>``. The queue already gives what an
answer needs: any process may write it without the session's lease; the key makes one answer per
call (a second one conflicts, and is reported with the first decision); a queued command makes
the session runnable, so workers wake for it; and the next execution applies it inside its own
atomic commit. Applying an answer records the decision on the held call; once every held call
has one, the next turn-running execution (a drained turn, a worker, or a new ``session.turn``,
which continues the old turn first) **continues** the stopped turn: approved calls run, rejected
ones give the model the rejection as their result, and the protocol goes on from there without
asking the model again.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import attrs

from lash._contract.annotations import resolve_here
from lash._contract.graph import AssistantMessage, ToolResultNode, new_node_id
from lash._contract.serialization import structure
from lash._contract.types import ToolCall
from lash._kernel.state import KERNEL_STATE_KEY, AwaitingTurn, HeldCall, KernelState
from lash._store.ids import check_session_id
from lash._store.records import CommandDraft, EventDraft
from lash.errors import InputConflict, SessionError

if TYPE_CHECKING:
    from lash._kernel.runtime import SessionRuntime
    from lash._kernel.tool_calls import Hold
    from lash._store.protocol import Store

#: The builtin session command that carries an answer.
APPROVAL_COMMAND = "approval"

Decision = Literal["approve", "reject"]
AnswerOutcome = Literal["approved", "rejected", "already_answered", "expired", "unknown"]


@attrs.frozen
class PendingApproval:
    """A tool call waiting for a human's answer (:meth:`lash.LashCore.approvals`).

    ``call_id`` names it for :meth:`lash.LashCore.approve`; ``tool`` and ``arguments`` are the
    call as it would run (after ``before_tool_call`` replacements); ``turn_id`` and ``index``
    name the turn that stopped for it, ``requested_at`` (epoch seconds) when; ``requested_by``
    is the plugin whose ``before_tool_call`` asked for approval (``None``: the tool is declared
    ``approval="always"``) and ``why`` its reason.
    """

    session_id: str
    call_id: str
    tool: str
    arguments: dict[str, Any]
    turn_id: str
    index: int
    requested_at: float
    requested_by: str | None = None
    why: str | None = None

    __module__ = "lash"


@attrs.frozen
class ApprovalAnswer:
    """What :meth:`lash.LashCore.approve` did with an answer.

    ``outcome`` is ``"approved"`` or ``"rejected"`` (the answer is recorded: the session's next
    execution applies it, and continues the turn once every held call of it is answered),
    ``"already_answered"`` (the call had an answer: nothing changed, and ``decision`` and
    ``reason`` are the first answer's), ``"expired"`` (the call was held, but its turn was
    superseded, by a ``reset`` or a new turn, before it was answered) or ``"unknown"`` (no held
    call of the session has that id). ``decision`` is the answer that stands (``None`` when
    there is none).
    """

    session_id: str
    call_id: str
    outcome: AnswerOutcome
    decision: Decision | None = None
    reason: str | None = None
    turn_id: str | None = None
    tool: str | None = None

    __module__ = "lash"


def rejection_text(reason: str | None) -> str:
    """The result the model sees for a rejected call."""
    return "the call was rejected by the person asked to approve it" + (
        f": {reason}" if reason else " (no reason given)"
    )


def command_key(turn_id: str, call_id: str) -> str:
    # Per turn: providers number calls per response (call_1...), so ids repeat across turns.
    return f"{APPROVAL_COMMAND}:{turn_id}:{call_id}"


# -- reading and answering, from any process (no lease) -------------------------------------------


async def stored_kernel(store: Store, session_id: str) -> KernelState:
    """The kernel state of the session as committed (empty for a session with no commit)."""
    record = await store.load(session_id)
    if record is None or KERNEL_STATE_KEY not in record.plugin_states:
        return KernelState()
    state: KernelState = structure(record.plugin_states[KERNEL_STATE_KEY], KernelState)
    return state


async def pending(store: Store, session_id: str) -> list[PendingApproval]:
    """The session's held calls that have no answer yet (none queued either), in call order."""
    check_session_id(session_id)
    awaiting = (await stored_kernel(store, session_id)).awaiting
    if awaiting is None:
        return []
    queued = {c.key for c in await store.list_commands(session_id) if c.name == APPROVAL_COMMAND}
    return [
        PendingApproval(
            session_id=session_id,
            call_id=call.call_id,
            tool=call.tool,
            arguments=dict(call.arguments),
            turn_id=awaiting.turn_id,
            index=awaiting.index,
            requested_at=call.requested_at,
            requested_by=call.requested_by,
            why=call.why,
        )
        for call in awaiting.calls
        if call.decision is None and command_key(awaiting.turn_id, call.call_id) not in queued
    ]


def check_answer(
    session_id: str, call_id: str, decision: str, reason: str | None, key: str | None
) -> None:
    check_session_id(session_id)

    def refuse(why: str) -> SessionError:
        return SessionError(
            f"session {session_id!r}: cannot answer approval {call_id!r}: {why}",
            session_id=session_id,
        )

    if not isinstance(call_id, str) or not call_id:
        raise refuse(f"a call id must be a non-empty string, got {call_id!r}")
    if decision not in ("approve", "reject"):
        raise refuse(f"decision must be 'approve' or 'reject', got {decision!r}")
    if reason is not None and not isinstance(reason, str):
        raise refuse(f"reason must be a string or None, got {type(reason).__name__}")
    if key is not None and (not isinstance(key, str) or not key.strip()):
        raise refuse(f"a key must be a non-empty string, got {key!r}")


async def answer(
    store: Store,
    session_id: str,
    call_id: str,
    *,
    decision: Decision,
    reason: str | None,
    key: str | None,
    source: str,
) -> ApprovalAnswer:
    """Queue the answer to a held call (see the module docstring), or report why not."""
    check_answer(session_id, call_id, decision, reason, key)
    kernel = await stored_kernel(store, session_id)
    awaiting = kernel.awaiting
    held = awaiting.find(call_id) if awaiting is not None else None
    if awaiting is None or held is None:
        settled = kernel.settled_call(call_id)
        if settled is None:
            return ApprovalAnswer(session_id, call_id, "unknown")
        return _reported(session_id, settled, expired=settled.decision is None)
    if held.decision is not None:
        return _reported(session_id, held)
    args = {
        "call_id": call_id,
        "turn_id": awaiting.turn_id,
        "decision": decision,
        "reason": reason,
        # Without a key of the caller's, every answer differs: a second one always conflicts
        # (and is reported with the first). With one, a retry is the same answer again.
        "key": key if key is not None else secrets.token_hex(8),
    }
    name = command_key(awaiting.turn_id, call_id)
    try:
        command = await store.enqueue_command(
            session_id, CommandDraft(APPROVAL_COMMAND, name, args, source)
        )
    except InputConflict:
        first = next(
            c for c in await store.list_commands(session_id, settled=True) if c.key == name
        )
        return ApprovalAnswer(
            session_id,
            call_id,
            "already_answered",
            first.args["decision"],
            first.args.get("reason"),
            awaiting.turn_id,
            held.tool,
        )
    given: Decision = command.args["decision"]
    return ApprovalAnswer(
        session_id,
        call_id,
        "approved" if given == "approve" else "rejected",
        given,
        command.args.get("reason"),
        awaiting.turn_id,
        held.tool,
    )


def _reported(session_id: str, call: HeldCall, *, expired: bool = False) -> ApprovalAnswer:
    decision: Any = call.decision
    return ApprovalAnswer(
        session_id,
        call.call_id,
        "expired" if expired else "already_answered",
        decision,
        call.reason,
        call.turn_id,
        call.tool,
    )


# -- inside an execution (under the lease) ---------------------------------------------------------


def apply_answer(runtime: SessionRuntime, args: dict[str, Any]) -> str | None:
    """Apply a queued answer (the ``approval`` command): record the decision on its held call.
    Returns why it had no effect (the call no longer waits), for the ``command_applied`` event."""
    kernel = runtime.image.kernel
    awaiting = kernel.awaiting
    call_id = str(args.get("call_id"))
    held = awaiting.find(call_id) if awaiting is not None else None
    if awaiting is None or held is None or awaiting.turn_id != args.get("turn_id"):
        return (
            f"session {runtime.id!r}: no tool call {call_id!r} of turn {args.get('turn_id')!r} "
            "awaits approval any more (its turn was reset or superseded); the answer has no effect"
        )
    if held.decision is None:  # (the command key admits one answer per call)
        held.decision = "approve" if args.get("decision") == "approve" else "reject"
        held.reason = args.get("reason")
        held.answered_at = time.time()
        runtime.dirty = True
    return None


def hold(
    runtime: SessionRuntime,
    turn_id: str,
    index: int,
    text: str,
    held: Sequence[tuple[ToolCall, Hold]],
) -> AwaitingTurn:
    """Record a turn's held calls as the awaiting turn (committed with the turn), and log
    ``approval_requested`` for observers."""
    now = time.time()
    awaiting = AwaitingTurn(
        turn_id,
        index,
        text,
        [
            HeldCall(
                call_id=call.id,
                tool=call.name,
                arguments=dict(call.arguments),
                turn_id=turn_id,
                requested_at=now,
                requested_by=why.plugin,
                why=why.reason,
            )
            for call, why in held
        ],
    )
    runtime.image.kernel.awaiting = awaiting
    runtime.dirty = True
    runtime.pending_events.append(
        EventDraft(
            "approval_requested",
            {
                "turn_id": turn_id,
                "calls": [
                    {"call_id": c.call_id, "tool": c.tool, "arguments": c.arguments}
                    for c in awaiting.calls
                ],
            },
        )
    )
    return awaiting


def ready(runtime: SessionRuntime) -> AwaitingTurn | None:
    """The awaiting turn when every held call is answered and the calls are still in the
    active frame (the turn can go on); a turn whose calls left the frame (compacted away) is
    expired here instead."""
    awaiting = runtime.image.kernel.awaiting
    if awaiting is None or not awaiting.answered:
        return None
    asked = _asked(runtime)
    if any(call.call_id not in asked for call in awaiting.calls):
        runtime.image.kernel.settle_awaiting("expired")
        runtime.dirty = True
        return None
    return awaiting


def _asked(runtime: SessionRuntime) -> set[str]:
    """The ids of the tool calls the model asked for in the active frame."""
    return {
        call.id
        for node in runtime.image.graph
        if isinstance(node, AssistantMessage)
        for call in node.tool_calls
    }


def supersede(runtime: SessionRuntime, turn_id: str) -> None:
    """A new turn starts while a turn awaits approval: its held calls expire, each closed with an
    error result (so the history never keeps a call without its result in the model's view)."""
    kernel = runtime.image.kernel
    awaiting = kernel.settle_awaiting("expired")
    if awaiting is None:
        return
    runtime.dirty = True
    asked = _asked(runtime)
    for call in awaiting.calls:
        if call.call_id not in asked:
            continue  # not in the active frame: nothing to close there
        leaf = runtime.image.graph.leaf
        runtime.add_node(
            ToolResultNode(
                id=new_node_id(),
                parent_id=leaf.id if leaf is not None else None,
                frame_id=runtime.image.graph.frame_id or "",
                turn=awaiting.index,
                call_id=call.call_id,
                name=call.tool,
                content=(
                    f"tool call not run: turn {turn_id!r} started before every call held for "
                    "approval was answered"
                ),
                is_error=True,
            )
        )


def expire_on_reset(runtime: SessionRuntime) -> None:
    """A ``reset`` drops the awaiting turn: its calls expire (they stay in the old frame)."""
    if runtime.image.kernel.settle_awaiting("expired") is not None:
        runtime.dirty = True


resolve_here(globals())
