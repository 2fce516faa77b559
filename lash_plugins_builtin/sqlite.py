"""``sqlite://``: the embedded durable store. One SQLite file holds many sessions.

URLs (SQLAlchemy style: three slashes, then the path)::

    sqlite:///relative/path.db       relative to the working directory when the store is built
    sqlite:////absolute/path.db      four slashes: an absolute path
    sqlite://:memory:                a private in-memory database (gone when the store closes)

Query parameters tune the connection: ``?synchronous=FULL`` (default ``NORMAL``),
``?busy_timeout=10000`` (milliseconds, default 5000), ``?create_dirs=1`` (create a missing
parent directory instead of refusing to open; lash creates nothing unasked), ``?mode=``
(SQLite's words: ``rwc``, the default, reads, writes and creates the database; ``rw`` reads and
writes one that exists; ``ro`` only reads one that exists, and writes nothing, not even a
migration: what ``lash sessions`` uses to inspect a store without creating it), and the event
log's replay window: ``?events_kept=10000`` (the newest events each session keeps) and
``?events_max_age=604800`` (seconds: older events are dropped).

**Durability.** The database runs in WAL mode with ``synchronous=NORMAL``: a commit is written
to the WAL before :meth:`SQLiteStore.commit` returns, so a committed turn survives the process
crashing or being killed at any moment. After a *power loss or OS crash*, the last commits before
it may be rolled back (never half-applied: the database stays consistent). Use
``?synchronous=FULL`` to fsync the WAL on every commit and keep those too, at the cost of one
fsync per turn.

**Concurrency.** Every read-then-write (lease acquisition and renewal, commit, queueing and
claiming input, delete) runs in ``BEGIN IMMEDIATE``, or is one statement (or a transaction whose
first statement writes) that SQLite runs the same way (taking the write lock before it reads),
so two processes sharing the file never interleave inside one; SQLite waits ``busy_timeout`` ms
for the file's write lock. Readers never block writers (WAL). Each store instance holds one
connection, opened on first use and used by one operation at a time. Processes queue input,
claim it and commit on one file at once: a claim belongs to the lease that made it, and the
commit that settles it checks it in the same statement. Process records are claimed,
heartbeated and finished in ``BEGIN IMMEDIATE`` transactions (the record read, checked against
the shared rules of :mod:`lash.store`, written back): several processes claiming from one file
never take the same process, and a stale claim's token can neither heartbeat nor finish it.

**Cost.** aiosqlite runs each statement on the connection's worker thread, and waiting for that
thread costs more than a small statement itself. So statements that do not depend on each
other's results are queued together: a load is one round trip to the thread (``BEGIN``, every
read, ``COMMIT``), and so is a lease acquisition (``BEGIN``, one ``INSERT`` into the view
``lease_requests`` whose trigger applies :func:`lash.store.take_lease`, the read of what the
lease reports, ``COMMIT``) and a queued input (the same, with ``input_requests``). A commit is
**one statement**, an ``INSERT`` into the view ``commit_requests`` whose trigger writes the
whole delta (nodes, states, usage, settled claims, applied commands, the turn record, events,
the lease's release); SQLite applies a statement whole or not at all, and runs one outside
``BEGIN`` as a transaction of its own. The trigger first checks the lease and that the stored
head is the one the commit was computed from. A turn's commit made inline (below: on the event
loop's thread, where a statement costs no round trip) makes the same checks and writes as
plain statements instead, in the ``BEGIN IMMEDIATE`` transaction it runs in, committed whole or
rolled back: cheaper than the trigger, which parses a JSON array for each part and runs every
one of its steps whatever the commit carries (a property test checks both write the same
rows). Likewise an inline lease acquisition is one ``UPDATE`` (the trigger's check in its
``WHERE``), the ``INSERT`` of its events and the read of the lease and the head; the trigger
runs instead when it changed no row (a new session, a busy lease: the trigger creates the
head, or refuses), and a property test holds both to the same rows. A lease acquisition reads
the session's head in its transaction (in the same statement as the lease, on the worker), and
the store keeps it (then the one each commit leaves) while the lease is held, forgetting it
when the lease is released: so an execution's commits write at once (one round trip on the
worker thread), and a session between executions costs the store no memory.
Any other commit reads the head first, in a ``BEGIN IMMEDIATE`` transaction: two round trips
(the reads; the statement with ``COMMIT``), three when the guard refused the first attempt (the
head changed: another writer committed or took the lease over). A commit that also queues input
(``delta.enqueue``) takes one round trip more; one that starts processes
(``delta.processes``) always reads its head and the processes' keys first, in its ``BEGIN
IMMEDIATE`` transaction. A commit is stamped (``updated_at``) just before it is sent, so commits
that wait for the file's write lock may be stamped slightly out of order across sessions;
within a session, stamps follow the revisions.

The schema, its migrations and the hot statements live in ``_sqlite_schema``; URL parsing in
``_sqlite_url``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import itertools
import json
import logging
import os
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any, Literal, cast

import aiosqlite
import attrs

import lash
import lash.store
from lash.store import check_lease, check_session_id
from lash_plugins_builtin import _sqlite_schema as schema
from lash_plugins_builtin._sqlite_schema import read_text, stored_text
from lash_plugins_builtin._sqlite_url import (
    MEMORY,
    SYNCHRONOUS,
    SQLiteSettings,
    check_events_kept,
    check_events_max_age,
    check_mode,
    parse_url,
)

__all__ = ["SQLiteSettings", "SQLiteStore", "parse_url"]

log = logging.getLogger("lash.sqlite")

#: How many sessions' heads a store remembers for one-round-trip commits (those whose lease
#: it holds: the most recently committed; a commit of another session reads its head first).
HEADS_REMEMBERED = 4096

#: Run the statements of an operation as one function on aiosqlite's worker thread (see
#: :func:`_gather`); False (or an aiosqlite without the private names it uses): queue them one
#: by one.
ONE_HOP = True

#: Where the lease columns start in a :data:`schema.HEAD` row.
_LEASE_AT = len(schema.HEAD_COLUMNS)
#: Where the head columns start in a :data:`schema.LEASE_AND_HEAD` row, and where its event
#: counter and oldest event's time are (before the plugin states).
_HEAD_AT = 6
_EVENTS_AT = _HEAD_AT + len(schema.HEAD_COLUMNS)


class SQLiteStore:
    """``sqlite://``: sessions in one SQLite file (WAL), on one aiosqlite connection.

    ``create_dirs``, ``synchronous``, ``busy_timeout``, ``mode``, ``events_kept`` and
    ``events_max_age`` override the URL's parameters. The database is opened (and migrated
    forward) on first use, or by :meth:`open`.
    """

    def __init__(
        self,
        url: str = "sqlite:///lash.db",
        *,
        create_dirs: bool | None = None,
        synchronous: str | None = None,
        busy_timeout: int | None = None,
        mode: str | None = None,
        events_kept: int | None = None,
        events_max_age: float | None = None,
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
        if events_kept is not None:
            overrides["events_kept"] = check_events_kept(events_kept)
        if events_max_age is not None:
            overrides["events_max_age"] = check_events_max_age(events_max_age)
        if overrides:
            settings = attrs.evolve(settings, **overrides)
        if settings.path != MEMORY:
            # Fixed now: a later chdir of the host must not move the database.
            settings = attrs.evolve(settings, path=os.path.abspath(settings.path))
        self.url = url
        self.settings = settings
        self._conn: aiosqlite.Connection | None = None
        # A second connection to the file, used on the event loop's own thread for the small
        # writes of a turn (lease, commit, queued input) when the write lock is free at once
        # (see ``_operation``); None until first used, False where it is not used.
        self._inline: sqlite3.Connection | bool | None = (
            None
            if INLINE
            and settings.path != MEMORY
            and settings.mode != "ro"
            and settings.synchronous in ("NORMAL", "OFF")
            else False
        )
        self._inline_commits = 0
        # The WAL checkpoint under way (see ``_after_inline``): a future of the checkpointer's
        # thread, of no event loop, so that no loop's end can leave it pending forever.
        self._checkpointing: concurrent.futures.Future[None] | None = None
        # A third connection, only for the WAL checkpoint, with its own thread; made at the
        # first checkpoint, None until then and after close.
        self._checkpointer: _Checkpointer | None = None
        self._lock = _StoreLock()
        # The head of each session as this store's last commit left it: the next commit's
        # starting point, checked by the commit statement's guard (see ``commit``).
        self._heads: dict[str, _Head] = {}
        self._retention = (settings.events_kept, settings.events_max_age)

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
        """Close the connections (the next call opens them again); a WAL checkpoint under way
        finishes first."""
        async with self._lock:
            self._heads.clear()
            conn, self._conn = self._conn, None
            checkpointer, self._checkpointer = self._checkpointer, None
            self._checkpointing = None
            if isinstance(self._inline, sqlite3.Connection):
                self._inline.close()
                self._inline = None
            try:
                if checkpointer is not None:
                    # Queued behind the checkpoint's passes under way (which then finish): no
                    # thread left. Cancelled meanwhile, it still closes, on its thread.
                    await checkpointer.close()
            finally:
                if conn is not None:
                    # The last connection: SQLite checkpoints the WAL whole. Closed also when
                    # the wait above was cancelled (a shutdown under a timeout).
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
            conn = await _connect(*schema.connect_target(self.path, mode))
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
            if mode != "ro":
                # The event log's retention, with this store's limits.
                for sql in schema.event_retention(
                    self.settings.events_kept, self.settings.events_max_age
                ):
                    await conn.execute(sql)
        except sqlite3.Error as exc:
            await conn.close()
            raise self._explain(exc) from exc
        except BaseException:
            await conn.close()
            raise
        return conn

    def _direct(self) -> sqlite3.Connection | None:
        """The inline connection (opened on first use), or None where it is not used."""
        if self._inline is False:
            return None
        if self._inline is None or self._inline is True:
            try:
                self._inline = self._open_inline()
            except sqlite3.Error:
                self._inline = False  # the worker's connection does everything, as before
                return None
        assert isinstance(self._inline, sqlite3.Connection)
        return self._inline

    def _begin_inline(self) -> sqlite3.Connection | None:
        """The inline connection inside a ``BEGIN IMMEDIATE`` it just ran, or None: not used
        here, or the write lock is taken (by this store's worker or another process)."""
        direct = self._direct()
        if direct is None:
            return None
        try:
            direct.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:
            return None  # busy: the worker waits for the lock instead
        return direct

    async def _begin_inline_soon(self) -> sqlite3.Connection | None:
        """:meth:`_begin_inline`, trying again while another connection holds the write lock:
        at once a few times (sleeping 0.1 to 0.8 ms on this thread, 1.5 ms in all), then every
        millisecond or few on the event loop, for up to ``INLINE_WAIT`` seconds (at most the
        busy timeout); None after that (the worker thread waits for the lock) or when not used.

        Why not hand a busy lock to the worker thread at once: SQLite's busy handler sleeps 1,
        2, 5, 10, ... 100 ms between its tries, while the writes that come here hold the lock
        for a fraction of a millisecond. Against another process writing in a tight loop (two
        workers claiming and finishing processes) the waiter missed gap after gap."""
        direct = self._begin_inline()
        if direct is not None or not isinstance(self._inline, sqlite3.Connection):
            return direct
        wait = min(INLINE_WAIT, self.settings.busy_timeout / 1000)
        if wait <= 0:
            return None
        for pause in (0.0001, 0.0002, 0.0004, 0.0008):
            time.sleep(pause)
            direct = self._begin_inline()
            if direct is not None:
                return direct
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        delay = 0.001
        while loop.time() < deadline:
            await asyncio.sleep(delay)
            direct = self._begin_inline()
            if direct is not None:
                return direct
            delay = min(2 * delay, 0.004)
        return None

    def _open_inline(self) -> sqlite3.Connection:
        target, uri = schema.connect_target(self.path, self.settings.mode)
        direct = sqlite3.connect(target, isolation_level=None, uri=uri, timeout=0)
        try:
            direct.execute("PRAGMA busy_timeout = 0")
            direct.execute(f"PRAGMA synchronous = {self.settings.synchronous}")
            # Checkpoints (which sync the files) run on a thread of their own, never here.
            direct.execute("PRAGMA wal_autocheckpoint = 0")
            for sql in schema.event_retention(
                self.settings.events_kept, self.settings.events_max_age
            ):
                direct.execute(sql)
        except BaseException:
            direct.close()
            raise
        return direct

    def _commit_inline(self, direct: sqlite3.Connection) -> None:
        """End an inline write (``_operation``'s, ``_commit_at_once``'s) that succeeded:
        ``COMMIT`` what it left open (what would have been a transaction of its own on the
        worker's connection, one statement autocommitted, is part of the one begun here), and
        count it (:meth:`_after_inline`). Its caller explains SQLite's errors and, whatever
        happened, rolls back what is still open (:func:`_roll_back_open`). Plain calls rather
        than a context manager: entering and leaving one cost ~1 µs, on every turn's commit."""
        if direct.in_transaction:
            direct.execute("COMMIT")
        self._after_inline()

    def _after_inline(self) -> None:
        """Count an inline write; every ``INLINE_CHECKPOINT`` of them, checkpoint the WAL in
        the background (nobody waits for it), in two phases on a thread of its own
        (:class:`_Checkpointer`).

        Why two: a checkpoint lets the next write start the WAL over only if it copied every
        frame, and frames appended while it runs are not copied. Run beside the writes alone
        (passive), it never caught up with them, and the WAL grew without end (58 MB after
        1,000 turns of the benchmark) and every commit with it. Run whole under the store's
        lock (until 2026-12-06), it made every session of the store wait for it: ~11 ms every
        100 turns (~2,900 frames copied and the files synced), 17 % of the wall time of 100
        sessions. So the first phase, the bulk, runs beside the writes, and the second, which
        keeps writers out, copies only the frames appended meanwhile (a few dozen to a few
        hundred). The second phase holds SQLite's write lock rather than the store's: under the
        store's lock it started when the event loop came back to the checkpoint's task, at 100
        sessions one pass over all of them (tens of ms, ~1,500 frames more to copy, ~13 ms
        under the lock: no better than before); on the checkpoint's thread it follows the first
        phase at once, and a write that finds the lock taken waits on the event loop
        (:meth:`_begin_inline_soon`) while the other sessions go on."""
        self._inline_commits += 1
        if self._inline_commits % INLINE_CHECKPOINT:
            return
        running = self._checkpointing
        if running is not None and not running.done():
            return
        checkpointer = self._checkpointer
        if checkpointer is None:
            checkpointer = self._checkpointer = _Checkpointer(self.path, self.settings.synchronous)
        self._checkpointing = checkpointer.start()

    def _explain(self, exc: sqlite3.Error) -> lash.LashError:
        return schema.explain(
            exc,
            self.path,
            busy_timeout=self.settings.busy_timeout,
            read_only=self.settings.mode == "ro",
        )

    @contextlib.asynccontextmanager
    async def _operation(self, *, inline: bool = False) -> AsyncIterator[aiosqlite.Connection]:
        """The connection, for one operation at a time: whatever the operation leaves open
        when it fails is rolled back, and SQLite's errors are explained (which file, what to
        do).

        ``inline`` (a small write: a lease, a commit, queued input): when the database's write
        lock is free at once, the operation runs on this thread, on a second connection that
        already holds it (``BEGIN IMMEDIATE``), instead of on the worker thread: a round trip
        to the worker costs more than the statements. A write lock held elsewhere is tried
        again (:meth:`_begin_inline_soon`: 1.5 ms at most on this thread, then from the event
        loop, which goes on meanwhile) for up to ``INLINE_WAIT`` s; still held, the operation
        goes to the worker as before, which waits for it.
        With ``synchronous=NORMAL`` a commit does not sync, so an inline one is only a few
        tens of microseconds of the loop's time; the WAL is checkpointed on a thread of its own.
        """
        async with self._lock:
            conn = await self._connection()
            if inline and ONE_HOP:
                direct = await self._begin_inline_soon()
                if direct is not None:
                    try:
                        yield cast(aiosqlite.Connection, _InlineConnection(direct))
                        self._commit_inline(direct)
                    except sqlite3.Error as exc:
                        raise self._explain(exc) from exc
                    finally:
                        _roll_back_open(direct)
                    return
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
            await _pipeline(conn, ("run", "COMMIT", ()))

    async def _read(self, *reads: tuple[str, Any], inline: bool = False) -> list[list[Any]]:
        """The rows of ``reads`` (``(sql, parameters)``), from one snapshot of the database.

        ``BEGIN``, the reads and ``COMMIT`` go to the worker thread together (one round trip):
        a transaction that writes nothing commits nothing, whatever a read did.

        ``inline`` (a read of a few rows by key, which a turn makes while it runs): on the
        inline connection, on this thread, as the small writes are (see :meth:`_operation`).
        A round trip to the worker costs more than such a read, and the connection's lock is
        held meanwhile: with many sessions in one process, those round trips queued every
        other operation behind them. Readers do not wait for writers in WAL mode; should the
        read find the database busy all the same (a recovery), the worker does it.
        """
        if inline and ONE_HOP:
            async with self._lock:
                await self._connection()  # opened (and migrated) before the inline one reads
                direct = self._direct()
                if direct is not None and not direct.in_transaction:
                    try:
                        direct.execute("BEGIN DEFERRED")
                        try:
                            return [direct.execute(sql, p).fetchall() for sql, p in reads]
                        finally:
                            direct.execute("COMMIT")  # it wrote nothing: this cannot fail
                    except sqlite3.OperationalError:
                        if direct.in_transaction:
                            direct.rollback()
        async with self._operation() as conn:
            rows = await _pipeline(
                conn,
                ("run", "BEGIN DEFERRED", ()),
                *(("rows", sql, params) for sql, params in reads),
                ("run", "COMMIT", ()),
            )
        return [list(r) for r in rows[1:-1]]

    async def _write_then_read(
        self,
        write: tuple[str, Any],
        read: tuple[str, Any],
        *more: tuple[str, Any],
        plain: Callable[[sqlite3.Connection], list[Any]] | None = None,
    ) -> tuple[sqlite3.Error | None, list[Any], list[list[Any]]]:
        """One statement that writes, then reads, in one transaction and one round trip:
        ``BEGIN``, the write, the reads, ``COMMIT``. The write is the transaction's first
        statement, so it takes the write lock before reading anything (as ``BEGIN IMMEDIATE``
        would), and it applies whole or not at all: the ``COMMIT`` behind it commits it, or
        nothing when it failed. Returns the write's error (``None``: it succeeded), the rows
        of ``read`` and those of each of ``more``, which see the write.

        ``plain`` (without ``more``): the same write and read with plain statements, tried
        first on the inline connection (in its write transaction): its rows, or none when it
        wrote nothing and the write statement is to run instead."""
        if plain is not None and more:
            raise TypeError("_write_then_read: plain returns the rows of read only, not of more")
        async with self._operation(inline=True) as conn:
            if plain is not None and isinstance(conn, _InlineConnection):
                rows = plain(conn.direct)
                if rows:
                    return None, rows, []
            begun, written, *reads, committed = await _gather(
                conn,
                ("run", "BEGIN", ()),
                ("run", *write),
                ("rows", *read),
                *(("rows", *r) for r in more),
                ("run", "COMMIT", ()),
            )
            for result in (begun, *reads, committed):
                if isinstance(result, BaseException):
                    raise result
            if isinstance(written, BaseException) and not isinstance(written, sqlite3.Error):
                raise written
        rows, *others = (list(r) for r in reads)
        return (written if isinstance(written, sqlite3.Error) else None), rows, others

    def _write_at_once(
        self,
        plain: Callable[[sqlite3.Connection], list[Any]],
        general: Callable[[], tuple[tuple[str, Any], tuple[str, Any]]],
    ) -> tuple[sqlite3.Error | None, list[Any]] | None:
        """:meth:`_write_then_read` made at once on this thread, without awaiting anything:
        ``plain`` on the inline connection in its ``BEGIN IMMEDIATE``, or when it wrote nothing,
        the ``(write, read)`` that ``general()`` returns (the trigger's statement) in the same
        transaction; committed. Returns the write's error (None: it succeeded) and the rows
        read, or None when the write lock is taken or an operation is on its way (the caller
        then goes the general way, which waits for them).

        Why: through ``_operation`` (an async context manager: the store's lock, an async
        generator, its finalizer hook) a turn's lease cost ~6 µs more, and a step through the
        event loop whenever the lock had a waiter (see :class:`_StoreLock`). As in
        :meth:`_commit_at_once`, no other operation of this store can run meanwhile: the lock
        is free and nothing here awaits. A new session's first lease (no head row) goes this
        way too, through the trigger, so that 100 sessions starting at once do not all wait
        for the lock."""
        if self._lock.locked() or self._conn is None or not ONE_HOP:
            return None
        direct = self._begin_inline()
        if direct is None:
            return None
        failure: sqlite3.Error | None = None
        try:
            rows = plain(direct)
            if not rows:
                write, read = general()
                written, rows = _run_steps(direct, [("run", *write), ("rows", *read)])
                for result in (written, rows):
                    if isinstance(result, BaseException) and not isinstance(result, sqlite3.Error):
                        raise result
                if isinstance(rows, sqlite3.Error):
                    raise rows
                failure = written
            self._commit_inline(direct)
        except sqlite3.Error as exc:
            raise self._explain(exc) from exc
        finally:
            _roll_back_open(direct)
        return failure, list(rows)

    # -- leases ----------------------------------------------------------------------------

    async def acquire_lease(
        self,
        session_id: str,
        owner: str,
        *,
        ttl: float,
        take_over: lash.store.Lease | None = None,
        turn: str | None = None,
        events: Sequence[lash.store.EventDraft] = (),
    ) -> lash.store.Lease:
        check_session_id(session_id)
        logged = _event_rows(session_id, events)
        now = time.time()
        expires_at = now + ttl
        # LEASE_COLUMNS but the last (the events' JSON array, which only the trigger reads).
        request = (
            session_id,
            owner,
            now,
            expires_at,
            None if take_over is None else take_over.owner,
            None if take_over is None else take_over.token,
            None if turn is None else stored_text(turn),
        )
        kept, max_age = self.settings.events_kept, self.settings.events_max_age

        def plain(direct: sqlite3.Connection) -> list[Any]:
            # The trigger's writes as one UPDATE (when the head row exists and the lease is
            # not busy), then LEASE_AND_HEAD's read, the events' INSERT (numbered from the
            # counter read), and the log's retention (the UPDATE does not fire its trigger).
            # The read of the oldest event's time comes before the events are appended: it
            # finds none where the trigger's condition, after them, would find them, stamped
            # now, which neither trims (they are not old) nor lowers the head's bound of it.
            params = dict(zip(schema.LEASE_COLUMNS[:-1], request, strict=True))
            params["events"] = len(logged)
            if direct.execute(schema.TAKE_LEASE, params).rowcount != 1:
                return []
            rows = direct.execute(schema.LEASE_AND_HEAD, {"sid": session_id, "now": now}).fetchall()
            event_seq, oldest = rows[0][_EVENTS_AT:-1]
            if logged:
                _append_events(direct, session_id, logged, event_seq, now, kept)
            before = event_seq - len(logged)
            _trim_events(direct, session_id, before, event_seq, oldest, now, kept, max_age)
            return rows

        def general() -> tuple[tuple[str, Any], tuple[str, Any]]:
            return (
                (schema.ACQUIRE, (*request, _array(logged))),
                (schema.LEASE_AND_HEAD, {"sid": session_id, "now": now}),
            )

        at_once = self._write_at_once(plain, general)
        if at_once is not None:
            failure, rows = at_once
        else:
            failure, rows, _ = await self._write_then_read(*general(), plain=plain)
        if failure is not None and not _raised(failure, schema.BUSY):
            raise self._explain(failure) from failure
        holder, token, holder_expires, revision, inputs, commands = rows[0][:_HEAD_AT]
        if failure is not None:
            raise lash.SessionBusy(session_id, owner=holder, expires_at=holder_expires, token=token)
        # The head as the lease found it, read in the same transaction (and statement): the
        # execution's first commit continues from it without reading it. Remembered while the
        # lease is held only, so an idle or parked session costs the store nothing.
        stored = rows[0][-1]  # (most sessions have no plugin state: no JSON to parse)
        states = (
            {}
            if stored == "[]"
            else {str(plugin): str(digest) for plugin, digest in json.loads(stored)}
        )
        # The log holds no event older than max_age now (trimmed by the trigger, or after the
        # read by _trim_events), and the events logged later are stamped later.
        oldest = rows[0][_EVENTS_AT + 1]
        bound = now if oldest is None else max(oldest, now - max_age)
        self._remember(session_id, _Head.of_row(rows[0][_HEAD_AT:-1], states, bound))
        return lash.store.Lease(session_id, owner, token, expires_at, revision, inputs, commands)

    async def renew_lease(self, lease: lash.store.Lease, *, ttl: float) -> lash.store.Lease:
        sid = lease.session_id
        now = time.time()
        expires_at = now + ttl
        renew = {"sid": sid, "owner": lease.owner, "token": lease.token, "expires_at": expires_at}
        failure, rows, _ = await self._write_then_read(
            (schema.RENEW_LEASE, renew), (schema.LEASE, {"sid": sid, "now": now})
        )
        if failure is not None:
            raise self._explain(failure) from failure
        row = _first(rows)
        current = _lease_of(sid, None if row is None else row[:3])
        check_lease(current, lease)
        if current is None or current.expires_at != expires_at:  # pragma: no cover - defensive
            raise lash.LeaseLost(sid, "the lease changed while it was renewed")
        return attrs.evolve(
            current, revision=row[3], pending_inputs=row[4], pending_commands=row[5]
        )

    async def release_lease(self, lease: lash.store.Lease) -> None:
        self._heads.pop(lease.session_id, None)
        async with self._operation(inline=True) as conn:
            # One statement: it releases the lease only while it is still this one.
            release = (lease.session_id, lease.owner, lease.token)
            await _pipeline(conn, ("run", schema.RELEASE_LEASE, release))

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
        revision, created_at, updated_at, turns, event_seq, config_hash, config_data, parent = head[
            :8
        ]
        config = _blob(config_hash, config_data)
        return lash.store.SessionRecord(
            session_id=session_id,
            revision=revision,
            created_at=created_at,
            updated_at=updated_at,
            nodes=_nodes(session_id, node_rows),
            config=(
                lash.SessionConfig()
                if config is None
                else lash.from_data(config, lash.SessionConfig, what="stored session config")
            ),
            plugin_states={str(plugin): json.loads(data) for plugin, data in state_rows},
            usage=_usage_of(usage_rows, head[8:]),
            turns=turns,
            event_seq=event_seq,
            parent_id=parent,
        )

    async def commit(
        self,
        session_id: str,
        *,
        lease: lash.store.Lease,
        expected_revision: int,
        delta: lash.store.CommitDelta,
    ) -> int:
        if type(session_id) is not str or session_id not in self._heads:
            check_session_id(session_id)  # (a remembered head's id was checked already)
        # Serialize before taking the write lock: a value that is not JSON fails here, with
        # nothing written and no other writer kept waiting.
        encoded = _Encoded.of(session_id, delta)
        # A turn's commit is small; a replacing one (deleting history) or a large one (an import)
        # goes to the worker thread, never holding up the event loop.
        small = not delta.replace and len(delta.nodes) <= INLINE_MAX_NODES
        if small:
            revision = self._commit_at_once(session_id, lease, expected_revision, delta, encoded)
            if revision is not None:
                return revision
        async with self._operation(inline=small) as conn:
            # Popped: whatever happens below, a head that was not just committed is not kept.
            head = self._heads.pop(session_id, None)
            if (
                head is not None
                and head.revision == expected_revision
                and lease.session_id == session_id
                and not delta.processes
            ):
                # The head this store committed last: one round trip. The guard refuses the
                # commit if the stored head is another one now (then the slow path says why).
                now = time.time()
                plan, new_head = _plan(
                    session_id, lease, head, delta, encoded, now, self._retention
                )
                commit = _Commit(session_id, lease, expected_revision, encoded, plan, now)
                if await commit.send(conn, begun=False):
                    self._remember(session_id, plan.new_head, delta)
                    return new_head.revision
            # Two round trips: BEGIN IMMEDIATE with the head; the commit statement and COMMIT.
            sid = (session_id,)
            reads: list[tuple[str, Any]] = [(schema.HEAD, sid), (schema.STATE_HASHES, sid)]
            if delta.processes:
                reads.append((schema.PROCESSES_BY_KEYS, {"keys": encoded.process_keys}))
            head_rows, state_rows, *keyed = await _begin_immediate(conn, *reads)
            now = time.time()
            stored = _first(head_rows)
            check_lease(
                _lease_of(session_id, None if stored is None else stored[_LEASE_AT:]), lease
            )
            assert stored is not None  # a current lease lives in the head row
            if stored[0] != expected_revision:
                raise lash.RevisionConflict(
                    session_id, expected=expected_revision, actual=stored[0]
                )
            head = _Head.of_row(stored, dict(state_rows))
            plan, new_head = _plan(session_id, lease, head, delta, encoded, now, self._retention)
            # The processes it starts, written after the commit statement in its transaction
            # (a key already used with the same content starts nothing; with other content the
            # whole commit is refused here, before anything is sent).
            started = _keyed_starts(delta.processes, keyed[0] if keyed else [], now)
            after = [s for r in started for s in _process_steps(r, None, now, insert=True)]
            await _Commit(session_id, lease, expected_revision, encoded, plan, now, after).send(
                conn, begun=True
            )
            self._remember(session_id, plan.new_head, delta)
            return new_head.revision

    def _commit_at_once(
        self,
        session_id: str,
        lease: lash.store.Lease,
        expected_revision: int,
        delta: lash.store.CommitDelta,
        encoded: _Encoded,
    ) -> int | None:
        """A turn's commit made at once on this thread, without awaiting anything: the new
        revision, or None when it is to go the general way (``commit``'s body).

        The general way's fast case (the head this store committed last, the write lock free,
        plain statements on the inline connection: :meth:`_Plan.apply`) without its steps
        through the event loop. No other operation of this store can run meanwhile, as under
        its lock: nothing here awaits, and the lock is free (no operation is on its way, on the
        worker thread or inline). Anything else, a refusal included, returns None before
        anything is written: the general way makes the commit again from the stored head, and
        explains its refusal."""
        if self._lock.locked() or self._conn is None or not ONE_HOP or delta.processes:
            return None
        head = self._heads.get(session_id)
        if head is None or head.revision != expected_revision or lease.session_id != session_id:
            return None
        now = time.time()
        plan, new_head = _plan(session_id, lease, head, delta, encoded, now, self._retention)
        if not plan.plain:
            return None
        direct = self._begin_inline()
        if direct is None:
            return None
        # Popped: the general way (should this not commit) reads the stored head instead.
        self._heads.pop(session_id, None)
        try:
            if plan.apply(direct) is not None:
                return None  # rolled back (or nothing written): the general way says why
            self._commit_inline(direct)
        except sqlite3.Error as exc:
            raise self._explain(exc) from exc
        finally:
            _roll_back_open(direct)
        self._remember(session_id, plan.new_head, delta)
        return new_head.revision

    def _remember(
        self, session_id: str, head: _Head, delta: lash.store.CommitDelta | None = None
    ) -> None:
        """Keep ``head`` for the session's next commit, while its lease is held (a commit that
        releases the lease forgets it: the next execution's lease reads it again)."""
        if delta is not None and delta.release:
            return
        heads = self._heads
        heads[session_id] = head
        if len(heads) > HEADS_REMEMBERED:  # the least recently committed goes (dict order)
            del heads[next(iter(heads))]

    async def delete(self, session_id: str) -> None:
        check_session_id(session_id)
        self._heads.pop(session_id, None)
        sid = (session_id,)
        reads = ((schema.HEAD, sid), (schema.STATE_HASHES, sid), (schema.HAS_MAILBOX, sid))
        async with self._transaction(*reads) as (conn, (head_rows, state_rows, mailbox)):
            head = _first(head_rows)
            if head is None or (head[0] == 0 and not mailbox[0][0]):
                raise lash.UnknownSession(session_id)
            owner, token, expires_at = head[_LEASE_AT:]
            if owner is not None and expires_at > time.time():
                raise lash.SessionBusy(session_id, owner=owner, expires_at=expires_at, token=token)
            released = {str(h) for _, h in state_rows}
            config_hash = head[schema.HEAD_COLUMNS.index("config_hash")]
            if config_hash:
                released.add(config_hash)
            writes: list[_Step] = [("run", sql, sid) for sql in schema.DROP_SESSION_ROWS]
            writes.append(("run", schema.TOMBSTONE, sid))
            writes.append(("run", schema.DROP_SESSION_PROCESSES, sid))
            if released:
                writes.append(_release_blobs(released))
            await _pipeline(conn, *writes)

    async def list_sessions(self) -> list[lash.store.SessionSummary]:
        (rows,) = await self._read((schema.LIST_SESSIONS, {"now": time.time()}))
        return [
            lash.store.SessionSummary(
                session_id=sid,
                created_at=created_at,
                updated_at=updated_at,
                turns=turns,
                revision=revision,
                last_user_message=last_user,
                usage=_total_usage((inp or 0, out or 0, cached or 0), others),
                status=status,
                pending_inputs=pending,
                parent_id=parent,
            )
            for (
                sid,
                created_at,
                updated_at,
                turns,
                revision,
                last_user,
                inp,
                out,
                cached,
                others,
                status,
                pending,
                parent,
            ) in rows
        ]

    # -- the mailbox -------------------------------------------------------------------------

    async def enqueue_input(
        self, session_id: str, draft: lash.store.InputDraft
    ) -> lash.store.PendingInput:
        check_session_id(session_id)
        now = time.time()
        pending = _new_input(session_id, draft, now)
        request = _input_request(pending)
        found = {"sid": session_id, "now": now}
        read = (
            (schema.INPUT_BY_ID, {**found, "id": pending.id})
            if draft.key is None
            else (schema.INPUT_BY_KEY, {**found, "key": stored_text(draft.key)})
        )
        failure, rows, _ = await self._write_then_read((schema.ENQUEUE, request), read)
        if failure is not None and not (_raised(failure, schema.KEY_CONFLICT) and rows):
            raise self._explain(failure) from failure
        if failure is not None and draft.key is not None:
            raise lash.InputConflict(session_id, draft.key, str(rows[0][0]))
        return _input(session_id, rows[0])

    async def list_inputs(
        self, session_id: str, *, settled: bool = False
    ) -> list[lash.store.PendingInput]:
        check_session_id(session_id)
        sql = schema.ALL_INPUTS if settled else schema.OPEN_INPUTS
        (rows,) = await self._read((sql, {"sid": session_id, "now": time.time()}))
        return [_input(session_id, row) for row in rows]

    async def cancel_inputs(
        self, session_id: str, targets: Sequence[str], *, suffix: bool = False
    ) -> list[lash.store.InputCancellation]:
        check_session_id(session_id)
        targets = list(targets)
        if suffix and len(targets) != 1:
            raise ValueError("a suffix cancellation takes one target: the first input")
        now = time.time()
        found = {"sid": session_id, "now": now}
        if suffix:
            reads = [(schema.INPUTS_SUFFIX, {**found, "target": stored_text(targets[0])})]
        else:
            unique = list(dict.fromkeys(targets))
            reads = [(schema.INPUT_NAMED, {**found, "target": stored_text(t)}) for t in unique]
        async with self._operation() as conn:
            found_rows = await _begin_immediate(conn, *reads)
            chosen: list[tuple[str, lash.store.PendingInput | None]]
            if suffix:
                inputs = [_input(session_id, row) for row in found_rows[0]]
                chosen = [(i.id, i) for i in inputs] or [(targets[0], None)]
            else:
                by_target = {
                    t: _input(session_id, rows[0]) if rows else None
                    for t, rows in zip(unique, found_rows, strict=True)
                }
                chosen = [(t, by_target[t]) for t in targets]
            outcomes, cancelled = _cancellations(chosen, now)
            steps: list[_Step] = []
            if cancelled:
                events = [lash.store.input_event("input_cancelled", i) for i in cancelled]
                update = _input_update(session_id, cancelled, "cancelled", None, events, now)
                steps.append(("run", schema.UPDATE_INPUTS, update))
            # One statement, so the COMMIT behind it commits it whole (or nothing).
            await _pipeline(conn, *steps, ("run", "COMMIT", ()))
        return outcomes

    async def claim_inputs(
        self,
        lease: lash.store.Lease,
        *,
        limit: int = 1,
        ingress: lash.store.Ingress | None = None,
    ) -> list[lash.store.PendingInput]:
        sid = lease.session_id
        now = time.time()
        found = {"sid": sid, "now": now}
        claimable = {**found, "ingress": ingress, "limit": max(0, limit)}
        # Nothing to claim (what a running turn's checkpoint finds, most of the time): one read,
        # without the write lock. Input queued just after it is left for the next claim, as it
        # would be had it come just after the claim's own transaction. (A read-only store
        # refuses every claim, as a write, below.)
        if self.settings.mode != "ro":
            (probe,) = await self._read((schema.CLAIM_PROBE, claimable), inline=True)
            head = _first(probe)
            if head is None or not head[3]:
                check_lease(_lease_of(sid, None if head is None else head[:3]), lease)
                return []
        async with self._operation(inline=True) as conn:
            head_rows, rows = await _begin_immediate(
                conn, (schema.MAILBOX_HEAD, found), (schema.CLAIMABLE, claimable)
            )
            head = _first(head_rows)
            check_lease(_lease_of(sid, None if head is None else head[2:5]), lease)
            claimed = [attrs.evolve(_input(sid, row), state="claimed") for row in rows]
            steps: list[_Step] = []
            if claimed:
                events = [lash.store.input_event("input_claimed", i) for i in claimed]
                update = _input_update(sid, claimed, "claimed", lease.token, events, now)
                steps.append(("run", schema.UPDATE_INPUTS, update))
            # One statement, so the COMMIT behind it commits it whole (or nothing).
            await _pipeline(conn, *steps, ("run", "COMMIT", ()))
        return claimed

    async def enqueue_command(
        self, session_id: str, draft: lash.store.CommandDraft
    ) -> lash.store.QueuedCommand:
        check_session_id(session_id)
        now = time.time()
        args = _json_copy(session_id, f"args of command {draft.name!r}", dict(draft.args))
        key = stored_text(draft.key)
        found = {"sid": session_id, "now": now}
        reads = ((schema.MAILBOX_HEAD, found), (schema.COMMAND_BY_KEY, (session_id, key)))
        async with self._transaction(*reads) as (conn, (head_rows, command_rows)):
            if command_rows:
                existing = _command(session_id, command_rows[0])
                if (existing.name, dict(existing.args)) != (draft.name, args):
                    raise lash.InputConflict(session_id, draft.key, existing.id, "command")
                return existing
            head = _first(head_rows)
            event_seq, command_seq = (0, 0) if head is None else head[:2]
            command = lash.store.QueuedCommand(
                id=f"cmd-{uuid.uuid4().hex[:16]}",
                session_id=session_id,
                seq=command_seq + 1,
                name=draft.name,
                key=draft.key,
                args=args,
                source=draft.source,
                created_at=now,
            )
            event = lash.store.command_event("command_queued", command)
            await _pipeline(
                conn,
                ("run", schema.NEW_HEAD, (session_id,)),
                (
                    "run",
                    schema.INSERT_COMMAND,
                    (
                        session_id,
                        command.seq,
                        command.id,
                        key,
                        stored_text(command.name),
                        schema.dumps(args),
                        _maybe_text(command.source),
                        now,
                    ),
                ),
                (
                    "run",
                    schema.APPEND_EVENT,
                    (session_id, event_seq + 1, event.type, _event_data(session_id, event), now),
                ),
                ("run", schema.SET_COUNTERS, (command.seq, event_seq + 1, now, session_id)),
            )
        return command

    async def list_commands(
        self, session_id: str, *, settled: bool = False
    ) -> list[lash.store.QueuedCommand]:
        check_session_id(session_id)
        sql = schema.ALL_COMMANDS if settled else schema.PENDING_COMMANDS
        (rows,) = await self._read((sql, (session_id,)))
        return [_command(session_id, row) for row in rows]

    # -- turns -------------------------------------------------------------------------------

    async def turn_record(self, session_id: str, turn_id: str) -> lash.store.TurnRecord | None:
        check_session_id(session_id)
        key = (session_id, stored_text(turn_id))
        (rows,) = await self._read((schema.TURN_RECORD, key), inline=True)
        return _turn_record(session_id, turn_id, _first(rows))

    async def request_cancel(
        self, session_id: str, turn_id: str, *, origin: str, reason: str | None = None
    ) -> lash.store.CancelReceipt:
        check_session_id(session_id)
        now = time.time()
        key = (session_id, stored_text(turn_id))
        reads = (
            (schema.TURN_RECORD, key),
            (schema.CANCEL_REQUEST, key),
            (schema.MAILBOX_HEAD, {"sid": session_id, "now": now}),
        )
        async with self._transaction(*reads) as (conn, (records, requests, heads)):
            record = _turn_record(session_id, turn_id, _first(records))
            if record is not None:
                return lash.store.CancelReceipt(
                    "already_finished", session_id, turn_id, record=record
                )
            if requests:
                stored_origin, stored_reason, at = requests[0]
                request = lash.store.CancelRequest(
                    session_id, turn_id, str(read_text(stored_origin)), read_text(stored_reason), at
                )
                return lash.store.CancelReceipt(
                    "already_requested", session_id, turn_id, request=request
                )
            head = _first(heads)
            if head is None or read_text(head[5]) != turn_id or not head[4] > now:
                return lash.store.CancelReceipt("unknown", session_id, turn_id)
            request = lash.store.CancelRequest(session_id, turn_id, origin, reason, now)
            request_row = (*key, stored_text(origin), _maybe_text(reason), now)
            await _pipeline(conn, ("run", schema.INSERT_CANCEL_REQUEST, request_row))
        return lash.store.CancelReceipt("requested", session_id, turn_id, request=request)

    async def cancel_request(
        self, session_id: str, turn_id: str
    ) -> lash.store.CancelRequest | None:
        check_session_id(session_id)
        key = (session_id, stored_text(turn_id))
        (rows,) = await self._read((schema.CANCEL_REQUEST, key), inline=True)
        if not rows:
            return None
        origin, reason, at = rows[0]
        return lash.store.CancelRequest(
            session_id, turn_id, str(read_text(origin)), read_text(reason), at
        )

    # -- observation -------------------------------------------------------------------------

    async def read_events(
        self, session_id: str, *, after: int = 0, limit: int = 1000
    ) -> lash.store.EventPage:
        check_session_id(session_id)
        kept = self.settings.events_kept
        window = {"sid": session_id, "after": after, "kept": kept, "limit": max(0, limit)}
        bounds, rows = await self._read(
            (schema.EVENT_BOUNDS, {"sid": session_id}), (schema.EVENTS_AFTER, window)
        )
        if not bounds:
            return lash.store.EventPage((), 1, 0)
        last, oldest = bounds[0]
        # The window: the newest `kept` events of those stored (the log is trimmed in batches).
        first = last + 1 if oldest is None else max(oldest, last - kept + 1)
        events = tuple(
            lash.store.StoredEvent(session_id, seq, kind, json.loads(data), at)
            for seq, kind, data, at in rows
        )
        return lash.store.EventPage(events, first, last)

    # -- processes ---------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _process_write(
        self, *reads: tuple[str, Any]
    ) -> AsyncIterator[tuple[list[list[Any]], list[_Step]]]:
        """A write transaction on processes (``BEGIN IMMEDIATE``, inline when the write lock is
        free): the rows of ``reads`` in the round trip of ``BEGIN``; the steps the body adds to
        the list go with ``COMMIT``, in one more round trip (none: it commits nothing)."""
        async with self._operation(inline=True) as conn:
            rows = await _begin_immediate(conn, *reads)
            writes: list[_Step] = []
            yield rows, writes
            await _pipeline(conn, *writes, ("run", "COMMIT", ()))

    async def start_process(self, draft: lash.store.ProcessDraft) -> lash.ProcessRecord:
        if draft.session_id is not None:
            check_session_id(draft.session_id)
        now = time.time()
        record = lash.store.new_process(draft, now)
        _process_params(record)  # storable, checked before the write lock is taken
        reads = [(schema.PROCESS_BY_ID, {"id": stored_text(draft.id)})]
        if draft.key is not None:
            reads.append((schema.PROCESS_BY_KEY, {"key": stored_text(draft.key)}))
        async with self._process_write(*reads) as ((by_id, *by_key), writes):
            starts = _keyed_starts([draft], by_key[0] if by_key else [], now)
            if not starts:
                return _process(by_key[0][0])
            (started,) = starts
            if by_id:
                raise _process_id_taken(draft)
            writes += _process_steps(started, None, now, insert=True)
        return started

    async def get_process(self, process_id: str) -> lash.ProcessRecord | None:
        (rows,) = await self._read((schema.PROCESS_BY_ID, {"id": stored_text(process_id)}))
        return _process(rows[0]) if rows else None

    async def list_processes(
        self,
        *,
        session_id: str | None = None,
        kind: str | None = None,
        status: str | None = None,
        limit: int = 1000,
    ) -> list[lash.ProcessRecord]:
        params = {
            "sid": None if session_id is None else stored_text(session_id),
            "kind": None if kind is None else stored_text(kind),
            "status": status,
            "limit": max(0, limit),
        }
        sql = (
            schema.LIST_SESSION_PROCESSES
            if session_id is not None
            else schema.LIST_KIND_PROCESSES
            if kind is not None
            else schema.LIST_PROCESSES
        )
        (rows,) = await self._read((sql, params))
        return [_process(row) for row in rows]

    async def claim_process(
        self, owner: str, *, ttl: float, kinds: Sequence[str] | None = None
    ) -> lash.ProcessRecord | None:
        # Through the class's own poll (not one wrapped on the instance, as tests count calls).
        return (await self._poll(owner, ttl=ttl, kinds=kinds)).process

    async def poll_work(
        self,
        owner: str,
        *,
        ttl: float,
        kinds: Sequence[str] | None = None,
        claim: bool = True,
        sessions: int = 0,
        finished_before: float | None = None,
    ) -> lash.store.WorkPoll:
        now = time.time()
        # Only the parts asked for run: an idle round is one transaction of a few lookups.
        listed: list[tuple[str, Any]] = []
        if sessions > 0:
            listed.append((schema.RUNNABLE_SESSIONS, {"now": now, "limit": sessions}))
        if finished_before is not None:
            listed.append((schema.UNNOTIFIED_PROCESSES, {"before": finished_before}))
        if not claim:  # nothing to write: a read transaction
            rows = await self._read(*listed) if listed else []
            return _work_poll(None, rows, sessions > 0, finished_before is not None)
        of = {"now": now, "kinds": None if kinds is None else _encode_array(list(kinds)) or "[]"}
        reads = (
            (schema.EXPIRED_PROCESSES, {"now": now}),
            (schema.OLDEST_PENDING_PROCESS, of),
            (schema.OLDEST_RERUNNABLE_PROCESS, of),
            *listed,
        )
        claimed = None
        async with self._process_write(*reads) as ((expired, pending, rerun, *rows), writes):
            for row in expired:
                settled = lash.store.settled_on_expiry(_process(row), now)
                if settled is not None:
                    writes += _process_steps(settled, "process_finished", now)
            candidates = sorted(pending + rerun, key=lambda row: int(row[0]))
            if candidates:
                claimed = lash.store.claimed_by(_process(candidates[0]), owner, ttl=ttl, now=now)
                writes += _process_steps(claimed, "process_running", now)
        return _work_poll(claimed, rows, sessions > 0, finished_before is not None)

    _poll = poll_work

    async def heartbeat_process(
        self, process_id: str, token: int, *, ttl: float, progress: Any = None
    ) -> lash.ProcessRecord:
        now = time.time()
        found = {"id": stored_text(process_id)}
        if progress is None:
            # One statement (extend the claim if it is still this token's), then the record.
            extend = {**found, "token": token, "expires_at": now + ttl}
            failure, rows, _ = await self._write_then_read(
                (schema.EXTEND_PROCESS_CLAIM, extend), (schema.PROCESS_BY_ID, found)
            )
            if failure is not None:
                raise self._explain(failure) from failure
            # Read in the write's transaction: running with this token means it extended it.
            return _claimed_process(process_id, token, rows)
        async with self._process_write((schema.PROCESS_BY_ID, found)) as ((rows,), writes):
            record = _claimed_process(process_id, token, rows)
            record = attrs.evolve(record, expires_at=now + ttl, progress=progress)
            writes += _process_steps(record, "process_progress", now)
        return record

    async def park_process(self, process_id: str, token: int) -> lash.ProcessRecord:
        now = time.time()
        found = (schema.PROCESS_BY_ID, {"id": stored_text(process_id)})
        async with self._process_write(found) as ((rows,), writes):
            record = attrs.evolve(_claimed_process(process_id, token, rows), expires_at=None)
            writes += _process_steps(record, None, now)
        return record

    async def finish_process(
        self,
        process_id: str,
        token: int | None,
        *,
        status: str,
        result: Any = None,
        error: str | None = None,
        notified: bool = False,
    ) -> lash.ProcessRecord:
        now = time.time()
        if token is not None and status in lash.store.PROCESS_TERMINAL:
            # The common case, a worker settling its own claim: one guarded UPDATE that
            # returns the record; when it matches nothing, the general path below says why.
            what = f"result of process {process_id!r}"
            settle = {
                "id": stored_text(process_id),
                "token": token,
                "status": status,
                "result": None if result is None else _dumps("-", what, lash.to_data(result)),
                "error": None if error is None else stored_text(error),
                "now": now,
                "notified": int(notified),
            }
            async with self._process_write((schema.FINISH_CLAIMED_PROCESS, settle)) as (
                (rows,),
                writes,
            ):
                if rows:
                    done = _process(rows[0])
                    writes += _event_steps(done, "process_finished", now)
            if rows:
                return done
        found = (schema.PROCESS_BY_ID, {"id": stored_text(process_id)})
        async with self._process_write(found) as ((rows,), writes):
            record = _process(rows[0]) if rows else None
            done = lash.store.finish_record(
                process_id,
                record,
                token,
                status=status,
                result=result,
                error=error,
                now=now,
                notified=notified,
            )
            if done is not record:  # a result that is not JSON data raises here: no write
                writes += _process_steps(done, "process_finished", now)
        return done

    async def request_process_cancel(
        self, process_id: str, reason: str
    ) -> lash.ProcessRecord | None:
        now = time.time()
        found = (schema.PROCESS_BY_ID, {"id": stored_text(process_id)})
        async with self._process_write(found) as ((rows,), writes):
            if not rows:
                return None
            record = _process(rows[0])
            asked = lash.store.cancel_record(record, reason, now)
            if asked is not record:
                event = "process_finished" if asked.finished else None
                writes += _process_steps(asked, event, now)
        return asked

    async def unnotified_processes(self, *, finished_before: float) -> list[lash.ProcessRecord]:
        (rows,) = await self._read((schema.UNNOTIFIED_PROCESSES, {"before": finished_before}))
        return [_process(row) for row in rows]

    async def mark_process_notified(self, process_id: str) -> None:
        async with self._operation(inline=True) as conn:
            await _pipeline(conn, ("run", schema.MARK_PROCESS_NOTIFIED, (stored_text(process_id),)))

    async def runnable_sessions(self, *, limit: int = 100) -> list[str]:
        (rows,) = await self._read(
            (schema.RUNNABLE_SESSIONS, {"now": time.time(), "limit": max(0, limit)})
        )
        return [str(read_text(row[0])) for row in rows]

    # -- blobs -------------------------------------------------------------------------------

    async def put_blob(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        async with self._operation(inline=True) as conn:
            # One statement: atomic on its own; a digest stored already is left as it is.
            await _pipeline(
                conn, ("run", schema.PUT_BLOB, (digest, bytes(data), len(data), time.time()))
            )
        return digest

    async def get_blob(self, digest: str) -> bytes | None:
        (rows,) = await self._read((schema.GET_BLOB, (digest,)))
        return bytes(rows[0][0]) if rows else None

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


#: One statement for :func:`_gather`: what to do with it (``run`` it, read its ``rows``, or
#: run it for ``many`` parameter sets), the SQL, the parameters.
_Step = tuple[Literal["run", "rows", "many"], str, Any]


#: Whether stores made from now on run small writes inline (see ``SQLiteStore._operation``);
#: tests turn it off to exercise the worker thread's path.
INLINE = True
#: Inline writes between two WAL checkpoints (see ``SQLiteStore._after_inline``). (200 until
#: 2026-12-07, when a checkpoint began only once it took the store's lock: with 100 sessions
#: waiting for that lock, one pass over them later, so that every other one was skipped, one
#: every ~400 writes. Begun at once, 200 meant twice as many there: 0.87x the turns/s of
#: ``bench_concurrent.py``, 1.10x the CPU a turn; 400: 1.00x and 1.00x, and one session,
#: whose checkpoints began at once before too, 1.06x, its WAL up to twice as large.)
INLINE_CHECKPOINT = 400
#: At most this many passive passes in a WAL checkpoint's first phase, the next one run while
#: the last found more than ``CHECKPOINT_TAIL`` frames appended since the one before; then
#: its second phase waits ``CHECKPOINT_BUSY`` ms at most for the write lock and for readers
#: (see ``_checkpoint_passes``).
CHECKPOINT_PASSES = 4
CHECKPOINT_TAIL = 256
CHECKPOINT_BUSY = 25
#: Called on the checkpointer's thread after each pass of a WAL checkpoint with its phase (1:
#: passive, beside the writes; 2: the last, keeping them out) and SQLite's ``(busy, log,
#: checkpointed)``: for tests and benchmarks (``_checkpoint_passes``).
CHECKPOINT_OBSERVER: Callable[[int, tuple[int, int, int]], None] | None = None
#: Seconds an inline write tries again for the write lock before the worker thread waits for
#: it (see ``SQLiteStore._begin_inline_soon``).
INLINE_WAIT = 0.25
#: The largest commit (in nodes) that may run inline.
INLINE_MAX_NODES = 64

_BEGINS = frozenset({"BEGIN", "BEGIN IMMEDIATE", "BEGIN DEFERRED"})


class _InlineConnection:
    """Stands in for the aiosqlite connection in an inline operation (``_operation``): its
    steps run at once on this thread, on a connection whose ``BEGIN IMMEDIATE`` already took
    the write lock (so an operation's own ``BEGIN`` is skipped)."""

    def __init__(self, direct: sqlite3.Connection) -> None:
        self._connection = direct

    @property
    def direct(self) -> sqlite3.Connection:
        """The connection itself (in its write transaction)."""
        return self._connection

    async def _execute(
        self, function: Callable[[sqlite3.Connection, Sequence[_Step]], list[Any]], *args: Any
    ) -> list[Any]:
        direct, steps = args
        skipped = [kind == "run" and sql in _BEGINS for kind, sql, _ in steps]
        ran = iter(
            function(direct, [s for s, skip in zip(steps, skipped, strict=True) if not skip])
        )
        return [None if skip else next(ran) for skip in skipped]

    @property
    def in_transaction(self) -> bool:
        return self._connection.in_transaction

    async def rollback(self) -> None:
        self._connection.rollback()


async def _connect(target: str, uri: bool) -> aiosqlite.Connection:
    """An aiosqlite connection (autocommit) to ``target`` whose worker thread is a daemon.

    aiosqlite's worker thread is not a daemon: a host that exits without closing its core
    would hang at interpreter exit, holding the database. A daemon worker dies with the
    process instead, which WAL makes as safe as a crash (committed data stays; an open
    transaction rolls back). The attribute is private, hence the guard."""
    pending = aiosqlite.connect(target, isolation_level=None, uri=uri)
    thread = getattr(pending, "_thread", None)
    if thread is not None and not thread.is_alive():
        thread.daemon = True
    return await pending


class _Checkpointer:
    """The WAL checkpoint of ``SQLiteStore._after_inline``, on a connection and a thread of its
    own (no store operation queues behind it), in one call to that thread
    (:func:`_checkpoint_passes`): passive passes while they find many frames appended since the
    one before (each pass copies what was written during the last one, in less time, so the
    tail shrinks), then one ``RESTART`` pass that keeps writers out while it copies the tail,
    so the next write starts the WAL over.

    The thread is a one-thread ``concurrent.futures`` executor, and the connection a plain
    ``sqlite3`` one that only that thread uses (opened by the first checkpoint, closed by
    :meth:`close`, both on it). Nothing of it belongs to an event loop: the store is used from
    several ``asyncio.run`` calls (a core built outside a loop, a CLI, ``lash.testing``'s
    cores, closed with ``asyncio.run(core.close())``), and a loop may end while the passes run.
    An aiosqlite connection answered through the loop that asked: its thread, answering a
    loop closed meanwhile, died, and the next checkpoint, and ``close()`` (under the store's
    lock), waited for it forever. The executor's worker answers a ``concurrent.futures``
    future that needs no loop, and lives on.

    The WAL is synced before each copy and the database file after it, at the store's
    ``synchronous`` level, as SQLite's own checkpoints are: a crash at any point leaves every
    committed frame in the WAL until the copy that holds it is synced. An error (a checkpoint
    is a chore: the next one tries again) is logged once, at ``WARNING`` on the
    ``lash.sqlite`` logger, and otherwise dropped."""

    def __init__(self, path: str, synchronous: str) -> None:
        self._path = path
        self._synchronous = synchronous
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="lash-sqlite-checkpoint"
        )
        self._conn: sqlite3.Connection | None = None  # used on the executor's thread only
        self._logged = False

    def start(self) -> concurrent.futures.Future[None] | None:
        """Run a checkpoint on the thread (after the one under way, if any); None when the
        interpreter is shutting down (no new thread may start: the checkpoint is skipped)."""
        try:
            return self._executor.submit(self._run)
        except RuntimeError:
            return None

    async def close(self) -> None:
        """Close the connection once the checkpoint under way has finished, and end the
        thread. Cancelled while waiting, it closes all the same: the closing is queued on the
        thread, which then ends, whoever waits."""
        try:
            closing = self._executor.submit(self._close)
        except RuntimeError:  # the interpreter is shutting down: the process's end closes it
            return
        self._executor.shutdown(wait=False)  # the queued work (the closing) still runs
        await asyncio.shield(asyncio.wrap_future(closing))

    def _run(self) -> None:
        try:
            if self._conn is None:
                self._conn = self._open()
            _checkpoint_passes(self._conn)
        except sqlite3.Error as exc:
            if not self._logged:
                self._logged = True
                log.warning(
                    "WAL checkpoint of %s failed: %s (the WAL grows until one succeeds; "
                    "further failures are not logged)",
                    self._path,
                    exc,
                )

    def _open(self) -> sqlite3.Connection:
        """The checkpoint's connection, at the store's ``synchronous`` level (the syncs of a
        checkpoint are its), never checkpointing on its own (it writes nothing), whose second
        phase waits ``CHECKPOINT_BUSY`` ms at most for a writer or reader.

        Opened in mode ``rw``, whatever the store's: opened by the path long after the store's
        connection, it must not create a database where the file was moved or deleted
        meanwhile. (In mode ``rwc`` it made an empty one, beside the live ``-wal``, which SQLite
        then deleted by name: every turn not yet checkpointed, lost.) Failing to open is a
        checkpoint's failure, tried again by the next. Not opened beside the store's
        connection instead: most stores (a CLI's, a test's, a read-only one) never checkpoint,
        and would pay a connection and a thread for nothing."""
        target, uri = schema.connect_target(self._path, "rw")
        conn = sqlite3.connect(target, isolation_level=None, uri=uri)  # the executor's thread
        try:
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            conn.execute("PRAGMA wal_autocheckpoint = 0")
            conn.execute(f"PRAGMA busy_timeout = {CHECKPOINT_BUSY}")
        except BaseException:
            conn.close()
            raise
        return conn

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


