"""Where a SQLite file keeps usage. A session's usage totals of the source ``turn`` are in its
head row (migration 10): a
commit adds its usage of that source to the head's ``turn_input``, ``turn_output`` and
``turn_cached`` instead of to ``usage_totals``, which keeps the other sources, the child
sessions' roll-ups, and the totals older files hold (their ``turn`` rows included). A load and
the listing add the two up; a replacing commit and a delete drop both.

And a turn commit's ledger rows are its turn record's ``usage`` (migration 11): the view
``usage_ledger`` gives them with the rows of the other commits (``usage_ledger_rows``, where
an older file's rows stay), one row per commit and source as before.

Expected values are the sums of the usage committed (the store's contract: ``load().usage``
is the total per source, the listing's the total of all of them)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from test_migration import restore
from test_sqlite_store import leased, opened, query

import lash
import lash.store
from lash_plugins_builtin import sqlite as sqlite_store

pytestmark = pytest.mark.anyio

DUMP = Path(__file__).parent / "data" / "lash-migration-7.sql"


def usage_commit(
    usage: dict[str, tuple[int, int, int]], *, turns: int = 1, **more: Any
) -> lash.store.CommitDelta:
    return lash.store.CommitDelta(
        usage={source: lash.Usage(*counts) for source, counts in usage.items()},
        turns=turns,
        **more,
    )


#: The usage :func:`old_file`'s session loads with, by source.
OLD_USAGE = {
    "child:kid": lash.Usage(5, 5, 5),
    "compaction": lash.Usage(7, 1, 0),
    "turn": lash.Usage(60, 9, 3),
}


def old_file(tmp_path: Path) -> Path:
    """The migration 7 file, with the usage rows that lash wrote for its session's commits
    (revisions 1 to 4: three turns and a compaction) and a child session's roll-up."""
    db = restore(DUMP, tmp_path / "old.db")
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO usage_ledger VALUES ('old', ?, ?, ?, ?, ?, 1.0)",
            [
                (1, "turn", 10, 2, 1),
                (2, "turn", 20, 3, 0),
                (3, "compaction", 7, 1, 0),
                (4, "turn", 30, 4, 2),
            ],
        )
        conn.executemany(
            "INSERT INTO usage_totals VALUES ('old', ?, ?, ?, ?)",
            [("turn", 60, 9, 3), ("compaction", 7, 1, 0), ("child:kid", 5, 5, 5)],
        )
    return db


@pytest.mark.parametrize("inline", [True, False])
async def test_an_older_files_totals_stay_in_their_table_and_add_up_with_new_commits(
    tmp_path: Path, inline: bool
) -> None:
    """Upgraded, a file's usage_totals rows stay as they are (none moved, its "turn" row too)
    and load as before; the commits after the upgrade add their "turn" usage to the head's
    totals and the other sources to usage_totals, and a load, the listing and the ledger all
    give the sums. The same made with plain statements (inline) and by the commit statement's
    trigger (on the worker thread)."""
    db = old_file(tmp_path)
    rows = query(db, "SELECT * FROM usage_totals ORDER BY source")
    async with opened(db) as store:
        if not inline:
            store._inline = False
        before = await store.load("old")
        assert before is not None
        assert before.usage == OLD_USAGE
        lease = await leased(store, "old")
        delta = usage_commit({"turn": (1, 1, 1), "tool": (2, 0, 0)})
        revision = await store.commit("old", lease=lease, expected_revision=4, delta=delta)
        delta = usage_commit({"turn": (3, 0, 1)}, release=True)
        await store.commit("old", lease=lease, expected_revision=revision, delta=delta)
        after = await store.load("old")
        (summary,) = await store.list_sessions()
    turn = "SELECT turn_input, turn_output, turn_cached FROM sessions WHERE session_id = 'old'"
    assert query(db, turn) == [(4, 1, 2)]  # this lash's commits of "turn"
    # Only the other sources go to usage_totals: "tool" is new there.
    assert query(db, "SELECT * FROM usage_totals WHERE source != 'tool' ORDER BY source") == rows
    assert query(db, "SELECT * FROM usage_totals WHERE source = 'tool'") == [
        ("old", "tool", 2, 0, 0)
    ]
    assert after is not None
    assert after.usage == {
        "child:kid": lash.Usage(5, 5, 5),
        "compaction": lash.Usage(7, 1, 0),
        "tool": lash.Usage(2, 0, 0),
        "turn": lash.Usage(64, 10, 5),
    }
    assert list(after.usage) == sorted(after.usage)  # by source, as before
    assert summary.usage == lash.Usage(5 + 7 + 2 + 64, 5 + 1 + 0 + 10, 5 + 0 + 0 + 5)
    ledger = query(
        db,
        "SELECT source, SUM(input_tokens), SUM(output_tokens), SUM(cached_tokens) "
        "FROM usage_ledger GROUP BY source ORDER BY source",
    )
    assert ledger == [("compaction", 7, 1, 0), ("tool", 2, 0, 0), ("turn", 64, 10, 5)]
    async with opened(db) as store:  # read by another store, from the file
        again = await store.load("old")
    assert again is not None and again.usage == after.usage


