"""The store conformance suite of lash.testing: the reference store, broken stores, the runner."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import attrs
import pytest

import lash
import lash.store
import lash.testing
from lash.testing import STORE_CHECKS, StoreConformanceError, check_store, run_store_check

pytestmark = pytest.mark.anyio


# --------------------------------------------------------------------------------------------
# The reference store
# --------------------------------------------------------------------------------------------


async def test_memory_store_passes_the_suite_in_one_call() -> None:
    """One check_store call runs every check against MemoryStore and reports their names."""
    report = await check_store(lash.store.MemoryStore)
    assert report.checks == tuple(STORE_CHECKS)
    assert set(report.durations) == set(STORE_CHECKS)


@pytest.mark.parametrize("check", STORE_CHECKS)
async def test_memory_store_check(check: str) -> None:
    """Each check, as its own test case, passes against MemoryStore."""
    await run_store_check(check, lash.store.MemoryStore)


def test_memory_store_rebuilds_leases_and_turn_records_as_attrs_evolve() -> None:
    """The memory store rebuilds the records of every turn's path by generated evolvers
    (faster than attrs.evolve): the same records as attrs.evolve, every field carried."""
    from lash._store.memory import _lease, _recorded

    assert [f.name for f in attrs.fields(lash.store.Lease)] == [
        "session_id", "owner", "token", "expires_at", "revision", "pending_inputs",
        "pending_commands",
    ]  # fmt: skip
    assert [f.name for f in attrs.fields(lash.store.TurnRecord)] == [
        "session_id", "turn_id", "index", "outcome", "revision", "reason", "result",
        "committed_at",
    ]  # fmt: skip
    lease = lash.store.Lease("s", "me", 7, 123.5, 4, 2, 1)
    assert _lease(lease, 0.0, 9, 3, 5) == attrs.evolve(
        lease, expires_at=0.0, revision=9, pending_inputs=3, pending_commands=5
    )
    turn = lash.store.TurnRecord("s", "t1", 3, "stopped", 4, "cancelled", {"text": "x"}, 1.5)
    assert _recorded(turn, 8, 99.0) == attrs.evolve(turn, revision=8, committed_at=99.0)


async def test_async_factory_is_awaited() -> None:
    """A factory may be an async function returning the store."""

    async def factory() -> lash.store.Store:
        await asyncio.sleep(0)
        return lash.store.MemoryStore()

    report = await check_store(factory, checks=["lease_acquire_new", "node_round_trip"])
    assert report.checks == ("lease_acquire_new", "node_round_trip")


# --------------------------------------------------------------------------------------------
# Broken stores: the suite catches each violation and names the checks that saw it
# --------------------------------------------------------------------------------------------


class LeaselessCommitStore(lash.store.MemoryStore):
    """Commits with whatever lease it is given (no fencing)."""

    async def commit(
        self, session_id: str, *, lease: lash.store.Lease, expected_revision: int, delta: Any
    ) -> int:
        head = self._session(session_id)
        current = head.lease
        head.lease = lease  # pretend the caller's lease is current
        try:
            return await super().commit(
                session_id, lease=lease, expected_revision=expected_revision, delta=delta
            )
        finally:
            if head.lease is lease:
                head.lease = current


class AllNodesStore(lash.store.MemoryStore):
    """Always loads every node, ignoring agent frames."""

    async def load(self, session_id: str, *, full: bool = False) -> lash.store.SessionRecord | None:
        return await super().load(session_id, full=True)


class ForgetfulDeleteStore(lash.store.MemoryStore):
    """Deletes a session without a trace: its lease tokens and event numbers start over."""

    async def delete(self, session_id: str) -> None:
        await super().delete(session_id)
        del self._sessions[session_id]


class EveryNamedRollupStore(lash.store.MemoryStore):
    """Rolls usage up into every session the commit names that has a head (a tombstone, a
    session created again under a deleted ancestor's id), as the stores did before
    incarnations."""

    def _ancestors(self, s: Any) -> set[str]:
        return set(self._sessions)


class LateConflictStore(lash.store.MemoryStore):
    """Checks a commit's enqueue keys only after applying the rest of the commit."""

    async def commit(
        self, session_id: str, *, lease: lash.store.Lease, expected_revision: int, delta: Any
    ) -> int:
        revision = await super().commit(
            session_id,
            lease=lease,
            expected_revision=expected_revision,
            delta=attrs.evolve(delta, enqueue=()),
        )
        for draft in delta.enqueue:
            await self.enqueue_input(session_id, draft)
        return revision


class EarlyProcessStore(lash.store.MemoryStore):
    """Starts a commit's processes before the commit is checked (a refused commit starts them)."""

    async def commit(
        self, session_id: str, *, lease: lash.store.Lease, expected_revision: int, delta: Any
    ) -> int:
        for draft in delta.processes:
            await self.start_process(draft)
        return await super().commit(
            session_id,
            lease=lease,
            expected_revision=expected_revision,
            delta=attrs.evolve(delta, processes=()),
        )


class UnfencedFinishStore(lash.store.MemoryStore):
    """Lets any worker finish a running process, whatever its token."""

    async def finish_process(
        self, process_id: str, token: int | None, **kwargs: Any
    ) -> lash.ProcessRecord:
        record = await self.get_process(process_id)
        if token is not None and record is not None and record.status == "running":
            token = record.token
        return await super().finish_process(process_id, token, **kwargs)


class RacyClaimStore(lash.store.MemoryStore):
    """Picks the process to claim, then yields before it claims it."""

    async def claim_process(
        self, owner: str, *, ttl: float, kinds: Any = None
    ) -> lash.ProcessRecord | None:
        pending = [
            p
            for p in await self.list_processes(status="pending")
            if kinds is None or p.kind in kinds
        ]
        if not pending:
            return await super().claim_process(owner, ttl=ttl, kinds=kinds)
        await super().claim_process(owner, ttl=ttl, kinds=[])  # settles what expired
        await asyncio.sleep(0)
        claimed = lash.store.claimed_by(pending[0], owner, ttl=ttl, now=time.time())
        return self._put(claimed, "process_running")


class KeyErrorDeleteStore(lash.store.MemoryStore):
    """Raises a bare KeyError instead of UnknownSession for a missing session."""

    async def delete(self, session_id: str) -> None:
        if (await self.load(session_id)) is None:
            raise KeyError(session_id)
        await super().delete(session_id)


@pytest.mark.parametrize(
    ("store_class", "failing"),
    [
        # Every check that commits with a lease that is not current (taken over, released,
        # forged, or from before a delete) must see the write go through.
        (
            LeaselessCommitStore,
            {
                "lease_takeover_after_expiry",
                "lease_release",
                "commit_stale_lease",
                "commit_foreign_lease",
                "concurrent_commits_two_leases",
                "delete",
                "lease_take_over_dead_holder",
                "commit_releases_the_lease",
                "delete_keeps_fencing_and_event_numbers",
                "process_start_in_commit",
            },
        ),
        # Only these checks have a frame boundary after the first node.
        (AllNodesStore, {"load_active_frame", "large_history"}),
        # A session with only queued input is deleted too (load() says None for it).
        (KeyErrorDeleteStore, {"delete", "delete_keeps_fencing_and_event_numbers"}),
        # ... and the id's incarnation: the session created again under it is its children's.
        (
            ForgetfulDeleteStore,
            {"delete_keeps_fencing_and_event_numbers", "rollup_skips_deleted_ancestor"},
        ),
        (EveryNamedRollupStore, {"rollup_skips_deleted_ancestor"}),
        (LateConflictStore, {"commit_enqueue_conflict_writes_nothing"}),
        (EarlyProcessStore, {"process_start_in_commit"}),
        (
            UnfencedFinishStore,
            {
                "process_claim_order_and_fencing",
                "process_rerunnable_reruns_then_fails",
            },
        ),
        (RacyClaimStore, {"process_claimers_never_share"}),
    ],
    ids=[
        "leaseless-commit",
        "all-nodes",
        "keyerror-delete",
        "forgetful-delete",
        "every-named-rollup",
        "late-conflict",
        "early-process",
        "unfenced-finish",
        "racy-claim",
    ],
)
async def test_broken_store_fails_the_checks_it_breaks(
    store_class: Callable[[], lash.store.Store], failing: set[str], quick_expiry: None
) -> None:
    """A broken store fails exactly the checks covering its violation, each named in the error."""
    with pytest.raises(AssertionError) as info:
        await check_store(store_class)
    error = info.value
    assert isinstance(error, StoreConformanceError)
    assert set(error.failures) == failing
    message = str(error)
    assert f"failed {len(failing)} of {len(STORE_CHECKS)} conformance checks" in message
    for name in failing:
        assert f"  - {name}: AssertionError: " in message


async def test_failure_message_says_what_broke() -> None:
    """A failure names the check, the operation, what was expected and what the store did."""
    with pytest.raises(StoreConformanceError) as info:
        await check_store(KeyErrorDeleteStore, checks=["delete"])
    assert str(info.value) == (
        "the store failed 1 of 1 conformance checks:\n"
        "  - delete: AssertionError: delete of an unknown session: expected UnknownSession, "
        f"got KeyError: {info.value.failures['delete'].__cause__}"
    )


async def test_store_that_does_not_check_ids_fails_the_id_rule(
    monkeypatch: pytest.MonkeyPatch, quick_expiry: None
) -> None:
    """A memory store with its session id check removed fails session_id_rule, and only it."""
    import lash._store.memory

    monkeypatch.setattr(lash._store.memory, "check_session_id", lambda session_id: session_id)
    with pytest.raises(StoreConformanceError) as info:
        await check_store(lash.store.MemoryStore)
    assert list(info.value.failures) == ["session_id_rule"]
    assert str(info.value.failures["session_id_rule"]).startswith(
        "acquire_lease(''): expected SessionError for the invalid id, but it returned "
        "Lease(session_id='', owner='owner-a', token=1, "
    )


class PartialIdCheckStore(lash.store.MemoryStore):
    """Checks ids everywhere but in delete, which looks the session up first."""

    async def delete(self, session_id: str) -> None:
        if session_id not in self._sessions:
            raise lash.UnknownSession(session_id)
        await super().delete(session_id)


class ShortIdStore(lash.store.MemoryStore):
    """Refuses what a VARCHAR(128) ASCII column could not hold: valid ids among them."""

    async def acquire_lease(self, session_id: str, owner: str, *, ttl: float) -> lash.store.Lease:
        lash.store.check_session_id(session_id)
        if len(session_id) > 128 or not session_id.isascii():
            raise lash.SessionError(f"session id too long or not ASCII: {session_id!r}")
        return await super().acquire_lease(session_id, owner, ttl=ttl)


async def test_store_that_checks_ids_too_late_fails_the_id_rule() -> None:
    """A store that looks an invalid id up (UnknownSession) instead of refusing it fails."""
    with pytest.raises(StoreConformanceError) as info:
        await check_store(PartialIdCheckStore, checks=["session_id_rule"])
    message = str(info.value.failures["session_id_rule"])
    assert message.startswith(
        "delete(''): expected SessionError for the invalid id, got UnknownSession: "
    )
    assert "check the id with lash.store.check_session_id() before anything else" in message


async def test_store_that_refuses_valid_ids_fails_the_id_rule() -> None:
    """A store that cannot hold a 256-character non-ASCII id fails, naming the id."""
    with pytest.raises(StoreConformanceError) as info:
        await check_store(ShortIdStore, checks=["session_id_rule"])
    error = info.value.failures["session_id_rule"]
    assert isinstance(error, lash.SessionError)
    assert "session id too long or not ASCII: 'conformance-ids-" in str(error)


async def test_run_store_check_raises_the_checks_own_error() -> None:
    """run_store_check lets the check's AssertionError through, noting the check's name."""
    with pytest.raises(AssertionError, match=re.escape("load().nodes after a boundary")) as info:
        await run_store_check("load_active_frame", AllNodesStore)
    assert "lash store conformance check 'load_active_frame'" in info.value.__notes__


# --------------------------------------------------------------------------------------------
# The runner
# --------------------------------------------------------------------------------------------


class CountingStore(lash.store.MemoryStore):
    """Counts the stores built and how often each is closed."""

    built: ClassVar[list[CountingStore]] = []

    def __init__(self) -> None:
        super().__init__()
        self.closed = 0
        self.built.append(self)

    async def close(self) -> None:
        self.closed += 1


async def test_each_check_gets_a_fresh_store_closed_after() -> None:
    """Every check runs on a store of its own, closed once after the check."""
    CountingStore.built = []
    names = ["lease_busy", "usage_sums", "list_sessions"]
    await check_store(CountingStore, checks=names)
    assert len(CountingStore.built) == len(names)
    assert [store.closed for store in CountingStore.built] == [1, 1, 1]


async def test_unknown_check_name_is_rejected_before_any_store_is_built() -> None:
    """Naming a check that does not exist is a KeyError that lists the known names."""
    CountingStore.built = []
    with pytest.raises(KeyError, match=r"no_such_check.*lease_acquire_new"):
        await check_store(CountingStore, checks=["usage_sums", "no_such_check"])
    assert CountingStore.built == []


async def test_failing_close_fails_the_check() -> None:
    """A store whose close() raises fails the check, saying so."""

    class BadClose(lash.store.MemoryStore):
        async def close(self) -> None:
            raise OSError("disk on fire")

    with pytest.raises(AssertionError, match=r"store.close\(\) raised OSError: disk on fire"):
        await run_store_check("turns_counter", BadClose)


async def test_hanging_check_times_out_and_closes_the_store() -> None:
    """A check that does not finish within the timeout fails, and its store is still closed."""

    class Hanging(CountingStore):
        async def load(
            self, session_id: str, *, full: bool = False
        ) -> lash.store.SessionRecord | None:
            await asyncio.Event().wait()
            return None

    CountingStore.built = []
    with pytest.raises(AssertionError, match=re.escape("'load_missing' did not finish in 0.1 s")):
        await run_store_check("load_missing", Hanging, timeout=0.1)
    assert [store.closed for store in CountingStore.built] == [1]


async def test_factory_errors_fail_every_check() -> None:
    """A factory that raises fails each check with its error rather than stopping the run."""

    def factory() -> lash.store.Store:
        raise RuntimeError("cannot connect")

    with pytest.raises(StoreConformanceError) as info:
        await check_store(factory, checks=["usage_sums", "turns_counter"])
    assert list(info.value.failures) == ["usage_sums", "turns_counter"]
    assert "  - turns_counter: RuntimeError: cannot connect" in str(info.value)


async def test_a_check_function_can_be_run_directly() -> None:
    """run_store_check accepts a check function as well as a name."""
    await run_store_check(lash.testing.CHECKS["turns_counter"], lash.store.MemoryStore)


def test_checks_are_named_documented_and_exported() -> None:
    """Every check has a docstring; STORE_CHECKS lists CHECKS in order; __all__ is complete."""
    assert tuple(lash.testing.CHECKS) == STORE_CHECKS
    assert len(STORE_CHECKS) >= 25
    for name, check in lash.testing.CHECKS.items():
        assert check.__name__ == f"check_{name}"
        assert check.__doc__ and check.__doc__.strip(), name
    for name in lash.testing.__all__:
        assert hasattr(lash.testing, name), name


def test_testing_plugin_has_no_hooks() -> None:
    """lash.testing, loaded into every pytest run, defines no pytest hooks."""
    assert not [name for name in dir(lash.testing) if name.startswith("pytest_")]


# --------------------------------------------------------------------------------------------
# The SQLite backend
# --------------------------------------------------------------------------------------------


def sqlite_store_factory() -> Callable[[str], lash.store.Store]:
    """The factory the builtins register for ``sqlite://`` URLs (as a host would build it)."""
    from lash_plugins_builtin import stores

    found: dict[str, Callable[[str], Any]] = {}

    def register(scheme: str, factory: Callable[[str], Any], /) -> None:
        found[scheme] = factory

    stores.register_stores(register)
    return found["sqlite"]


async def test_sqlite_store_passes_the_suite_in_one_call(tmp_path: Path) -> None:
    """The SQLite backend passes every check, each on a new store over one database file."""
    make = sqlite_store_factory()
    report = await check_store(lambda: make(f"sqlite:///{tmp_path}/x.db"))
    assert report.checks == STORE_CHECKS


@pytest.mark.parametrize("check", STORE_CHECKS)
async def test_sqlite_store_check(check: str, tmp_path: Path) -> None:
    """Each check, as its own test case, passes against SQLite on a fresh database file."""
    make = sqlite_store_factory()
    await run_store_check(check, lambda: make(f"sqlite:///{tmp_path}/x.db"))
