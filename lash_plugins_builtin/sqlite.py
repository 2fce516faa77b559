"""``sqlite://``: the embedded durable store. One SQLite file holds many sessions.

URLs (SQLAlchemy style: three slashes, then the path)::

    sqlite:///relative/path.db       relative to the working directory when the store is built
    sqlite:////absolute/path.db      four slashes: an absolute path
    sqlite://:memory:                a private in-memory database (gone when the store closes)

Query parameters tune the connection: ``?synchronous=FULL`` (default ``NORMAL``),
``?busy_timeout=10000`` (milliseconds, default 5000), ``?create_dirs=1`` (create a missing
parent directory instead of refusing to open; lash creates nothing unasked) and ``?mode=``
(SQLite's words: ``rwc``, the default, reads, writes and creates the database; ``rw`` reads and
writes one that exists; ``ro`` only reads one that exists, and writes nothing, not even a
migration: what ``lash sessions`` uses to inspect a store without creating it).

**Durability.** The database runs in WAL mode with ``synchronous=NORMAL``: a commit is written
to the WAL before :meth:`SQLiteStore.commit` returns, so a committed turn survives the process
crashing or being killed at any moment. After a *power loss or OS crash*, the last commits before
it may be rolled back (never half-applied: the database stays consistent). Use
``?synchronous=FULL`` to fsync the WAL on every commit and keep those too, at the cost of one
fsync per turn.

**Concurrency.** Every read-then-write (lease acquisition and renewal, commit, delete) runs in
``BEGIN IMMEDIATE``, or is one statement that SQLite runs the same way (taking the write lock
before it reads), so two processes sharing the file never interleave inside one; SQLite waits
``busy_timeout`` ms for the file's write lock. Readers never block writers (WAL). Each store
instance holds one connection, opened on first use and used by one operation at a time.

**Cost.** aiosqlite runs each statement on the connection's worker thread, and waiting for that
thread costs more than a small statement itself. So statements that do not depend on each
other's results are queued together: a load is one round trip to the thread (``BEGIN``, every
read, ``COMMIT``). A commit is **one statement**, an ``INSERT`` into the view
``commit_requests`` whose trigger writes the whole delta; SQLite applies a statement whole or
not at all, and runs one outside ``BEGIN`` as a transaction of its own. The trigger first
checks the lease and that the stored head is the one the commit was computed from. A store
remembers the head of the sessions it committed last, so the next commit of such a session is
that statement alone: one round trip. Any other commit reads the head first, in a
``BEGIN IMMEDIATE`` transaction: two round trips (the reads; the statement with ``COMMIT``),
three when the guard refused the first attempt (the head changed: another writer committed or
took the lease over). A commit is stamped (``updated_at``) just before it is
sent, so commits that wait for the file's write lock may be stamped slightly out of order across
sessions; within a session, stamps follow the revisions.

The schema, its migrations and the hot statements live in ``_sqlite_schema``; URL parsing in
``_sqlite_url``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any

import aiosqlite
import attrs

import lash
import lash.store
from lash.store import check_lease, check_session_id, take_lease
from lash_plugins_builtin import _sqlite_schema as schema
from lash_plugins_builtin._sqlite_url import (
    MEMORY,
    SYNCHRONOUS,
    SQLiteSettings,
    check_mode,
    parse_url,
)

__all__ = ["SQLiteSettings", "SQLiteStore", "parse_url"]


class SQLiteStore:
    """``sqlite://``: sessions in one SQLite file (WAL), on one aiosqlite connection.

    ``create_dirs``, ``synchronous``, ``busy_timeout`` and ``mode`` override the URL's
    parameters. The database is opened (and migrated forward) on first use, or by :meth:`open`.
    """

    def __init__(
        self,
        url: str = "sqlite:///lash.db",
        *,
        create_dirs: bool | None = None,
        synchronous: str | None = None,
        busy_timeout: int | None = None,
        mode: str | None = None,
    ) -> None:
        settings = parse_url(url)
        overrides: dict[str, Any] = {}
        if create_dirs is not None:
            overrides["create_dirs"] = create_dirs
        if synchronous is not None:
            if synchronous.upper() not in SYNCHRONOUS:
                raise lash.ConfigError(
                    f"synchronous={synchronous!r}: use one of {', '.join(SYNCHRONOUS)}"
                )
            overrides["synchronous"] = synchronous.upper()
        if busy_timeout is not None:
            overrides["busy_timeout"] = busy_timeout
        if mode is not None:
            overrides["mode"] = check_mode(mode, settings.path)
        if overrides:
            settings = attrs.evolve(settings, **overrides)
        if settings.path != MEMORY:
            # Fixed now: a later chdir of the host must not move the database.
            settings = attrs.evolve(settings, path=os.path.abspath(settings.path))
        self.url = url
        self.settings = settings
        self._conn: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        # The head of each session as this store's last commit left it: the next commit's
        # starting point, checked by the commit statement's guard (see ``commit``).
        self._heads: dict[str, _Head] = {}

    @property
    def path(self) -> str:
        """The database file's absolute path (or ``:memory:``)."""
        return self.settings.path

    def __repr__(self) -> str:
        return f"<SQLiteStore {self.path!r}>"

    # -- connection ------------------------------------------------------------------------

    async def open(self) -> None:
        """Open (and create or migrate) the database now instead of on first use.

        :raises lash.ConfigError: when the file cannot be used as a lash database (it names
            the file, the cause and what to do).
        """
        async with self._lock:
            await self._connection()

    async def close(self) -> None:
        """Close the connection (the next call opens it again)."""
        async with self._lock:
            self._heads.clear()
            conn, self._conn = self._conn, None
            if conn is not None:
                await conn.close()

    async def _connection(self) -> aiosqlite.Connection:
        # Called with self._lock held.
        if self._conn is None:
            self._conn = await self._open()
        return self._conn

    async def _open(self) -> aiosqlite.Connection:
        memory = self.path == MEMORY
        mode = self.settings.mode
        if not memory:
            schema.check_path(self.path, create_dirs=self.settings.create_dirs, mode=mode)
        try:
            target, uri = schema.connect_target(self.path, mode)
            pending = aiosqlite.connect(target, isolation_level=None, uri=uri)
            # aiosqlite's worker thread is not a daemon: a host that exits without closing its
            # core would hang at interpreter exit, holding the database. A daemon worker dies
            # with the process instead, which WAL makes as safe as a crash (committed data stays;
            # an open transaction rolls back). The attribute is private, hence the guard.
            thread = getattr(pending, "_thread", None)
            if thread is not None and not thread.is_alive():
                thread.daemon = True
            conn = await pending
        except sqlite3.Error as exc:
            raise self._explain(exc) from exc
        try:
            await schema.prepare(
                conn,
                self.path,
                synchronous=self.settings.synchronous,
                busy_timeout=self.settings.busy_timeout,
                read_only=mode == "ro",
            )
        except sqlite3.Error as exc:
            await conn.close()
            raise self._explain(exc) from exc
        except BaseException:
            await conn.close()
            raise
        return conn

    def _explain(self, exc: sqlite3.Error) -> lash.LashError:
        return schema.explain(
            exc,
            self.path,
            busy_timeout=self.settings.busy_timeout,
            read_only=self.settings.mode == "ro",
        )

    @contextlib.asynccontextmanager
    async def _operation(self) -> AsyncIterator[aiosqlite.Connection]:
        """The connection, for one operation at a time: whatever the operation leaves open
        when it fails is rolled back, and SQLite's errors are explained (which file, what to
        do)."""
        async with self._lock:
            conn = await self._connection()
            try:
                if conn.in_transaction:  # defensive: every failed transaction was rolled back
                    await conn.rollback()
                try:
                    yield conn
                except BaseException:
                    await schema.rollback(conn)
                    raise
            except sqlite3.Error as exc:
                raise self._explain(exc) from exc

    @contextlib.asynccontextmanager
    async def _transaction(
        self, *reads: tuple[str, Any]
    ) -> AsyncIterator[tuple[aiosqlite.Connection, list[list[Any]]]]:
        """One write transaction on the store's connection, ``BEGIN IMMEDIATE`` (holding the
        write lock from its first statement, so what it reads cannot change before it writes).

        ``reads`` (``(sql, parameters)``) run in the same round trip as ``BEGIN``; their rows
        come with the connection. (Should ``BEGIN`` fail, they ran outside a transaction, which
        for reads is harmless, and ``BEGIN``'s error is raised.) ``COMMIT`` runs alone, after
        the body, which has checked every write it made: in SQLite a failed statement does not
        end the transaction, so a ``COMMIT`` queued behind writes would commit part of them.
        """
        async with self._operation() as conn:
            rows = await _begin_immediate(conn, *reads)
            yield conn, rows
            await conn.execute("COMMIT")

    async def _read(self, *reads: tuple[str, Any]) -> list[list[Any]]:
        """The rows of ``reads`` (``(sql, parameters)``), from one snapshot of the database.

        ``BEGIN``, the reads and ``COMMIT`` go to the worker thread together (one round trip):
        a transaction that writes nothing commits nothing, whatever a read did.
        """
        async with self._operation() as conn:
            rows = await _pipeline(
                (conn.execute, "BEGIN DEFERRED", ()),
                *((conn.execute_fetchall, sql, params) for sql, params in reads),
                (conn.execute, "COMMIT", ()),
            )
        return [list(r) for r in rows[1:-1]]

    # -- leases ----------------------------------------------------------------------------

    async def acquire_lease(self, session_id: str, owner: str, *, ttl: float) -> lash.store.Lease:
        check_session_id(session_id)
        async with self._transaction((schema.LEASE, (session_id,))) as (conn, (row,)):
            lease = take_lease(_lease_of(session_id, _first(row)), session_id, owner, ttl)
            await conn.execute(
                schema.SET_LEASE, (session_id, lease.owner, lease.token, lease.expires_at)
            )
        return lease

    async def renew_lease(self, lease: lash.store.Lease, *, ttl: float) -> lash.store.Lease:
        sid = lease.session_id
        async with self._transaction((schema.LEASE, (sid,))) as (conn, (row,)):
            check_lease(_lease_of(sid, _first(row)), lease)
            renewed = lash.store.Lease(sid, lease.owner, lease.token, time.time() + ttl)
            await conn.execute(schema.SET_EXPIRY, (renewed.expires_at, sid))
        return renewed

    async def release_lease(self, lease: lash.store.Lease) -> None:
        sid = lease.session_id
        self._heads.pop(sid, None)
        async with self._transaction((schema.LEASE, (sid,))) as (conn, (row,)):
            current = _lease_of(sid, _first(row))
            if current is not None and (current.token, current.owner) == (lease.token, lease.owner):
                # Keep the token (as an expired lease) so the next holder's is still higher.
                await conn.execute(schema.SET_EXPIRY, (0.0, sid))

    # -- sessions --------------------------------------------------------------------------

    async def load(self, session_id: str, *, full: bool = False) -> lash.store.SessionRecord | None:
        check_session_id(session_id)
        sid = (session_id,)
        nodes_read = (schema.ALL_NODES, sid) if full else (schema.ACTIVE_NODES, sid * 2)
        head_rows, node_rows, state_rows, usage_rows = await self._read(
            (schema.LOAD_HEAD, sid), nodes_read, (schema.STATES, sid), (schema.USAGE, sid)
        )
        head = _first(head_rows)
        if head is None or head[0] == 0:
            return None
        revision, created_at, updated_at, turns = head[:4]
        # The middle blob is lash 0.1's protocol options: no longer read or written.
        config, _protocol_options, pending = (
            _blob(digest, data) for digest, data in zip(head[4:7], head[7:10], strict=True)
        )
        return lash.store.SessionRecord(
            session_id=session_id,
            revision=revision,
            created_at=created_at,
            updated_at=updated_at,
            nodes=_nodes(session_id, [data for (data,) in node_rows]),
            config=(
                lash.SessionConfig()
                if config is None
                else lash.from_data(config, lash.SessionConfig, what="stored session config")
            ),
            plugin_states={str(plugin): json.loads(data) for plugin, data in state_rows},
            pending=tuple(pending) if pending is not None else (),
            usage={str(r[0]): lash.Usage(r[1], r[2], r[3]) for r in usage_rows},
            turns=turns,
        )

    async def commit(
        self,
        session_id: str,
        *,
        lease: lash.store.Lease,
        expected_revision: int,
        delta: lash.store.CommitDelta,
    ) -> int:
        check_session_id(session_id)
        # Serialize before taking the write lock: a value that is not JSON fails here, with
        # nothing written and no other writer kept waiting.
        encoded = _Encoded.of(session_id, delta)
        async with self._operation() as conn:
            # Popped: whatever happens below, a head that was not just committed is not kept.
            head = self._heads.pop(session_id, None)
            if (
                head is not None
                and head.revision == expected_revision
                and lease.session_id == session_id
            ):
                # The head this store committed last: one round trip. The guard refuses the
                # commit if the stored head is another one now (then the slow path says why).
                row, new_head = _plan(session_id, lease, head, delta, encoded, time.time())
                if await _commit_at_once(conn, row):
                    self._heads[session_id] = new_head
                    return new_head.revision
            # Two round trips: BEGIN IMMEDIATE with the head; the commit statement and COMMIT.
            sid = (session_id,)
            head_rows, state_rows = await _begin_immediate(
                conn, (schema.HEAD, sid), (schema.STATE_HASHES, sid)
            )
            now = time.time()
            stored = _first(head_rows)
            check_lease(_lease_of(session_id, None if stored is None else stored[10:13]), lease)
            assert stored is not None  # a current lease lives in the head row
            if stored[0] != expected_revision:
                raise lash.RevisionConflict(
                    session_id, expected=expected_revision, actual=stored[0]
                )
            head = _Head.of_row(stored, dict(state_rows))
            row, new_head = _plan(session_id, lease, head, delta, encoded, now)
            # A failed statement leaves nothing of itself, so the COMMIT behind it commits
            # nothing (the transaction only read) and its error is raised.
            await _pipeline((conn.execute, schema.COMMIT, row), (conn.execute, "COMMIT", ()))
            self._heads[session_id] = new_head
            return new_head.revision

    async def delete(self, session_id: str) -> None:
        check_session_id(session_id)
        self._heads.pop(session_id, None)
        sid = (session_id,)
        reads = ((schema.HEAD, sid), (schema.STATE_HASHES, sid))
        async with self._transaction(*reads) as (conn, (head_rows, state_rows)):
            head = _first(head_rows)
            if head is None or head[0] == 0:
                raise lash.UnknownSession(session_id)
            owner, _token, expires_at = head[10:13]
            if owner is not None and expires_at > time.time():
                raise lash.SessionBusy(session_id, owner=owner, expires_at=expires_at)
            released = {str(h) for _, h in state_rows}
            released.update(h for h in head[7:10] if h)
            writes: list[_Step] = [(conn.execute, sql, sid) for sql in schema.DROP_SESSION_ROWS]
            writes.append((conn.execute, schema.TOMBSTONE, sid))
            if released:
                writes.append(_release_blobs(conn, released))
            await _pipeline(*writes)

    async def list_sessions(self) -> list[lash.store.SessionSummary]:
        (rows,) = await self._read((schema.LIST_SESSIONS, ()))
        return [
            lash.store.SessionSummary(
                session_id=sid,
                created_at=created_at,
                updated_at=updated_at,
                turns=turns,
                revision=revision,
                last_user_message=last_user,
                usage=lash.Usage(inp, out, cached),
            )
            for sid, created_at, updated_at, turns, revision, last_user, inp, out, cached in rows
        ]

    # -- diagnostics -----------------------------------------------------------------------

    async def info(self) -> dict[str, Any]:
        """What the connection runs with, for diagnostics (``lash doctor``): path, journal
        mode, synchronous level, busy timeout (ms) and the applied migrations."""
        pragmas = ("journal_mode", "synchronous", "busy_timeout", "application_id")
        *rows, migrations = await self._read(
            *((f"PRAGMA {pragma}", ()) for pragma in pragmas),
            ("SELECT id, name, applied_at, lash_version FROM lash_migrations ORDER BY id", ()),
        )
        values = {pragma: r[0][0] for pragma, r in zip(pragmas, rows, strict=True)}
        return {
            "path": self.path,
            "journal_mode": str(values["journal_mode"]).lower(),
            "synchronous": SYNCHRONOUS[int(values["synchronous"])],
            "busy_timeout": int(values["busy_timeout"]),
            "application_id": int(values["application_id"]),
            "migrations": [
                {"id": mid, "name": name, "applied_at": at, "lash_version": version}
                for mid, name, at, version in migrations
            ],
        }


