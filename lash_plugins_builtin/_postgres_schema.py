"""What lash keeps in a Postgres database: its tables, the functions every write runs as, the
forward migrations that create them, and how a database is checked and migrated.

Tables (one database holds many sessions; every name starts with ``lash_`` so that lash can
share a database, or a schema, with an application):

``lash_sessions``
    One head row per session: ``revision`` (0 for a row that a lease or queued input created
    before any commit, or the tombstone of a deleted session), ``created_at``/``updated_at``
    (epoch seconds, from the database's clock), ``turns``, ``next_seq`` (the seq the next node
    gets, so a commit never counts nodes), ``frame_start`` (seq of the active frame's boundary),
    ``last_user_message`` (as a JSON string: Postgres text cannot hold every Python string, and
    the listing shows it exactly), ``status`` (how the last turn ended), the JSON of ``config``;
    the lease (``lease_owner``, ``lease_token``, ``lease_expires_at``; 0 once released) and the
    turn it runs (``running_turn``); and the counters the mailbox and the event log number their
    rows from (``input_seq``, ``command_seq``, ``event_seq``): a writer takes numbers from them
    under the head row's lock, so a session's events are numbered without gaps or repeats
    however many connections write at once.
``lash_nodes``
    Append-only graph nodes keyed by ``(session_id, seq)``; ``data`` is the node's JSON text
    (``text``, not ``jsonb``: key order is kept, tool-call arguments go back to the provider as
    they came), ``kind`` its variant tag.
``lash_plugin_states``
    ``(session_id, plugin) -> JSON text``.
``lash_usage_ledger`` / ``lash_usage_totals``
    One row per commit and usage source (with its revision), and their running sums, updated by
    the same commit, so loading or listing never sums a ledger that grows with history.
``lash_inputs``
    The mailbox's input, ``(session_id, seq)``, with its ``id`` and idempotency ``key`` unique in
    the session; ``text_json``/``items_json`` as JSON; ``state`` as stored (``claimed`` with the
    ``claim_token`` of the lease that claimed it: the claim is live only while that lease is the
    session's live lease, see :data:`INPUT_STATE`).
``lash_commands``
    Queued session commands, ``(session_id, seq)``, ``key`` unique in the session.
``lash_turns`` / ``lash_cancel_requests``
    Turn records and cancellation requests, by ``(session_id, turn_id)``.
``lash_events``
    The event log, ``(session_id, seq)`` with ``type``, ``data`` (JSON text) and ``at``; each
    write that logs keeps the newest ``events_kept`` of the session, younger than
    ``events_max_age`` (the replay window).
``lash_processes``
    Process records (migration 2), in start order (``seq``), by ``id``; ``key`` is unique in the
    database (keys are global). The columns are :class:`lash.ProcessRecord`'s fields
    (:data:`PROCESS_COLUMNS`; ``payload``, ``result``, ``progress`` as JSON text). Partial
    indexes keep what a claim reads small: the pending ones, the claims by expiry, the finished
    ones not notified yet. A claim locks the row it takes with ``FOR UPDATE SKIP LOCKED``.
``lash_blobs``
    Content-addressed bytes (migration 4): the images of turn input, by sha256, written once
    whatever the number of messages (of any session) that refer to them.
``lash_watchers``
    Who waits on which session's events (migration 5, unlogged): the server process of a
    store's listening connection, by session.
``lash_migrations``
    ``(id, name, applied_at, lash_version)`` of every migration step applied.

Every write is one plpgsql function call (``lash_commit``, ``lash_acquire_lease``,
``lash_claim_inputs``, ``lash_enqueue_input``...): one statement from the client, so one round
trip and one transaction. Times come from the database's clock (``lash_now()``), so hosts whose
clocks disagree still agree on when a lease expires. Every write that logs events into a
session with a watcher sends ``NOTIFY lash_events`` with the session id (when the store's
``notify`` option is on), which ``PostgresStore.wait_events`` listens for (from migration 5;
before it, every such write notified). The functions that log on every turn
(``lash_acquire_lease``, ``lash_commit``) do the logging inline from migration 5 on, rather
than calling ``lash_log``, and from migration 6 on run 9 statements a turn between them
instead of 17 (each statement a function runs costs the server an executor's start and end).
"""

from __future__ import annotations

import time
from typing import Any, TypeAlias

import asyncpg
import asyncpg.pool
import attrs

import lash
from lash_plugins_builtin import _sqlite_schema as sqlite_schema
from lash_plugins_builtin._sqlite_schema import lash_version, upgrade_to

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

#: The channel every write that logs events into a watched session notifies, with the
#: session id as the payload.
CHANNEL = "lash_events"

#: SQLSTATEs lash's functions raise (class ``LS``, which Postgres does not use): the client
#: turns each into lash's error; the transaction is rolled back, so nothing was written.
CLAIM_LOST = "LS001"  # DETAIL: the input id the commit settles that its lease did not claim
COMMAND_GONE = "LS002"  # DETAIL: the command id the commit applies that is not pending
TURN_COMMITTED = "LS003"  # DETAIL: the head revision; the turn id already has a record
KEY_CONFLICT = "LS004"  # DETAIL: the key; HINT: the id of the input already queued under it
KEY_RACE = "LS005"  # an enqueue lost a race for its key with another: try again

CREATE_MIGRATIONS_TABLE = """CREATE TABLE IF NOT EXISTS lash_migrations (
    id integer PRIMARY KEY,
    name text NOT NULL,
    applied_at double precision NOT NULL,
    lash_version text NOT NULL
)"""

