"""Executions: one session operation at a time, and the commit of what changed.

An :class:`Execution` is one operation holding a session: a turn, or a change that commits
(``configure``, ``compact``, a tool-membership change, a command...), or an open. While it runs,
plugins change the session through their :class:`lash.SessionView` (nodes recorded, usage of
direct completions, catalog membership, plugin state); the session runtime keeps those changes
as *pending* until the next commit takes all of them, atomically, with the operation's own. An
operation may commit more than once (a turn, then the compaction its ``Compact`` directive asked
for); what is still pending when it ends is committed then (an open is the exception: opening
writes nothing, so changes made while opening wait for the session's next commit).

:data:`EXECUTION` says which execution the running code belongs to. Session services use it to
join the running operation instead of waiting for the session (which would wait for themselves),
and the host API uses it to refuse a re-entrant operation with an error instead of a deadlock.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lash._kernel.runtime import SessionRuntime


class Execution:
    """One operation holding a session (see the module docstring)."""

    __slots__ = ("done", "name", "runtime", "turn")

    def __init__(self, runtime: SessionRuntime, name: str, *, turn: int | None = None) -> None:
        self.runtime = runtime
        #: What the operation is (``"turn"``, ``"configure"``...), for error messages.
        self.name = name
        #: The index of the turn this execution runs (``None``: not a turn).
        self.turn = turn
        self.done = False


#: The execution the running code belongs to (inherited by the tasks it starts).
EXECUTION: contextvars.ContextVar[Execution | None] = contextvars.ContextVar(
    "lash_execution", default=None
)


async def through_cancellation(commit: Coroutine[Any, Any, int]) -> tuple[int, bool]:
    """Await a store's commit to its end, even when the caller is cancelled meanwhile; return
    the revision and whether a cancellation arrived.

    A commit on its way may be durable already (SQLite runs what it was sent), and the
    session's memory must say what the store holds. So a cancellation that arrives during the
    commit waits for it: if the commit failed, the cancellation is raised at once (nothing was
    committed; the caller drops its changes); if it succeeded, the caller records the commit
    and the operation raises the cancellation when it ends (:meth:`SessionRuntime.execute`).
    """
    task = asyncio.ensure_future(commit)
    cancelled = False
    while not task.done():
        try:
            await asyncio.wait((task,))  # cancelled, it leaves the task running
        except asyncio.CancelledError:
            cancelled = True
    if cancelled and (task.cancelled() or task.exception() is not None):
        raise asyncio.CancelledError  # the caller's: the commit failed, nothing was committed
    return task.result(), cancelled
