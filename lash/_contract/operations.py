"""Plugin operations as plugins and hosts see them: :class:`OperationContext` (what an
operation receives), :class:`OperationInfo` (what a host discovers), and the registrar of
``register_operations``.

An operation is a named, typed entry point a plugin offers hosts (a web app, a CLI, another
service): ``core.operations.call(name, args, session_id=...)``. Its ``kind`` says what it may
do: a ``query`` reads (its session view refuses changes), a ``command`` changes a session (its
changes and the input it queues commit atomically, under the session's lease), a ``task`` runs
long, as a process (the call returns its record at once; a worker runs it). Its ``session``
rule says whether a session id is ``required``, ``optional`` or ``forbidden``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol

import attrs

from lash._contract.annotations import resolve_here

if TYPE_CHECKING:
    from lash._contract.services import SessionView

__all__ = [
    "OPERATION_KINDS",
    "SESSION_RULES",
    "TASK_KIND_PREFIX",
    "OperationContext",
    "OperationInfo",
    "OperationKind",
    "RegisterOperation",
    "SessionRule",
]

#: ``query``: reads only; ``command``: changes a session (may queue a turn's input); ``task``:
#: runs long, as a process of the implicit kind ``operation:<name>``.
OperationKind = Literal["query", "command", "task"]
OPERATION_KINDS: tuple[str, ...] = ("query", "command", "task")

#: The process kind a ``task`` operation runs as: ``operation:<name>``.
TASK_KIND_PREFIX = "operation:"

#: Whether a call names a session: ``required``, ``optional`` or ``forbidden``.
SessionRule = Literal["required", "optional", "forbidden"]
SESSION_RULES: tuple[str, ...] = ("required", "optional", "forbidden")


@attrs.frozen
class OperationInfo:
    """What a host learns about one operation (``core.operations.list()``, ``lash plugins
    --json``): its name and plugin, kind, session rule, description, and the JSON schemas of
    its arguments and of its result."""

    name: str
    plugin: str
    kind: OperationKind
    session: SessionRule
    description: str = ""
    args_schema: Mapping[str, Any] = attrs.field(factory=dict)
    result_schema: Mapping[str, Any] = attrs.field(factory=dict)

    __module__ = "lash"


#: How a command queues input: ``(text, key, items, session_id)``.
Enqueue = Callable[[str, "str | None", "Sequence[Any]", "str | None"], Awaitable[None]]


@attrs.define
class OperationContext:
    """What an operation receives first: who it is (``plugin``, ``operation``, ``kind``), the
    session the call names (``session_id``, and ``session``, its :class:`lash.SessionView`, or
    ``None``), and, for a command, :meth:`enqueue`.

    A query's view reads the session as it is committed and refuses every change (what it does
    to a ``state(cls)`` object is never committed). A command's
    view belongs to an execution that holds the session's lease: what the command changes
    through it (plugin state, tool membership, ``record``, ``emit``) and the input it queues
    commit together when it returns, or not at all when it raises.
    """

    plugin: str
    operation: str
    kind: OperationKind
    session_id: str | None = None
    session: SessionView | None = None
    _enqueue: Enqueue | None = attrs.field(default=None, alias="enqueue", repr=False)

    async def enqueue(
        self,
        text: str,
        *,
        key: str | None = None,
        items: Sequence[Any] = (),
        session_id: str | None = None,
    ) -> None:
        """Queue input (a later turn) for the operation's session, in the command's commit, or
        for ``session_id`` (any session: queued at once, as :meth:`lash.LashCore.enqueue`).
        ``key`` makes it idempotent. Only commands may queue input.

        :raises OperationError: from a query, or with no session to queue for.
        """
        if self._enqueue is None:
            from lash.errors import OperationError

            raise OperationError(
                f"operation {self.operation!r} of plugin {self.plugin!r} is a {self.kind}: "
                "only commands may queue input",
                operation=self.operation,
                plugin=self.plugin,
            )
        await self._enqueue(text, key, items, session_id)


class RegisterOperation(Protocol):
    """``register(name, fn, *, kind="query", session="optional", description=None,
    recovery=RecoveryDisposition.OWNER_BOUND, timeout=None)`` inside ``register_operations``
    (``recovery`` and ``timeout``: a task's process)."""

    def __call__(
        self,
        name: str,
        fn: Callable[..., Any],
        /,
        *,
        kind: OperationKind = "query",
        session: SessionRule = "optional",
        description: str | None = None,
        recovery: Any = None,
        timeout: float | None = None,
    ) -> None: ...


# Protocol classes cannot set __module__ in their body (it would become a protocol member).
RegisterOperation.__module__ = "lash"
OperationContext.__module__ = "lash"

resolve_here(globals())
