"""A session's usage totals of the source ``turn`` in its SQLite head row (migration 10): a
commit adds its usage of that source to the head's ``turn_input``, ``turn_output`` and
``turn_cached`` instead of to ``usage_totals``, which keeps the other sources, the child
sessions' roll-ups, and the totals older files hold (their ``turn`` rows included). A load and
the listing add the two up; a replacing commit and a delete drop both.

Expected values are the sums of the usage committed (the store's contract: ``load().usage``
is the total per source, the listing's the total of all of them)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from test_migration import restore
from test_sqlite_store import leased, opened, query

import lash
import lash.store

pytestmark = pytest.mark.anyio

DUMP = Path(__file__).parent / "data" / "lash-migration-7.sql"


def usage_commit(usage: dict[str, tuple[int, int, int]], **more: Any) -> lash.store.CommitDelta:
    return lash.store.CommitDelta(
        usage={source: lash.Usage(*counts) for source, counts in usage.items()}, turns=1, **more
    )


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
        assert before.usage == {
            "child:kid": lash.Usage(5, 5, 5),
            "compaction": lash.Usage(7, 1, 0),
            "turn": lash.Usage(60, 9, 3),
        }
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
