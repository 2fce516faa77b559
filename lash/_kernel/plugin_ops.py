"""``core.operations``: the operations plugins register (``register_operations``), found and
called by hosts.

A call checks the operation's session rule and arguments first (nothing runs when they do not
fit), then runs it with a :class:`lash.OperationContext`:

- a **query** gets a read-only view of the session as it is committed (the session is opened,
  which takes no lease and writes nothing; every change through the view is refused);
- a **command** runs as one execution of the session (:meth:`SessionRuntime.execute`): it holds
  the session's lease, and what it changes through its view, with the input it queues, is
  committed atomically when it returns (nothing, when it raises);
- a **task** is started as a process of its implicit kind ``operation:<name>`` (its args are
  the payload) and the call returns the process's record: a worker runs it.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, Protocol, TypeVar

import attrs

from lash._contract.calls import CALLER, Caller
from lash._contract.operations import TASK_KIND_PREFIX, OperationContext, OperationInfo
from lash._contract.services import SessionView
from lash._kernel.mailbox import checked_input
from lash.errors import LashError, OperationError, SessionError, UnknownSession

if TYPE_CHECKING:
    from lash._contract.graph import GraphNode, PluginNode
    from lash._contract.providers import ModelResponse
    from lash._contract.turn_types import Message, ProcessRecord, SessionConfig, ToolCatalogEntry
    from lash._kernel.processes import Processes
    from lash._kernel.runtime import SessionRuntime
    from lash._kernel.session import Session
    from lash._plugins.registry import Registry
    from lash._store.protocol import Store
    from lash._store.records import PendingInput
    from lash._tools.operation import Operation

T = TypeVar("T")

__all__ = ["Operations"]


class _Host(Protocol):
    """What ``core.operations`` needs of its core (a :class:`lash.LashCore`)."""

    @property
    def registry(self) -> Registry: ...

    def session(self, session_id: str) -> Session: ...

    @property
    def store(self) -> Store: ...

    @property
    def processes(self) -> Processes: ...

    async def enqueue(
        self, session_id: str, input: str, *, key: str | None, items: Sequence[Any], source: str
    ) -> PendingInput: ...


class _ReadOnly:
    """The backend of a query's :class:`lash.SessionView`: reads forward to the session,
    changes are refused (a query must not change what it reads)."""

    def __init__(self, runtime: SessionRuntime, op: Operation) -> None:
        self._runtime = runtime
        self._op = op

    def _refuse(self, what: str) -> NoReturn:
        raise SessionError(
            f"session {self._runtime.id!r}: operation {self._op.name!r} of plugin "
            f"{self._op.plugin!r} is a query: it cannot {what} (register it as a command)",
            session_id=self._runtime.id,
        )

    @property
    def id(self) -> str:
        return self._runtime.id

    @property
    def is_root(self) -> bool:
        return self._runtime.is_root

    @property
    def config(self) -> SessionConfig:
        return self._runtime.config

    @property
    def revision(self) -> int:
        return self._runtime.revision

    @property
    def turns(self) -> int:
        return self._runtime.turns

    def active_nodes(self) -> Sequence[GraphNode]:
        return self._runtime.active_nodes()

    def options_of(self, cls: type[T]) -> T:
        return self._runtime.options_of(cls)

    def state_of(self, cls: type[T]) -> T:
        return self._runtime.state_of(cls)

    def catalog(self) -> tuple[ToolCatalogEntry, ...]:
        return self._runtime.catalog()

    def usage_report(self) -> dict[str, Any]:
        return self._runtime.usage_report()

    async def set_tool_membership(self, changes: Mapping[str, bool]) -> int:
        self._refuse("change tool membership")

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        source: str,
        model: str | None,
        options: Mapping[str, Any] | None,
    ) -> ModelResponse:
        self._refuse("call the model (its usage would be committed)")

    async def record(self, kind: str, data: Any) -> PluginNode:
        self._refuse("record nodes")

    async def emit(self, type: str, data: Any) -> None:
        self._refuse("emit events")

    def child(self, **_: Any) -> Any:
        self._refuse("create child sessions")


class Operations:
    """The operations of one core (``core.operations``): list them, describe them, call them."""

    __module__ = "lash"

    def __init__(self, core: _Host) -> None:
        self._core = core

    def _table(self) -> dict[str, Operation]:
        return {
            name: contribution.value
            for name, contribution in self._core.registry.of("operation").items()
        }

    def list(self) -> list[OperationInfo]:
        """Every operation, sorted by name, with its kind, session rule and JSON schemas."""
        return [op.info() for _, op in sorted(self._table().items())]

    def info(self, name: str) -> OperationInfo:
        """One operation's description. :raises OperationError: for an unknown name."""
        return self._find(name).info()

    def _find(self, name: str) -> Operation:
        table = self._table()
        op = table.get(name)
        if op is None:
            raise OperationError(
                f"unknown operation {name!r}; known: {', '.join(sorted(table)) or 'none'} "
                "(plugins register operations with register_operations)",
                operation=name,
            )
        return op

    async def call(
        self,
        name: str,
        args: Any = None,
        *,
        session_id: str | None = None,
        key: str | None = None,
    ) -> Any:
        """Call operation ``name`` with ``args`` (a JSON object, or an instance of its args
        class) on session ``session_id`` (per its session rule); return its result. A task
        returns its process's record at once (``pending``: a worker runs it; ``await
        core.processes.wait(record.id)`` for its end); ``key`` makes starting it idempotent.

        :raises OperationError: an unknown operation, a session id against its rule, arguments
            that do not fit its args class (naming each field), or the operation failed (its
            exception is the ``__cause__``); each names the plugin and the operation.
        :raises UnknownSession: the session named does not exist.
        :raises SessionBusy: a command waited too long for the session's lease.
        """
        op = self._find(name)
        if op.session == "required" and session_id is None:
            raise op._error("needs a session: pass session_id=...")
        if op.session == "forbidden" and session_id is not None:
            raise op._error(f"takes no session, got session_id={session_id!r}")
        bound = op.bind(args)
        if op.kind == "task":
            return await self._start(op, bound, session_id, key)
        if key is not None:
            raise op._error("is not a task: key= is for starting tasks idempotently")
        if session_id is None:
            context = OperationContext(
                op.plugin,
                op.name,
                op.kind,
                enqueue=self._direct(op) if op.kind == "command" else None,
            )
            return await self._run(op, context, bound)
        session = await self._core.session(session_id).open(must_exist=True)
        runtime = session._runtime
        try:
            if op.kind == "query":
                view = SessionView(_ReadOnly(runtime, op))
                context = OperationContext(op.plugin, op.name, op.kind, session_id, view)
                return await self._run(op, context, bound)
            async with runtime.execute(f"operation {op.name!r}"):
                enqueue = self._in_commit(op, runtime)
                context = OperationContext(
                    op.plugin, op.name, op.kind, session_id, runtime.view, enqueue=enqueue
                )
                return await self._run(op, context, bound)
        finally:
            if op.kind == "query":
                runtime.opened = False  # a query commits nothing, not even at close
            else:
                await session.close()

    async def _start(
        self, op: Operation, bound: Any, session_id: str | None, key: str | None
    ) -> ProcessRecord:
        """Start a task: a process of its implicit kind, with its args as the payload."""
        if session_id is not None and await self._core.store.load(session_id) is None:
            raise UnknownSession(session_id)
        return await self._core.processes.start(
            f"{TASK_KIND_PREFIX}{op.name}",
            bound,
            session_id=session_id,
            key=key,
            source=f"operation:{op.name}",
        )

    async def _run(self, op: Operation, context: OperationContext, bound: Any) -> Any:
        token = CALLER.set(Caller(f"operation {op.name!r}", op.plugin))
        try:
            value = op.fn(context) if op.args_type is None else op.fn(context, bound)
            if inspect.isawaitable(value):
                value = await value
        except LashError as exc:
            if isinstance(exc, OperationError) and exc.plugin is not None:
                raise
            raise self._failed(op, exc) from exc
        except Exception as exc:
            raise self._failed(op, exc) from exc
        finally:
            CALLER.reset(token)
        return op.check_result(value)

    @staticmethod
    def _failed(op: Operation, exc: BaseException) -> OperationError:
        return OperationError(
            f"operation {op.name!r} of plugin {op.plugin!r} failed: {type(exc).__name__}: {exc}",
            operation=op.name,
            plugin=op.plugin,
            session_id=getattr(exc, "session_id", None),
        )

    def _direct(self, op: Operation) -> Any:
        """How a command without a session queues input: for a session it names, at once."""

        async def enqueue(
            text: str, key: str | None, items: Sequence[Any], session_id: str | None
        ) -> None:
            if session_id is None:
                raise op._error("has no session to queue input for: pass session_id=")
            await self._core.enqueue(
                session_id, text, key=key, items=items, source=f"operation:{op.name}"
            )

        return enqueue

    def _in_commit(self, op: Operation, runtime: SessionRuntime) -> Any:
        """How a command with a session queues input: for its session, in its commit."""
        direct = self._direct(op)

        async def enqueue(
            text: str, key: str | None, items: Sequence[Any], session_id: str | None
        ) -> None:
            if session_id is not None and session_id != runtime.id:
                await direct(text, key, items, session_id)
                return
            draft = checked_input(runtime.id, text, items=items, key=key, ingress="next_turn")
            runtime.pending_enqueue.append(attrs.evolve(draft, source=f"operation:{op.name}"))

        return enqueue