# -- helpers ---------------------------------------------------------------------------------


#: One statement for :func:`_pipeline`: the connection's method, SQL, parameters.
_Step = tuple[Callable[[str, Any], Awaitable[Any]], str, Any]


async def _pipeline(*steps: _Step) -> list[Any]:
    """Run statements back to back on the connection's worker thread: one thread round trip
    for all of them, instead of one each (0.1 to 0.3 ms each on a small VM: most of what a
    small commit costs, the statements themselves taking 0.01 to 0.1 ms).

    aiosqlite's worker runs requests in the order they are queued. ``gather`` starts its tasks
    in order and each queues its statement when it starts, all in one pass of the event loop,
    so the worker gets them in this order and runs them without waiting for the loop in
    between. Every result is awaited, a failure too (no task's error is left unretrieved), and
    the first failure is raised: the caller decides whether the transaction may commit.
    Cancelled, the tasks are cancelled but statements already queued still run; the caller's
    rollback, queued after them, undoes them.
    """
    if len(steps) == 1:  # nothing to overlap: spare the task
        run, sql, params = steps[0]
        return [await run(sql, params)]
    results = await asyncio.gather(
        *(run(sql, params) for run, sql, params in steps), return_exceptions=True
    )
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


async def _begin_immediate(conn: aiosqlite.Connection, *reads: tuple[str, Any]) -> list[list[Any]]:
    """``BEGIN IMMEDIATE`` and ``reads`` (``(sql, parameters)``) in one round trip; the rows of
    each read. (Should ``BEGIN`` fail, the reads ran outside a transaction, which for reads is
    harmless, and ``BEGIN``'s error is raised.) Call it inside :meth:`SQLiteStore._operation`:
    cancelled while queued, ``BEGIN`` still runs later, and the rollback queued behind it
    undoes it."""
    rows = await _pipeline(
        (conn.execute, "BEGIN IMMEDIATE", ()),
        *((conn.execute_fetchall, sql, params) for sql, params in reads),
    )
    return [list(r) for r in rows[1:]]


