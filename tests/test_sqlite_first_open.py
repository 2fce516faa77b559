"""A fresh SQLite file opened by several ``sqlite://`` stores at the same moment, in one process
and in several: every open succeeds at once, and the file ends up set up exactly once.

Several workers starting together on a first deployment all find a file that does not exist yet.
The busy timeout here is a minute, so an open that fails, or that waits on another one's lock
until it gives up, cannot pass for a prompt one: each must succeed well under :data:`PROMPT`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import select
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lash_plugins_builtin import _sqlite_schema
from lash_plugins_builtin.sqlite import SQLiteStore

pytestmark = pytest.mark.anyio

STORES = 8
ROUNDS = 30
#: Milliseconds SQLite may wait for a lock: far beyond PROMPT, so waiting it out shows.
BUSY_TIMEOUT = 60_000
#: Seconds an open may take at most (it takes milliseconds; the bound leaves room for a busy
#: machine, and is still 1/30 of the busy timeout).
PROMPT = 2.0

#: A worker process: prints ``ready``, then for each database path read from stdin opens a store
#: on it, lists its sessions, closes it and prints one JSON line (ok, seconds, error).
WORKER = f"""
import asyncio, json, sys, time
from lash_plugins_builtin.sqlite import SQLiteStore

async def open_once(path):
    store = SQLiteStore("sqlite:///" + path, busy_timeout={BUSY_TIMEOUT})
    started = time.monotonic()
    try:
        await store.open()
        seconds = time.monotonic() - started
        sessions = await store.list_sessions()
        return {{"ok": sessions == [], "seconds": seconds, "error": None}}
    except Exception as exc:
        return {{"ok": False, "seconds": time.monotonic() - started, "error": repr(exc)}}
    finally:
        await store.close()

print("ready", flush=True)
for line in sys.stdin:
    print(json.dumps(asyncio.run(open_once(line.strip()))), flush=True)
"""


def check_set_up_once(db: Path) -> None:
    """The file is a lash database in WAL mode with each migration recorded once."""
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("PRAGMA application_id").fetchone() == (_sqlite_schema.APPLICATION_ID,)
        applied = [mid for (mid,) in conn.execute("SELECT id FROM lash_migrations ORDER BY id")]
        assert applied == [m.id for m in _sqlite_schema.MIGRATIONS]
    finally:
        conn.close()


async def test_an_open_waits_for_a_writer_switching_the_new_file(tmp_path: Path) -> None:
    """A store opening a new file while another connection holds its write lock waits for it."""
    db = tmp_path / "lash.db"
    # What another store does for an instant while it switches the new file to WAL: hold the
    # write lock of a file still in rollback mode. The store's switch starts a read transaction
    # and must upgrade it, the one wait SQLite does not send through the busy handler.
    writer = sqlite3.connect(db, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        store = SQLiteStore(f"sqlite:///{db}", busy_timeout=BUSY_TIMEOUT)
        try:
            opening = asyncio.ensure_future(store.open())
            # Long enough for the open to reach the switch and fail, as it did (in milliseconds).
            done, _ = await asyncio.wait([opening], timeout=1.0)
            assert done == set(), opening.exception()
            writer.execute("COMMIT")
            started = time.monotonic()
            await opening
            assert time.monotonic() - started < PROMPT
            assert await store.list_sessions() == []
        finally:
            await store.close()
    finally:
        writer.close()
    check_set_up_once(db)


async def test_a_fresh_file_opened_by_many_stores_of_one_process(tmp_path: Path) -> None:
    """8 stores of one process open one new file at once, 30 times: all promptly succeed."""
    failures: list[str] = []
    slowest = 0.0
    for round_ in range(ROUNDS):
        db = tmp_path / f"round{round_}.db"
        stores = [SQLiteStore(f"sqlite:///{db}", busy_timeout=BUSY_TIMEOUT) for _ in range(STORES)]

        async def open_one(store: SQLiteStore) -> float:
            started = time.monotonic()
            await store.open()
            return time.monotonic() - started

        try:
            results = await asyncio.gather(*(open_one(s) for s in stores), return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    failures.append(f"round {round_}: {result!r}")
                else:
                    slowest = max(slowest, result)
            # Each one can use the file, not only open it.
            assert [await s.list_sessions() for s in stores] == [[]] * STORES
        finally:
            for store in stores:
                await store.close()
        check_set_up_once(db)
    assert failures == []
    assert slowest < PROMPT


class Worker:
    """A worker process (:data:`WORKER`), started and ready to open stores."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout

    def ready(self) -> None:
        assert self.stdout.readline() == "ready\n"

    def open(self, db: Path) -> None:
        """Send the path: the worker opens a store on it at once."""
        self.stdin.write(f"{db}\n")
        self.stdin.flush()

    def answered_within(self, seconds: float) -> bool:
        return bool(select.select([self.stdout], [], [], seconds)[0])

    def report(self) -> dict[str, Any]:
        report: dict[str, Any] = json.loads(self.stdout.readline())
        return report

    def stop(self) -> None:
        self.stdin.close()
        self.proc.wait(timeout=60)
        self.stdout.close()


@contextlib.contextmanager
def workers(count: int) -> Iterator[list[Worker]]:
    started = [Worker() for _ in range(count)]
    try:
        for worker in started:
            worker.ready()
        yield started
    finally:
        for worker in started:
            worker.stop()


def test_an_open_in_another_process_waits_for_the_writer(tmp_path: Path) -> None:
    """A process opening a new file whose write lock this process holds waits for it."""
    db = tmp_path / "lash.db"
    writer = sqlite3.connect(db, isolation_level=None)
    try:
        with workers(1) as (worker,):
            writer.execute("BEGIN IMMEDIATE")
            worker.open(db)
            # Long enough for the open to reach the switch and fail, as it did (in milliseconds).
            assert not worker.answered_within(1.0), worker.report()
            writer.execute("COMMIT")
            report = worker.report()
    finally:
        writer.close()
    assert (report["ok"], report["error"]) == (True, None)
    check_set_up_once(db)


def test_a_fresh_file_opened_by_many_processes(tmp_path: Path) -> None:
    """8 processes open one new file at once, 30 times: all promptly succeed."""
    reports = []
    with workers(STORES) as started:
        for round_ in range(ROUNDS):
            db = tmp_path / f"round{round_}.db"
            # Every path is sent before any answer is read: the workers open together.
            for worker in started:
                worker.open(db)
            reports += [worker.report() for worker in started]
            check_set_up_once(db)
    assert [r["error"] for r in reports if not r["ok"]] == []
    assert len(reports) == STORES * ROUNDS
    assert max(r["seconds"] for r in reports) < PROMPT
