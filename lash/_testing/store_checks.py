"""Store conformance checks: leases, fencing tokens, compare-and-swap, races; and their helpers.

Each check is a small coroutine that takes a fresh store and raises :class:`AssertionError` (with a
message that says what the contract expects and what the store did) when the store breaks the
contract. Expected behaviour comes from the ``Store`` protocol docstrings and the design
invariants: one writer per session by a lease with a fencing token, one atomic commit per turn
guarded by that token and a head-revision compare-and-swap, an append-only history read back by
agent frame.

Checks use session ids with a random suffix and only look at the sessions they created, so they
also pass against a store whose backing (a database file, a server) already holds other sessions.
They raise ``AssertionError`` themselves rather than use ``assert``, which ``python -O`` strips.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NoReturn, TypeVar, cast

import attrs

from lash._contract.graph import (
    AssistantMessage,
    FrameBoundary,
    GraphNode,
    PluginNode,
    ToolCallNode,
    ToolResultNode,
    UserMessage,
)
from lash._contract.turn_types import SessionConfig
from lash._contract.types import ToolCall, Usage
from lash._store.protocol import Store
from lash._store.records import CommitDelta, Lease, SessionRecord, SessionSummary
from lash.errors import LeaseLost, RevisionConflict, SessionBusy

#: Lease lifetime of the checks that wait for a lease to expire (seconds).
SHORT_TTL = 0.05
#: Lease lifetime of the checks that need a lease to stay live (seconds).
LONG_TTL = 30.0
#: Waiting 4x the short TTL leaves room for a store that keeps time in milliseconds.
EXPIRY_WAIT = SHORT_TTL * 4
#: Gap between commits whose ``updated_at`` order is checked: stores need this resolution.
TICK = 0.05
#: How far a store's clock (a database server's, say) may be from this process's.
CLOCK_SLACK = 5.0

E = TypeVar("E", bound=BaseException)

# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def describe(exc: BaseException) -> str:
    """``Type: message`` of an exception, as failure reports show it."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def short(value: object, limit: int = 400) -> str:
    """``repr(value)``, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 20]}... ({len(text)} chars)"


def fail(message: str) -> NoReturn:
    """Fail the running check (an ``AssertionError``, which ``python -O`` does not strip)."""
    raise AssertionError(message)


def expect(condition: bool, message: str) -> None:
    """Fail with ``message`` unless ``condition``."""
    if not condition:
        fail(message)


def expect_equal(actual: object, expected: object, what: str) -> None:
    """Fail unless ``actual == expected``, saying what was compared and both values."""
    if actual != expected:
        fail(f"{what}: expected {short(expected)}, got {short(actual)}")


async def expect_raises(exc_type: type[E], call: Awaitable[object], what: str) -> E:
    """Await ``call`` and return the ``exc_type`` error it must raise; fail otherwise."""
    try:
        result = await call
    except exc_type as exc:
        return exc
    except Exception as exc:
        raise AssertionError(f"{what}: expected {exc_type.__name__}, got {describe(exc)}") from exc
    fail(f"{what}: expected {exc_type.__name__}, but it returned {short(result)}")


def session_id_for(label: str) -> str:
    """A session id no other check (or earlier run against the same database) uses."""
    return f"conformance-{label}-{uuid.uuid4().hex[:12]}"


async def new_lease(
    store: Store, label: str, owner: str = "owner-a", ttl: float = LONG_TTL
) -> Lease:
    """A lease on a new session id."""
    return await store.acquire_lease(session_id_for(label), owner, ttl=ttl)


async def commit_at(store: Store, lease: Lease, revision: int, **delta: Any) -> int:
    """Commit on ``lease``'s session at head ``revision`` and check the returned revision."""
    new = await store.commit(
        lease.session_id, lease=lease, expected_revision=revision, delta=CommitDelta(**delta)
    )
    expect_equal(new, revision + 1, f"commit at revision {revision} returned revision")
    return new


async def load_record(store: Store, session_id: str, *, full: bool = False) -> SessionRecord:
    """``load()`` of a session that must exist."""
    record = await store.load(session_id, full=full)
    if record is None:
        fail(f"load({session_id!r}, full={full}) returned None for a committed session")
    expect_equal(record.session_id, session_id, "record.session_id")
    return record


async def summaries_of(store: Store, session_ids: Sequence[str]) -> list[SessionSummary]:
    """The rows of ``session_ids`` in ``list_sessions()`` order (other sessions are ignored)."""
    return [row for row in await store.list_sessions() if row.session_id in session_ids]


