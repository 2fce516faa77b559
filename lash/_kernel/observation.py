"""Observation: a session's events, from any process, resumable by cursor.

Committed events live in the store's event log (``read_events``), numbered per session; every
process on the same store sees them. Each carries an opaque cursor (``"e<seq>"``): observing
again after a cursor resumes right after that event. A cursor older than the store's replay
window yields one :class:`ObservationGap` (with a fresh settled view of the session and a new
cursor) instead of the events it missed. Live events (the model's text as it streams, tool calls
as they start) reach observers in the process that runs the turn, at once; they are never
needed for correctness: what they show is committed with the turn too.

In one process, a commit (or queued input) wakes the observers of the session at once
(:class:`EventHub`); across processes they poll the store every ``observe_poll`` seconds, or,
when the store can notify (an optional ``wait_events(session_id, after, timeout)`` method:
Postgres LISTEN/NOTIFY), wait for its notification, reading the log at least every
``NOTIFY_FALLBACK`` seconds.
"""

from __future__ import annotations

import asyncio
import collections
import re
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from lash._contract.annotations import resolve_here
from lash._contract.graph import GraphNode
from lash._contract.turn_types import SessionConfig
from lash._contract.types import Usage
from lash._store.records import EventDraft, PendingInput, StoredEvent
from lash.errors import SessionError

if TYPE_CHECKING:
    from lash._store.protocol import Store

#: The version of the JSON form of events (``ObservedEvent.to_json``).
EVENT_FORMAT = 1

_CURSOR = re.compile(r"e(\d{1,18})")


def cursor_of(seq: int) -> str:
    """The opaque cursor of event ``seq``."""
    return f"e{seq}"


def parse_cursor(session_id: str, cursor: str) -> int:
    """The event sequence number a cursor names. :raises SessionError: for anything else."""
    match = _CURSOR.fullmatch(cursor) if isinstance(cursor, str) else None
    if match is None:
        raise SessionError(
            f"session {session_id!r}: {cursor!r} is not an event cursor; cursors are the "
            "values of ObservedEvent.cursor (and ObservationGap.cursor), e.g. 'e42'",
            session_id=session_id,
        )
    return int(match.group(1))


@attrs.frozen
class ObservedEvent:
    """One event of a session, as observers see it.

    ``type`` says what happened (``turn_started``, ``text_delta``, ``tool_call_started``,
    ``tool_call_finished``, ``turn_committed``, ``input_queued``, ``input_claimed``,
    ``input_cancelled``, ``command_queued``, ``command_applied``, ``frame_opened``,
    ``config_changed``, ``plugin_event``), ``data`` the details (JSON). ``cursor`` resumes
    observation after this event; a ``live`` event (not in the log: text deltas, tool calls as
    they start and finish) carries the cursor of the last committed event before it.
    """

    session_id: str
    type: str
    cursor: str
    data: Mapping[str, Any] = attrs.field(factory=dict)
    at: float = 0.0
    live: bool = False

    __module__ = "lash"

    def to_json(self) -> dict[str, Any]:
        """The event's JSON form (version :data:`EVENT_FORMAT`), for clients without lash."""
        return {
            "v": EVENT_FORMAT,
            "type": self.type,
            "session_id": self.session_id,
            "cursor": self.cursor,
            "live": self.live,
            "at": self.at,
            "data": dict(self.data),
        }


@attrs.frozen
class SessionSnapshot:
    """A session as it is settled in the store, with the cursor of its latest event: what
    ``core.current(session_id)`` returns, and what an :class:`ObservationGap` carries."""

    session_id: str
    revision: int
    turns: int
    cursor: str
    nodes: tuple[GraphNode, ...] = ()
    config: SessionConfig = SessionConfig()
    usage: Mapping[str, Usage] = attrs.field(factory=dict)
    inputs: tuple[PendingInput, ...] = ()

    __module__ = "lash"


@attrs.frozen
class ObservationGap:
    """Observation resumed from a cursor older than the store's replay window: the events in
    between are gone. ``snapshot`` is the session now; observation goes on after ``cursor``."""

    session_id: str
    cursor: str
    snapshot: SessionSnapshot

    __module__ = "lash"


def observed(session_id: str, event: StoredEvent) -> ObservedEvent:
    return ObservedEvent(session_id, event.type, cursor_of(event.seq), event.data, event.at)


#: Items (live events, wake-ups) that may wait for one observer. An observer whose consumer
#: stopped reading (a client of ``lash serve`` that stalled) would otherwise hold every live
#: event of every turn from then on; past this many, new ones are dropped for it. Committed
#: events are never lost so: an observer re-reads the log after every item it takes, so any item
#: waiting is as good as the wake-up that was dropped, and live events are never needed for
#: correctness (the commit holds what they showed).
LIVE_BACKLOG = 10_000


class EventHub:
    """In one process: the observers of each session, woken by commits and queued input, and
    handed live events (at most :data:`LIVE_BACKLOG` waiting for each)."""

    def __init__(self) -> None:
        self._queues: dict[str, set[asyncio.Queue[EventDraft | None]]] = {}

    def subscribe(self, session_id: str) -> asyncio.Queue[EventDraft | None]:
        queue: asyncio.Queue[EventDraft | None] = asyncio.Queue()
        self._queues.setdefault(session_id, set()).add(queue)
        return queue

    def unsubscribe(self, session_id: str, queue: asyncio.Queue[EventDraft | None]) -> None:
        queues = self._queues.get(session_id)
        if queues is not None:
            queues.discard(queue)
            if not queues:
                del self._queues[session_id]

    def observed(self, session_id: str) -> bool:
        return session_id in self._queues

    def notify(self, session_id: str, live: Sequence[EventDraft] = ()) -> None:
        """Hand ``live`` events to the session's observers, or (none given) tell them the log
        grew."""
        for queue in self._queues.get(session_id, ()):
            if live:
                for event in live:
                    if queue.qsize() >= LIVE_BACKLOG:
                        break
                    queue.put_nowait(event)
            elif queue.qsize() < LIVE_BACKLOG:
                queue.put_nowait(None)


