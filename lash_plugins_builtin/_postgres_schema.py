"""What lash keeps in a Postgres database: its tables, the functions a commit and a lease run as,
the forward migrations that create them, and how a database is checked and migrated.

Tables (one database holds many sessions; every name starts with ``lash_`` so that lash can
share a database, or a schema, with an application):

``lash_sessions``
    One head row per session, as in the SQLite store: ``revision`` (0 for a row a lease created
    before any commit, or the tombstone of a deleted session), ``created_at``/``updated_at``
    (epoch seconds, from the database's clock), ``turns``, ``next_seq`` (the seq the next node
    gets, so a commit never counts nodes), ``frame_start`` (seq of the active frame's boundary),
    ``last_user_message`` (as a JSON string: Postgres text cannot hold every Python string, and
    the listing shows it exactly), the JSON of ``config`` and ``pending``,
    and the lease (``lease_owner``, ``lease_token``, ``lease_expires_at``).
``lash_nodes``
    Append-only graph nodes keyed by ``(session_id, seq)``; ``data`` is the node's JSON text
    (``text``, not ``jsonb``: key order is kept, tool-call arguments go back to the provider as
    they came), ``kind`` its variant tag.
``lash_plugin_states``
    ``(session_id, plugin) -> JSON text``.
``lash_usage_ledger`` / ``lash_usage_totals``
    One row per commit and usage source (with its revision), and their running sums, updated by
    the same commit, so loading or listing never sums a ledger that grows with history.
``lash_migrations``
    ``(id, name, applied_at, lash_version)`` of every migration step applied.

Every write that reads first runs inside one plpgsql function (``lash_commit``,
``lash_acquire_lease``, ``lash_renew_lease``, ``lash_delete_session``): one statement from the
client, so one round trip and one transaction. Times come from the database's clock
(``lash_now()``), so hosts whose clocks disagree still agree on when a lease expires.
"""

from __future__ import annotations

import time
from typing import Any, TypeAlias

import asyncpg
import asyncpg.pool
import attrs

import lash
from lash_plugins_builtin._sqlite_schema import lash_version

#: A connection the schema is read and migrated through (a pooled one, or one of its own).
Connection: TypeAlias = "asyncpg.Connection[Any] | asyncpg.pool.PoolConnectionProxy[Any]"


@attrs.frozen
class Migration:
    """One forward step of the schema; ``id`` orders them and is never reused."""

    id: int
    name: str
    statements: tuple[str, ...]


#: ``pg_advisory_xact_lock`` key held while a database is migrated: the ASCII bytes of
#: "lashmigr", so that two processes opening a new database at once do not both create it.
MIGRATION_LOCK = 0x6C6173686D696772

CREATE_MIGRATIONS_TABLE = """CREATE TABLE IF NOT EXISTS lash_migrations (
    id integer PRIMARY KEY,
    name text NOT NULL,
    applied_at double precision NOT NULL,
    lash_version text NOT NULL
)"""

_TABLES = (
    # fillfactor: every commit updates the head row; room on its page lets Postgres update it
    # in place (a HOT update: no new index entry, no index page to write).
    """CREATE TABLE lash_sessions (
        session_id text PRIMARY KEY,
        revision bigint NOT NULL DEFAULT 0,
        created_at double precision NOT NULL DEFAULT 0,
        updated_at double precision NOT NULL DEFAULT 0,
        turns bigint NOT NULL DEFAULT 0,
        next_seq bigint NOT NULL DEFAULT 0,
        frame_start bigint NOT NULL DEFAULT 0,
        last_user_message text,
        config text,
        pending text,
        lease_owner text NOT NULL,
        lease_token bigint NOT NULL,
        lease_expires_at double precision NOT NULL
    ) WITH (fillfactor = 70)""",
    """CREATE TABLE lash_nodes (
        session_id text NOT NULL,
        seq bigint NOT NULL,
        node_id text NOT NULL,
        kind text NOT NULL,
        frame_id text NOT NULL,
        turn bigint NOT NULL,
        data text NOT NULL,
        PRIMARY KEY (session_id, seq)
    )""",
    """CREATE TABLE lash_plugin_states (
        session_id text NOT NULL,
        plugin text NOT NULL,
        data text NOT NULL,
        PRIMARY KEY (session_id, plugin)
    )""",
    """CREATE TABLE lash_usage_ledger (
        session_id text NOT NULL,
        revision bigint NOT NULL,
        source text NOT NULL,
        input_tokens bigint NOT NULL,
        output_tokens bigint NOT NULL,
        cached_tokens bigint NOT NULL,
        recorded_at double precision NOT NULL,
        PRIMARY KEY (session_id, revision, source)
    )""",
    """CREATE TABLE lash_usage_totals (
        session_id text NOT NULL,
        source text NOT NULL,
        input_tokens bigint NOT NULL,
        output_tokens bigint NOT NULL,
        cached_tokens bigint NOT NULL,
        PRIMARY KEY (session_id, source)
    )""",
)

