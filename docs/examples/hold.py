"""A worker that runs a batch of turns of one session in a hold: the session's lease is taken
once and kept from one turn to the next, so that each turn commits in one transaction; another
process that wants the session meanwhile waits, then gets SessionBusy.

Two cores over one SQLite file stand in for two processes. Run it with
``python docs/examples/hold.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from pathlib import Path

import lash


def build_core(db: Path) -> lash.LashCore:
    """A core on the SQLite file ``db`` whose scripted model answers "noted" to anything."""
    return lash.LashCore(
        plugins=["standard", "stores", "scripted"],
        autoload=False,
        store=f"sqlite:///{db}",
        provider="scripted",
        options={"scripted": {"responses": [{"text": "noted"}] * 4}},
    )


async def batch(db: Path) -> None:
    async with build_core(db) as worker, build_core(db) as other:
        session = await worker.session("ledger").open()
        async with session.hold():  # the lease: taken here, kept until the block ends
            for entry in ("rent", "coffee", "books"):
                result = await session.turn(f"record: {entry}").run()
                print(f"worker: turn {result.index} {result.outcome} at revision {result.revision}")
            # Meanwhile, the session is the worker's, also between its turns.
            rival = await other.session("ledger").open(wait=0.1)
            try:
                await rival.turn("record: lunch").run()
            except lash.SessionBusy as busy:
                print(f"other: SessionBusy after waiting 0.1 s (lease token {busy.token})")
        # The hold is over: the lease is released, and the other process gets its turn.
        result = await rival.turn("record: lunch").run()
        print(f"other: turn {result.index} {result.outcome} at revision {result.revision}")


async def main(directory: Path | None = None) -> None:
    with contextlib.ExitStack() as stack:
        if directory is None:
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        await batch(directory / "lash.db")


if __name__ == "__main__":
    asyncio.run(main())