def expect_nodes(actual: Sequence[GraphNode], expected: Sequence[GraphNode], what: str) -> None:
    """Fail at the first node that differs (or on a length mismatch), naming its index."""
    for index, (got, want) in enumerate(zip(actual, expected, strict=False)):
        if got != want:
            fail(f"{what}: node {index} differs: expected {short(want)}, got {short(got)}")
    if len(actual) != len(expected):
        fail(f"{what}: expected {len(expected)} nodes, got {len(actual)}")


@attrs.define
class Chain:
    """Builds one session's nodes, linked by ``parent_id``, in frames and turns."""

    prefix: str = "n"
    frame: str = "frame-0"
    turn: int = 1
    leaf: str | None = None
    count: int = 0
    frames: int = 0

    def _base(self) -> dict[str, Any]:
        self.count += 1
        node_id = f"{self.prefix}{self.count}"
        base = {"id": node_id, "parent_id": self.leaf, "frame_id": self.frame, "turn": self.turn}
        self.leaf = node_id
        return base

    def boundary(self, *, reason: str = "root", summary: str | None = None) -> FrameBoundary:
        previous = self.frame if self.frames else None
        self.frames += 1
        self.frame = f"{self.prefix}frame-{self.frames}"
        return FrameBoundary(
            **self._base(), previous_frame_id=previous, reason=reason, summary=summary
        )

    def user(self, text: str, *, items: tuple[Any, ...] = ()) -> UserMessage:
        return UserMessage(**self._base(), text=text, items=items)

    def assistant(
        self,
        text: str,
        *,
        tool_calls: tuple[ToolCall, ...] = (),
        usage: Usage = Usage(),
        model: str | None = None,
    ) -> AssistantMessage:
        return AssistantMessage(
            **self._base(), text=text, tool_calls=tool_calls, usage=usage, model=model
        )

    def tool_call(self, call: ToolCall, *, plugin: str | None = None) -> ToolCallNode:
        return ToolCallNode(**self._base(), call=call, plugin=plugin)

    def tool_result(
        self,
        call_id: str,
        name: str,
        content: str,
        *,
        is_error: bool = False,
        projected: str | None = None,
    ) -> ToolResultNode:
        return ToolResultNode(
            **self._base(),
            call_id=call_id,
            name=name,
            content=content,
            is_error=is_error,
            projected=projected,
        )

    def plugin(self, plugin: str, kind: str, data: Any = None) -> PluginNode:
        return PluginNode(**self._base(), plugin=plugin, kind=kind, data=data)

    def exchange(self, question: str, answer: str) -> tuple[GraphNode, ...]:
        """One plain turn: a user message and the assistant's answer."""
        nodes = (self.user(question), self.assistant(answer))
        self.turn += 1
        return nodes


# --------------------------------------------------------------------------------------------
# Leases
# --------------------------------------------------------------------------------------------


async def check_store_protocol(store: Store) -> None:
    """The factory builds an object with every method of the ``Store`` protocol."""
    missing = [
        name
        for name in (
            "acquire_lease",
            "renew_lease",
            "release_lease",
            "load",
            "commit",
            "delete",
            "list_sessions",
            "close",
        )
        if not callable(getattr(store, name, None))
    ]
    expect(not missing, f"{type(store).__name__} lacks Store methods: {', '.join(missing)}")
    expect(isinstance(store, Store), f"{type(store).__name__} is not a lash.store.Store")


async def check_lease_acquire_new(store: Store) -> None:
    """A lease on a session id with no commits is granted for ``ttl`` seconds; load stays None."""
    sid = session_id_for("acquire")
    before = time.time()
    lease = await store.acquire_lease(sid, "owner-a", ttl=LONG_TTL)
    after = time.time()
    expect(
        isinstance(lease, Lease), f"acquire_lease returned {short(lease)}, not a lash.store.Lease"
    )
    expect_equal(lease.session_id, sid, "lease.session_id")
    expect_equal(lease.owner, "owner-a", "lease.owner")
    expect(type(lease.token) is int, f"lease.token must be an int, got {lease.token!r}")
    expect(
        before + LONG_TTL - CLOCK_SLACK <= lease.expires_at <= after + LONG_TTL + CLOCK_SLACK,
        f"lease.expires_at must be now + ttl ({LONG_TTL} s) in epoch seconds; it is "
        f"{lease.expires_at - after:+.3f} s from now",
    )
    expect(await store.load(sid) is None, "load() must return None for a lease-only session")


