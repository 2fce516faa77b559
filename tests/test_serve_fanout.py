"""lash serve's shared observation (``lash.serve._fanout``): many streams of one session read the
store once per change; a client joins with its cursor, behind the feed or older than its ring,
or falls behind, and gets every committed event in order all the same."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import pytest

import lash
import lash._kernel.observation
import lash.testing
from lash.serve import _fanout
from lash.serve._fanout import Feeds, Shared
from lash.store import EventDraft

pytestmark = pytest.mark.anyio


def make_core(tmp_path: Path) -> lash.LashCore:
    return lash.LashCore(plugins=["stores"], autoload=False, store=f"sqlite:///{tmp_path}/lash.db")


class Reader:
    """One follower: the committed cursors it got, in order."""

    def __init__(self, feeds: Feeds, after: str | None) -> None:
        self.events: AsyncGenerator[Shared | None, None] = feeds.follow("s", after, 60)
        self.cursors: list[str] = []

    async def subscribe(self) -> None:
        assert await anext(self.events) is None

    async def read_until(self, cursor: str) -> list[str]:
        while not self.cursors or self.cursors[-1] != cursor:
            shared = await anext(self.events)
            if shared is not None and shared.position is not None:
                self.cursors.append(shared.data["cursor"])
        return self.cursors

    async def close(self) -> None:
        await self.events.aclose()


async def enqueue(core: lash.LashCore, n: int) -> str:
    for i in range(n):
        await core.enqueue("s", f"q{i}")
    return (await core.current("s")).cursor


def cursors(first: int, last: int) -> list[str]:
    return [f"e{n}" for n in range(first, last + 1)]


async def test_followers_share_one_read_of_the_store(tmp_path: Path, monkeypatch: Any) -> None:
    """Ten followers of one session: the store's event log is read as often as for one."""
    reads = {"n": 0}

    async def run(followers: int) -> int:
        (tmp_path / str(followers)).mkdir()
        async with make_core(tmp_path / str(followers)) as core:
            original = core.store.read_events

            async def counting(*args: Any, **kwargs: Any) -> Any:
                reads["n"] += 1
                return await original(*args, **kwargs)

            monkeypatch.setattr(core.store, "read_events", counting)
            await core.enqueue("s", "start")
            feeds = Feeds(core)
            readers = [Reader(feeds, "e1") for _ in range(followers)]
            for reader in readers:
                await reader.subscribe()
            reads["n"] = 0
            # In lockstep (each change reaches every follower before the next one is made),
            # so the count does not depend on how the changes happen to batch up.
            for i in range(5):
                last = await enqueue(core, 1)
                for reader in readers:
                    assert await reader.read_until(last) == cursors(2, 2 + i)
            for reader in readers:
                await reader.close()
            assert len(feeds) == 0 and not core.observed("s")
            return reads["n"]

    one = await run(1)
    ten = await run(10)
    assert one <= 2 * 5 + 1, one  # a read per change, and one more that finds nothing new
    assert ten == one, (one, ten)


async def test_joining_behind_or_before_the_ring(tmp_path: Path, monkeypatch: Any) -> None:
    """With a ring of 3: a client resuming within it is served from it; one resuming before it
    follows its own observation; both get every committed event after their cursor, in order."""
    monkeypatch.setattr(_fanout, "RING", 3)
    async with make_core(tmp_path) as core:
        await core.enqueue("s", "start")
        feeds = Feeds(core)
        first = Reader(feeds, "e1")
        await first.subscribe()
        last = await enqueue(core, 6)  # e2..e7; the ring keeps e5..e7
        assert await first.read_until(last) == cursors(2, 7)
        within, before = Reader(feeds, "e5"), Reader(feeds, "e2")
        await within.subscribe()
        await before.subscribe()
        last = await enqueue(core, 2)  # e8, e9
        assert await within.read_until(last) == cursors(6, 9)
        assert await before.read_until(last) == cursors(3, 9)
        for reader in (first, within, before):
            await reader.close()
        assert not core.observed("s")


