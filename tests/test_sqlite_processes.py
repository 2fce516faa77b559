"""Process records in the SQLite store: several OS processes claiming from one file, a claimer
killed with SIGKILL, the migration that adds the table to an older file, and the claim's
query plans. (The contract itself is the conformance suite's: ``test_store_conformance.py``.)
"""

from __future__ import annotations

import collections
import json
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from test_sqlite_store import legacy_database

import lash
import lash.store
from lash_plugins_builtin import _sqlite_schema
from lash_plugins_builtin.sqlite import SQLiteStore

pytestmark = pytest.mark.anyio

CHILD = Path(__file__).parent / "process_claimer_child.py"


def spawn(db: Path, name: str, kind: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), "--db", str(db), "--name", name, "--kind", kind, *extra],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def go(children: dict[str, subprocess.Popen[str]]) -> None:
    """Once every child is ready (its store open), say GO to all of them."""
    for name, child in children.items():
        assert child.stdout is not None
        assert json.loads(child.stdout.readline()) == {"ready": name}
    for child in children.values():
        assert child.stdin is not None
        child.stdin.write("GO\n")
        child.stdin.flush()


def reports_of(children: dict[str, subprocess.Popen[str]]) -> dict[str, list[dict[str, Any]]]:
    """Wait for each child to end (exit 0, or killed); the reports of each (the last line of
    one killed may be cut short: it is left out)."""
    reports = {}
    for name, child in children.items():
        out, err = child.communicate(timeout=180)
        assert child.returncode in (0, -signal.SIGKILL), (name, child.returncode, err)
        reports[name] = [json.loads(line) for line in out.splitlines() if line.endswith("}")]
    return reports


def run_children(children: dict[str, subprocess.Popen[str]]) -> dict[str, list[dict[str, Any]]]:
    """:func:`go`, then :func:`reports_of`."""
    go(children)
    return reports_of(children)


async def test_four_os_processes_finish_each_of_500_processes_exactly_once(tmp_path: Path) -> None:
    """4 worker processes claim and finish 500 processes (in 10 sessions) from one SQLite file:
    each is finished exactly once, by the worker that claimed it, on its first attempt; no
    claim is lost; each session logs one started, running and finished event per process, with
    gap-free numbers."""
    db = tmp_path / "jobs.db"
    store = SQLiteStore(f"sqlite:///{db}")
    sessions = [f"s{i}" for i in range(10)]
    ids = []
    for n in range(500):
        draft = lash.store.ProcessDraft(
            id=f"job-{n}", kind="job", payload={"n": n}, session_id=sessions[n % 10], key=f"k{n}"
        )
        ids.append((await store.start_process(draft)).id)
    await store.close()
    children = {f"w{i}": spawn(db, f"w{i}", "job") for i in range(4)}
    reports = run_children(children)
    assert all(child.returncode == 0 for child in children.values())
    finished = collections.Counter(
        r["finished"] for rs in reports.values() for r in rs if "finished" in r
    )
    assert not [r for rs in reports.values() for r in rs if "lost" in r]
    assert sorted(finished) == sorted(ids)
    assert set(finished.values()) == {1}
    by = {r["finished"]: name for name, rs in reports.items() for r in rs if "finished" in r}
    assert sum(1 for rs in reports.values() if any("finished" in r for r in rs)) >= 2
    store = SQLiteStore(f"sqlite:///{db}")
    try:
        records = await store.list_processes(kind="job")
        assert len(records) == 500
        for record in records:
            assert (record.status, record.attempts) == ("succeeded", 1), record
            assert record.result == {"by": by[record.id], "attempt": 1}
        for sid in sessions:
            page = await store.read_events(sid, limit=10_000)
            assert [e.seq for e in page.events] == list(range(1, 151))
            kinds = collections.Counter((e.type, e.data["process"]["id"]) for e in page.events)
            assert set(kinds.values()) == {1}
            assert {t for t, _ in kinds} == {
                "process_started",
                "process_running",
                "process_finished",
            }
    finally:
        await store.close()