async def check_lease_reacquire_same_owner(store: Store) -> None:
    """Re-acquiring one's own live lease refreshes its expiry and keeps its fencing token."""
    first = await new_lease(store, "reacquire", ttl=1.0)
    again = await store.acquire_lease(first.session_id, "owner-a", ttl=LONG_TTL)
    expect_equal(again.token, first.token, "fencing token after re-acquiring one's own lease")
    expect_equal(again.owner, "owner-a", "lease.owner after re-acquiring")
    expect(
        again.expires_at > first.expires_at + LONG_TTL / 2,
        f"re-acquiring with ttl={LONG_TTL} must push expires_at out; it moved by "
        f"{again.expires_at - first.expires_at:+.3f} s",
    )
    # The token is what fences writers: the earlier Lease object still commits.
    await commit_at(store, first, 0, nodes=Chain().exchange("hi", "hello"), turns=1)


async def check_lease_busy(store: Store) -> None:
    """A second owner gets SessionBusy (naming the holder) while the lease is live."""
    lease = await new_lease(store, "busy")
    sid = lease.session_id
    for when in ("before the first commit", "after a commit"):
        busy = await expect_raises(
            SessionBusy,
            store.acquire_lease(sid, "owner-b", ttl=LONG_TTL),
            f"acquire_lease by a second owner while the lease is live ({when})",
        )
        expect_equal(busy.owner, "owner-a", "SessionBusy.owner")
        expect_equal(busy.session_id, sid, "SessionBusy.session_id")
        expect(
            abs(busy.expires_at - lease.expires_at) <= CLOCK_SLACK,
            f"SessionBusy.expires_at ({busy.expires_at}) must be the holder's lease expiry "
            f"({lease.expires_at})",
        )
        if when == "before the first commit":
            # The refused owner must not have disturbed the holder.
            await commit_at(store, lease, 0, nodes=Chain().exchange("q", "a"), turns=1)


async def check_lease_takeover_after_expiry(store: Store) -> None:
    """An expired lease is taken over with a strictly higher token; the old one cannot commit."""
    old = await new_lease(store, "takeover", ttl=SHORT_TTL)
    sid = old.session_id
    chain = Chain()
    await commit_at(store, old, 0, nodes=chain.exchange("q1", "a1"), turns=1)
    await asyncio.sleep(EXPIRY_WAIT)
    new = await store.acquire_lease(sid, "owner-b", ttl=LONG_TTL)
    expect_equal(new.owner, "owner-b", "lease.owner after takeover")
    expect(
        new.token > old.token,
        f"takeover must yield a higher fencing token than {old.token}, got {new.token}",
    )
    await expect_raises(
        LeaseLost,
        store.commit(sid, lease=old, expected_revision=1, delta=CommitDelta(turns=1)),
        "commit with the lease that was taken over",
    )
    await expect_raises(
        LeaseLost, store.renew_lease(old, ttl=LONG_TTL), "renew of the lease that was taken over"
    )
    await expect_raises(
        SessionBusy,
        store.acquire_lease(sid, "owner-a", ttl=LONG_TTL),
        "re-acquire by the previous owner while the new lease is live",
    )
    await commit_at(store, new, 1, nodes=chain.exchange("q2", "a2"), turns=1)


async def check_lease_expired_still_commits(store: Store) -> None:
    """An expired lease nobody took over is still current: its holder commits and renews."""
    lease = await new_lease(store, "expired-commit", ttl=SHORT_TTL)
    await asyncio.sleep(EXPIRY_WAIT)
    chain = Chain()
    # Only a change of hands moves the fencing token; expiry alone does not.
    await commit_at(store, lease, 0, nodes=chain.exchange("late", "still mine"), turns=1)
    renewed = await store.renew_lease(lease, ttl=LONG_TTL)
    await commit_at(store, renewed, 1, nodes=chain.exchange("q", "a"), turns=1)