_PASSIVE = "PRAGMA wal_checkpoint(PASSIVE)"
_RESTART = "PRAGMA wal_checkpoint(RESTART)"


def _checkpoint_passes(conn: sqlite3.Connection) -> None:
    """The passes of a WAL checkpoint (:class:`_Checkpointer`), run on the checkpointer's
    thread.

    Phase one: ``PASSIVE`` (no lock taken or waited for: the store's writes and reads go on;
    it copies only frames no open read still needs), again while the last pass found more
    than ``CHECKPOINT_TAIL`` frames appended since the one before, ``CHECKPOINT_PASSES`` at
    most. Phase two: ``RESTART``, which takes the write lock (waiting ``CHECKPOINT_BUSY`` ms
    at most for a writer, then for readers of older frames), copies the rest and lets the
    next write start the WAL over; busy, it copies what it can, as a passive pass does.
    Each row is fetched: a statement left unfinished would hold a read of the WAL."""
    previous = 0
    for _ in range(CHECKPOINT_PASSES):
        log = _checkpoint_pass(conn, 1, _PASSIVE)
        # (A log shorter than before: a write started the WAL over meanwhile.)
        if (log - previous if log >= previous else log) <= CHECKPOINT_TAIL:
            break
        previous = log
    _checkpoint_pass(conn, 2, _RESTART)