#: The tables holding a session's rows besides its head (dropped on replace and on delete).
SESSION_TABLES = ("lash_nodes", "lash_plugin_states", "lash_usage_ledger", "lash_usage_totals")

_DROP_SESSION_ROWS = "\n".join(
    f"        DELETE FROM {table} WHERE session_id = p_session;" for table in SESSION_TABLES
)


def _refused(*columns: str) -> str:
    """PL/pgSQL, after a guarded write: when it changed no row, return ``false`` with
    ``columns`` and the lease of the session's head (no row when there is none), and stop."""
    selected = ", ".join((*columns, "s.lease_owner", "s.lease_token", "s.lease_expires_at"))
    return f"""    IF NOT FOUND THEN
        RETURN QUERY SELECT false, {selected}
            FROM lash_sessions AS s WHERE s.session_id = p_session;
        RETURN;
    END IF;"""


_NOW = """CREATE FUNCTION lash_now() RETURNS double precision LANGUAGE sql VOLATILE
    AS $$ SELECT extract(epoch FROM clock_timestamp())::double precision $$"""

#: Take the lease, as ``lash.take_lease`` says: a new session gets token 1; the same owner
#: keeps its token and gets a new expiry; another owner takes an expired (or released) lease
#: with the next token; a live lease of another owner is refused (``granted`` false, with the
#: holder's lease). One upsert: Postgres locks the row while it decides.
_ACQUIRE_LEASE = f"""CREATE FUNCTION lash_acquire_lease(
    p_session text, p_owner text, p_ttl double precision)
RETURNS TABLE (granted boolean, holder text, holder_token bigint,
    holder_expires_at double precision)
LANGUAGE plpgsql AS $$
DECLARE
    v_now double precision := lash_now();
BEGIN
    RETURN QUERY
    INSERT INTO lash_sessions AS s (session_id, lease_owner, lease_token, lease_expires_at)
    VALUES (p_session, p_owner, 1, v_now + p_ttl)
    ON CONFLICT (session_id) DO UPDATE SET
        lease_owner = excluded.lease_owner,
        lease_token = s.lease_token
            + CASE WHEN s.lease_owner = excluded.lease_owner THEN 0 ELSE 1 END,
        lease_expires_at = excluded.lease_expires_at
    WHERE s.lease_owner = excluded.lease_owner OR s.lease_expires_at <= v_now
    RETURNING true, s.lease_owner, s.lease_token, s.lease_expires_at;
{_refused()}
END $$"""

#: Extend the lease if it is still the current one (even expired; not released). Refused:
#: ``renewed`` false with the current lease, for the client to say why.
_RENEW_LEASE = f"""CREATE FUNCTION lash_renew_lease(
    p_session text, p_owner text, p_token bigint, p_ttl double precision)
RETURNS TABLE (renewed boolean, holder text, holder_token bigint,
    holder_expires_at double precision)
LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY
    UPDATE lash_sessions AS s SET lease_expires_at = lash_now() + p_ttl
    WHERE s.session_id = p_session AND s.lease_owner = p_owner AND s.lease_token = p_token
        AND s.lease_expires_at <> 0
    RETURNING true, s.lease_owner, s.lease_token, s.lease_expires_at;
{_refused()}
END $$"""

