"""``postgresql://``: sessions in a Postgres database, shared by every process that uses it.

URL (libpq's form; ``postgres://`` is accepted too)::

    postgresql://USER:PASSWORD@HOST:PORT/DATABASE?pool_size=10

Several hosts, ``HOST:PORT,HOST:PORT`` (a primary and its standbys; in a ``host=`` parameter, or
in ``PGHOST`` for a URL without a host, too), are tried in order, as libpq does; lash connects
to the first that takes writes: without a ``target_session_attrs`` in the URL (or
``PGTARGETSESSIONATTRS`` in the environment), it asks for ``read-write``, where libpq and
asyncpg would take the first host that answers (``any``), a standby after a failover, on which
every write fails. Set it to choose otherwise (``primary``...).

Query parameters lash reads itself:

``pool_size`` (default 10)
    the most connections this store's pool opens at once (its asyncpg pool's size; while
    :meth:`PostgresStore.wait_events` waits, one more connection listens for notifications);
``pool_min`` (default 1)
    connections kept open while idle;
``connect_timeout`` (seconds, default 10)
    how long to wait for the server when connecting;
``statement_timeout`` (milliseconds, default 30000; 0: none)
    Postgres's ``statement_timeout`` on the store's connections;
``events_kept`` (default 10000) and ``events_max_age`` (seconds, default 604800: 7 days)
    each session's replay window: every write that logs events keeps the session's newest
    ``events_kept`` events younger than ``events_max_age`` and drops the rest;
``notify`` (``on``/``off``, default ``on``)
    whether writes that log events into a session someone waits on send ``NOTIFY
    lash_events`` (with the session id) and :meth:`PostgresStore.wait_events` listens for it
    (registering its listener as the session's watcher); set it alike on every host;
``durable_leases`` (``on``/``off``, default ``off``)
    whether taking, renewing and releasing a lease and claiming input wait for their own WAL
    flush (see "Durability").

Any other parameter goes to asyncpg: libpq's (``sslmode=require``, ``sslrootcert=...``,
``password=...``) or a server setting (``search_path=lash`` keeps lash's tables in a schema of
their own; ``application_name`` defaults to ``lash``).

**Secrets.** The password (in the URL's user part, or ``password=``) is used to connect and
nowhere else: :attr:`PostgresStore.url`, ``repr`` and every error show the URL with it masked
(``***``), and nothing the store writes contains it.

**Schema.** Opening the store (on first use, or :meth:`PostgresStore.open`) applies the
forward migrations the database lacks, in one transaction under an advisory lock, so that
processes starting at once do not race; a database migrated by a newer lash is refused, with
the version to upgrade to (``_postgres_schema``).

**Cost.** Every operation is one statement, so one round trip and one transaction: a commit
calls the plpgsql function ``lash_commit``, which checks the lease and the head revision by
updating the head row (compare-and-swap; the row lock makes concurrent writers of a session
wait for each other) and writes the delta's rows with ``unnest`` of arrays, settles the input
and commands it consumed, stores the turn record, logs its events and releases the lease. A
commit's work is its delta's rows and the head row, never the history. Leases use the
database's clock. Process records are the exception: starting, claiming, heartbeating and
finishing one is a short transaction of a few statements, the process's row locked first (a
claim with ``FOR UPDATE SKIP LOCKED``, so claims never wait for each other nor take the same
process); a commit that starts processes runs ``lash_commit`` and their inserts in one
transaction; a delete locks the session's processes, then calls its function (the lock order
of ``_postgres_schema.LOCK_HEAD``).

**Durability.** A commit, queued input or command, a cancellation and a deletion are durable
when the call returns (the transaction waited for its WAL flush). Taking, renewing and
releasing a lease and claiming input are not, unless ``durable_leases=on``: their transactions
commit with ``synchronous_commit=off``, so an execution (take the lease, maybe claim input,
commit) waits for one WAL flush, not two or three. This is safe for what they protect: the
commit that ends the execution is durable, and its flush makes everything logged before it
durable too; should the database server crash before that, the lease (or claim) is lost with
it, and the commit that would follow is refused by its fencing token (``LeaseLost``), leaving
the input pending. What observers may notice: events logged by those calls (``turn_started``,
``input_claimed``) are visible at once, and a server crash within a fraction of a second
after them can undo them, so that their sequence numbers are given to later events.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import reprlib
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any, NoReturn, TypeAlias

import asyncpg
import asyncpg.pool
import attrs

import lash
import lash.store
from lash.store import check_lease, check_session_id
from lash_plugins_builtin import _postgres_schema as schema
from lash_plugins_builtin._postgres_url import PostgresSettings, parse_url

__all__ = ["PostgresSettings", "PostgresStore", "parse_url"]

log = logging.getLogger("lash")

_INT64 = range(-(2**63), 2**63)

#: Seconds a connection kept between operations may go unused before it goes back to the
#: pool (beyond ``pool_min`` of them), which closes it when it stays unused.
KEPT_IDLE = 60.0

#: Seconds a session stays watched (its ``lash_watchers`` row kept) after its last waiter
#: left: an observer waits again after each read, and each registration is a write.
WATCH_LINGER = 60.0

#: Long values shown cut short in messages.
_REPR = reprlib.Repr()
_REPR.maxstring = 80

#: A connection of the store's pool, as asyncpg hands it out.
Connection: TypeAlias = "asyncpg.pool.PoolConnectionProxy[asyncpg.Record]"


class _Refused(Exception):
    """One of lash's functions refused a write (an ``LS`` SQLSTATE): the transaction was rolled
    back. ``detail`` and ``hint`` say what the function found."""

    def __init__(self, sqlstate: str, detail: str | None, hint: str | None) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate
        self.detail = detail or ""
        self.hint = hint or ""


class PostgresStore:
    """``postgresql://``: sessions in a Postgres database, through an asyncpg connection pool.

    Keyword arguments override the URL's parameters of the same name. The pool is opened (and
    the database migrated forward) on first use, or by :meth:`open`.
    """

    def __init__(
        self,
        url: str = "postgresql://localhost/lash",
        *,
        pool_size: int | None = None,
        pool_min: int | None = None,
        connect_timeout: float | None = None,
        statement_timeout: int | None = None,
        events_kept: int | None = None,
        events_max_age: float | None = None,
        notify: bool | None = None,
        durable_leases: bool | None = None,
    ) -> None:
        settings = parse_url(url)
        overrides: dict[str, Any] = {
            key: value
            for key, value in (
                ("pool_size", pool_size),
                ("pool_min", pool_min),
                ("connect_timeout", connect_timeout),
                ("statement_timeout", statement_timeout),
                ("events_kept", events_kept),
                ("events_max_age", events_max_age),
                ("notify", notify),
                ("durable_leases", durable_leases),
            )
            if value is not None
        }
        if overrides:
            settings = attrs.evolve(settings, **overrides)
        if not 0 <= settings.pool_min <= settings.pool_size or settings.pool_size < 1:
            raise lash.ConfigError(
                f"{settings.url}: pool_min={settings.pool_min} and pool_size="
                f"{settings.pool_size}: need 0 <= pool_min <= pool_size and pool_size >= 1"
            )
        if settings.events_kept < 1 or not settings.events_max_age > 0:
            raise lash.ConfigError(
                f"{settings.url}: events_kept={settings.events_kept} and events_max_age="
                f"{settings.events_max_age}: both must be positive"
            )
        self.settings = settings
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()
        # Connections of the pool kept checked out between operations (see _take), with
        # when each was last used (the least recently used first); how many operations wait
        # for the pool to hand one out; the timer that hands unused ones back, and the
        # releases it started.
        self._idle: list[tuple[Connection, float]] = []
        self._queued = 0
        self._trimming: asyncio.TimerHandle | None = None
        self._releasing: set[asyncio.Future[None]] = set()
        # wait_events: one connection that LISTENs, and the futures of the callers waiting,
        # by session id.
        self._listener: asyncpg.Connection | None = None
        self._listening = asyncio.Lock()
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}
        # The sessions the listener is registered as watching (lash_watch), with when that
        # was done or their last waiter left; when they were last looked through.
        self._watched: dict[str, float] = {}
        self._watching = asyncio.Lock()
        self._swept = time.monotonic()
        s = settings
        #: What every logging function takes last: the replay window and whether to notify.
        self._window = (s.events_kept, s.events_max_age, s.notify)

    @property
    def url(self) -> str:
        """The store's URL with its password masked."""
        return self.settings.url

    def __repr__(self) -> str:
        return f"<PostgresStore {self.url!r}>"

    # -- connections -----------------------------------------------------------------------

    async def open(self) -> None:
        """Connect and bring the schema forward now instead of on first use.

        :raises lash.ConfigError: when the server cannot be reached, refuses the user, has no
            such database, or holds a database of a newer lash (the message says which and
            what to do; the password is masked).
        """
        await self._ready()

    async def close(self) -> None:
        """Close the pool's connections and the listening one (the next call opens a new
        pool); callers of :meth:`wait_events` return at once."""
        async with self._listening:
            listener, self._listener = self._listener, None
            watched, self._watched = list(self._watched), {}
            if listener is not None:
                listener.remove_termination_listener(self._listener_lost)
                if watched:  # what a watcher leaves behind only costs notifications
                    with contextlib.suppress(Exception):
                        await self._fetch(
                            "forgetting the watched sessions",
                            schema.UNWATCH,
                            listener.get_server_pid(),
                            watched,
                        )
                with contextlib.suppress(Exception):
                    await listener.close(timeout=5)
        self._wake_all()
        async with self._opening:
            pool, self._pool = self._pool, None
            idle, self._idle = self._idle, []
            if self._trimming is not None:
                self._trimming.cancel()
                self._trimming = None
            if pool is not None:
                for conn, _ in idle:
                    await pool.release(conn)
                await pool.close()

    async def _ready(self) -> asyncpg.Pool:
        pool = self._pool
        if pool is not None:
            return pool
        async with self._opening:
            if self._pool is None:
                self._pool = await self._open()
            return self._pool

    async def _open(self) -> asyncpg.Pool:
        s = self.settings
        try:
            pool = await asyncpg.create_pool(
                s.dsn,
                min_size=s.pool_min,
                max_size=s.pool_size,
                timeout=s.connect_timeout,
                server_settings={"statement_timeout": str(s.statement_timeout)},
                # No reset query when a connection goes back to the pool: the store leaves no
                # session state behind (no SET, no LISTEN on pooled connections, only
                # transaction-scoped locks and settings), and the default reset would cost
                # every operation a second round trip.
                reset=_no_reset,
            )
        except Exception as exc:
            raise self._cannot_connect(exc) from None
        try:
            async with pool.acquire() as conn:
                await schema.migrate(conn, self.url)
        except BaseException as exc:
            await pool.close()
            if isinstance(exc, lash.LashError) or not isinstance(exc, Exception):
                raise
            raise self._cannot_connect(exc) from None
        return pool

    def _cannot_connect(self, exc: BaseException) -> lash.ConfigError:
        """The error for a store that cannot be opened: what the server (or the network)
        said, and what to do; the password masked, and no exception chained (asyncpg's
        messages are not ours to vouch for)."""
        s = self.settings
        if isinstance(exc, asyncpg.InvalidPasswordError):
            hint = "check the user and password in the store URL"
        elif isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError):
            hint = "check the user in the store URL (and the server's pg_hba.conf)"
        elif isinstance(exc, asyncpg.InvalidCatalogNameError):
            hint = "create the database (createdb NAME) or fix its name in the store URL"
        elif isinstance(exc, asyncpg.InsufficientPrivilegeError):
            hint = (
                "the user may not create lash's tables: grant it CREATE on the schema "
                "(GRANT CREATE ON SCHEMA public TO USER), or point it at a schema it owns "
                "with ?search_path=NAME"
            )
        elif isinstance(exc, asyncpg.ReadOnlySQLTransactionError):
            hint = (
                "the server takes no writes (a standby?): list the primary's host in the store "
                "URL, or several hosts with target_session_attrs=read-write"
            )
        elif isinstance(exc, TimeoutError):
            hint = (
                f"no answer within connect_timeout={s.connect_timeout:g} s: is the server up "
                "and reachable from here?"
            )
        elif isinstance(exc, OSError):
            hint = f"is a Postgres server running and accepting connections at {s.target}?"
        else:
            hint = "check the store URL and the server"
        return lash.ConfigError(
            f"cannot open the Postgres store {s.url}: {s.scrub(_describe(exc))}; {hint}"
        )

    async def _take(self) -> tuple[asyncpg.Pool, Connection]:
        """A connection for one operation, and the pool it belongs to.

        Checking a connection out of an asyncpg pool and back in costs about as much as a
        round trip on loopback (a task, a timer and a reset per operation), so a connection
        an operation returns in a clean state (no transaction open, not closed) is kept
        here and taken by the next operation without asking the pool; kept connections go
        back to the pool when an operation waits for one (so ``pool_size`` still bounds the
        connections, and none waits while another sits unused), when they went unused for
        :data:`KEPT_IDLE` seconds (the pool then keeps ``pool_min`` of them and recycles the
        rest as it does any idle connection: a connection kept here forever would outlive a
        load balancer's idle timeout unseen), or when the store closes.
        """
        pool = await self._ready()
        idle = self._idle
        while idle:
            conn, _ = idle.pop()
            if not conn.is_closed():
                return pool, conn
            await pool.release(conn)  # the pool makes a new one in its place
        # No suspension between the look at _idle and here: a connection is kept (_give)
        # only while no operation waits in the pool, and one that waits is counted.
        self._queued += 1
        try:
            return pool, await pool.acquire()
        finally:
            self._queued -= 1

    async def _give(self, pool: asyncpg.Pool, conn: Connection, clean: bool) -> None:
        """Hand a connection back after an operation: kept for the next one when ``clean``
        (it ended without an error) and nothing waits for the pool, else back to the pool,
        which resets it (rolls back what an error left open)."""
        if (
            clean
            and not self._queued
            and pool is self._pool
            and not conn.is_closed()
            and not conn.is_in_transaction()
        ):
            self._idle.append((conn, time.monotonic()))
            if self._trimming is None:
                loop = asyncio.get_running_loop()
                self._trimming = loop.call_later(KEPT_IDLE, self._trim)
        else:
            await pool.release(conn)

    def _trim(self) -> None:
        """Hand back to the pool the kept connections that went unused for :data:`KEPT_IDLE`
        seconds (the pool keeps ``pool_min`` open and closes one that stays unused)."""
        self._trimming = None
        pool, idle = self._pool, self._idle
        if pool is None:
            return
        now = time.monotonic()
        while idle and now - idle[0][1] >= KEPT_IDLE:
            conn, _ = idle.pop(0)
            release = asyncio.ensure_future(pool.release(conn))
            self._releasing.add(release)
            release.add_done_callback(self._releasing.discard)
        if idle:
            loop = asyncio.get_running_loop()
            self._trimming = loop.call_later(KEPT_IDLE - (now - idle[0][1]), self._trim)

    def _failure(self, action: str, exc: BaseException) -> BaseException | None:
        """What an operation that raised ``exc`` raises instead: a :class:`lash.LashError`
        naming the store and the operation for what Postgres or the network did to it (a
        refusal by one of lash's functions is a :class:`_Refused`, for the caller to name);
        ``None``: ``exc`` itself."""
        if isinstance(exc, asyncpg.PostgresError):
            sqlstate = getattr(exc, "sqlstate", None) or ""
            if sqlstate.startswith("LS"):
                return _Refused(sqlstate, exc.detail, exc.hint)
            return lash.LashError(
                f"Postgres store {self.url}: {action} failed: {self.settings.scrub(_describe(exc))}"
            )
        # InternalClientError: what asyncpg raises on a connection whose server ended it
        # while it sat idle (it has not read the server's goodbye yet).
        if isinstance(exc, (OSError, asyncpg.InterfaceError, asyncpg.InternalClientError)):
            return lash.LashError(
                f"Postgres store {self.url}: {action}: the connection to the server failed "
                f"({self.settings.scrub(_describe(exc))}); if this was a write, it may or may "
                "not have been applied: read the session to see"
            )
        return None

    def _raise(self, action: str, exc: BaseException) -> NoReturn:
        failure = self._failure(action, exc)
        if failure is None:
            raise exc
        # Refusals are lash's own errors (nothing to chain); what asyncpg raised is kept.
        raise failure from (None if isinstance(failure, _Refused) else exc)

    @contextlib.asynccontextmanager
    async def _connection(self, action: str) -> AsyncIterator[Connection]:
        """A connection for one operation (a transaction of a few statements); what
        Postgres or the network does to it is a :class:`lash.LashError` naming the store and
        the operation (see :meth:`_failure`)."""
        try:
            pool, conn = await self._take()
        except Exception as exc:
            self._raise(action, exc)
        try:
            yield conn
        except BaseException as exc:
            await self._give(pool, conn, False)
            self._raise(action, exc)
        await self._give(pool, conn, True)

    async def _fetch(self, action: str, statement: str, *args: Any) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self._statement(action, False, statement, args)
        return rows

    async def _fetchrow(self, action: str, statement: str, *args: Any) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self._statement(action, True, statement, args)
        return row

    async def _statement(
        self, action: str, one: bool, statement: str, args: tuple[Any, ...]
    ) -> Any:
        """Run one statement (its first row when ``one``, else its rows): what
        :meth:`_connection` does, without a generator, for the operations that are one
        statement (most of them)."""
        try:
            pool, conn = await self._take()
        except Exception as exc:
            self._raise(action, exc)
        try:
            result = await (conn.fetchrow if one else conn.fetch)(statement, *args)
        except BaseException as exc:
            await self._give(pool, conn, False)
            self._raise(action, exc)
        await self._give(pool, conn, True)
        return result

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
        _text(session_id, "lease owner", owner)
        dead = take_over if take_over is not None and take_over.session_id == session_id else None
        types, datas = _events(session_id, events)
        row = await self._fetchrow(
            f"taking the lease of session {session_id!r}",
            schema.ACQUIRE_LEASE,
            session_id,
            owner,
            float(ttl),
            None if dead is None else dead.owner,
            None if dead is None else _int64(session_id, "fencing token", dead.token),
            None if turn is None else _key(session_id, "turn id", turn),
            types,
            datas,
            *self._window,
            self.settings.durable_leases,
        )
        assert row is not None  # the function returns the lease it granted or refused
        granted, holder, token, expires_at, revision, inputs, commands = row
        if not granted:
            raise lash.SessionBusy(session_id, owner=holder, expires_at=expires_at, token=token)
        return lash.store.Lease(session_id, owner, token, expires_at, revision, inputs, commands)

    async def renew_lease(self, lease: lash.store.Lease, *, ttl: float) -> lash.store.Lease:
        sid = lease.session_id
        row = await self._fetchrow(
            f"renewing the lease of session {sid!r}",
            schema.RENEW_LEASE,
            sid,
            lease.owner,
            lease.token,
            float(ttl),
            self.settings.durable_leases,
        )
        if row is not None and row["renewed"]:
            _, _, token, expires_at, revision, inputs, commands = row
            return lash.store.Lease(sid, lease.owner, token, expires_at, revision, inputs, commands)
        check_lease(_lease_of(sid, row), lease)
        raise lash.LeaseLost(sid, "the lease changed while it was being renewed")

    async def release_lease(self, lease: lash.store.Lease) -> None:
        sid = lease.session_id
        await self._fetch(
            f"releasing the lease of session {sid!r}",
            schema.RELEASE_LEASE,
            sid,
            lease.owner,
            lease.token,
            self.settings.durable_leases,
        )

    # -- sessions --------------------------------------------------------------------------

    async def load(self, session_id: str, *, full: bool = False) -> lash.store.SessionRecord | None:
        check_session_id(session_id)
        row = await self._fetchrow(f"loading session {session_id!r}", schema.LOAD, session_id, full)
        if row is None or row[0] == 0:
            return None
        revision, created_at, updated_at, turns, config, event_seq, parent = row[:7]
        incarnation, parent_incarnation, nodes, plugins, states, sources, usage = row[7:]
        return lash.store.SessionRecord(
            session_id=session_id,
            revision=revision,
            created_at=created_at,
            updated_at=updated_at,
            nodes=_nodes(session_id, nodes),
            config=(
                lash.SessionConfig()
                if config is None
                else lash.from_data(
                    _loads("stored session config", config),
                    lash.SessionConfig,
                    what="stored session config",
                )
            ),
            plugin_states={
                plugin: _loads(f"stored state of plugin {plugin!r}", data)
                for plugin, data in zip(plugins, states, strict=True)
            },
            usage={
                source: lash.Usage(*tokens) for source, tokens in zip(sources, usage, strict=True)
            },
            turns=turns,
            event_seq=event_seq,
            parent_id=parent,
            incarnation=incarnation,
            parent_incarnation=parent_incarnation,
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
        # Encoded (and checked) before the database is asked anything: a value that cannot be
        # stored fails here, with nothing written.
        args = _commit_args(session_id, delta)
        if lease.session_id != session_id:
            raise lash.LeaseLost(
                session_id, f"the lease presented is for session {lease.session_id!r}"
            )
        action = f"commit to session {session_id!r}"
        # A refused commit is re-read in the same call; should the head have changed between
        # the guard and that read into one this commit fits (a released lease taken back by
        # its owner), it is tried again.
        commit_args = _no_empty_arrays(
            (
                session_id,
                _text(session_id, "lease owner", lease.owner),
                _int64(session_id, "fencing token", lease.token),
                _int64(session_id, "expected revision", expected_revision),
                *args,
                delta.release,
                *self._window,
                *_rollup_args(session_id, delta),
            )
        )
        for draft in delta.processes:  # checked storable before the database is asked
            _process_args(lash.store.new_process(draft, 0.0))
        for _ in range(3):
            try:
                if delta.processes:
                    row = await self._commit_starting(action, commit_args, delta.processes)
                else:
                    row = await self._fetchrow(action, schema.COMMIT, *commit_args)
            except _Refused as refused:
                raise _commit_refused(session_id, expected_revision, refused) from None
            if row is not None and row["committed"]:
                revision: int = row["head_revision"]
                return revision
            check_lease(_lease_of(session_id, row), lease)
            assert row is not None  # a current lease lives in the head row
            if row["head_revision"] != expected_revision:
                raise lash.RevisionConflict(
                    session_id, expected=expected_revision, actual=row["head_revision"]
                )
        raise lash.LeaseLost(session_id, "the session's head kept changing under the commit")

    async def _commit_starting(
        self,
        action: str,
        commit_args: tuple[Any, ...],
        drafts: Sequence[lash.store.ProcessDraft],
    ) -> asyncpg.Record | None:
        """``lash_commit`` and the processes the commit starts, in one transaction: a commit
        its guard refused starts nothing, and a process key taken by other content refuses the
        commit (rolled back whole)."""
        async with self._connection(action) as conn, conn.transaction():
            row = await conn.fetchrow(schema.COMMIT, *commit_args)
            if row is not None and row["committed"]:
                await self._start_processes(conn, drafts)
            return row

    async def delete(self, session_id: str) -> None:
        check_session_id(session_id)
        action = f"deleting session {session_id!r}"
        async with self._connection(action) as conn, conn.transaction():
            # The session's processes before its head row (see schema.LOCK_HEAD): the function
            # deletes them under the head row's lock, and a worker finishing one holds its row
            # while it logs in the session.
            await conn.execute(schema.LOCK_SESSION_PROCESSES, session_id)
            row = await conn.fetchrow(schema.DELETE_SESSION, session_id)
        assert row is not None
        outcome, holder, token, expires_at = row
        if outcome == "unknown":
            raise lash.UnknownSession(session_id)
        if outcome == "busy":
            raise lash.SessionBusy(session_id, owner=holder, expires_at=expires_at, token=token)

    async def list_sessions(self) -> list[lash.store.SessionSummary]:
        rows = await self._fetch("listing sessions", schema.LIST_SESSIONS)
        return [
            lash.store.SessionSummary(
                session_id=sid,
                created_at=created_at,
                updated_at=updated_at,
                turns=turns,
                revision=revision,
                last_user_message=(
                    None if last_user is None else _loads("stored last user message", last_user)
                ),
                usage=lash.Usage(inp, out, cached),
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
                status,
                pending,
                parent,
            ) in rows
        ]

    # -- the mailbox -----------------------------------------------------------------------

    async def enqueue_input(
        self, session_id: str, draft: lash.store.InputDraft
    ) -> lash.store.PendingInput:
        check_session_id(session_id)
        key = None if draft.key is None else _key(session_id, "input key", draft.key)
        text = _dumps(session_id, "input text", draft.text)
        items = _dumps(session_id, "input items", list(draft.items))
        row = await self._enqueue(
            f"queueing input for session {session_id!r}",
            schema.ENQUEUE_INPUT,
            session_id,
            _input_id(),
            key,
            text,
            items,
            _text(session_id, "input ingress", draft.ingress),
            None if draft.source is None else _text(session_id, "input source", draft.source),
            *self._window,
        )
        pending = _input(session_id, row[1:])
        if not row[0]:
            same = (pending.text, pending.items, pending.ingress) == (
                draft.text,
                tuple(_loads("input items", items)),
                draft.ingress,
            )
            if not same:
                raise lash.InputConflict(session_id, draft.key or "", pending.id)
        return pending

    async def _enqueue(self, action: str, statement: str, *args: Any) -> asyncpg.Record:
        """Run an enqueue function; one that lost the race for its key (to another enqueue of
        the same key that committed first) runs again, and finds that one's row."""
        for _ in range(5):
            try:
                row = await self._fetchrow(action, statement, *args)
            except _Refused as refused:
                if refused.sqlstate != schema.KEY_RACE:
                    raise
                continue
            assert row is not None
            return row
        raise lash.LashError(f"Postgres store {self.url}: {action}: the key kept changing hands")

    async def list_inputs(
        self, session_id: str, *, settled: bool = False
    ) -> list[lash.store.PendingInput]:
        check_session_id(session_id)
        rows = await self._fetch(
            f"listing the inputs of session {session_id!r}",
            schema.LIST_ALL_INPUTS if settled else schema.LIST_OPEN_INPUTS,
            session_id,
        )
        return [_input(session_id, row) for row in rows]

    async def cancel_inputs(
        self, session_id: str, targets: Sequence[str], *, suffix: bool = False
    ) -> list[lash.store.InputCancellation]:
        check_session_id(session_id)
        if suffix and len(targets) != 1:
            raise ValueError("a suffix cancellation takes one target: the first input")
        names = [_text(session_id, "input to cancel", target) for target in targets]
        if not names:
            return []
        rows = await self._fetch(
            f"cancelling inputs of session {session_id!r}",
            schema.CANCEL_INPUTS,
            session_id,
            names,
            suffix,
            *self._window,
        )
        return [
            lash.store.InputCancellation(
                row[0], row[1], None if row[2] is None else _input(session_id, row[2:])
            )
            for row in rows
        ]

    async def claim_inputs(
        self,
        lease: lash.store.Lease,
        *,
        limit: int = 1,
        ingress: lash.store.Ingress | None = None,
    ) -> list[lash.store.PendingInput]:
        sid = lease.session_id
        check_session_id(sid)
        rows = await self._fetch(
            f"claiming input of session {sid!r}",
            schema.CLAIM_INPUTS,
            sid,
            _text(sid, "lease owner", lease.owner),
            _int64(sid, "fencing token", lease.token),
            max(0, min(limit, 2**63 - 1)),
            ingress,
            *self._window,
            self.settings.durable_leases,
        )
        if rows and not rows[0]["granted"]:
            check_lease(_lease_of(sid, rows[0]), lease)
            raise lash.LeaseLost(sid, "the lease changed while input was being claimed")
        return [_input(sid, row[4:]) for row in rows]

    async def enqueue_command(
        self, session_id: str, draft: lash.store.CommandDraft
    ) -> lash.store.QueuedCommand:
        check_session_id(session_id)
        args = _dumps(session_id, "command arguments", dict(draft.args))
        row = await self._enqueue(
            f"queueing a command for session {session_id!r}",
            schema.ENQUEUE_COMMAND,
            session_id,
            f"cmd-{uuid.uuid4().hex[:16]}",
            _key(session_id, "command key", draft.key),
            _text(session_id, "command name", draft.name),
            args,
            None if draft.source is None else _text(session_id, "command source", draft.source),
            *self._window,
        )
        command = _command(session_id, row[1:])
        if not row[0]:
            same = (command.name, dict(command.args)) == (
                draft.name,
                _loads("command arguments", args),
            )
            if not same:
                raise lash.InputConflict(session_id, draft.key, command.id, "command")
        return command

    async def list_commands(
        self, session_id: str, *, settled: bool = False
    ) -> list[lash.store.QueuedCommand]:
        check_session_id(session_id)
        rows = await self._fetch(
            f"listing the commands of session {session_id!r}",
            schema.LIST_ALL_COMMANDS if settled else schema.LIST_PENDING_COMMANDS,
            session_id,
        )
        return [_command(session_id, row) for row in rows]

    # -- turns and their cancellation --------------------------------------------------------

    async def turn_record(self, session_id: str, turn_id: str) -> lash.store.TurnRecord | None:
        check_session_id(session_id)
        if not _storable(turn_id):
            return None  # no turn id Postgres cannot hold was ever stored
        row = await self._fetchrow(
            f"reading turn {turn_id!r} of session {session_id!r}",
            schema.TURN_RECORD,
            session_id,
            turn_id,
        )
        return None if row is None else _turn(session_id, turn_id, row)

    async def request_cancel(
        self, session_id: str, turn_id: str, *, origin: str, reason: str | None = None
    ) -> lash.store.CancelReceipt:
        check_session_id(session_id)
        if not _storable(turn_id) or len(turn_id.encode("utf-8")) > MAX_KEY_BYTES:
            # No turn runs under such an id: its lease refused it (see _key).
            return lash.store.CancelReceipt("unknown", session_id, turn_id)
        row = await self._fetchrow(
            f"asking turn {turn_id!r} of session {session_id!r} to stop",
            schema.REQUEST_CANCEL,
            session_id,
            turn_id,
            _text(session_id, "cancellation origin", origin),
            _json(session_id, "cancellation reason", reason),
        )
        assert row is not None
        status = row["status"]
        if status == "already_finished":
            record = _turn(session_id, turn_id, row[1:7])
            return lash.store.CancelReceipt(status, session_id, turn_id, record=record)
        if status in ("requested", "already_requested"):
            request = lash.store.CancelRequest(
                session_id,
                turn_id,
                row["origin"],
                _maybe_json("stored cancellation reason", row["reason_json"]),
                row["requested_at"],
            )
            return lash.store.CancelReceipt(status, session_id, turn_id, request=request)
        return lash.store.CancelReceipt("unknown", session_id, turn_id)

    async def cancel_request(
        self, session_id: str, turn_id: str
    ) -> lash.store.CancelRequest | None:
        check_session_id(session_id)
        if not _storable(turn_id):
            return None
        row = await self._fetchrow(
            f"reading the cancellation of turn {turn_id!r} of session {session_id!r}",
            schema.CANCEL_REQUEST,
            session_id,
            turn_id,
        )
        if row is None:
            return None
        origin, reason, requested_at = row
        return lash.store.CancelRequest(
            session_id,
            turn_id,
            origin,
            _maybe_json("stored cancellation reason", reason),
            requested_at,
        )

    # -- observation -------------------------------------------------------------------------

    async def read_events(
        self, session_id: str, *, after: int = 0, limit: int = 1000
    ) -> lash.store.EventPage:
        check_session_id(session_id)
        rows = await self._fetch(
            f"reading the events of session {session_id!r}",
            schema.READ_EVENTS,
            session_id,
            max(-1, min(after, 2**63 - 1)),
            max(0, min(limit, 2**63 - 1)),
        )
        if not rows:
            return lash.store.EventPage((), 1, 0)
        last, first = rows[0][0], rows[0][1]
        found = [row for row in rows if row[2] is not None]
        datas = _many_json(f"stored events of {session_id!r}", [row[4] for row in found])
        events = tuple(
            lash.store.StoredEvent(session_id, seq, type_, data, at)
            for (_, _, seq, type_, _, at), data in zip(found, datas, strict=True)
        )
        return lash.store.EventPage(events, last + 1 if first is None else first, last)

    async def wait_events(self, session_id: str, after: int, timeout: float) -> bool:
        """Return when the session's event log may have grown past ``after`` (``True``), or
        after ``timeout`` seconds (``False``).

        It listens on one connection of its own (``LISTEN lash_events``, opened on first use)
        for the notifications every write that logs sends; it returns at once when the log is
        already past ``after``. A notification can be lost (a broken connection, ``notify=off``
        on a writer): ``False`` only says none came, so a caller reads the log after either
        return, and polling every ``timeout`` seconds is its fallback. With ``notify=off``
        it only sleeps (and checks the log once first). Cancelling it is safe and cheap.
        """
        check_session_id(session_id)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Registered before the log is read: a write committed after that read notifies, and
        # wakes this future; one committed before it is seen by the read.
        waiting = self._waiters.setdefault(session_id, set())
        waiting.add(future)
        try:
            listening = self.settings.notify and await self._listen()
            # Registered as a watcher of the session before its log is read: a write in
            # progress is waited for, a later one notifies (see lash_watch). A registration
            # that fails (a role without the right, a statement timeout behind a long write)
            # degrades this wait to polling, as a listener that cannot listen does.
            try:
                listening = listening and await self._watch(session_id)
            except Exception as exc:
                log.warning(
                    "lash: Postgres store %s: cannot watch session %r (%s); waiting polls",
                    self.url,
                    session_id,
                    self.settings.scrub(_describe(exc)),
                )
                listening = False
            # Shielded: a caller that stops waiting (cancels) does not cut the query short,
            # which would cost asyncpg a cancel request on a connection of its own.
            row = await asyncio.shield(
                self._fetchrow(
                    f"reading the latest event of session {session_id!r}",
                    schema.EVENT_SEQ,
                    session_id,
                )
            )
            if row is not None and row[0] > after:
                return True
            if timeout <= 0:
                return False
            if not listening:
                await asyncio.sleep(timeout)
                return False
            try:
                async with asyncio.timeout(timeout):
                    await future
            except TimeoutError:
                return False
            return True
        finally:
            waiting.discard(future)
            if not waiting and self._waiters.get(session_id) is waiting:
                del self._waiters[session_id]
                if session_id in self._watched:
                    self._watched[session_id] = time.monotonic()

    async def _listen(self) -> bool:
        """Whether the listening connection is up (opening it when it is not)."""
        if self._listener is not None and not self._listener.is_closed():
            return True
        await self._ready()  # the schema is there, the URL works
        async with self._listening:
            if self._listener is not None and not self._listener.is_closed():
                return True
            s = self.settings
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(
                    s.dsn,
                    timeout=s.connect_timeout,
                    server_settings={"statement_timeout": str(s.statement_timeout)},
                )
                await conn.add_listener(schema.CHANNEL, self._notified)
                conn.add_termination_listener(self._listener_lost)
            except Exception as exc:
                if conn is not None:
                    conn.terminate()
                # Waiting degrades to polling; the next call tries again.
                log.warning(
                    "lash: Postgres store %s: cannot listen for events (%s); waiting polls",
                    self.url,
                    s.scrub(_describe(exc)),
                )
                return False
            self._listener = conn
            self._watched.clear()
            # The watchers of listeners that are gone (this store's last one, a process that
            # was killed) would only cost their sessions' writes a NOTIFY each: forgotten
            # when it can be done, and the listener is kept when it cannot.
            try:
                await self._fetch("forgetting watchers gone", schema.FORGET_GONE_WATCHERS)
            except Exception as exc:
                log.warning(
                    "lash: Postgres store %s: cannot forget the watchers of gone listeners (%s)",
                    self.url,
                    s.scrub(_describe(exc)),
                )
            return True

    async def _watch(self, session_id: str) -> bool:
        """Whether the listener is registered as waiting for the session's events
        (``lash_watch``: writes notify only the sessions someone waits on), registering it
        when it is not; ``False`` when the listener went away meanwhile (waiting then polls).
        Registrations of sessions no one waited on for :data:`WATCH_LINGER` seconds are
        dropped here too."""
        listener = self._listener
        if listener is None:
            return False
        if session_id in self._watched and time.monotonic() - self._swept <= WATCH_LINGER / 2:
            return True
        async with self._watching:
            if self._listener is not listener:
                return False
            pid = listener.get_server_pid()
            if session_id not in self._watched:
                await self._fetch(f"watching session {session_id!r}", schema.WATCH, session_id, pid)
                if self._listener is not listener:
                    return False
                self._watched[session_id] = time.monotonic()
            now = time.monotonic()
            if now - self._swept > WATCH_LINGER / 2:
                self._swept = now
                gone = [
                    sid
                    for sid, since in self._watched.items()
                    if sid not in self._waiters and now - since > WATCH_LINGER
                ]
                for sid in gone:
                    del self._watched[sid]
                if gone:
                    await self._fetch("forgetting watched sessions", schema.UNWATCH, pid, gone)
        return True

    def _notified(self, conn: object, pid: int, channel: str, payload: object) -> None:
        for future in self._waiters.get(str(payload), ()):
            if not future.done():
                future.set_result(None)

    def _listener_lost(self, conn: object) -> None:
        # Notifications sent while no one listens are lost: wake every waiter, so that each
        # reads the log, then waits on a new connection.
        if self._listener is conn:
            self._listener = None
            self._watched.clear()  # its rows are forgotten when a listener starts
        self._wake_all()

    def _wake_all(self) -> None:
        for waiting in self._waiters.values():
            for future in waiting:
                if not future.done():
                    future.set_result(None)

    # -- processes ---------------------------------------------------------------------------

    async def _log_process(self, conn: Connection, record: lash.ProcessRecord, event: str) -> None:
        """Log ``event`` for ``record`` in its session (if it has one), in ``conn``'s
        transaction."""
        sid = record.session_id
        if sid is None:
            return
        types, datas = _events(sid, [lash.store.process_event(event, record)])
        await conn.fetchval(schema.LOG_EVENTS, sid, types, datas, *self._window)

    async def _write_process(
        self, conn: Connection, record: lash.ProcessRecord, event: str | None
    ) -> lash.ProcessRecord:
        """Write ``record`` over its row (locked by the caller), logging ``event`` first."""
        await self._write_processes(conn, [(record, event)])
        return record

    async def _write_processes(
        self, conn: Connection, writes: Sequence[tuple[lash.ProcessRecord, str | None]]
    ) -> None:
        """Write each record over its row (locked by the caller), all events logged first, in
        the order of their sessions' ids (``schema.LOCK_HEAD`` says the order every process
        write keeps).

        The events first: logging locks the session's head row, and a commit holding that row
        while it inserts a process under a key waits for a transaction that changed the key's
        row (not for one that only locked it). Changed first, then waiting for the head row,
        a finish and a commit starting its key again waited for each other until Postgres
        aborted one. In the order of session ids: a poll settling and claiming processes of
        several sessions takes several head rows, and two polls taking them in the order their
        rows came could each hold one the other waited for."""
        args = [_process_args(record) for record, _ in writes]  # storable, before a head row
        for record, event in sorted(writes, key=lambda write: write[0].session_id or ""):
            if event is not None:
                await self._log_process(conn, record, event)
        for values in args:
            await conn.execute(schema.UPDATE_PROCESS, *values)

    async def _start_processes(
        self, conn: Connection, drafts: Sequence[lash.store.ProcessDraft]
    ) -> list[lash.ProcessRecord]:
        """Start ``drafts`` in ``conn``'s transaction: each the process it starts, or the one
        already started under its key.

        :raises lash.InputConflict: a key was used for another kind, session or payload.
        """
        now = await conn.fetchval(schema.NOW)
        out = []
        for draft in drafts:
            record = lash.store.new_process(draft, now)
            if await conn.fetchval(schema.INSERT_PROCESS, *_process_args(record)) is not None:
                await self._log_process(conn, record, "process_started")
                out.append(record)
                continue
            # Its key (or id) is taken; a start of the same key running at once waited for the
            # other to commit, and reads it now.
            found = None
            if draft.key is not None:
                found = await conn.fetchrow(schema.PROCESS_BY_KEY, draft.key)
            if found is None:
                raise lash.SessionError(
                    f"process id {draft.id!r} is taken", session_id=draft.session_id
                )
            existing = _process(found)
            if not lash.store.same_process(existing, draft):
                raise lash.InputConflict(
                    draft.session_id or "-", draft.key or "", existing.id, "process"
                )
            out.append(existing)
        return out

    @contextlib.asynccontextmanager
    async def _process_transaction(
        self, action: str, process_id: str
    ) -> AsyncIterator[tuple[Connection, float, lash.ProcessRecord | None]]:
        """A transaction on one process: the database's time and the process, its row locked."""
        async with self._connection(action) as conn, conn.transaction():
            now = await conn.fetchval(schema.NOW)
            if not _storable(process_id):
                yield conn, now, None  # no such id was ever stored
                return
            row = await conn.fetchrow(schema.PROCESS_FOR_UPDATE, process_id)
            yield conn, now, None if row is None else _process(row)

    async def start_process(self, draft: lash.store.ProcessDraft) -> lash.ProcessRecord:
        if draft.session_id is not None:
            check_session_id(draft.session_id)
        _process_args(lash.store.new_process(draft, 0.0))  # storable, before the database
        action = f"starting process {draft.id!r}"
        async with self._connection(action) as conn, conn.transaction():
            if draft.session_id is not None:
                # The head row before the insert, as a commit starting processes holds it
                # (see schema.LOCK_HEAD): a commit of the session inserting the same key waits
                # for this insert, which would otherwise wait for the commit to log its event.
                await conn.execute(schema.LOCK_HEAD, draft.session_id)
            (record,) = await self._start_processes(conn, [draft])
        return record

    async def get_process(self, process_id: str) -> lash.ProcessRecord | None:
        if not _storable(process_id):
            return None
        row = await self._fetchrow(
            f"reading process {process_id!r}", schema.PROCESS_BY_ID, process_id
        )
        return None if row is None else _process(row)

    async def list_processes(
        self,
        *,
        session_id: str | None = None,
        kind: str | None = None,
        status: str | None = None,
        limit: int = 1000,
    ) -> list[lash.ProcessRecord]:
        if not all(_storable(v) for v in (session_id, kind, status) if v is not None):
            return []
        sql = (
            schema.LIST_SESSION_PROCESSES
            if session_id is not None
            else schema.LIST_KIND_PROCESSES
            if kind is not None
            else schema.LIST_PROCESSES
        )
        rows = await self._fetch(
            "listing processes",
            sql,
            session_id,
            kind,
            status,
            max(0, min(limit, 2**63 - 1)),
        )
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
        _text("-", "process owner", owner)
        wanted = None if kinds is None else [k for k in kinds if _storable(k)]
        claimed = None
        async with self._connection("polling for work") as conn, conn.transaction():
            if claim:
                now = await conn.fetchval(schema.NOW)
                # What may not run again is settled (abandoned, or failed) by any claim, and
                # before the claimed process's event. Every row is locked (skipping those
                # others hold) before the first event takes a head row (see schema.LOCK_HEAD).
                writes: list[tuple[lash.ProcessRecord, str | None]] = []
                for expired in await conn.fetch(schema.EXPIRED_PROCESSES, now):
                    settled = lash.store.settled_on_expiry(_process(expired), now)
                    if settled is not None:
                        writes.append((settled, "process_finished"))
                row = await conn.fetchrow(schema.CLAIMABLE_PROCESS, now, wanted)
                if row is not None:
                    claimed = lash.store.claimed_by(_process(row), owner, ttl=ttl, now=now)
                    writes.append((claimed, "process_running"))
                await self._write_processes(conn, writes)
            runnable = (
                await conn.fetch(schema.RUNNABLE_SESSIONS, min(sessions, 2**63 - 1))
                if sessions > 0
                else []
            )
            unnotified = (
                await conn.fetch(schema.UNNOTIFIED_PROCESSES, _age(finished_before))
                if finished_before is not None
                else []
            )
        return lash.store.WorkPoll(
            process=claimed,
            sessions=tuple(row[0] for row in runnable),
            unnotified=tuple(_process(row) for row in unnotified),
        )

    _poll = poll_work

    async def heartbeat_process(
        self, process_id: str, token: int, *, ttl: float, progress: Any = None
    ) -> lash.ProcessRecord:
        if progress is not None:
            _dumps("-", f"progress of process {process_id!r}", progress)
        action = f"renewing the claim on process {process_id!r}"
        async with self._process_transaction(action, process_id) as (conn, now, record):
            record = attrs.evolve(
                lash.store.check_claim(process_id, token, record), expires_at=now + ttl
            )
            if progress is None:
                return await self._write_process(conn, record, None)
            record = attrs.evolve(record, progress=progress)
            return await self._write_process(conn, record, "process_progress")

    async def park_process(self, process_id: str, token: int) -> lash.ProcessRecord:
        action = f"parking process {process_id!r}"
        async with self._process_transaction(action, process_id) as (conn, _, record):
            record = attrs.evolve(
                lash.store.check_claim(process_id, token, record), expires_at=None
            )
            return await self._write_process(conn, record, None)

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
        _dumps("-", f"result of process {process_id!r}", result)
        action = f"finishing process {process_id!r}"
        async with self._process_transaction(action, process_id) as (conn, now, record):
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
            if done is record:
                return done
            return await self._write_process(conn, done, "process_finished")

    async def request_process_cancel(
        self, process_id: str, reason: str
    ) -> lash.ProcessRecord | None:
        _text("-", "cancellation reason", reason)
        action = f"cancelling process {process_id!r}"
        async with self._process_transaction(action, process_id) as (conn, now, record):
            if record is None:
                return None
            asked = lash.store.cancel_record(record, reason, now)
            if asked is record:
                return record
            event = "process_finished" if asked.finished else None
            return await self._write_process(conn, asked, event)

    async def unnotified_processes(self, *, finished_before: float) -> list[lash.ProcessRecord]:
        rows = await self._fetch(
            "reading the processes to notify", schema.UNNOTIFIED_PROCESSES, _age(finished_before)
        )
        return [_process(row) for row in rows]

    async def mark_process_notified(self, process_id: str) -> None:
        if _storable(process_id):
            await self._fetch(
                f"marking process {process_id!r} notified",
                schema.MARK_PROCESS_NOTIFIED,
                process_id,
            )

    async def runnable_sessions(self, *, limit: int = 100) -> list[str]:
        rows = await self._fetch(
            "listing runnable sessions", schema.RUNNABLE_SESSIONS, max(0, min(limit, 2**63 - 1))
        )
        return [row[0] for row in rows]

    # -- blobs -------------------------------------------------------------------------------

    async def put_blob(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        await self._fetch(f"storing blob {digest}", schema.PUT_BLOB, digest, bytes(data), len(data))
        return digest

    async def get_blob(self, digest: str) -> bytes | None:
        row = await self._fetchrow(f"reading blob {digest}", schema.GET_BLOB, digest)
        return bytes(row[0]) if row is not None else None

    # -- diagnostics -----------------------------------------------------------------------

    async def info(self) -> dict[str, Any]:
        """What the store runs with, for diagnostics: the URL (password masked), the server's
        version, the pool's sizes, the connection's ``statement_timeout`` and
        ``application_name`` as the server has them, the replay window, whether it notifies
        and whether leases are durable, and the migrations applied."""
        async with self._connection("reading the server's settings") as conn:
            settings = await conn.fetchrow(
                "SELECT current_setting('server_version'), "
                "current_setting('statement_timeout'), current_setting('application_name')"
            )
            assert settings is not None
            version, timeout, application = settings
            migrations = await conn.fetch(
                "SELECT id, name, applied_at, lash_version FROM lash_migrations ORDER BY id"
            )
        s = self.settings
        return {
            "url": s.url,
            "server_version": version,
            "pool_size": s.pool_size,
            "pool_min": s.pool_min,
            "statement_timeout": timeout,
            "application_name": application,
            "events_kept": s.events_kept,
            "events_max_age": s.events_max_age,
            "notify": s.notify,
            "durable_leases": s.durable_leases,
            "migrations": [dict(r) for r in migrations],
        }


# -- helpers ---------------------------------------------------------------------------------


async def _no_reset(conn: asyncpg.Connection) -> None:
    """The pool's reset hook: nothing to reset (see ``PostgresStore._open``)."""


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _no_empty_arrays(args: tuple[Any, ...]) -> tuple[Any, ...]:
    """``args`` with each empty list as ``None`` (SQL ``NULL``): the functions read a ``NULL``
    array as an empty one (``cardinality`` is ``NULL``, ``unnest`` gives no row), and a ``NULL``
    is neither encoded here nor decoded by the server, where each array parameter is, on every
    call (a turn's commit has 15 empty arrays of 21: 1-2 % of a kernel turn)."""
    return tuple(None if arg == [] else arg for arg in args)


def _input_id() -> str:
    return f"in-{uuid.uuid4().hex[:16]}"


def _lease_of(session_id: str, row: asyncpg.Record | None) -> lash.store.Lease | None:
    """The lease in a row of ``holder``, ``holder_token``, ``holder_expires_at`` (or none)."""
    if row is None or row["holder"] is None:
        return None
    return lash.store.Lease(
        session_id, row["holder"], row["holder_token"], row["holder_expires_at"]
    )


def _commit_refused(
    session_id: str, expected_revision: int, refused: _Refused
) -> lash.SessionError:
    """The error for a commit ``lash_commit`` refused after its guard (rolled back whole)."""
    if refused.sqlstate == schema.CLAIM_LOST:
        return lash.LeaseLost(
            session_id, f"input {refused.detail!r} is not claimed by this lease any more"
        )
    if refused.sqlstate == schema.COMMAND_GONE:
        return lash.LeaseLost(session_id, f"command {refused.detail!r} is not pending any more")
    if refused.sqlstate == schema.TURN_COMMITTED:
        return lash.RevisionConflict(
            session_id, expected=expected_revision, actual=int(refused.detail)
        )
    if refused.sqlstate == schema.KEY_CONFLICT:
        return lash.InputConflict(session_id, refused.detail, refused.hint)
    return lash.SessionError(
        f"session {session_id!r}: the commit was refused ({refused.sqlstate}); nothing was written",
        session_id=session_id,
    )


def _storable(value: str) -> bool:
    """Whether Postgres ``text`` can hold ``value`` (no NUL, no lone surrogate)."""
    if "\0" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _text(session_id: str, what: str, value: str) -> str:
    """``value``, if Postgres ``text`` can hold it (no NUL, no lone surrogate)."""
    if value.isascii() and "\0" not in value:  # isascii looks at a flag: no copy
        return value
    if "\0" in value:
        raise _unstorable(session_id, f"{what} {value!r}", "it holds a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _unstorable(
            session_id, f"{what} {value!r}", "it holds a lone surrogate (not UTF-8)"
        ) from None
    return value


#: The most bytes of UTF-8 of a key or id that Postgres indexes (a session's input and command
#: keys, turn ids, plugin names and usage sources, beside its session id; a process's id, key
#: and kind). An index entry holds 2,704 bytes (a third of a page): 1,536 leaves room for the
#: longest session id (1,024 bytes) and a revision beside it, as text that does not compress,
#: and for a child's usage source (``child:`` and its session id).
MAX_KEY_BYTES = 1536

#: The process columns Postgres indexes (see :data:`MAX_KEY_BYTES`).
_INDEXED_PROCESS_COLUMNS = frozenset({"id", "key", "kind"})


def _key(session_id: str, what: str, value: str) -> str:
    """``value``, if Postgres ``text`` can hold it and an index entry can too (at most
    :data:`MAX_KEY_BYTES` bytes of UTF-8): refused here, with the field named, rather than by
    the server's "index row size exceeds" error (a turn id met it at the turn's commit)."""
    value = _text(session_id, what, value)
    if len(value) > MAX_KEY_BYTES // 4:  # shorter ones fit whatever their characters
        size = len(value.encode("utf-8"))
        if size > MAX_KEY_BYTES:
            raise _unstorable(
                session_id,
                f"{what} {_REPR.repr(value)}",
                f"it has {size:,} bytes of UTF-8, more than {MAX_KEY_BYTES:,}, the most "
                "Postgres indexes here (SQLite and memory:// have no such limit)",
            )
    return value


def _int64(session_id: str, what: str, value: int) -> int:
    if value not in _INT64:
        raise _unstorable(session_id, f"{what} ({value})", "Postgres bigints are 64-bit")
    return value


def _json(session_id: str, what: str, data: Any) -> str | None:
    return None if data is None else _dumps(session_id, what, data)


def _maybe_json(what: str, text: str | None) -> Any:
    return None if text is None else _loads(what, text)


# -- the JSON codec ----------------------------------------------------------------------------
# A node, a state, an input is kept as the JSON text lash.to_data gives, as in the SQLite store
# (whose helpers these were: copied, so that the two stores can change apart).


def _unstorable(session_id: str, what: str, why: str) -> lash.SessionError:
    return lash.SessionError(
        f"session {session_id!r}: cannot store the {what}: {why}", session_id=session_id
    )


#: ``json.dumps(data, separators=(",", ":"), ensure_ascii=False)`` without making an encoder
#: per call (``dumps`` makes one for any argument but the defaults: ~1.5 µs, three times a turn).
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _dumps(session_id: str, what: str, data: Any) -> str:
    """``data`` as JSON text, key order kept (tool-call arguments go back to the provider as
    they came)."""
    try:
        text = _ENCODE(data)
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
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=True)
    return text


def _loads(what: str, text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise lash.ValidationError(what, [f"not JSON: {exc}"]) from None


def _many_json(what: str, texts: list[str]) -> list[Any]:
    """Decode JSON texts: one ``json.loads`` over all of them is ~40% faster than one per
    text (resume cost); on a bad one (or one holding two values: "{...},{...}"), one at a
    time, to name it."""
    try:
        datas = json.loads("[" + ",".join(texts) + "]")
    except ValueError:
        datas = []
    if len(datas) != len(texts):
        datas = [_loads(what, text) for text in texts]
    return list(datas)


def _node_row(
    session_id: str, node: lash.GraphNode
) -> tuple[str, str, str, int, str, bool, str | None]:
    """``(id, kind, frame id, turn, JSON, opens a frame, outcome)`` of a node: the tagged
    form (``"type": "user"``...) so that from_data knows the variant, the tag being the row's
    ``kind``; ``outcome`` is a TurnOutcome's (how the turn ended, for the listing's status).

    The text is ``lash.store.node_json``'s (a writer generated per node class: a third of the
    cost of ``to_data`` and ``json.dumps``, the same text); what it cannot write, or text
    that is not UTF-8 (lone surrogates), goes the general way, which says what is wrong."""
    refused: Exception | None = None
    try:
        text = lash.store.node_json(node)
    except (TypeError, ValueError) as exc:
        # Not JSON data (the general path says what is wrong), or a value that would not
        # read back as the node (said after it).
        text, refused = "", exc
    if not text or not (text.isascii() or _storable(text)):
        text = _dumps(session_id, f"node {node.id!r}", lash.to_data(node, lash.GraphNode))
        if refused is not None:
            raise lash.SessionError(
                f"session {session_id!r}: cannot store the node {node.id!r}: {refused}",
                session_id=session_id,
            )
    kind = _KINDS.get(type(node))
    if kind is None:
        kind = _KINDS[type(node)] = str(lash.to_data(node, lash.GraphNode)["type"])
    outcome = str(node.outcome) if isinstance(node, lash.TurnOutcome) else None
    opens_frame = isinstance(node, lash.FrameBoundary)
    return node.id, kind, node.frame_id, node.turn, text, opens_frame, outcome


#: The tag (the ``kind`` column) of each node class, learnt from ``to_data`` on first sight.
_KINDS: dict[type, str] = {}


def _nodes(session_id: str, texts: list[str]) -> tuple[Any, ...]:
    """Decode stored nodes: one ``from_data`` over all of them saves a converter dispatch per
    node; on a bad one, the per-node path finds it and raises its error."""
    what = f"stored node of {session_id!r}"
    datas = _many_json(what, texts)
    try:
        nodes: tuple[Any, ...] = lash.from_data(datas, tuple[lash.GraphNode, ...], what=what)
    except lash.ValidationError:
        for data in datas:
            lash.from_data(data, lash.GraphNode, what=what)
        raise
    return nodes


def _events(
    session_id: str, events: Iterable[lash.store.EventDraft]
) -> tuple[list[str], list[str]]:
    """The types and JSON data of events to log."""
    types: list[str] = []
    datas: list[str] = []
    for event in events:
        types.append(_text(session_id, "event type", event.type))
        datas.append(_dumps(session_id, f"data of event {event.type!r}", dict(event.data)))
    return types, datas


def _input(session_id: str, row: Iterable[Any]) -> lash.store.PendingInput:
    """A :class:`PendingInput` from a row of ``schema.INPUT_COLUMNS`` and the state."""
    id_, seq, text, items, key, ingress, source, created_at, settled_at, turn_id, state = row
    return lash.store.PendingInput(
        id=id_,
        session_id=session_id,
        seq=seq,
        text=_loads("stored input text", text),
        items=tuple(_loads("stored input items", items)),
        key=key,
        ingress=ingress,
        source=source,
        state=state,
        created_at=created_at,
        settled_at=settled_at,
        turn_id=turn_id,
    )


def _command(session_id: str, row: Iterable[Any]) -> lash.store.QueuedCommand:
    """A :class:`QueuedCommand` from a row of ``schema.COMMAND_COLUMNS``."""
    id_, seq, name, key, args, source, state, created_at, applied_at = row
    return lash.store.QueuedCommand(
        id=id_,
        session_id=session_id,
        seq=seq,
        name=name,
        key=key,
        args=_loads("stored command arguments", args),
        source=source,
        state=state,
        created_at=created_at,
        applied_at=applied_at,
    )


def _turn(session_id: str, turn_id: str, row: Iterable[Any]) -> lash.store.TurnRecord:
    index, outcome, revision, reason, result, committed_at = row
    return lash.store.TurnRecord(
        session_id=session_id,
        turn_id=turn_id,
        index=index,
        outcome=outcome,
        revision=revision,
        reason=_maybe_json("stored turn reason", reason),
        result=_loads("stored turn result", result),
        committed_at=committed_at,
    )


def _rollup_args(session_id: str, delta: lash.store.CommitDelta) -> tuple[Any, ...]:
    """``lash_commit``'s parameters from ``p_parent`` on: the parent link and the usage a child
    session's commit rolls up into its ancestors."""
    rows = [
        (other, source, usage)
        for other, usages in delta.rollup.items()
        for source, usage in usages.items()
    ]
    return (
        delta.parent_id,
        [other for other, _, _ in rows],
        [_key(session_id, "usage source", source) for _, source, _ in rows],
        [_int64(session_id, f"input tokens of {s!r}", u.input_tokens) for _, s, u in rows],
        [_int64(session_id, f"output tokens of {s!r}", u.output_tokens) for _, s, u in rows],
        [_int64(session_id, f"cached tokens of {s!r}", u.cached_tokens) for _, s, u in rows],
    )


def _process_args(record: lash.ProcessRecord) -> list[Any]:
    """The parameters of ``schema.INSERT_PROCESS`` / ``schema.UPDATE_PROCESS`` for ``record``
    (checked storable: text Postgres can hold, JSON data, 64-bit integers)."""
    sid = record.session_id or "-"
    args: list[Any] = []
    for column in schema.PROCESS_COLUMNS:
        value = getattr(record, column)
        what = f"{column} of process {record.id!r}"
        if column in schema.PROCESS_JSON:
            if value is not None or column == "payload":
                value = _dumps(sid, what, lash.to_data(value))
        elif isinstance(value, bool):
            pass
        elif isinstance(value, int):
            value = _int64(sid, what, value)
        elif isinstance(value, str):
            value = (_key if column in _INDEXED_PROCESS_COLUMNS else _text)(sid, what, value)
        args.append(value)
    return args


def _age(finished_before: float) -> float:
    """``finished_before`` (the caller's epoch seconds, ``time.time() - ttl``) as how long ago
    that is, which the database subtracts from its own clock: its clock stamped
    ``finished_at``, and this host's may differ from it by more than a lease TTL (one clock
    ahead took a process finished a moment ago, its finisher maybe still notifying it: two
    ``process_finished``; one behind left a dead finisher's process unnotified as long)."""
    return max(0.0, time.time() - float(finished_before))


def _process(row: asyncpg.Record) -> lash.ProcessRecord:
    """A process read with ``schema.PROCESS_COLUMNS``."""
    fields = dict(zip(schema.PROCESS_COLUMNS, row, strict=True))
    for column in schema.PROCESS_JSON:
        fields[column] = _maybe_json(f"stored {column} of a process", fields[column])
    return lash.ProcessRecord(**fields)


def _commit_args(session_id: str, delta: lash.store.CommitDelta) -> tuple[Any, ...]:
    """``lash_commit``'s parameters from ``p_replace`` to ``p_event_datas``, for ``delta``."""
    node_ids: list[str] = []
    kinds: list[str] = []
    frame_ids: list[str] = []
    turns: list[int] = []
    datas: list[str] = []
    frame_offset: int | None = None
    last_user: str | None = None
    status: str | None = None
    for index, node in enumerate(delta.nodes):
        node_id, kind, frame_id, turn, data, opens_frame, outcome = _node_row(session_id, node)
        node_ids.append(_text(session_id, "node id", node_id))
        kinds.append(kind)
        # What is checked is named only when it fails (an f-string per node costs ~0.3 µs).
        if not (frame_id.isascii() and "\0" not in frame_id):
            _text(session_id, f"frame id of node {node_id!r}", frame_id)
        frame_ids.append(frame_id)
        if turn not in _INT64:
            _int64(session_id, f"turn of node {node_id!r}", turn)
        turns.append(turn)
        datas.append(data)
        if opens_frame:
            frame_offset = index
        if isinstance(node, lash.UserMessage):
            # JSON, as the node: the listing shows the text exactly, NUL characters included.
            last_user = node.text
        elif outcome is not None:  # a TurnOutcome: how the turn ended is the session's status
            status = outcome
    plugins = [_key(session_id, "plugin name", plugin) for plugin in delta.plugin_states]
    states = [
        _dumps(session_id, f"state of plugin {plugin!r}", data)
        for plugin, data in delta.plugin_states.items()
    ]
    sources: list[str] = []
    tokens: list[list[int]] = [[], [], []]
    for source, usage in delta.usage.items():
        sources.append(_key(session_id, "usage source", source))
        for column, (name, count) in zip(
            tokens,
            (
                ("input", usage.input_tokens),
                ("output", usage.output_tokens),
                ("cached", usage.cached_tokens),
            ),
            strict=True,
        ):
            column.append(_int64(session_id, f"{name} tokens of {source!r}", count))
    queued: list[list[str | None]] = [[], [], [], [], [], []]
    for draft in delta.enqueue:
        row = (
            _input_id(),
            None if draft.key is None else _key(session_id, "input key", draft.key),
            _dumps(session_id, "input text", draft.text),
            _dumps(session_id, "input items", list(draft.items)),
            _text(session_id, "input ingress", draft.ingress),
            None if draft.source is None else _text(session_id, "input source", draft.source),
        )
        for values, value in zip(queued, row, strict=True):
            values.append(value)
    record = delta.turn
    types, event_datas = _events(session_id, delta.events)
    return (
        delta.replace,
        _int64(session_id, "turns", delta.turns),
        node_ids,
        kinds,
        frame_ids,
        turns,
        datas,
        frame_offset,
        _json(session_id, "last user message", last_user),
        status,
        plugins,
        states,
        _json(session_id, "config", None if delta.config is None else lash.to_data(delta.config)),
        sources,
        *tokens,
        [_text(session_id, "claimed input id", i) for i in delta.claimed],
        [_text(session_id, "applied command id", c) for c in delta.applied],
        *queued,
        None if record is None else _key(session_id, "turn id", record.turn_id),
        None if record is None else _int64(session_id, "turn index", record.index),
        None if record is None else record.outcome,
        None if record is None else _json(session_id, "turn reason", record.reason),
        None if record is None else _dumps(session_id, "turn result", dict(record.result)),
        types,
        event_datas,
    )