_TABLES = (
    # fillfactor: every commit, lease and enqueue updates the head row; room on its page lets
    # Postgres update it in place (a HOT update: no new index entry, no index page to write).
    """CREATE TABLE lash_sessions (
        session_id text PRIMARY KEY,
        revision bigint NOT NULL DEFAULT 0,
        created_at double precision NOT NULL DEFAULT 0,
        updated_at double precision NOT NULL DEFAULT 0,
        turns bigint NOT NULL DEFAULT 0,
        next_seq bigint NOT NULL DEFAULT 0,
        frame_start bigint NOT NULL DEFAULT 0,
        last_user_message text,
        status text,
        config text,
        lease_owner text,
        lease_token bigint NOT NULL DEFAULT 0,
        lease_expires_at double precision NOT NULL DEFAULT 0,
        running_turn text,
        input_seq bigint NOT NULL DEFAULT 0,
        command_seq bigint NOT NULL DEFAULT 0,
        event_seq bigint NOT NULL DEFAULT 0
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
    """CREATE TABLE lash_inputs (
        session_id text NOT NULL,
        seq bigint NOT NULL,
        id text NOT NULL,
        key text,
        text_json text NOT NULL,
        items_json text NOT NULL,
        ingress text NOT NULL,
        source text,
        state text NOT NULL,
        claim_token bigint,
        created_at double precision NOT NULL,
        settled_at double precision,
        turn_id text,
        PRIMARY KEY (session_id, seq),
        UNIQUE (session_id, id),
        UNIQUE (session_id, key)
    )""",
    # What claims, counts and listings scan: the open inputs only, however many were settled.
    """CREATE INDEX lash_inputs_open ON lash_inputs (session_id, seq)
        WHERE state IN ('pending', 'claimed')""",
    """CREATE TABLE lash_commands (
        session_id text NOT NULL,
        seq bigint NOT NULL,
        id text NOT NULL,
        key text NOT NULL,
        name text NOT NULL,
        args_json text NOT NULL,
        source text,
        state text NOT NULL,
        created_at double precision NOT NULL,
        applied_at double precision,
        PRIMARY KEY (session_id, seq),
        UNIQUE (session_id, id),
        UNIQUE (session_id, key)
    )""",
    """CREATE INDEX lash_commands_pending ON lash_commands (session_id, seq)
        WHERE state = 'pending'""",
    """CREATE TABLE lash_turns (
        session_id text NOT NULL,
        turn_id text NOT NULL,
        turn_index bigint NOT NULL,
        outcome text NOT NULL,
        revision bigint NOT NULL,
        reason_json text,
        result_json text NOT NULL,
        committed_at double precision NOT NULL,
        PRIMARY KEY (session_id, turn_id)
    )""",
    """CREATE TABLE lash_cancel_requests (
        session_id text NOT NULL,
        turn_id text NOT NULL,
        origin text NOT NULL,
        reason_json text,
        requested_at double precision NOT NULL,
        PRIMARY KEY (session_id, turn_id)
    )""",
    """CREATE TABLE lash_events (
        session_id text NOT NULL,
        seq bigint NOT NULL,
        type text NOT NULL,
        data text NOT NULL,
        at double precision NOT NULL,
        PRIMARY KEY (session_id, seq)
    )""",
)

#: The tables of a session's graph (dropped by a commit that replaces the session).
GRAPH_TABLES = ("lash_nodes", "lash_plugin_states", "lash_usage_ledger", "lash_usage_totals")
#: Every table holding a session's rows besides its head (dropped when it is deleted).
SESSION_TABLES = (
    *GRAPH_TABLES,
    "lash_inputs",
    "lash_commands",
    "lash_turns",
    "lash_cancel_requests",
    "lash_events",
)


def _drop_rows(tables: tuple[str, ...]) -> str:
    return "\n".join(
        f"        DELETE FROM {table} WHERE session_id = p_session;" for table in tables
    )


#: The columns of an input as the client reads it (``state`` is added: the effective one).
INPUT_COLUMNS = (
    "id",
    "seq",
    "text_json",
    "items_json",
    "key",
    "ingress",
    "source",
    "created_at",
    "settled_at",
    "turn_id",
)
#: The columns of a command as the client reads it.
COMMAND_COLUMNS = (
    "id",
    "seq",
    "name",
    "key",
    "args_json",
    "source",
    "state",
    "created_at",
    "applied_at",
)


def _columns(prefix: str, columns: tuple[str, ...]) -> str:
    return ", ".join(f"{prefix}.{column}" for column in columns)


def _declare_columns(columns: tuple[str, ...], types: dict[str, str]) -> str:
    return ", ".join(f"{column} {types.get(column, 'text')}" for column in columns)


_TYPES = {
    "seq": "bigint",
    "created_at": "double precision",
    "settled_at": "double precision",
    "applied_at": "double precision",
}
#: Nulls in place of an input's columns and state (for a row that names no input).
_NO_INPUT = ", ".join(f"NULL::{_TYPES.get(column, 'text')}" for column in (*INPUT_COLUMNS, "state"))
#: ``RETURNS TABLE`` columns of the functions that hand inputs back (``o_``: plpgsql would
#: otherwise confuse them with the table's columns of the same names).
_INPUT_OUT = ", ".join(
    f"o_{column} {_TYPES.get(column, 'text')}" for column in (*INPUT_COLUMNS, "state")
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

#: An input's state as everyone sees it (``lash.store.effective_state``): a claim whose lease
#: is not the session's live lease (released, expired, taken over) is pending again. An inlined
#: SQL expression: the lease is the head row's, ``p_now`` the database's time.
_INPUT_STATE = """CREATE FUNCTION lash_input_state(
    p_state text, p_claim bigint, p_lease_token bigint, p_lease_expires double precision,
    p_now double precision) RETURNS text LANGUAGE sql IMMUTABLE
    AS $$ SELECT CASE WHEN p_state = 'claimed'
        AND NOT coalesce(p_claim = p_lease_token AND p_lease_expires > p_now, false)
        THEN 'pending' ELSE p_state END $$"""

#: The JSON of an input as ``lash.to_data(PendingInput)`` gives it (the data of the
#: ``input_*`` events), from its row and the state to show. Text concatenation, not
#: ``json_build_object``: the text and items are JSON already, and Postgres's ``jsonb`` would
#: refuse the ``\\u0000`` escapes they may hold.
_INPUT_JSON = """CREATE FUNCTION lash_input_json(i lash_inputs, p_state text) RETURNS text
    LANGUAGE sql STABLE AS $$ SELECT '{"id":' || to_json(i.id)
    || ',"session_id":' || to_json(i.session_id) || ',"seq":' || i.seq
    || ',"text":' || i.text_json || ',"items":' || i.items_json
    || ',"key":' || coalesce(to_json(i.key)::text, 'null')
    || ',"ingress":' || to_json(i.ingress)
    || ',"source":' || coalesce(to_json(i.source)::text, 'null')
    || ',"state":' || to_json(p_state) || ',"created_at":' || to_json(i.created_at)
    || ',"settled_at":' || coalesce(to_json(i.settled_at)::text, 'null')
    || ',"turn_id":' || coalesce(to_json(i.turn_id)::text, 'null') || '}' $$"""

#: The JSON of a command as ``lash.to_data(QueuedCommand)`` gives it.
_COMMAND_JSON = """CREATE FUNCTION lash_command_json(c lash_commands) RETURNS text
    LANGUAGE sql STABLE AS $$ SELECT '{"id":' || to_json(c.id)
    || ',"session_id":' || to_json(c.session_id) || ',"seq":' || c.seq
    || ',"name":' || to_json(c.name) || ',"key":' || to_json(c.key)
    || ',"args":' || c.args_json
    || ',"source":' || coalesce(to_json(c.source)::text, 'null')
    || ',"state":' || to_json(c.state) || ',"created_at":' || to_json(c.created_at)
    || ',"applied_at":' || coalesce(to_json(c.applied_at)::text, 'null') || '}' $$"""

#: Append events ``p_last - n + 1 .. p_last`` (the caller took the numbers from the head row,
#: under its lock), keep the replay window (the newest ``p_keep``, younger than ``p_max_age``
#: seconds: ``seq`` and ``at`` grow together, so what is too old is a prefix, found by walking
#: the index from the session's oldest event to its first young one) and notify listeners.
_LOG = """CREATE FUNCTION lash_log(
    p_session text, p_last bigint, p_types text[], p_datas text[], p_now double precision,
    p_keep bigint, p_max_age double precision, p_notify boolean)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_count bigint := coalesce(cardinality(p_types), 0);
    v_oldest bigint;
    v_oldest_at double precision;
BEGIN
    IF v_count = 0 THEN
        RETURN;
    END IF;
    INSERT INTO lash_events (session_id, seq, type, data, at)
    SELECT p_session, p_last - v_count + u.ord, u.type, u.data, p_now
    FROM unnest(p_types, p_datas) WITH ORDINALITY AS u (type, data, ord);
    -- The oldest event kept says whether anything is due (one index probe); only then is
    -- the window's floor looked for and everything below it deleted.
    SELECT e.seq, e.at INTO v_oldest, v_oldest_at FROM lash_events AS e
    WHERE e.session_id = p_session ORDER BY e.seq LIMIT 1;
    IF v_oldest <= p_last - p_keep OR v_oldest_at < p_now - p_max_age THEN
        DELETE FROM lash_events AS e WHERE e.session_id = p_session AND e.seq < greatest(
            p_last + 1 - p_keep,
            (SELECT min(y.seq) FROM lash_events AS y
                WHERE y.session_id = p_session AND y.at >= p_now - p_max_age));
    END IF;
    IF p_notify THEN
        PERFORM pg_notify('lash_events', p_session);
    END IF;
END $$"""

#: Leases, claims and releases matter only while the lease lives, and the commit that ends an
#: execution is durable (its WAL flush covers everything written before it): their own
#: transactions need not wait for a flush of their own (unless ``p_durable``). See
#: ``PostgresStore`` ("Durability").
_ASYNC = """    IF NOT p_durable THEN
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;"""

#: The effective-pending inputs and the pending commands of a session, under lease
#: ``(v_token, v_expires)``.
_COUNTS = """(SELECT count(*) FROM lash_inputs AS i
            WHERE i.session_id = p_session AND i.state IN ('pending', 'claimed')
            AND lash_input_state(i.state, i.claim_token, v_token, v_expires, v_now) = 'pending'),
        (SELECT count(*) FROM lash_commands AS c
            WHERE c.session_id = p_session AND c.state = 'pending')"""

#: PL/pgSQL, after a lease write guarded by its ``WHERE``: when it changed no row, return
#: ``false`` with the session's current lease and revision (no row when there is none), and stop.
_LEASE_REFUSED = """    IF NOT FOUND THEN
        RETURN QUERY SELECT false, s.lease_owner, s.lease_token, s.lease_expires_at,
            s.revision, 0::bigint, 0::bigint
            FROM lash_sessions AS s WHERE s.session_id = p_session;
        RETURN;
    END IF;"""

#: Take the lease, as ``lash.store.take_lease`` says: a new session gets token 1; the owner's
#: own live lease keeps its token and gets a new expiry; anything else held by nobody live (no
#: lease, released, expired), or the lease ``p_take_*`` names (the caller proved its holder
#: dead), goes to the next token; another owner's live lease is refused (``granted`` false,
#: with the holder's lease). One upsert: Postgres locks the row while it decides. Granted, the
#: running turn is recorded, ``p_types``/``p_datas`` are logged, and the head revision and the
#: pending counts come back.
_ACQUIRE_LEASE = f"""CREATE FUNCTION lash_acquire_lease(
    p_session text, p_owner text, p_ttl double precision, p_take_owner text,
    p_take_token bigint, p_turn text, p_types text[], p_datas text[], p_keep bigint,
    p_max_age double precision, p_notify boolean, p_durable boolean)
RETURNS TABLE (granted boolean, holder text, holder_token bigint,
    holder_expires_at double precision, head_revision bigint, pending_inputs bigint,
    pending_commands bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_now double precision := lash_now();
    v_logged bigint := coalesce(cardinality(p_types), 0);
    v_token bigint;
    v_expires double precision;
    v_revision bigint;
    v_last bigint;
BEGIN
{_ASYNC}
    INSERT INTO lash_sessions AS s (session_id, lease_owner, lease_token, lease_expires_at,
        running_turn, event_seq)
    VALUES (p_session, p_owner, 1, v_now + p_ttl, p_turn, v_logged)
    ON CONFLICT (session_id) DO UPDATE SET
        lease_token = CASE WHEN s.lease_owner = p_owner AND s.lease_expires_at > v_now
            THEN s.lease_token ELSE s.lease_token + 1 END,
        lease_owner = p_owner,
        lease_expires_at = v_now + p_ttl,
        running_turn = p_turn,
        event_seq = s.event_seq + v_logged
    WHERE s.lease_owner IS NULL OR s.lease_owner = p_owner OR s.lease_expires_at <= v_now
        OR (s.lease_owner = p_take_owner AND s.lease_token = p_take_token)
    RETURNING s.lease_token, s.lease_expires_at, s.revision, s.event_seq
        INTO v_token, v_expires, v_revision, v_last;
{_LEASE_REFUSED}
    PERFORM lash_log(p_session, v_last, p_types, p_datas, v_now, p_keep, p_max_age, p_notify);
    RETURN QUERY SELECT true, p_owner, v_token, v_expires, v_revision,
        {_COUNTS};
END $$"""

#: Extend the lease if it is still the current one (even expired; not released). Refused:
#: ``renewed`` false with the current lease, for the client to say why.
_RENEW_LEASE = f"""CREATE FUNCTION lash_renew_lease(
    p_session text, p_owner text, p_token bigint, p_ttl double precision, p_durable boolean)
RETURNS TABLE (renewed boolean, holder text, holder_token bigint,
    holder_expires_at double precision, head_revision bigint, pending_inputs bigint,
    pending_commands bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_now double precision := lash_now();
    v_token bigint;
    v_expires double precision;
    v_revision bigint;
BEGIN
{_ASYNC}
    UPDATE lash_sessions AS s SET lease_expires_at = v_now + p_ttl
    WHERE s.session_id = p_session AND s.lease_owner = p_owner AND s.lease_token = p_token
        AND s.lease_expires_at <> 0
    RETURNING s.lease_token, s.lease_expires_at, s.revision INTO v_token, v_expires, v_revision;
{_LEASE_REFUSED}
    RETURN QUERY SELECT true, p_owner, v_token, v_expires, v_revision,
        {_COUNTS};
END $$"""

#: Give the lease up if it is still the current one; the token stays (as a lease that expired
#: at 0), so the next holder's is higher. Its claims are pending again (their token is no
#: longer the live lease's).
_RELEASE_LEASE = f"""CREATE FUNCTION lash_release_lease(
    p_session text, p_owner text, p_token bigint, p_durable boolean)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
{_ASYNC}
    UPDATE lash_sessions SET lease_expires_at = 0, running_turn = NULL
    WHERE session_id = p_session AND lease_owner = p_owner AND lease_token = p_token;
END $$"""

#: One whole commit. The head row is updated first, guarded by the lease and the expected
#: revision (compare-and-swap): the update locks the row, so a concurrent commit of the same
#: session waits for this one and then finds the revision moved, and every other writer of the
#: session (leases, the mailbox) waits too. Refused, the function returns ``committed`` false
#: with the head's revision and lease, for the client to say why; the transaction then holds no
#: change. Then the checks that need the lock (the inputs settled are claimed by this lease,
#: the commands applied are pending, the turn id is new, a queued key is not taken by other
#: content): a failed one raises (an ``LS`` SQLSTATE), which rolls the head update back too.
#: Then the delta's rows, numbered from the head's counters: each statement touches only the
#: delta's rows (and, for a replace, the session's old ones), never the history.
_COMMIT = f"""CREATE FUNCTION lash_commit(
    p_session text, p_owner text, p_token bigint, p_expected bigint,
    p_replace boolean, p_turns bigint,
    p_node_ids text[], p_kinds text[], p_frame_ids text[], p_node_turns bigint[],
    p_datas text[],
    p_frame_offset bigint,
    p_last_user text, p_status text,
    p_state_plugins text[], p_state_datas text[],
    p_config text,
    p_usage_sources text[], p_usage_input bigint[], p_usage_output bigint[],
    p_usage_cached bigint[],
    p_claimed text[], p_applied text[],
    p_enqueue_ids text[], p_enqueue_keys text[], p_enqueue_texts text[],
    p_enqueue_items text[], p_enqueue_ingress text[], p_enqueue_sources text[],
    p_turn_id text, p_turn_index bigint, p_turn_outcome text, p_turn_reason text,
    p_turn_result text,
    p_event_types text[], p_event_datas text[],
    p_release boolean, p_keep bigint, p_max_age double precision, p_notify boolean,
    p_parent text, p_rollup_sessions text[], p_rollup_sources text[], p_rollup_input bigint[],
    p_rollup_output bigint[], p_rollup_cached bigint[])
RETURNS TABLE (committed boolean, head_revision bigint, holder text, holder_token bigint,
    holder_expires_at double precision)
LANGUAGE plpgsql AS $$
DECLARE
    v_now double precision := lash_now();
    v_count bigint := coalesce(cardinality(p_node_ids), 0);
    v_enqueue bigint := coalesce(cardinality(p_enqueue_ids), 0);
    v_queued bigint := v_enqueue;
    v_first bigint;
    v_revision bigint;
    v_input_seq bigint;
    v_last bigint;
    v_missing text;
    v_key text;
    v_existing text;
    v_datas text[];
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
        status = CASE
            WHEN p_status IS NOT NULL THEN p_status WHEN p_replace THEN NULL ELSE s.status END,
        config = CASE
            WHEN p_config IS NOT NULL THEN p_config WHEN p_replace THEN NULL ELSE s.config END,
        -- Numbers for every queued input and event; given back below in the rare case of a
        -- queued key that turns out to be there already.
        input_seq = s.input_seq + v_enqueue,
        event_seq = s.event_seq + v_enqueue + coalesce(cardinality(p_event_types), 0),
        lease_expires_at = CASE WHEN p_release THEN 0 ELSE s.lease_expires_at END,
        running_turn = CASE WHEN p_release THEN NULL ELSE s.running_turn END,
        parent_id = COALESCE(p_parent, s.parent_id)
    WHERE s.session_id = p_session AND s.revision = p_expected
        AND s.lease_owner = p_owner AND s.lease_token = p_token AND s.lease_expires_at <> 0
    RETURNING s.next_seq - v_count, s.revision, s.input_seq, s.event_seq
        INTO v_first, v_revision, v_input_seq, v_last;
{_refused("s.revision")}
    IF cardinality(p_claimed) > 0 THEN
        SELECT c INTO v_missing FROM unnest(p_claimed) AS c
        WHERE NOT EXISTS (SELECT 1 FROM lash_inputs AS i WHERE i.session_id = p_session
            AND i.id = c AND i.state = 'claimed' AND i.claim_token = p_token)
        LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'an input the commit settles is not claimed by its lease'
                USING ERRCODE = '{CLAIM_LOST}', DETAIL = v_missing;
        END IF;
    END IF;
    IF cardinality(p_applied) > 0 THEN
        SELECT c INTO v_missing FROM unnest(p_applied) AS c
        WHERE NOT EXISTS (SELECT 1 FROM lash_commands AS k WHERE k.session_id = p_session
            AND k.id = c AND k.state = 'pending')
        LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'a command the commit applies is not pending'
                USING ERRCODE = '{COMMAND_GONE}', DETAIL = v_missing;
        END IF;
    END IF;
    IF p_turn_id IS NOT NULL THEN
        INSERT INTO lash_turns (session_id, turn_id, turn_index, outcome, revision, reason_json,
            result_json, committed_at)
        VALUES (p_session, p_turn_id, p_turn_index, p_turn_outcome, v_revision, p_turn_reason,
            p_turn_result, v_now)
        ON CONFLICT (session_id, turn_id) DO NOTHING;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'the turn has a record already'
                USING ERRCODE = '{TURN_COMMITTED}', DETAIL = (v_revision - 1)::text;
        END IF;
        DELETE FROM lash_cancel_requests WHERE session_id = p_session AND turn_id = p_turn_id;
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(p_enqueue_keys) AS k WHERE k IS NOT NULL) THEN
        SELECT u.key, i.id INTO v_key, v_existing
        FROM unnest(p_enqueue_keys, p_enqueue_texts, p_enqueue_items, p_enqueue_ingress)
            AS u (key, text_json, items_json, ingress)
        JOIN lash_inputs AS i ON i.session_id = p_session AND i.key = u.key
        WHERE (i.text_json, i.items_json, i.ingress)
            IS DISTINCT FROM (u.text_json, u.items_json, u.ingress)
        LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'a key the commit queues is taken by other content'
                USING ERRCODE = '{KEY_CONFLICT}', DETAIL = v_key, HINT = v_existing;
        END IF;
        SELECT count(*) INTO v_queued FROM unnest(p_enqueue_keys) AS k
        WHERE k IS NULL OR NOT EXISTS (
            SELECT 1 FROM lash_inputs AS i WHERE i.session_id = p_session AND i.key = k);
        IF v_queued < v_enqueue THEN
            UPDATE lash_sessions SET input_seq = input_seq - (v_enqueue - v_queued),
                event_seq = event_seq - (v_enqueue - v_queued)
            WHERE session_id = p_session;
            v_input_seq := v_input_seq - (v_enqueue - v_queued);
            v_last := v_last - (v_enqueue - v_queued);
        END IF;
    END IF;
    IF p_replace AND v_revision > 1 THEN
{_drop_rows(GRAPH_TABLES)}
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
    -- A child's usage added to its ancestors' totals (not their ledgers, which keep one row
    -- per commit of their own), without their lease; an ancestor with no head gets nothing.
    IF cardinality(p_rollup_sessions) > 0 THEN
        INSERT INTO lash_usage_totals AS t (session_id, source, input_tokens, output_tokens,
            cached_tokens)
        SELECT u.session_id, u.source, u.i, u.o, u.c
        FROM unnest(p_rollup_sessions, p_rollup_sources, p_rollup_input, p_rollup_output,
            p_rollup_cached) AS u (session_id, source, i, o, c)
        WHERE EXISTS (SELECT 1 FROM lash_sessions AS a WHERE a.session_id = u.session_id)
        ORDER BY u.session_id, u.source
        ON CONFLICT (session_id, source) DO UPDATE SET
            input_tokens = t.input_tokens + excluded.input_tokens,
            output_tokens = t.output_tokens + excluded.output_tokens,
            cached_tokens = t.cached_tokens + excluded.cached_tokens;
    END IF;
    IF cardinality(p_claimed) > 0 THEN
        UPDATE lash_inputs SET state = 'completed', settled_at = v_now, turn_id = p_turn_id,
            claim_token = NULL
        WHERE session_id = p_session AND id = ANY (p_claimed);
    END IF;
    IF cardinality(p_applied) > 0 THEN
        UPDATE lash_commands SET state = 'applied', applied_at = v_now
        WHERE session_id = p_session AND id = ANY (p_applied);
    END IF;
    IF v_queued > 0 THEN
        INSERT INTO lash_inputs (session_id, seq, id, key, text_json, items_json, ingress,
            source, state, created_at)
        SELECT p_session, v_input_seq - v_queued + row_number() OVER (ORDER BY u.ord), u.id,
            u.key, u.text_json, u.items_json, u.ingress, u.source, 'pending', v_now
        FROM unnest(p_enqueue_ids, p_enqueue_keys, p_enqueue_texts, p_enqueue_items,
            p_enqueue_ingress, p_enqueue_sources)
            WITH ORDINALITY AS u (id, key, text_json, items_json, ingress, source, ord)
        WHERE u.key IS NULL OR NOT EXISTS (
            SELECT 1 FROM lash_inputs AS i WHERE i.session_id = p_session AND i.key = u.key);
        v_datas := ARRAY(SELECT '{{"input":' || lash_input_json(i, 'pending') || '}}'
            FROM lash_inputs AS i WHERE i.session_id = p_session
            AND i.seq > v_input_seq - v_queued ORDER BY i.seq);
        PERFORM lash_log(p_session, v_last,
            array_cat(array_fill('input_queued'::text, ARRAY[v_queued]::integer[]),
                p_event_types),
            array_cat(v_datas, p_event_datas), v_now, p_keep, p_max_age, p_notify);
    ELSE
        PERFORM lash_log(p_session, v_last, p_event_types, p_event_datas, v_now, p_keep,
            p_max_age, p_notify);
    END IF;
    RETURN QUERY SELECT true, v_revision, p_owner, p_token, 0::double precision;
END $$"""

#: Delete a committed session unless its lease is live: ``'unknown'``, ``'busy'`` (with the
#: holder) or ``'deleted'``. The head row stays as a tombstone at revision 0 with its lease and
#: its counters, so the next holder's fencing token is still higher than any handed out before
#: and a cursor from before the delete never names an event of the session made anew.
_DELETE_SESSION = f"""CREATE FUNCTION lash_delete_session(p_session text)
RETURNS TABLE (outcome text, holder text, holder_token bigint,
    holder_expires_at double precision)
LANGUAGE plpgsql AS $$
DECLARE
    v_head lash_sessions%ROWTYPE;
BEGIN
    SELECT * INTO v_head FROM lash_sessions WHERE session_id = p_session FOR UPDATE;
    -- A session is known by its history, or by what waits in its mailbox.
    IF NOT FOUND OR (v_head.revision = 0
            AND NOT EXISTS (SELECT 1 FROM lash_inputs WHERE session_id = p_session)
            AND NOT EXISTS (SELECT 1 FROM lash_commands WHERE session_id = p_session)) THEN
        RETURN QUERY SELECT 'unknown'::text, NULL::text, NULL::bigint, NULL::double precision;
        RETURN;
    END IF;
    IF v_head.lease_expires_at > lash_now() THEN
        RETURN QUERY SELECT 'busy'::text, v_head.lease_owner, v_head.lease_token,
            v_head.lease_expires_at;
        RETURN;
    END IF;
{_drop_rows(SESSION_TABLES)}
    UPDATE lash_sessions SET revision = 0, created_at = 0, updated_at = 0, turns = 0,
        next_seq = 0, frame_start = 0, last_user_message = NULL, status = NULL, config = NULL,
        running_turn = NULL, parent_id = NULL
    WHERE session_id = p_session;
    RETURN QUERY SELECT 'deleted'::text, NULL::text, NULL::bigint, NULL::double precision;
END $$"""

#: Queue input. A key already used in the session returns that input (``inserted`` false, no
#: write: the client compares the content). Otherwise the head row (made if there is none)
#: gives the input and its ``input_queued`` event their numbers under its lock; should an
#: enqueue of the same key have committed in between, the function raises ``KEY_RACE`` and
#: the client calls it again (to find that input).
_ENQUEUE_INPUT = f"""CREATE FUNCTION lash_enqueue_input(
    p_session text, p_id text, p_key text, p_text text, p_items text, p_ingress text,
    p_source text, p_keep bigint, p_max_age double precision, p_notify boolean)
RETURNS TABLE (inserted boolean, {_INPUT_OUT})
LANGUAGE plpgsql AS $$
DECLARE
    v_now double precision := lash_now();
    v_seq bigint;
    v_last bigint;
    v_row lash_inputs%ROWTYPE;
BEGIN
    IF p_key IS NOT NULL THEN
        RETURN QUERY SELECT false, {_columns("i", INPUT_COLUMNS)},
            lash_input_state(i.state, i.claim_token, s.lease_token, s.lease_expires_at, v_now)
        FROM lash_inputs AS i JOIN lash_sessions AS s ON s.session_id = i.session_id
        WHERE i.session_id = p_session AND i.key = p_key;
        IF FOUND THEN
            RETURN;
        END IF;
    END IF;
    INSERT INTO lash_sessions AS s (session_id, input_seq, event_seq) VALUES (p_session, 1, 1)
    ON CONFLICT (session_id) DO UPDATE SET
        input_seq = s.input_seq + 1, event_seq = s.event_seq + 1
    RETURNING s.input_seq, s.event_seq INTO v_seq, v_last;
    INSERT INTO lash_inputs (session_id, seq, id, key, text_json, items_json, ingress, source,
        state, created_at)
    VALUES (p_session, v_seq, p_id, p_key, p_text, p_items, p_ingress, p_source, 'pending',
        v_now)
    ON CONFLICT (session_id, key) DO NOTHING
    RETURNING * INTO v_row;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'another enqueue took the key first' USING ERRCODE = '{KEY_RACE}';
    END IF;
    PERFORM lash_log(p_session, v_last, ARRAY['input_queued'],
        ARRAY['{{"input":' || lash_input_json(v_row, 'pending') || '}}'], v_now, p_keep,
        p_max_age, p_notify);
    RETURN QUERY SELECT true, {_columns("v_row", INPUT_COLUMNS)}, 'pending'::text;
END $$"""

#: Queue a session command: as ``lash_enqueue_input``, by its (required) key.
_ENQUEUE_COMMAND = f"""CREATE FUNCTION lash_enqueue_command(
    p_session text, p_id text, p_key text, p_name text, p_args text, p_source text,
    p_keep bigint, p_max_age double precision, p_notify boolean)
RETURNS TABLE (inserted boolean, {
    _declare_columns(
        tuple(f"o_{c}" for c in COMMAND_COLUMNS),
        {f"o_{k}": v for k, v in _TYPES.items()},
    )
})
LANGUAGE plpgsql AS $$
DECLARE
    v_now double precision := lash_now();
    v_seq bigint;
    v_last bigint;
    v_row lash_commands%ROWTYPE;
BEGIN
    RETURN QUERY SELECT false, {_columns("c", COMMAND_COLUMNS)}
    FROM lash_commands AS c WHERE c.session_id = p_session AND c.key = p_key;
    IF FOUND THEN
        RETURN;
    END IF;
    INSERT INTO lash_sessions AS s (session_id, command_seq, event_seq)
    VALUES (p_session, 1, 1)
    ON CONFLICT (session_id) DO UPDATE SET
        command_seq = s.command_seq + 1, event_seq = s.event_seq + 1
    RETURNING s.command_seq, s.event_seq INTO v_seq, v_last;
    INSERT INTO lash_commands (session_id, seq, id, key, name, args_json, source, state,
        created_at)
    VALUES (p_session, v_seq, p_id, p_key, p_name, p_args, p_source, 'pending', v_now)
    ON CONFLICT (session_id, key) DO NOTHING
    RETURNING * INTO v_row;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'another enqueue took the key first' USING ERRCODE = '{KEY_RACE}';
    END IF;
    PERFORM lash_log(p_session, v_last, ARRAY['command_queued'],
        ARRAY['{{"command":' || lash_command_json(v_row) || '}}'], v_now, p_keep, p_max_age,
        p_notify);
    RETURN QUERY SELECT true, {_columns("v_row", COMMAND_COLUMNS)};
END $$"""

#: Claim up to ``p_limit`` inputs, oldest first, for the lease ``(p_owner, p_token)``: those
#: whose effective state is pending (of ``p_ingress`` only, if given), skipping rows another
#: transaction holds locked (``FOR UPDATE SKIP LOCKED``: a claim never waits behind someone
#: else's row lock). The head row is locked first, as by every writer of the session: it checks
#: the lease and numbers the ``input_claimed`` events. Refused (not the current lease):
#: ``granted`` false with the current lease.
_CLAIM_INPUTS = f"""CREATE FUNCTION lash_claim_inputs(
    p_session text, p_owner text, p_token bigint, p_limit bigint, p_ingress text,
    p_keep bigint, p_max_age double precision, p_notify boolean, p_durable boolean)
RETURNS TABLE (granted boolean, holder text, holder_token bigint,
    holder_expires_at double precision, {_INPUT_OUT})
LANGUAGE plpgsql AS $$
DECLARE
    v_now double precision := lash_now();
    v_head lash_sessions%ROWTYPE;
    v_seqs bigint[];
    v_last bigint;
BEGIN
{_ASYNC}
    SELECT * INTO v_head FROM lash_sessions WHERE session_id = p_session FOR UPDATE;
    IF NOT FOUND OR v_head.lease_owner IS DISTINCT FROM p_owner
            OR v_head.lease_token <> p_token OR v_head.lease_expires_at = 0 THEN
        RETURN QUERY SELECT false, v_head.lease_owner, v_head.lease_token,
            v_head.lease_expires_at, {_NO_INPUT};
        RETURN;
    END IF;
    v_seqs := ARRAY(SELECT i.seq FROM lash_inputs AS i
        WHERE i.session_id = p_session AND i.state IN ('pending', 'claimed')
        AND lash_input_state(i.state, i.claim_token, v_head.lease_token,
            v_head.lease_expires_at, v_now) = 'pending'
        AND (p_ingress IS NULL OR i.ingress = p_ingress)
        ORDER BY i.seq LIMIT p_limit
        FOR UPDATE SKIP LOCKED);
    IF cardinality(v_seqs) = 0 THEN
        RETURN;
    END IF;
    UPDATE lash_inputs SET state = 'claimed', claim_token = p_token
    WHERE session_id = p_session AND seq = ANY (v_seqs);
    UPDATE lash_sessions SET event_seq = event_seq + cardinality(v_seqs)
    WHERE session_id = p_session RETURNING event_seq INTO v_last;
    PERFORM lash_log(p_session, v_last,
        array_fill('input_claimed'::text, ARRAY[cardinality(v_seqs)]),
        ARRAY(SELECT '{{"input":' || lash_input_json(i, 'claimed') || '}}'
            FROM lash_inputs AS i WHERE i.session_id = p_session AND i.seq = ANY (v_seqs)
            ORDER BY i.seq),
        v_now, p_keep, p_max_age, p_notify);
    RETURN QUERY SELECT true, p_owner, p_token, v_head.lease_expires_at,
        {_columns("i", INPUT_COLUMNS)}, 'claimed'::text
    FROM lash_inputs AS i WHERE i.session_id = p_session AND i.seq = ANY (v_seqs)
    ORDER BY i.seq;
END $$"""

#: The PL/pgSQL that settles one input of ``lash_cancel_inputs`` (in ``v_row``, locked): a
#: pending one is cancelled (and logged), any other gets its ``already_*`` outcome.
_CANCEL_ONE = f"""v_state := lash_input_state(v_row.state, v_row.claim_token,
                v_head.lease_token, v_head.lease_expires_at, v_now);
            IF v_state = 'pending' THEN
                UPDATE lash_inputs SET state = 'cancelled', settled_at = v_now,
                    claim_token = NULL
                WHERE session_id = p_session AND seq = v_row.seq RETURNING * INTO v_row;
                v_state := 'cancelled';
                v_outcome := 'cancelled';
                v_datas := v_datas || ('{{"input":' || lash_input_json(v_row, v_state) || '}}');
            ELSE
                v_outcome := 'already_' || v_state;
            END IF;
            RETURN QUERY SELECT v_target, v_outcome, {_columns("v_row", INPUT_COLUMNS)},
                v_state;"""

#: Cancel inputs by id or key (``p_suffix``: the input ``p_targets[1]`` and every later one),
#: one outcome row per target, in order; ``input_cancelled`` logged for each one cancelled.
_CANCEL_INPUTS = f"""CREATE FUNCTION lash_cancel_inputs(
    p_session text, p_targets text[], p_suffix boolean, p_keep bigint,
    p_max_age double precision, p_notify boolean)
RETURNS TABLE (target text, outcome text, {_INPUT_OUT})
LANGUAGE plpgsql AS $$
DECLARE
    v_now double precision := lash_now();
    v_head lash_sessions%ROWTYPE;
    v_row lash_inputs%ROWTYPE;
    v_target text;
    v_state text;
    v_outcome text;
    v_anchor bigint;
    v_datas text[] := ARRAY[]::text[];
    v_last bigint;
BEGIN
    SELECT * INTO v_head FROM lash_sessions WHERE session_id = p_session FOR UPDATE;
    IF p_suffix THEN
        SELECT i.seq INTO v_anchor FROM lash_inputs AS i WHERE i.session_id = p_session
            AND (i.id = p_targets[1] OR i.key = p_targets[1])
        ORDER BY i.seq LIMIT 1;
        IF NOT FOUND THEN
            RETURN QUERY SELECT p_targets[1], 'unknown'::text,
                {_NO_INPUT};
            RETURN;
        END IF;
        FOR v_row IN SELECT * FROM lash_inputs AS i
                WHERE i.session_id = p_session AND i.seq >= v_anchor ORDER BY i.seq
                FOR UPDATE LOOP
            v_target := v_row.id;
            {_CANCEL_ONE}
        END LOOP;
    ELSE
        FOREACH v_target IN ARRAY p_targets LOOP
            SELECT * INTO v_row FROM lash_inputs AS i WHERE i.session_id = p_session
                AND (i.id = v_target OR i.key = v_target)
            ORDER BY i.seq LIMIT 1 FOR UPDATE;
            IF NOT FOUND THEN
                RETURN QUERY SELECT v_target, 'unknown'::text,
                    {_NO_INPUT};
                CONTINUE;
            END IF;
            {_CANCEL_ONE}
        END LOOP;
    END IF;
    IF cardinality(v_datas) > 0 THEN
        UPDATE lash_sessions SET event_seq = event_seq + cardinality(v_datas)
        WHERE session_id = p_session RETURNING event_seq INTO v_last;
        PERFORM lash_log(p_session, v_last,
            array_fill('input_cancelled'::text, ARRAY[cardinality(v_datas)]), v_datas, v_now,
            p_keep, p_max_age, p_notify);
    END IF;
END $$"""

#: Ask turn ``p_turn`` to stop: ``already_finished`` (with its record), ``already_requested``
#: (with the first request), ``requested`` (stored: it runs now under a live lease) or
#: ``unknown``. The head row is share-locked first, so a commit of that turn (which deletes
#: its request) is either wholly before this or wholly after.
_REQUEST_CANCEL = """CREATE FUNCTION lash_request_cancel(
    p_session text, p_turn text, p_origin text, p_reason text)
RETURNS TABLE (status text, turn_index bigint, outcome text, revision bigint,
    reason_json text, result_json text, committed_at double precision, origin text,
    requested_at double precision)
LANGUAGE plpgsql AS $$
DECLARE
    v_now double precision := lash_now();
    v_head lash_sessions%ROWTYPE;
BEGIN
    SELECT * INTO v_head FROM lash_sessions WHERE session_id = p_session FOR SHARE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'unknown'::text, NULL::bigint, NULL::text, NULL::bigint,
            NULL::text, NULL::text, NULL::double precision, NULL::text,
            NULL::double precision;
        RETURN;
    END IF;
    RETURN QUERY SELECT 'already_finished'::text, t.turn_index, t.outcome, t.revision,
        t.reason_json, t.result_json, t.committed_at, NULL::text, NULL::double precision
    FROM lash_turns AS t WHERE t.session_id = p_session AND t.turn_id = p_turn;
    IF FOUND THEN
        RETURN;
    END IF;
    RETURN QUERY SELECT 'already_requested'::text, NULL::bigint, NULL::text, NULL::bigint,
        r.reason_json, NULL::text, NULL::double precision, r.origin, r.requested_at
    FROM lash_cancel_requests AS r WHERE r.session_id = p_session AND r.turn_id = p_turn;
    IF FOUND THEN
        RETURN;
    END IF;
    IF v_head.running_turn = p_turn AND v_head.lease_expires_at > v_now THEN
        INSERT INTO lash_cancel_requests (session_id, turn_id, origin, reason_json,
            requested_at)
        VALUES (p_session, p_turn, p_origin, p_reason, v_now);
        RETURN QUERY SELECT 'requested'::text, NULL::bigint, NULL::text, NULL::bigint,
            p_reason, NULL::text, NULL::double precision, p_origin, v_now;
        RETURN;
    END IF;
    RETURN QUERY SELECT 'unknown'::text, NULL::bigint, NULL::text, NULL::bigint, NULL::text,
        NULL::text, NULL::double precision, NULL::text, NULL::double precision;
END $$"""

# -- migration 2: processes ----------------------------------------------------------------------

#: The table of process records (not a session's: a host's process has none; a session's are
#: deleted with it).
PROCESS_TABLE = "lash_processes"

#: ``lash_delete_session`` that deletes the session's processes too (migrations 2 and 3).
_DELETE_SESSION_AND_PROCESSES = _DELETE_SESSION.replace(
    "CREATE FUNCTION", "CREATE OR REPLACE FUNCTION"
).replace(_drop_rows(SESSION_TABLES), _drop_rows((*SESSION_TABLES, PROCESS_TABLE)))

_PROCESSES = (
    # ``seq``: the start order claims and listings follow. JSON as text, as everywhere here.
    f"""CREATE TABLE {PROCESS_TABLE} (
        seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
        id text PRIMARY KEY,
        kind text NOT NULL,
        session_id text,
        status text NOT NULL,
        key text,
        recovery text NOT NULL,
        attempts bigint NOT NULL DEFAULT 0,
        max_attempts bigint NOT NULL,
        timeout double precision,
        source text,
        owner text,
        token bigint NOT NULL DEFAULT 0,
        expires_at double precision,
        created_at double precision NOT NULL,
        started_at double precision,
        finished_at double precision,
        cancel_requested text,
        notified boolean NOT NULL DEFAULT false,
        payload text NOT NULL,
        result text,
        error text,
        progress text
    )""",
    # Keys are global: one process per key in the database.
    f"CREATE UNIQUE INDEX lash_processes_by_key ON {PROCESS_TABLE} (key) WHERE key IS NOT NULL",
    f"""CREATE INDEX lash_processes_by_session ON {PROCESS_TABLE} (session_id, seq)
        WHERE session_id IS NOT NULL""",
    f"CREATE INDEX lash_processes_by_kind ON {PROCESS_TABLE} (kind, seq)",
    # What a claim reads: the pending ones in start order, and the claims by expiry.
    f"CREATE INDEX lash_processes_pending ON {PROCESS_TABLE} (seq) WHERE status = 'pending'",
    f"""CREATE INDEX lash_processes_claimed ON {PROCESS_TABLE} (expires_at)
        WHERE status = 'running' AND expires_at IS NOT NULL""",
    # The notification outbox.
    f"""CREATE INDEX lash_processes_unnotified ON {PROCESS_TABLE} (seq)
        WHERE NOT notified AND finished_at IS NOT NULL""",
    # Log events in a session from outside a commit (a process's): numbers from the head row
    # (made if there is none), under its lock.
    """CREATE FUNCTION lash_log_events(
        p_session text, p_types text[], p_datas text[], p_keep bigint,
        p_max_age double precision, p_notify boolean)
    RETURNS bigint LANGUAGE plpgsql AS $$
    DECLARE
        v_last bigint;
    BEGIN
        INSERT INTO lash_sessions AS s (session_id, event_seq)
        VALUES (p_session, cardinality(p_types))
        ON CONFLICT (session_id) DO UPDATE SET event_seq = s.event_seq + cardinality(p_types)
        RETURNING s.event_seq INTO v_last;
        PERFORM lash_log(p_session, v_last, p_types, p_datas, lash_now(), p_keep, p_max_age,
            p_notify);
        RETURN v_last;
    END $$""",
    # A deleted session's processes go with it.
    _DELETE_SESSION_AND_PROCESSES,
)

#: The columns of a process row as the client writes and reads them (the SQLite store's:
#: :class:`lash.ProcessRecord`'s fields in order; ``payload``, ``result``, ``progress`` JSON).
PROCESS_COLUMNS = sqlite_schema.PROCESS_COLUMNS
PROCESS_JSON = sqlite_schema.PROCESS_JSON
_PROCESS_TYPES = {
    "attempts": "bigint",
    "max_attempts": "bigint",
    "timeout": "double precision",
    "token": "bigint",
    "expires_at": "double precision",
    "created_at": "double precision",
    "started_at": "double precision",
    "finished_at": "double precision",
    "notified": "boolean",
}
_SELECT_PROCESS = f"SELECT {', '.join(PROCESS_COLUMNS)} FROM {PROCESS_TABLE}"

#: Content-addressed bytes (the images of turn input), shared by every session (migration 4).
_MEDIA_BLOBS = """CREATE TABLE IF NOT EXISTS lash_blobs (
    sha256 text PRIMARY KEY,
    data bytea NOT NULL,
    size bigint NOT NULL,
    created_at double precision NOT NULL
)"""

#: Who waits for a session's events (migration 5): the server process (``pid``) of a store's
#: listening connection, by session. Unlogged: it lives only as long as those connections,
#: which a server crash ends too. A row whose listener is gone only costs its session
#: notifications no one receives; a store removes such rows when it starts listening.
_WATCHERS = """CREATE UNLOGGED TABLE lash_watchers (
    session_id text NOT NULL,
    pid integer NOT NULL,
    since double precision NOT NULL,
    PRIMARY KEY (session_id, pid)
)"""

#: ``lash_log`` from migration 5 on: a session no one waits on (no ``lash_watchers`` row) is
#: not notified. A notifying transaction holds a cluster-wide lock from its commit until its
#: WAL flush is done, so notifying commits cannot share a flush with others.
_LOG_WATCHED = _LOG.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION").replace(
    "    IF p_notify THEN",
    "    IF p_notify AND EXISTS (SELECT 1 FROM lash_watchers AS w\n"
    "            WHERE w.session_id = p_session) THEN",
)


#: PL/pgSQL: what ``lash_log`` (from migration 5) does, written into the functions that log on
#: every turn (``lash_acquire_lease``, ``lash_commit``): a call of a PL/pgSQL function from
#: another costs about as much as the statements it runs. ``types`` and ``datas`` are
#: expressions; the caller declares :data:`_LOG_VARIABLES` and has ``p_session``, ``v_now``,
#: ``p_keep``, ``p_max_age`` and ``p_notify``.
def _log_inline(last: str, types: str, datas: str) -> str:
    assigned = (
        ""
        if types == "v_log_types"
        else f"""    v_log_types := {types};
    v_log_datas := {datas};
"""
    )
    return f"""{assigned}    v_log_count := coalesce(cardinality(v_log_types), 0);
    IF v_log_count > 0 THEN
        INSERT INTO lash_events (session_id, seq, type, data, at)
        SELECT p_session, {last} - v_log_count + u.ord, u.type, u.data, v_now
        FROM unnest(v_log_types, v_log_datas) WITH ORDINALITY AS u (type, data, ord);
        SELECT e.seq, e.at INTO v_oldest, v_oldest_at FROM lash_events AS e
        WHERE e.session_id = p_session ORDER BY e.seq LIMIT 1;
        IF v_oldest <= {last} - p_keep OR v_oldest_at < v_now - p_max_age THEN
            DELETE FROM lash_events AS e WHERE e.session_id = p_session AND e.seq < greatest(
                {last} + 1 - p_keep,
                (SELECT min(y.seq) FROM lash_events AS y
                    WHERE y.session_id = p_session AND y.at >= v_now - p_max_age));
        END IF;
        IF p_notify AND EXISTS (SELECT 1 FROM lash_watchers AS w
                WHERE w.session_id = p_session) THEN
            PERFORM pg_notify('lash_events', p_session);
        END IF;
    END IF;"""


_LOG_VARIABLES = """DECLARE
    v_log_types text[];
    v_log_datas text[];
    v_log_count bigint;
    v_oldest bigint;
    v_oldest_at double precision;
"""


def _logging_inline(function: str, calls: dict[str, str]) -> str:
    """``function`` (its ``CREATE FUNCTION``) made ``CREATE OR REPLACE``, with ``calls`` (each
    a ``PERFORM lash_log(...)`` statement, by its text) written inline."""
    function = function.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)
    assert function.count("\nDECLARE\n") == 1, "one DECLARE section"
    function = function.replace("\nDECLARE\n", "\n" + _LOG_VARIABLES, 1)
    for call, inline in calls.items():
        assert function.count(call) == 1, call
        function = function.replace(call, inline)
    assert "lash_log(" not in function
    return function


#: Say that listener ``p_pid`` waits for session ``p_session``'s events. Every write that logs
#: events holds the session's head row from its first statement to its commit and looks for
#: watchers after taking it, so the head row is share-locked here first: a write in progress
#: is waited for (the caller, reading the log after this returns, sees it), and a write that
#: comes later finds the watcher and notifies. A session with no head row yet gets an empty
#: one (revision 0: no session to anyone, as the one a first lease or input makes), so that
#: a first write racing this one is ordered too.
_WATCH = """CREATE FUNCTION lash_watch(p_session text, p_pid integer)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    -- Nothing here needs to outlive a server crash (which ends the listener too).
    PERFORM set_config('synchronous_commit', 'off', true);
    INSERT INTO lash_sessions (session_id) VALUES (p_session)
    ON CONFLICT (session_id) DO NOTHING;
    PERFORM 1 FROM lash_sessions WHERE session_id = p_session FOR SHARE;
    INSERT INTO lash_watchers (session_id, pid, since) VALUES (p_session, p_pid, lash_now())
    ON CONFLICT (session_id, pid) DO NOTHING;
END $$"""

_ACQUIRE_LEASE_INLINE = _logging_inline(
    _ACQUIRE_LEASE,
    {
        "    PERFORM lash_log(p_session, v_last, p_types, p_datas, v_now, p_keep, p_max_age, "
        "p_notify);": _log_inline("v_last", "p_types", "p_datas"),
    },
)
_COMMIT_INLINE = _logging_inline(
    _COMMIT,
    {
        """        PERFORM lash_log(p_session, v_last,
            array_cat(array_fill('input_queued'::text, ARRAY[v_queued]::integer[]),
                p_event_types),
            array_cat(v_datas, p_event_datas), v_now, p_keep, p_max_age, p_notify);
    ELSE
        PERFORM lash_log(p_session, v_last, p_event_types, p_event_datas, v_now, p_keep,
            p_max_age, p_notify);
    END IF;
""": """        v_log_types := array_cat(
            array_fill('input_queued'::text, ARRAY[v_queued]::integer[]), p_event_types);
        v_log_datas := array_cat(v_datas, p_event_datas);
    ELSE
        v_log_types := p_event_types;
        v_log_datas := p_event_datas;
    END IF;
"""
        + _log_inline("v_last", "v_log_types", "v_log_datas")
        + "\n",
    },
)

# -- migration 6: fewer statements per turn -------------------------------------------------------
# Each statement a PL/pgSQL function runs through SPI costs an executor start and end beside
# its own work (pg_stat_statements shows neither), where an assignment or an IF of plain
# values is evaluated directly. The two functions of every turn lose these statements:
# ``PERFORM set_config`` (an assignment now); the oldest event's read, the watchers' check
# and (for the lease) the pending counts, one statement; the commit's look for queued keys
# when it queues nothing; the turn record and the removal of its cancellation request, and
# the usage ledger and totals, one statement each; the result row (``RETURN NEXT`` of the
# output variables instead of a ``RETURN QUERY``).

_LOG_READ = """        SELECT e.seq, e.at, p_notify AND EXISTS (SELECT 1 FROM lash_watchers AS w
                WHERE w.session_id = p_session)
            INTO v_oldest, v_oldest_at, v_watched FROM lash_events AS e
        WHERE e.session_id = p_session ORDER BY e.seq LIMIT 1;"""


def _log_merged(function: str, read: str = _LOG_READ) -> str:
    """``function`` (from migration 5) with its inline log's read of the oldest event and its
    watchers' check as the one statement ``read``."""
    old_read = """        SELECT e.seq, e.at INTO v_oldest, v_oldest_at FROM lash_events AS e
        WHERE e.session_id = p_session ORDER BY e.seq LIMIT 1;"""
    old_notify = """        IF p_notify AND EXISTS (SELECT 1 FROM lash_watchers AS w
                WHERE w.session_id = p_session) THEN"""
    return _replaced(
        function,
        {
            old_read + "\n": read + "\n" if read else "",
            old_notify: "        IF v_watched THEN",
            "    v_oldest_at double precision;\n": "    v_oldest_at double precision;\n"
            "    v_watched boolean;\n",
        },
    )


def _replaced(text: str, changes: dict[str, str]) -> str:
    """``text`` with each key of ``changes`` (found exactly once) replaced by its value."""
    for old, new in changes.items():
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


#: The lease's upsert of the head row (migrations 1 to 5), and the same guard as an UPDATE.
_UPSERT_HEAD = _ACQUIRE_LEASE[
    _ACQUIRE_LEASE.index("    INSERT INTO lash_sessions AS s") : _ACQUIRE_LEASE.index(
        "INTO v_token, v_expires, v_revision, v_last;\n"
    )
    + len("INTO v_token, v_expires, v_revision, v_last;\n")
]
_UPDATE_HEAD = """    UPDATE lash_sessions AS s SET
        lease_token = CASE WHEN s.lease_owner = p_owner AND s.lease_expires_at > v_now
            THEN s.lease_token ELSE s.lease_token + 1 END,
        lease_owner = p_owner,
        lease_expires_at = v_now + p_ttl,
        running_turn = p_turn,
        event_seq = s.event_seq + v_logged
    WHERE s.session_id = p_session AND (s.lease_owner IS NULL OR s.lease_owner = p_owner
        OR s.lease_expires_at <= v_now
        OR (s.lease_owner = p_take_owner AND s.lease_token = p_take_token))
    RETURNING s.lease_token, s.lease_expires_at, s.revision, s.event_seq
        INTO v_token, v_expires, v_revision, v_last;
"""


def _indent(text: str) -> str:
    return "".join(f"    {line}" if line.strip() else line for line in text.splitlines(True))


_ACQUIRE_LEASE_6 = _replaced(
    _log_merged(_ACQUIRE_LEASE_INLINE, read=""),
    {
        "    v_watched boolean;\n": "    v_watched boolean;\n    v_ignored text;\n",
        "        PERFORM set_config('synchronous_commit', 'off', true);": (
            "        v_ignored := set_config('synchronous_commit', 'off', true);"
        ),
        # An existing head (every lease but a session's first) is taken by an UPDATE: an
        # upsert that finds the row locks it first, a WAL record of its own.
        _UPSERT_HEAD: (
            _UPDATE_HEAD + "    IF NOT FOUND THEN\n" + _indent(_UPSERT_HEAD) + "    END IF;\n"
        ),
        # The oldest event, the watchers and the pending counts in one statement, logged or
        # not (the window and the watchers matter only when something was).
        """    v_log_count := coalesce(cardinality(v_log_types), 0);
    IF v_log_count > 0 THEN
        INSERT INTO lash_events (session_id, seq, type, data, at)
        SELECT p_session, v_last - v_log_count + u.ord, u.type, u.data, v_now
        FROM unnest(v_log_types, v_log_datas) WITH ORDINALITY AS u (type, data, ord);
""": """    v_log_count := coalesce(cardinality(v_log_types), 0);
    IF v_log_count > 0 THEN
        INSERT INTO lash_events (session_id, seq, type, data, at)
        SELECT p_session, v_last - v_log_count + u.ord, u.type, u.data, v_now
        FROM unnest(v_log_types, v_log_datas) WITH ORDINALITY AS u (type, data, ord);
    END IF;
    SELECT e.seq, e.at, v_log_count > 0 AND p_notify AND EXISTS (SELECT 1
            FROM lash_watchers AS w WHERE w.session_id = p_session),
        """
        + _COUNTS
        + """
        INTO v_oldest, v_oldest_at, v_watched, pending_inputs, pending_commands
    FROM (SELECT) AS one LEFT JOIN LATERAL (SELECT x.seq, x.at FROM lash_events AS x
        WHERE x.session_id = p_session ORDER BY x.seq LIMIT 1) AS e ON true;
    IF v_log_count > 0 THEN
""",
        """    RETURN QUERY SELECT true, p_owner, v_token, v_expires, v_revision,
        """
        + _COUNTS
        + ";\n": """    granted := true;
    holder := p_owner;
    holder_token := v_token;
    holder_expires_at := v_expires;
    head_revision := v_revision;
    RETURN NEXT;
""",
    },
)

_COMMIT_6 = _replaced(
    _log_merged(_COMMIT_INLINE),
    {
        # The turn record and the removal of its cancellation request: one statement (FOUND
        # is the INSERT's).
        "        INSERT INTO lash_turns (": (
            "        WITH cancel AS (DELETE FROM lash_cancel_requests\n"
            "            WHERE session_id = p_session AND turn_id = p_turn_id)\n"
            "        INSERT INTO lash_turns ("
        ),
        "        DELETE FROM lash_cancel_requests"
        " WHERE session_id = p_session AND turn_id = p_turn_id;\n": "",
        # Whether a queued input has a key, without a query (an IF of plain values).
        "    IF EXISTS (SELECT 1 FROM unnest(p_enqueue_keys) AS k WHERE k IS NOT NULL) THEN\n": (
            "    IF cardinality(array_remove(p_enqueue_keys, NULL)) > 0 THEN\n"
        ),
        # The usage ledger and its totals: one statement.
        "        INSERT INTO lash_usage_ledger (": (
            "        WITH ledger AS (INSERT INTO lash_usage_ledger ("
        ),
        """            AS u (source, i, o, c);
        INSERT INTO lash_usage_totals""": """            AS u (source, i, o, c))
        INSERT INTO lash_usage_totals""",
        # The result row from the output variables, without a query.
        "    RETURN QUERY SELECT true, v_revision, p_owner, p_token, 0::double precision;\n": (
            """    committed := true;
    head_revision := v_revision;
    holder := p_owner;
    holder_token := p_token;
    holder_expires_at := 0;
    RETURN NEXT;
"""
        ),
    },
)


#: Migration 7: a delete raises the id's incarnation (the tombstone keeps it); a child's link
#: keeps its parent's incarnation, taken from the parent's head when the link is first stored
#: (the kernel cannot know it for a parent still in its first turn: not committed yet; a
#: tombstone, deleted once at least with no commit and no first turn running, gives the
#: deleted one's, below it: a child made from a handle on the deleted session); and a
#: roll-up reaches only the sessions on the committing session's chain of links, as far as
#: each names its parent's current incarnation. The walk locks each ancestor's head ``FOR KEY
#: SHARE``: a delete (``FOR UPDATE``) waits for the commit, or the commit for the delete, and
#: then sees its raised incarnation; the ancestors' own commits (which change no key) do not
#: wait. One primary-key lookup per ancestor, and nothing at all for a root session's commit.
_COMMIT_7 = _replaced(
    _COMMIT_6,
    {
        "    v_datas text[];\n": """    v_datas text[];
    v_ancestors text[];
    v_parent text;
    v_incarnation bigint;
""",
        "        parent_id = COALESCE(p_parent, s.parent_id)\n": """\
        parent_id = COALESCE(p_parent, s.parent_id),
        parent_incarnation = CASE
            WHEN p_parent IS NOT NULL AND p_parent IS DISTINCT FROM s.parent_id THEN COALESCE(
                (SELECT CASE WHEN p.revision = 0 AND p.incarnation > 0
                        AND p.lease_expires_at <= v_now
                    THEN p.incarnation - 1 ELSE p.incarnation END
                FROM lash_sessions AS p WHERE p.session_id = p_parent), 0)
            ELSE s.parent_incarnation END
""",
        "    -- A child's usage added to its ancestors' totals (not their ledgers, which keep one"
        " row\n    -- per commit of their own), without their lease; an ancestor with no head gets"
        " nothing.\n    IF cardinality(p_rollup_sessions) > 0 THEN\n": """\
    -- A child's usage added to its ancestors' totals (not their ledgers, which keep one row
    -- per commit of their own), without their lease, along its chain of links only.
    IF cardinality(p_rollup_sessions) > 0 THEN
        v_ancestors := ARRAY[]::text[];
        SELECT s.parent_id, s.parent_incarnation INTO v_parent, v_incarnation
        FROM lash_sessions AS s WHERE s.session_id = p_session;
        WHILE v_parent IS NOT NULL AND NOT v_parent = ANY (v_ancestors) LOOP
            v_ancestors := v_ancestors || v_parent;
            SELECT a.parent_id, a.parent_incarnation INTO v_parent, v_incarnation
            FROM lash_sessions AS a WHERE a.session_id = v_parent
                AND a.incarnation = v_incarnation FOR KEY SHARE;
            IF NOT FOUND THEN
                v_ancestors := v_ancestors[1:cardinality(v_ancestors) - 1];
                EXIT;
            END IF;
        END LOOP;
""",
        "        WHERE EXISTS (SELECT 1 FROM lash_sessions AS a"
        " WHERE a.session_id = u.session_id)\n": "        WHERE u.session_id = ANY (v_ancestors)\n",
    },
)

_DELETE_SESSION_7 = _replaced(
    _DELETE_SESSION_AND_PROCESSES,
    {
        "        running_turn = NULL, parent_id = NULL\n": (
            "        running_turn = NULL, parent_id = NULL, parent_incarnation = 0,\n"
            "        incarnation = incarnation + 1\n"
        ),
    },
)

_INCARNATIONS = (
    # How many times the id was deleted before this session was created, and a child's
    # parent's when its link was stored.
    "ALTER TABLE lash_sessions ADD COLUMN incarnation bigint NOT NULL DEFAULT 0",
    "ALTER TABLE lash_sessions ADD COLUMN parent_incarnation bigint NOT NULL DEFAULT 0",
    # A head at revision 0 that some child links to and whose lease is not live (no first
    # turn runs) is a tombstone deleted under its children: raised, so they stop rolling up
    # into it and into a session created under its id later, and what they rolled up into it
    # since the delete goes. (A session deleted and created again before this step cannot be
    # told from its first one.)
    """UPDATE lash_sessions SET incarnation = 1 WHERE revision = 0
        AND lease_expires_at < lash_now()
        AND session_id IN (SELECT parent_id FROM lash_sessions WHERE parent_id IS NOT NULL)""",
    """DELETE FROM lash_usage_totals WHERE session_id IN
        (SELECT session_id FROM lash_sessions WHERE incarnation = 1)""",
    _COMMIT_7,
    _DELETE_SESSION_7,
)


#: Every migration this lash knows, in order. Append new steps; never edit or renumber one
#: (the schema was not released before the mailbox: its tables are in the initial step).
MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "initial schema",
        (
            *_TABLES,
            _NOW,
            _INPUT_STATE,
            _INPUT_JSON,
            _COMMAND_JSON,
            _LOG,
            _ACQUIRE_LEASE,
            _RENEW_LEASE,
            _RELEASE_LEASE,
            _COMMIT,
            _DELETE_SESSION,
            _ENQUEUE_INPUT,
            _ENQUEUE_COMMAND,
            _CLAIM_INPUTS,
            _CANCEL_INPUTS,
            _REQUEST_CANCEL,
        ),
    ),
    Migration(2, "processes", _PROCESSES),
    Migration(
        3,
        "child sessions",
        (
            # The parent of a child session (NULL: a root session), written by its commits.
            "ALTER TABLE lash_sessions ADD COLUMN IF NOT EXISTS parent_id text",
            # lash_commit gains the parent link and the usage roll-up (a new signature).
            "DROP FUNCTION lash_commit",
            _COMMIT,
            # A deleted session's tombstone forgets its parent too (and its processes go).
            _DELETE_SESSION_AND_PROCESSES,
        ),
    ),
    # 4 is the approvals step, on its own branch.
    Migration(4, "media blobs", (_MEDIA_BLOBS,)),
    # Notifications only for the sessions someone waits on (lash_log looks for watchers).
    Migration(
        5,
        "watchers",
        (_WATCHERS, _WATCH, _LOG_WATCHED, _ACQUIRE_LEASE_INLINE, _COMMIT_INLINE),
    ),
    Migration(6, "fewer statements per turn", (_ACQUIRE_LEASE_6, _COMMIT_6)),
    Migration(7, "session incarnations", _INCARNATIONS),
)

