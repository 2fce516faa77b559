"""One turn: input → model → tools → model … → answer, committed once.

The kernel owns the turn's bookkeeping (nodes, usage, hooks, the commit); the protocol plugin owns
the loop, through the :class:`lash.TurnDriver` it is handed. A turn always commits exactly once,
whatever its outcome (its last node, a :class:`lash.TurnOutcome`, says how it ended); only a crash
of the process commits nothing. A turn has an id (``session.turn(text, id=...)``, else a new
one): a turn id that is already committed in the session is not run again, its stored result is
returned.

A turn runs in phases, each of which :meth:`Turn.cancel` interrupts wherever it is waiting (for
the session's lease, a model call, a tool, a hung ``async`` hook):

0. **waiting** for the session (another execution holds its lease). Interrupted, the turn ends
   ``stopped(cancelled)`` at once, and nothing is committed: it never started.
1. **work**: queued commands, ``before_turn``, the protocol (with its checkpoints, where input
   queued for the running turn joins it). Interrupted, the turn ends ``stopped(cancelled)``.
2. **finish**: ``after_turn`` and ``turn_finalized``. Interrupted, the rest of the phase is
   skipped and a turn that had completed ends ``stopped(cancelled)``.
3. **commit**: never interrupted (a commit on its way may already be durable).
4. **after the commit**: ``frame_opened``, ``turn_persisted``, the compaction a ``Compact``
   directive asked for, and the commit of what those changed. Interrupted, the rest is skipped;
   the caller gets the committed result.

A cancellation asked for from another process (``core.cancel_turn``) is read from the store while
the turn runs (every ``control_poll`` seconds, and at checkpoints).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import uuid
from collections.abc import AsyncGenerator, Coroutine, Sequence, Set
from typing import TYPE_CHECKING, Any

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
    FrameBoundary,
    GraphNode,
    ToolCallNode,
    ToolResultNode,
    TurnOutcome,
    UserMessage,
    new_node_id,
)
from lash._contract.modeloptions import EMPTY as NO_MODEL_OPTIONS
from lash._contract.modeloptions import ModelOptions
from lash._contract.providers import (
    ModelDone,
    ModelRequest,
    ModelResponse,
    Provider,
    TextDelta,
    ToolCallReady,
    usage_counts,
)
from lash._contract.serialization import describe_value, from_data, to_data
from lash._contract.services import ToolContext, TurnDriver, TurnStopped, TurnView
from lash._contract.slots import evolver, maker
from lash._contract.turn_types import AbortTurn, Compact, EmitEvent, EnqueueMessages, StartProcess
from lash._contract.types import NO_USAGE, ToolCall, ToolResult
from lash._kernel import approvals, operations
from lash._kernel.event_json import (
    result_data,
    text_delta_data,
    tool_call_finished_data,
    tool_call_started_data,
    turn_end_data,
)
from lash._kernel.mailbox import checked_input
from lash._kernel.media import put_blobs, stage_items
from lash._kernel.output import NOT_CALLED, Output, answer_text, feedback
from lash._kernel.prompt import plain_prompt_view, prompt_view
from lash._kernel.state import AwaitingTurn
from lash._kernel.tool_calls import Hold, project, run_approved, run_tool_call
from lash._store.records import EventDraft, PendingInput, TurnRecord
from lash._tools.arguments import admit_tool_call
from lash.errors import (
    LashError,
    OutputInvalid,
    PluginError,
    ProcessError,
    ProviderError,
    SessionError,
)

if TYPE_CHECKING:
    from lash._kernel.runtime import SessionRuntime


def _describe(exc: BaseException) -> str:
    # Lash errors carry readable messages; anything else (a protocol plugin's bug) gets its type.
    return str(exc) if isinstance(exc, LashError) else f"{type(exc).__name__}: {exc}"


def _directives(value: Any) -> tuple[Any, ...]:
    # One directive, or a tuple of them: the dispatcher checked and normalized the result.
    return value if type(value) is tuple else (value,)


#: No images to store (read only).
_NO_IMAGES: Sequence[Any] = ()  # a turn without items: nothing to store (shared, immutable)


#: A model call's provider name, provider, model, the model's label, and options.
_CallPlan = tuple[str, Provider, str, str, ModelOptions]


def _check_call(provider: str, call: ToolCall) -> None:
    """Refuse a tool call whose id or name is not a string (a server's ``"name": null``, an
    int id): the session could not store it, and the turn would be lost at its commit. The
    model call fails instead, naming the provider, and the turn commits as failed."""
    if type(call.id) is str and type(call.name) is str:
        return
    for field in ("id", "name"):
        value = getattr(call, field)
        if type(value) is not str:
            raise ProviderError(
                f"provider {provider!r} reported a tool call with {field} {value!r} "
                f"({type(value).__name__}): a tool call's id and name are strings",
                provider=provider,
            )


#: The 48 bits of milliseconds a turn id holds (they run out in the year 10889).
_MS_MASK = (1 << 48) - 1


def new_turn_id() -> str:
    """``turn-``, the time in milliseconds (12 hex digits), then 64 random bits (16, as a node
    id: uuid4 costs 8x as much). The time first makes a session's turn ids mostly sort in the
    order they were made, so a store keyed by ``(session, turn id)`` appends a turn's record next
    to the session's latest one, a page it just wrote, instead of into a random page of all the
    session's records: those leave the page cache as the session grows, and a commit then
    reads one back (``sqlite://``, 8,000 turns: the record's ``INSERT`` ~21 µs against ~9).
    Only mostly: ids made in the same millisecond, or after the wall clock was set back, sort
    at random, which costs a store a page now and then, never a collision. The random part
    alone keeps ids apart, as before."""
    return f"turn-{(time.time_ns() // 1_000_000) & _MS_MASK:012x}{new_node_id()}"


class Turn:
    """A turn of a session. ``await turn.run()`` returns a :class:`lash.TurnResult`;
    ``turn.stream()`` yields typed events ending with :class:`lash.TurnFinished`.

    Closing a stream early (``break`` inside ``async with contextlib.aclosing(turn.stream())``)
    cancels the turn, which still commits as ``stopped(cancelled)``. A stream abandoned without
    closing keeps the session until it is garbage collected, so close it. Errors of the commit
    itself (:class:`lash.LeaseLost`, :class:`lash.RevisionConflict`, store errors) and
    :class:`lash.SessionBusy` (the session stayed busy longer than the wait) are raised from
    ``run()`` / ``stream()``.
    """

    __module__ = "lash"

    # What a new turn starts with and most turns keep: read from the class until the turn sets
    # its own (a turn is made for every input: a store per attribute was ~1 us of each).
    # The last model call's plan (_call_plan), with the config, tools and turn options it was
    # made for.
    _plan: tuple[Any, tuple[Any, ...], ModelOptions, _CallPlan] | None = None
    _output_value: Any = None  # the accepted value (structured output)
    _native_output = False  # the last call asked the provider for the schema itself
    #: The turn stopped for approval that this one continues (same id and index), if any.
    _resuming: AwaitingTurn | None = None
    #: The queued input this turn consumes (a drained turn), once claimed.
    source_input: PendingInput | None = None
    # The event stream's queue (None: run() discards events and keeps only the result).
    _events: asyncio.Queue[TurnEvent | None] | None = None
    _result: TurnResult | None = None
    _ended: asyncio.Future[None] | None = None
    _usage = NO_USAGE
    _final_text = ""
    _cancel_requested = False
    _cancel_origin: str | None = None
    _cancel_reason: str | None = None
    _runner: asyncio.Task[None] | None = None
    # Whether the running phase may be interrupted, and whether it was.
    _interruptible = False
    _interrupted = False
    _started = False
    _waiting = False
    _compact: Compact | None = None
    _view: TurnView | None = None
    # The observed model call's provider name, request and start, for model_call_finished.
    _request: tuple[str, ModelRequest, float] | None = None
    no_input = False  # a drained turn that found nothing to do
    index = 0

    def __init__(
        self,
        runtime: SessionRuntime,
        text: str,
        *,
        items: tuple[Any, ...] = (),
        turn_id: str | None = None,
        from_queue: bool = False,
        continuing: bool = False,
        model_options: ModelOptions | None = None,
        output: Output | None = None,
    ) -> None:
        self._runtime = runtime
        #: The turn's layer of model options (over the session's and the host's).
        self.model_options = model_options or NO_MODEL_OPTIONS
        # Structured output: what the answer must be.
        self._output = output
        #: The turn's id in its session.
        self.id = turn_id or new_turn_id()
        self._explicit_id = turn_id is not None
        self._from_queue = from_queue
        # Continue the turn that stopped for approval (when its calls are all answered) and
        # nothing else: what a new turn runs first (see _drive).
        self._continuing = continuing
        # The calls this turn holds for approval (it stops awaiting_approval).
        self._held: list[tuple[ToolCall, Hold]] = []
        self.input = text
        # Images become stored references now (a bad one fails session.turn(), naming it);
        # their bytes are put in the store when the turn runs.
        self._images: Sequence[Any]
        if items:
            self.items, self._images = stage_items(runtime.id, items)
        else:
            self.items, self._images = (), _NO_IMAGES
        self._nodes: list[GraphNode] = []
        self._records: list[ToolCallRecord] = []
        # Each tool call's cancellation event, set on cancel so tools (even abandoned sync ones)
        # can notice and stop.
        self._call_events: list[asyncio.Event] = []
        self._last_poll = time.monotonic()

    @property
    def session_id(self) -> str:
        return self._runtime.id

    # -- host side -------------------------------------------------------------------------

    async def run(self) -> TurnResult:
        """Run the turn to its end and return the result (events are discarded)."""
        result = await self._run_to_end()
        if result is None:
            raise AssertionError("turn ended without TurnFinished")  # kernel bug
        return result

    async def run_queued(self) -> TurnResult | None:
        """Run a drained turn (``from_queue``): its result, or ``None`` when the session had no
        queued input (nothing ran, nothing was committed)."""
        result = await self._run_to_end()
        if result is None and not self.no_input:
            raise AssertionError("turn ended without TurnFinished")  # kernel bug
        return result

    async def stream(self) -> AsyncGenerator[TurnEvent, None]:
        """Run the turn, yielding events as they happen; the last is :class:`TurnFinished`."""
        events: asyncio.Queue[TurnEvent | None] = asyncio.Queue()
        self._events = events
        runner = self._launch(asyncio.get_running_loop())
        try:
            try:
                while True:
                    event = await events.get()
                    if event is None:
                        break
                    yield event
            finally:
                await self._settle(runner)
        finally:
            self._runtime.leave_running(self)

    async def _run_to_end(self) -> TurnResult | None:
        """Run the turn without an event stream (what :meth:`run` needs: no queue, no
        generator); the result, once the turn ended."""
        # Resolved by the runner as it ends: waking the caller takes one step of the loop, where
        # waiting for the task would take two (its done callback, then the caller).
        loop = asyncio.get_running_loop()
        ended = self._ended = loop.create_future()
        runner = self._launch(loop)
        try:
            try:
                await ended
            finally:
                if runner.done():  # (as it is once the turn ended: no coroutine to settle it)
                    runner.result()
                else:
                    await self._settle(runner)
        finally:
            self._runtime.leave_running(self)
        return self._result

    def _launch(self, loop: asyncio.AbstractEventLoop) -> asyncio.Task[None]:
        if self._started:
            raise RuntimeError("a turn runs once; call session.turn(...) again for another")
        self._started = True
        self._runtime.running.add(self)  # from now: cancel_running_turns reaches it, waiting or not
        # (The loop's create_task, which asyncio.create_task calls: one Python call less.)
        self._runner = runner = loop.create_task(self._drive())
        return runner

    async def _settle(self, runner: asyncio.Task[None]) -> None:
        """Once the caller stops waiting for the turn (it ended, or the caller was cancelled or
        closed the stream): cancel cooperatively, still commit, and raise the commit's own error
        (LeaseLost, SessionBusy...), if any. Each cancellation of the caller interrupts the
        turn's current phase again, so a second one gets past a hung hook too."""
        while not runner.done():
            self.cancel(origin="host", reason="the caller stopped waiting")
            try:
                await asyncio.wait((runner,))
            except asyncio.CancelledError:
                continue
        runner.result()

    def cancel(self, *, reason: str | None = None, origin: str = "host") -> None:
        """Ask the turn to stop: it still commits, as ``stopped(cancelled)`` (or, once it is
        committed, returns its result; or, while it waits for the session, ends at once without
        committing). Whatever the turn is waiting for is interrupted: the session, the model, a
        tool, or a plugin's hook. ``origin`` and ``reason`` are recorded in the result (the first
        request's)."""
        if not self._cancel_requested:
            self._cancel_origin, self._cancel_reason = origin, reason
        self._cancel_requested = True
        for event in self._call_events:
            event.set()
        runner = self._runner
        if runner is not None and not runner.done() and self._interruptible:
            if not self._interrupted:
                self._interrupted = True
                runner.cancel()

    # -- phases ----------------------------------------------------------------------------

    async def _drive(self) -> None:
        """The turn's runner task. (One coroutine, the event stream's end in its ``finally``:
        an outer one awaiting an inner one cost each turn a coroutine more.)"""
        runtime = self._runtime
        try:
            if self._explicit_id:
                record = await runtime.core.store.turn_record(runtime.id, self.id)
                if record is not None:
                    self._emit(TurnFinished(self._stored(record)))
                    return
            if self._cancel_requested:
                self._emit(TurnFinished(self._unstarted()))
                return
            events = () if self._from_queue else (self._started_event(),)
            # Phase 0: waiting for the session is interruptible; a cancellation there ends the
            # turn before it started.
            self._interruptible, self._interrupted, self._waiting = True, False, True
            try:
                async with runtime.execute(
                    "turn", turn_id=self.id, events=events, reuse=not self._from_queue
                ) as ex:
                    self._interruptible = self._waiting = False  # the session is ours
                    self._polled_at_claim()
                    self.index = ex.turn = runtime.image.turns + 1
                    ex.on_event = self._emit
                    if self._explicit_id:
                        # A twin submission may have committed while this one waited.
                        record = await runtime.core.store.turn_record(runtime.id, self.id)
                        if record is not None:
                            self._emit(TurnFinished(self._stored(record)))
                            return
                    if not self._from_queue and approvals.ready(runtime) is not None:
                        # A turn stopped for approval, every call answered: it goes on first
                        # (its own commit), then this turn, under the lease taken again.
                        await Turn(runtime, "", continuing=True)._drive_turn()
                        await runtime.claim(turn_id=self.id)
                        runtime._renew_later()
                        self.index = ex.turn = runtime.image.turns + 1
                    await self._drive_turn()
            except asyncio.CancelledError:
                if not (self._waiting and self._interrupted):
                    raise  # the host cancelled the task running the turn: propagate
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
                self._emit(TurnFinished(self._unstarted()))
        finally:
            self._waiting = False
            # Always end the event stream, even when the commit raised (LeaseLost, a store
            # error...): stream() then re-raises that error from the runner.
            if self._events is not None:
                self._events.put_nowait(None)
            if self._ended is not None and not self._ended.done():
                self._ended.set_result(None)

    def _stored(self, record: TurnRecord) -> TurnResult:
        """The result of a turn committed before, its output as this turn asks for it."""
        result = result_of_record(record)
        if self._output is not None and result.output is not None:
            result = attrs.evolve(result, output=self._output.restore(result.output))
        return result

    def _started_event(self) -> EventDraft:
        return _event(
            "turn_started",
            {
                "turn_id": self.id,
                "input": self.input,
                "items": to_data(list(self.items)) if self.items else [],
            },
        )

    def _unstarted(self) -> TurnResult:
        """The result of a turn cancelled before it started (nothing committed)."""
        return TurnResult(
            session_id=self._runtime.id,
            index=self._runtime.image.turns + 1,
            outcome="stopped",
            reason="cancelled",
            detail="cancelled before it started (nothing was committed)",
            revision=self._runtime.image.revision,
            turn_id=self.id,
            cancelled_by=self._cancel_origin,
            cancel_reason=self._cancel_reason,
        )

    async def _drive_turn(self) -> None:
        runtime = self._runtime
        hooks = runtime.composition.hooks
        if self._from_queue or self._continuing:
            awaiting = approvals.ready(runtime)
            if awaiting is not None:
                self._continue(awaiting)
                # The lease now names the continued turn: core.cancel_turn(its id) finds it.
                runtime.lease = await runtime.core.store.acquire_lease(
                    runtime.id, runtime.owner, ttl=runtime.core.lease_ttl, turn=self.id
                )
            elif self._continuing or not await self._take_queued_input():
                self.no_input = True
                return
        if self._images:
            await put_blobs(runtime.core.store, self._images)
            runtime.blobs.update((i.sha256, i.data) for i in self._images if i.sha256 and i.data)
        view = self._view = TurnView(
            runtime.view, self.input, self.index, items=self.items, nodes=self._nodes, id=self.id
        )
        reason: StopReason | None = None
        detail: str | None = None
        failure: Exception | None = None
        self._ensure_frame()
        if self._resuming is None:
            if runtime.image.kernel.awaiting is not None:
                approvals.supersede(runtime, self.id)  # calls still unanswered: they expire
            parent_id, frame_id = self._head()
            self._append(
                _make_user(
                    id=new_node_id(),
                    parent_id=parent_id,
                    frame_id=frame_id,
                    turn=self.index,
                    text=self.input,
                    items=self.items,
                )
            )
        keeper = _Keeper(self)
        try:
            with _Phase(self) as phase:
                try:
                    if self._resuming is not None:
                        await self._resolve(self._resuming)
                    else:
                        for plugin, value in await hooks.collect("before_turn", turn=view):
                            for directive in _directives(value):
                                stop = self._apply(plugin, directive, current="current_turn")
                                if stop is not None and reason is None:
                                    reason, detail = "plugin_abort", stop
                    if reason is None and not self._cancel_requested:
                        _plugin_name, protocol = runtime.composition.protocol()
                        await protocol.run(TurnDriver(self, runtime.view))
                except TurnStopped as stop_exc:
                    reason, detail = stop_exc.reason, stop_exc.detail
                except Exception as exc:  # provider, plugin or protocol failure: the turn
                    failure = exc  # fails, the session lives on
            if phase.interrupted or (self._cancel_requested and reason is None and failure is None):
                reason, detail, failure = "cancelled", None, None

            error = _describe(failure) if failure is not None else None
            holding = failure is None and reason == "awaiting_approval"
            self._close_dangling_calls(
                error or detail or reason or "turn ended",
                keep={call.id for call, _ in self._held} if holding else set(),
            )
            result = self._result_of(reason, detail, failure)
            view.result = result
            with _Phase(self) as phase:
                # after_turn sees every outcome, failed turns included (it may log or enqueue).
                try:
                    for plugin, value in await hooks.collect("after_turn", turn=view):
                        for directive in _directives(value):
                            stop = self._apply(plugin, directive, current="next_turn")
                            if stop is not None and result.outcome == "completed":
                                result = attrs.evolve(
                                    result, outcome="stopped", reason="plugin_abort", detail=stop
                                )
                except LashError as exc:
                    if result.outcome == "failed":
                        hooks.report(exc)  # the first failure is the turn's error; report this
                    else:
                        result = self._result_of(None, None, exc)
                view.result = result
                await hooks.broadcast("turn_finalized", turn=view)
            if phase.interrupted and result.outcome == "completed":
                result = self._result_of("cancelled", None, None)
                view.result = result
            if holding and result.reason != "awaiting_approval":
                # after_turn failed the turn: its held calls will not be asked about.
                runtime.image.kernel.settle_awaiting("expired")
                self._close_dangling_calls(result.error or "turn ended")
        finally:
            if keeper.stop():
                await keeper.finish()

        runtime.image.graph.release_prompt()  # (kept for the turn's model calls only)
        revision = await self._commit(result)
        result = committed_result(result, revision)
        view.result = result
        with _Phase(self):
            if hooks.impls("turn_persisted"):
                await hooks.broadcast("turn_persisted", turn=view, revision=revision)
            if self._compact is not None:
                await operations.compact_after_turn(runtime, self._compact.instructions)
        self._emit(_finished(result))

    def _continue(self, awaiting: AwaitingTurn) -> None:
        """Become the continuation of ``awaiting``: same id, index and input. The calls leave
        the waiting list now (committed with this turn), so the turn goes on once."""
        self.id, self.index, self.input = awaiting.turn_id, awaiting.index, awaiting.input
        self.items = ()
        self._resuming = awaiting
        self._runtime.image.kernel.settle_awaiting()
        self._runtime.dirty = True
        self._runtime.pending_events.append(
            EventDraft(
                "turn_resumed",
                {
                    "turn_id": self.id,
                    "calls": [
                        {"call_id": c.call_id, "decision": c.decision, "reason": c.reason}
                        for c in awaiting.calls
                    ],
                },
            )
        )

    async def _resolve(self, awaiting: AwaitingTurn) -> None:
        """The continued turn's held calls: approved ones run (the tool and
        ``after_tool_call``), rejected ones give the model the rejection; then the
        ``after_tools`` checkpoint, as after any round of calls."""
        runtime = self._runtime
        calls = [ToolCall(c.call_id, c.tool, dict(c.arguments)) for c in awaiting.calls]
        approved = [
            call
            for call, held in zip(calls, awaiting.calls, strict=True)
            if held.decision == "approve"
        ]
        live = runtime.core.observed(runtime.id)
        for call in approved:
            self._call_started(call, live)
        ran = await asyncio.gather(
            *(run_approved(runtime, call, self._tool_context(call)) for call in approved)
        )
        results = dict(zip((c.id for c in approved), ran, strict=True))
        for call, held in zip(calls, awaiting.calls, strict=True):
            final, result = results.get(call.id) or (
                call,
                ToolResult(call.id, approvals.rejection_text(held.reason), True),
            )
            projected = await project(runtime, final, result)
            self._call_finished(call, final, result, projected, live)
        await self.checkpoint("after_tools")

    async def _take_queued_input(self) -> bool:
        """Claim the session's oldest pending input for this turn (a drained turn)."""
        runtime = self._runtime
        lease = runtime.lease
        assert lease is not None
        if not lease.pending_inputs:
            self.no_input = True
            return False
        claimed = await runtime.core.store.claim_inputs(lease, limit=1)
        if not claimed:
            self.no_input = True
            return False
        self.source_input = source = claimed[0]
        self.input, self.items = source.text, tuple(source.items)
        runtime.pending_claimed.append(source.id)
        runtime.pending_events.append(self._started_event())
        return True

    async def _keep(self) -> None:
        """While the turn works, read cancellation requests from other processes every
        ``control_poll`` seconds (the execution renews the lease)."""
        poll = self._runtime.core.control_poll
        while True:  # started when the first poll is due (see _Keeper)
            await self._read_cancel_request()
            await asyncio.sleep(poll)

    async def _read_cancel_request(self) -> None:
        if self._cancel_requested:
            return
        runtime = self._runtime
        request = await runtime.core.store.cancel_request(runtime.id, self.id)
        if request is not None:
            self.cancel(reason=request.reason, origin=request.origin)

    async def _commit(self, result: TurnResult) -> int:
        runtime = self._runtime
        if self._usage != NO_USAGE:
            runtime.add_usage("turn", self._usage)
        parent_id, frame_id = self._head()
        outcome = _make_outcome(
            id=new_node_id(),
            parent_id=parent_id,
            frame_id=frame_id,
            turn=self.index,
            turn_id=self.id,
            outcome=result.outcome,
            reason=result.reason,
            detail=result.detail,
            error=result.error,
            cancelled_by=result.cancelled_by,
        )
        self._append(outcome)
        # The stored result leaves out the tool calls: they are in the graph already (the turn's
        # call and result nodes), and their arguments may be what a hook made of them.
        data = result_data(result)
        # A commit moves the head by exactly one (compare-and-set on the revision).
        revision = runtime.image.revision + 1
        data["revision"] = revision
        record = _record(
            session_id=runtime.id,
            turn_id=self.id,
            index=self.index,
            outcome=result.outcome,
            revision=revision,
            reason=result.reason,
            result=data,
        )
        runtime.pending_events.append(
            _event(
                "turn_committed",
                # tool_calls names the turn's calls (observers elsewhere saw none live).
                turn_end_data(self.id, self.index, data, self._records),
            )
        )
        # A turn that stops for approval is not over: its record is written when it ends (a
        # resubmitted turn id finds none meanwhile), and its continuation is the same turn.
        # Unshielded: this runs in the turn's runner task, never interrupted in this phase.
        return await runtime.commit(
            turns=0 if self._resuming is not None else 1,
            turn=None if result.reason == "awaiting_approval" else record,
            shield=False,
        )

    def _apply(self, plugin: str, directive: Any, *, current: str) -> str | None:
        """Apply one turn directive; returns an abort's reason. ``current`` is where an
        ``EnqueueMessages(target="current_turn")`` goes in this phase."""
        if isinstance(directive, AbortTurn):
            return directive.reason
        if isinstance(directive, EnqueueMessages):
            if directive.target == "current_turn" and current == "current_turn":
                for text in self._messages_of(plugin, directive, queued=False):
                    self._append(self._new_node(UserMessage, text=text))
            else:
                self._runtime.pending_enqueue.extend(
                    attrs.evolve(draft, source=f"plugin:{plugin}")
                    for draft in self._messages_of(plugin, directive, queued=True)
                )
        elif isinstance(directive, Compact):
            self._compact = self._compact or directive
        elif isinstance(directive, EmitEvent):
            self._runtime.emit_as(plugin, directive.type, directive.data)
        elif isinstance(directive, StartProcess):
            runtime = self._runtime
            try:
                draft = runtime.core.processes.draft(
                    directive.kind,
                    directive.payload,
                    session_id=runtime.id,
                    key=directive.key,
                    source=f"plugin:{plugin}",
                )
            except ProcessError as exc:
                raise PluginError(
                    f"plugin {plugin!r} returned lash.StartProcess({directive.kind!r}): {exc}",
                    plugin=plugin,
                    hook=None,
                ) from exc
            if all(p.id != draft.id for p in runtime.pending_processes):
                runtime.pending_processes.append(draft)  # written in the turn's commit
        return None

    def _messages_of(self, plugin: str, directive: EnqueueMessages, *, queued: bool) -> list[Any]:
        """The messages of ``directive``: their texts, or (``queued``) their drafts, checked as
        ``core.enqueue`` checks input. Before, a string was queued one input per character, a
        text that is not a str failed the commit after the model call with a bare error, and
        an empty or oversized one passed the mailbox's limits.

        :raises PluginError: naming the plugin and the message."""

        def refuse(problem: str) -> PluginError:
            return PluginError(
                f"plugin {plugin!r} returned lash.EnqueueMessages whose {problem}",
                plugin=plugin,
                hook=None,
            )

        messages = directive.messages
        if isinstance(messages, str) or not isinstance(messages, list | tuple):
            hint = " (one message is [text])" if isinstance(messages, str) else ""
            raise refuse(f"messages must be a list of str, got {describe_value(messages)}{hint}")
        found: list[Any] = []
        for index, text in enumerate(messages):
            if not isinstance(text, str):
                raise refuse(f"messages[{index}] must be a str, got {describe_value(text)}")
            if not queued:
                found.append(text)
                continue
            try:
                found.append(checked_input(self._runtime.id, text))
            except SessionError as exc:
                raise refuse(f"messages[{index}] cannot be queued: {exc}") from None
        return found

    def _result_of(
        self, reason: StopReason | None, detail: str | None, failure: Exception | None
    ) -> TurnResult:
        result = _turn_result(
            session_id=self._runtime.id,
            index=self.index,
            outcome="completed",
            text=self._final_text,
            tool_calls=tuple(self._records),
            usage=self._usage,
            turn_id=self.id,
            output=self._output_value,
        )
        if failure is not None:
            return attrs.evolve(
                result,
                outcome="failed",
                error=self._runtime.redact(_describe(failure)),
                error_plugin=getattr(failure, "plugin", None),
                error_hook=getattr(failure, "hook", None),
                output=None,
                output_errors=failure.errors if isinstance(failure, OutputInvalid) else (),
            )
        if reason is not None:
            result = attrs.evolve(result, outcome="stopped", reason=reason, detail=detail)
            if reason == "cancelled":
                result = attrs.evolve(
                    result, cancelled_by=self._cancel_origin, cancel_reason=self._cancel_reason
                )
        return result

    # -- nodes -----------------------------------------------------------------------------

    def _emit(self, event: TurnEvent) -> None:
        if type(event) is TurnFinished:
            self._result = event.result
        if self._events is not None:
            self._events.put_nowait(event)

    def _append(self, node: GraphNode) -> None:
        self._nodes.append(node)
        self._runtime.add_node(node)

    def _head(self) -> tuple[str | None, str]:
        """The parent and the frame of the next node: the graph's leaf and frame, read from its
        node list directly (as SessionGraph.leaf and .frame_id do)."""
        nodes = self._runtime.image.graph.nodes
        if nodes:
            return nodes[-1].id, nodes[0].frame_id
        return None, ""

    def _new_node(self, cls: type[Any], **fields: Any) -> Any:
        # (The six nodes of every turn are made by their makers directly, with _head: passing
        # their fields through here cost two keyword dictionaries each, ~0.5 us a node.)
        parent_id, frame_id = self._head()
        return _MAKERS[cls](
            id=new_node_id(), parent_id=parent_id, frame_id=frame_id, turn=self.index, **fields
        )

    def _ensure_frame(self) -> None:
        if self._runtime.image.graph.frame_id is None:
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

    def _close_dangling_calls(self, why: str, keep: Set[str] = frozenset()) -> None:
        # A stopped or failed turn must not leave a tool call without its result: the pair would
        # be split in history and providers reject a prompt with an unanswered tool call. Calls
        # held for approval (``keep``) are the exception: the turn's continuation answers them.
        if self._resuming is None and _all_answered(self._nodes):
            return  # (most turns: one pass, no sets)
        answered = {n.call_id for n in self._nodes if isinstance(n, ToolResultNode)}
        started = {n.call.id for n in self._nodes if isinstance(n, ToolCallNode)}
        asked = [c for n in self._nodes if isinstance(n, AssistantMessage) for c in n.tool_calls]
        if self._resuming is not None:
            # A continuation stopped before it answered the calls it continues (their calls
            # are in the turn's first commit).
            held = self._resuming.calls
            started.update(c.call_id for c in held)
            asked[:0] = (ToolCall(c.call_id, c.tool, dict(c.arguments)) for c in held)
        for call in asked:
            if call.id in answered or call.id in keep:
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

    def call_model(self) -> Coroutine[Any, Any, ModelResponse]:
        # Not async itself: it hands over the coroutine that does the work (each level of
        # coroutines costs every model call its creation and a step through it).
        if self._output is None:
            return self._call_model_once(None)
        return self._call_for_output(self._output)

    def _call_plan(self, tools: tuple[Any, ...]) -> _CallPlan:
        """A model call's provider (its name, the provider, the model), the model's label on
        the assistant node, and the call's options: worked out once per turn, and again only
        when the session's config (a new object whenever it changes), the tools offered or
        the turn's options differ from the turn's last call. (The host's options are the
        composition's, fixed.)"""
        config, turn = self._runtime.image.config, self.model_options
        plan = self._plan
        if plan is not None and plan[0] is config and plan[1] is tools and plan[2] is turn:
            return plan[3]
        provider_name, provider, model = self._runtime.provider()
        # Interned: every assistant node of every session names the same few models.
        label = sys.intern(f"{provider_name}:{model}")
        made = (provider_name, provider, model, label, self._request_options(tools))
        self._plan = (config, tools, turn, made)
        return made

    def _request_options(self, tools: tuple[Any, ...]) -> ModelOptions:
        """The model options of a call: the host's, under the session's, under the turn's."""
        runtime = self._runtime
        host = runtime.composition.config.model_options
        session = runtime.image.config.model_options
        turn = self.model_options
        options = host.merged(session).merged(turn)
        choice = options.tool_choice
        if choice not in (None, "auto", "none", "required") and all(
            t.name != choice for t in tools
        ):
            offered = ", ".join(t.name for t in tools) or "none"
            raise SessionError(
                f"session {runtime.id!r}: model_options.tool_choice names tool {choice!r}, "
                f"which the model is not offered (offered: {offered})",
                session_id=runtime.id,
            )
        return options

    def _call_model_once(self, output: Output | None) -> Coroutine[Any, Any, ModelResponse]:
        """One model call, reported to ``model_call_finished`` when a plugin implements it."""
        if not self._runtime.composition.hooks.impls("model_call_finished"):
            # Nobody observes model calls: no clock, no dispatch (and no coroutine of ours).
            return self._call_provider(output)
        return self._call_observed(output)

    async def _call_observed(self, output: Output | None) -> ModelResponse:
        self._request = None
        try:
            response = await self._call_provider(output, observed=True)
        except BaseException as exc:
            # A failed (or cancelled) call is reported too, once its request was sent: a tracer
            # ends its span with the error. The caller still gets the original exception.
            if self._request is not None:
                await self._model_call_finished(None, exc)
            raise
        await self._model_call_finished(response, None)
        return response

    async def _model_call_finished(
        self, response: ModelResponse | None, error: BaseException | None
    ) -> None:
        assert self._view is not None and self._request is not None
        provider, request, started = self._request
        await self._runtime.composition.hooks.broadcast(
            "model_call_finished",
            turn=self._view,
            provider=provider,
            request=request,
            response=response,
            error=error,
            started=started,
        )

    async def _call_provider(
        self, output: Output | None, *, observed: bool = False
    ) -> ModelResponse:
        runtime = self._runtime
        view = plain_prompt_view(runtime)
        if view is None:
            view = await prompt_view(runtime)
        tools = runtime.prompt_cache.tool_specs(runtime.composition, view.tools)
        provider_name, provider, model, label, options = self._call_plan(tools)
        spec = None
        if output is not None:
            if getattr(provider, "supports_output_schema", False) is True:
                spec = output.spec
            else:
                if any(t.name == output.tool.name for t in tools):
                    raise SessionError(
                        f"session {runtime.id!r}: a tool named {output.tool.name!r} is in the "
                        "catalog; structured output needs that name for its final-answer tool",
                        session_id=runtime.id,
                    )
                tools = (*tools, output.tool)
                options = output.tool_options(options)
        # (Positional, in the class's order: a keyword call binds each field twice.)
        request = _request(model, view.messages, tools, options, spec)
        if observed:
            self._request = (provider_name, request, time.time())
        self._native_output = spec is not None
        text: list[str] = []
        calls: list[ToolCall] = []
        usage = NO_USAGE
        finish = "stop"
        live = runtime.core.observed(runtime.id)
        async for event in provider.stream(request):
            if isinstance(event, TextDelta):
                text.append(event.text)
                if self._events is not None:  # (run() keeps no events: none is built)
                    self._events.put_nowait(TextDeltaEvent(event.text))
                if live:
                    runtime.core.notify(
                        runtime.id,
                        live=[EventDraft("text_delta", text_delta_data(self.id, event.text))],
                    )
            elif isinstance(event, ToolCallReady):
                _check_call(provider_name, event.call)
                calls.append(admit_tool_call(event.call))  # arguments nested too deep: refused
            elif isinstance(event, ModelDone):
                usage = usage + usage_counts(provider_name, event.usage)
                finish = event.finish_reason
        response = _response("".join(text), tuple(calls), usage, finish)
        self._usage = self._usage + usage
        parent_id, frame_id = self._head()
        self._append(
            _make_assistant(
                id=new_node_id(),
                parent_id=parent_id,
                frame_id=frame_id,
                turn=self.index,
                text=response.text,
                tool_calls=response.tool_calls,
                usage=usage,
                model=label,
            )
        )
        if not response.tool_calls:
            self._final_text = response.text
        return response

    async def _call_for_output(self, output: Output) -> ModelResponse:
        """Call the model until its answer validates (structured output), sending the problems
        of each invalid answer back, ``output.retries`` times at most; then the turn fails
        (:class:`lash.OutputInvalid`). A response that calls real tools goes back to the
        protocol as it is."""
        while True:
            response = await self._call_model_once(output)
            final = [c for c in response.tool_calls if c.name == output.tool.name]
            if self._native_output or not final:
                if response.tool_calls:
                    return response  # real tools first: the protocol runs them
                if self._native_output:
                    value, problems = output.check_text(response.text)
                else:
                    value, problems = None, [NOT_CALLED]
                if not problems:
                    self._output_value = value
                    return response
                self._reject(output, problems)
                self._append(self._new_node(UserMessage, text=feedback(problems, tool=False)))
                continue
            # The final-answer tool: its arguments are the answer. Calls beside it are not run.
            call = final[0]
            if call.invalid_arguments is not None:
                value, problems = output.check_text(call.invalid_arguments)
            else:
                value, problems = output.check(dict(call.arguments))
            for other in response.tool_calls:
                if other is call:
                    text = feedback(problems, tool=True) if problems else "Final answer accepted."
                else:
                    text = "not run: the turn was ending with a final answer"
                self._append(self._new_node(ToolCallNode, call=other, plugin=None))
                self._append(
                    self._new_node(
                        ToolResultNode,
                        call_id=other.id,
                        name=other.name,
                        content=text,
                        is_error=other is not call or bool(problems),
                    )
                )
            if not problems:
                self._output_value = value
                self._final_text = answer_text(value)
                return attrs.evolve(response, text=self._final_text, tool_calls=())
            self._reject(output, problems)

    def _reject(self, output: Output, problems: list[str]) -> None:
        """Count an invalid answer; past the retries, fail the turn with its problems."""
        output.attempts += 1
        if output.attempts > output.retries:
            raise OutputInvalid(
                problems,
                attempts=output.attempts,
                session_id=self._runtime.id,
                turn_id=self.id,
            )

    async def run_tool_calls(self, calls: Sequence[ToolCall]) -> list[ToolResult]:
        runtime = self._runtime
        composition = runtime.composition
        live = runtime.core.observed(runtime.id)
        for call in calls:
            entry = composition.tool_entry(call.name)
            plugin = entry[0] if entry is not None else None
            parent_id, frame_id = self._head()
            self._append(
                _make_call(
                    id=new_node_id(),
                    parent_id=parent_id,
                    frame_id=frame_id,
                    turn=self.index,
                    call=call,
                    plugin=plugin,
                )
            )
            self._call_started(call, live)
        if len(calls) == 1:  # no tasks for the common single call
            results = [await run_tool_call(runtime, calls[0], self._tool_context(calls[0]))]
        else:
            results = await asyncio.gather(
                *(run_tool_call(runtime, call, self._tool_context(call)) for call in calls)
            )
        held: list[tuple[ToolCall, Hold]] = []
        done: list[ToolResult] = []
        for call, (final_call, result) in zip(calls, results, strict=True):
            if isinstance(result, Hold):
                held.append((final_call, result))
                continue
            # (No coroutine when nobody projects results: most sessions.)
            projected = (
                await project(runtime, final_call, result)
                if composition.hooks.impls("project_tool_result")
                else None
            )
            self._call_finished(call, final_call, result, projected, live)
            done.append(result)
        if held:
            # The round's other calls ran; these wait for a person. The turn stops here, the
            # held calls committed with it, and continues once every one is answered.
            self._held.extend(held)
            approvals.hold(runtime, self.id, self.index, self.input, held)
            names = ", ".join(f"{call.id} ({call.name})" for call, _ in held)
            raise TurnStopped(
                "awaiting_approval", f"{len(held)} tool call(s) await approval: {names}"
            )
        if self._checkpoint_due():
            await self.checkpoint("after_tools")
        return done

    def _call_started(self, call: ToolCall, live: bool) -> None:
        if self._events is not None:  # (run() keeps no events: none is built)
            self._events.put_nowait(ToolCallStarted(call))
        if live:  # live only: the committed turn holds its calls (graph, turn_committed)
            runtime = self._runtime
            started = tool_call_started_data(self.id, call)
            runtime.core.notify(runtime.id, live=[EventDraft("tool_call_started", started)])

    def _call_finished(
        self,
        call: ToolCall,
        final_call: ToolCall,
        result: ToolResult,
        projected: str | None,
        live: bool,
    ) -> None:
        """Record a call's result: its node (with what the model sees of it: ``projected``,
        from :func:`project`, which the caller awaits only when a plugin projects results), the
        turn's record of it, and the events."""
        runtime = self._runtime
        parent_id, frame_id = self._head()
        self._append(
            _make_result(
                id=new_node_id(),
                parent_id=parent_id,
                frame_id=frame_id,
                turn=self.index,
                call_id=call.id,
                name=call.name,
                content=result.content,
                is_error=result.is_error,
                projected=projected,
            )
        )
        self._records.append(_call_record(final_call, result))
        if self._events is not None:
            self._events.put_nowait(ToolCallFinished(final_call, result))
        if live:
            finished = tool_call_finished_data(self.id, call.id, final_call.name, result)
            runtime.core.notify(runtime.id, live=[EventDraft("tool_call_finished", finished)])

    def _tool_context(self, call: ToolCall) -> ToolContext:
        # One event per call: a tool timing out sets its own event, never its siblings'.
        cancelled = asyncio.Event()
        self._call_events.append(cancelled)
        if self._cancel_requested:
            cancelled.set()
        runtime = self._runtime
        source = f"tool:{call.name}"
        processes = runtime.core.processes.scoped(runtime.id, source=source, runtime=runtime)
        return ToolContext(runtime.view, call.id, cancelled=cancelled, processes=processes)

    async def checkpoint(self, kind: str) -> bool:
        """A checkpoint of the running turn: input queued for it joins, then the ``checkpoint``
        hooks run; returns whether messages joined the turn."""
        runtime = self._runtime
        joined = False
        if runtime.lease is not None and self._should_poll():
            self._last_poll = time.monotonic()
            runtime.input_hint = False
            await self._read_cancel_request()
            for queued in await runtime.core.store.claim_inputs(
                runtime.lease, limit=100, ingress="active_turn"
            ):
                self._append(self._new_node(UserMessage, text=queued.text, items=queued.items))
                runtime.pending_claimed.append(queued.id)
                joined = True
        if self._cancel_requested:
            raise TurnStopped("cancelled")  # a request read here, from another process
        assert self._view is not None
        hooks = runtime.composition.hooks
        if not hooks.impls("checkpoint"):
            return joined
        for plugin, value in await hooks.collect("checkpoint", turn=self._view, kind=kind):
            for directive in _directives(value):
                if isinstance(directive, EnqueueMessages) and directive.target == "current_turn":
                    joined |= bool(directive.messages)  # (input for a later turn is not news now)
                stop = self._apply(plugin, directive, current="current_turn")
                if stop is not None:
                    raise TurnStopped("plugin_abort", stop)
        return joined

    def _checkpoint_due(self) -> bool:
        """Whether :meth:`checkpoint` has anything to do now (a poll of the store, a
        cancellation to raise, ``checkpoint`` hooks to run): a checkpoint with none returns
        ``False`` at once, so its caller may skip it (and its coroutine)."""
        runtime = self._runtime
        return (
            self._cancel_requested
            or bool(runtime.composition.hooks.impls("checkpoint"))
            or (runtime.lease is not None and self._should_poll())
        )

    def _polled_at_claim(self) -> None:
        """The lease just claimed read the store as a checkpoint's poll would: the input poll's
        clock starts now, unless input was queued then (the checkpoints keep the clock that
        started with the turn, so that input joins as soon as it did). A turn that waited for
        the session (or its share of a busy process) longer than ``input_poll`` would otherwise
        read the store twice more at its first checkpoint for nothing: nothing can be queued for
        it before the claim that it does not see there, and a cancellation request names a turn
        the claim started."""
        lease = self._runtime.lease
        if lease is not None and not lease.pending_inputs:
            self._last_poll = time.monotonic()

    def _should_poll(self) -> bool:
        """Read the store at this checkpoint? When input was queued in this process since the
        last read, or ``input_poll`` seconds went by (input from another process joins at the
        first checkpoint that long after it was queued)."""
        runtime = self._runtime
        return runtime.input_hint or time.monotonic() - self._last_poll >= runtime.core.input_poll


def _all_answered(nodes: Sequence[GraphNode]) -> bool:
    """Whether every tool call asked for in ``nodes`` (by an assistant message) has its result
    node after it: what :meth:`Turn._close_dangling_calls` then has nothing to do for. (False
    sends it the general way, which closes what is open.)"""
    unanswered: set[str] = set()
    for node in nodes:
        if isinstance(node, AssistantMessage):
            for call in node.tool_calls:
                unanswered.add(call.id)
        elif isinstance(node, ToolResultNode):
            unanswered.discard(node.call_id)
    return not unanswered


class _Phase:
    """An interruptible phase of a turn (``with _Phase(turn) as phase:``); ``phase.interrupted``
    says whether :meth:`Turn.cancel` interrupted it (the phase's body stops at the cancellation
    point and execution goes on after it). A plain context manager: entering
    and leaving await nothing, and a generator-based one would cost an async generator, its
    finalizer hook and two extra steps per phase, three phases per turn."""

    __slots__ = ("interrupted", "turn")

    def __init__(self, turn: Turn) -> None:
        self.turn = turn
        self.interrupted = False

    def __enter__(self) -> _Phase:
        self.turn._interruptible, self.turn._interrupted = True, False
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: object, tb: object) -> bool:
        turn = self.turn
        turn._interruptible = False
        suppress = False
        if kind is not None:
            if not issubclass(kind, asyncio.CancelledError) or not turn._interrupted:
                return False  # a failure, or the host cancelled the task running the turn
            suppress = True
        if turn._interrupted:
            # Balance our runner.cancel() (asyncio.timeout and friends read the count). A body
            # that swallowed the CancelledError (plugin code catching it) still counts as
            # interrupted: the cancellation was asked for.
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            self.interrupted = True
        return suppress