#: One whole commit. The head row is updated first, guarded by the lease and the expected
#: revision (compare-and-swap): the update locks the row, so a concurrent commit of the same
#: session waits for this one and then finds the revision moved. Refused, the function returns
#: ``committed`` false with the head's revision and lease, for the client to say why; the
#: transaction then holds no change. Accepted, the delta's rows follow, numbered from the
#: head's ``next_seq``: each statement touches only the delta's rows (and, for a replace, the
#: session's old ones), never the history.
_COMMIT = f"""CREATE FUNCTION lash_commit(
    p_session text, p_owner text, p_token bigint, p_expected bigint,
    p_replace boolean, p_turns bigint,
    p_node_ids text[], p_kinds text[], p_frame_ids text[], p_node_turns bigint[],
    p_datas text[],
    p_frame_offset bigint,
    p_last_user text,
    p_state_plugins text[], p_state_datas text[],
    p_config text, p_pending text,
    p_usage_sources text[], p_usage_input bigint[], p_usage_output bigint[],
    p_usage_cached bigint[])
RETURNS TABLE (committed boolean, head_revision bigint, holder text, holder_token bigint,
    holder_expires_at double precision)
LANGUAGE plpgsql AS $$
DECLARE
    v_now double precision := lash_now();
    v_count bigint := coalesce(cardinality(p_node_ids), 0);
    v_first bigint;
    v_revision bigint;
BEGIN
    UPDATE lash_sessions AS s SET
        revision = s.revision + 1,
        created_at = CASE WHEN s.revision = 0 THEN v_now ELSE s.created_at END,
        updated_at = v_now,
        turns = CASE WHEN p_replace THEN 0 ELSE s.turns END + p_turns,
        next_seq = CASE WHEN p_replace THEN 0 ELSE s.next_seq END + v_count,
        frame_start = CASE
            WHEN p_frame_offset IS NOT NULL
                THEN CASE WHEN p_replace THEN 0 ELSE s.next_seq END + p_frame_offset
            WHEN p_replace THEN 0
            ELSE s.frame_start END,
        last_user_message = CASE
            WHEN p_last_user IS NOT NULL THEN p_last_user
            WHEN p_replace THEN NULL
            ELSE s.last_user_message END,
        config = CASE
            WHEN p_config IS NOT NULL THEN p_config WHEN p_replace THEN NULL ELSE s.config END,
        pending = CASE
            WHEN p_pending IS NOT NULL THEN p_pending WHEN p_replace THEN NULL ELSE s.pending END
    WHERE s.session_id = p_session AND s.revision = p_expected
        AND s.lease_owner = p_owner AND s.lease_token = p_token AND s.lease_expires_at <> 0
    RETURNING s.next_seq - v_count, s.revision INTO v_first, v_revision;
{_refused("s.revision")}
    IF p_replace AND v_revision > 1 THEN
{_DROP_SESSION_ROWS}
    END IF;
    IF v_count > 0 THEN
        INSERT INTO lash_nodes (session_id, seq, node_id, kind, frame_id, turn, data)
        SELECT p_session, v_first + u.ord - 1, u.node_id, u.kind, u.frame_id, u.turn, u.data
        FROM unnest(p_node_ids, p_kinds, p_frame_ids, p_node_turns, p_datas)
            WITH ORDINALITY AS u (node_id, kind, frame_id, turn, data, ord);
    END IF;
    IF cardinality(p_state_plugins) > 0 THEN
        INSERT INTO lash_plugin_states AS p (session_id, plugin, data)
        SELECT p_session, u.plugin, u.data FROM unnest(p_state_plugins, p_state_datas)
            AS u (plugin, data)
        ON CONFLICT (session_id, plugin) DO UPDATE SET data = excluded.data;
    END IF;
    IF cardinality(p_usage_sources) > 0 THEN
        INSERT INTO lash_usage_ledger (session_id, revision, source, input_tokens,
            output_tokens, cached_tokens, recorded_at)
        SELECT p_session, v_revision, u.source, u.i, u.o, u.c, v_now
        FROM unnest(p_usage_sources, p_usage_input, p_usage_output, p_usage_cached)
            AS u (source, i, o, c);
        INSERT INTO lash_usage_totals AS t (session_id, source, input_tokens, output_tokens,
            cached_tokens)
        SELECT p_session, u.source, u.i, u.o, u.c
        FROM unnest(p_usage_sources, p_usage_input, p_usage_output, p_usage_cached)
            AS u (source, i, o, c)
        ON CONFLICT (session_id, source) DO UPDATE SET
            input_tokens = t.input_tokens + excluded.input_tokens,
            output_tokens = t.output_tokens + excluded.output_tokens,
            cached_tokens = t.cached_tokens + excluded.cached_tokens;
    END IF;
    RETURN QUERY SELECT true, v_revision, p_owner, p_token, 0::double precision;
END $$"""

