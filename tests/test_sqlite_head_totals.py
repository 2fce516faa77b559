"""A session's usage totals in its SQLite head row (migration 10): a commit adds its usage to
the head's ``totals`` (JSON ``{source: [input, output, cached]}``) instead of to
``usage_totals``, which keeps the child sessions' roll-ups and the totals older files hold. A
load and the listing add the two up; a replacing commit and a delete drop both.

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
from lash_plugins_builtin import _sqlite_schema
from lash_plugins_builtin import sqlite as sqlite_store

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


async def test_an_older_files_totals_stay_in_their_table_and_add_up_with_new_commits(
    tmp_path: Path,
) -> None:
    """Upgraded, a file's usage_totals rows stay as they are (none moved) and load as before;
    the commits after the upgrade add theirs to the head's totals, and a load, the listing and
    the ledger all give the sums."""
    db = old_file(tmp_path)
    rows = query(db, "SELECT * FROM usage_totals ORDER BY source")
    async with opened(db) as store:
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
    assert query(db, "SELECT * FROM usage_totals ORDER BY source") == rows
    ((totals,),) = query(db, "SELECT totals FROM sessions WHERE session_id = 'old'")
    assert json.loads(totals) == {"turn": [4, 1, 2], "tool": [2, 0, 0]}
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
    totals both go); a delete leaves a tombstone with no totals."""
    db = old_file(tmp_path)
    async with opened(db) as store:
        lease = await leased(store, "old")
        revision = await store.commit(
            "old", lease=lease, expected_revision=4, delta=usage_commit({"turn": (1, 1, 1)})
        )
        fresh = usage_commit({"compaction": (2, 2, 2)}, replace=True)
        revision = await store.commit("old", lease=lease, expected_revision=revision, delta=fresh)
        record = await store.load("old")
        assert record is not None and record.usage == {"compaction": lash.Usage(2, 2, 2)}
        (summary,) = await store.list_sessions()
        assert summary.usage == lash.Usage(2, 2, 2)
        assert query(db, "SELECT COUNT(*) FROM usage_totals") == [(0,)]
        # Replaced without usage: none at all.
        empty = lash.store.CommitDelta(turns=0, replace=True)
        await store.commit("old", lease=lease, expected_revision=revision, delta=empty)
        record = await store.load("old")
        assert record is not None and record.usage == {}
        await store.release_lease(lease)
        await store.delete("old")
        assert await store.load("old") is None
    assert query(db, "SELECT totals FROM sessions WHERE session_id = 'old'") == [(None,)]


async def test_a_commit_statement_of_migration_9_adds_to_the_usage_totals_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lash of migration 9 still running on a file a newer one upgraded names no totals in
    its commit statement (NULL): the trigger adds its usage to usage_totals as that lash did,
    and leaves the head's totals as they are; commits of this lash before and after it add to
    the head's; a load gives the sums of all of them."""
    db = tmp_path / "lash.db"
    row = sqlite_store._Plan.row
    at = [i for i, c in enumerate(_sqlite_schema.COMMIT_COLUMNS) if c.endswith("totals")]
    assert len(at) == 2  # expected_totals, totals

    def without_totals(plan: Any) -> tuple[Any, ...]:
        values = list(row(plan))
        for i in at:
            values[i] = None
        return tuple(values)

    async with opened(db) as store:
        lease = await leased(store, "s")
        await store.commit(
            "s", lease=lease, expected_revision=0, delta=usage_commit({"turn": (10, 1, 0)})
        )
        store._heads.clear()  # the next commit reads the head: through the commit statement
        store._inline = False
        with monkeypatch.context() as patched:
            patched.setattr(sqlite_store._Plan, "row", without_totals)
            await store.commit(
                "s", lease=lease, expected_revision=1, delta=usage_commit({"turn": (5, 0, 1)})
            )
        assert query(db, "SELECT source, input_tokens FROM usage_totals") == [("turn", 5)]
        await store.commit(
            "s", lease=lease, expected_revision=2, delta=usage_commit({"turn": (1, 1, 1)})
        )
        record = await store.load("s")
    assert record is not None and record.usage == {"turn": lash.Usage(16, 2, 2)}
    ((totals,),) = query(db, "SELECT totals FROM sessions")
    assert json.loads(totals) == {"turn": [11, 2, 1]}