async def _commit_at_once(conn: aiosqlite.Connection, row: tuple[Any, ...]) -> bool:
    """The commit statement alone, in one round trip; False when its guard refused it.

    Outside ``BEGIN``, SQLite runs a statement that writes as a transaction of its own, and
    takes the write lock (waiting ``busy_timeout`` for it) before the statement reads anything,
    as ``BEGIN IMMEDIATE`` does: the guard reads the head the statement then writes over. The
    statement is all or nothing, so a failure of any kind leaves nothing of it.
    """
    try:
        await conn.execute(schema.COMMIT, row)
    except sqlite3.IntegrityError as exc:
        if str(exc) == schema.STALE_HEAD:
            return False
        raise
    return True


@attrs.frozen
class _Head:
    """A session's head row as a commit continues from it (``schema.HEAD_COLUMNS``) and its
    plugin states. The commit statement's guard checks every head column against the stored
    row, so a commit computed from another head (another writer's, or this store's from before
    a delete) is refused, also when the two were stamped with the same time."""

    revision: int
    created_at: float
    updated_at: float
    turns: int
    next_seq: int
    frame_start: int
    last_user_message: str | None
    hashes: tuple[str | None, ...]  # of config, (unused) protocol options, pending input
    states: dict[str, str]  # plugin -> blob hash

    @classmethod
    def of_row(cls, row: Sequence[Any], states: dict[str, str]) -> _Head:
        """The head in a row that starts with ``schema.HEAD_COLUMNS``."""
        return cls(
            revision=row[0],
            created_at=row[1],
            updated_at=row[2],
            turns=row[3],
            next_seq=row[4],
            frame_start=row[5],
            last_user_message=row[6],
            hashes=tuple(row[7:10]),
            states=states,
        )

    def columns(self) -> tuple[Any, ...]:
        """The values of ``schema.HEAD_COLUMNS``, in order."""
        return (
            self.revision,
            self.created_at,
            self.updated_at,
            self.turns,
            self.next_seq,
            self.frame_start,
            self.last_user_message,
            *self.hashes,
        )


