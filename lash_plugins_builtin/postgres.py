"""``postgresql://``: sessions in a Postgres database, shared by every process that uses it.

URL (libpq's form; ``postgres://`` is accepted too)::

    postgresql://USER:PASSWORD@HOST:PORT/DATABASE?pool_size=10

Query parameters lash reads itself:

``pool_size`` (default 10)
    the most connections this store opens at once (its asyncpg pool's size);
``pool_min`` (default 1)
    connections kept open while idle;
``connect_timeout`` (seconds, default 10)
    how long to wait for the server when connecting;
``statement_timeout`` (milliseconds, default 30000; 0: none)
    Postgres's ``statement_timeout`` on the store's connections.

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
updating the head row (compare-and-swap; the row lock makes concurrent commits of a session
wait for each other) and writes the delta's rows with ``unnest`` of arrays. A commit's work is
its delta's rows and the head row, never the history. Leases use the database's clock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import asyncpg
import asyncpg.pool
import attrs

import lash
import lash.store
from lash.store import check_lease, check_session_id
from lash_plugins_builtin import _postgres_schema as schema
from lash_plugins_builtin._postgres_url import PostgresSettings, parse_url

# The node codec is the SQLite store's: both keep a node as the JSON text lash.to_data gives.
from lash_plugins_builtin.sqlite import _dumps, _loads, _node_row, _nodes, _unstorable

__all__ = ["PostgresSettings", "PostgresStore", "parse_url"]

_INT64 = range(-(2**63), 2**63)

#: A connection of the store's pool, as asyncpg hands it out.
Connection: TypeAlias = "asyncpg.pool.PoolConnectionProxy[asyncpg.Record]"


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
    ) -> None:
        settings = parse_url(url)
        overrides: dict[str, Any] = {
            key: value
            for key, value in (
                ("pool_size", pool_size),
                ("pool_min", pool_min),
                ("connect_timeout", connect_timeout),
                ("statement_timeout", statement_timeout),
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
        self.settings = settings
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()

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
        """Close the pool's connections (the next call opens a new pool)."""
        async with self._opening:
            pool, self._pool = self._pool, None
            if pool is not None:
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
                # session state behind (no SET, no LISTEN, only transaction-scoped locks), and
                # the default reset would cost every operation a second round trip.
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

    @contextlib.asynccontextmanager
    async def _connection(self, action: str) -> AsyncIterator[Connection]:
        """A pooled connection for one operation; what Postgres or the network does to it is
        a :class:`lash.LashError` naming the store and the operation."""
        pool = await self._ready()
        try:
            async with pool.acquire() as conn:
                yield conn
        except asyncpg.PostgresError as exc:
            raise lash.LashError(
                f"Postgres store {self.url}: {action} failed: {self.settings.scrub(_describe(exc))}"
            ) from exc
        except (OSError, asyncpg.InterfaceError) as exc:
            raise lash.LashError(
                f"Postgres store {self.url}: {action}: the connection to the server failed "
                f"({self.settings.scrub(_describe(exc))}); if this was a commit, it may or may "
                "not have been applied: load the session to see"
            ) from exc

    # -- leases ----------------------------------------------------------------------------

    async def acquire_lease(self, session_id: str, owner: str, *, ttl: float) -> lash.store.Lease:
        check_session_id(session_id)
        _text(session_id, "session id", session_id)
        _text(session_id, "lease owner", owner)
        async with self._connection(f"taking the lease of session {session_id!r}") as conn:
            row = await conn.fetchrow(schema.ACQUIRE_LEASE, session_id, owner, float(ttl))
        assert row is not None  # the function returns the lease it granted or refused
        granted, holder, token, expires_at = row
        if not granted:
            raise lash.SessionBusy(session_id, owner=holder, expires_at=expires_at)
        return lash.store.Lease(session_id, owner, token, expires_at)

    async def renew_lease(self, lease: lash.store.Lease, *, ttl: float) -> lash.store.Lease:
        sid = lease.session_id
        async with self._connection(f"renewing the lease of session {sid!r}") as conn:
            row = await conn.fetchrow(schema.RENEW_LEASE, sid, lease.owner, lease.token, float(ttl))
        if row is not None and row["renewed"]:
            return lash.store.Lease(sid, lease.owner, lease.token, row["holder_expires_at"])
        check_lease(_lease_of(sid, row), lease)
        raise lash.LeaseLost(sid, "the lease changed while it was being renewed")

    async def release_lease(self, lease: lash.store.Lease) -> None:
        sid = lease.session_id
        async with self._connection(f"releasing the lease of session {sid!r}") as conn:
            # Keeps the token (as an expired lease) so the next holder's is still higher.
            await conn.execute(schema.RELEASE_LEASE, sid, lease.owner, lease.token)

    # -- sessions --------------------------------------------------------------------------

    async def load(self, session_id: str, *, full: bool = False) -> lash.store.SessionRecord | None:
        check_session_id(session_id)
        async with self._connection(f"loading session {session_id!r}") as conn:
            row = await conn.fetchrow(schema.LOAD, session_id, full)
        if row is None or row[0] == 0:
            return None
        revision, created_at, updated_at, turns, config, pending = row[:6]
        nodes, plugins, states, sources, usage = row[6:]
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
            pending=() if pending is None else tuple(_loads("stored pending input", pending)),
            usage={
                source: lash.Usage(*tokens) for source, tokens in zip(sources, usage, strict=True)
            },
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
        # Encoded (and checked) before the database is asked anything: a value that cannot be
        # stored fails here, with nothing written.
        args = _commit_args(session_id, delta)
        if lease.session_id != session_id:
            raise lash.LeaseLost(
                session_id, f"the lease presented is for session {lease.session_id!r}"
            )
        # A refused commit is re-read in the same call; should the head have changed between
        # the guard and that read into one this commit fits (a released lease taken back by
        # its owner), it is tried again.
        for _ in range(3):
            async with self._connection(f"commit to session {session_id!r}") as conn:
                row = await conn.fetchrow(
                    schema.COMMIT, session_id, lease.owner, lease.token, expected_revision, *args
                )
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

    async def delete(self, session_id: str) -> None:
        check_session_id(session_id)
        async with self._connection(f"deleting session {session_id!r}") as conn:
            row = await conn.fetchrow(schema.DELETE_SESSION, session_id)
        assert row is not None
        outcome, holder, expires_at = row
        if outcome == "unknown":
            raise lash.UnknownSession(session_id)
        if outcome == "busy":
            raise lash.SessionBusy(session_id, owner=holder, expires_at=expires_at)

    async def list_sessions(self) -> list[lash.store.SessionSummary]:
        async with self._connection("listing sessions") as conn:
            rows = await conn.fetch(schema.LIST_SESSIONS)
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
            )
            for sid, created_at, updated_at, turns, revision, last_user, inp, out, cached in rows
        ]

    # -- diagnostics -----------------------------------------------------------------------

    async def info(self) -> dict[str, Any]:
        """What the store runs with, for diagnostics: the URL (password masked), the server's
        version, the pool's sizes, the connection's ``statement_timeout`` and
        ``application_name`` as the server has them, and the migrations applied."""
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
            "migrations": [dict(r) for r in migrations],
        }


