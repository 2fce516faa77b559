"""One observation of a session shared by every event stream that follows it.

Each client observing on its own would read the store once per commit and encode each event to
JSON once per client: with 200 clients on one session, 200 reads and 200 encodings of every
event. A :class:`Feed` observes the session once (``core.observe``), encodes each event once,
and hands the same bytes to each subscriber.

Correctness still rests on cursors, never on the feed: a client joins a feed only when the
feed's ring of recent committed events reaches back to the client's cursor (it then gets the
ring's events after its cursor first, in order); a client whose cursor is older, or who falls
more than :data:`MAX_PENDING` items behind, or whose feed fails (a store error), follows its
own observation from its cursor instead, exactly as if there were no feed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import AsyncGenerator
from typing import Any, cast

import attrs

from lash._kernel.core import LashCore
from lash._kernel.event_json import event_json
from lash._kernel.observation import (
    ObservationGap,
    ObservedEvent,
    cursor_of,
    observed,
    parse_cursor,
)
from lash.serve._stream import KEEPALIVE, AgUiAdapter, sse_message, with_keepalive

log = logging.getLogger("lash.serve")

#: Committed events a feed keeps for clients that join it a little behind.
RING = 1000

#: Items a subscriber may have waiting before it is moved to an observation of its own.
MAX_PENDING = 10_000


@attrs.frozen
class Shared:
    """One event, encoded once: ``data`` its JSON form, ``sse`` its SSE message; ``position``
    the committed position after it (a committed event's or a gap's sequence number; ``None``
    for a live event)."""

    data: dict[str, Any]
    sse: bytes
    position: int | None


def share(item: ObservedEvent | ObservationGap, after: str | None) -> Shared:
    data = event_json(item, after=after)
    position = None if data["live"] else parse_cursor(data["session_id"], data["cursor"])
    return Shared(data, sse_message(data, id=data["cursor"]), position)


class _Fallen:
    """Put in a subscriber's queue when it fell too far behind."""


_FALLEN = _Fallen()


class _End:
    """Put in a subscriber's queue when the server stops: its stream ends."""


_END = _End()


@attrs.define(eq=False)
class Subscriber:
    position: int
    queue: asyncio.Queue[Shared | _Fallen | _End | BaseException] = attrs.field(
        factory=asyncio.Queue
    )
    fallen: bool = False

    def push(self, item: Shared | _Fallen | _End | BaseException) -> None:
        if not self.fallen:
            self.queue.put_nowait(item)