async def test_a_replacing_commit_and_a_delete_drop_both_kinds_of_totals(tmp_path: Path) -> None:
    """A replacing commit starts the usage over from its own (the table's rows and the head's
    totals both go; a "turn" usage of zero is still a source the load reports); a delete
    leaves a tombstone with no totals."""
    db = old_file(tmp_path)
    async with opened(db) as store:
        lease = await leased(store, "old")
        revision = await store.commit(
            "old", lease=lease, expected_revision=4, delta=usage_commit({"turn": (1, 1, 1)})
        )
        fresh = usage_commit({"compaction": (2, 2, 2), "turn": (0, 0, 0)}, replace=True)
        revision = await store.commit("old", lease=lease, expected_revision=revision, delta=fresh)
        record = await store.load("old")
        assert record is not None
        assert record.usage == {"compaction": lash.Usage(2, 2, 2), "turn": lash.Usage(0, 0, 0)}
        (summary,) = await store.list_sessions()
        assert summary.usage == lash.Usage(2, 2, 2)
        assert query(db, "SELECT source FROM usage_totals") == [("compaction",)]
        # Replaced without usage: none at all.
        empty = lash.store.CommitDelta(turns=0, replace=True)
        await store.commit("old", lease=lease, expected_revision=revision, delta=empty)
        record = await store.load("old")
        assert record is not None and record.usage == {}
        await store.release_lease(lease)
        await store.delete("old")
        assert await store.load("old") is None
    turn = "SELECT turn_input, turn_output, turn_cached FROM sessions WHERE session_id = 'old'"
    assert query(db, turn) == [(None, None, None)]


# -- the ledger: a turn's rows in its turn record (migration 11) --------------------------------


def ledger(db: Path) -> list[tuple[Any, ...]]:
    return query(
        db,
        "SELECT session_id, revision, source, input_tokens, output_tokens, cached_tokens, "
        "recorded_at FROM usage_ledger ORDER BY session_id, revision, source",
    )