async def test_a_follower_that_falls_behind_goes_on_from_its_cursor(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """A follower with more than MAX_PENDING events waiting leaves the feed and follows its own
    observation from its cursor: nothing missed, nothing twice."""
    monkeypatch.setattr(_fanout, "MAX_PENDING", 2)
    async with make_core(tmp_path) as core:
        await core.enqueue("s", "start")
        feeds = Feeds(core)
        fast, slow = Reader(feeds, "e1"), Reader(feeds, "e1")
        await fast.subscribe()
        await slow.subscribe()
        last = "e1"
        for _ in range(4):  # the fast one keeps up; the slow one reads nothing meanwhile
            last = await enqueue(core, 1)
            await fast.read_until(last)
        assert await slow.read_until(last) == cursors(2, 5)
        last = await enqueue(core, 2)
        assert await slow.read_until(last) == cursors(2, 7)
        assert await fast.read_until(last) == cursors(2, 7)
        for reader in (fast, slow):
            await reader.close()
        assert len(feeds) == 0 and not core.observed("s")


async def test_a_follower_goes_on_when_the_shared_observation_fails(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """The feed's read of the store fails once: its follower goes on with an observation of its
    own, from its cursor, and misses nothing."""
    async with make_core(tmp_path) as core:
        await core.enqueue("s", "start")
        feeds = Feeds(core)
        reader = Reader(feeds, "e1")
        await reader.subscribe()
        original = core.store.read_events
        failures = {"left": 1}

        async def flaky(*args: Any, **kwargs: Any) -> Any:
            if failures["left"]:
                failures["left"] -= 1
                raise OSError("the disk hiccuped")
            return await original(*args, **kwargs)

        monkeypatch.setattr(core.store, "read_events", flaky)
        last = await enqueue(core, 3)
        assert await reader.read_until(last) == cursors(2, 4)
        assert failures["left"] == 0
        await reader.close()
        assert len(feeds) == 0 and not core.observed("s")


async def test_an_observer_that_reads_nothing_holds_a_bounded_backlog(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """An observation whose reader stalls (a client of lash serve that stopped reading, on an
    observation of its own) while the session's turns stream: at most LIVE_BACKLOG live events
    wait for it, not every one since it stalled; once it reads again, it gets every committed
    event, in order, and live events again."""
    monkeypatch.setattr(lash._kernel.observation, "LIVE_BACKLOG", 10)
    async with make_core(tmp_path) as core:
        await core.enqueue("s", "start")
        stream = core.observe("s", after="e0")
        async with contextlib.aclosing(stream):
            first = await anext(stream)  # subscribed; then it reads nothing for a while
            assert isinstance(first, lash.ObservedEvent) and first.cursor == "e1"
            for n in range(1000):
                core.notify("s", live=[EventDraft("text_delta", {"turn_id": "t", "text": str(n)})])
            last = await enqueue(core, 2)  # e2, e3
            live: list[str] = []
            committed: list[str] = []
            while not committed or committed[-1] != last:
                item = await anext(stream)
                assert isinstance(item, lash.ObservedEvent)
                (live if item.live else committed).append(item.data.get("text", item.cursor))
            assert committed == cursors(2, 3)
            assert live == [str(n) for n in range(len(live))] and 0 < len(live) <= 10, live
            # Caught up: live events reach it again.
            core.notify("s", live=[EventDraft("text_delta", {"turn_id": "t", "text": "again"})])
            item = await anext(stream)
            assert isinstance(item, lash.ObservedEvent) and item.data["text"] == "again"


async def test_a_client_gone_before_its_feed_is_ready_leaves_nothing_running(
    tmp_path: Path,
) -> None:
    """The first follower of a session goes away (its stream cancelled) while the feed it made
    is still subscribing: the feed stops, and nothing observes the session any more."""
    async with make_core(tmp_path) as core:
        await core.enqueue("s", "start")
        feeds = Feeds(core)
        reader = Reader(feeds, "e1")
        subscribing = asyncio.ensure_future(reader.subscribe())
        while not len(feeds):  # the feed is made: the follower now waits for it to be ready
            await asyncio.sleep(0)
        subscribing.cancel()
        await asyncio.wait((subscribing,))
        assert subscribing.cancelled()
        await reader.close()
        for _ in range(100):
            if not len(feeds) and not core.observed("s"):
                break
            await asyncio.sleep(0.01)
        assert len(feeds) == 0 and not core.observed("s")


async def _turn_during_a_slow_read(
    tmp_path: Path, *plugins: object
) -> tuple[lash.TurnResult, list[lash.ObservedEvent]]:
    """Observe session "s" of a core (the scripted answer "Live answer" in chunks of 4, and
    ``plugins``), hold the observer's next read of the log, run and commit turn t1 meanwhile,
    then let the read go on: the turn's result and every item the observer yielded."""
    script = lash.testing.Script([{"text": "Live answer", "chunk_size": 4}])
    store = f"sqlite:///{tmp_path}/lash.db"
    async with lash.LashCore(
        plugins=["standard", "stores", script, *plugins],
        autoload=False,
        store=store,
        provider="script",
    ) as core:
        original = core.store.read_events
        reading = asyncio.Event()
        release = asyncio.Event()
        hold = {"on": False}

        async def slow(*args: Any, **kwargs: Any) -> Any:
            if hold["on"] and kwargs.get("limit") != 0:
                hold["on"] = False
                reading.set()
                await release.wait()  # the turn runs and commits meanwhile
            return await original(*args, **kwargs)

        core.store.read_events = slow  # type: ignore[method-assign]
        seen: list[lash.ObservedEvent] = []

        async def observe() -> None:
            async with contextlib.aclosing(core.observe("s")) as stream:
                async for item in stream:
                    assert isinstance(item, lash.ObservedEvent)
                    seen.append(item)

        observing = asyncio.ensure_future(observe())
        while not core.observed("s"):
            await asyncio.sleep(0)
        await asyncio.sleep(0.05)  # waiting for news now
        hold["on"] = True
        core.notify("s")  # wakes it: it reads the log (slowly)
        await reading.wait()
        session = await core.session("s").open()
        result = await session.turn("go", id="t1").run()
        await session.close()
        release.set()
        while not any(e.type == "turn_committed" for e in seen):
            await asyncio.sleep(0.01)
        core.notify("s")  # anything still queued comes out now
        await asyncio.sleep(0.1)
        observing.cancel()
        await asyncio.wait((observing,))
    return result, seen


async def test_a_turns_live_events_never_come_after_its_commit(tmp_path: Path) -> None:
    """A turn runs and commits while the observer is reading the log (a quick turn, a slow
    read): the observer yields the turn's live events before its commit, as they happened (not
    after: a client drew them as a turn still running, an AG-UI run that never ends)."""
    result, seen = await _turn_during_a_slow_read(tmp_path)
    assert result.text == "Live answer"
    types = [e.type for e in seen]
    committed = types.index("turn_committed")
    assert [e.data["text"] for e in seen[:committed] if e.type == "text_delta"] == [
        "Live",
        " ans",
        "wer",
    ], types
    assert "text_delta" not in types[committed:], types


class Announcer:
    """A before_turn hook that emits a plugin event (shown live at once, then committed with
    the turn), ahead of the turn's streamed text."""

    lash_plugin = lash.PluginMeta(name="announcer")

    @lash.hookimpl
    async def before_turn(self, turn: lash.TurnView) -> None:
        await turn.session.emit("announce", {"input": turn.input})


async def test_live_events_of_a_turn_committed_during_a_read_keep_their_order(
    tmp_path: Path,
) -> None:
    """A turn that emits a plugin event, then streams text, runs and commits while the
    observer reads the log: its live events all come before its turn_committed, in the order
    they happened (the live plugin event first), not the text first and the plugin event after
    the commit, shown live for a turn that is over."""
    _, seen = await _turn_during_a_slow_read(tmp_path, Announcer())
    end = [e.type for e in seen].index("turn_committed")
    live = [(e.type, e.data.get("text")) for e in seen[:end] if e.live]
    assert live == [
        ("plugin_event", None),
        ("text_delta", "Live"),
        ("text_delta", " ans"),
        ("text_delta", "wer"),
    ], [(e.type, e.live) for e in seen]
    assert not any(e.live for e in seen[end:]), [(e.type, e.live) for e in seen]
