"""``subagent``: a ``subagent`` tool that hands a task to a child session run in the background.

The tool does not wait for the sub-agent: it starts a process of the kind ``subagent`` (written
in the turn's commit) and answers at once with the process id, so the parent's turn goes on and
ends. A worker (``lash worker``, ``core.run_worker()``) then runs the process: it creates a child
session of the calling session (``context.child``: a parent link, ``is_root=False``, the
parent's stored provider, model and options, and only the tools the plugin's options allow),
runs one turn there with the task, and returns the child's answer as the process's result. The
kernel queues that result for the parent session, rendered by this plugin's
``render_process_result``, and the worker drains it: the parent's model reads the answer in a
new turn. The child's usage rolls up into the parent's usage report under ``child:<id>``.

Opt-in: a sub-agent spends model calls on its own, so a host enables it by naming it.
"""

from __future__ import annotations

import attrs

import lash

__all__ = ["KIND", "SubagentAnswer", "SubagentOptions", "SubagentTask"]

#: The process kind the tool starts.
KIND = "subagent"


def _at_least_one(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        raise ValueError(f"{attribute.name} must be at least 1, got {value}")


@attrs.frozen
class SubagentOptions:
    """Options of the subagent plugin (host-level, ``[options.subagent]``)."""

    tools: list[str] = lash.option(
        factory=list,
        help="The tools a sub-agent may use (an allowlist; empty: none, it answers from the "
        "model alone). A call may narrow it with its own `tools`.",
    )
    max_answer_chars: int = lash.option(
        8000,
        validator=_at_least_one,
        help="Most characters of a sub-agent's answer the parent's model reads (the whole "
        "answer stays in the child session).",
    )


lash_plugin = lash.PluginMeta(
    options=SubagentOptions,
    description="A subagent tool: a child session runs a task as a background process; its "
    "answer comes back as a new turn.",
    # A sub-agent spends model calls on its own: a power the host grants.
    opt_in=True,
)


@attrs.frozen
class SubagentTask:
    """The payload of a ``subagent`` process: the task, the child's tool allowlist, and the
    most characters of its answer the result keeps."""

    task: str
    tools: list[str] = attrs.field(factory=list)
    max_answer_chars: int = 8000


@attrs.frozen
class SubagentAnswer:
    """The result of a ``subagent`` process: the child session's id, its final answer (cut at
    the payload's ``max_answer_chars``: ``truncated``; the whole answer stays in the child
    session), and the task."""

    session_id: str
    answer: str
    task: str
    truncated: bool = False


def _child_id(parent_id: str, process_id: str) -> str | None:
    """The child's id: ``<parent>/<process id>`` (one child per process, traceable from either
    side); ``None`` (a generated id) when that is too long for a session id."""
    # Imported here: loading the plugin (`lash plugins`) must not load the store's modules.
    from lash.store import MAX_SESSION_ID_LENGTH

    candidate = f"{parent_id}/{process_id}"
    return candidate if len(candidate) <= MAX_SESSION_ID_LENGTH else None


async def run_subagent(context: lash.ProcessContext, payload: SubagentTask) -> SubagentAnswer:
    """Run ``payload.task`` as one turn of a new child session of the process's session."""
    # (context.child refuses a process started without a session, naming it)
    child_id = None if context.session_id is None else _child_id(context.session_id, context.id)
    async with context.child(id=child_id, tools=payload.tools) as child:
        result = await child.turn(payload.task).run()
    if result.outcome != "completed":
        why = result.error or result.reason or "no reason given"
        raise lash.ProcessError(
            f"the sub-agent's turn in session {child.id!r} {result.outcome}: {why}",
            process_id=context.id,
            kind=KIND,
        )
    answer, truncated = result.text, len(result.text) > payload.max_answer_chars
    if truncated:
        answer = answer[: payload.max_answer_chars]
    return SubagentAnswer(child.id, answer, payload.task, truncated)


@lash.hookimpl
def register_process_kinds(register: lash.RegisterProcessKind) -> None:
    # Owner-bound: a sub-agent that died mid-turn is not run again behind the model's back
    # (its model calls would be paid twice); the parent reads that it was abandoned.
    register(KIND, run_subagent, recovery=lash.RecoveryDisposition.OWNER_BOUND)


@lash.hookimpl
def register_tools(register: lash.RegisterTool) -> None:
    async def subagent(task: str, context: lash.ToolContext, tools: list[str] | None = None) -> str:
        """Hand a self-contained task to a sub-agent that works on it in the background.

        You get its answer later, in a new message: do not wait for it, end your turn. The
        task must say everything the sub-agent needs (it does not see this conversation).
        `tools` narrows the tools it may use (default: all it is allowed).
        """
        if not task.strip():
            raise ValueError("the task is empty: say what the sub-agent should do")
        options = context.session.options(SubagentOptions)
        allowed = list(options.tools)
        chosen = allowed if tools is None else list(tools)
        refused = [name for name in chosen if name not in allowed]
        if refused:
            may = ", ".join(allowed) or "none"
            raise ValueError(f"a sub-agent may not use {refused}; it may use: {may}")
        record = await context.processes.start(
            KIND,
            SubagentTask(task, chosen, options.max_answer_chars),
            # A replayed call (same session, same call id) starts nothing new.
            key=f"{context.session.id}:subagent:{context.call_id}",
        )
        return (
            f"Sub-agent started (process {record.id}); its answer will arrive in a later "
            "message. End your turn now."
        )

    register(subagent)


@lash.hookimpl
def render_process_result(process: lash.ProcessRecord) -> str | None:
    if process.kind != KIND:
        return None  # another plugin's process
    payload = process.payload if isinstance(process.payload, dict) else {}
    task = str(payload.get("task", ""))
    if len(task) > 200:
        task = task[:200] + " [...]"
    if process.status != "succeeded" or not isinstance(process.result, dict):
        return (
            f"The sub-agent (process {process.id}) for the task {task!r} did not answer "
            f"({process.status}): {process.error or 'no reason given'}"
        )
    result = process.result
    answer = str(result.get("answer", ""))
    if result.get("truncated"):
        answer += f"\n[... cut: the whole answer is in session {result.get('session_id')}]"
    return (
        f"The sub-agent (session {result.get('session_id')}, process {process.id}) answered "
        f"the task {task!r}:\n\n{answer}"
    )