@pytest.mark.parametrize("inline", [True, False])
async def test_the_ledger_has_a_row_per_commit_and_source_the_turns_in_their_records(
    tmp_path: Path, inline: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``usage_ledger`` gives one row per commit and usage source, stamped with the commit's
    revision and time, whether the commit carries a turn record (its rows are the record's
    ``usage``) or not (rows of ``usage_ledger_rows``); made with plain statements or by the
    commit statement's trigger."""
    clock = iter(float(t) for t in range(1000, 2000))
    monkeypatch.setattr(sqlite_store.time, "time", lambda: next(clock))
    db = tmp_path / "lash.db"
    async with opened(db) as store:
        if not inline:
            store._inline = False
        lease = await leased(store, "s")
        commits = [
            usage_commit({"turn": (10, 2, 1)}, turn=record("t1", 1)),
            usage_commit({"compaction": (3, 0, 0)}),
            usage_commit({"turn": (5, 1, 0), "tool": (1, 1, 1)}, turn=record("t2", 2)),
            usage_commit({}, turn=record("t3", 3)),
        ]
        revision = 0
        stamps = []
        for delta in commits:
            revision = await store.commit("s", lease=lease, expected_revision=revision, delta=delta)
            stamps.append(query(db, "SELECT updated_at FROM sessions")[0][0])
    assert ledger(db) == [
        ("s", 1, "turn", 10, 2, 1, stamps[0]),
        ("s", 2, "compaction", 3, 0, 0, stamps[1]),
        ("s", 3, "tool", 1, 1, 1, stamps[2]),
        ("s", 3, "turn", 5, 1, 0, stamps[2]),
    ]
    assert query(db, "SELECT revision, source FROM usage_ledger_rows") == [(2, "compaction")]
    records = query(db, "SELECT turn_id, revision, usage FROM turn_records ORDER BY revision")
    assert [(t, r, None if u is None else json.loads(u)) for t, r, u in records] == [
        ("t1", 1, [["turn", 10, 2, 1]]),
        ("t2", 3, [["turn", 5, 1, 0], ["tool", 1, 1, 1]]),
        ("t3", 4, None),
    ]


def record(turn_id: str, index: int) -> lash.store.TurnRecord:
    return lash.store.TurnRecord("s", turn_id, index, "completed", 0)


async def test_an_older_files_ledger_rows_stay_and_a_replace_or_delete_drops_them(
    tmp_path: Path,
) -> None:
    """Upgraded, a file's ledger rows are the rows' table's (none moved) and read through the
    view as before, beside the turns committed after; a replacing commit drops both kinds
    (the turn records stay: a turn id is committed once), and a delete the rest."""
    db = old_file(tmp_path)
    old_rows = [
        ("old", revision, source, i, o, c, 1.0)
        for revision, source, i, o, c in [
            (1, "turn", 10, 2, 1),
            (2, "turn", 20, 3, 0),
            (3, "compaction", 7, 1, 0),
            (4, "turn", 30, 4, 2),
        ]
    ]
    async with opened(db) as store:
        assert ledger(db) == old_rows
        lease = await leased(store, "old")
        turn = lash.store.TurnRecord("old", "t9", 4, "completed", 0)
        delta = usage_commit({"turn": (1, 1, 1)}, turn=turn)
        revision = await store.commit("old", lease=lease, expected_revision=4, delta=delta)
        ((stamp,),) = query(db, "SELECT updated_at FROM sessions WHERE session_id = 'old'")
        assert ledger(db) == [*old_rows, ("old", 5, "turn", 1, 1, 1, stamp)]
        assert query(db, "SELECT COUNT(*) FROM usage_ledger_rows") == [(4,)]
        fresh = usage_commit({"compaction": (2, 2, 2)}, replace=True)
        await store.commit("old", lease=lease, expected_revision=revision, delta=fresh)
        ((stamp,),) = query(db, "SELECT updated_at FROM sessions WHERE session_id = 'old'")
        assert ledger(db) == [("old", 6, "compaction", 2, 2, 2, stamp)]
        assert query(db, "SELECT turn_id, usage FROM turn_records") == [("t9", None)]
        await store.release_lease(lease)
        await store.delete("old")
    assert ledger(db) == []


async def test_a_lash_of_migration_10_writes_and_deletes_ledger_rows_through_the_view(
    tmp_path: Path,
) -> None:
    """A lash of migration 10 still running on a file a newer one upgraded inserts its ledger
    rows into ``usage_ledger`` and deletes a session's from it: the view's triggers write
    them to ``usage_ledger_rows``, where they read back through the view."""
    db = tmp_path / "lash.db"
    async with opened(db) as store:
        await store.open()
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO usage_ledger (session_id, revision, source, input_tokens, "
            "output_tokens, cached_tokens, recorded_at) VALUES (?, ?, 'turn', 1, 2, 3, 9.5)",
            [("a", 1), ("a", 2), ("b", 1)],
        )
    assert ledger(db) == [
        ("a", 1, "turn", 1, 2, 3, 9.5),
        ("a", 2, "turn", 1, 2, 3, 9.5),
        ("b", 1, "turn", 1, 2, 3, 9.5),
    ]
    assert query(db, "SELECT COUNT(*) FROM usage_ledger_rows") == [(3,)]
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM usage_ledger WHERE session_id = 'a'")
    assert query(db, "SELECT session_id, revision FROM usage_ledger_rows") == [("b", 1)]
