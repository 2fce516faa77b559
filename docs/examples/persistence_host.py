"""A durable host: sessions in a SQLite file outlive the process that wrote them.

Each :class:`lash.LashCore` below stands in for one host process: a second core over the same
file sees what the first committed, exactly as a second process (or the same one, restarted)
would. Run it with ``python docs/examples/persistence_host.py``.
"""

import asyncio
import contextlib
import sqlite3
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lash
import lash.store
from lash_plugins_builtin.plan import PlanState

PLAN = {"steps": [{"step": "Book the flight", "status": "completed"}, {"step": "Book the hotel"}]}
# The first turn: the model updates its plan (plugin state), then answers.
TRIP = [
    {"tool_calls": [{"name": "update_plan", "arguments": PLAN}]},
    {
        "text": "Flight booked; the hotel is next.",
        "usage": {"input_tokens": 90, "output_tokens": 8},
    },
]


def build_core(db: Path, *script: Any, extra: Sequence[object] = ()) -> lash.LashCore:
    """A host whose sessions live in the SQLite file ``db``; its model plays ``script`` (a
    string is a plain answer); ``extra`` plugins join the builtins."""
    responses = [{"text": r} if isinstance(r, str) else r for r in script]
    return lash.LashCore(
        plugins=["standard", "stores", "scripted", "plan", *extra],
        autoload=False,
        # "sqlite:///" + an absolute path: four slashes in all, as in sqlite:////srv/app/lash.db.
        store=f"sqlite:///{db.resolve()}",
        provider="scripted",
        options={"scripted": {"responses": responses}},
    )


async def first_process(db: Path) -> lash.TurnResult:
    """Run one turn and close: the turn is committed before run() returns."""
    async with build_core(db, *TRIP) as core, core.session("trip") as session:
        result = await session.turn("Book my trip to Lisbon.").run()
    print(f"first process: turn {result.index} {result.outcome}, revision {result.revision}")
    return result


async def second_process(db: Path) -> None:
    """A new host resumes the session: its history, plugin state and usage come back."""
    core = build_core(db, "Next I will find a hotel near the river.")
    async with core:
        session = await core.session("trip").open(must_exist=True)
        plan = session.state(PlanState)  # the builtin plan plugin's declared state
        print(f"second process: resumed at revision {session.revision}, {session.turns} turn(s)")
        print(f"  loaded: {len(session.nodes)} nodes (the active agent frame)")
        print(f"  plan restored: {[(s.step, s.status) for s in plan.steps]}")
        print(f"  usage so far: {session.usage_report()['total']}")
        result = await session.turn("What now?").run()
        print(f"  turn {result.index}: {result.text!r} (revision {result.revision})")
        await session.close()


class Gate:
    """Holds each turn at its start until the host opens the gate: a turn that takes a while."""

    lash_plugin = lash.PluginMeta(name="gate")

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.open = asyncio.Event()

    @lash.hookimpl
    async def before_turn(self, turn: lash.TurnView) -> None:
        self.entered.set()
        await self.open.wait()


async def two_writers(db: Path) -> None:
    """Two hosts, one session: both open it; their turns take the session's lease in turn."""
    gate = Gate()
    host_a = build_core(db, "The hotel is booked.", extra=[gate])
    host_b = build_core(db, "The train is booked too.")
    async with host_a, host_b:
        session_a = await host_a.session("trip").open()  # opening takes no lease
        impatient = await host_b.session("trip").open(wait=0)
        patient = await host_b.session("trip").open(wait=10)
        turn_a = asyncio.create_task(session_a.turn("Book the hotel.").run())
        await gate.entered.wait()  # host A's turn holds the lease now
        try:
            await impatient.turn("Book the train.").run()
        except lash.SessionBusy as busy:
            holder = busy.owner.startswith(host_a.owner_id)
            print(f"host B: SessionBusy while host A's turn runs (held by host A: {holder})")
        # wait= (or the core's lease_wait): the turn waits for the lease, then runs.
        turn_b = asyncio.create_task(patient.turn("Book the train.").run())
        gate.open.set()
        result_a, result_b = await turn_a, await turn_b
        print(f"host A: turn {result_a.index} committed at revision {result_a.revision}")
        # Host B's view was stale (host A committed since it opened): it reloaded first.
        print(f"host B: turn {result_b.index} committed at revision {result_b.revision}")


async def park_and_resume(db: Path) -> None:
    """Park a session between turns (its memory released), resume it later."""
    async with build_core(db, "Still on it.") as core:
        session = await core.session("trip").open()
        handle = await session.park()
        print(f"parked: {handle.session_id!r} at revision {handle.revision}")
        resumed = await core.resume(handle)
        result = await resumed.turn("Are you there?").run()
        print(f"resumed: turn {result.index} committed at revision {result.revision}")
        await resumed.close()


async def start_over(db: Path) -> None:
    """open_fresh starts a session over; its first commit replaces the stored history."""
    async with build_core(db, "Hello again.") as core:
        session = await core.session("trip").open_fresh()
        result = await session.turn("Let us start over.").run()
        await session.close()
        record = await core.store.load("trip", full=True)
        assert record is not None
        print(
            f"fresh start: {record.turns} turn, {len(record.nodes)} nodes, "
            f"revision {record.revision} (revisions keep counting)"
        )
        assert result.revision == record.revision


def backup(db: Path, target: Path) -> None:
    """Copy a live lash database consistently, with SQLite's online backup API."""
    with (
        contextlib.closing(sqlite3.connect(db)) as source,
        contextlib.closing(sqlite3.connect(target)) as copy,
    ):
        source.backup(copy)


async def inspect_and_delete(db: Path, copy: Path) -> None:
    """List the sessions, look at the database, delete a session (the backup keeps it)."""
    async with build_core(db) as core:
        for row in await core.store.list_sessions():
            print(f"listed: {row.session_id!r}, {row.turns} turn(s), revision {row.revision}")
        info = await core.store.info()  # SQLiteStore's diagnostics (not part of lash.store.Store)
        names = [m["name"] for m in info["migrations"]]
        print(f"database: journal_mode={info['journal_mode']}, synchronous={info['synchronous']}")
        print(f"  migrations applied: {names}")
        await core.delete_session("trip")
        print(f"deleted; sessions left: {len(await core.store.list_sessions())}")
    async with build_core(copy) as restored:
        (row,) = await restored.store.list_sessions()
        print(f"the backup still holds {row.session_id!r} at revision {row.revision}")


async def main(directory: Path | None = None) -> Path:
    with contextlib.ExitStack() as stack:
        if directory is None:
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        db = directory / "lash.db"
        await first_process(db)
        await second_process(db)
        await two_writers(db)
        await park_and_resume(db)
        await start_over(db)
        backup(db, directory / "backup.db")
        await inspect_and_delete(db, directory / "backup.db")
        return db


if __name__ == "__main__":
    asyncio.run(main())
