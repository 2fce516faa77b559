"""``Session.hold()``: a session's lease kept from one turn to the next, so that each turn of a
run of turns commits in one write transaction (issue 14) — and everything a lease guarantees
still holds: one writer at a time, nothing lost when the holder dies, a hold that outlived its
lease claims the session again instead of committing blind.

Transactions are counted from the SQLite file itself: the WAL is emptied before, and after, its
frames are read by the file format's rules (https://www.sqlite.org/fileformat2.html#the_write_ahead_log:
a 32-byte header, then frames of a 24-byte header and a page; a frame whose header has a
non-zero "database size after commit" ends a transaction; frames whose salts differ from the
header's are left over from before the WAL restarted)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import approval_tools
import asyncpg
import pytest
from _cores import make_core, stored
from _postgres import transaction_counters
from _recorder import Recorder
from approval_tools import calls_message, logged
from crash_child import answer as crash_answer
from crash_child import build_core
from test_mailbox import OTHER_BUILTINS, Model, answer, started
from test_mailbox import make_core as make_mailbox_core

import lash
import lash.store
from lash_plugins_builtin import standard, stores

if TYPE_CHECKING:
    from _postgres import PostgresServer

pytestmark = pytest.mark.anyio

TESTS = Path(__file__).parent


def empty_wal(db: Path) -> None:
    """Checkpoint the file's WAL and truncate it to nothing (the store's connections idle)."""
    with sqlite3.connect(db) as conn:
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    assert busy == 0, "the WAL could not be emptied: a connection is still using it"


def wal_transactions(db: Path) -> int:
    """The write transactions committed to the WAL since :func:`empty_wal`."""
    data = Path(f"{db}-wal").read_bytes()
    if not data:
        return 0
    page_size = struct.unpack(">I", data[8:12])[0]
    salts = data[16:24]
    commits = 0
    for at in range(32, len(data) - 24 - page_size + 1, 24 + page_size):
        if data[at + 8 : at + 16] != salts:
            break  # a frame left over from before the WAL restarted
        if struct.unpack(">I", data[at + 4 : at + 8])[0]:
            commits += 1
    return commits


def lease_of(db: Path, session_id: str) -> tuple[str | None, int]:
    """The session's lease as the file holds it: its owner while live (``None``: released or
    expired) and its token."""
    with sqlite3.connect(db) as conn:
        owner, token, expires_at = conn.execute(
            "SELECT lease_owner, lease_token, lease_expires_at FROM sessions WHERE session_id = ?",
            (session_id,),
        ).fetchone()
    return (owner if expires_at > time.time() else None), token


async def test_turns_in_a_hold_commit_in_one_transaction_each(tmp_path: Path) -> None:
    """Ten turns alone: a claim and a commit each (20 transactions). Ten in a hold: one claim
    when it starts, one commit per turn, one release when it ends (12)."""
    db = tmp_path / "lash.db"
    async with make_core(tmp_path, Recorder([f"answer {i}" for i in range(21)])) as core:
        session = await core.session("s").open()
        await session.turn("first").run()  # the session exists: no creation below
        empty_wal(db)
        for i in range(10):
            assert (await session.turn(f"alone {i}").run()).outcome == "completed"
        assert wal_transactions(db) == 20
        empty_wal(db)
        async with session.hold():
            for i in range(10):
                result = await session.turn(f"held {i}").run()
                assert (result.outcome, result.revision) == ("completed", 12 + i)
        assert wal_transactions(db) == 12
        await session.close()
    record = await stored(tmp_path)
    assert record.revision == 21
    texts = [n.text for n in record.nodes if isinstance(n, lash.UserMessage)]
    assert texts == ["first", *(f"alone {i}" for i in range(10)), *(f"held {i}" for i in range(10))]


async def test_held_turns_log_their_start_and_commit_in_order(tmp_path: Path) -> None:
    """Without a claim of its own, a held turn's ``turn_started`` is committed with it: the
    log still reads started, committed, turn after turn, each naming its own turn."""
    async with make_core(tmp_path, Recorder(["a", "b", "c"])) as core:
        session = await core.session("s").open()
        async with session.hold():
            ids = [(await session.turn(f"t{i}").run()).turn_id for i in range(3)]
        page = await core.store.read_events("s")
        await session.close()
    logged = [(e.type, e.data["turn_id"]) for e in page.events if e.type.startswith("turn_")]
    assert logged == [(kind, i) for i in ids for kind in ("turn_started", "turn_committed")]


async def test_a_hold_keeps_other_writers_out_until_it_ends(tmp_path: Path) -> None:
    """While a hold lasts, even between its turns, the session is its handle's: another core
    on the file waits, then gets SessionBusy naming the holder; once the hold ends, it runs."""
    async with (
        make_core(tmp_path, Recorder(["mine 1", "mine 2"])) as core,
        make_core(tmp_path, Recorder(["theirs"])) as other,
    ):
        session = await core.session("s").open()
        rival = await other.session("s").open(wait=0.2)
        async with session.hold():
            await session.turn("one").run()
            started = time.monotonic()
            with pytest.raises(lash.SessionBusy) as busy:
                await rival.turn("rival").run()
            assert time.monotonic() - started >= 0.2  # it waited first
            assert busy.value.owner == session._runtime.owner
            await session.turn("two").run()
        result = await rival.turn("rival").run()
        assert (result.outcome, result.revision) == ("completed", 3)
        await session.close()
        await rival.close()
    assert lease_of(tmp_path / "lash.db", "s")[0] is None


async def test_a_hold_idle_past_half_its_ttl_claims_again_and_sees_another_writer(
    tmp_path: Path,
) -> None:
    """A hold whose lease may have run out does not commit under it: its next turn claims the
    session (its token kept while the lease is still its own), and when another writer took
    the session meanwhile, reloads what that writer committed first: no update lost."""
    db = tmp_path / "lash.db"
    async with (
        make_core(tmp_path, Recorder(["a1", "a2", "a3"]), lease_ttl=0.4) as core,
        make_core(tmp_path, Recorder(["b1"]), lease_ttl=0.4) as other,
    ):
        session = await core.session("s").open()
        async with session.hold():
            await session.turn("a1").run()
            token = lease_of(db, "s")
            await asyncio.sleep(0.25)  # past half the TTL, the lease still live: claimed again
            empty_wal(db)
            await session.turn("a2").run()
            assert wal_transactions(db) == 2  # the claim, the commit
            assert lease_of(db, "s") == token
            await asyncio.sleep(0.5)  # the lease expired: another core takes the session
            rival = await other.session("s").open(wait=0)
            assert (await rival.turn("b1").run()).revision == 3
            await rival.close()
            result = await session.turn("a3").run()
            assert (result.outcome, result.revision) == ("completed", 4)
        await session.close()
    record = await stored(tmp_path)
    texts = [n.text for n in record.nodes if isinstance(n, lash.UserMessage)]
    assert texts == ["a1", "a2", "b1", "a3"]


class FailOnce:
    """A plugin whose ``before_turn`` raises for the input ``boom``."""

    lash_plugin = lash.PluginMeta(name="fail-once")

    @lash.hookimpl
    def before_turn(self, turn: lash.TurnView) -> None:
        if turn.input == "boom":
            raise RuntimeError("boom")


async def test_a_failed_turn_in_a_hold_commits_as_any_turn_and_the_hold_goes_on(
    tmp_path: Path,
) -> None:
    """A turn that fails (a hook raised) is committed with its outcome, in its one transaction,
    and the next turn of the hold runs under the same lease."""
    db = tmp_path / "lash.db"
    async with make_core(tmp_path, Recorder(["ok 1", "ok 2"]), FailOnce()) as core:
        session = await core.session("s").open()
        async with session.hold():
            assert (await session.turn("one").run()).outcome == "completed"
            token = lease_of(db, "s")
            empty_wal(db)
            failed = await session.turn("boom").run()
            assert (failed.outcome, failed.revision) == ("failed", 2)
            result = await session.turn("two").run()
            assert (result.outcome, result.revision) == ("completed", 3)
            assert wal_transactions(db) == 2
            assert lease_of(db, "s") == token
        await session.close()


async def test_closing_in_a_hold_releases_the_session(tmp_path: Path) -> None:
    async with (
        make_core(tmp_path, Recorder(["mine"])) as core,
        make_core(tmp_path, Recorder(["theirs"])) as other,
    ):
        session = await core.session("s").open()
        async with session.hold():
            await session.turn("one").run()
            await session.close()
            assert lease_of(tmp_path / "lash.db", "s")[0] is None
            rival = await other.session("s").open(wait=0)
            assert (await rival.turn("two").run()).revision == 2
            await rival.close()


async def test_a_hold_is_refused_where_it_cannot_work(tmp_path: Path) -> None:
    """Not open, nested, or from a tool of the session itself (it would hold the session
    against the turn that runs the tool): a SessionError naming the session and why."""
    calls: list[str] = []

    class Holder:
        lash_plugin = lash.PluginMeta(name="holder")

        @lash.hookimpl
        def register_tools(self, register: lash.RegisterTool) -> None:
            async def grab() -> str:
                """Tries to hold its own session."""
                try:
                    async with handle.hold():
                        pass
                except lash.SessionError as exc:
                    calls.append(str(exc))
                return "tried"

            register(grab)

    call = lash.ScriptedResponse(tool_calls=[lash.ScriptedToolCall("grab", {}, id="c1")])
    async with make_core(tmp_path, Recorder([call, "done"]), Holder()) as core:
        handle = core.session("s")
        with pytest.raises(lash.SessionError, match="'s' is not open"):
            async with handle.hold():
                pass
        await handle.open()
        async with handle.hold():
            with pytest.raises(lash.SessionError, match="already held by this handle"):
                async with handle.hold():
                    pass
        await handle.turn("grab it").run()
        await handle.close()
    assert len(calls) == 1 and "hold() called" in calls[0] and "'s'" in calls[0]


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    sys.path.insert(0, sys.argv[2])
    from crash_child import build_core

    async def main():
        async with build_core(sys.argv[1], lease_ttl=30) as core:
            session = await core.session("held").open()
            async with session.hold():
                for i in range(5):
                    await session.turn(f"turn {i}").run()
                    print(f"committed {i}", flush=True)
                print("holding", flush=True)
                await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


def test_a_process_killed_in_a_hold_loses_no_committed_turn_and_is_taken_over(
    tmp_path: Path,
) -> None:
    """SIGKILL of a process inside a hold, between turns: every turn it reported committed is
    in the file, and another process takes the session over (at once: the holder is provably
    dead, the same host and its process gone; otherwise when the lease expires)."""
    db = tmp_path / "lash.db"
    errors = tmp_path / "child.err"
    with (
        errors.open("wb") as stderr,
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(db), str(TESTS)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        ) as child,
    ):
        try:
            assert child.stdout is not None
            lines = []
            for line in child.stdout:
                lines.append(line.strip())
                if lines[-1] == "holding":
                    break
            expected = [*(f"committed {i}" for i in range(5)), "holding"]
            assert lines == expected, errors.read_text()
            assert lease_of(db, "held")[0] is not None  # the hold's lease, between turns
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)

    async def take_over() -> lash.TurnResult:
        async with build_core(db, lease_ttl=30) as core:
            session = await core.session("held").open(wait=0)
            result = await session.turn("after").run()
            await session.close()
            return result

    result = asyncio.run(take_over())
    assert (result.outcome, result.revision, result.text) == ("completed", 6, crash_answer("after"))
    record = asyncio.run(stored(tmp_path, "held"))
    texts = [n.text for n in record.nodes if isinstance(n, lash.UserMessage)]
    assert texts == [*(f"turn {i}" for i in range(5)), "after"]


async def test_on_postgres_a_held_turn_is_one_transaction(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    """Issue 14's count, from the server's own statistics: the transactions a core's turns run
    (``xact_commit + xact_rollback`` of the database in ``pg_stat_database``, read once the
    core's connections are gone, as a backend reports its counters when it exits): 20 turns
    alone, a lease and a commit each; 20 in a hold, one each plus the hold's claim and
    release. The difference between runs of 25 and 5 turns, so that opening the session does
    not count."""
    database = postgres_url.rsplit("/", 1)[1].split("?", 1)[0]

    async def transactions(conn: Any) -> int:
        return (await transaction_counters(conn, database))[0]

    async def run(turns: int, session_id: str, held: bool) -> int:
        conn = await asyncpg.connect(postgres_server.url("postgres"))
        try:
            async with build_core(postgres_url) as core:  # the schema, before counting
                await core.store.list_sessions()
            before = await transactions(conn)
            async with build_core(postgres_url) as core:
                session = await core.session(session_id).open()
                async with session.hold() if held else contextlib.nullcontext():
                    for turn in range(turns):
                        result = await session.turn(f"turn {turn}").run()
                        assert result.text == crash_answer(f"turn {turn}")
                await session.close()
            return await transactions(conn) - before
        finally:
            await conn.close()

    alone = await run(25, "alone-long", False) - await run(5, "alone-short", False)
    held = await run(25, "held-long", True) - await run(5, "held-short", True)
    assert (alone, held) == (40, 20)


# -- what other processes and a turn's own work send a held session (from a review of the hold)

CLEANUP = calls_message(
    ("read_file", {"path": "notes.txt"}, "c1"),
    ("delete_file", {"path": "old.log"}, "c2"),
    ("delete_file", {"path": "keep.log"}, "c3"),
)


@pytest.mark.parametrize("held", [False, True])
async def test_answers_to_a_turn_awaiting_approval_continue_it_in_a_hold_too(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, held: bool
) -> None:
    """As test_approvals' new turn that first continues an answered one: the approved calls
    run once each, whether the next turn runs in a hold (it claims the session, which applies
    the queued answers) or not."""
    log = str(tmp_path / "approval.log")
    monkeypatch.setenv("APPROVAL_LOG", log)
    core = lash.LashCore(
        plugins=[standard, stores, approval_tools],
        builtins=(),
        store=store_url,
        provider="policy",
    )
    async with core:
        session = await core.session("s").open()
        async with session.hold() if held else contextlib.nullcontext():
            first = await session.turn(CLEANUP).run()
            assert first.reason == "awaiting_approval"
            assert (await core.approve("s", "c2")).outcome == "approved"
            assert (await core.approve("s", "c3")).outcome == "approved"
            second = await session.turn("and now?").run()
        await session.close()
    assert logged(log).count("delete_file old.log") == 1, logged(log)
    assert logged(log).count("delete_file keep.log") == 1
    assert second.ok


@pytest.mark.parametrize("held", [False, True])
async def test_another_core_cancels_a_turn_that_runs_in_a_hold(held: bool) -> None:
    """A turn of a hold is named by its lease from its first poll on (``control_poll`` seconds
    after it starts: its first renewal takes the lease again naming it), so another process's
    cancel_turn finds it, and the turn reads the request at its next poll, as outside a hold."""
    shared = lash.store.MemoryStore()
    model = Model(answer("first"), answer("never"))
    session = await make_mailbox_core(model, store=shared, control_poll=0.01).session("s").open()
    other = make_mailbox_core(Model(), store=shared)
    async with session.hold() if held else contextlib.nullcontext():
        receipt, result = await cancelled_from(other, session, model)
    assert receipt.status == "requested"
    assert (result.reason, result.cancelled_by) == ("cancelled", "web-ui")


async def cancelled_from(
    other: lash.LashCore, session: lash.Session, model: Model
) -> tuple[lash.CancelReceipt, lash.TurnResult]:
    """A turn ``t1`` of ``session`` (after a first, ``warm``) held in its model call past its
    first poll, then cancelled by ``other``'s cancel_turn: the receipt and the turn's result."""
    await session.turn("warm").run()
    gate = model.block()
    task = await started(session.turn("long", id="t1"))
    await model.entered.wait()
    await asyncio.sleep(0.2)  # past the turn's first poll
    receipt = await other.cancel_turn("s", "t1", reason="stop", origin="web-ui")
    try:
        result = await asyncio.wait_for(asyncio.shield(task), 5)
    finally:
        gate.set()
        await task
    return receipt, result


class Slow:
    """A tool that takes ``seconds``."""

    lash_plugin = lash.PluginMeta(name="slow")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    @lash.hookimpl
    def register_tools(self, register: lash.RegisterTool) -> None:
        async def wait() -> str:
            """Waits."""
            await asyncio.sleep(self.seconds)
            return "waited"

        register(wait)


async def test_a_held_turn_that_outlasts_its_first_poll_takes_the_lease_again_naming_it(
    tmp_path: Path,
) -> None:
    """The price of being cancellable from another process: a held turn still running at its
    first poll writes once more (the lease taken again, naming it, its token kept); a turn
    that ends before it commits in one transaction (the first test)."""
    db = tmp_path / "lash.db"
    call = lash.ScriptedResponse(tool_calls=[lash.ScriptedToolCall("wait", {}, id="c1")])
    rec = Recorder(["one", call, "two"])
    async with make_core(tmp_path, rec, Slow(0.2), control_poll=0.02) as core:
        session = await core.session("s").open()
        async with session.hold():
            await session.turn("one").run()
            token = lease_of(db, "s")
            empty_wal(db)
            result = await session.turn("slow", id="t-slow").run()
            assert (result.outcome, result.revision) == ("completed", 2)
            assert wal_transactions(db) == 2  # the lease naming it, the commit
            assert lease_of(db, "s") == token
            with sqlite3.connect(db) as conn:
                (named,) = conn.execute("SELECT running_turn FROM sessions").fetchone()
            assert named == "t-slow"
        await session.close()


@pytest.mark.parametrize("held", [False, True])
async def test_a_command_queued_by_another_core_applies_within_a_hold_of_long_turns(
    held: bool,
) -> None:
    """Turns that each outlast a lease renewal do not keep a hold from ever claiming again: a
    command another core queued is seen at a renewal and applied at the next turn's claim."""
    shared = lash.store.MemoryStore()
    model = Model(*(answer(f"a{i}") for i in range(8)))
    core = make_mailbox_core(model, store=shared, lease_ttl=0.3, control_poll=0.01)
    session = await core.session("s").open()
    other = make_mailbox_core(Model(), store=shared)
    applied_at: list[int] = []
    async with session.hold() if held else contextlib.nullcontext():
        for i in range(6):
            if i == 1:
                await other.enqueue_command("s", "refresh_tool_catalog", key="k1")
            gate = model.block()
            task = await started(session.turn(f"t{i}"))
            await model.entered.wait()
            await asyncio.sleep(0.15)  # past ttl/3: renewed inside the turn
            gate.set()
            await task
            commands = await shared.list_commands("s", settled=True)
            if commands and commands[0].state == "applied" and not applied_at:
                applied_at.append(i)
    assert applied_at and applied_at[0] <= 2, applied_at


class SlowPersisted:
    """A ``turn_persisted`` hook that takes 2.5 lease TTLs (an indexer, a webhook...)."""

    lash_plugin = lash.PluginMeta(name="slow-persisted")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    @lash.hookimpl
    async def turn_persisted(self, turn: lash.TurnView, revision: int) -> None:
        await asyncio.sleep(self.seconds)


async def test_a_hold_keeps_renewing_its_lease_while_a_turn_goes_on_after_its_commit(
    tmp_path: Path,
) -> None:
    """A held turn's commit keeps the lease; the work of the turn after it (turn_persisted,
    compaction) keeps renewing it: a rival waiting all along gets the session only once the
    hold is over."""
    ttl = 0.4
    async with (
        make_core(
            tmp_path, Recorder(["a"]), SlowPersisted(2.5 * ttl), lease_ttl=ttl, control_poll=0.01
        ) as core,
        make_core(tmp_path, Recorder(["rival"]), lease_ttl=ttl) as other,
    ):
        session = await core.session("s").open()
        rival = await other.session("s").open(wait=10)
        loop = asyncio.get_running_loop()
        rival_done: list[float] = []

        async def rival_turn() -> None:
            await rival.turn("rival").run()
            rival_done.append(loop.time())

        async with session.hold():
            task = asyncio.create_task(rival_turn())
            await session.turn("one").run()
            hold_ended = loop.time()
        await task
        await session.close()
        await rival.close()
    assert rival_done[0] > hold_ended, "the rival's turn committed inside the hold"


class Clocked(lash.store.MemoryStore):
    """A memory store that notes how long the lease had left at each renewal."""

    def __init__(self) -> None:
        super().__init__()
        self.left_at_renewal: list[float] = []
        self.live_until = 0.0

    async def acquire_lease(self, *args: Any, **kwargs: Any) -> lash.store.Lease:
        lease = await super().acquire_lease(*args, **kwargs)
        self.live_until = lease.expires_at
        return lease

    async def renew_lease(self, lease: lash.store.Lease, *, ttl: float) -> lash.store.Lease:
        self.left_at_renewal.append(self.live_until - time.time())
        renewed = await super().renew_lease(lease, ttl=ttl)
        self.live_until = renewed.expires_at
        return renewed


@pytest.mark.parametrize("held", [False, True])
async def test_a_held_turn_renews_its_lease_as_early_as_a_turn_on_its_own(held: bool) -> None:
    """A turn started in a hold just before it would claim again (its lease almost half a TTL
    old) renews it while at least half the TTL is left, as a turn on its own does: an event
    loop stall does not cost it the session sooner."""
    ttl = 0.6
    store = Clocked()
    model = Model(answer("a"), answer("b"))
    core = make_mailbox_core(model, store=store, lease_ttl=ttl, control_poll=0.01)
    session = await core.session("s").open()
    async with session.hold() if held else contextlib.nullcontext():
        await session.turn("one").run()
        await asyncio.sleep(ttl / 2 - 0.03)  # just before the hold would claim again
        gate = model.block()
        task = await started(session.turn("two"))
        await model.entered.wait()
        await asyncio.sleep(ttl / 2)
        gate.set()
        await task
    assert store.left_at_renewal[0] >= ttl / 2, store.left_at_renewal


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_another_process_cancels_a_held_turn_on_a_durable_store(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The same through a store two cores share, as two processes would: past its first poll,
    the held turn's lease names it (its own lease taken again, in the store), so the other
    core's cancel_turn is ``requested`` and the turn stops; the hold's lease is released at
    its end."""
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path}/lash.db"
    else:
        url = request.getfixturevalue("postgres_url")

    def core(*plugins: object, **kwargs: Any) -> lash.LashCore:
        return lash.LashCore(
            plugins=[standard, stores, *plugins],
            autoload=False,
            disable=OTHER_BUILTINS,
            provider="model",
            model="m1",
            store=url,
            **kwargs,
        )

    model = Model(answer("first"), answer("never"))
    async with core(model, control_poll=0.01) as mine, core(Model(answer("after"))) as other:
        session = await mine.session("s").open()
        async with session.hold():
            receipt, result = await cancelled_from(other, session, model)
        await session.close()
        again = await other.session("s").open(wait=0)
        assert (await again.turn("after").run()).outcome == "completed"  # released
        await again.close()
    assert receipt.status == "requested"
    assert (result.reason, result.cancelled_by) == ("cancelled", "web-ui")


async def test_on_postgres_a_held_turns_id_too_long_to_index_is_refused_at_its_commit(
    postgres_url: str,
) -> None:
    """A turn in a hold takes no lease of its own, so a turn id Postgres cannot index (more
    than 1,536 bytes of UTF-8; see persistence.rst) is refused at the turn's commit, after its
    model call, naming the session and the turn id, with nothing written; the hold goes on."""
    rec = Recorder(["one", "two", "three"])
    core = lash.LashCore(
        plugins=[standard, stores, rec], builtins=(), store=postgres_url, provider="recorder"
    )
    async with core:
        session = await core.session("s").open()
        async with session.hold() as held:
            assert (await held.turn("first").run()).revision == 1
            with pytest.raises(lash.SessionError, match="session 's': cannot store the turn id"):
                await held.turn("second", id="t" * 1537).run()
            assert len(rec.requests) == 2  # the model was called: the id met the commit
            assert (await held.turn("third").run()).revision == 2
        record = await core.store.load("s")
    assert record is not None
    texts = [n.text for n in record.nodes if isinstance(n, lash.UserMessage)]
    assert texts == ["first", "third"]
