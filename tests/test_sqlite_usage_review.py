"""Review of h-pages (issue 17: a turn's usage in the head row and in its turn record): what
the SQLite store's usage API and ``usage_ledger`` give must not change, on new files, upgraded
files and files an older lash still writes to. Expected values are the store's contract (the
memory store's answers: ``load().usage`` the total per source, the listing's the total of all
of them; the ledger one row per commit and source)."""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from test_sqlite_store import leased, opened, query
from test_sqlite_usage import OLD_USAGE, old_file
from test_sqlite_usage import usage_commit as turn_usage_commit

import lash
import lash.store

pytestmark = pytest.mark.anyio


def usage_commit(usage: dict[str, tuple[int, int, int]], **more: Any) -> lash.store.CommitDelta:
    """A commit of ``usage`` that counts no turn (these tests read usage only)."""
    return turn_usage_commit(usage, turns=0, **more)


#: What a lash of migration 9 (main before issue 17) runs to delete a session, in order
#: (``DROP_SESSION_ROWS`` and ``TOMBSTONE`` of its ``_sqlite_schema.py``, verbatim but for
#: the session id): the head row stays as a tombstone, with the columns that lash knows reset.
OLDER_LASH_DELETE = (
    *(
        f"DELETE FROM {table} WHERE session_id = ?"
        for table in (
            "nodes",
            "plugin_states",
            "usage_ledger",
            "usage_totals",
            "inputs",
            "commands",
            "turn_records",
            "cancel_requests",
            "events",
        )
    ),
    """UPDATE sessions SET revision = 0, created_at = 0, updated_at = 0, turns = 0,
    next_seq = 0, frame_start = 0, last_user_message = NULL, config_hash = NULL,
    protocol_options_hash = NULL, pending_hash = NULL, status = NULL, running_turn = NULL,
    events_at = 0, parent_id = NULL WHERE session_id = ?""",
)


@pytest.mark.parametrize("inline", [True, False])
async def test_a_session_an_older_lash_deleted_starts_with_no_usage(
    tmp_path: Path, inline: bool
) -> None:
    """An older lash (migration 9) still running on the file deletes a session this lash
    committed turns to; this lash then starts the session again: its usage is the new
    commit's only, as the ledger says (and as on main, where the delete dropped the
    usage_totals rows). Found: the tombstone keeps ``turn_input``/``turn_output``/
    ``turn_cached`` (the older lash does not know them), and the next commit adds to them."""
    db = tmp_path / "lash.db"
    async with opened(db) as store:
        if not inline:
            store._inline = False
        lease = await leased(store, "s")
        await store.commit(
            "s", lease=lease, expected_revision=0, delta=usage_commit({"turn": (10, 20, 30)})
        )
        await store.release_lease(lease)
        with sqlite3.connect(db) as conn:  # the older lash's delete
            for sql in OLDER_LASH_DELETE:
                conn.execute(sql, ("s",))
        assert await store.load("s") is None
        lease = await leased(store, "s")
        await store.commit(
            "s",
            lease=lease,
            expected_revision=0,
            delta=usage_commit({"turn": (1, 2, 3)}, release=True),
        )
        record = await store.load("s")
        (summary,) = await store.list_sessions()
    ledger = "SELECT source, input_tokens, output_tokens, cached_tokens FROM usage_ledger"
    assert query(db, ledger) == [("turn", 1, 2, 3)]
    assert record is not None
    assert record.usage == {"turn": lash.Usage(1, 2, 3)}
    assert summary.usage == lash.Usage(1, 2, 3)