class _Keeper:
    """Runs :meth:`Turn._keep` for a turn that lasts: started only once the execution's first
    poll is due (most turns end sooner, and a task per turn would cost them all); the
    execution's timer starts it (:attr:`SessionRuntime.on_poll_due`), so a turn arms no timer
    of its own."""

    def __init__(self, turn: Turn) -> None:
        self._task: asyncio.Task[None] | None = None
        self._turn = turn
        runtime = turn._runtime
        if runtime.poll_passed:
            self._start()  # the turn got here late (a slow store): its first poll is due
        else:
            runtime.on_poll_due = self._start

    def _start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._turn._keep())

    def stop(self) -> bool:
        """Disarm; returns whether a poll task runs (then ``await finish()``)."""
        runtime = self._turn._runtime
        if runtime.on_poll_due == self._start:
            runtime.on_poll_due = None
        return self._task is not None

    async def finish(self) -> None:
        """Cancel the poll task and wait for it to end."""
        task = self._task
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, LashError):
                await task


#: The node classes a turn makes (:meth:`Turn._new_node`), each with its maker: the class's
#: ``__init__``, built for about half its cost where that is the same thing.
_MAKERS: dict[type[Any], Any] = {
    cls: maker(cls)
    for cls in (UserMessage, AssistantMessage, ToolCallNode, ToolResultNode, TurnOutcome)
}

_make_user = _MAKERS[UserMessage]
_make_assistant = _MAKERS[AssistantMessage]
_make_call = _MAKERS[ToolCallNode]
_make_result = _MAKERS[ToolResultNode]
_make_outcome = _MAKERS[TurnOutcome]

#: The records every turn makes, by their makers (the classes' ``__init__`` as slot stores).
_turn_result = maker(TurnResult)
_response = maker(ModelResponse)
_request = maker(ModelRequest)  # (its options' converter called as __init__ calls it)
_record = maker(TurnRecord)
_event = maker(EventDraft)
_call_record = maker(ToolCallRecord)
_finished = maker(TurnFinished)

#: ``committed_result(result, revision)``: ``result`` as committed at ``revision``
#: (``attrs.evolve(result, revision=revision)``, generated: a third of its time, every turn).
committed_result = evolver(TurnResult, "revision")


def result_of_record(record: TurnRecord) -> TurnResult:
    """The result a committed turn returned, from its record (for a resubmitted turn id)."""
    result: TurnResult = from_data(dict(record.result), TurnResult, what="stored turn result")
    return attrs.evolve(result, revision=record.revision)


resolve_here(globals())