#: How long an observer waits on a store's notifications before it reads the log anyway (a
#: lost notification only delays an event by this much).
NOTIFY_FALLBACK = 5.0


async def _next_wake_up(
    store: Store,
    queue: asyncio.Queue[EventDraft | None],
    session_id: str,
    last: int,
    poll: float,
) -> tuple[bool, EventDraft | None]:
    """What wakes a waiting observer: ``(True, item)`` for an item of this process's queue (a
    live event, or ``None``: the log grew), ``(False, None)`` when the store says the log may
    have grown (its optional ``wait_events``: Postgres LISTEN/NOTIFY) or the poll interval went
    by."""
    wait_events = getattr(store, "wait_events", None)
    get = asyncio.ensure_future(queue.get())
    waits = [get]
    if wait_events is not None:
        waits.append(asyncio.ensure_future(wait_events(session_id, last, NOTIFY_FALLBACK)))
    try:
        # asyncio.wait, never wait_for: on Python 3.11, wait_for swallows a cancellation that
        # arrives just as the queue hands over an item, and the observer would never stop.
        await asyncio.wait(
            waits,
            timeout=poll if wait_events is None else None,
            return_when=asyncio.FIRST_COMPLETED,
        )
    finally:
        # A cancelled get loses nothing: a queue item is taken only by a get that completes.
        for task in waits:
            if not task.done():
                task.cancel()
    if get.done() and not get.cancelled():
        return True, get.result()
    return False, None


async def observe(
    store: Store,
    hub: EventHub,
    session_id: str,
    *,
    after: str | None,
    poll: float,
    snapshot: Any,
) -> AsyncIterator[ObservedEvent | ObservationGap]:
    """The events of ``session_id`` after ``after`` (``None``: from now), then live, until the
    consumer stops. ``snapshot()`` builds the settled view a gap carries."""
    queue = hub.subscribe(session_id)
    try:
        if after is None:
            page = await store.read_events(session_id, after=0, limit=0)
            last = page.last
        else:
            last = parse_cursor(session_id, after)
            page = await store.read_events(session_id, after=last, limit=0)
            if last > page.last:
                raise SessionError(
                    f"session {session_id!r}: cursor {after!r} is ahead of the event log (its "
                    f"latest event is {cursor_of(page.last)}): it belongs to another session, "
                    "or the session was deleted",
                    session_id=session_id,
                )
            if last < page.first - 1:
                view: SessionSnapshot = await snapshot()
                yield ObservationGap(session_id, view.cursor, view)
                last = parse_cursor(session_id, view.cursor)
        # What was taken from the queue ahead of its turn (below), to be handled first.
        backlog: collections.deque[EventDraft | None] = collections.deque()

        def live_of(turn_id: Any) -> list[EventDraft]:
            """The live events that wait in the queue up to the last one of ``turn_id``, in
            order (taken out of it; wake-ups and what follows stay in the backlog). Those
            between the turn's own came while it ran (a plugin event it emitted, which names
            no turn): they come before its commit too, and live events never change order."""
            while not queue.empty() and len(backlog) < LIVE_BACKLOG:
                backlog.append(queue.get_nowait())
            mine = [
                n
                for n, i in enumerate(backlog)
                if i is not None and i.data.get("turn_id") == turn_id
            ]
            if not mine:
                return []
            head = [backlog.popleft() for _ in range(mine[-1] + 1)]
            backlog.extendleft(reversed([i for i in head if i is None]))
            return [i for i in head if i is not None]

        def live(item: EventDraft) -> ObservedEvent:
            return ObservedEvent(
                session_id, item.type, cursor_of(last), dict(item.data), time.time(), True
            )

        while True:
            # Committed events first, in order, from the log.
            while True:
                page = await store.read_events(session_id, after=last, limit=500)
                if page.events and page.events[0].seq > last + 1:
                    # The window moved past us while we were reading: say so, then go on.
                    view = await snapshot()
                    yield ObservationGap(session_id, view.cursor, view)
                    last = parse_cursor(session_id, view.cursor)
                    continue
                for event in page.events:
                    if event.type == "turn_committed":
                        # A turn that ran and committed while this read was under way queued
                        # its live events before the commit this read returned: they come
                        # before it, as they happened (after it, they would show a turn
                        # running that is over: an AG-UI run that never ends).
                        for early in live_of(event.data.get("turn_id")):
                            yield live(early)
                    yield observed(session_id, event)
                    last = event.seq
                if len(page.events) < 500:
                    break
            if backlog:
                item = backlog.popleft()
            else:
                # Then wait: for a wake-up in this process, or a sign from the store that the
                # log grew (a store that can notify), or the next poll.
                queued, item = await _next_wake_up(store, queue, session_id, last, poll)
                if not queued:
                    if queue.empty():
                        continue
                    # The wait timed out just as items came (a turn queued its live events and
                    # committed meanwhile): those live events come first, as they happened
                    # first.
                    item = queue.get_nowait()
            while item is not None:
                yield live(item)
                if backlog:
                    item = backlog.popleft()
                elif queue.empty():
                    break
                else:
                    item = queue.get_nowait()
    finally:
        hub.unsubscribe(session_id, queue)


resolve_here(globals())