#: ``(hash, canonical JSON)`` of a blob.
_Blob = tuple[str, str]


@attrs.frozen
class _Encoded:
    """A delta's values as the database stores them, computed (and checked) before any lock
    is taken."""

    nodes: list[tuple[str, str, str, int, str, bool, str | None]]
    states: dict[str, _Blob]
    blobs: tuple[_Blob | None, ...]  # config, (unused) protocol options, pending (None: unchanged)
    usage: list[tuple[str, int, int, int]]

    @classmethod
    def of(cls, session_id: str, delta: lash.store.CommitDelta) -> _Encoded:
        def blob(what: str, data: Any) -> _Blob | None:
            return None if data is None else _canonical(session_id, what, data)

        def key(what: str, value: str) -> str:
            # The commit statement reads keys out of JSON, and SQLite's JSON functions end a
            # string at an escaped NUL: refused rather than cut.
            if "\0" in value:
                raise _unstorable(session_id, f"{what} {value!r}", "it holds a NUL character")
            return value

        def integer(what: str, value: int) -> int:
            if not -(2**63) <= value < 2**63:
                raise _unstorable(session_id, f"{what} ({value})", "SQLite integers are 64-bit")
            return value

        for node in delta.nodes:
            key("node id", node.id)
            key(f"frame id of node {node.id!r}", node.frame_id)
            integer(f"turn of node {node.id!r}", node.turn)
        return cls(
            nodes=[_node_row(session_id, node) for node in delta.nodes],
            states={
                key("plugin name", plugin): _canonical(
                    session_id, f"state of plugin {plugin!r}", data
                )
                for plugin, data in delta.plugin_states.items()
            },
            blobs=(
                blob("config", None if delta.config is None else lash.to_data(delta.config)),
                None,  # lash 0.1's protocol options column: left as it is (unused)
                blob("pending input", None if delta.pending is None else list(delta.pending)),
            ),
            usage=[
                (
                    key("usage source", source),
                    integer(f"input tokens of {source!r}", u.input_tokens),
                    integer(f"output tokens of {source!r}", u.output_tokens),
                    integer(f"cached tokens of {source!r}", u.cached_tokens),
                )
                for source, u in delta.usage.items()
            ],
        )