#: The newest migration id this lash knows.
LATEST = MIGRATIONS[-1].id


# -- statements ------------------------------------------------------------------------------


def _call(function: str, count: int) -> str:
    return f"SELECT * FROM {function}({', '.join(f'${i}' for i in range(1, count + 1))})"


ACQUIRE_LEASE = _call("lash_acquire_lease", 12)
RENEW_LEASE = _call("lash_renew_lease", 5)
RELEASE_LEASE = _call("lash_release_lease", 4)
COMMIT = _call("lash_commit", 46)
DELETE_SESSION = _call("lash_delete_session", 1)
ENQUEUE_INPUT = _call("lash_enqueue_input", 10)
ENQUEUE_COMMAND = _call("lash_enqueue_command", 9)
CLAIM_INPUTS = _call("lash_claim_inputs", 9)
CANCEL_INPUTS = _call("lash_cancel_inputs", 6)
REQUEST_CANCEL = _call("lash_request_cancel", 4)

#: A session as ``load`` returns it, in one statement (one snapshot, one round trip): the head,
#: the nodes (of the active frame, from ``frame_start``, unless ``$2``), the plugin states and
#: the usage totals, as arrays.
LOAD = """SELECT s.revision, s.created_at, s.updated_at, s.turns, s.config, s.event_seq,
    s.parent_id, s.incarnation, s.parent_incarnation,
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

#: Committed sessions (revision > 0) with their usage totals, last turn's status and pending
#: input, most recently updated first.
LIST_SESSIONS = """SELECT s.session_id, s.created_at, s.updated_at, s.turns, s.revision,
    s.last_user_message, u.i, u.o, u.c, s.status, p.n, s.parent_id
    FROM lash_sessions AS s CROSS JOIN (SELECT lash_now() AS now) AS t,
    LATERAL (SELECT COALESCE(SUM(x.input_tokens), 0)::bigint AS i,
        COALESCE(SUM(x.output_tokens), 0)::bigint AS o,
        COALESCE(SUM(x.cached_tokens), 0)::bigint AS c
        FROM lash_usage_totals AS x WHERE x.session_id = s.session_id) AS u,
    LATERAL (SELECT count(*) AS n FROM lash_inputs AS i
        WHERE i.session_id = s.session_id AND i.state IN ('pending', 'claimed')
        AND lash_input_state(i.state, i.claim_token, s.lease_token, s.lease_expires_at,
            t.now) = 'pending') AS p
    WHERE s.revision > 0
    ORDER BY s.updated_at DESC, s.session_id"""

_LIST_INPUTS = f"""SELECT {_columns("i", INPUT_COLUMNS)},
    lash_input_state(i.state, i.claim_token, s.lease_token, s.lease_expires_at, t.now)
    FROM lash_inputs AS i JOIN lash_sessions AS s ON s.session_id = i.session_id
    CROSS JOIN (SELECT lash_now() AS now) AS t
    WHERE i.session_id = $1 {{}} ORDER BY i.seq"""
#: A session's open inputs (with their effective state), oldest first; and all of them.
LIST_OPEN_INPUTS = _LIST_INPUTS.format("AND i.state IN ('pending', 'claimed')")
LIST_ALL_INPUTS = _LIST_INPUTS.format("")

_LIST_COMMANDS = f"""SELECT {_columns("c", COMMAND_COLUMNS)} FROM lash_commands AS c
    WHERE c.session_id = $1 {{}} ORDER BY c.seq"""
LIST_PENDING_COMMANDS = _LIST_COMMANDS.format("AND c.state = 'pending'")
LIST_ALL_COMMANDS = _LIST_COMMANDS.format("")

TURN_RECORD = """SELECT turn_index, outcome, revision, reason_json, result_json, committed_at
    FROM lash_turns WHERE session_id = $1 AND turn_id = $2"""
CANCEL_REQUEST = """SELECT origin, reason_json, requested_at FROM lash_cancel_requests
    WHERE session_id = $1 AND turn_id = $2"""

#: ``read_events``: the latest seq, the oldest kept (null: none), then up to ``$3`` events
#: after ``$2`` (one row of nulls when there are none), in one snapshot.
READ_EVENTS = """SELECT s.event_seq,
    (SELECT min(y.seq) FROM lash_events AS y WHERE y.session_id = s.session_id),
    e.seq, e.type, e.data, e.at
    FROM lash_sessions AS s
    LEFT JOIN LATERAL (SELECT x.seq, x.type, x.data, x.at FROM lash_events AS x
        WHERE x.session_id = s.session_id AND x.seq > $2 ORDER BY x.seq LIMIT $3) AS e ON true
    WHERE s.session_id = $1"""

#: The latest event seq of a session (``wait_events``).
EVENT_SEQ = "SELECT event_seq FROM lash_sessions WHERE session_id = $1"

# -- processes: each write is a transaction of a few statements (the row locked first) -------

#: The database's time, in the transaction that writes a process.
NOW = "SELECT lash_now()"
#: A process, and its row locked for the write that follows.
PROCESS_FOR_UPDATE = f"{_SELECT_PROCESS} WHERE id = $1 FOR UPDATE"
#: The lock order of process writes (see ``PostgresStore._write_processes``): a transaction that
#: writes a session's head row and a process's row locks the process's row first (a lock only,
#: no change), then the head row, then changes them; one that writes several (a poll settling
#: and claiming processes of several sessions) locks all its process rows, then the head rows
#: in the order of their session ids, then changes them. Commits and deletes lock the head row
#: first and then meet process rows, which a row lock alone does not make them wait for (an
#: insert of a key waits only for a transaction that changed that key's row). So a process
#: start outside a commit takes the head row of its session (``$1``) before inserting, and a
#: delete locks the session's processes before the head row.
LOCK_HEAD = "SELECT 1 FROM lash_sessions WHERE session_id = $1 FOR UPDATE"
LOCK_SESSION_PROCESSES = (
    f"SELECT 1 FROM {PROCESS_TABLE} WHERE session_id = $1 ORDER BY seq FOR UPDATE"
)
PROCESS_BY_ID = f"{_SELECT_PROCESS} WHERE id = $1"
PROCESS_BY_KEY = f"{_SELECT_PROCESS} WHERE key = $1"
#: A new process; nothing when its id or key is taken (the client then reads which).
_PROCESS_VALUES = [
    f"${i}::{_PROCESS_TYPES.get(c, 'text')}" for i, c in enumerate(PROCESS_COLUMNS, 1)
]
INSERT_PROCESS = f"""INSERT INTO {PROCESS_TABLE} ({", ".join(PROCESS_COLUMNS)})
    VALUES ({", ".join(_PROCESS_VALUES)}) ON CONFLICT DO NOTHING RETURNING id"""
#: Write a record back over its row (``$1`` its id).
UPDATE_PROCESS = f"""UPDATE {PROCESS_TABLE} SET {
    ", ".join(f"{c} = {v}" for c, v in list(zip(PROCESS_COLUMNS, _PROCESS_VALUES, strict=True))[1:])
} WHERE id = $1"""
#: Running processes whose claim expired at ``$1`` and that may not run again (see
#: ``lash.store.on_expiry``), locked; rows another claim holds are skipped (it settles them).
EXPIRED_PROCESSES = f"""{_SELECT_PROCESS} WHERE status = 'running'
    AND expires_at IS NOT NULL AND expires_at <= $1 AND recovery <> 'externally_owned'
    AND NOT (recovery = 'rerunnable' AND attempts < max_attempts)
    FOR UPDATE SKIP LOCKED"""
#: The oldest runnable process of the kinds ``$2`` (NULL: any) at ``$1``: pending, or
#: rerunnable with its claim expired and attempts left; locked, skipping the rows another
#: claim holds, so two claims never take the same process.
CLAIMABLE_PROCESS = f"""{_SELECT_PROCESS} WHERE (status = 'pending'
    OR (status = 'running' AND expires_at IS NOT NULL AND expires_at <= $1
        AND recovery = 'rerunnable' AND attempts < max_attempts))
    AND ($2::text[] IS NULL OR kind = ANY ($2::text[]))
    ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED"""
_LISTED = """($1::text IS NULL OR session_id = $1) AND ($2::text IS NULL OR kind = $2)
    AND ($3::text IS NULL OR status = $3) ORDER BY seq LIMIT $4"""
#: Processes by session (``$1``), kind (``$2``) and status (``$3``; NULL: any), oldest first:
#: those of one session (by its index), of one kind (by its index), or any.
LIST_SESSION_PROCESSES = f"{_SELECT_PROCESS} WHERE session_id = $1 AND {_LISTED}"
LIST_KIND_PROCESSES = f"{_SELECT_PROCESS} WHERE kind = $2 AND {_LISTED}"
LIST_PROCESSES = f"{_SELECT_PROCESS} WHERE {_LISTED}"
#: Finished, unnotified processes that finished over ``$1`` seconds ago by the database's clock
#: (which stamped their ``finished_at``), oldest first.
UNNOTIFIED_PROCESSES = f"""{_SELECT_PROCESS} WHERE NOT notified AND finished_at IS NOT NULL
    AND finished_at < lash_now() - $1 ORDER BY seq"""
MARK_PROCESS_NOTIFIED = f"UPDATE {PROCESS_TABLE} SET notified = true WHERE id = $1"
#: SQL: store a blob unless its digest is there already; read one.
PUT_BLOB = (
    "INSERT INTO lash_blobs (sha256, data, size, created_at) VALUES ($1, $2, $3, lash_now()) "
    "ON CONFLICT (sha256) DO NOTHING"
)
GET_BLOB = "SELECT data FROM lash_blobs WHERE sha256 = $1"
LOG_EVENTS = _call("lash_log_events", 6)
#: Listener ``$2`` waits for session ``$1``'s events (migration 5).
WATCH = "SELECT lash_watch($1, $2)"
#: Listener ``$1`` no longer waits for the sessions ``$2``.
UNWATCH = "DELETE FROM lash_watchers WHERE pid = $1 AND session_id = ANY ($2::text[])"
#: Forget the watchers whose listening connection is gone (its server process ended).
FORGET_GONE_WATCHERS = """DELETE FROM lash_watchers AS w
    WHERE NOT EXISTS (SELECT 1 FROM pg_stat_activity AS a WHERE a.pid = w.pid)"""
#: Sessions with pending input or commands and no live lease, the one waiting longest first
#: (``$1`` of them).
RUNNABLE_SESSIONS = """SELECT w.session_id FROM (
    SELECT i.session_id, min(i.created_at) AS oldest
        FROM lash_inputs AS i JOIN lash_sessions AS s ON s.session_id = i.session_id
        CROSS JOIN (SELECT lash_now() AS now) AS t
        WHERE i.state IN ('pending', 'claimed') AND NOT s.lease_expires_at > t.now
        AND lash_input_state(i.state, i.claim_token, s.lease_token, s.lease_expires_at,
            t.now) = 'pending'
        GROUP BY i.session_id
    UNION ALL
    SELECT c.session_id, min(c.created_at)
        FROM lash_commands AS c JOIN lash_sessions AS s ON s.session_id = c.session_id
        CROSS JOIN (SELECT lash_now() AS now) AS t
        WHERE c.state = 'pending' AND NOT s.lease_expires_at > t.now
        GROUP BY c.session_id) AS w
    GROUP BY w.session_id ORDER BY min(w.oldest), w.session_id LIMIT $1"""


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
            f"{LATEST}; {upgrade_to(newest['lash_version'], newest['id'])} on every host that "
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