# -- helpers ---------------------------------------------------------------------------------


async def _no_reset(conn: asyncpg.Connection) -> None:
    """The pool's reset hook: nothing to reset (see ``PostgresStore._open``)."""


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _lease_of(session_id: str, row: asyncpg.Record | None) -> lash.store.Lease | None:
    """The lease in a row of ``holder``, ``holder_token``, ``holder_expires_at`` (or none)."""
    if row is None or row["holder"] is None:
        return None
    return lash.store.Lease(
        session_id, row["holder"], row["holder_token"], row["holder_expires_at"]
    )


def _text(session_id: str, what: str, value: str) -> str:
    """``value``, if Postgres ``text`` can hold it (no NUL, no lone surrogate)."""
    if "\0" in value:
        raise _unstorable(session_id, f"{what} {value!r}", "it holds a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _unstorable(
            session_id, f"{what} {value!r}", "it holds a lone surrogate (not UTF-8)"
        ) from None
    return value


def _int64(session_id: str, what: str, value: int) -> int:
    if value not in _INT64:
        raise _unstorable(session_id, f"{what} ({value})", "Postgres bigints are 64-bit")
    return value


def _json(session_id: str, what: str, data: Any) -> str | None:
    return None if data is None else _dumps(session_id, what, data, canonical=False)


def _commit_args(session_id: str, delta: lash.store.CommitDelta) -> tuple[Any, ...]:
    """``lash_commit``'s parameters after the guard's (``p_replace`` on), for ``delta``."""
    node_ids: list[str] = []
    kinds: list[str] = []
    frame_ids: list[str] = []
    turns: list[int] = []
    datas: list[str] = []
    frame_offset: int | None = None
    last_user: str | None = None
    for index, node in enumerate(delta.nodes):
        node_id, kind, frame_id, turn, data, opens_frame, _ = _node_row(session_id, node)
        node_ids.append(_text(session_id, "node id", node_id))
        kinds.append(kind)
        frame_ids.append(_text(session_id, f"frame id of node {node_id!r}", frame_id))
        turns.append(_int64(session_id, f"turn of node {node_id!r}", turn))
        datas.append(data)
        if opens_frame:
            frame_offset = index
        if isinstance(node, lash.UserMessage):
            # JSON, as the node: the listing shows the text exactly, NUL characters included.
            last_user = node.text
    plugins = [_text(session_id, "plugin name", plugin) for plugin in delta.plugin_states]
    states = [
        _dumps(session_id, f"state of plugin {plugin!r}", data, canonical=False)
        for plugin, data in delta.plugin_states.items()
    ]
    sources: list[str] = []
    tokens: list[list[int]] = [[], [], []]
    for source, usage in delta.usage.items():
        sources.append(_text(session_id, "usage source", source))
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
        plugins,
        states,
        _json(session_id, "config", None if delta.config is None else lash.to_data(delta.config)),
        _json(session_id, "pending input", None if delta.pending is None else list(delta.pending)),
        sources,
        *tokens,
    )