def _unstorable(session_id: str, what: str, why: str) -> lash.SessionError:
    return lash.SessionError(
        f"session {session_id!r}: cannot store the {what}: {why}", session_id=session_id
    )


def _plan(
    session_id: str,
    lease: lash.store.Lease,
    head: _Head,
    delta: lash.store.CommitDelta,
    encoded: _Encoded,
    now: float,
) -> tuple[tuple[Any, ...], _Head]:
    """The commit statement's parameters (:data:`schema.COMMIT_COLUMNS`) for ``delta`` on top
    of ``head``, and the head it leaves."""
    turns, next_seq, frame_start = head.turns, head.next_seq, head.frame_start
    last_user, hashes, old_states = head.last_user_message, head.hashes, head.states
    released: set[str] = set()
    replace = delta.replace and head.revision > 0
    if replace:
        released.update(old_states.values())
        released.update(h for h in hashes if h)
        turns = next_seq = frame_start = 0
        last_user, hashes, old_states = None, (None, None, None), {}
    nodes = []
    for seq, (node_id, kind, frame_id, turn, text, opens_frame, user_text) in enumerate(
        encoded.nodes, start=next_seq
    ):
        if opens_frame:
            frame_start = seq
        if user_text is not None:
            last_user = user_text
        nodes.append((seq, node_id, kind, frame_id, turn, text))
    states = dict(old_states)
    for plugin, (digest, _) in encoded.states.items():
        old = states.get(plugin)
        if old is not None and old != digest:
            released.add(old)
        states[plugin] = digest
    new_hashes = tuple(
        old if blob is None else blob[0] for old, blob in zip(hashes, encoded.blobs, strict=True)
    )
    released.update(o for o, n in zip(hashes, new_hashes, strict=True) if o and o != n)
    blobs = [*encoded.states.values(), *(b for b in encoded.blobs if b is not None)]
    new_head = _Head(
        revision=head.revision + 1,
        created_at=now if head.revision == 0 else head.created_at,
        updated_at=now,
        turns=turns + delta.turns,
        next_seq=next_seq + len(nodes),
        frame_start=frame_start,
        last_user_message=last_user,
        hashes=new_hashes,
        states=states,
    )
    row = (
        session_id,
        *head.columns(),
        lease.owner,
        lease.token,
        *new_head.columns(),
        int(replace),
        _array(nodes),
        _array(blobs),
        _array([(plugin, digest) for plugin, (digest, _) in encoded.states.items()]),
        _array(encoded.usage),
        _array(sorted(released)),
    )
    return row, new_head


