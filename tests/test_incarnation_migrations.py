"""Databases from before session incarnations (SQLite migration 12, Postgres migration 7): a
deleted parent's tombstone that children still link to becomes the id's first deleted
incarnation, so those children stop rolling up into it and into a session created under the
id afterwards; what they rolled up into it since the delete goes; every other link, a live
parent's and a parent's whose first turn runs, rolls up as before.

Expected values are the usage committed (the store contract: a parent counts its children's
roll-ups, a deleted one and one created again under its id none)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import attrs
import pytest
from test_migration import restore
from test_sqlite_store import opened as sqlite_opened
from test_sqlite_store import query

import lash
import lash.store
from lash_plugins_builtin import _postgres_schema
from lash_plugins_builtin.postgres import PostgresStore

pytestmark = pytest.mark.anyio

DUMP = Path(__file__).parent / "data" / "lash-migration-7.sql"
U = lash.Usage


def rolled(child: str, parent: str, usage: lash.Usage) -> lash.store.CommitDelta:
    """A commit of ``child`` (a turn's usage) that rolls up into ``parent``, as the kernel's."""
    return lash.store.CommitDelta(
        usage={"turn": usage}, turns=1, rollup={parent: {f"child:{child}": usage}}
    )


async def usage_of(store: lash.store.Store, session_id: str) -> dict[str, lash.Usage]:
    record = await store.load(session_id)
    assert record is not None
    return dict(record.usage)


async def check_upgraded(store: lash.store.Store, kid_revision: int) -> None:
    """What every upgraded database does: ``pa`` (deleted under ``pa/kid``) gets nothing, not
    once created again; ``q`` (alive) gets ``q/kid``'s usage; ``first`` (its first turn
    running, leased by ``w``) gets ``first/kid``'s."""
    kid = await store.acquire_lease("pa/kid", "new", ttl=30)
    await store.commit(
        "pa/kid", lease=kid, expected_revision=kid_revision, delta=rolled("pa/kid", "pa", U(1))
    )
    assert await store.load("pa") is None
    again = await store.acquire_lease("pa", "new", ttl=30)
    await store.commit(
        "pa", lease=again, expected_revision=0, delta=lash.store.CommitDelta(usage={"turn": U(5)})
    )
    await store.commit(
        "pa/kid",
        lease=kid,
        expected_revision=kid_revision + 1,
        delta=rolled("pa/kid", "pa", U(2)),
    )
    record = await store.load("pa")
    assert record is not None
    assert (dict(record.usage), record.incarnation) == ({"turn": U(5)}, 1)
    child = await store.load("pa/kid")
    assert child is not None
    assert (child.parent_id, child.parent_incarnation) == ("pa", 0)

    q_kid = await store.acquire_lease("q/kid", "new", ttl=30)
    await store.commit("q/kid", lease=q_kid, expected_revision=1, delta=rolled("q/kid", "q", U(3)))
    assert (await usage_of(store, "q"))["child:q/kid"] == U(5)

    first_kid = await store.acquire_lease("first/kid", "new", ttl=30)
    delta = rolled("first/kid", "first", U(4))
    await store.commit("first/kid", lease=first_kid, expected_revision=1, delta=delta)


# -- SQLite ------------------------------------------------------------------------------------