async def check_lease_renew(store: Store) -> None:
    """renew_lease extends a current lease, even one that has just expired, keeping its token."""
    lease = await new_lease(store, "renew", ttl=1.0)
    before = time.time()
    renewed = await store.renew_lease(lease, ttl=LONG_TTL)
    expect_equal(renewed.token, lease.token, "fencing token after renew")
    expect_equal(renewed.owner, lease.owner, "lease.owner after renew")
    expect_equal(renewed.session_id, lease.session_id, "lease.session_id after renew")
    expect(
        renewed.expires_at >= before + LONG_TTL - CLOCK_SLACK,
        f"renew with ttl={LONG_TTL} must set expires_at to about now + ttl; it is "
        f"{renewed.expires_at - before:+.3f} s from now",
    )
    await commit_at(store, renewed, 0, turns=1)

    expired = await new_lease(store, "renew-expired", ttl=SHORT_TTL)
    await asyncio.sleep(EXPIRY_WAIT)
    revived = await store.renew_lease(expired, ttl=LONG_TTL)
    expect_equal(revived.token, expired.token, "fencing token after renewing an expired lease")
    busy = await expect_raises(
        SessionBusy,
        store.acquire_lease(expired.session_id, "owner-b", ttl=LONG_TTL),
        "acquire_lease by another owner after the holder renewed its expired lease",
    )
    expect_equal(busy.owner, expired.owner, "SessionBusy.owner")


async def check_lease_renew_stale(store: Store) -> None:
    """renew_lease raises LeaseLost for a taken-over lease, a forged token, or no lease at all."""
    old = await new_lease(store, "renew-stale", ttl=SHORT_TTL)
    await asyncio.sleep(EXPIRY_WAIT)
    new = await store.acquire_lease(old.session_id, "owner-b", ttl=LONG_TTL)
    lost = await expect_raises(
        LeaseLost, store.renew_lease(old, ttl=LONG_TTL), "renew of a lease taken over"
    )
    expect_equal(lost.session_id, old.session_id, "LeaseLost.session_id")
    forged = attrs.evolve(new, token=new.token + 1)
    await expect_raises(
        LeaseLost, store.renew_lease(forged, ttl=LONG_TTL), "renew with a token never granted"
    )
    nobody = Lease(session_id_for("renew-none"), "owner-a", 1, time.time() + LONG_TTL)
    await expect_raises(
        LeaseLost, store.renew_lease(nobody, ttl=LONG_TTL), "renew on a session with no lease"
    )
    # The failed renewals left the real holder in place.
    busy = await expect_raises(
        SessionBusy,
        store.acquire_lease(old.session_id, "owner-c", ttl=LONG_TTL),
        "acquire_lease by a third owner after failed renewals",
    )
    expect_equal(busy.owner, "owner-b", "SessionBusy.owner")


async def check_lease_release(store: Store) -> None:
    """After release another owner acquires at once, with a higher token; the old lease is dead."""
    old = await new_lease(store, "release")
    sid = old.session_id
    chain = Chain()
    await commit_at(store, old, 0, nodes=chain.exchange("q1", "a1"), turns=1)
    await store.release_lease(old)
    new = await store.acquire_lease(sid, "owner-b", ttl=LONG_TTL)
    expect(
        new.token > old.token,
        f"acquiring after a release must yield a higher token than {old.token}, got {new.token}",
    )
    await expect_raises(
        LeaseLost,
        store.commit(sid, lease=old, expected_revision=1, delta=CommitDelta(turns=1)),
        "commit with a released lease after another owner acquired the session",
    )
    await commit_at(store, new, 1, nodes=chain.exchange("q2", "a2"), turns=1)

    # Releasing a lease-only session frees it too.
    lease_only = await new_lease(store, "release-lease-only")
    await store.release_lease(lease_only)
    other = await store.acquire_lease(lease_only.session_id, "owner-b", ttl=LONG_TTL)
    expect(other.token > lease_only.token, "token after release of a lease-only session")


async def check_lease_release_stale_is_noop(store: Store) -> None:
    """Releasing a lease that is no longer current changes nothing for the current holder."""
    old = await new_lease(store, "release-stale", ttl=SHORT_TTL)
    await asyncio.sleep(EXPIRY_WAIT)
    new = await store.acquire_lease(old.session_id, "owner-b", ttl=LONG_TTL)
    await store.release_lease(old)
    busy = await expect_raises(
        SessionBusy,
        store.acquire_lease(old.session_id, "owner-c", ttl=LONG_TTL),
        "acquire_lease after the previous holder released its stale lease",
    )
    expect_equal(busy.owner, "owner-b", "SessionBusy.owner")
    await commit_at(store, new, 0, turns=1)


