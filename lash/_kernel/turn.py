"""One turn: input → model → tools → model … → answer, committed once.

The kernel owns the turn's bookkeeping (nodes, usage, hooks, the commit); the protocol plugin owns
the loop, through the :class:`TurnDriver` it is handed. A turn always commits exactly once, whatever
its outcome; only a crash of the process commits nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import attrs

from lash._contract.annotations import resolve_here
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
from lash._contract.types import (
    AbortToolCall,
    AbortTurn,
    EnqueueMessages,
    ReplaceToolArguments,
    ShortCircuitToolCall,
    ToolCall,
    ToolResult,
    Usage,
)
from lash._plugins.dispatch import call_impl
from lash._tools.arguments import admit_tool_call, invalid_arguments_result
from lash.errors import LashError

if TYPE_CHECKING:
    from lash._kernel.session import Session


def _describe(exc: BaseException) -> str:
    # Lash errors carry readable messages; anything else (a protocol plugin's bug) gets its type.
    return str(exc) if isinstance(exc, LashError) else f"{type(exc).__name__}: {exc}"


class _Stop(Exception):
    """Raised inside the driver to end the turn as ``stopped``."""

    def __init__(self, reason: StopReason, detail: str | None = None) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(reason)


@attrs.define
class TurnInfo:
    """The view of a turn that ``before_turn``/``after_turn``/``turn_finalized`` receive."""

    session: Session
    input: str
    index: int
    result: TurnResult | None = None

    __module__ = "lash"


class TurnDriver:
    """What a protocol plugin drives a turn with.

    ``await call_model()`` makes one model call over the current context and records the
    assistant message; ``await run_tool_calls(calls)`` runs the calls of one assistant message
    concurrently and records their results in emission order; ``finish(text)`` ends the turn
    completed; ``stop(reason)`` ends it stopped. ``options`` are the session's protocol options.
    """

    __module__ = "lash"

    def __init__(self, turn: Turn) -> None:
        self._turn = turn

    @property
    def session(self) -> Session:
        """The session the turn runs in."""
        return self._turn.session

    @property
    def options(self) -> dict[str, Any]:
        """The session's protocol options (a copy), as set in ``materialize_session``."""
        return dict(self._turn.session.protocol_options)

    async def call_model(self) -> ModelResponse:
        """Call the model once over the current context; stream its text as events; record the
        assistant message (with its tool calls and usage) and return the whole response."""
        return await self._turn._call_model()

    async def run_tool_calls(self, calls: Sequence[ToolCall]) -> list[ToolResult]:
        """Run the calls of one assistant message concurrently, through the tool-call hooks;
        record calls and results in emission order and return the (full) results."""
        return await self._turn._run_tool_calls(calls)

    def finish(self, text: str) -> None:
        """Set the turn's final answer (the outcome is ``completed`` when the protocol returns)."""
        self._turn._final_text = text

    def stop(self, reason: StopReason, detail: str | None = None) -> NoReturn:
        """End the turn now with outcome ``stopped(reason)`` (raises; does not return)."""
        raise _Stop(reason, detail)


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

    def __init__(self, session: Session, text: str, *, items: tuple[Any, ...] = ()) -> None:
        self.session = session
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
        self._task: asyncio.Task[None] | None = None
        self._started = False
        self.index = 0

    # -- host side -------------------------------------------------------------------------

    async def run(self) -> TurnResult:
        """Run the turn to its end and return the result (events are discarded)."""
        async for event in self.stream():
            if isinstance(event, TurnFinished):
                return event.result
        raise AssertionError("turn stream ended without TurnFinished")  # kernel bug

    async def stream(self) -> AsyncIterator[TurnEvent]:
        """Run the turn, yielding events as they happen; the last is :class:`TurnFinished`."""
        if self._started:
            raise RuntimeError("a turn runs once; call session.turn(...) again for another")
        self._started = True
        async with self.session._exclusive():
            self.session._running.add(self)
            keeper = asyncio.create_task(self.session._keep_lease())
            try:
                runner = asyncio.create_task(self._drive())
                try:
                    while True:
                        event = await self._events.get()
                        if event is None:
                            break
                        yield event
                finally:
                    if not runner.done():
                        # The consumer stopped listening: cancel cooperatively, still commit.
                        self.cancel()
                    await runner
            finally:
                self.session._running.discard(self)
                keeper.cancel()
                # A failed renewal surfaces at commit (LeaseLost); here it only needs reaping.
                with contextlib.suppress(asyncio.CancelledError, LashError):
                    await keeper

    def cancel(self) -> None:
        """Ask the turn to stop; it still commits, as ``stopped(cancelled)``."""
        self._cancel_requested = True
        for event in self._call_events:
            event.set()
        if self._task is not None and not self._task.done():
            self._task.cancel()

    # -- kernel side -----------------------------------------------------------------------

    def _emit(self, event: TurnEvent) -> None:
        self._events.put_nowait(event)

    def _append(self, node: GraphNode) -> None:
        self._nodes.append(node)
        self.session._graph.append(node)

    def _new_node(self, cls: type[Any], **fields: Any) -> Any:
        graph = self.session._graph
        leaf = graph.leaf
        return cls(
            id=new_node_id(),
            parent_id=leaf.id if leaf is not None else None,
            frame_id=graph.frame_id or "",
            turn=self.index,
            **fields,
        )

    async def _drive(self) -> None:
        try:
            await self._drive_turn()
        finally:
            # Always end the event stream, even when the commit raised (LeaseLost, a store
            # error...): stream() then re-raises that error from `await runner`.
            self._events.put_nowait(None)

    async def _drive_turn(self) -> None:
        session = self.session
        core = session.core
        hooks = core.hooks
        self.index = session._turns + 1
        info = TurnInfo(session=session, input=self.input, index=self.index)
        # Queued session commands (refresh_tool_catalog, reset) apply first, in this commit.
        command_nodes = session._run_commands()
        for node in command_nodes:
            self._append(node)
        session._ensure_frame(self)
        self._append(self._new_node(UserMessage, text=self.input, items=self.items))
        reason: StopReason | None = None
        detail: str | None = None
        failure: Exception | None = None
        try:
            for _plugin, directive in await hooks.collect("before_turn", turn=info):
                stop = self._apply_directive(directive)
                if stop is not None and reason is None:
                    reason, detail = "plugin_abort", stop
            if reason is None:
                self._task = asyncio.create_task(self._run_protocol())
                if self._cancel_requested:
                    self._task.cancel()
                await self._task
        except _Stop as stop_exc:
            reason, detail = stop_exc.reason, stop_exc.detail
        except asyncio.CancelledError:
            if not self._cancel_requested:
                raise  # the host cancelled the task driving us: propagate
            reason = "cancelled"
        except Exception as exc:  # provider, plugin or protocol failure: the turn fails, the
            failure = exc  # session lives on
        error = _describe(failure) if failure is not None else None
        self._close_dangling_calls(error or detail or reason or "turn ended")
        result = self._result_of(reason, detail, failure)
        info.result = result
        # after_turn sees every outcome, failed turns included (it may want to log or enqueue).
        try:
            for _plugin, directive in await hooks.collect("after_turn", turn=info):
                stop = self._apply_directive(directive)
                if stop is not None and result.outcome == "completed":
                    result = attrs.evolve(
                        result, outcome="stopped", reason="plugin_abort", detail=stop
                    )
        except LashError as exc:
            if result.outcome == "failed":
                hooks.report(exc)  # the first failure is the turn's error; report this one
            else:
                result = self._result_of(None, None, exc)
        info.result = result
        await hooks.broadcast("turn_finalized", turn=info)
        revision = await session._commit_turn(self._nodes, self._usage)
        result = attrs.evolve(result, revision=revision)
        info.result = result
        await session._frames_opened(command_nodes)
        await hooks.broadcast("turn_persisted", turn=info, revision=revision)
        await session._maybe_auto_compact(self._nodes)
        self._emit(TurnFinished(result))

    async def _run_protocol(self) -> None:
        await self.session.core._protocol.run(TurnDriver(self))

    def _apply_directive(self, directive: Any) -> str | None:
        if isinstance(directive, AbortTurn):
            return directive.reason
        if isinstance(directive, EnqueueMessages):
            self.session._pending.extend(directive.messages)
            self.session._pending_dirty = True
        return None

    def _result_of(
        self, reason: StopReason | None, detail: str | None, failure: Exception | None
    ) -> TurnResult:
        result = TurnResult(
            session_id=self.session.id,
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

    # -- model calls -----------------------------------------------------------------------

    async def _call_model(self) -> ModelResponse:
        session = self.session
        core = session.core
        view = await session.prompt_preview()
        tools = tuple(core._tool_spec(name) for name in view.tools if core._has_tool(name))
        provider_name, provider, model = session._provider()
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

    # -- tool calls ------------------------------------------------------------------------

    async def _run_tool_calls(self, calls: Sequence[ToolCall]) -> list[ToolResult]:
        for call in calls:
            plugin = self.session.core._tool_plugin(call.name)
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

    async def _run_one(self, call: ToolCall) -> tuple[ToolCall, ToolResult]:
        session = self.session
        core = session.core
        context = session._tool_context(call.id, self)
        try:
            for impl in core.hooks.impls("before_tool_call"):
                directive = await call_impl("before_tool_call", impl, call=call, context=context)
                if isinstance(directive, ReplaceToolArguments):
                    call = attrs.evolve(call, arguments=dict(directive.arguments))
                elif isinstance(directive, ShortCircuitToolCall):
                    return call, ToolResult(call.id, directive.content, directive.is_error)
                elif isinstance(directive, AbortToolCall):
                    return call, ToolResult(
                        call.id,
                        f"tool call {call.name!r} refused by plugin {impl.plugin!r}: "
                        f"{directive.reason}",
                        True,
                    )
        except LashError as exc:
            return call, ToolResult(call.id, str(exc), True)
        result = await self._invoke(call, context)
        try:
            for impl in core.hooks.impls("after_tool_call"):
                replaced = await call_impl(
                    "after_tool_call", impl, call=call, result=result, context=context
                )
                if isinstance(replaced, ToolResult):
                    result = attrs.evolve(replaced, call_id=call.id)
        except LashError as exc:
            result = ToolResult(call.id, str(exc), True)
        return call, result

    async def _invoke(self, call: ToolCall, context: Any) -> ToolResult:
        core = self.session.core
        if call.invalid_arguments is not None:
            return invalid_arguments_result(call)
        if call.name not in self.session._last_catalog or not core._has_tool(call.name):
            available = ", ".join(sorted(self.session._last_catalog)) or "none"
            return ToolResult(
                call.id, f"unknown tool {call.name!r}; available tools: {available}", True
            )
        result: ToolResult = await core._tool(call.name).invoke(call.arguments, context)
        return attrs.evolve(result, call_id=call.id)

    async def _project(self, call: ToolCall, result: ToolResult) -> str | None:
        hooks = self.session.core.hooks
        impl = hooks.exclusive_impl("project_tool_result")
        if impl is None:
            return None
        try:
            value = await call_impl(
                "project_tool_result", impl, session=self.session, call=call, result=result
            )
        except LashError as exc:
            hooks.report(exc)  # documented: the model sees the unprojected result
            return None
        return value if isinstance(value, str) and value != result.content else None


resolve_here(globals())