def sqlite_file_of_an_older_lash(tmp_path: Path) -> Path:
    """The migration 7 file with what an older lash left: ``pa`` deleted while its child
    ``pa/kid`` lived on (whose next commit rolled up into the tombstone), ``q`` and ``q/kid``
    alive, and ``first``, whose first turn runs (leased far into the future), with a child
    that rolled up into it."""
    db = restore(DUMP, tmp_path / "old.db")
    columns = "session_id, revision, turns, lease_owner, lease_token, lease_expires_at, parent_id"
    with sqlite3.connect(db) as conn:
        conn.executemany(
            f"INSERT INTO sessions ({columns}) VALUES (?, ?, ?, 'w', ?, ?, ?)",
            [
                ("pa", 0, 0, 3, 0.0, None),
                ("pa/kid", 2, 2, 2, 0.0, "pa"),
                ("q", 1, 1, 1, 0.0, None),
                ("q/kid", 1, 1, 1, 0.0, "q"),
                ("first", 0, 0, 1, 4e9, None),
                ("first/kid", 1, 1, 1, 0.0, "first"),
            ],
        )
        conn.executemany(
            "INSERT INTO usage_totals VALUES (?, ?, ?, 0, 0)",
            [
                ("pa", "child:pa/kid", 4),
                ("pa/kid", "turn", 9),
                ("q", "turn", 1),
                ("q", "child:q/kid", 2),
                ("q/kid", "turn", 2),
                ("first", "child:first/kid", 6),
                ("first/kid", "turn", 6),
            ],
        )
    return db


async def test_a_sqlite_file_from_before_incarnations_is_upgraded(tmp_path: Path) -> None:
    """Upgraded, the file's tombstone under a child is the id's first deleted incarnation
    (what the child rolled up into it since the delete dropped), the other heads stay the
    first, and roll-ups follow the links as a new file's do."""
    db = sqlite_file_of_an_older_lash(tmp_path)
    async with sqlite_opened(db) as store:
        await store.open()
        assert query(
            db, "SELECT session_id, incarnation, parent_incarnation FROM sessions ORDER BY 1"
        ) == [
            ("first", 0, 0),
            ("first/kid", 0, 0),
            ("old", 0, 0),
            ("pa", 1, 0),
            ("pa/kid", 0, 0),
            ("q", 0, 0),
            ("q/kid", 0, 0),
        ]
        assert query(db, "SELECT COUNT(*) FROM usage_totals WHERE session_id = 'pa'") == [(0,)]
        await check_upgraded(store, 2)
    rows = query(db, "SELECT source, input_tokens FROM usage_totals WHERE session_id = 'first'")
    assert rows == [("child:first/kid", 10)]


# -- Postgres ----------------------------------------------------------------------------------


async def test_a_postgres_database_from_before_incarnations_is_upgraded(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database an older lash (migrations 1 to 6) wrote, with a child of a deleted parent
    that rolled up into the tombstone, is upgraded as a SQLite file is."""
    with monkeypatch.context() as old:
        previous = tuple(m for m in _postgres_schema.MIGRATIONS if m.id < 7)
        old.setattr(_postgres_schema, "MIGRATIONS", previous)
        old.setattr(_postgres_schema, "LATEST", previous[-1].id)
        store = PostgresStore(postgres_url)
        try:
            for parent in ("pa", "q"):
                lease = await store.acquire_lease(parent, "w", ttl=30)
                await store.commit(
                    parent,
                    lease=lease,
                    expected_revision=0,
                    delta=lash.store.CommitDelta(usage={"turn": U(1)}, release=True),
                )
            # "first" runs its first turn (leased) while its child commits.
            await store.acquire_lease("first", "w", ttl=600)
            for parent in ("pa", "q", "first"):
                kid = await store.acquire_lease(f"{parent}/kid", "w", ttl=30)
                delta = attrs.evolve(rolled(f"{parent}/kid", parent, U(2)), parent_id=parent)
                await store.commit(f"{parent}/kid", lease=kid, expected_revision=0, delta=delta)
                await store.release_lease(kid)
            await store.delete("pa")
            # The older lash's bug: the orphan's next commit lands on the tombstone.
            kid = await store.acquire_lease("pa/kid", "w", ttl=30)
            delta = rolled("pa/kid", "pa", U(4))
            await store.commit("pa/kid", lease=kid, expected_revision=1, delta=delta)
            await store.release_lease(kid)
        finally:
            await store.close()
    store = PostgresStore(postgres_url)
    try:
        info = await store.info()
        assert [m["id"] for m in info["migrations"]] == [1, 2, 3, 4, 5, 6, 7]
        await check_upgraded(store, 2)
        record = await store.load("first/kid")
        assert record is not None and record.parent_incarnation == 0
    finally:
        await store.close()