#: Delete a committed session unless its lease is live: ``'unknown'``, ``'busy'`` (with the
#: holder) or ``'deleted'``. The head row stays as a tombstone at revision 0 with its lease, so
#: the next holder's fencing token is still higher than any handed out before.
_DELETE_SESSION = f"""CREATE FUNCTION lash_delete_session(p_session text)
RETURNS TABLE (outcome text, holder text, holder_expires_at double precision)
LANGUAGE plpgsql AS $$
DECLARE
    v_head lash_sessions%ROWTYPE;
BEGIN
    SELECT * INTO v_head FROM lash_sessions WHERE session_id = p_session FOR UPDATE;
    IF NOT FOUND OR v_head.revision = 0 THEN
        RETURN QUERY SELECT 'unknown'::text, NULL::text, NULL::double precision;
        RETURN;
    END IF;
    IF v_head.lease_expires_at > lash_now() THEN
        RETURN QUERY SELECT 'busy'::text, v_head.lease_owner, v_head.lease_expires_at;
        RETURN;
    END IF;
{_DROP_SESSION_ROWS}
    UPDATE lash_sessions SET revision = 0, created_at = 0, updated_at = 0, turns = 0,
        next_seq = 0, frame_start = 0, last_user_message = NULL, config = NULL,
        pending = NULL
    WHERE session_id = p_session;
    RETURN QUERY SELECT 'deleted'::text, NULL::text, NULL::double precision;
END $$"""

#: Every migration this lash knows, in order. Append new steps; never edit or renumber one.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "initial schema",
        (*_TABLES, _NOW, _ACQUIRE_LEASE, _RENEW_LEASE, _COMMIT, _DELETE_SESSION),
    ),
)

#: The newest migration id this lash knows.
LATEST = MIGRATIONS[-1].id


# -- statements ------------------------------------------------------------------------------

ACQUIRE_LEASE = "SELECT * FROM lash_acquire_lease($1, $2, $3)"
RENEW_LEASE = "SELECT * FROM lash_renew_lease($1, $2, $3, $4)"
RELEASE_LEASE = """UPDATE lash_sessions SET lease_expires_at = 0
    WHERE session_id = $1 AND lease_owner = $2 AND lease_token = $3"""
COMMIT = f"SELECT * FROM lash_commit({', '.join(f'${i}' for i in range(1, 22))})"
DELETE_SESSION = "SELECT * FROM lash_delete_session($1)"

#: A session as ``load`` returns it, in one statement (one snapshot, one round trip): the head,
#: the nodes (of the active frame, from ``frame_start``, unless ``$2``), the plugin states and
#: the usage totals, as arrays.
LOAD = """SELECT s.revision, s.created_at, s.updated_at, s.turns,
    s.config, s.pending,
    ARRAY(SELECT n.data FROM lash_nodes AS n WHERE n.session_id = s.session_id
        AND n.seq >= CASE WHEN $2 THEN 0 ELSE s.frame_start END ORDER BY n.seq),
    ARRAY(SELECT p.plugin FROM lash_plugin_states AS p
        WHERE p.session_id = s.session_id ORDER BY p.plugin),
    ARRAY(SELECT p.data FROM lash_plugin_states AS p
        WHERE p.session_id = s.session_id ORDER BY p.plugin),
    ARRAY(SELECT u.source FROM lash_usage_totals AS u
        WHERE u.session_id = s.session_id ORDER BY u.source),
    ARRAY(SELECT ARRAY[u.input_tokens, u.output_tokens, u.cached_tokens]
        FROM lash_usage_totals AS u WHERE u.session_id = s.session_id ORDER BY u.source)
    FROM lash_sessions AS s WHERE s.session_id = $1"""

