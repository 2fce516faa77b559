"""One turn: input → model → tools → model … → answer, committed once.

The kernel owns the turn's bookkeeping (nodes, usage, hooks, the commit); the protocol plugin owns
the loop, through the :class:`lash.TurnDriver` it is handed. A turn always commits exactly once,
whatever its outcome; only a crash of the process commits nothing.

A turn runs in phases, each of which :meth:`Turn.cancel` interrupts wherever it is waiting (a
protocol's model call, a tool, a hung ``async`` hook):

1. **work**: queued commands, ``before_turn``, the protocol. Interrupted, the turn ends
   ``stopped(cancelled)``.
2. **finish**: ``after_turn`` and ``turn_finalized``. Interrupted, the rest of the phase is
   skipped and a turn that had completed ends ``stopped(cancelled)``.
3. **commit**: never interrupted (a commit on its way may already be durable).
4. **after the commit**: ``frame_opened``, ``turn_persisted``, the compaction a ``Compact``
   directive asked for, and the commit of what those changed. Interrupted, the rest is skipped;
   the caller gets the committed result.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from lash._contract.annotations import resolve_here
from lash._contract.calls import CALLER, Caller
from lash._contract.events import (
    StopReason,
    TextDeltaEvent,
    ToolCallFinished,
    ToolCallRecord,
    ToolCallStarted,
    TurnEvent,
    TurnFinished,
    TurnResult,
)
from lash._contract.graph import (
    AssistantMessage,
    FrameBoundary,
    GraphNode,
    ToolCallNode,
    ToolResultNode,
    UserMessage,
    new_node_id,
)
from lash._contract.providers import (
    ModelDone,
    ModelRequest,
    ModelResponse,
    TextDelta,
    ToolCallReady,
)
from lash._contract.services import ToolContext, TurnDriver, TurnStopped, TurnView
from lash._contract.types import (
    AbortToolCall,
    AbortTurn,
    Compact,
    EnqueueMessages,
    ReplaceToolArguments,
    ShortCircuitToolCall,
    ToolCall,
    ToolResult,
    Usage,
)
from lash._kernel import operations
from lash._kernel.prompt import prompt_view
from lash._tools.arguments import admit_tool_call, invalid_arguments_result
from lash.errors import LashError

if TYPE_CHECKING:
    from lash._kernel.runtime import SessionRuntime


def _describe(exc: BaseException) -> str:
    # Lash errors carry readable messages; anything else (a protocol plugin's bug) gets its type.
    return str(exc) if isinstance(exc, LashError) else f"{type(exc).__name__}: {exc}"


def _directives(value: Any) -> tuple[Any, ...]:
    # One directive, or a tuple of them: the dispatcher checked and normalized the result.
    return value if type(value) is tuple else (value,)


class Turn:
    """A turn of a session. ``await turn.run()`` returns a :class:`lash.TurnResult`;
    ``turn.stream()`` yields typed events ending with :class:`lash.TurnFinished`.

    Closing a stream early (``break`` inside ``async with contextlib.aclosing(turn.stream())``)
    cancels the turn, which still commits as ``stopped(cancelled)``. A stream abandoned without
    closing keeps the session's turn lock until it is garbage collected, so close it. Errors of
    the commit itself (:class:`lash.LeaseLost`, :class:`lash.RevisionConflict`, store errors)
    are raised from ``run()`` / ``stream()``.
    """

    __module__ = "lash"

    def __init__(self, runtime: SessionRuntime, text: str, *, items: tuple[Any, ...] = ()) -> None:
        self._runtime = runtime
        self.input = text
        self.items = items
        self._events: asyncio.Queue[TurnEvent | None] = asyncio.Queue()
        self._nodes: list[GraphNode] = []
        self._usage = Usage()
        self._records: list[ToolCallRecord] = []
        self._final_text = ""
        self._cancel_requested = False
        # Each tool call's cancellation event, set on cancel so tools (even abandoned sync ones)
        # can notice and stop.
        self._call_events: list[asyncio.Event] = []
        self._runner: asyncio.Task[None] | None = None
        # Whether the running phase may be interrupted, and whether it was.
        self._interruptible = False
        self._interrupted = False
        self._started = False
        self.index = 0

    @property
    def session_id(self) -> str:
        return self._runtime.id

    # -- host side -------------------------------------------------------------------------

    async def run(self) -> TurnResult:
        """Run the turn to its end and return the result (events are discarded)."""
        async with contextlib.aclosing(self.stream()) as events:
            async for event in events:
                if isinstance(event, TurnFinished):
                    return event.result
        raise AssertionError("turn stream ended without TurnFinished")  # kernel bug

    async def stream(self) -> AsyncGenerator[TurnEvent, None]:
        """Run the turn, yielding events as they happen; the last is :class:`TurnFinished`."""
        if self._started:
            raise RuntimeError("a turn runs once; call session.turn(...) again for another")
        self._started = True
        runtime = self._runtime
        async with runtime.execute("turn") as ex:
            self.index = ex.turn = runtime.image.turns + 1
            runtime.running.add(self)
            keeper = asyncio.create_task(runtime.keep_lease())
            try:
                self._runner = runner = asyncio.create_task(self._drive())
                try:
                    while True:
                        event = await self._events.get()
                        if event is None:
                            break
                        yield event
                finally:
                    # The consumer stopped listening (or was cancelled): cancel cooperatively,
                    # still commit. Each cancellation of the consumer interrupts the turn's
                    # current phase again, so a second one gets past a hung hook too.
                    while not runner.done():
                        self.cancel()
                        try:
                            await asyncio.wait((runner,))
                        except asyncio.CancelledError:
                            continue
                    runner.result()  # the commit's own error (LeaseLost...), if any
            finally:
                runtime.running.discard(self)
                keeper.cancel()
                # A failed renewal surfaces at commit (LeaseLost); here it only needs reaping.
                with contextlib.suppress(asyncio.CancelledError, LashError):
                    await keeper

    def cancel(self) -> None:
        """Ask the turn to stop: it still commits, as ``stopped(cancelled)`` (or, once it is
        committed, returns its result). Whatever the turn is waiting for is interrupted: the
        model, a tool, or a plugin's hook."""
        self._cancel_requested = True
        for event in self._call_events:
            event.set()
        runner = self._runner
        if runner is not None and not runner.done() and self._interruptible:
            if not self._interrupted:
                self._interrupted = True
                runner.cancel()

    # -- phases ----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _phase(self) -> AsyncIterator[list[bool]]:
        """An interruptible phase; the flag it yields says whether :meth:`cancel` interrupted
        it (the phase's body stops at the cancellation point and execution goes on after it)."""
        interrupted = [False]
        self._interruptible, self._interrupted = True, False
        try:
            yield interrupted
        except asyncio.CancelledError:
            if not self._interrupted:
                raise  # the host cancelled the task running the turn: propagate
            interrupted[0] = True
        finally:
            self._interruptible = False
        if self._interrupted:
            # Balance our runner.cancel() (asyncio.timeout and friends read the count). A body
            # that swallowed the CancelledError (plugin code catching it) still counts as
            # interrupted: the cancellation was asked for.
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            interrupted[0] = True

    async def _drive(self) -> None:
        try:
            await self._drive_turn()
        finally:
            # Always end the event stream, even when the commit raised (LeaseLost, a store
            # error...): stream() then re-raises that error from the runner.
            self._events.put_nowait(None)

    async def _drive_turn(self) -> None:
        runtime = self._runtime
        hooks = runtime.composition.hooks
        view = TurnView(runtime.view, self.input, self.index, items=self.items, nodes=self._nodes)
        reason: StopReason | None = None
        detail: str | None = None
        failure: Exception | None = None
        compact: Compact | None = None
        # Queued session commands (refresh_tool_catalog, reset) apply first, in this commit.
        command_nodes = operations.run_commands(runtime)
        for node in command_nodes:
            self._append(node)
        self._ensure_frame()
        self._append(self._new_node(UserMessage, text=self.input, items=self.items))

        async with self._phase() as stopped:
            try:
                for _plugin, value in await hooks.collect("before_turn", turn=view):
                    for directive in _directives(value):
                        compact = self._apply(directive, compact)
                        if isinstance(directive, AbortTurn) and reason is None:
                            reason, detail = "plugin_abort", directive.reason
                if reason is None and not self._cancel_requested:
                    _plugin_name, protocol = runtime.composition.protocol()
                    await protocol.run(TurnDriver(self, runtime.view))
            except TurnStopped as stop:
                reason, detail = stop.reason, stop.detail
            except Exception as exc:  # provider, plugin or protocol failure: the turn fails,
                failure = exc  # the session lives on
        if stopped[0] or (self._cancel_requested and reason is None and failure is None):
            reason, detail, failure = "cancelled", None, None

        error = _describe(failure) if failure is not None else None
        self._close_dangling_calls(error or detail or reason or "turn ended")
        result = self._result_of(reason, detail, failure)
        view.result = result
        async with self._phase() as stopped:
            # after_turn sees every outcome, failed turns included (it may log or enqueue).
            try:
                for _plugin, value in await hooks.collect("after_turn", turn=view):
                    for directive in _directives(value):
                        compact = self._apply(directive, compact)
                        if isinstance(directive, AbortTurn) and result.outcome == "completed":
                            result = attrs.evolve(
                                result,
                                outcome="stopped",
                                reason="plugin_abort",
                                detail=directive.reason,
                            )
            except LashError as exc:
                if result.outcome == "failed":
                    hooks.report(exc)  # the first failure is the turn's error; report this one
                else:
                    result = self._result_of(None, None, exc)
            view.result = result
            await hooks.broadcast("turn_finalized", turn=view)
        if stopped[0] and result.outcome == "completed":
            result = attrs.evolve(result, outcome="stopped", reason="cancelled", detail=None)
            view.result = result

        revision = await self._commit(result)
        result = attrs.evolve(result, revision=revision)
        view.result = result
        async with self._phase():
            await operations.frames_opened(runtime, command_nodes)
            await hooks.broadcast("turn_persisted", turn=view, revision=revision)
            if compact is not None:
                await operations.compact_after_turn(runtime, compact.instructions)
        self._emit(TurnFinished(result))

    async def _commit(self, result: TurnResult) -> int:
        runtime = self._runtime
        if self._usage != Usage():
            runtime.add_usage("turn", self._usage)
        return await runtime.commit(turns=1)

    def _apply(self, directive: Any, compact: Compact | None) -> Compact | None:
        """Apply a turn directive's side effect; returns the compaction asked for so far."""
        if isinstance(directive, EnqueueMessages):
            image = self._runtime.image
            image.pending.extend(directive.messages)
            image.pending_dirty = True
        elif isinstance(directive, Compact):
            return compact or directive
        return compact

    def _result_of(
        self, reason: StopReason | None, detail: str | None, failure: Exception | None
    ) -> TurnResult:
        result = TurnResult(
            session_id=self._runtime.id,
            index=self.index,
            outcome="completed",
            text=self._final_text,
            tool_calls=tuple(self._records),
            usage=self._usage,
        )
        if failure is not None:
            return attrs.evolve(
                result,
                outcome="failed",
                error=_describe(failure),
                error_plugin=getattr(failure, "plugin", None),
                error_hook=getattr(failure, "hook", None),
            )
        if reason is not None:
            return attrs.evolve(result, outcome="stopped", reason=reason, detail=detail)
        return result

    # -- nodes -----------------------------------------------------------------------------

    def _emit(self, event: TurnEvent) -> None:
        self._events.put_nowait(event)

    def _append(self, node: GraphNode) -> None:
        self._nodes.append(node)
        self._runtime.add_node(node)

    def _new_node(self, cls: type[Any], **fields: Any) -> Any:
        graph = self._runtime.image.graph
        leaf = graph.leaf
        return cls(
            id=new_node_id(),
            parent_id=leaf.id if leaf is not None else None,
            frame_id=graph.frame_id or "",
            turn=self.index,
            **fields,
        )

    def _ensure_frame(self) -> None:
        if self._runtime.image.graph.frame_id is None:
            import uuid

            self._append(
                FrameBoundary(
                    id=new_node_id(),
                    parent_id=None,
                    frame_id=uuid.uuid4().hex,
                    turn=self.index,
                    previous_frame_id=None,
                    reason="root",
                )
            )

    def _close_dangling_calls(self, why: str) -> None:
        # A stopped or failed turn must not leave a tool call without its result: the pair would
        # be split in history and providers reject a prompt with an unanswered tool call.
        answered = {n.call_id for n in self._nodes if isinstance(n, ToolResultNode)}
        started = {n.call.id for n in self._nodes if isinstance(n, ToolCallNode)}
        for node in list(self._nodes):
            if not isinstance(node, AssistantMessage):
                continue
            for call in node.tool_calls:
                if call.id in answered:
                    continue
                if call.id not in started:
                    self._append(self._new_node(ToolCallNode, call=call, plugin=None))
                result = ToolResult(call.id, f"tool call not completed: {why}", True)
                self._records.append(ToolCallRecord(call, result))
                self._append(
                    self._new_node(
                        ToolResultNode,
                        call_id=call.id,
                        name=call.name,
                        content=result.content,
                        is_error=True,
                    )
                )

    # -- the turn driver's backend (what lash.TurnDriver forwards to) ------------------------

    def finish(self, text: str) -> None:
        self._final_text = text

    async def call_model(self) -> ModelResponse:
        runtime = self._runtime
        composition = runtime.composition
        view = await prompt_view(runtime)
        tools = tuple(
            composition.tool_spec(name) for name in view.tools if composition.has_tool(name)
        )
        provider_name, provider, model = runtime.provider()
        request = ModelRequest(model=model, messages=view.messages, tools=tools)
        text: list[str] = []
        calls: list[ToolCall] = []
        usage = Usage()
        finish = "stop"
        async for event in provider.stream(request):
            if isinstance(event, TextDelta):
                text.append(event.text)
                self._emit(TextDeltaEvent(event.text))
            elif isinstance(event, ToolCallReady):
                calls.append(admit_tool_call(event.call))  # arguments nested too deep: refused
            elif isinstance(event, ModelDone):
                usage = usage + event.usage
                finish = event.finish_reason
        response = ModelResponse("".join(text), tuple(calls), usage, finish)
        self._usage = self._usage + usage
        self._append(
            self._new_node(
                AssistantMessage,
                text=response.text,
                tool_calls=response.tool_calls,
                usage=usage,
                model=f"{provider_name}:{model}",
            )
        )
        if not response.tool_calls:
            self._final_text = response.text
        return response

    async def run_tool_calls(self, calls: Sequence[ToolCall]) -> list[ToolResult]:
        composition = self._runtime.composition
        for call in calls:
            plugin = composition.tool_plugin(call.name)
            self._append(self._new_node(ToolCallNode, call=call, plugin=plugin))
            self._emit(ToolCallStarted(call))
        if len(calls) == 1:
            results = [await self._run_one(calls[0])]  # no tasks for the common single call
        else:
            results = await asyncio.gather(*(self._run_one(call) for call in calls))
        for call, (final_call, result) in zip(calls, results, strict=True):
            projected = await self._project(final_call, result)
            self._append(
                self._new_node(
                    ToolResultNode,
                    call_id=call.id,
                    name=call.name,
                    content=result.content,
                    is_error=result.is_error,
                    projected=projected,
                )
            )
            self._records.append(ToolCallRecord(final_call, result))
            self._emit(ToolCallFinished(final_call, result))
        return [r for _, r in results]

    def _tool_context(self, call_id: str) -> ToolContext:
        # One event per call: a tool timing out sets its own event, never its siblings'.
        cancelled = asyncio.Event()
        self._call_events.append(cancelled)
        if self._cancel_requested:
            cancelled.set()
        return ToolContext(self._runtime.view, call_id, cancelled=cancelled)

    async def _run_one(self, call: ToolCall) -> tuple[ToolCall, ToolResult]:
        hooks = self._runtime.composition.hooks
        context = self._tool_context(call.id)
        outcome: list[ToolResult] = []

        def before(plugin: str, directive: Any, kwargs: dict[str, Any]) -> bool:
            current: ToolCall = kwargs["call"]
            if isinstance(directive, ReplaceToolArguments):
                kwargs["call"] = attrs.evolve(current, arguments=dict(directive.arguments))
                return False
            if isinstance(directive, ShortCircuitToolCall):
                outcome.append(ToolResult(current.id, directive.content, directive.is_error))
            elif isinstance(directive, AbortToolCall):
                outcome.append(
                    ToolResult(
                        current.id,
                        f"tool call {current.name!r} refused by plugin {plugin!r}: "
                        f"{directive.reason}",
                        True,
                    )
                )
            return True

        try:
            folded = await hooks.fold("before_tool_call", before, call=call, context=context)
            call = folded["call"]
        except LashError as exc:
            return call, ToolResult(call.id, str(exc), True)
        if outcome:
            return call, outcome[0]
        result = await self._invoke(call, context)

        def after(plugin: str, replaced: Any, kwargs: dict[str, Any]) -> bool:
            kwargs["result"] = attrs.evolve(replaced, call_id=call.id)
            return False

        try:
            folded = await hooks.fold(
                "after_tool_call", after, call=call, result=result, context=context
            )
            result = folded["result"]
        except LashError as exc:
            result = ToolResult(call.id, str(exc), True)
        return call, result

    async def _invoke(self, call: ToolCall, context: ToolContext) -> ToolResult:
        composition = self._runtime.composition
        if call.invalid_arguments is not None:
            return invalid_arguments_result(call)
        offered = self._runtime.last_catalog
        if call.name not in offered or not composition.has_tool(call.name):
            available = ", ".join(sorted(offered)) or "none"
            return ToolResult(
                call.id, f"unknown tool {call.name!r}; available tools: {available}", True
            )
        token = CALLER.set(Caller(f"tool {call.name!r}", composition.tool_plugin(call.name)))
        try:
            result: ToolResult = await composition.tool(call.name).invoke(call.arguments, context)
        finally:
            CALLER.reset(token)
        return attrs.evolve(result, call_id=call.id)

    async def _project(self, call: ToolCall, result: ToolResult) -> str | None:
        hooks = self._runtime.composition.hooks
        try:
            answer = await hooks.exclusive(
                "project_tool_result", session=self._runtime.view, call=call, result=result
            )
        except LashError as exc:
            hooks.report(exc)  # documented: the model sees the unprojected result
            return None
        if answer is None:
            return None
        value: str = answer[1]
        return value if value != result.content else None


resolve_here(globals())
