"""``lash sessions approvals / approve / reject``: tool calls waiting for a person, from the
command line (docs: the approvals page).

Listing and answering take no lease, so they work while any process runs the session, and
never create a store (SQLite: ``mode=ro`` to list, ``mode=rw`` to answer). An answer is queued:
the session's next execution (``lash sessions drain``, a ``lash worker``) continues the turn.
"""

from __future__ import annotations

from typing import Any

import click

from lash._kernel.approvals import ApprovalAnswer, Decision, PendingApproval
from lash._kernel.core import LashCore
from lash.cli._sessions_common import (
    dumps,
    iso,
    local,
    one_line,
    require_session,
    run_on_core,
    table,
)

#: How ``lash sessions approve / reject`` exits when the answer changed nothing.
EXIT_NOT_ANSWERED = 3

#: Characters of a call's arguments shown in the table.
_ARGUMENTS_PREVIEW = 60


def approval_data(item: PendingApproval) -> dict[str, Any]:
    return {
        "session_id": item.session_id,
        "call_id": item.call_id,
        "tool": item.tool,
        "arguments": item.arguments,
        "turn_id": item.turn_id,
        "index": item.index,
        "requested_at": iso(item.requested_at),
        "requested_by": item.requested_by,
        "why": item.why,
    }


@click.command("approvals", short_help="List the tool calls waiting for approval.")
@click.argument("session_id")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array, one object per call.")
@click.pass_context
def approvals_command(ctx: click.Context, session_id: str, as_json: bool) -> None:
    """List the tool calls of SESSION_ID waiting for a person's answer, in the order the model
    asked for them: the calls held by the turn that stopped with reason awaiting_approval,
    less those answered already. Answer them with `lash sessions approve` or `reject`.

    BY is the plugin that asked for approval (blank: the tool always asks).
    """

    async def action(core: LashCore) -> list[PendingApproval]:
        await require_session(core.store, session_id)
        return await core.approvals(session_id)

    items = run_on_core(ctx, action)
    if as_json:
        click.echo(dumps([approval_data(item) for item in items], indent=2))
        return
    if not items:
        click.echo(f"no tool call of session {session_id!r} waits for approval")
        return
    rows = [
        (
            item.call_id,
            item.tool,
            local(item.requested_at),
            item.turn_id,
            item.requested_by or "",
            one_line(dumps(item.arguments, ensure_ascii=False), _ARGUMENTS_PREVIEW),
        )
        for item in items
    ]
    for line in table(("CALL", "TOOL", "REQUESTED", "TURN", "BY", "ARGUMENTS"), rows, set()):
        click.echo(line)


def _answer_text(answer: ApprovalAnswer) -> str:
    if answer.outcome in ("approved", "rejected"):
        why = f" ({answer.reason})" if answer.reason else ""
        return (
            f"{answer.call_id}: {answer.outcome}{why}; the session's next execution continues "
            f"turn {answer.turn_id}"
        )
    if answer.outcome == "already_answered":
        first = "approved" if answer.decision == "approve" else "rejected"
        why = f" ({answer.reason})" if answer.reason else ""
        return f"{answer.call_id}: already answered: {first}{why}; nothing changed"
    if answer.outcome == "expired":
        return (
            f"{answer.call_id}: expired: its turn was reset or superseded before it was "
            "answered; nothing changed"
        )
    return (
        f"{answer.call_id}: unknown: no tool call of session {answer.session_id!r} with this id "
        "waits for approval"
    )


def _answer(
    ctx: click.Context,
    session_id: str,
    call_id: str,
    decision: Decision,
    reason: str | None,
    key: str | None,
    as_json: bool,
) -> None:
    async def action(core: LashCore) -> ApprovalAnswer:
        await require_session(core.store, session_id)
        return await core.approve(
            session_id, call_id, decision=decision, reason=reason, key=key, source="cli"
        )

    answer = run_on_core(ctx, action, mode="rw")
    if as_json:
        click.echo(
            dumps(
                {
                    "session_id": answer.session_id,
                    "call_id": answer.call_id,
                    "outcome": answer.outcome,
                    "decision": answer.decision,
                    "reason": answer.reason,
                    "turn_id": answer.turn_id,
                    "tool": answer.tool,
                },
                indent=2,
            )
        )
    else:
        click.echo(_answer_text(answer))
    if answer.outcome not in ("approved", "rejected"):
        ctx.exit(EXIT_NOT_ANSWERED)


_EXIT_HELP = """

\b
Exit status:
  0  the answer is recorded
  3  it changed nothing (already_answered, expired, unknown)
  1  an error (no such session, no store...)"""


def _answer_command(decision: Decision, name: str, summary: str, doc: str) -> click.Command:
    @click.command(name, short_help=summary, help=doc + _EXIT_HELP)
    @click.argument("session_id")
    @click.argument("call_id")
    @click.option("--reason", default=None, help="Why (the model sees it for a rejection).")
    @click.option("--key", default=None, help="Idempotency key: a retry with it is the same.")
    @click.option("--json", "as_json", is_flag=True, help="Print the outcome as a JSON object.")
    @click.pass_context
    def command(
        ctx: click.Context,
        session_id: str,
        call_id: str,
        reason: str | None,
        key: str | None,
        as_json: bool,
    ) -> None:
        _answer(ctx, session_id, call_id, decision, reason, key, as_json)

    return command


approve_command = _answer_command(
    "approve",
    "approve",
    "Approve a tool call waiting for approval.",
    "Approve CALL_ID, a tool call of SESSION_ID waiting for approval: the tool runs when the "
    "session's next execution (lash sessions drain, a lash worker) continues its turn. A call "
    "answered already keeps its first answer.",
)
reject_command = _answer_command(
    "reject",
    "reject",
    "Reject a tool call waiting for approval.",
    "Reject CALL_ID, a tool call of SESSION_ID waiting for approval: the model sees the "
    "rejection (with --reason) as the call's result when the session's next execution "
    "continues its turn. A call answered already keeps its first answer.",
)

__all__ = ["approvals_command", "approve_command", "reject_command"]