#: Committed sessions (revision > 0) with their usage totals, most recently updated first.
LIST_SESSIONS = """SELECT s.session_id, s.created_at, s.updated_at, s.turns, s.revision,
    s.last_user_message, COALESCE(SUM(u.input_tokens), 0)::bigint,
    COALESCE(SUM(u.output_tokens), 0)::bigint, COALESCE(SUM(u.cached_tokens), 0)::bigint
    FROM lash_sessions AS s LEFT JOIN lash_usage_totals AS u ON u.session_id = s.session_id
    WHERE s.revision > 0
    GROUP BY s.session_id
    ORDER BY s.updated_at DESC, s.session_id"""


# -- migrating a database ---------------------------------------------------------------------


async def applied_migrations(conn: Connection, where: str) -> dict[int, str]:
    """The migration steps applied to the database (none for a new one).

    :raises lash.ConfigError: for a database of a newer lash (naming the step and the version
        to upgrade to), or of an incompatible build; nothing is written to it.
    """
    if await conn.fetchval("SELECT to_regclass('lash_migrations') IS NULL"):
        return {}
    rows = await conn.fetch("SELECT id, name, lash_version FROM lash_migrations ORDER BY id")
    applied = {int(r["id"]): str(r["name"]) for r in rows}
    if rows and rows[-1]["id"] > LATEST:
        newest = rows[-1]
        raise lash.ConfigError(
            f"the Postgres database {where} was migrated by a newer lash: its schema has "
            f"migration {newest['id']} ({newest['name']!r}, applied by lash "
            f"{newest['lash_version']}) but this lash ({lash_version()}) knows migrations up to "
            f"{LATEST}; upgrade lash to {newest['lash_version']} or later on every host that "
            "uses this database (lash never downgrades or recreates a database)"
        )
    known = {m.id: m.name for m in MIGRATIONS}
    for mid, name in applied.items():
        if known.get(mid) != name:
            raise lash.ConfigError(
                f"the Postgres database {where} has schema migration {mid} {name!r} but this "
                f"lash's is {known.get(mid)!r}: it was migrated by an incompatible lash build; "
                "use the lash that migrated it"
            )
    return applied


async def migrate(conn: Connection, where: str) -> None:
    """Bring the database's schema forward (nothing to do, one query, when it is current).

    The steps run in one transaction, under the advisory lock :data:`MIGRATION_LOCK`: a second
    process opening the database at the same time waits for the first, then finds the steps
    applied. Postgres DDL is transactional, so a failed step leaves nothing. The lock is a
    session lock taken *before* the transaction starts: a transaction that began before
    another process's migration committed would still see its tables as missing (the
    backend's catalog cache is refreshed when a transaction starts, not when it waits for a
    lock). Should this fail half-way, the caller closes the connection, which drops the lock.
    """
    if set(await applied_migrations(conn, where)) >= {m.id for m in MIGRATIONS}:
        return
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
    try:
        async with conn.transaction():
            # Read again under the lock: another process may have migrated while we waited.
            applied = await applied_migrations(conn, where)
            await conn.execute(CREATE_MIGRATIONS_TABLE)
            now = time.time()
            for migration in MIGRATIONS:
                if migration.id in applied:
                    continue
                for statement in migration.statements:
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO lash_migrations (id, name, applied_at, lash_version) "
                    "VALUES ($1, $2, $3, $4)",
                    migration.id,
                    migration.name,
                    now,
                    lash_version(),
                )
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