_encode_array = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), check_circular=False
).encode


def _array(items: list[Any]) -> str | None:
    """A JSON array for the commit statement (``None`` for none: nothing for SQL to parse)."""
    return _encode_array(items) if items else None


def _first(rows: list[Any]) -> Any:
    return rows[0] if rows else None


def _lease_of(session_id: str, row: Iterable[Any] | None) -> lash.store.Lease | None:
    """The lease stored in a head row's ``(owner, token, expires_at)``, if any."""
    if row is None:
        return None
    owner, token, expires_at = row
    if owner is None:
        return None
    return lash.store.Lease(session_id, owner, token, expires_at)


def _blob(digest: str | None, data: str | None) -> Any:
    """A blob the head row refers to, decoded (``None`` for none)."""
    if digest is None:
        return None
    if data is None:  # only a hand-edited database gets here
        raise lash.LashError(f"stored blob {digest} is missing from the database")
    return json.loads(data)


def _dumps(session_id: str, what: str, data: Any, *, canonical: bool) -> str:
    try:
        text = json.dumps(data, separators=(",", ":"), sort_keys=canonical, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise lash.SessionError(
            f"session {session_id!r}: cannot store its {what}: {exc}; stored values must be "
            "JSON data (dicts with str keys, lists, str, int, float, bool, None)",
            session_id=session_id,
        ) from None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates (undecodable bytes kept by surrogateescape) cannot be stored as
        # UTF-8 text; JSON escapes round-trip them exactly.
        text = json.dumps(data, separators=(",", ":"), sort_keys=canonical, ensure_ascii=True)
    return text


def _canonical(session_id: str, what: str, data: Any) -> tuple[str, str]:
    """``(sha256, canonical JSON)`` of ``data``: equal data gets one blob."""
    text = _dumps(session_id, what, data, canonical=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest(), text


def _node_row(
    session_id: str, node: lash.GraphNode
) -> tuple[str, str, str, int, str, bool, str | None]:
    # The tagged form ("type": "user", "plugin", ...) so that from_data knows the variant;
    # the tag is also the row's `kind` column. Key order is kept: tool-call arguments go back
    # to the provider as they came.
    data = lash.to_data(node, lash.GraphNode)
    text = _dumps(session_id, f"node {node.id!r}", data, canonical=False)
    user_text = _summary_text(node.text) if isinstance(node, lash.UserMessage) else None
    opens_frame = isinstance(node, lash.FrameBoundary)
    return node.id, str(data["type"]), node.frame_id, node.turn, text, opens_frame, user_text


def _summary_text(text: str) -> str:
    """``text`` as the listing's last user message: lone surrogates, which SQLite text cannot
    hold, become U+FFFD there (the node itself keeps them, JSON-escaped)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in text)
    return text


def _nodes(session_id: str, texts: list[str]) -> tuple[Any, ...]:
    """Decode stored nodes. One ``json.loads`` over all rows is ~40% faster than one per row,
    and one ``from_data`` over all nodes saves a converter dispatch per node (resume cost); on
    a bad row, the per-row path finds it and raises its error."""
    what = f"stored node of {session_id!r}"
    try:
        datas = json.loads("[" + ",".join(texts) + "]")
    except ValueError:
        datas = []
    if len(datas) != len(texts):  # a bad row (or one holding two values: "{...},{...}")
        datas = [_loads(what, text) for text in texts]
    try:
        nodes: tuple[Any, ...] = lash.from_data(datas, tuple[lash.GraphNode, ...], what=what)
    except lash.ValidationError:
        for data in datas:
            lash.from_data(data, lash.GraphNode, what=what)
        raise
    return nodes


def _loads(what: str, text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise lash.ValidationError(what, [f"not JSON: {exc}"]) from None


def _release_blobs(conn: aiosqlite.Connection, hashes: Iterable[str]) -> _Step:
    """The step that drops those of ``hashes`` nothing refers to any more."""
    return (conn.executemany, schema.RELEASE_BLOB, [{"h": digest} for digest in sorted(hashes)])