class Feed:
    """The shared observation of one session, from committed position ``start`` on."""

    def __init__(self, feeds: Feeds, session_id: str, start: int) -> None:
        self._feeds = feeds
        self.session_id = session_id
        #: every committed event after ``base`` is in the ring or yet to come
        self.base = start
        self.last = start
        self.ring: collections.deque[Shared] = collections.deque()
        self.subscribers: set[Subscriber] = set()
        self.ready = asyncio.Event()
        self.failed: BaseException | None = None
        #: the last subscriber left: the feed is stopping (joining it would wait forever)
        self.closing = False
        #: clients waiting for it to be ready, to join it
        self.waiting = 0
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        # observe() is typed as an AsyncIterator; it is an async generator, closed here.
        items = cast(
            "AsyncGenerator[ObservedEvent | ObservationGap, None]",
            self._feeds.core.observe(self.session_id, after=cursor_of(self.last)),
        )
        try:
            async with contextlib.aclosing(items):
                ticking = with_keepalive(items, None)
                async with contextlib.aclosing(ticking):
                    async for item in ticking:
                        if item is None:
                            self.ready.set()  # subscribed: nothing committed from now is missed
                            continue
                        self._publish(share(item, cursor_of(self.last)))
        except Exception as exc:
            # The observation failed (a store error): its followers go on with observations
            # of their own, from their cursors.
            log.warning("lash serve: observing session %r failed: %r", self.session_id, exc)
            self.failed = exc
            for subscriber in self.subscribers:
                subscriber.push(exc)
        finally:
            self.ready.set()
            self._feeds.forget(self)

    def _publish(self, shared: Shared) -> None:
        if shared.position is not None:
            if shared.data["type"] == "gap":
                self.ring.clear()
                self.base = shared.position
            else:
                self.ring.append(shared)
                if len(self.ring) > RING:
                    self.base = cast(int, self.ring.popleft().position)
            self.last = shared.position
        for subscriber in list(self.subscribers):
            if subscriber.queue.qsize() >= MAX_PENDING:
                subscriber.push(_FALLEN)
                subscriber.fallen = True
                self.subscribers.discard(subscriber)
            else:
                subscriber.push(shared)

    def join(self, position: int) -> Subscriber | None:
        """A subscriber after committed ``position``, with the ring's events after it queued;
        ``None`` when the ring does not reach back to it (or the feed is over)."""
        if self.closing or self.failed is not None or self.task.done() or position < self.base:
            return None
        subscriber = Subscriber(position)
        for shared in self.ring:
            if cast(int, shared.position) > position:
                subscriber.push(shared)
        self.subscribers.add(subscriber)
        return subscriber

    async def leave(self, subscriber: Subscriber) -> None:
        """Drop ``subscriber``; the last one out stops the feed (and waits for its
        observation to be closed)."""
        self.subscribers.discard(subscriber)
        if self.stop_unfollowed():
            await asyncio.wait((self.task,))

    def stop_unfollowed(self) -> bool:
        """Stop the feed if no one follows it or waits to; whether it is stopping now."""
        if self.subscribers or self.waiting or self.closing:
            return False
        self.closing = True
        self._feeds.forget(self)
        self.task.cancel()
        return True