async def test_a_session_an_older_lash_deleted_and_committed_to_again_has_its_usage(
    tmp_path: Path,
) -> None:
    """As above, but the older lash itself commits to the session again after its delete (its
    commit writes the head's columns it knows and its usage to usage_totals and the ledger,
    as main's plain statements do): this lash loads that commit's usage. Found: the
    tombstone's ``turn_*`` are added to it. (So resetting the columns in this lash's own
    first commit on a tombstone is not enough: the older lash's delete must drop them.)"""
    db = tmp_path / "lash.db"
    async with opened(db) as store:
        lease = await leased(store, "s")
        await store.commit(
            "s",
            lease=lease,
            expected_revision=0,
            delta=usage_commit({"turn": (10, 20, 30)}, release=True),
        )
    with sqlite3.connect(db) as conn:
        for sql in OLDER_LASH_DELETE:  # the older lash's delete ...
            conn.execute(sql, ("s",))
        # ... and its next commit of the session (revision 1): the head, the totals, the ledger
        conn.execute(
            "UPDATE sessions SET revision = 1, created_at = 5.0, updated_at = 5.0, turns = 1 "
            "WHERE session_id = 's'"
        )
        conn.execute("INSERT INTO usage_totals VALUES ('s', 'turn', 1, 2, 3)")
        conn.execute("INSERT INTO usage_ledger VALUES ('s', 1, 'turn', 1, 2, 3, 5.0)")
    async with opened(db) as store:
        record = await store.load("s")
        (summary,) = await store.list_sessions()
    assert record is not None
    assert record.usage == {"turn": lash.Usage(1, 2, 3)}
    assert summary.usage == lash.Usage(1, 2, 3)


@pytest.mark.parametrize("inline", [True, False])
async def test_the_listing_of_huge_totals_answers_as_main_did(tmp_path: Path, inline: bool) -> None:
    """Token counts near 2**63: two turns of 2**62 input tokens overflow SQLite's integers
    (their total becomes a REAL, on main in usage_totals, now in the head), then two other
    sources of 2**62 each, named after "turn". Main's listing summed the totals in source
    order, the REAL first (SQLite's SUM goes on in floating point: no overflow) and agreed
    with the load. Found: the listing now SUMs the other sources alone (two integers:
    "integer overflow", the listing fails) and adds the head's after. (Main fails too when
    two such sources sort before "turn": SUM's overflow depends on the order it reads.)"""
    db = tmp_path / "lash.db"
    big = 2**62
    async with opened(db) as store:
        if not inline:
            store._inline = False
        lease = await leased(store, "s")
        revision = 0
        for usage in ({"turn": (big, 0, 0)}, {"turn": (big, 0, 0)}, {"vision": (big, 0, 0)}):
            delta = usage_commit(usage)
            revision = await store.commit("s", lease=lease, expected_revision=revision, delta=delta)
        delta = usage_commit({"web": (big, 0, 0)})
        await store.commit("s", lease=lease, expected_revision=revision, delta=delta)
        record = await store.load("s")
        assert record is not None
        (summary,) = await store.list_sessions()
    total = sum(record.usage.values(), lash.Usage())
    assert summary.usage.input_tokens == pytest.approx(total.input_tokens)
    assert summary.usage.input_tokens == pytest.approx(4 * big)


# -- crash safety: SIGKILL while committing ------------------------------------------------------

HARNESS = Path(__file__).parent / "usage_ops.py"


def random_commits(rng: random.Random, count: int) -> list[dict[str, Any]]:
    """Commits of the sessions ``p``, its child ``c`` (rolling its usage up into ``p``) and
    ``x`` (replaced now and then), with and without a turn record, of several sources."""
    ops: list[dict[str, Any]] = []
    for n in range(count):
        sid = rng.choice(["p", "c", "x"])
        usage = {
            source: [rng.randint(0, 1000) for _ in range(3)]
            for source in ("turn", "tool", "compaction")
            if rng.random() < (0.8 if source == "turn" else 0.3)
        }
        op: dict[str, Any] = {"op": "commit", "sid": sid, "usage": usage}
        if rng.random() < 0.6:
            op["turn"], op["index"] = f"t{n}", n
        if sid == "x" and rng.random() < 0.1:
            op["replace"] = True
        if sid == "c":
            op["parent"] = "p"
            if usage:
                total = [sum(u[i] for u in usage.values()) for i in range(3)]
                op["rollup"] = {"p": {"child:c": total}}
        ops.append(op)
    return ops


def sums(rows: list[tuple[Any, ...]]) -> dict[str, lash.Usage]:
    return {str(source): lash.Usage(i, o, c) for source, i, o, c in rows}