def _checkpoint_pass(conn: sqlite3.Connection, phase: int, sql: str) -> int:
    """One pass of :func:`_checkpoint_passes`: the frames in the WAL when it ran."""
    busy, log, copied = conn.execute(sql).fetchone()
    observe = CHECKPOINT_OBSERVER
    if observe is not None:
        observe(phase, (busy, log, copied))
    return int(log)


class _StoreLock:
    """The store's lock: the operation that holds it runs alone, also across its awaits (on
    the worker thread, or while it waits for the file's write lock); operations made at once
    (:meth:`SQLiteStore._commit_at_once`, ``_write_at_once``: nothing awaited) run only while
    nobody holds it. Those that wait take it in the order they came.

    Unlike ``asyncio.Lock``, a release wakes every waiter, not the first one: the woken run in
    the next pass of the event loop, in their order, each taking the lock if it is free and it
    is the first waiting (most run at once and let it go in the same step, so the next one takes
    it in the same pass); one that finds the lock taken again waits again, in its place.
    asyncio's lock, once anyone had waited for it, handed itself over one waiter a pass, and
    everyone coming meanwhile queued behind the woken one: at 100 sessions nearly every lease
    waited a pass for it, for good (~0.1 ms of CPU a turn); and operations made at once beside
    such a queue kept its last waiters waiting up to ~1 s while other sessions took turn after
    turn."""

    __slots__ = ("_held", "_tickets", "_waiting")

    def __init__(self) -> None:
        self._held = False
        # Each waiter's future by its ticket, in the order they came (a waiter that waits
        # again replaces its future and keeps its place).
        self._waiting: dict[int, asyncio.Future[None]] = {}
        self._tickets = itertools.count()

    def locked(self) -> bool:
        return self._held

    async def __aenter__(self) -> None:
        if not self._held and not self._waiting:
            self._held = True
            return
        ticket = next(self._tickets)
        loop = asyncio.get_running_loop()
        try:
            while True:
                waiter: asyncio.Future[None] = loop.create_future()
                self._waiting[ticket] = waiter
                await waiter
                if not self._held and next(iter(self._waiting)) == ticket:
                    break
        except BaseException:
            self._waiting.pop(ticket, None)
            self._wake()  # (it may have been the first: the next ones look again)
            raise
        del self._waiting[ticket]
        self._held = True

    async def __aexit__(self, *exc_info: object) -> None:
        self._held = False
        self._wake()

    def _wake(self) -> None:
        for waiter in self._waiting.values():
            if not waiter.done():
                waiter.set_result(None)