class Feeds:
    """The feeds of one app, one per session that has followers."""

    def __init__(self, core: LashCore) -> None:
        self.core = core
        self._feeds: dict[str, Feed] = {}
        #: set when the server stops: every stream ends (and any that starts ends at once)
        self.ending = asyncio.Event()

    def end(self) -> None:
        """End every event stream, as complete responses, each once it has sent the events
        committed until now: an event stream never ends on its own, and a server that stops
        would wait for it, then cut it off (an error in its log, a broken response at the
        client). Its client reconnects and resumes from its cursor."""
        self.ending.set()
        for feed in list(self._feeds.values()):
            for subscriber in list(feed.subscribers):
                subscriber.push(_END)

    def __len__(self) -> int:
        return len(self._feeds)

    def forget(self, feed: Feed) -> None:
        if self._feeds.get(feed.session_id) is feed:
            del self._feeds[feed.session_id]

    async def _subscribe(self, session_id: str, position: int) -> tuple[Feed, Subscriber] | None:
        feed = self._feeds.get(session_id)
        if feed is None:
            page = await self.core.store.read_events(session_id, after=0, limit=0)
            if position < page.first - 1:
                return None  # out of the replay window: the client's own observation says so
            feed = self._feeds.get(session_id)  # (another client may have made it meanwhile)
            if feed is None:
                feed = self._feeds[session_id] = Feed(self, session_id, position)
        feed.waiting += 1
        try:
            await feed.ready.wait()
        except BaseException:
            # Gone before it joined (the client went away: its stream is cancelled): a feed
            # that no one follows would go on observing the session for ever.
            feed.waiting -= 1
            feed.stop_unfollowed()
            raise
        feed.waiting -= 1
        subscriber = feed.join(position)
        return None if subscriber is None else (feed, subscriber)

    async def follow(
        self, session_id: str, after: str | None, keepalive: float
    ) -> AsyncGenerator[Shared | None, None]:
        """The session's events after ``after`` (``None``: from now), as :class:`Shared`;
        ``None`` first once subscribed, then whenever ``keepalive`` seconds pass idle."""
        if self.ending.is_set():
            return
        if after is None:
            position = (await self.core.store.read_events(session_id, after=0, limit=0)).last
        else:
            position = parse_cursor(session_id, after)
        joined = await self._subscribe(session_id, position)
        if joined is None:
            own = self._own(session_id, after, position, keepalive, first=True)
            async with contextlib.aclosing(own):  # closed at once when the client goes away
                async for item in own:
                    yield item
            return
        feed, subscriber = joined
        if self.ending.is_set():  # (it joined after the feed's followers were told)
            subscriber.push(_END)
        ending = False
        try:
            yield None
            while True:
                try:
                    got = await asyncio.wait_for(subscriber.queue.get(), keepalive)
                except TimeoutError:
                    yield None
                    continue
                if isinstance(got, _End):
                    ending = True
                    break  # the server stops
                if isinstance(got, BaseException | _Fallen):
                    break  # the feed failed, or this client fell behind
                if got.position is not None:
                    if got.position <= subscriber.position:
                        continue  # (the feed started behind this client's cursor)
                    subscriber.position = got.position
                yield got
        finally:
            await feed.leave(subscriber)
        if ending:
            async for shared in self._rest(session_id, subscriber.position, after):
                yield shared
            return
        # Fell behind, or the feed failed: on with an observation of its own, from its cursor.
        own = self._own(session_id, after, subscriber.position, keepalive)
        async with contextlib.aclosing(own):
            async for item in own:
                yield item

    async def _own(
        self,
        session_id: str,
        after: str | None,
        position: int,
        keepalive: float,
        *,
        first: bool = False,
    ) -> AsyncGenerator[Shared | None, None]:
        items = cast(
            "AsyncGenerator[ObservedEvent | ObservationGap, None]",
            self.core.observe(session_id, after=cursor_of(position)),
        )
        async with contextlib.aclosing(items):
            ticking = with_keepalive(items, keepalive, self.ending)
            async with contextlib.aclosing(ticking):
                subscribed = False
                async for item in ticking:
                    if item is None:
                        if first or subscribed:
                            yield None
                        subscribed = True
                        continue
                    shared = share(item, after)
                    position = position if shared.position is None else shared.position
                    yield shared
        # (ticking ends only when the server stops)
        async for shared in self._rest(session_id, position, after):
            yield shared

    async def _rest(
        self, session_id: str, position: int, after: str | None
    ) -> AsyncGenerator[Shared, None]:
        """The server stops: the events committed after ``position`` that the stream has not
        sent yet (its turns' cancelled commits among them), read from the store, so the
        stream ends with everything committed before the server stopped."""
        while True:
            page = await self.core.store.read_events(session_id, after=position, limit=500)
            if page.events and page.events[0].seq > position + 1:
                return  # out of the replay window: the client's next stream says so
            for event in page.events:
                yield share(observed(session_id, event), after)
                position = event.seq
            if len(page.events) < 500:
                return


async def event_stream(
    feeds: Feeds,
    session_id: str,
    after: str | None,
    *,
    protocol: str = "lash",
    keepalive: float = KEEPALIVE,
) -> AsyncGenerator[bytes, None]:
    """The SSE body: ``retry:`` first (once the stream is subscribed), then each event (or
    AG-UI events), a comment when idle, until the client goes away (Starlette then cancels
    this generator, which leaves the feed or closes the observation)."""
    adapter = AgUiAdapter(session_id) if protocol == "ag-ui" else None
    first = True
    events = feeds.follow(session_id, after, keepalive)
    async with contextlib.aclosing(events):
        async for shared in events:
            if shared is None:
                yield b"retry: 1000\n\n" if first else b": keep-alive\n\n"
                first = False
            elif adapter is None:
                yield shared.sse
            else:
                for translated in adapter.translate(shared.data):
                    yield sse_message(translated, id=shared.data["cursor"])