@pytest.mark.parametrize("kind", ["sqlite", "sqlite-trigger"])
async def test_sigkill_while_committing_leaves_totals_equal_to_the_ledger(
    tmp_path: Path, kind: str
) -> None:
    """A process committing usage (to the head, the turn records, usage_ledger_rows and
    usage_totals) is SIGKILLed at random moments, again and again on the same file: after each
    kill every session's totals (load and listing) are the sums of its ledger, and the
    parent's ``child:c`` the sum of the child's ledger."""
    db = tmp_path / "lash.db"
    rng = random.Random(17)
    for kill in range(6):
        ops = random_commits(rng, 300)
        ops = [{**op, "turn": f"k{kill}-{op['turn']}"} if "turn" in op else op for op in ops]
        child = subprocess.Popen(
            [sys.executable, str(HARNESS), "-", kind, str(db), "-"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(json.dumps({"op": "observe", "sids": []}) + "\n")
        child.stdin.flush()
        assert child.stdout.readline()  # opened (and, the first time, made) the file
        child.stdin.write("".join(json.dumps(op) + "\n" for op in ops))
        child.stdin.flush()
        for _ in range(rng.randint(1, 120)):  # some commits done, then any moment
            assert child.stdout.readline()
        time.sleep(rng.uniform(0, 0.02))
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        try:
            child.stdin.close()
        except BrokenPipeError:  # (what it had not read yet)
            pass
        assert child.returncode == -signal.SIGKILL
        ledger = """SELECT source, SUM(input_tokens), SUM(output_tokens), SUM(cached_tokens)
            FROM usage_ledger WHERE session_id = ? GROUP BY source ORDER BY source"""
        async with opened(db) as store:
            for sid in ("p", "c", "x"):
                record = await store.load(sid)
                if record is None:
                    continue
                own = {s: u for s, u in record.usage.items() if not s.startswith("child:")}
                assert own == sums(query(db, ledger, (sid,))), (kill, sid)
            record = await store.load("p")
            child_total = query(
                db,
                """SELECT 'child:c', SUM(input_tokens), SUM(output_tokens), SUM(cached_tokens)
                FROM usage_ledger WHERE session_id = 'c' HAVING COUNT(*)""",
            )
            if record is not None:
                assert {s: u for s, u in record.usage.items() if s.startswith("child:")} == (
                    sums(child_total)
                )
            for summary in await store.list_sessions():
                loaded = await store.load(summary.session_id)
                assert loaded is not None
                assert summary.usage == sum(loaded.usage.values(), lash.Usage())
    assert query(db, "PRAGMA integrity_check") == [("ok",)]


# -- upgrading: SIGKILL during it, several processes at once -------------------------------------


def open_in_child(db: Path) -> subprocess.Popen[str]:
    """A process that opens ``db`` (upgrading it) and lists what it holds, then ends."""
    ops = json.dumps([{"op": "observe", "sids": ["old"]}])
    return subprocess.Popen(
        [sys.executable, str(HARNESS), "-", "sqlite", str(db), ops],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def migrations(db: Path) -> list[int]:
    return [m for (m,) in query(db, "SELECT id FROM lash_migrations ORDER BY id")]


async def test_sigkill_during_the_upgrade_leaves_the_old_file_or_the_new_one(
    tmp_path: Path,
) -> None:
    """The migration 7 file (with ledger and totals rows), opened by processes SIGKILLed at
    random moments of their start: each time the file is whole, at migration 7 or 12 (no
    step half made), and finally upgraded it holds the same usage as before."""
    db = old_file(tmp_path)
    before = query(db, "SELECT * FROM usage_ledger ORDER BY revision, source")
    rng = random.Random(5)
    child = open_in_child(tmp_path / "timing.db")  # how long a start takes here
    started = time.monotonic()
    child.communicate()
    span = time.monotonic() - started
    for _ in range(12):
        child = open_in_child(db)
        time.sleep(rng.uniform(span * 0.3, span))
        child.send_signal(signal.SIGKILL)
        child.communicate()
        assert query(db, "PRAGMA integrity_check") == [("ok",)]
        applied = migrations(db)
        assert applied in (list(range(1, 8)), list(range(1, 13))), applied
        kind = "view" if applied[-1] == 12 else "table"
        assert query(db, "SELECT type FROM sqlite_master WHERE name = 'usage_ledger'") == [(kind,)]
        assert query(db, "SELECT * FROM usage_ledger ORDER BY revision, source") == before
    async with opened(db) as store:
        record = await store.load("old")
    assert record is not None
    assert record.usage == OLD_USAGE


async def test_several_processes_upgrading_one_file_at_once(tmp_path: Path) -> None:
    """Four processes open the migration 7 file at once: each answers with its usage, every
    step is applied once, and the usage is the file's."""
    db = old_file(tmp_path)
    children = [open_in_child(db) for _ in range(4)]
    answers = [child.communicate() for child in children]
    for child, (out, err) in zip(children, answers, strict=True):
        assert child.returncode == 0, err
        ((observed,),) = [json.loads(out)]
        assert observed["load"]["old"] == {
            "child:kid": [5, 5, 5],
            "compaction": [7, 1, 0],
            "turn": [60, 9, 3],
        }
    assert migrations(db) == list(range(1, 13))


# -- the docs -------------------------------------------------------------------------------------


async def test_the_schema_module_describes_every_table_and_view_of_a_file(tmp_path: Path) -> None:
    """``_sqlite_schema``'s docstring is the reference of the file's tables (DESIGN, STYLE:
    docs say what the code does): each table and view of a new file is named there. (Failed
    at 80f7ea0, where ``usage_ledger_rows`` was missing; f184d85 names it.)"""
    from lash_plugins_builtin import _sqlite_schema as schema

    db = tmp_path / "lash.db"
    async with opened(db) as store:
        await store.open()
    names = query(
        db,
        "SELECT name, type FROM sqlite_master WHERE type IN ('table', 'view') "
        "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
    )
    doc = schema.__doc__ or ""
    assert [name for name, _ in names if f"``{name}``" not in doc] == []


# -- random sequences: the SQLite store answers as the memory store ------------------------------

PARENTS = {"c": "p", "g": "c"}


def random_sequence(rng: random.Random, count: int) -> list[dict[str, Any]]:
    """Commits (turn commits and others, several sources, zero usage, replaces, a child and a
    grandchild rolling up), deletes of sessions no other rolls up into, and observations."""
    ops: list[dict[str, Any]] = []
    for n in range(count):
        sid = rng.choice(["p", "c", "g", "x"])
        if sid in ("g", "x") and rng.random() < 0.08:
            ops.append({"op": "delete", "sid": sid})
            continue
        usage = {
            source: [rng.choice([0, rng.randint(0, 500)]) for _ in range(3)]
            for source in ("turn", "tool", "compaction")
            if rng.random() < (0.7 if source == "turn" else 0.3)
        }
        op: dict[str, Any] = {"op": "commit", "sid": sid, "usage": usage}
        if rng.random() < 0.6:
            op["turn"], op["index"] = f"t{n}", n
            op["outcome"] = rng.choice(["completed", "stopped", "failed"])
        if rng.random() < 0.08:
            op["replace"] = True
        if sid in PARENTS:
            op["parent"] = PARENTS[sid]
            total = [sum(u[i] for u in usage.values()) for i in range(3)]
            if any(total):
                ancestors, up = [], sid
                while up in PARENTS:
                    up = PARENTS[up]
                    ancestors.append(up)
                op["rollup"] = {a: {f"child:{sid}": total} for a in ancestors}
        ops.append(op)
        if rng.random() < 0.3:
            ops.append({"op": "observe", "sids": ["p", "c", "g", "x"]})
    ops.append({"op": "observe", "sids": ["p", "c", "g", "x"]})
    return ops


def without_ledger(answers: list[Any]) -> list[Any]:
    return [
        {k: v for k, v in a.items() if k != "ledger"} if isinstance(a, dict) else a for a in answers
    ]


@pytest.mark.parametrize("seed", range(6))
async def test_random_sequences_answer_as_the_memory_store(tmp_path: Path, seed: int) -> None:
    """Loads and listings after random commit sequences are the memory store's, with plain
    statements and with the trigger; and the ledger is the same both ways."""
    from usage_ops import run

    ops = random_sequence(random.Random(seed), 60)
    expected = without_ledger(await run("memory", "", ops))
    inline = await run("sqlite", str(tmp_path / "inline.db"), ops)
    trigger = await run("sqlite-trigger", str(tmp_path / "trigger.db"), ops)
    assert without_ledger(inline) == expected
    assert without_ledger(trigger) == expected
    assert inline == trigger