def _roll_back_open(direct: sqlite3.Connection) -> None:
    """Roll back what an inline write left open: it failed (or was refused), nothing of it
    stays. (Its own error, if rolling back fails too, is the one raised.)"""
    if direct.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            direct.rollback()


def _run_steps(conn: sqlite3.Connection, steps: Sequence[_Step]) -> list[Any]:
    """Run ``steps`` one after another on the connection's worker thread: each one's rows (for
    ``rows``), or ``None``, or the error it raised (the next ones still run, as they would have
    if each had been sent alone)."""
    results: list[Any] = []
    for kind, sql, params in steps:
        try:
            if kind == "rows":
                results.append(conn.execute(sql, params).fetchall())
                continue
            if kind == "many":
                conn.executemany(sql, params)
            else:
                conn.execute(sql, params)
            results.append(None)
        except Exception as exc:  # handed to the caller, which raises it
            results.append(exc)
    return results


async def _gather(conn: aiosqlite.Connection, *steps: _Step) -> list[Any]:
    """Run statements back to back on the connection's worker thread, in one round trip to it
    instead of one each: each one's result, or its error.

    A round trip costs more than a small statement: queueing a request wakes the worker, which
    then waits for the event loop's thread to let go of the GIL, and its answer wakes the loop
    (0.05 to 0.3 ms on a small VM, against 0.01 to 0.05 ms for the statements of a commit). So
    the statements go as one function, run by the worker with aiosqlite's ``_execute`` (how
    each of its own methods reaches the worker), on its ``sqlite3`` connection. Both are
    private; should a later aiosqlite lack them, the statements are queued together with its
    public methods instead (one request each, in order, without waiting in between).
    Cancelled, the caller stops waiting but the function still runs to its end; the caller's
    rollback, queued after it, undoes it.
    """
    execute = getattr(conn, "_execute", None)
    sqlite_conn = getattr(conn, "_connection", None)
    if ONE_HOP and execute is not None and isinstance(sqlite_conn, sqlite3.Connection):
        results: list[Any] = await execute(_run_steps, sqlite_conn, steps)
        return results

    async def step(kind: str, sql: str, params: Any) -> Any:
        if kind == "rows":
            return await conn.execute_fetchall(sql, params)
        if kind == "many":
            await conn.executemany(sql, params)
        else:
            await conn.execute(sql, params)
        return None

    return list(await asyncio.gather(*(step(*s) for s in steps), return_exceptions=True))