@pytest.mark.parametrize("recovery", ["rerunnable", "owner_bound", "externally_owned"])
async def test_a_claimer_killed_with_sigkill(tmp_path: Path, recovery: str) -> None:
    """A worker SIGKILLed while it holds a claim: its rerunnable process is claimed again once
    the claim expires and finished once, on attempt 2, by a survivor; an owner-bound one ends
    ``abandoned`` and is never run again; an externally owned one stays ``running``, claimed by
    nobody, until its external completion. Every other process is finished exactly once."""
    db = tmp_path / "jobs.db"
    store = SQLiteStore(f"sqlite:///{db}")
    for n in range(40):
        await store.start_process(
            lash.store.ProcessDraft(
                id=f"job-{n}", kind="job", recovery=recovery, max_attempts=3, payload=n
            )
        )
    await store.close()
    # The victim first: it dies holding its third claim; then the survivors, which find that
    # claim live, wait for it to expire, and take it over.
    victim = spawn(db, "victim", "job", "--ttl", "0.5", "--die-after", "3")
    reports = run_children({"victim": victim})
    children = {
        f"w{i}": spawn(db, f"w{i}", "job", "--ttl", "0.5", "--idle", "2.0") for i in range(2)
    }
    reports.update(run_children(children))
    children["victim"] = victim
    assert children["victim"].returncode == -signal.SIGKILL
    assert all(children[f"w{i}"].returncode == 0 for i in range(2))
    orphan = [r["claimed"] for r in reports["victim"] if "claimed" in r][-1]
    finished = collections.Counter(
        r["finished"] for rs in reports.values() for r in rs if "finished" in r
    )
    assert not [r for rs in reports.values() for r in rs if "lost" in r]
    assert set(finished.values()) == {1}
    store = SQLiteStore(f"sqlite:///{db}")
    try:
        orphaned = await store.get_process(orphan)
        assert orphaned is not None
        if recovery == "rerunnable":
            assert sorted(finished) == sorted(f"job-{n}" for n in range(40))
            assert (orphaned.status, orphaned.attempts) == ("succeeded", 2)
            assert orphaned.result is not None and orphaned.result["by"] != "victim"
        else:
            assert orphan not in finished
            assert sorted(finished) == sorted(f"job-{n}" for n in range(40) if f"job-{n}" != orphan)
            status = "abandoned" if recovery == "owner_bound" else "running"
            assert (orphaned.status, orphaned.attempts, orphaned.owner) == (status, 1, "victim")
            claims = [r["claimed"] for rs in reports.values() for r in rs if "claimed" in r]
            assert claims.count(orphan) == 1
        if recovery == "externally_owned":
            done = await store.finish_process(orphan, None, status="succeeded", result="external")
            assert (done.status, done.result) == ("succeeded", "external")
    finally:
        await store.close()


async def test_a_file_from_before_processes_is_migrated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file written by a lash without processes (every migration but 4: the code that writes
    it needs the later ones) gains the processes table (migration 4) when opened: its sessions,
    mailbox and events are intact and processes work on it, in commits too."""
    db = tmp_path / "mailbox-era.db"
    with monkeypatch.context() as old:
        without = tuple(m for m in _sqlite_schema.MIGRATIONS if m.id != 4)
        old.setattr(_sqlite_schema, "MIGRATIONS", without)
        old.setattr(_sqlite_schema, "LATEST", without[-1].id)
        store = SQLiteStore(f"sqlite:///{db}")
        lease = await store.acquire_lease("old", "host-a", ttl=30)
        await store.commit(
            "old", lease=lease, expected_revision=0, delta=lash.store.CommitDelta(turns=1)
        )
        await store.release_lease(lease)
        await store.enqueue_input("old", lash.store.InputDraft("waiting"))
        await store.close()
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT max(id) FROM lash_migrations").fetchone() == (12,)
        assert not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'processes'").fetchall()
    finally:
        conn.close()
    store = SQLiteStore(f"sqlite:///{db}")
    try:
        info = await store.info()
        assert [m["id"] for m in info["migrations"]] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
        assert info["migrations"][3]["name"] == "processes"
        record = await store.load("old")
        assert record is not None and record.revision == 1
        assert [i.text for i in await store.list_inputs("old")] == ["waiting"]
        assert await store.runnable_sessions() == ["old"]
        lease = await store.acquire_lease("old", "host-a", ttl=30)
        draft = lash.store.ProcessDraft(id="p-1", kind="job", session_id="old", payload={"x": 1})
        await store.commit(
            "old",
            lease=lease,
            expected_revision=1,
            delta=lash.store.CommitDelta(turns=1, processes=(draft,), release=True),
        )
        claimed = await store.claim_process("worker", ttl=30)
        assert claimed is not None and claimed.id == "p-1"
        done = await store.finish_process("p-1", claimed.token, status="succeeded", result=2)
        assert (done.status, done.result) == ("succeeded", 2)
        types = [e.type for e in (await store.read_events("old")).events]
        assert types[-3:] == ["process_started", "process_running", "process_finished"]
    finally:
        await store.close()
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA user_version").fetchone() == (12,)
    finally:
        conn.close()


async def test_a_lash_01_file_is_migrated_to_processes(tmp_path: Path) -> None:
    """lash 0.1's database goes through migrations 3, 4 and 5 at once."""
    db = tmp_path / "old.db"
    legacy_database(db)
    store = SQLiteStore(f"sqlite:///{db}")
    try:
        started = await store.start_process(
            lash.store.ProcessDraft(id="p", kind="job", session_id="old-1")
        )
        assert started.status == "pending"
        assert [m["id"] for m in (await store.info())["migrations"]] == [
            1,
            2,
            3,
            4,
            5,
            6,
            7,
            8,
            9,
            10,
            11,
            12,
        ]
        assert (await store.load("old-1")) is not None
    finally:
        await store.close()