async def check_concurrent_acquire(store: Store) -> None:
    """Owners racing for one free session: exactly one gets the lease, the others SessionBusy."""
    sid = session_id_for("race-acquire")
    owners = [f"racer-{i}" for i in range(4)]
    results = await asyncio.gather(
        *(store.acquire_lease(sid, owner, ttl=LONG_TTL) for owner in owners),
        return_exceptions=True,
    )
    winners = [r for r in results if isinstance(r, Lease)]
    expect(len(winners) == 1, f"exactly one racing owner must get the lease; got {results!r}")
    for result in results:
        if not isinstance(result, Lease):
            expect(
                isinstance(result, SessionBusy),
                f"a losing owner must get SessionBusy, got {short(result)}",
            )
            expect_equal(cast(SessionBusy, result).owner, winners[0].owner, "SessionBusy.owner")


# --------------------------------------------------------------------------------------------
# Commits: fencing, compare-and-swap, revisions
# --------------------------------------------------------------------------------------------


async def check_commit_stale_lease(store: Store) -> None:
    """A commit with a lease that is not current raises LeaseLost and writes nothing."""
    old = await new_lease(store, "stale-commit", ttl=SHORT_TTL)
    sid = old.session_id
    chain = Chain()
    await commit_at(
        store,
        old,
        0,
        nodes=(chain.boundary(), *chain.exchange("q", "a")),
        turns=1,
        plugin_states={"probe": {"n": 1}},
        usage={"model": Usage(3, 4, 0)},
    )
    before = await load_record(store, sid, full=True)
    await asyncio.sleep(EXPIRY_WAIT)
    new = await store.acquire_lease(sid, "owner-b", ttl=LONG_TTL)
    stale_delta = CommitDelta(
        nodes=chain.exchange("lost", "lost"),
        plugin_states={"probe": {"n": 2}},
        config=SessionConfig(model="lost"),
        usage={"model": Usage(100, 100, 100)},
        turns=1,
    )
    for what, lease in (
        ("the taken-over lease", old),
        ("a token the store never granted", attrs.evolve(new, token=new.token + 1)),
    ):
        lost = await expect_raises(
            LeaseLost,
            store.commit(sid, lease=lease, expected_revision=1, delta=stale_delta),
            f"commit with {what}",
        )
        expect_equal(lost.session_id, sid, "LeaseLost.session_id")
        expect_equal(
            await store.load(sid, full=True), before, f"the session after a commit with {what}"
        )
    nobody = Lease(session_id_for("no-lease"), "owner-a", 1, time.time() + LONG_TTL)
    await expect_raises(
        LeaseLost,
        store.commit(nobody.session_id, lease=nobody, expected_revision=0, delta=stale_delta),
        "commit on a session nobody holds a lease on",
    )
    expect(await store.load(nobody.session_id) is None, "a refused first commit wrote a session")


async def check_commit_foreign_lease(store: Store) -> None:
    """A commit with the lease of another session raises LeaseLost and writes nothing."""
    mine = await new_lease(store, "foreign-target")
    theirs = await new_lease(store, "foreign-source")  # same owner, and likely the same token
    await commit_at(store, mine, 0, nodes=Chain().exchange("q", "a"), turns=1)
    before = await load_record(store, mine.session_id, full=True)
    await expect_raises(
        LeaseLost,
        store.commit(
            mine.session_id, lease=theirs, expected_revision=1, delta=CommitDelta(turns=1)
        ),
        f"commit on {mine.session_id!r} with the lease of {theirs.session_id!r}",
    )
    expect_equal(await store.load(mine.session_id, full=True), before, "the session afterwards")


async def check_commit_revision_conflict(store: Store) -> None:
    """A commit at the wrong head revision raises RevisionConflict and writes nothing."""
    lease = await new_lease(store, "conflict")
    sid = lease.session_id
    delta = CommitDelta(nodes=Chain(prefix="x").exchange("lost", "lost"), turns=1)
    conflict = await expect_raises(
        RevisionConflict,
        store.commit(sid, lease=lease, expected_revision=1, delta=delta),
        "first commit expecting revision 1",
    )
    expect_equal(
        (conflict.expected, conflict.actual), (1, 0), "RevisionConflict (expected, actual)"
    )
    expect(await store.load(sid) is None, "a refused first commit wrote a session")
    await commit_at(store, lease, 0, nodes=Chain().exchange("q", "a"), turns=1)
    before = await load_record(store, sid, full=True)
    for expected in (0, 2, 7):
        conflict = await expect_raises(
            RevisionConflict,
            store.commit(sid, lease=lease, expected_revision=expected, delta=delta),
            f"commit expecting revision {expected} at revision 1",
        )
        expect_equal(conflict.session_id, sid, "RevisionConflict.session_id")
        expect_equal(
            (conflict.expected, conflict.actual),
            (expected, 1),
            "RevisionConflict (expected, actual)",
        )
        expect_equal(await store.load(sid, full=True), before, "the session after the conflict")
    await commit_at(store, lease, 1, turns=1)