async def _pipeline(conn: aiosqlite.Connection, *steps: _Step) -> list[Any]:
    """:func:`_gather`, raising the first failure (the caller decides whether the transaction
    may commit)."""
    results = await _gather(conn, *steps)
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
        conn, ("run", "BEGIN IMMEDIATE", ()), *(("rows", sql, params) for sql, params in reads)
    )
    return [list(r) for r in rows[1:]]


def _raised(exc: BaseException, message: str) -> bool:
    """Whether ``exc`` is a trigger's ``RAISE(ABORT, message)``."""
    return isinstance(exc, sqlite3.IntegrityError) and str(exc) == message


@attrs.frozen
class _Commit:
    """One commit statement on its way, with what it needs to say why it was refused."""

    session_id: str
    lease: lash.store.Lease
    expected_revision: int
    encoded: _Encoded
    plan: _Plan
    now: float
    #: Statements run after the commit statement, in its transaction (processes it starts).
    after: Sequence[_Step] = ()

    async def send(self, conn: aiosqlite.Connection, *, begun: bool) -> bool:
        """Send the commit (``begun``: in the ``BEGIN IMMEDIATE`` transaction that read its head,
        which this commits). False when the guard found another head (only possible when not
        ``begun``: then nothing is left open).

        Alone, the statement is its own transaction: one round trip. With input to queue, the
        inputs' statements (each one an ``INSERT`` into ``input_requests``) go first, in one
        transaction with it, and ``COMMIT`` follows once all of them succeeded.

        On the inline connection (already in its write transaction, on this thread), a commit
        that :attr:`_Plan.plain` allows is made with plain statements instead (no round trip
        to save there, and they cost less than the trigger); the caller's ``COMMIT`` follows.
        """
        if isinstance(conn, _InlineConnection) and self.plan.plain and not self.after:
            outcome = self.plan.apply(conn.direct)
            if outcome is None:
                return True
            if _raised(outcome, schema.STALE_HEAD) and not begun:
                return False  # nothing was written: the transaction goes on for the slow path
            raise await self._refusal(conn, outcome)
        requests = [
            _input_request(_new_input(self.session_id, d, self.now)) for d in self.encoded.enqueue
        ]
        # More than the commit statement: COMMIT once every statement succeeded.
        several = bool(requests or self.after)
        steps: list[_Step] = []
        if several and not begun:
            steps.append(("run", "BEGIN", ()))
        steps += [("run", schema.ENQUEUE, request) for request in requests]
        steps.append(("run", schema.COMMIT, self.plan.row()))
        steps += self.after
        if begun and not several:
            # One statement: the COMMIT behind it commits it whole, or nothing when it failed.
            steps.append(("run", "COMMIT", ()))
        results = await _gather(conn, *steps)
        start = 1 if several and not begun else 0
        if start and isinstance(results[0], BaseException):
            raise results[0]
        outcome = results[start + len(requests)]
        if _raised(outcome, schema.STALE_HEAD) and not begun:
            if several:
                await _pipeline(conn, ("run", "ROLLBACK", ()))
            return False
        if isinstance(outcome, BaseException):
            raise await self._refusal(conn, outcome)
        for draft, result in zip(self.encoded.enqueue, results[start:], strict=False):
            if _raised(result, schema.KEY_CONFLICT) and draft.key is not None:
                ((row,),) = await _pipeline(
                    conn,
                    (
                        "rows",
                        "SELECT id FROM inputs WHERE session_id = ? AND key = ?",
                        (self.session_id, stored_text(draft.key)),
                    ),
                )
                raise lash.InputConflict(self.session_id, draft.key, str(row[0]))
            if isinstance(result, BaseException):
                raise result
        for result in results[start + len(requests) + 1 :]:
            if isinstance(result, BaseException):
                raise result
        if several:
            await _pipeline(conn, ("run", "COMMIT", ()))
        return True

    async def _refusal(self, conn: aiosqlite.Connection, exc: BaseException) -> BaseException:
        """The error of a commit statement that failed: what the guard that refused it means
        (named after a read of what it found), or the failure itself."""
        sid = self.session_id
        if _raised(exc, schema.CLAIM_LOST):
            (rows,) = await _pipeline(
                conn,
                (
                    "rows",
                    """SELECT id, state, claim_token FROM inputs WHERE session_id = ?
                    AND id IN (SELECT value FROM json_each(?))""",
                    (sid, self.encoded.claimed),
                ),
            )
            found = {str(r[0]): (r[1], r[2]) for r in rows}
            lost = [
                f"{input_id!r} ({'unknown' if input_id not in found else found[input_id][0]})"
                for input_id in json.loads(self.encoded.claimed or "[]")
                if found.get(input_id) != ("claimed", self.lease.token)
            ]
            return lash.LeaseLost(
                sid,
                f"input {', '.join(lost)} is not claimed by this lease (token "
                f"{self.lease.token}) any more: its claim ended with the lease",
            )
        if _raised(exc, schema.COMMAND_GONE):
            return lash.LeaseLost(
                sid,
                "a command this commit applies is not pending any more (another commit applied it)",
            )
        if _raised(exc, schema.TURN_EXISTS):
            conflict = lash.RevisionConflict(
                sid, expected=self.expected_revision, actual=self.expected_revision
            )
            conflict.add_note(
                f"turn {self.encoded.turn[0]!r} is committed already: a turn id is committed once"
            )
            return conflict
        return exc


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
    config_hash: str | None
    status: str | None
    states: dict[str, str]  # plugin -> blob hash
    #: A lower bound of the time of the session's oldest stored event (None: not known), so
    #: that a commit reads it only when an event may have aged out of the log (see
    #: :meth:`_Plan.apply`). The log only ever loses its oldest events and gains new ones,
    #: stamped by their writers' clocks.
    oldest_event: float | None = None

    @classmethod
    def of_row(
        cls, row: Sequence[Any], states: dict[str, str], oldest_event: float | None = None
    ) -> _Head:
        """The head in a row that starts with ``schema.HEAD_COLUMNS`` (the first fields, in
        their order: checked below the class), without a dict of them on the way."""
        revision, created, updated, turns, next_seq, frame_start, last_user, config, status = row[
            :_LEASE_AT
        ]
        return cls(
            revision,
            created,
            updated,
            turns,
            next_seq,
            frame_start,
            last_user,
            config,
            status,
            states,
            oldest_event,
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
            self.config_hash,
            self.status,
        )