async def test_claims_read_only_the_rows_they_may_take(tmp_path: Path) -> None:
    """What a claim reads is an index search or a walk of a partial index (the pending, the
    claimed by expiry, the unnotified ones): never a scan of the whole table, however many
    finished processes it holds; only the expired claims found are sorted."""
    db = tmp_path / "jobs.db"
    store = SQLiteStore(f"sqlite:///{db}")
    await store.open()
    await store.close()
    conn = sqlite3.connect(db)
    try:
        for name, sql in _sqlite_schema.CLAIM_STATEMENTS.items():
            params = dict.fromkeys(_names(sql))
            steps = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params)]
            tables = [s for s in steps if s.startswith(("SCAN processes", "SEARCH processes"))]
            assert tables, (name, steps)
            for step in tables:
                assert "USING" in step and "INDEX" in step, (name, steps)
                if step.startswith("SCAN"):  # a walk of a partial index only
                    assert any(
                        f"INDEX {index}" in step
                        for index in ("processes_pending", "processes_unnotified")
                    ), (name, steps)
            if name != "OLDEST_RERUNNABLE_PROCESS":  # it sorts the expired claims it found
                assert "USE TEMP B-TREE" not in " ".join(steps), (name, steps)
    finally:
        conn.close()


def _names(sql: str) -> list[str]:
    return re.findall(r":(\w+)", sql)


async def test_the_process_checks_pass_on_the_worker_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without inline writes (every statement on aiosqlite's worker thread, as when another
    connection holds the write lock), the store passes the process checks too."""
    import lash_plugins_builtin.sqlite as sqlite_module

    monkeypatch.setattr(sqlite_module, "INLINE", False)
    checks = [name for name in lash.store.STORE_CHECKS if "process" in name or "runnable" in name]
    report = await lash.store.check_store(
        lambda: SQLiteStore(f"sqlite:///{tmp_path}/x.db"), checks=checks
    )
    assert len(report.checks) == 12


async def test_a_claimer_killed_at_a_random_moment(tmp_path: Path) -> None:
    """Three workers run 200 rerunnable processes; one is SIGKILLed at a random moment (before,
    during or after a claim, a run or a finish). Every process ends ``succeeded``, finished
    once: none twice (no finish reported twice, no finish refused), at most one (the victim's
    last claim) run twice, on attempt 2, by a survivor."""
    db = tmp_path / "jobs.db"
    store = SQLiteStore(f"sqlite:///{db}")
    for n in range(200):
        await store.start_process(
            lash.store.ProcessDraft(
                id=f"job-{n}", kind="job", recovery="rerunnable", max_attempts=3
            )
        )
    await store.close()
    args = ("--ttl", "0.5", "--idle", "2.0", "--work", "0.005")
    children = {name: spawn(db, name, "job", *args) for name in ("victim", "w0", "w1")}
    go(children)
    time.sleep(random.uniform(0.05, 0.3))
    children["victim"].send_signal(signal.SIGKILL)
    reports = reports_of(children)
    assert [c.returncode for c in children.values()] == [-signal.SIGKILL, 0, 0]
    finished = collections.Counter(
        r["finished"] for rs in reports.values() for r in rs if "finished" in r
    )
    assert set(finished.values()) <= {1}
    assert not [r for rs in reports.values() for r in rs if "lost" in r]
    store = SQLiteStore(f"sqlite:///{db}")
    try:
        records = await store.list_processes(kind="job")
        assert {r.status for r in records} == {"succeeded"}
        reran = [r for r in records if r.attempts > 1]
        assert len(reran) <= 1
        for record in reran:
            assert record.attempts == 2 and record.result["by"] != "victim"
        victims = [r["claimed"] for r in reports["victim"] if "claimed" in r]
        assert all(r.id in victims[-1:] for r in reran)
    finally:
        await store.close()


async def test_data_that_is_not_json_is_refused_with_nothing_written(tmp_path: Path) -> None:
    """A payload, progress or result that is not JSON data is a SessionError naming the process;
    the process stays as it was (not started, still claimed)."""
    store = SQLiteStore(f"sqlite:///{tmp_path}/jobs.db")
    try:
        with pytest.raises(lash.SessionError, match="payload of process 'bad'"):
            await store.start_process(
                lash.store.ProcessDraft(id="bad", kind="job", payload={"x": object()})
            )
        assert await store.get_process("bad") is None
        await store.start_process(lash.store.ProcessDraft(id="p", kind="job", session_id="s"))
        claimed = await store.claim_process("w", ttl=30)
        assert claimed is not None
        events = (await store.read_events("s")).last
        with pytest.raises(lash.SessionError, match="progress of process 'p'"):
            await store.heartbeat_process("p", claimed.token, ttl=30, progress={1j})
        with pytest.raises(lash.SessionError, match="result of process 'p'"):
            await store.finish_process("p", claimed.token, status="succeeded", result=object())
        assert await store.get_process("p") == claimed
        assert (await store.read_events("s")).last == events
    finally:
        await store.close()