# --------------------------------------------------------------------------------------------
# Races
# --------------------------------------------------------------------------------------------


async def check_concurrent_commits_same_lease(store: Store) -> None:
    """Two commits racing from the same head: exactly one wins, the other RevisionConflict."""
    lease = await new_lease(store, "race-commit")
    sid = lease.session_id
    chain = Chain()
    base = (chain.boundary(), *chain.exchange("q", "a"))
    await commit_at(store, lease, 0, nodes=base, turns=1)
    branches = [Chain(prefix=f"b{i}-", leaf=chain.leaf, frame=chain.frame) for i in range(2)]
    deltas = [
        CommitDelta(
            nodes=branch.exchange(f"branch {i}", f"answer {i}"),
            plugin_states={"probe": {"branch": i}},
            usage={"turn": Usage(i + 1, 0, 0)},
            turns=1,
        )
        for i, branch in enumerate(branches)
    ]
    results = await asyncio.gather(
        *(store.commit(sid, lease=lease, expected_revision=1, delta=d) for d in deltas),
        return_exceptions=True,
    )
    won = [i for i, r in enumerate(results) if r == 2]
    lost = [i for i, r in enumerate(results) if isinstance(r, RevisionConflict)]
    expect(
        len(won) == 1 and len(lost) == 1,
        f"of two commits at revision 1, one must return 2 and one raise RevisionConflict; "
        f"got {results!r}",
    )
    winner = deltas[won[0]]
    record = await load_record(store, sid, full=True)
    expect_nodes(record.nodes, base + winner.nodes, "nodes after the race (winner's only)")
    got = (record.revision, dict(record.plugin_states), dict(record.usage), record.turns)
    want = (2, dict(winner.plugin_states), dict(winner.usage), 2)
    expect_equal(got, want, "(revision, plugin_states, usage, turns) after the race")


async def check_concurrent_commits_two_leases(store: Store) -> None:
    """A stale and a current lease racing to commit: the current one wins, the stale LeaseLost."""
    old = await new_lease(store, "race-leases", ttl=SHORT_TTL)
    sid = old.session_id
    chain = Chain()
    base = (chain.boundary(), *chain.exchange("q", "a"))
    await commit_at(store, old, 0, nodes=base, turns=1)
    await asyncio.sleep(EXPIRY_WAIT)
    new = await store.acquire_lease(sid, "owner-b", ttl=LONG_TTL)
    stale = CommitDelta(nodes=Chain(prefix="stale-").exchange("s", "s"), turns=1)
    current = CommitDelta(nodes=Chain(prefix="current-").exchange("c", "c"), turns=1)
    results = await asyncio.gather(
        store.commit(sid, lease=old, expected_revision=1, delta=stale),
        store.commit(sid, lease=new, expected_revision=1, delta=current),
        return_exceptions=True,
    )
    expect(
        isinstance(results[0], LeaseLost) and results[1] == 2,
        f"the stale lease must get LeaseLost and the current one revision 2; got {results!r}",
    )
    record = await load_record(store, sid, full=True)
    expect_nodes(record.nodes, base + current.nodes, "nodes after the race (current's only)")


#: The checks of this module, in the order they run.
CHECKS: tuple[Callable[[Store], Awaitable[None]], ...] = (
    check_store_protocol,
    check_lease_acquire_new,
    check_lease_reacquire_same_owner,
    check_lease_busy,
    check_lease_takeover_after_expiry,
    check_lease_expired_still_commits,
    check_lease_renew,
    check_lease_renew_stale,
    check_lease_release,
    check_lease_release_stale_is_noop,
    check_concurrent_acquire,
    check_commit_stale_lease,
    check_commit_foreign_lease,
    check_commit_revision_conflict,
    check_concurrent_commits_same_lease,
    check_concurrent_commits_two_leases,
)