assert tuple(f.name for f in attrs.fields(_Head))[:_LEASE_AT] == schema.HEAD_COLUMNS

#: ``(hash, canonical JSON)`` of a blob.
_Blob = tuple[str, str]

#: A node as the commit statement stores it: ``(node_id, kind, frame_id, turn, JSON,
#: opens a frame, user text for the listing, the outcome of a TurnOutcome node)``.
_NodeRow = tuple[str, str, str, int, str, bool, str | None, str | None]


@attrs.define  # (not frozen: made for each commit, and frozen attrs cost more to make)
class _Encoded:
    """A delta's values as the database stores them, computed (and checked) before any lock
    is taken."""

    nodes: list[_NodeRow]
    states: dict[str, _Blob]
    config: _Blob | None  # None: unchanged
    usage: list[tuple[str, int, int, int]]
    claimed: str | None  # JSON array of input ids
    applied: str | None  # JSON array of command ids
    turn: tuple[Any, ...]  # turn_id, index, outcome, reason, result (all None: no turn)
    events: list[tuple[str, str]]  # (type, JSON data)
    enqueue: tuple[lash.store.InputDraft, ...]
    rollup: str | None  # JSON array of [session_id, source, input, output, cached]
    process_keys: str | None = None  # JSON array of the keys of the processes it starts

    @classmethod
    def of(cls, session_id: str, delta: lash.store.CommitDelta) -> _Encoded:
        # The checks' messages are built only for what fails them (a turn's commit checks a
        # few dozen values: formatting a message for each cost more than the checks).
        for node in delta.nodes:
            node_id, frame_id = node.id, node.frame_id
            ascii_ids = node_id.isascii() and frame_id.isascii()  # (no lone surrogate, then)
            if not ascii_ids or "\0" in node_id or "\0" in frame_id:
                _key(session_id, "node id", node.id)
                _key(session_id, f"frame id of node {node.id!r}", node.frame_id)
            if not _INT_MIN <= node.turn <= _INT_MAX:
                _integer(session_id, f"turn of node {node.id!r}", node.turn)
        for draft in delta.enqueue:  # checked now: they are encoded when the commit is sent
            _new_input(session_id, draft, 0.0)
        for process in delta.processes:  # likewise
            _process_params(lash.store.new_process(process, 0.0))
        turn = delta.turn
        if turn is None:
            turn_row: tuple[Any, ...] = (None,) * 5
            result: Any = _NO_RESULT
            plain_text = None
        else:
            result = turn.result
            plain = result if type(result) is dict else dict(result)
            # Spliced into an event's JSON only in its plain form (escaped for lone
            # surrogates, it would differ from the whole event's text made that way).
            plain_text = _plain_dumps(plain)
            result_text = plain_text or _dumps(
                session_id, f"result of turn {turn.turn_id!r}", plain
            )
            if not _INT_MIN <= turn.index <= _INT_MAX:
                _integer(session_id, "turn index", turn.index)
            turn_row = (
                stored_text(turn.turn_id),
                turn.index,
                turn.outcome,
                _maybe_text(turn.reason),
                result_text,
            )
        rollup = delta.rollup
        return cls(
            nodes=[_node_row(session_id, node) for node in delta.nodes],
            states={
                _key(session_id, "plugin name", plugin): _canonical(
                    session_id, f"state of plugin {plugin!r}", data
                )
                for plugin, data in delta.plugin_states.items()
            },
            config=(
                None
                if delta.config is None
                else _canonical(session_id, "config", lash.to_data(delta.config))
            ),
            usage=[(*_usage_row(session_id, source, u),) for source, u in delta.usage.items()],
            claimed=_ids(session_id, "input", delta.claimed) if delta.claimed else None,
            applied=_ids(session_id, "command", delta.applied) if delta.applied else None,
            turn=turn_row,
            events=[
                (
                    _event_type(session_id, e.type),
                    _event_data(session_id, e, result, plain_text),
                )
                for e in delta.events
            ],
            enqueue=tuple(delta.enqueue),
            rollup=_array(
                [
                    (other, *_usage_row(session_id, source, u))
                    for other, usages in rollup.items()
                    for source, u in usages.items()
                ]
            )
            if rollup
            else None,
            process_keys=_encode_array(
                [_key(session_id, "process key", p.key) for p in delta.processes if p.key]
            )
            if delta.processes
            else None,
        )


_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1


def _integer(session_id: str, what: str, value: int) -> int:
    if not _INT_MIN <= value <= _INT_MAX:
        raise _unstorable(session_id, f"{what} ({value})", "SQLite integers are 64-bit")
    return value


def _usage_row(session_id: str, source: str, u: lash.Usage) -> tuple[str, int, int, int]:
    """``(source, input, output, cached)`` of a usage, checked."""
    row = (source, u.input_tokens, u.output_tokens, u.cached_tokens)
    if "\0" in source or not all(_INT_MIN <= n <= _INT_MAX for n in row[1:]):
        _key(session_id, "usage source", source)
        _integer(session_id, f"input tokens of {source!r}", u.input_tokens)
        _integer(session_id, f"output tokens of {source!r}", u.output_tokens)
        _integer(session_id, f"cached tokens of {source!r}", u.cached_tokens)
    return row


def _key(session_id: str, what: str, value: str) -> str:
    """A name the commit statement reads out of JSON: SQLite's JSON functions end a string at
    an escaped NUL, so one holding NUL is refused rather than cut; and one SQLite text cannot
    hold (a lone surrogate, which has no UTF-8) is refused naming it, not with the encoder's
    error."""
    if "\0" in value:
        raise _unstorable(session_id, f"{what} {value!r}", "it holds a NUL character")
    if not _utf8(value):
        raise _unstorable(
            session_id, f"{what} {value!r}", "it holds a lone surrogate, which has no UTF-8"
        )
    return value


def _ids(session_id: str, what: str, ids: Sequence[str]) -> str | None:
    """The JSON array of ``ids`` (each once) a commit settles, or None for none."""
    unique = list(dict.fromkeys(ids))
    for value in unique:
        if not isinstance(value, str) or "\0" in value:
            raise lash.LeaseLost(
                session_id, f"{what} {value!r} is not one this store gave out (not claimed)"
            )
    return _array(unique)


def _events(session_id: str, events: Sequence[lash.store.EventDraft]) -> str | None:
    """``events`` as the JSON array the triggers append to the log (``[[type, data], ...]``),
    or None for none."""
    return _array(_event_rows(session_id, events))


def _event_rows(session_id: str, events: Sequence[lash.store.EventDraft]) -> list[tuple[str, str]]:
    """``events`` as ``(type, JSON data)`` pairs, checked."""
    return [(_event_type(session_id, e.type), _event_data(session_id, e)) for e in events]


def _event_type(session_id: str, kind: str) -> str:
    try:
        kind.encode("utf-8")
    except (AttributeError, UnicodeEncodeError):
        raise _unstorable(session_id, f"event type {kind!r}", "it is not text") from None
    return _key(session_id, "event type", kind)


def _event_data(
    session_id: str,
    event: lash.store.EventDraft,
    result: Any = None,
    result_text: str | None = None,
) -> str:
    """The JSON of ``event``'s data. An event that holds the commit's turn result (``data``'s
    ``"result"`` is ``result``, whose plain JSON is ``result_text``: ``turn_committed``) gets
    that text spliced in instead of encoding the result again: the same text, at half the
    cost."""
    data = event.data
    if result_text is not None and data.get("result") is result:
        outer = dict(data)
        outer["result"] = _SPLICE
        text = _plain_dumps(outer)
        # The placeholder's JSON is there; found once, that is the placeholder (a string
        # holding it, quotes and all, would be found as well: then the data is encoded whole).
        if text is not None and text.count(_SPLICED) == 1:
            return text.replace(_SPLICED, result_text)
    elif type(data) is dict:  # (a turn_started event: its plain form, with no message made)
        text = _plain_dumps(data)
        if text is not None:
            return text
    return _dumps(session_id, f"data of event {event.type!r}", dict(data))


#: What stands for the turn result in an event's JSON until its text is spliced in.
_SPLICE = "\0lash:turn result\0"
_SPLICED = json.dumps(_SPLICE)
_NO_RESULT = object()


def _plain_dumps(data: dict[str, Any]) -> str | None:
    """``schema.dumps(data)`` when that is its plain form (UTF-8 text, no escaped surrogates),
    else None (also for what is not JSON data: ``_dumps`` then says why)."""
    try:
        text = _plain_encode(data)
    except (TypeError, ValueError):
        return None
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return None
    return text


def _append_events(
    conn: sqlite3.Connection,
    session_id: str,
    events: Sequence[tuple[str, str]],
    seq: int,
    now: float,
    kept: int,
) -> None:
    """Append ``events`` (``(type, JSON data)``) to the session's log as the last ones up to
    ``seq``, the head's counter, which the write already moved past them (its ``UPDATE`` ran
    first, and so did the log's retention trigger on that counter, which a trigger's write
    runs after appending). The same rows as a trigger's: the retention only differs when one
    write appends more than ``kept`` events, whose oldest it would have dropped at once; they
    are dropped here. (Numbered from ``seq`` read by the caller rather than by a subquery of
    each ``INSERT``: that read of the head cost a turn's lease ~4 µs.)"""
    count = len(events)
    first = seq - count
    rows = [(session_id, first + i, kind, data, now) for i, (kind, data) in enumerate(events, 1)]
    conn.executemany(schema.APPEND_EVENT, rows)
    if count > kept:
        conn.execute(
            "DELETE FROM events WHERE session_id = ? AND seq <= ?", (session_id, seq - kept)
        )


def _trim_events(
    conn: sqlite3.Connection,
    session_id: str,
    before: int,
    after: int,
    oldest: float | None,
    now: float,
    kept: int,
    max_age: float,
) -> None:
    """The event log's retention trigger, for a write that moved the session's ``event_seq``
    from ``before`` to ``after`` at ``now`` without firing it (``oldest``: the time of its oldest
    stored event, read after the write appended its events, as the trigger's condition reads
    it): the same condition and statements (:func:`schema.event_retention`)."""
    if schema.events_due(kept, max_age, before, after, oldest, now):
        params = {"sid": session_id, "seq": after, "at": now}
        for sql in schema.event_trim(kept, max_age):
            conn.execute(sql, params)


def _unstorable(session_id: str, what: str, why: str) -> lash.SessionError:
    return lash.SessionError(
        f"session {session_id!r}: cannot store the {what}: {why}", session_id=session_id
    )


@attrs.define  # (not frozen: made for each commit)
class _Plan:
    """A commit's writes on top of the head it continues from: the commit statement's row
    (:meth:`row`), or the same writes as plain statements (:meth:`apply`)."""

    session_id: str
    lease: lash.store.Lease
    head: _Head
    new_head: _Head
    replace: bool
    # The node rows: PLAIN_NODE's parameters (session_id, seq, node_ids, kinds, frame_id,
    # turn, JSON texts, node_count)
    nodes: list[tuple[str, int, str, str, str, int, str, int]]
    blobs: list[_Blob]
    states: list[tuple[str, str]]  # plugin, blob hash
    released: list[str]  # blob hashes to drop unless something still refers to them
    encoded: _Encoded
    parent_id: str | None
    release: bool
    retention: tuple[int, float]  # the event log's: (events kept, their max age)

    def row(self) -> tuple[Any, ...]:
        """The commit statement's parameters (:data:`schema.COMMIT_COLUMNS`)."""
        encoded = self.encoded
        return (
            self.session_id,
            *self.head.columns(),
            self.lease.owner,
            self.lease.token,
            *self.new_head.columns(),
            int(self.replace),
            _array([node[1:] for node in self.nodes]),
            _array(self.blobs),
            _array(self.states),
            _array(encoded.usage),
            _array(self.released),
            encoded.claimed,
            encoded.applied,
            *encoded.turn,
            _array(encoded.events),
            self.parent_id,
            encoded.rollup,
            int(self.release),
        )

    @property
    def plain(self) -> bool:
        """Whether :meth:`apply` can make these writes: not a replacing commit, no input to
        queue, no usage rolled up to other sessions (those go through the commit statement)."""
        return not (self.replace or self.encoded.enqueue or self.encoded.rollup)

    def apply(self, conn: sqlite3.Connection) -> sqlite3.Error | None:
        """Make the commit statement's writes with plain statements, on a connection inside a
        write transaction (the inline one: each statement costs no round trip there, and plain
        statements skip the trigger's JSON parsing and its steps for what the commit does not
        carry). Checked like the trigger, in its order: the head and the lease (the head's
        ``UPDATE`` is guarded by them), the claims settled, the commands applied, the turn id.

        Returns None (written), or the error the commit statement would have raised: its
        ``RAISE`` message for a refusal. ``STALE_HEAD`` is found before anything is written
        (the transaction stays open, as after the statement); any other error rolls the
        transaction back, so what the caller then reads to explain it is the stored state.
        ``schema.COMMIT_TRIGGER_STATEMENTS`` is the reference: tests check both write the same
        rows."""
        sid, encoded, new = self.session_id, self.encoded, self.new_head
        now = new.updated_at
        turn_id, index, outcome, reason, result = encoded.turn
        guard = (sid, *self.head.columns(), self.lease.owner, self.lease.token, turn_id)
        found = conn.execute(schema.PLAIN_GUARD, guard).fetchall()
        if not found:
            return sqlite3.IntegrityError(schema.STALE_HEAD)
        try:
            if encoded.claimed is not None:
                claim = (now, encoded.turn[0], sid, encoded.claimed, self.lease.token)
                settled = conn.execute(schema.PLAIN_SETTLE, claim).rowcount
                if settled != len(json.loads(encoded.claimed)):
                    raise sqlite3.IntegrityError(schema.CLAIM_LOST)
            if encoded.applied is not None:
                applied = conn.execute(schema.PLAIN_APPLY, (now, sid, encoded.applied)).rowcount
                if applied != len(json.loads(encoded.applied)):
                    raise sqlite3.IntegrityError(schema.COMMAND_GONE)
            if turn_id is not None:
                # (its usage is the record's: the ledger's rows of a turn)
                usage = _array(encoded.usage)
                record = (sid, turn_id, index, outcome, new.revision, reason, result, now, usage)
                try:
                    conn.execute(schema.PLAIN_RECORD, record)
                except sqlite3.IntegrityError as exc:
                    if not str(exc).startswith("UNIQUE"):
                        raise
                    raise sqlite3.IntegrityError(schema.TURN_EXISTS) from None
                if found[0][1]:
                    conn.execute(schema.PLAIN_CANCELLED, (sid, turn_id))
            if self.nodes:
                conn.executemany(schema.PLAIN_NODE, self.nodes)
            if self.blobs:
                conn.executemany(schema.PLAIN_BLOB, self.blobs)
            if self.states:
                conn.executemany(schema.PLAIN_STATE, [(sid, *s) for s in self.states])
            turn_usage: tuple[Any, ...] = _NO_USAGE
            if encoded.usage:
                if turn_id is None:
                    ledger = [(sid, new.revision, *u, now) for u in encoded.usage]
                    conn.executemany(schema.PLAIN_LEDGER, ledger)
                # The source "turn"'s totals are the head's (added by its UPDATE below).
                others = [(sid, *u) for u in encoded.usage if u[0] != schema.TURN_SOURCE]
                if len(others) != len(encoded.usage):
                    turn_usage = next(u for u in encoded.usage if u[0] == schema.TURN_SOURCE)[1:]
                if others:
                    conn.executemany(schema.PLAIN_TOTALS, others)
            events = encoded.events
            seq = found[0][0]  # the head's event counter, which the head's UPDATE moves
            if events:
                rows = [(sid, seq + i, kind, data, now) for i, (kind, data) in enumerate(events, 1)]
                conn.executemany(schema.APPEND_EVENT, rows)
            head = (
                *new.columns(),
                self.parent_id,
                len(events),
                int(self.release),
                sid,
                *turn_usage,
            )
            same = new.config_hash == self.head.config_hash
            conn.execute(schema.PLAIN_HEAD_SAME_CONFIG if same else schema.PLAIN_HEAD, head)
            # The log's retention (the head's UPDATE does not fire its trigger). The oldest
            # event's time is read only when the head's bound of it does not show it young.
            kept, max_age = self.retention
            bound = new.oldest_event
            if bound is None or bound < now - max_age:
                (oldest,) = conn.execute(schema.OLDEST_EVENT, (sid,)).fetchone() or (None,)
                _trim_events(conn, sid, seq, seq + len(events), oldest, now, kept, max_age)
                bound = now if oldest is None else max(oldest, now - max_age)
                self.new_head = attrs.evolve(new, oldest_event=bound)
            elif schema.events_due(kept, max_age, seq, seq + len(events), None, now):
                _trim_events(conn, sid, seq, seq + len(events), None, now, kept, max_age)
            if self.released:
                conn.executemany(schema.RELEASE_BLOB, [{"h": h} for h in self.released])
        except sqlite3.Error as exc:
            conn.rollback()
            return exc
        return None


def _plan(
    session_id: str,
    lease: lash.store.Lease,
    head: _Head,
    delta: lash.store.CommitDelta,
    encoded: _Encoded,
    now: float,
    retention: tuple[int, float],
) -> tuple[_Plan, _Head]:
    """The writes of ``delta`` on top of ``head``, and the head they leave."""
    turns, next_seq, frame_start = head.turns, head.next_seq, head.frame_start
    last_user, config_hash, status = head.last_user_message, head.config_hash, head.status
    old_states = head.states
    released: set[str] = set()
    replace = delta.replace and head.revision > 0
    if replace:
        released.update(old_states.values())
        if config_hash:
            released.add(config_hash)
        turns = next_seq = frame_start = 0
        last_user, config_hash, status, old_states = None, None, None, {}
    # The node rows (see the ``nodes`` table in ``_sqlite_schema``): consecutive nodes of one
    # frame and turn share a row, started anew by a node that opens a frame; a node whose id
    # or text holds the separator has a row of its own (``row`` None: the next one starts one).
    nodes = []
    row: list[Any] | None = None
    for seq, (node_id, kind, frame_id, turn, text, opens_frame, user_text, outcome) in enumerate(
        encoded.nodes, start=next_seq
    ):
        if opens_frame:
            frame_start = seq
        if user_text is not None:
            last_user = user_text
        if outcome is not None:
            status = outcome
        alone = "\n" in node_id or "\n" in text
        if row is None or opens_frame or alone or row[4] != frame_id or row[5] != turn:
            row = [session_id, seq, [node_id], [kind], frame_id, turn, [text]]
            nodes.append(row)
        else:
            row[2].append(node_id)
            row[3].append(kind)
            row[6].append(text)
        if alone:
            row = None
    packed = [
        (sid, seq, "\n".join(ids), "\n".join(kinds), frame, turn, "\n".join(texts), len(ids))
        for sid, seq, ids, kinds, frame, turn, texts in nodes
    ]
    states = dict(old_states) if encoded.states else old_states  # (never changed in place)
    for plugin, (digest, _) in encoded.states.items():
        old = states.get(plugin)
        if old is not None and old != digest:
            released.add(old)
        states[plugin] = digest
    blobs = list(encoded.states.values())
    if encoded.config is not None:
        if config_hash and config_hash != encoded.config[0]:
            released.add(config_hash)
        config_hash = encoded.config[0]
        blobs.append(encoded.config)
    new_head = _Head(
        revision=head.revision + 1,
        created_at=now if head.revision == 0 else head.created_at,
        updated_at=now,
        turns=turns + delta.turns,
        next_seq=next_seq + len(encoded.nodes),
        frame_start=frame_start,
        last_user_message=last_user,
        config_hash=config_hash,
        status=status,
        states=states,
        oldest_event=head.oldest_event,
    )
    plan = _Plan(
        session_id=session_id,
        lease=lease,
        head=head,
        new_head=new_head,
        replace=replace,
        nodes=packed,
        blobs=blobs,
        states=[(plugin, digest) for plugin, (digest, _) in encoded.states.items()],
        released=sorted(released),
        encoded=encoded,
        parent_id=delta.parent_id,
        release=delta.release,
        retention=retention,
    )
    return plan, new_head


#: A commit without usage of the source "turn": nothing to add to the head's totals of it.
_NO_USAGE = (None, None, None)


def _usage_of(rows: Iterable[Sequence[Any]], turn: Sequence[int | None]) -> dict[str, lash.Usage]:
    """A session's usage by source: its ``usage_totals`` rows (``(source, input, output,
    cached)``, in source order) with its head's totals of the source ``turn`` (``turn``:
    ``schema.TURN_USAGE_COLUMNS``' values, None for none) added."""
    usage = {str(r[0]): lash.Usage(r[1], r[2], r[3]) for r in rows}
    if turn[0] is None:
        return usage
    source, counts = schema.TURN_SOURCE, lash.Usage(*cast("tuple[int, int, int]", turn))
    old = usage.get(source)
    usage[source] = counts if old is None else old + counts
    return usage if old is not None else dict(sorted(usage.items()))


_encode_array = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), check_circular=False
).encode


def _plain_encoder() -> Callable[[dict[str, Any]], str]:
    """``schema.dumps``'s first try (compact, not ASCII-only), for a dict: the C encoder made
    once, where ``json.JSONEncoder.encode`` makes one on each call (a microsecond each)."""
    encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - an interpreter without the C accelerator
        return encoder.encode
    encode_text = json.encoder.encode_basestring

    def encode(data: dict[str, Any]) -> str:
        # A fresh markers dict, as json's own: circular data fails with ValueError.
        chunks = make({}, encoder.default, encode_text, None, ":", ",", False, False, True)
        return "".join(chunks(data, 0))

    return encode


_plain_encode = _plain_encoder()


def _array(items: Sequence[Any]) -> str | None:
    """A JSON array for a trigger (``None`` for none: nothing for SQL to parse)."""
    return _encode_array(items) if items else None


def _total_usage(head: tuple[Any, Any, Any], others: str | None) -> lash.Usage:
    """A listed session's usage: its head's turn totals plus its ``usage_totals`` rows (their
    counts as SQL literals, ``LIST_SESSIONS``' list: an int, or a REAL written in full),
    added here: ints exactly, past 64 bits too."""
    counts = list(head)
    if others is not None:
        for i, value in enumerate(others.split(" ")):
            counts[i % 3] += float(value) if "." in value or "e" in value else int(value)
    return lash.Usage(*counts)


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


def _dumps(session_id: str, what: str, data: Any, *, canonical: bool = False) -> str:
    try:
        return schema.dumps(data, canonical=canonical)
    except (TypeError, ValueError) as exc:
        raise lash.SessionError(
            f"session {session_id!r}: cannot store its {what}: {exc}; stored values must be "
            "JSON data (dicts with str keys, lists, str, int, float, bool, None)",
            session_id=session_id,
        ) from None


def _json_copy(session_id: str, what: str, data: Any) -> Any:
    """``data`` as it reads back from the database (tuples become lists...)."""
    return json.loads(_dumps(session_id, what, data))


def _canonical(session_id: str, what: str, data: Any) -> tuple[str, str]:
    """``(sha256, canonical JSON)`` of ``data``: equal data gets one blob."""
    text = _dumps(session_id, what, data, canonical=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest(), text


def _maybe_text(value: str | None) -> str | bytes | None:
    return None if value is None else stored_text(value)


def _node_row(session_id: str, node: lash.GraphNode) -> _NodeRow:
    # The node's body: its fields' values in a JSON array (node_row_json), without what the
    # row's columns hold (id, frame_id, turn, and the "type" tag: the `kind` column), which
    # the load puts back; for a value its generated writer does not know, the body by keys
    # (node_body_json). A row of an older file holds a body by keys or the whole form: it still
    # loads. Key order is kept in free-form values: tool-call arguments go back to the
    # provider as they came.
    refused: Exception | None = None
    try:
        text: str | None = lash.store.node_row_json(node)
    except (TypeError, ValueError) as exc:
        # Not JSON data (the general path below says what is wrong, and where), or a value
        # that would not read back as the node (said after it).
        text, refused = None, exc
    if text is None or not _utf8(text):
        data = lash.to_data(node, lash.GraphNode)
        for key in _COLUMNS:
            del data[key]
        text = _dumps(session_id, f"node {node.id!r}", data)
        if refused is not None:
            raise _unstorable(session_id, f"node {node.id!r}", str(refused))
    kind = _KINDS.get(type(node))
    if kind is None:
        kind = _KINDS[type(node)] = str(lash.to_data(node, lash.GraphNode)["type"])
    user_text = _summary_text(node.text) if isinstance(node, lash.UserMessage) else None
    opens_frame = isinstance(node, lash.FrameBoundary)
    # How a turn ended, for the listing's status.
    outcome = str(node.outcome) if isinstance(node, lash.TurnOutcome) else None
    return node.id, kind, node.frame_id, node.turn, text, opens_frame, user_text, outcome


#: The tag (the ``kind`` column) of each node class, learnt from ``to_data`` on first sight.
_KINDS: dict[type, str] = {}

#: The keys of a node's stored form a row keeps in columns (``type`` in ``kind``), not in
#: its ``data``.
_COLUMNS = ("id", "frame_id", "turn", "type")


def _utf8(text: str) -> bool:
    """Whether ``text`` can be stored as UTF-8 text (lone surrogates cannot)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _summary_text(text: str) -> str:
    """``text`` as the listing's last user message: lone surrogates, which SQLite text cannot
    hold, become U+FFFD there (the node itself keeps them, JSON-escaped)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in text)
    return text


def _nodes(session_id: str, rows: list[Any]) -> lash.store.StoredNodes:
    """Decode stored node rows (``schema.NODE_ROW``), all in one pass (resume cost), each node
    built when read; a bad row names the session."""
    what = f"stored node of {session_id!r}"
    return lash.store.nodes_on_demand(schema.unpack_nodes(rows, what), what=what)


def _release_blobs(hashes: Iterable[str]) -> _Step:
    """The step that drops those of ``hashes`` nothing refers to any more."""
    return ("many", schema.RELEASE_BLOB, [{"h": digest} for digest in sorted(hashes)])


# -- process rows ----------------------------------------------------------------------------


def _process_params(record: lash.ProcessRecord) -> dict[str, Any]:
    """The named parameters of :data:`schema.INSERT_PROCESS` and :data:`schema.UPDATE_PROCESS`
    for ``record``: JSON for its data, text a column holds exactly.

    :raises lash.SessionError: for a payload, result or progress that is not JSON data.
    """
    params: dict[str, Any] = {}
    for column in schema.PROCESS_COLUMNS:
        value = getattr(record, column)
        if column in schema.PROCESS_JSON:
            if value is not None or column == "payload":
                what = f"{column} of process {record.id!r}"
                value = _dumps(record.session_id or "-", what, lash.to_data(value))
        elif isinstance(value, bool):
            value = int(value)
        elif isinstance(value, str):
            value = stored_text(value)
        params[column] = value
    return params


def _work_poll(
    claimed: lash.ProcessRecord | None,
    rows: Sequence[list[Any]],
    sessions: bool,
    unnotified: bool,
) -> lash.store.WorkPoll:
    """The rows of :meth:`SQLiteStore.poll_work`'s lookups (runnable sessions first, when asked
    for; then unnotified processes, when asked for) as a :class:`lash.store.WorkPoll`."""
    found = iter(rows)
    return lash.store.WorkPoll(
        process=claimed,
        sessions=tuple(str(read_text(row[0])) for row in next(found)) if sessions else (),
        unnotified=tuple(_process(row) for row in next(found)) if unnotified else (),
    )


def _process(row: Sequence[Any]) -> lash.ProcessRecord:
    """A process read with :data:`schema.PROCESS_BY_ID` and the like (``seq`` first)."""
    fields: dict[str, Any] = {}
    for column, value in zip(schema.PROCESS_COLUMNS, row[1:], strict=True):
        if column in schema.PROCESS_JSON:
            value = None if value is None else json.loads(value)
        elif isinstance(value, bytes):
            value = read_text(value)
        fields[column] = value
    fields["notified"] = bool(fields["notified"])
    return lash.ProcessRecord(**fields)


def _process_steps(
    record: lash.ProcessRecord, event: str | None, now: float, *, insert: bool = False
) -> list[_Step]:
    """The statements that write ``record`` (``insert``: a new row, logged as
    ``process_started``; otherwise over its row) and log ``event`` in its session."""
    params = _process_params(record)
    steps: list[_Step] = [
        ("run", schema.INSERT_PROCESS if insert else schema.UPDATE_PROCESS, params)
    ]
    if insert:
        event = "process_started"
    return steps + _event_steps(record, event, now)


def _event_steps(record: lash.ProcessRecord, event: str | None, now: float) -> list[_Step]:
    """The statements that log ``event`` for ``record`` in its session (none without one)."""
    steps: list[_Step] = []
    if event is not None and record.session_id is not None:
        logged = lash.store.process_event(event, record)
        entry = {
            "sid": stored_text(record.session_id),
            "type": event,
            "data": _dumps(record.session_id, f"data of event {event!r}", dict(logged.data)),
            "at": now,
        }
        steps += [("run", sql, entry) for sql in schema.LOG_EVENT]
    return steps


def _keyed_starts(
    drafts: Sequence[lash.store.ProcessDraft], keyed: Sequence[Sequence[Any]], now: float
) -> list[lash.ProcessRecord]:
    """The records ``drafts`` start, given the processes already under their keys (rows): a
    key used with the same kind, session and payload starts nothing.

    :raises lash.InputConflict: a key was used with other content.
    """
    existing = {record.key: record for record in map(_process, keyed)}
    started = []
    for draft in drafts:
        found = None if draft.key is None else existing.get(draft.key)
        if found is not None:
            if not lash.store.same_process(found, draft):
                raise lash.InputConflict(
                    draft.session_id or "-", draft.key or "", found.id, "process"
                )
            continue
        record = lash.store.new_process(draft, now)
        started.append(record)
        if draft.key is not None:
            existing[draft.key] = record
    return started


def _claimed_process(process_id: str, token: int, rows: Sequence[Any]) -> lash.ProcessRecord:
    """The process in ``rows`` while ``token`` is its claim (:func:`lash.store.check_claim`)."""
    return lash.store.check_claim(process_id, token, _process(rows[0]) if rows else None)


def _process_id_taken(draft: lash.store.ProcessDraft) -> lash.SessionError:
    return lash.SessionError(f"process id {draft.id!r} is taken", session_id=draft.session_id)


# -- the mailbox's rows ----------------------------------------------------------------------


def _new_input(
    session_id: str, draft: lash.store.InputDraft, now: float
) -> lash.store.PendingInput:
    """The input ``draft`` queues (its ``seq`` is the database's to give), checked storable."""
    items = (
        tuple(_json_copy(session_id, "items of the input", list(draft.items)))
        if draft.items
        else ()
    )
    return lash.store.PendingInput(
        id=schema.new_input_id(),
        session_id=session_id,
        seq=0,
        text=draft.text,
        items=items,
        key=draft.key,
        ingress=draft.ingress,
        source=draft.source,
        created_at=now,
    )


def _input_request(pending: lash.store.PendingInput) -> tuple[Any, ...]:
    """The ``input_requests`` row that queues ``pending`` (:data:`schema.INPUT_COLUMNS`)."""
    event = lash.store.input_event("input_queued", pending)
    return (
        pending.session_id,
        pending.id,
        _maybe_text(pending.key),
        stored_text(pending.text),
        schema.dumps(list(pending.items)) if pending.items else None,
        pending.ingress,
        _maybe_text(pending.source),
        pending.created_at,
        schema.dumps(event.data),
    )


def _input(session_id: str, row: Sequence[Any]) -> lash.store.PendingInput:
    """An input read with :data:`schema.INPUT_FIELDS`."""
    input_id, seq, text, items, key, ingress, source, state, created_at, settled_at, turn = row
    return lash.store.PendingInput(
        id=input_id,
        session_id=session_id,
        seq=seq,
        text=str(read_text(text)),
        items=() if items is None else tuple(json.loads(items)),
        key=read_text(key),
        ingress=ingress,
        source=read_text(source),
        state=state,
        created_at=created_at,
        settled_at=settled_at,
        turn_id=read_text(turn),
    )


def _cancellations(
    chosen: Sequence[tuple[str, lash.store.PendingInput | None]], now: float
) -> tuple[list[lash.store.InputCancellation], list[lash.store.PendingInput]]:
    """The outcome of cancelling each ``(target, input)`` in order (a target named twice is
    ``already_cancelled`` the second time), and the inputs cancelled."""
    current: dict[str, lash.store.PendingInput] = {}
    outcomes: list[lash.store.InputCancellation] = []
    cancelled: list[lash.store.PendingInput] = []
    for target, found in chosen:
        if found is None:
            outcomes.append(lash.store.InputCancellation(target, "unknown"))
            continue
        item = current.get(found.id, found)
        if item.state == "pending":
            item = attrs.evolve(item, state="cancelled", settled_at=now)
            current[item.id] = item
            cancelled.append(item)
            outcomes.append(lash.store.InputCancellation(target, "cancelled", item))
        else:
            outcome: lash.store.CancelOutcome = {  # type: ignore[assignment]
                "claimed": "already_claimed",
                "completed": "already_completed",
                "cancelled": "already_cancelled",
            }[item.state]
            outcomes.append(lash.store.InputCancellation(target, outcome, item))
    return outcomes, cancelled


def _input_update(
    session_id: str,
    inputs: Sequence[lash.store.PendingInput],
    state: str,
    token: int | None,
    events: Sequence[lash.store.EventDraft],
    now: float,
) -> tuple[Any, ...]:
    """The ``input_updates`` row that sets ``inputs`` to ``state`` and logs ``events``."""
    return (
        session_id,
        _encode_array([i.id for i in inputs]),
        state,
        token,
        now,
        _events(session_id, events),
    )


def _command(session_id: str, row: Sequence[Any]) -> lash.store.QueuedCommand:
    command_id, seq, name, key, args, source, state, created_at, applied_at = row
    return lash.store.QueuedCommand(
        id=command_id,
        session_id=session_id,
        seq=seq,
        name=str(read_text(name)),
        key=str(read_text(key)),
        args=json.loads(args),
        source=read_text(source),
        state=state,
        created_at=created_at,
        applied_at=applied_at,
    )


def _turn_record(
    session_id: str, turn_id: str, row: Sequence[Any] | None
) -> lash.store.TurnRecord | None:
    if row is None:
        return None
    index, outcome, revision, reason, result, committed_at = row
    return lash.store.TurnRecord(
        session_id=session_id,
        turn_id=turn_id,
        index=index,
        outcome=outcome,
        revision=revision,
        reason=read_text(reason),
        result=json.loads(result),
        committed_at=committed_at,
    )
