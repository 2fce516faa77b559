"""What a lash SQLite file is: its schema, forward migrations and marker, the statements of
the hot paths, and how a file is checked and prepared before the ``sqlite://`` store uses it.

Tables (one database file holds many sessions):

``sessions``
    One head row per session: ``parent_id`` (the parent of a child session, NULL for a root
    session), ``revision`` (0 for a row that a lease or queued input created
    before any commit), ``created_at``/``updated_at``, ``turns``, ``next_seq`` (the seq the next
    node gets, so a commit never counts nodes), ``frame_start`` (seq of the active frame's
    boundary), ``last_user_message``, the content hash of ``config``, ``status`` (how the last
    committed turn ended), ``turn_input``, ``turn_output`` and ``turn_cached`` (the session's
    usage totals of the source ``turn``, its turns' model calls: migration 10, NULL for none),
    the lease (``lease_owner``, ``lease_token``, ``lease_expires_at``)
    and ``running_turn`` (the turn id the lease runs), and the counters of the mailbox and the
    event log: ``input_seq``, ``command_seq``, ``event_seq`` (the latest of each). Two columns
    of lash 0.1, ``protocol_options_hash`` and ``pending_hash``, are kept empty (migration 3).
``nodes``
    Append-only graph nodes, keyed by ``(session_id, seq)``: ``node_id``, ``kind`` (its
    variant tag: ``user``, ``assistant``, ``tool_call``, ``tool_result``, ``plugin``,
    ``frame``, ``outcome``), ``frame_id``, ``turn``, and ``data``, the rest of the node as a
    JSON array (``lash.store.node_row_json``, migration 9): the values of its fields in attrs
    order without ``id``, ``frame_id`` and ``turn``, a nested attrs value (a tool call, a
    usage) an array too, free-form values (tool-call arguments, items, plugin data) as
    ``lash.to_data`` gives them, the trailing fields at their plain defaults left off: a user
    message ``[parent_id, text]``, a tool result ``[parent_id, call_id, name, content]``, an
    assistant message ``[parent_id, text, [[id, name, arguments]...], [input_tokens,
    output_tokens, cached_tokens], model]``. Without keys, a long session's bodies take about
    half the bytes, and decoding them a little more than half the time. For a value the
    generated writer does not know (a subclass of a field's type), ``data`` is the body by
    keys instead (``lash.store.node_body_json``:
    ``lash.to_data(node, lash.GraphNode)`` without ``id``, ``frame_id``, ``turn``, ``type``
    and the fields at their plain defaults), as every row of files before migration 9 holds
    it; rows of files before migration 7 hold the whole form. All of them load as they are.

    A row holds ``node_count`` consecutive nodes (migration 8): the row at ``seq`` *s* holds
    the nodes *s* to *s* + ``node_count`` - 1, its ``node_id``, ``kind`` and ``data`` are
    their values joined with ``"\n"``, and ``frame_id`` and ``turn`` are all of theirs. A
    commit puts its consecutive nodes of one frame and one turn in one row (a turn's six
    nodes: one row to write, one to read back), but for a node that opens a frame (a
    ``FrameBoundary``), which starts a row (so the head's ``frame_start`` is a row's ``seq``),
    and a node whose id or body text holds a ``"\n"``, which gets a row of its own (bodies
    are compact JSON: they never do). Rows of older files are one node each
    (``node_count`` 1). ``seq``, the head's ``next_seq`` and ``frame_start`` number nodes,
    not rows.
``blobs``
    Content-addressed JSON (sha256 of the canonical text) for plugin states and config. Blobs
    nothing refers to any more are deleted in the transaction that drops the last reference.
``plugin_states``
    ``(session_id, plugin) -> blob hash``.
``usage_ledger``
    One row per commit per usage source, with the revision it was committed at (append-only):
    a view (migration 11) of the turn records' ``usage`` (a turn commit's rows) and of
    ``usage_ledger_rows`` (the other commits', and every row written before migration 11).
``usage_totals``
    The running sum of the ledger per ``(session_id, source)``, updated by the same commit, so
    loading or listing a session never sums a ledger that grows with its history; plus the
    ``child:<id>`` sources the commits of child sessions roll up into their ancestors. But for
    the source ``turn``, which nearly every commit adds to: its totals are the head row's
    (migration 10), which the commit rewrites anyway (one b-tree fewer a turn: one WAL page
    and one statement); the ``turn`` rows of older files stay here, and a session's ``turn``
    usage is the sum of the two.
``inputs``
    The mailbox's input, keyed by ``(session_id, seq)``: ``id``, ``key`` (unique in its session
    when set), ``text``, ``items`` (JSON, NULL for none), ``ingress``, ``source``, ``state``
    (``pending``, ``claimed``, ``completed``, ``cancelled``), ``claim_token`` (the fencing token
    of the lease that claimed it), ``created_at``, ``settled_at``, ``turn_id``. The state stored
    is the one last written: a ``claimed`` input whose claim token is not the token of the
    session's live lease reads as ``pending`` (:data:`EFFECTIVE_STATE`).
``commands``
    Session commands, keyed by ``(session_id, seq)``: ``id``, ``key`` (unique in its session),
    ``name``, ``args`` (JSON), ``source``, ``state`` (``pending``, ``applied``), ``created_at``,
    ``applied_at``.
``turn_records``
    How each committed turn ended, keyed by ``(session_id, turn_id)``; ``result`` is the turn's
    result as JSON, ``usage`` its commit's usage (``[[source, input_tokens, output_tokens,
    cached_tokens], ...]``, NULL for none: the ledger's rows of the commit, migration 11; the
    row the commit writes anyway, where a ledger row of its own cost a turn a b-tree more).
``cancel_requests``
    Requests to cancel a running turn, keyed by ``(session_id, turn_id)``.
``events``
    The event log, keyed by ``(session_id, seq)``: ``type``, ``data`` (JSON), ``at``. Each
    connection trims it (see :func:`event_retention`).
``processes``
    Process records (migration 4), in start order (``seq``), one per ``id``; ``key`` is unique
    in the file (keys are global). The columns are :class:`lash.ProcessRecord`'s fields
    (:data:`PROCESS_COLUMNS`); ``payload``, ``result`` and ``progress`` hold JSON. Partial
    indexes keep what a claim reads small: the pending processes in start order, the claims by
    expiry, and the finished ones not yet notified.
``media_blobs``
    Content-addressed bytes (migration 6): the images of turn input, keyed by their sha256,
    written once whatever the number of messages (of any session) that refer to them.
``lash_migrations``
    ``(id, name, applied_at, lash_version)`` of every migration step applied to the file.
``commit_requests``, ``lease_requests``, ``input_requests``, ``input_updates``
    Views that hold no rows: a commit, a lease acquisition, a queued input and a claim or
    cancellation of inputs are each one ``INSERT`` into one of them, whose trigger checks and
    writes everything (see :data:`COMMIT_TRIGGER_STATEMENTS`, :data:`LEASE_TRIGGER_STATEMENTS`,
    :data:`INPUT_TRIGGER_STATEMENTS`, :data:`INPUT_UPDATE_TRIGGER_STATEMENTS`).

The file is marked as a lash database with ``PRAGMA application_id`` (:data:`APPLICATION_ID`);
``PRAGMA user_version`` mirrors the newest migration id, for tools that only read the header.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.metadata
import itertools
import json
import operator
import os
import sqlite3
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

import aiosqlite
import attrs

import lash
import lash.store

#: ``PRAGMA application_id`` of a lash database: the ASCII bytes of "LASH".
APPLICATION_ID = 0x4C415348


@attrs.frozen
class Migration:
    """One forward step of the schema; ``id`` orders them and is never reused. ``run`` moves
    data after the statements ran (in the same transaction)."""

    id: int
    name: str
    statements: tuple[str, ...]
    run: Callable[[aiosqlite.Connection], Awaitable[None]] | None = None


#: Created before migrations run, so a database can always say which steps it has.
CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS lash_migrations (
    id INTEGER PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    applied_at REAL NOT NULL,
    lash_version TEXT NOT NULL
)"""

_INITIAL = (
    # A rowid table: rows carry the last user message, which may be long (WITHOUT ROWID tables
    # are for small rows).
    """CREATE TABLE sessions (
        session_id TEXT PRIMARY KEY NOT NULL,
        revision INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL DEFAULT 0,
        updated_at REAL NOT NULL DEFAULT 0,
        turns INTEGER NOT NULL DEFAULT 0,
        next_seq INTEGER NOT NULL DEFAULT 0,
        frame_start INTEGER NOT NULL DEFAULT 0,
        last_user_message TEXT,
        config_hash TEXT,
        protocol_options_hash TEXT,
        pending_hash TEXT,
        lease_owner TEXT,
        lease_token INTEGER NOT NULL DEFAULT 0,
        lease_expires_at REAL NOT NULL DEFAULT 0
    )""",
    """CREATE TABLE nodes (
        session_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        node_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        frame_id TEXT NOT NULL,
        turn INTEGER NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (session_id, seq)
    )""",
    """CREATE TABLE blobs (
        hash TEXT PRIMARY KEY NOT NULL,
        data TEXT NOT NULL
    )""",
    """CREATE TABLE plugin_states (
        session_id TEXT NOT NULL,
        plugin TEXT NOT NULL,
        blob_hash TEXT NOT NULL,
        PRIMARY KEY (session_id, plugin)
    ) WITHOUT ROWID""",
    """CREATE TABLE usage_ledger (
        session_id TEXT NOT NULL,
        revision INTEGER NOT NULL,
        source TEXT NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        cached_tokens INTEGER NOT NULL,
        recorded_at REAL NOT NULL,
        PRIMARY KEY (session_id, revision, source)
    ) WITHOUT ROWID""",
    """CREATE TABLE usage_totals (
        session_id TEXT NOT NULL,
        source TEXT NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        cached_tokens INTEGER NOT NULL,
        PRIMARY KEY (session_id, source)
    ) WITHOUT ROWID""",
    # Reference lookups for blob garbage collection: one index probe per dropped reference.
    "CREATE INDEX plugin_states_by_blob ON plugin_states (blob_hash)",
    "CREATE INDEX sessions_by_config ON sessions (config_hash)",
    "CREATE INDEX sessions_by_protocol_options ON sessions (protocol_options_hash)",
    "CREATE INDEX sessions_by_pending ON sessions (pending_hash)",
)

#: Migration 2 as lash 0.1 wrote it (frozen: migration 3 replaces its view and trigger).
_ONE_STATEMENT_COMMIT_V2 = (
    """CREATE VIEW commit_requests (session_id, expected_revision, expected_created_at,
        expected_updated_at, expected_turns, expected_next_seq, expected_frame_start,
        expected_last_user_message, expected_config_hash, expected_protocol_options_hash,
        expected_pending_hash, lease_owner, lease_token, revision, created_at, updated_at,
        turns, next_seq, frame_start, last_user_message, config_hash, protocol_options_hash,
        pending_hash, replace, nodes, blobs, states, usage, released)
        AS SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
        NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
        NULL WHERE 0""",
    """CREATE TRIGGER apply_commit_request INSTEAD OF INSERT ON commit_requests BEGIN
    SELECT RAISE(ABORT, 'lash: the session head is not the one this commit was computed from')
        WHERE NOT EXISTS (SELECT 1 FROM sessions WHERE session_id = NEW.session_id
        AND revision IS NEW.expected_revision AND created_at IS NEW.expected_created_at
        AND updated_at IS NEW.expected_updated_at AND turns IS NEW.expected_turns
        AND next_seq IS NEW.expected_next_seq AND frame_start IS NEW.expected_frame_start
        AND last_user_message IS NEW.expected_last_user_message
        AND config_hash IS NEW.expected_config_hash
        AND protocol_options_hash IS NEW.expected_protocol_options_hash
        AND pending_hash IS NEW.expected_pending_hash
        AND lease_owner = NEW.lease_owner AND lease_token = NEW.lease_token
        AND lease_expires_at != 0);
    DELETE FROM nodes WHERE NEW.replace AND session_id = NEW.session_id;
    DELETE FROM plugin_states WHERE NEW.replace AND session_id = NEW.session_id;
    DELETE FROM usage_ledger WHERE NEW.replace AND session_id = NEW.session_id;
    DELETE FROM usage_totals WHERE NEW.replace AND session_id = NEW.session_id;
    INSERT INTO nodes (session_id, seq, node_id, kind, frame_id, turn, data)
        SELECT NEW.session_id, json_extract(value, '$[0]'), json_extract(value, '$[1]'),
        json_extract(value, '$[2]'), json_extract(value, '$[3]'), json_extract(value, '$[4]'),
        json_extract(value, '$[5]') FROM json_each(NEW.nodes);
    INSERT OR IGNORE INTO blobs (hash, data)
        SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(NEW.blobs);
    INSERT INTO plugin_states (session_id, plugin, blob_hash)
        SELECT NEW.session_id, json_extract(value, '$[0]'), json_extract(value, '$[1]')
        FROM json_each(NEW.states) WHERE 1
        ON CONFLICT (session_id, plugin) DO UPDATE SET blob_hash = excluded.blob_hash;
    INSERT INTO usage_ledger (session_id, revision, source, input_tokens,
        output_tokens, cached_tokens, recorded_at)
        SELECT NEW.session_id, NEW.revision, json_extract(value, '$[0]'),
        json_extract(value, '$[1]'), json_extract(value, '$[2]'), json_extract(value, '$[3]'),
        NEW.updated_at FROM json_each(NEW.usage);
    INSERT INTO usage_totals (session_id, source, input_tokens, output_tokens, cached_tokens)
        SELECT NEW.session_id, json_extract(value, '$[0]'), json_extract(value, '$[1]'),
        json_extract(value, '$[2]'), json_extract(value, '$[3]') FROM json_each(NEW.usage) WHERE 1
        ON CONFLICT (session_id, source) DO UPDATE SET
            input_tokens = input_tokens + excluded.input_tokens,
            output_tokens = output_tokens + excluded.output_tokens,
            cached_tokens = cached_tokens + excluded.cached_tokens;
    UPDATE sessions SET revision = NEW.revision, created_at = NEW.created_at,
        updated_at = NEW.updated_at, turns = NEW.turns, next_seq = NEW.next_seq,
        frame_start = NEW.frame_start, last_user_message = NEW.last_user_message,
        config_hash = NEW.config_hash, protocol_options_hash = NEW.protocol_options_hash,
        pending_hash = NEW.pending_hash WHERE session_id = NEW.session_id;
    DELETE FROM blobs WHERE hash IN (SELECT value FROM json_each(NEW.released))
        AND NOT EXISTS (SELECT 1 FROM plugin_states AS r WHERE r.blob_hash = blobs.hash)
        AND NOT EXISTS (SELECT 1 FROM sessions AS r WHERE r.config_hash = blobs.hash)
        AND NOT EXISTS (SELECT 1 FROM sessions AS r WHERE r.protocol_options_hash = blobs.hash)
        AND NOT EXISTS (SELECT 1 FROM sessions AS r WHERE r.pending_hash = blobs.hash);
END""",
)

# -- migration 3: the mailbox --------------------------------------------------------------------

_MAILBOX_TABLES = (
    "ALTER TABLE sessions ADD COLUMN status TEXT",
    "ALTER TABLE sessions ADD COLUMN running_turn TEXT",
    "ALTER TABLE sessions ADD COLUMN input_seq INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE sessions ADD COLUMN command_seq INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE sessions ADD COLUMN event_seq INTEGER NOT NULL DEFAULT 0",
    # When event_seq last moved (the writer's clock): "now" for the log's retention.
    "ALTER TABLE sessions ADD COLUMN events_at REAL NOT NULL DEFAULT 0",
    # A rowid table: with its rows in the primary key's B-tree (WITHOUT ROWID), SQLite's
    # planner, which has no statistics, would walk a session's whole history by that key rather
    # than the small partial indexes below.
    """CREATE TABLE inputs (
        session_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        id TEXT NOT NULL,
        key TEXT,
        text TEXT NOT NULL,
        items TEXT,
        ingress TEXT NOT NULL,
        source TEXT,
        state TEXT NOT NULL,
        claim_token INTEGER,
        created_at REAL NOT NULL,
        settled_at REAL,
        turn_id TEXT,
        PRIMARY KEY (session_id, seq)
    )""",
    "CREATE UNIQUE INDEX inputs_by_id ON inputs (session_id, id)",
    "CREATE UNIQUE INDEX inputs_by_key ON inputs (session_id, key) WHERE key IS NOT NULL",
    # The open ones only: claiming, counting and listing pending input never walk the settled
    # inputs of a session's history.
    """CREATE INDEX inputs_open ON inputs (session_id, seq)
        WHERE state IN ('pending', 'claimed')""",
    """CREATE TABLE commands (
        session_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        id TEXT NOT NULL,
        key TEXT NOT NULL,
        name TEXT NOT NULL,
        args TEXT NOT NULL,
        source TEXT,
        state TEXT NOT NULL,
        created_at REAL NOT NULL,
        applied_at REAL,
        PRIMARY KEY (session_id, seq)
    )""",
    "CREATE UNIQUE INDEX commands_by_id ON commands (session_id, id)",
    "CREATE UNIQUE INDEX commands_by_key ON commands (session_id, key)",
    "CREATE INDEX commands_pending ON commands (session_id, seq) WHERE state = 'pending'",
    """CREATE TABLE turn_records (
        session_id TEXT NOT NULL,
        turn_id TEXT NOT NULL,
        turn_index INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        revision INTEGER NOT NULL,
        reason TEXT,
        result TEXT NOT NULL,
        committed_at REAL NOT NULL,
        PRIMARY KEY (session_id, turn_id)
    ) WITHOUT ROWID""",
    """CREATE TABLE cancel_requests (
        session_id TEXT NOT NULL,
        turn_id TEXT NOT NULL,
        origin TEXT NOT NULL,
        reason TEXT,
        requested_at REAL NOT NULL,
        PRIMARY KEY (session_id, turn_id)
    ) WITHOUT ROWID""",
    # WITHOUT ROWID: a row lives in one B-tree (its primary key's), not a table and an index,
    # so appending an event (or a turn record, below) writes one page less to the WAL. Event
    # data may be long: SQLite spills what does not fit a page's share to overflow pages.
    """CREATE TABLE events (
        session_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        type TEXT NOT NULL,
        data TEXT NOT NULL,
        at REAL NOT NULL,
        PRIMARY KEY (session_id, seq)
    ) WITHOUT ROWID""",
    # Nothing refers to a blob through these columns any more (see _move_legacy_pending).
    "DROP INDEX sessions_by_protocol_options",
    "DROP INDEX sessions_by_pending",
    # The commit statement's view changes shape: dropped here, created again below.
    "DROP TRIGGER apply_commit_request",
    "DROP VIEW commit_requests",
)

#: The source of input that lash 0.1 (or 0.2) had queued on a session head.
LEGACY_INPUT_SOURCE = "lash 0.1"


async def _move_legacy_pending(conn: aiosqlite.Connection) -> None:
    """Migration 3's data step: the queued input strings that lash 0.1 kept in a ``pending``
    blob on the session head become pending input rows (ingress ``next_turn``, source
    :data:`LEGACY_INPUT_SOURCE`, queued when the head was last committed), each logged as
    ``input_queued``; the head's ``pending_hash`` and ``protocol_options_hash`` (unused since
    lash 0.2: the config carries the options) are cleared and their blobs dropped unless
    something else refers to them.

    Written in Python rather than SQL: SQLite's JSON functions cut a string at an escaped NUL,
    and input text is stored exactly (:func:`stored_text`)."""
    rows = await conn.execute_fetchall(
        """SELECT s.session_id, s.updated_at, b.data FROM sessions AS s
        JOIN blobs AS b ON b.hash = s.pending_hash ORDER BY s.session_id"""
    )
    for session_id, updated_at, data in rows:
        texts = json.loads(data)
        if not isinstance(texts, list):
            continue
        events = []
        for seq, value in enumerate(texts, start=1):
            text = value if isinstance(value, str) else json.dumps(value)
            pending = lash.store.PendingInput(
                id=new_input_id(),
                session_id=session_id,
                seq=seq,
                text=text,
                source=LEGACY_INPUT_SOURCE,
                created_at=updated_at,
            )
            await conn.execute(
                """INSERT INTO inputs (session_id, seq, id, text, ingress, source, state,
                created_at) VALUES (?, ?, ?, ?, 'next_turn', ?, 'pending', ?)""",
                (session_id, seq, pending.id, stored_text(text), pending.source, updated_at),
            )
            event = lash.store.input_event("input_queued", pending)
            events.append((session_id, seq, event.type, dumps(event.data), updated_at))
        await conn.executemany(
            "INSERT INTO events (session_id, seq, type, data, at) VALUES (?, ?, ?, ?, ?)", events
        )
        await conn.execute(
            "UPDATE sessions SET input_seq = ?, event_seq = ? WHERE session_id = ?",
            (len(events), len(events), session_id),
        )
    released = [
        str(h)
        for (h,) in await conn.execute_fetchall(
            """SELECT pending_hash FROM sessions WHERE pending_hash IS NOT NULL
            UNION SELECT protocol_options_hash FROM sessions
            WHERE protocol_options_hash IS NOT NULL"""
        )
    ]
    await conn.execute("UPDATE sessions SET pending_hash = NULL, protocol_options_hash = NULL")
    await conn.executemany(RELEASE_BLOB, [{"h": digest} for digest in released])


# -- the one-statement writes ----------------------------------------------------------------

#: The head columns a commit continues from: its guard checks each against the stored row.
#: Only commits write them; the lease, the mailbox and the event log live in other columns,
#: which other processes change without disturbing a writer's view of the head.
HEAD_COLUMNS = (
    "revision",
    "created_at",
    "updated_at",
    "turns",
    "next_seq",
    "frame_start",
    "last_user_message",
    "config_hash",
    "status",
)

#: The columns of ``commit_requests``: one row is one whole commit. The guard columns say which
#: head the writer computed it from (all of it, so that equal timestamps cannot pass another
#: head for it); the rest are the new head's values and the delta, whose variable-length parts
#: are JSON arrays (``None`` for none).
COMMIT_COLUMNS = (
    # the guard: the head it was computed from, and the writer's lease
    "session_id",
    *(f"expected_{column}" for column in HEAD_COLUMNS),
    "lease_owner",
    "lease_token",
    # the new head
    *HEAD_COLUMNS,
    # the delta
    "replace",  # 1: drop the session's nodes, states and usage first
    "nodes",  # [[seq, node_id, kind, frame_id, turn, data, node_count], ...]: node rows
    "blobs",  # [[hash, data], ...]
    "states",  # [[plugin, blob_hash], ...]
    "usage",  # [[source, input_tokens, output_tokens, cached_tokens], ...]
    "released",  # [hash, ...]: blobs to drop unless something still refers to them
    "claimed",  # [input id, ...]: claimed by this lease, completed by this commit
    "applied",  # [command id, ...]: pending, applied by this commit
    "turn_id",  # the turn this commit completes (NULL: none), and its record:
    "turn_index",
    "turn_outcome",
    "turn_reason",
    "turn_result",  # JSON
    "events",  # [[type, data], ...]: appended to the event log, in order
    "parent_id",  # the parent of a child session (NULL: leave the head's link as it is)
    "rollup",  # [[session_id, source, input, output, cached], ...]: other sessions' usage
    "release",  # 1: release the lease
)

#: The messages of the commit trigger's ``RAISE``\ s. ``STALE_HEAD``: the head changed since
#: the writer read it (another commit, a lost lease, a delete); the store then reads the head
#: again and says what happened. The others refuse the commit for what its delta says.
STALE_HEAD = "lash: the session head is not the one this commit was computed from"
CLAIM_LOST = "lash: an input this commit settles is not claimed by its lease"
COMMAND_GONE = "lash: a command this commit applies is not pending"
TURN_EXISTS = "lash: a turn with this id is committed already"
#: ``lease_requests``: another owner holds a live lease.
BUSY = "lash: another owner holds the lease of the session"
#: ``input_requests``: the key is taken by other content.
KEY_CONFLICT = "lash: the key was used with other content"

#: The tables holding a session's rows besides its head, dropped when a commit replaces it.
SESSION_TABLES = ("nodes", "plugin_states", "usage_ledger_rows", "usage_totals")
#: And the ones a delete drops too: the mailbox, turn records and the event log.
MAILBOX_TABLES = ("inputs", "commands", "turn_records", "cancel_requests", "events")

#: ``(table, column)`` of every reference to a blob hash: a blob nothing refers to is dropped.
BLOB_REFERENCES = (("plugin_states", "blob_hash"), ("sessions", "config_hash"))


def _unreferenced(blob: str) -> str:
    """SQL: true when nothing in :data:`BLOB_REFERENCES` refers to the hash ``blob``."""
    return "\n        AND ".join(
        f"NOT EXISTS (SELECT 1 FROM {table} AS r WHERE r.{column} = {blob})"
        for table, column in BLOB_REFERENCES
    )


def _item(index: int) -> str:
    return f"json_extract(value, '$[{index}]')"


def _items(count: int) -> str:
    return ", ".join(_item(i) for i in range(count))


def _append_events(at: str) -> str:
    """SQL (in a trigger): append ``NEW.events`` (``[[type, data], ...]``) to the session's log
    after its latest event, stamped ``at``; the head's ``event_seq`` is moved after them."""
    return f"""INSERT INTO events (session_id, seq, type, data, at)
        SELECT NEW.session_id, h.event_seq + key + 1, {_items(2)}, {at}
        FROM sessions AS h, json_each(NEW.events) WHERE h.session_id = NEW.session_id"""


#: SQL: how many events ``NEW.events`` holds.
_EVENT_COUNT = "COALESCE(json_array_length(NEW.events), 0)"


def _all_found(table: str, ids: str, condition: str) -> str:
    """SQL: every id of the JSON array ``ids`` names a row of the session in ``table`` that
    meets ``condition`` (the array holds no id twice)."""
    return f"""(SELECT COUNT(*) FROM {table} WHERE session_id = NEW.session_id
        AND id IN (SELECT value FROM json_each({ids})) AND {condition})
        = json_array_length({ids})"""


#: The usage source whose totals a session's head row holds (``turn_input``, ``turn_output``,
#: ``turn_cached``): the one the kernel adds each turn's model calls to.
TURN_SOURCE = "turn"
#: The head's columns of :data:`TURN_SOURCE`'s totals, in ``lash.Usage``'s order.
TURN_USAGE_COLUMNS = ("turn_input", "turn_output", "turn_cached")


def _turn_usage(index: int) -> str:
    """SQL (in the commit trigger): count ``index`` (1: input, 2: output, 3: cached) of the
    source ``turn`` in ``NEW.usage`` (NULL: the commit has none)."""
    return f"""(SELECT {_item(index)} FROM json_each(NEW.usage)
            WHERE {_item(0)} = '{TURN_SOURCE}')"""


def _link_incarnation(parent: str, now: str) -> str:
    """SQL (in a head's ``UPDATE``, at time ``now``): the head's ``parent_incarnation`` once
    ``parent`` (NULL: unchanged) is its parent: a new link names the parent's incarnation as
    the store has it now (the kernel cannot know it for a parent still in its first turn, not
    committed yet; its lease keeps it from being deleted meanwhile), or, for a parent's
    tombstone (deleted once at least, no commit, no first turn running: a child made from a
    handle on the deleted session), the deleted one's, below it; an unchanged link keeps its
    own."""
    return f"""CASE WHEN {parent} IS NOT NULL AND {parent} IS NOT parent_id THEN COALESCE(
        (SELECT CASE WHEN p.revision = 0 AND p.incarnation > 0 AND p.lease_expires_at <= {now}
            THEN p.incarnation - 1 ELSE p.incarnation END
            FROM sessions AS p WHERE p.session_id = {parent}), 0)
        ELSE parent_incarnation END"""


def _ancestors(session: str) -> str:
    """SQL: the ids a commit of ``session`` rolls usage up into: its stored chain of parent
    links, as far as each link names its parent's current incarnation (a deleted ancestor,
    or a session created again under its id, ends it). One primary-key lookup per ancestor;
    ``UNION`` ends a loop too."""
    return f"""WITH RECURSIVE chain (session_id, incarnation) AS (
            SELECT parent_id, parent_incarnation FROM sessions WHERE session_id = {session}
            UNION SELECT a.parent_id, a.parent_incarnation FROM chain JOIN sessions AS a
                ON a.session_id = chain.session_id AND a.incarnation = chain.incarnation)
        SELECT a.session_id FROM chain JOIN sessions AS a
            ON a.session_id = chain.session_id AND a.incarnation = chain.incarnation"""


def _add_turn_usage(replace: str, added: Callable[[int], str]) -> str:
    """SQL: the ``SET`` of the head's :data:`TURN_USAGE_COLUMNS` for a commit that adds
    ``added(i)`` to each (NULL: nothing; a column NULL before takes it as it is), or, when
    ``replace`` holds, starts them over from it."""
    return ",\n        ".join(
        f"{c} = CASE WHEN {replace} THEN {added(i)} "
        f"ELSE COALESCE({c} + {added(i)}, {added(i)}, {c}) END"
        for i, c in enumerate(TURN_USAGE_COLUMNS, 1)
    )


#: The statements of the ``commit_requests`` trigger, in order. A commit is one ``INSERT`` into
#: that view: SQLite undoes every effect of a statement that fails, so a commit is all or
#: nothing even when a ``COMMIT`` was queued right behind it (no separate round trip to check
#: that every write succeeded). A term that names no table (``NEW.replace AND ...``,
#: ``NEW.claimed IS NOT NULL AND ...``) is tested once, before any row is visited, so what a
#: commit does not carry costs it nothing.
COMMIT_TRIGGER_STATEMENTS: dict[str, str] = {
    "guard": f"""SELECT RAISE(ABORT, '{STALE_HEAD}') WHERE NOT EXISTS (
        SELECT 1 FROM sessions WHERE session_id = NEW.session_id
        {"".join(f"AND {c} IS NEW.expected_{c} " for c in HEAD_COLUMNS)}
        AND lease_owner = NEW.lease_owner AND lease_token = NEW.lease_token
        AND lease_expires_at != 0)""",
    # The claims the commit settles are this lease's (whether or not the lease has expired:
    # an expired lease nobody took over still commits, see lash.store.check_lease).
    "claims": f"""SELECT RAISE(ABORT, '{CLAIM_LOST}') WHERE NEW.claimed IS NOT NULL
        AND NOT {
        _all_found("inputs", "NEW.claimed", "state = 'claimed' AND claim_token = NEW.lease_token")
    }""",
    "commands": f"""SELECT RAISE(ABORT, '{COMMAND_GONE}') WHERE NEW.applied IS NOT NULL
        AND NOT {_all_found("commands", "NEW.applied", "state = 'pending'")}""",
    "turn": f"""SELECT RAISE(ABORT, '{TURN_EXISTS}') WHERE NEW.turn_id IS NOT NULL
        AND EXISTS (SELECT 1 FROM turn_records WHERE session_id = NEW.session_id
        AND turn_id = NEW.turn_id)""",
    **{
        f"drop {table}": f"DELETE FROM {table} WHERE NEW.replace AND session_id = NEW.session_id"
        for table in SESSION_TABLES
    },
    # The turn records stay (a turn id is committed once), their usage goes with the ledger.
    "drop turn usage": """UPDATE turn_records SET usage = NULL WHERE NEW.replace
        AND session_id = NEW.session_id AND usage IS NOT NULL""",
    # A node row without a count is one node: what a lash of migration 7, still running on a
    # file a newer one upgraded, sends (its rows stay valid, as its older rows do).
    "nodes": f"""INSERT INTO nodes (session_id, seq, node_id, kind, frame_id, turn, data,
        node_count) SELECT NEW.session_id, {_items(6)}, COALESCE({_item(6)}, 1)
        FROM json_each(NEW.nodes)""",
    "blobs": f"""INSERT OR IGNORE INTO blobs (hash, data)
        SELECT {_items(2)} FROM json_each(NEW.blobs)""",
    # WHERE 1: an upsert's SELECT needs a WHERE clause (SQLite's parsing rule).
    "states": f"""INSERT INTO plugin_states (session_id, plugin, blob_hash)
        SELECT NEW.session_id, {_items(2)} FROM json_each(NEW.states) WHERE 1
        ON CONFLICT (session_id, plugin) DO UPDATE SET blob_hash = excluded.blob_hash""",
    # A turn's usage is its record's (see "record").
    "ledger": f"""INSERT INTO usage_ledger_rows (session_id, revision, source, input_tokens,
        output_tokens, cached_tokens, recorded_at)
        SELECT NEW.session_id, NEW.revision, {_items(4)}, NEW.updated_at
        FROM json_each(NEW.usage) WHERE NEW.turn_id IS NULL""",
    # The source "turn" is the head's (see "head").
    "totals": f"""INSERT INTO usage_totals (session_id, source, input_tokens, output_tokens,
        cached_tokens) SELECT NEW.session_id, {_items(4)} FROM json_each(NEW.usage)
        WHERE {_item(0)} IS NOT '{TURN_SOURCE}' ON CONFLICT (session_id, source) DO UPDATE SET
            input_tokens = input_tokens + excluded.input_tokens,
            output_tokens = output_tokens + excluded.output_tokens,
            cached_tokens = cached_tokens + excluded.cached_tokens""",
    "settle": """UPDATE inputs SET state = 'completed', settled_at = NEW.updated_at,
        turn_id = NEW.turn_id, claim_token = NULL
        WHERE NEW.claimed IS NOT NULL AND session_id = NEW.session_id
        AND id IN (SELECT value FROM json_each(NEW.claimed))""",
    "apply": """UPDATE commands SET state = 'applied', applied_at = NEW.updated_at
        WHERE NEW.applied IS NOT NULL AND session_id = NEW.session_id
        AND id IN (SELECT value FROM json_each(NEW.applied))""",
    "record": """INSERT INTO turn_records (session_id, turn_id, turn_index, outcome, revision,
        reason, result, committed_at, usage) SELECT NEW.session_id, NEW.turn_id, NEW.turn_index,
        NEW.turn_outcome, NEW.revision, NEW.turn_reason, NEW.turn_result, NEW.updated_at,
        NEW.usage WHERE NEW.turn_id IS NOT NULL""",
    "cancelled": """DELETE FROM cancel_requests WHERE NEW.turn_id IS NOT NULL
        AND session_id = NEW.session_id AND turn_id = NEW.turn_id""",
    "events": _append_events("NEW.updated_at"),
    "head": f"""UPDATE sessions SET revision = NEW.revision, created_at = NEW.created_at,
        updated_at = NEW.updated_at, turns = NEW.turns, next_seq = NEW.next_seq,
        frame_start = NEW.frame_start, last_user_message = NEW.last_user_message,
        config_hash = NEW.config_hash, status = NEW.status,
        {_add_turn_usage("NEW.replace", _turn_usage)},
        parent_id = COALESCE(NEW.parent_id, parent_id),
        parent_incarnation = {_link_incarnation("NEW.parent_id", "NEW.updated_at")},
        event_seq = event_seq + {_EVENT_COUNT}, events_at = NEW.updated_at,
        lease_expires_at = CASE WHEN NEW.release THEN 0 ELSE lease_expires_at END,
        running_turn = CASE WHEN NEW.release THEN NULL ELSE running_turn END
        WHERE session_id = NEW.session_id""",
    # After the head (which stores a new child's link): a child's usage added to its
    # ancestors' totals (not their ledgers: those keep one row per commit of their own
    # session), along its stored chain of links only (see ANCESTORS).
    "rollup": f"""INSERT INTO usage_totals (session_id, source, input_tokens, output_tokens,
        cached_tokens) SELECT {_items(5)} FROM json_each(NEW.rollup) WHERE NEW.rollup IS NOT NULL
        AND {_item(0)} IN ({_ancestors("NEW.session_id")})
        ON CONFLICT (session_id, source) DO UPDATE SET
            input_tokens = input_tokens + excluded.input_tokens,
            output_tokens = output_tokens + excluded.output_tokens,
            cached_tokens = cached_tokens + excluded.cached_tokens""",
    # Last: after the head and the states point at their new blobs.
    "release": f"""DELETE FROM blobs WHERE hash IN (SELECT value FROM json_each(NEW.released))
        AND {_unreferenced("blobs.hash")}""",
}

#: The columns of ``lease_requests``: one row is one ``acquire_lease``.
LEASE_COLUMNS = (
    "session_id",
    "owner",
    "now",
    "expires_at",
    "take_over_owner",  # the lease the caller proved dead (NULL: none)
    "take_over_token",
    "turn",  # the turn id the lease runs (NULL: none)
    "events",  # [[type, data], ...]
)

#: The statements of the ``lease_requests`` trigger: :func:`lash.store.take_lease` in SQL.
#: Another owner's live lease refuses (``BUSY``) unless it is exactly the lease presented as
#: ``take_over``; the owner's own live lease is extended and keeps its token; anything else
#: (no lease, an expired or released one, one taken over) gets the next token.
LEASE_TRIGGER_STATEMENTS: dict[str, str] = {
    "head": "INSERT OR IGNORE INTO sessions (session_id) VALUES (NEW.session_id)",
    "busy": f"""SELECT RAISE(ABORT, '{BUSY}') FROM sessions WHERE session_id = NEW.session_id
        AND lease_owner IS NOT NULL AND lease_owner != NEW.owner AND lease_expires_at > NEW.now
        AND NOT (lease_owner IS NEW.take_over_owner AND lease_token IS NEW.take_over_token)""",
    "events": _append_events("NEW.now"),
    "lease": f"""UPDATE sessions SET
        lease_token = CASE WHEN lease_owner = NEW.owner AND lease_expires_at > NEW.now
            THEN lease_token ELSE lease_token + 1 END,
        lease_owner = NEW.owner, lease_expires_at = NEW.expires_at, running_turn = NEW.turn,
        event_seq = event_seq + {_EVENT_COUNT}, events_at = NEW.now
        WHERE session_id = NEW.session_id""",
}

#: The columns of ``input_requests``: one row is one input to queue (``event`` is its
#: ``input_queued`` data, whose ``input.seq`` the trigger fills in).
INPUT_COLUMNS = (
    "session_id",
    "id",
    "key",
    "text",
    "items",
    "ingress",
    "source",
    "created_at",
    "event",
)

#: SQL (in the ``input_requests`` trigger): the input already queued under ``NEW.key``.
_KEYED = "FROM inputs WHERE NEW.key IS NOT NULL AND session_id = NEW.session_id AND key = NEW.key"

#: The statements of the ``input_requests`` trigger: a key already used with the same text,
#: items and ingress queues nothing; with other content it refuses (``KEY_CONFLICT``). The
#: head row (created for a new session) moves its counters first, and the input and its event
#: take their numbers.
INPUT_TRIGGER_STATEMENTS: dict[str, str] = {
    "conflict": f"""SELECT RAISE(ABORT, '{KEY_CONFLICT}') {_KEYED}
        AND NOT (text IS NEW.text AND items IS NEW.items AND ingress IS NEW.ingress)""",
    # WHERE: an upsert's SELECT needs one (SQLite's parsing rule), and this one queues nothing
    # for a key that is taken.
    "head": f"""INSERT INTO sessions (session_id, input_seq, event_seq, events_at)
        SELECT NEW.session_id, 1, 1, NEW.created_at WHERE NOT EXISTS (SELECT 1 {_KEYED})
        ON CONFLICT (session_id) DO UPDATE SET input_seq = input_seq + 1,
            event_seq = event_seq + 1, events_at = excluded.events_at""",
    "input": f"""INSERT INTO inputs (session_id, seq, id, key, text, items, ingress, source,
        state, created_at) SELECT NEW.session_id, input_seq, NEW.id, NEW.key, NEW.text,
        NEW.items, NEW.ingress, NEW.source, 'pending', NEW.created_at FROM sessions
        WHERE session_id = NEW.session_id AND NOT EXISTS (SELECT 1 {_KEYED})""",
    # Only for an input queued now (its id is new).
    "event": """INSERT INTO events (session_id, seq, type, data, at)
        SELECT NEW.session_id, h.event_seq, 'input_queued',
            json_set(NEW.event, '$.input.seq', h.input_seq), NEW.created_at
        FROM sessions AS h WHERE h.session_id = NEW.session_id AND EXISTS (SELECT 1 FROM inputs
            WHERE session_id = NEW.session_id AND seq = h.input_seq AND id = NEW.id)""",
}


#: The columns of ``input_updates``: one row sets inputs (``ids``, a JSON array) to ``state``
#: with ``claim_token`` (a claim, a cancellation) and logs ``events``.
INPUT_UPDATE_COLUMNS = ("session_id", "ids", "state", "claim_token", "now", "events")

#: The statements of the ``input_updates`` trigger.
INPUT_UPDATE_TRIGGER_STATEMENTS: dict[str, str] = {
    "inputs": """UPDATE inputs SET state = NEW.state, claim_token = NEW.claim_token,
        settled_at = CASE WHEN NEW.state = 'cancelled' THEN NEW.now ELSE settled_at END
        WHERE session_id = NEW.session_id AND id IN (SELECT value FROM json_each(NEW.ids))""",
    "events": _append_events("NEW.now"),
    "counter": f"""UPDATE sessions SET event_seq = event_seq + {_EVENT_COUNT},
        events_at = NEW.now WHERE session_id = NEW.session_id""",
}


def _view(name: str, columns: tuple[str, ...], statements: dict[str, str]) -> tuple[str, str]:
    """A view that holds no rows, and the trigger that runs ``statements`` for each row
    inserted into it."""
    return (
        f"""CREATE VIEW {name} ({", ".join(columns)})
        AS SELECT {", ".join(["NULL"] * len(columns))} WHERE 0""",
        f"CREATE TRIGGER apply_{name.removesuffix('s')} INSTEAD OF INSERT ON {name} BEGIN\n"
        + "".join(f"    {sql};\n" for sql in statements.values())
        + "END",
    )


_ONE_STATEMENT_WRITES = (
    *_view("commit_requests", COMMIT_COLUMNS, COMMIT_TRIGGER_STATEMENTS),
    *_view("lease_requests", LEASE_COLUMNS, LEASE_TRIGGER_STATEMENTS),
    *_view("input_requests", INPUT_COLUMNS, INPUT_TRIGGER_STATEMENTS),
    *_view("input_updates", INPUT_UPDATE_COLUMNS, INPUT_UPDATE_TRIGGER_STATEMENTS),
)

# -- migration 4: processes ----------------------------------------------------------------------

_PROCESS_TABLES = (
    # ``seq`` (the rowid) is the start order claims and listings follow.
    """CREATE TABLE processes (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        session_id TEXT,
        status TEXT NOT NULL,
        key TEXT,
        recovery TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        max_attempts INTEGER NOT NULL,
        timeout REAL,
        source TEXT,
        owner TEXT,
        token INTEGER NOT NULL DEFAULT 0,
        expires_at REAL,
        created_at REAL NOT NULL,
        started_at REAL,
        finished_at REAL,
        cancel_requested TEXT,
        notified INTEGER NOT NULL DEFAULT 0,
        payload TEXT NOT NULL,
        result TEXT,
        error TEXT,
        progress TEXT
    )""",
    # Keys are global: one process per key in the whole file.
    "CREATE UNIQUE INDEX processes_by_key ON processes (key) WHERE key IS NOT NULL",
    "CREATE INDEX processes_by_session ON processes (session_id, seq) WHERE session_id IS NOT NULL",
    "CREATE INDEX processes_by_kind ON processes (kind, seq)",
    # What a claim looks at, and nothing else: the pending ones in start order, and the claims
    # by expiry (a claim finds the expired ones as a range of it).
    "CREATE INDEX processes_pending ON processes (seq) WHERE status = 'pending'",
    """CREATE INDEX processes_claimed ON processes (expires_at)
        WHERE status = 'running' AND expires_at IS NOT NULL""",
    # The notification outbox: finished processes whose process_finished has not run yet.
    """CREATE INDEX processes_unnotified ON processes (seq)
        WHERE notified = 0 AND finished_at IS NOT NULL""",
)

# -- migration 5: child sessions ------------------------------------------------------------

_CHILD_SESSIONS = (
    # The parent of a child session (NULL: a root session), written by the child's commits.
    "ALTER TABLE sessions ADD COLUMN parent_id TEXT",
    # The commit statement gains the parent link and the usage roll-up: its view changes shape.
    "DROP TRIGGER apply_commit_request",
    "DROP VIEW commit_requests",
    *_view("commit_requests", COMMIT_COLUMNS, COMMIT_TRIGGER_STATEMENTS),
)

# -- migration 6: media blobs --------------------------------------------------------------

_MEDIA_BLOBS = (
    # Content-addressed bytes (the images of turn input), shared by every session of the file.
    """CREATE TABLE media_blobs (
        sha256 TEXT PRIMARY KEY,
        data BLOB NOT NULL,
        size INTEGER NOT NULL,
        created_at REAL NOT NULL
    )""",
)

# -- migration 8: a commit's nodes in one row ------------------------------------------------

_PACKED_NODES = (
    # The commit statement writes the new column: its trigger is made again (first dropped, so
    # that no trigger names a column the table does not have yet). Existing rows are one node
    # each, which the column's default says: no row is rewritten.
    "DROP TRIGGER apply_commit_request",
    "DROP VIEW commit_requests",
    "ALTER TABLE nodes ADD COLUMN node_count INTEGER NOT NULL DEFAULT 1",
    *_view("commit_requests", COMMIT_COLUMNS, COMMIT_TRIGGER_STATEMENTS),
)

# -- migration 10: the totals of the source "turn" in the head row ---------------------------

_TURN_USAGE_IN_HEAD = (
    # The commit statement's trigger writes the new columns: made again, first dropped (as in
    # migration 8). Existing totals stay in usage_totals, whose rows a load and the listing
    # add to the head's: no row is moved.
    "DROP TRIGGER apply_commit_request",
    "DROP VIEW commit_requests",
    *(f"ALTER TABLE sessions ADD COLUMN {c} INTEGER" for c in TURN_USAGE_COLUMNS),
    *_view("commit_requests", COMMIT_COLUMNS, COMMIT_TRIGGER_STATEMENTS),
)

# -- migration 11: a turn's usage in its turn record ------------------------------------------

#: The columns of the usage ledger (the view ``usage_ledger``, the table ``usage_ledger_rows``).
LEDGER_COLUMNS = (
    "session_id",
    "revision",
    "source",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "recorded_at",
)
_LEDGER = ", ".join(LEDGER_COLUMNS)

_TURN_USAGE_IN_RECORD = (
    # The commit statement's trigger writes the new column: made again, first dropped (as in
    # migration 8), also so that no trigger names the ledger's table while it is renamed.
    "DROP TRIGGER apply_commit_request",
    "DROP VIEW commit_requests",
    # A turn commit's usage (JSON: [[source, input, output, cached], ...], NULL for none): the
    # row the commit writes anyway, rather than a row of its own in the ledger's b-tree.
    "ALTER TABLE turn_records ADD COLUMN usage TEXT",
    # The ledger's rows of the other commits (and every row written before this step: none is
    # moved) ...
    "ALTER TABLE usage_ledger RENAME TO usage_ledger_rows",
    # ... and the ledger as it was: one row per commit and source, its turns' rows read out
    # of their records.
    f"""CREATE VIEW usage_ledger ({_LEDGER}) AS
        SELECT {_LEDGER} FROM usage_ledger_rows
        UNION ALL
        SELECT t.session_id, t.revision, {
        ", ".join(f"json_extract(u.value, '$[{i}]')" for i in range(4))
    }, t.committed_at FROM turn_records AS t, json_each(t.usage) AS u
        WHERE t.usage IS NOT NULL""",
    # What a lash of migration 10, still running on a file a newer one upgraded, writes to
    # the ledger (its rows, and a delete's) goes to the rows' table.
    f"""CREATE TRIGGER usage_ledger_insert INSTEAD OF INSERT ON usage_ledger BEGIN
        INSERT INTO usage_ledger_rows ({_LEDGER})
            VALUES ({", ".join(f"NEW.{c}" for c in LEDGER_COLUMNS)});
    END""",
    # An older lash deletes a session's ledger with the rest of its rows (its delete, its
    # replacing commit): its head's turn totals, which that lash does not know, go with it, or
    # the tombstone would keep them and the session started again would count them twice. (Any
    # commit that adds to them writes a ledger row, so a session with totals has one to delete;
    # this lash never deletes through the view.)
    """CREATE TRIGGER usage_ledger_delete INSTEAD OF DELETE ON usage_ledger BEGIN
        DELETE FROM usage_ledger_rows WHERE session_id = OLD.session_id
            AND revision = OLD.revision AND source = OLD.source;
        UPDATE sessions SET turn_input = NULL, turn_output = NULL, turn_cached = NULL
            WHERE session_id = OLD.session_id AND turn_input IS NOT NULL;
    END""",
    *_view("commit_requests", COMMIT_COLUMNS, COMMIT_TRIGGER_STATEMENTS),
)

# -- migration 12: session incarnations -----------------------------------------------------

_INCARNATIONS = (
    # The commit statement's trigger writes the new columns: made again, first dropped (as in
    # migration 8).
    "DROP TRIGGER apply_commit_request",
    "DROP VIEW commit_requests",
    # How many times the id was deleted before this session was created (the tombstone keeps
    # and raises it), and a child's parent's when its link was stored.
    "ALTER TABLE sessions ADD COLUMN incarnation INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE sessions ADD COLUMN parent_incarnation INTEGER NOT NULL DEFAULT 0",
    # A head at revision 0 that some child links to and whose lease is not live (no first
    # turn runs) is a tombstone deleted under its children: raised, so they stop rolling up
    # into it and into a session created under its id later, and what they rolled up into it
    # since the delete goes. (A session deleted and created again before this step cannot be
    # told from its first one.)
    """UPDATE sessions SET incarnation = 1 WHERE revision = 0
        AND lease_expires_at < (julianday('now') - 2440587.5) * 86400.0
        AND session_id IN (SELECT parent_id FROM sessions WHERE parent_id IS NOT NULL)""",
    """DELETE FROM usage_totals WHERE session_id IN
        (SELECT session_id FROM sessions WHERE incarnation = 1)""",
    *_view("commit_requests", COMMIT_COLUMNS, COMMIT_TRIGGER_STATEMENTS),
)

#: Every migration this lash knows, in order. Append new steps; never edit or renumber one.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial schema", _INITIAL),
    Migration(2, "one-statement commit", _ONE_STATEMENT_COMMIT_V2),
    Migration(3, "mailbox", (*_MAILBOX_TABLES, *_ONE_STATEMENT_WRITES), _move_legacy_pending),
    Migration(4, "processes", _PROCESS_TABLES),
    Migration(5, "child sessions", _CHILD_SESSIONS),
    Migration(6, "media blobs", _MEDIA_BLOBS),
    # No statement: a marker. From here on a node row's JSON holds the node's body only (its
    # id, kind, frame and turn are the row's columns; older rows, whole, still load), which a
    # lash without this step cannot read: it refuses the file as a newer lash's instead.
    Migration(7, "node rows hold the body only", ()),
    # A row holds consecutive nodes of a commit (see ``nodes`` above), which a lash without
    # this step would read as one node with odd text: it refuses the file instead.
    Migration(8, "node rows hold several nodes", _PACKED_NODES),
    # No statement: a marker. From here on a node's body may be a JSON array of its fields'
    # values (``lash.store.node_row_json``), which a lash without this step would refuse as
    # not a node: it refuses the file as a newer lash's instead.
    Migration(9, "node bodies positional", ()),
    # A commit adds its usage of the source "turn" to the head row it rewrites anyway, not to
    # usage_totals (one b-tree fewer a turn); a lash without this step would read those totals
    # short: it refuses the file instead.
    Migration(10, "turn usage in the head", _TURN_USAGE_IN_HEAD),
    # A turn commit's ledger rows are its turn record's ``usage`` (one b-tree fewer a turn);
    # ``usage_ledger`` becomes a view of both. A lash without this step would not see them in
    # its ledger: it refuses the file instead.
    Migration(11, "turn usage in the turn record", _TURN_USAGE_IN_RECORD),
    # A delete raises the id's incarnation; a child's link keeps its parent's, and a roll-up
    # follows the links that still name their parent's. A lash without this step would roll
    # a child's usage up into a deleted parent's tombstone and into the session created again
    # under its id: it refuses the file instead.
    Migration(12, "session incarnations", _INCARNATIONS),
)

#: The newest migration id this lash knows.
LATEST = MIGRATIONS[-1].id


# -- values as the database holds them -------------------------------------------------------


def new_input_id() -> str:
    """A new input id: 64 random bits, as the memory store's."""
    return f"in-{os.urandom(8).hex()}"


#: ``json.dumps`` with these arguments builds an encoder on each call: built once here, by
#: (keys sorted, ASCII only).
_ENCODERS = {
    (canonical, ascii_only): json.JSONEncoder(
        separators=(",", ":"), sort_keys=canonical, ensure_ascii=ascii_only
    ).encode
    for canonical in (False, True)
    for ascii_only in (False, True)
}


def dumps(data: Any, *, canonical: bool = False) -> str:
    """Compact JSON of ``data`` (``canonical``: keys sorted). Lone surrogates (undecodable bytes
    kept by surrogateescape) cannot be stored as UTF-8 text: then JSON escapes hold them, which
    round-trip exactly.

    :raises TypeError, ValueError: for what is not JSON data.
    """
    text = _ENCODERS[canonical, False](data)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = _ENCODERS[canonical, True](data)
    return text


def stored_text(text: str) -> str | bytes:
    """``text`` as a column holds it exactly: text, or (for text with lone surrogates, which
    SQLite text cannot hold) its UTF-8 bytes with the surrogates kept, as a blob."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")
    return text


def read_text(value: str | bytes | None) -> str | None:
    """A column written by :func:`stored_text`, as the text it was."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogatepass")
    return value


# -- statements ------------------------------------------------------------------------------
# Named here so a test can check with EXPLAIN QUERY PLAN that none of them scans a table: their
# cost must not grow with a session's history (DESIGN invariant 2).

#: The lease columns of the head row.
LEASE_OF_HEAD = "lease_owner, lease_token, lease_expires_at"

HEAD = f"""SELECT {", ".join(HEAD_COLUMNS)}, {LEASE_OF_HEAD} FROM sessions WHERE session_id = ?"""

#: SQL: the state of input row ``i`` as everyone sees it, given its session's head row ``h``
#: and the time ``:now``: a claim whose lease is not live (released, expired, taken over) is
#: ``pending`` again (:func:`lash.store.effective_state`).
EFFECTIVE_STATE = """CASE WHEN i.state = 'claimed' AND NOT (i.claim_token IS h.lease_token
    AND h.lease_expires_at > :now) THEN 'pending' ELSE i.state END"""

#: SQL: pending input (and commands) of the session of head row ``h``.
PENDING_COUNTS = f"""(SELECT COUNT(*) FROM inputs AS i WHERE i.session_id = h.session_id
        AND i.state IN ('pending', 'claimed') AND {EFFECTIVE_STATE} = 'pending'),
    (SELECT COUNT(*) FROM commands AS c WHERE c.session_id = h.session_id
        AND c.state = 'pending')"""

#: The lease, the head revision and the pending counts (parameters ``:sid``, ``:now``).
LEASE = f"""SELECT {LEASE_OF_HEAD}, h.revision, {PENDING_COUNTS}
    FROM sessions AS h WHERE h.session_id = :sid"""

#: The time of the oldest stored event of a session (no row: none).
OLDEST_EVENT = "SELECT at FROM events WHERE session_id = ? ORDER BY seq LIMIT 1"

#: What a lease acquisition reads in its transaction, in one statement: :data:`LEASE`'s
#: columns, then the head (:data:`HEAD_COLUMNS`), its event counter and the time of its oldest
#: event (for the log's retention) and its plugin states' hashes (a JSON array of
#: ``[plugin, hash]``), from which the execution's first commit continues.
LEASE_AND_HEAD = f"""SELECT {LEASE_OF_HEAD}, h.revision, {PENDING_COUNTS},
    {", ".join(f"h.{c}" for c in HEAD_COLUMNS)}, h.event_seq, (SELECT e.at FROM events AS e
        WHERE e.session_id = h.session_id ORDER BY e.seq LIMIT 1),
    (SELECT json_group_array(json_array(p.plugin, p.blob_hash)) FROM plugin_states AS p
        WHERE p.session_id = h.session_id)
    FROM sessions AS h WHERE h.session_id = :sid"""

#: A lease acquisition's write as one statement, for a session whose head row exists
#: (parameters as :data:`LEASE_TRIGGER_STATEMENTS`' ``NEW`` columns, plus ``:events``, how many
#: events it logs): the trigger's busy check is its ``WHERE`` and its update its ``SET``; the
#: caller then reads :data:`LEASE_AND_HEAD` and appends the events (:data:`APPEND_EVENT`).
#: No row changed: a busy lease or no head row, for which the caller runs :data:`ACQUIRE`
#: instead (which creates the head, or refuses with ``BUSY``). (``RETURNING`` the read costs
#: more than the read.) It leaves ``events_at`` as it is, so that the log's retention trigger
#: does not fire: the caller trims the log itself (:func:`event_retention`).
TAKE_LEASE = """UPDATE sessions SET
    lease_token = CASE WHEN lease_owner = :owner AND lease_expires_at > :now
        THEN lease_token ELSE lease_token + 1 END,
    lease_owner = :owner, lease_expires_at = :expires_at, running_turn = :turn,
    event_seq = event_seq + :events
    WHERE session_id = :session_id AND NOT (lease_owner IS NOT NULL AND lease_owner != :owner
        AND lease_expires_at > :now
        AND NOT (lease_owner IS :take_over_owner AND lease_token IS :take_over_token))"""

#: The head row as ``load`` needs it, with the JSON of its config blob (NULL for a hash whose
#: blob is missing, which ``load`` reports).
LOAD_HEAD = f"""SELECT s.revision, s.created_at, s.updated_at, s.turns, s.event_seq,
    s.config_hash, c.data, s.parent_id, s.incarnation, s.parent_incarnation,
    {", ".join(f"s.{c}" for c in TURN_USAGE_COLUMNS)}
    FROM sessions AS s LEFT JOIN blobs AS c ON c.hash = s.config_hash
    WHERE s.session_id = ?"""

#: Give a lease up: it stays as an expired one, so the next holder's token is still higher.
RELEASE_LEASE = """UPDATE sessions SET lease_expires_at = 0, running_turn = NULL
    WHERE session_id = ? AND lease_owner = ? AND lease_token = ?"""

#: Extend the current lease (not a released one: parameters ``:sid``, ``:owner``, ``:token``,
#: ``:expires_at``).
RENEW_LEASE = """UPDATE sessions SET lease_expires_at = :expires_at WHERE session_id = :sid
    AND lease_owner = :owner AND lease_token = :token AND lease_expires_at != 0"""

#: The columns a load reads of a node row (see :func:`unpack_nodes`).
NODE_ROW = "node_id, kind, frame_id, turn, data, node_count, seq"

#: The active frame's nodes: from the head's ``frame_start`` on (parameters: the session id,
#: twice), so that ``load`` reads them in the same round trip as the head.
ACTIVE_NODES = f"""SELECT {NODE_ROW} FROM nodes WHERE session_id = ?
    AND seq >= (SELECT frame_start FROM sessions WHERE session_id = ?) ORDER BY seq"""

ALL_NODES = f"SELECT {NODE_ROW} FROM nodes WHERE session_id = ? ORDER BY seq"


def unpack_nodes(rows: list[Any], what: str) -> list[tuple[Any, ...]]:
    """Node rows as :data:`NODE_ROW` reads them, as one row ``(node_id, kind, frame_id, turn,
    data)`` per node (what ``lash.store.nodes_on_demand`` takes).

    A resume reads a few thousand rows of six nodes: they are split by passes in C over all of
    them (``str.split``, ``len``, ``zip``), with no Python step per node or per row (2,500 rows
    of six: ~5 ms, where reading 15,000 one-node rows cost ~11 ms more than reading them); only
    a file with something odd (a one-node row whose id holds a newline, a bad count) is read
    row by row (:func:`_unpack_rows`). ``what`` names the session in the error.

    :raises lash.ValidationError: for a row whose ``node_id``, ``kind`` and ``data`` do not
        each hold its ``node_count`` parts, naming the row's ``seq`` (a file that would load
        as other nodes than it holds must not load).
    """
    if not rows:
        return []
    ids, kinds, frames, turns, texts, counts, _ = zip(*rows, strict=True)
    if counts.count(1) == len(counts):  # one node each: an older file's rows, a short commit's
        return list(zip(ids, kinds, frames, turns, texts, strict=True))
    newline, repeat, chain = itertools.repeat("\n"), itertools.repeat, itertools.chain.from_iterable
    try:
        # A packed row is split wherever it holds a newline, a one-node row nowhere (its id may
        # hold one): maxsplit -1 or 0, by passes in C (-(count != 1)).
        cuts = list(map(operator.neg, map(operator.ne, counts, repeat(1))))
        id_parts = list(map(str.split, ids, newline, cuts))
        text_parts = list(map(str.split, texts, newline, cuts))
        # The rows of a turn share their kinds' text: split once for all of them.
        split_kinds = {kind: kind.split("\n") for kind in set(kinds)}
        kind_parts = list(map(split_kinds.__getitem__, kinds))
    except (TypeError, AttributeError):  # a column that is not text
        return _unpack_rows(rows, what)
    expected = list(counts)
    if any(list(map(len, parts)) != expected for parts in (id_parts, kind_parts, text_parts)):
        return _unpack_rows(rows, what)  # (a count that is not its parts', a kind with a newline)
    return list(
        zip(
            chain(id_parts),
            chain(kind_parts),
            chain(map(repeat, frames, counts)),
            chain(map(repeat, turns, counts)),
            chain(text_parts),
            strict=True,
        )
    )


def _unpack_rows(rows: list[Any], what: str) -> list[tuple[Any, ...]]:
    """:func:`unpack_nodes` row by row: a one-node row is kept as it is (its id may hold a
    newline; its columns are checked with its node), a packed one must split into its count."""
    nodes: list[tuple[Any, ...]] = []
    for node_id, kind, frame_id, turn, data, count, seq in rows:
        if type(count) is int and count == 1:
            nodes.append((node_id, kind, frame_id, turn, data))
            continue
        ids, kinds, datas = (v.split("\n") if type(v) is str else [] for v in (node_id, kind, data))
        if type(count) is not int or count < 1 or not len(ids) == len(kinds) == len(datas) == count:
            raise lash.ValidationError(
                f"{what} (the node row at seq {seq})",
                [
                    f"node_count is {count!r}, but node_id holds {len(ids)} nodes, kind "
                    f"{len(kinds)} and data {len(datas)}: the file is damaged (restore it "
                    "from a backup)"
                ],
            )
        frames, turns = itertools.repeat(frame_id, count), itertools.repeat(turn, count)
        nodes.extend(zip(ids, kinds, frames, turns, datas, strict=True))
    return nodes


STATES = """SELECT p.plugin, b.data FROM plugin_states AS p
    JOIN blobs AS b ON b.hash = p.blob_hash WHERE p.session_id = ? ORDER BY p.plugin"""

STATE_HASHES = "SELECT plugin, blob_hash FROM plugin_states WHERE session_id = ?"

USAGE = """SELECT source, input_tokens, output_tokens, cached_tokens FROM usage_totals
    WHERE session_id = ? ORDER BY source"""

#: One commit (see :data:`COMMIT_TRIGGER_STATEMENTS`).
COMMIT = f"""INSERT INTO commit_requests ({", ".join(COMMIT_COLUMNS)})
    VALUES ({", ".join(["?"] * len(COMMIT_COLUMNS))})"""

#: The commit's writes as plain statements, for a commit made inside a write transaction on the
#: event loop's thread (``_Plan.apply`` in ``sqlite.py``), where a statement costs no round trip:
#: the same checks and writes as :data:`COMMIT_TRIGGER_STATEMENTS`, minus its JSON. The guard:
#: the head is the one the commit was computed from and the lease is the writer's (its event
#: counter, from which the commit's events are numbered), and whether a cancel request of the
#: commit's turn (the last parameter) is there for the commit to drop: almost never, and
#: ``PLAIN_CANCELLED`` looking for none cost a turn ~7 µs, the subquery here ~1 (the write
#: transaction holds the lock from the guard to the ``DELETE``: none can come in between).
PLAIN_GUARD = f"""SELECT event_seq, EXISTS (SELECT 1 FROM cancel_requests
        WHERE session_id = ?1 AND turn_id = ?{len(HEAD_COLUMNS) + 4})
    FROM sessions WHERE session_id = ?1
    {"".join(f"AND {c} IS ?{i} " for i, c in enumerate(HEAD_COLUMNS, 2))}
    AND lease_owner = ?{len(HEAD_COLUMNS) + 2} AND lease_token = ?{len(HEAD_COLUMNS) + 3}
    AND lease_expires_at != 0"""
#: Settle the inputs of the JSON array ``?4`` claimed by lease token ``?5`` (the caller
#: compares the count with the array's: one not claimed by the lease refuses the commit).
PLAIN_SETTLE = """UPDATE inputs SET state = 'completed', settled_at = ?1, turn_id = ?2,
    claim_token = NULL WHERE session_id = ?3 AND id IN (SELECT value FROM json_each(?4))
    AND state = 'claimed' AND claim_token = ?5"""
#: Apply the pending commands of the JSON array ``?3`` (counted likewise).
PLAIN_APPLY = """UPDATE commands SET state = 'applied', applied_at = ?1
    WHERE session_id = ?2 AND id IN (SELECT value FROM json_each(?3)) AND state = 'pending'"""
PLAIN_RECORD = """INSERT INTO turn_records (session_id, turn_id, turn_index, outcome, revision,
    reason, result, committed_at, usage) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"""
PLAIN_CANCELLED = "DELETE FROM cancel_requests WHERE session_id = ? AND turn_id = ?"
PLAIN_NODE = """INSERT INTO nodes (session_id, seq, node_id, kind, frame_id, turn, data,
    node_count) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"""
PLAIN_BLOB = "INSERT OR IGNORE INTO blobs (hash, data) VALUES (?, ?)"
PLAIN_STATE = """INSERT INTO plugin_states (session_id, plugin, blob_hash) VALUES (?, ?, ?)
    ON CONFLICT (session_id, plugin) DO UPDATE SET blob_hash = excluded.blob_hash"""
#: (For a commit without a turn record: a turn's usage is its record's.)
PLAIN_LEDGER = """INSERT INTO usage_ledger_rows (session_id, revision, source, input_tokens,
    output_tokens, cached_tokens, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?)"""
#: (Not for :data:`TURN_SOURCE`: its totals are the head's.)
PLAIN_TOTALS = """INSERT INTO usage_totals (session_id, source, input_tokens, output_tokens,
    cached_tokens) VALUES (?, ?, ?, ?, ?) ON CONFLICT (session_id, source) DO UPDATE SET
        input_tokens = input_tokens + excluded.input_tokens,
        output_tokens = output_tokens + excluded.output_tokens,
        cached_tokens = cached_tokens + excluded.cached_tokens"""
_AFTER_HEAD = len(HEAD_COLUMNS)


def _plain_head(columns: tuple[str, ...]) -> str:
    """The new head's ``UPDATE``, setting ``columns`` of :data:`HEAD_COLUMNS` (each ``?n`` by its
    place there), then the parent link, the number of events the commit appended, whether it
    releases the lease (parameters after the head's), the session id, and the commit's usage of
    :data:`TURN_SOURCE` (three counts, NULL for none), added to the head's. Like
    :data:`TAKE_LEASE`, it leaves ``events_at``: the caller trims the event log itself."""
    return f"""UPDATE sessions SET {
        ", ".join(f"{c} = ?{HEAD_COLUMNS.index(c) + 1}" for c in columns)
    },
    {_add_turn_usage("0", lambda i: f"?{_AFTER_HEAD + 4 + i}")},
    parent_id = COALESCE(?{_AFTER_HEAD + 1}, parent_id),
    parent_incarnation = {
        _link_incarnation(f"?{_AFTER_HEAD + 1}", f"?{HEAD_COLUMNS.index('updated_at') + 1}")
    },
    event_seq = event_seq + ?{_AFTER_HEAD + 2},
    lease_expires_at = CASE WHEN ?{_AFTER_HEAD + 3} THEN 0 ELSE lease_expires_at END,
    running_turn = CASE WHEN ?{_AFTER_HEAD + 3} THEN NULL ELSE running_turn END
    WHERE session_id = ?{_AFTER_HEAD + 4}"""


PLAIN_HEAD = _plain_head(HEAD_COLUMNS)
#: The same for a commit that keeps the config: a column set, even to its value, makes SQLite
#: rewrite its entry in the index on it (``sessions_by_config``: one page more per commit).
PLAIN_HEAD_SAME_CONFIG = _plain_head(tuple(c for c in HEAD_COLUMNS if c != "config_hash"))
PLAIN_COMMIT_STATEMENTS = {
    "guard": PLAIN_GUARD,
    "settle": PLAIN_SETTLE,
    "apply": PLAIN_APPLY,
    "record": PLAIN_RECORD,
    "cancelled": PLAIN_CANCELLED,
    "nodes": PLAIN_NODE,
    "blobs": PLAIN_BLOB,
    "states": PLAIN_STATE,
    "ledger": PLAIN_LEDGER,
    "totals": PLAIN_TOTALS,
    "head": PLAIN_HEAD,
    "head, same config": PLAIN_HEAD_SAME_CONFIG,
}

#: One lease acquisition (see :data:`LEASE_TRIGGER_STATEMENTS`).
ACQUIRE = f"""INSERT INTO lease_requests ({", ".join(LEASE_COLUMNS)})
    VALUES ({", ".join(["?"] * len(LEASE_COLUMNS))})"""

#: One input queued (see :data:`INPUT_TRIGGER_STATEMENTS`).
ENQUEUE = f"""INSERT INTO input_requests ({", ".join(INPUT_COLUMNS)})
    VALUES ({", ".join(["?"] * len(INPUT_COLUMNS))})"""

#: Inputs claimed or cancelled (see :data:`INPUT_UPDATE_TRIGGER_STATEMENTS`).
UPDATE_INPUTS = f"""INSERT INTO input_updates ({", ".join(INPUT_UPDATE_COLUMNS)})
    VALUES ({", ".join(["?"] * len(INPUT_UPDATE_COLUMNS))})"""

#: Drop blob ``:h`` unless a plugin state or a session head still refers to it.
RELEASE_BLOB = f"DELETE FROM blobs WHERE hash = :h AND {_unreferenced(':h')}"

#: The columns of a :class:`lash.store.PendingInput` as it reads (for input row ``i`` of the
#: session of head row ``h``, at ``:now``).
INPUT_FIELDS = f"""i.id, i.seq, i.text, i.items, i.key, i.ingress, i.source,
    {EFFECTIVE_STATE}, i.created_at, i.settled_at, i.turn_id"""

_INPUTS_OF = f"""SELECT {INPUT_FIELDS} FROM inputs AS i
    JOIN sessions AS h ON h.session_id = i.session_id WHERE i.session_id = :sid"""

#: The session's pending and claimed inputs, oldest first (``:sid``, ``:now``).
OPEN_INPUTS = f"{_INPUTS_OF} AND i.state IN ('pending', 'claimed') ORDER BY i.seq"
#: All of them.
ALL_INPUTS = f"{_INPUTS_OF} ORDER BY i.seq"
#: One, by id (``:id``) or key (``:key``).
INPUT_BY_ID = f"{_INPUTS_OF} AND i.id = :id"
INPUT_BY_KEY = f"{_INPUTS_OF} AND i.key = :key"
#: SQL: the seq of the oldest input whose id or key is ``:target`` (two index lookups: an
#: ``OR`` of the two would walk the session's inputs).
_NAMED = """(SELECT MIN(seq) FROM (
        SELECT seq FROM inputs WHERE session_id = :sid AND id = :target
        UNION ALL SELECT seq FROM inputs WHERE session_id = :sid AND key = :target))"""
#: The oldest input whose id or key is ``:target``.
INPUT_NAMED = f"{_INPUTS_OF} AND i.seq = {_NAMED}"
#: The inputs from that one on (a suffix cancellation).
INPUTS_SUFFIX = f"{_INPUTS_OF} AND i.seq >= {_NAMED} ORDER BY i.seq"
#: The oldest inputs a claim may take (``:limit``; only ``:ingress`` ones unless NULL).
CLAIMABLE = f"""{_INPUTS_OF} AND i.state IN ('pending', 'claimed')
    AND (:ingress IS NULL OR i.ingress = :ingress) AND {EFFECTIVE_STATE} = 'pending'
    ORDER BY i.seq LIMIT :limit"""

#: The lease, and whether :data:`CLAIMABLE` would find anything (same parameters): a claim
#: that finds nothing to take (a running turn's checkpoint, most of the time) is this read,
#: without the write lock.
CLAIM_PROBE = f"""SELECT {LEASE_OF_HEAD}, :limit > 0 AND EXISTS (SELECT 1 FROM inputs AS i
        WHERE i.session_id = h.session_id AND i.state IN ('pending', 'claimed')
        AND (:ingress IS NULL OR i.ingress = :ingress) AND {EFFECTIVE_STATE} = 'pending')
    FROM sessions AS h WHERE h.session_id = :sid"""
#: The head's event counter and lease, read before writing events from Python (``:sid``,
#: ``:now``), with the pending counts.
MAILBOX_HEAD = f"""SELECT h.event_seq, h.command_seq, {LEASE_OF_HEAD}, h.running_turn, h.revision,
    {PENDING_COUNTS} FROM sessions AS h WHERE h.session_id = :sid"""
#: Append one event (``session_id, seq, type, data, at``).
APPEND_EVENT = "INSERT INTO events (session_id, seq, type, data, at) VALUES (?, ?, ?, ?, ?)"
#: Create the head row of a new session (at revision 0).
NEW_HEAD = "INSERT OR IGNORE INTO sessions (session_id) VALUES (?)"
#: Move the head's command and event counters (at the time given).
SET_COUNTERS = """UPDATE sessions SET command_seq = ?, event_seq = ?, events_at = ?
    WHERE session_id = ?"""

_COMMAND_FIELDS = """id, seq, name, key, args, source, state, created_at, applied_at"""
#: The session's commands, oldest first (pending ones only, or all).
PENDING_COMMANDS = f"""SELECT {_COMMAND_FIELDS} FROM commands
    WHERE session_id = ? AND state = 'pending' ORDER BY seq"""
ALL_COMMANDS = f"SELECT {_COMMAND_FIELDS} FROM commands WHERE session_id = ? ORDER BY seq"
COMMAND_BY_KEY = f"SELECT {_COMMAND_FIELDS} FROM commands WHERE session_id = ? AND key = ?"
INSERT_COMMAND = """INSERT INTO commands (session_id, seq, id, key, name, args, source, state,
    created_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?)"""
SET_COMMAND_SEQ = "UPDATE sessions SET command_seq = ? WHERE session_id = ?"

TURN_RECORD = """SELECT turn_index, outcome, revision, reason, result, committed_at
    FROM turn_records WHERE session_id = ? AND turn_id = ?"""
CANCEL_REQUEST = """SELECT origin, reason, requested_at FROM cancel_requests
    WHERE session_id = ? AND turn_id = ?"""
INSERT_CANCEL_REQUEST = """INSERT INTO cancel_requests (session_id, turn_id, origin, reason,
    requested_at) VALUES (?, ?, ?, ?, ?)"""

#: The event log after ``:after`` within the replay window: the newest ``:kept`` events
#: (``:limit`` of them), with the window's bounds (the oldest stored, the latest).
EVENTS_AFTER = """SELECT seq, type, data, at FROM events WHERE session_id = :sid
    AND seq > MAX(:after, (SELECT event_seq FROM sessions WHERE session_id = :sid) - :kept)
    ORDER BY seq LIMIT :limit"""
EVENT_BOUNDS = """SELECT h.event_seq, (SELECT MIN(seq) FROM events WHERE session_id = :sid)
    FROM sessions AS h WHERE h.session_id = :sid"""

#: The statements of ``acquire_lease``/``renew_lease``/``release_lease``, ``load``,
#: ``commit`` (without ``replace``, the trigger's statements included) and the mailbox: each
#: must be an index lookup or an index range (or a pass over a JSON array it was given).
HOT_STATEMENTS: dict[str, str] = {
    "HEAD": HEAD,
    "LOAD_HEAD": LOAD_HEAD,
    "LEASE": LEASE,
    "LEASE_AND_HEAD": LEASE_AND_HEAD,
    "TAKE_LEASE": TAKE_LEASE,
    "RELEASE_LEASE": RELEASE_LEASE,
    "RENEW_LEASE": RENEW_LEASE,
    "ACTIVE_NODES": ACTIVE_NODES,
    "STATES": STATES,
    "STATE_HASHES": STATE_HASHES,
    "USAGE": USAGE,
    "RELEASE_BLOB": RELEASE_BLOB,
    "OPEN_INPUTS": OPEN_INPUTS,
    "INPUT_BY_ID": INPUT_BY_ID,
    "INPUT_BY_KEY": INPUT_BY_KEY,
    "INPUT_NAMED": INPUT_NAMED,
    "INPUTS_SUFFIX": INPUTS_SUFFIX,
    "CLAIMABLE": CLAIMABLE,
    "CLAIM_PROBE": CLAIM_PROBE,
    "MAILBOX_HEAD": MAILBOX_HEAD,
    "PENDING_COMMANDS": PENDING_COMMANDS,
    "COMMAND_BY_KEY": COMMAND_BY_KEY,
    "TURN_RECORD": TURN_RECORD,
    "CANCEL_REQUEST": CANCEL_REQUEST,
    "EVENTS_AFTER": EVENTS_AFTER,
    "EVENT_BOUNDS": EVENT_BOUNDS,
    "OLDEST_EVENT": OLDEST_EVENT,
    **{f"commit trigger: {name}": sql for name, sql in COMMIT_TRIGGER_STATEMENTS.items()},
    **{f"plain commit: {name}": sql for name, sql in PLAIN_COMMIT_STATEMENTS.items()},
    **{f"lease trigger: {name}": sql for name, sql in LEASE_TRIGGER_STATEMENTS.items()},
    **{f"input trigger: {name}": sql for name, sql in INPUT_TRIGGER_STATEMENTS.items()},
    **{f"update trigger: {name}": sql for name, sql in INPUT_UPDATE_TRIGGER_STATEMENTS.items()},
}

#: Deleting a session drops its rows (cost: what it stored, by index range).
DROP_SESSION_ROWS = tuple(
    f"DELETE FROM {table} WHERE session_id = ?" for table in (*SESSION_TABLES, *MAILBOX_TABLES)
)

#: A deleted session keeps its head row as a tombstone at revision 0 with its lease and its
#: counters, so the next holder's fencing token is still higher than any token handed out
#: before, and event numbers (cursors) of a session created again under the id go on rising.
TOMBSTONE = """UPDATE sessions SET revision = 0, created_at = 0, updated_at = 0, turns = 0,
    next_seq = 0, frame_start = 0, last_user_message = NULL, config_hash = NULL,
    protocol_options_hash = NULL, pending_hash = NULL, status = NULL, running_turn = NULL,
    events_at = 0, parent_id = NULL, turn_input = NULL, turn_output = NULL, turn_cached = NULL,
    parent_incarnation = 0, incarnation = incarnation + 1
    WHERE session_id = ?"""

#: Whether a session has anything in its mailbox (one with no commit exists by it).
HAS_MAILBOX = """SELECT EXISTS (SELECT 1 FROM inputs WHERE session_id = ?1)
    OR EXISTS (SELECT 1 FROM commands WHERE session_id = ?1)"""

#: Committed sessions (revision > 0) with their usage totals (the head's, then their
#: usage_totals rows' counts as SQL literals, three a row, in one space-separated list: ``quote``
#: writes a REAL in full, where ``json_array`` keeps 15 digits; summed by the caller, exactly,
#: where SQLite's ``SUM`` fails on a total past 64 bits or not, depending on the order it reads
#: the rows in), status and pending input count, most recently updated first (``:now``).
LIST_SESSIONS = f"""SELECT h.session_id, h.created_at, h.updated_at, h.turns, h.revision,
    h.last_user_message, {", ".join(f"h.{c}" for c in TURN_USAGE_COLUMNS)},
    group_concat(quote(u.input_tokens) || ' ' || quote(u.output_tokens) || ' '
        || quote(u.cached_tokens), ' ') FILTER (WHERE u.session_id IS NOT NULL), h.status,
    (SELECT COUNT(*) FROM inputs AS i WHERE i.session_id = h.session_id
        AND i.state IN ('pending', 'claimed') AND {EFFECTIVE_STATE} = 'pending'), h.parent_id
    FROM sessions AS h LEFT JOIN usage_totals AS u ON u.session_id = h.session_id
    WHERE h.revision > 0
    GROUP BY h.session_id
    ORDER BY h.updated_at DESC, h.session_id"""


# -- processes -------------------------------------------------------------------------------

#: The columns of a process row: :class:`lash.ProcessRecord`'s fields, in order (``seq``, the
#: start order, is the table's own). ``payload``, ``result`` and ``progress`` hold JSON.
PROCESS_COLUMNS = tuple(field.name for field in attrs.fields(lash.ProcessRecord))
#: The columns that hold JSON.
PROCESS_JSON = frozenset({"payload", "result", "progress"})

_PROCESS_FIELDS = ", ".join(PROCESS_COLUMNS)
_SELECT_PROCESS = f"SELECT seq, {_PROCESS_FIELDS} FROM processes"

PROCESS_BY_ID = f"{_SELECT_PROCESS} WHERE id = :id"
PROCESS_BY_KEY = f"{_SELECT_PROCESS} WHERE key = :key"
#: The processes already started under the keys of the JSON array ``:keys``.
PROCESSES_BY_KEYS = f"{_SELECT_PROCESS} WHERE key IN (SELECT value FROM json_each(:keys))"
INSERT_PROCESS = f"""INSERT INTO processes ({_PROCESS_FIELDS})
    VALUES ({", ".join(f":{c}" for c in PROCESS_COLUMNS)})"""
#: Write a record back (every column but its id).
UPDATE_PROCESS = f"""UPDATE processes SET {
    ", ".join(f"{c} = :{c}" for c in PROCESS_COLUMNS if c != "id")
} WHERE id = :id"""
#: Extend a claim that is still ``:token``'s (a heartbeat without progress).
EXTEND_PROCESS_CLAIM = """UPDATE processes SET expires_at = :expires_at
    WHERE id = :id AND status = 'running' AND token = :token"""
#: Settle a process its worker still claims with ``:token``, in one statement (the common
#: finish: no read first); it returns the record, or no row when the claim is not ``:token``'s.
FINISH_CLAIMED_PROCESS = f"""UPDATE processes SET status = :status, result = :result,
    error = :error, expires_at = NULL, finished_at = :now, notified = :notified
    WHERE id = :id AND status = 'running' AND token = :token
    RETURNING seq, {_PROCESS_FIELDS}"""
MARK_PROCESS_NOTIFIED = "UPDATE processes SET notified = 1 WHERE id = ?"
#: SQL: store a blob unless its digest is there already; read one.
PUT_BLOB = (
    "INSERT INTO media_blobs (sha256, data, size, created_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (sha256) DO NOTHING"
)
GET_BLOB = "SELECT data FROM media_blobs WHERE sha256 = ?"
DROP_SESSION_PROCESSES = "DELETE FROM processes WHERE session_id = ?"

#: SQL: the process is of a kind in the JSON array ``:kinds`` (NULL: any kind).
_OF_KINDS = "(:kinds IS NULL OR kind IN (SELECT value FROM json_each(:kinds)))"
#: Running processes whose claim expired at ``:now`` and that may not run again
#: (:func:`lash.store.process_rules.on_expiry`: neither externally owned, which stay as they
#: are, nor rerunnable with attempts left, which a claim takes).
EXPIRED_PROCESSES = f"""{_SELECT_PROCESS} WHERE status = 'running' AND expires_at IS NOT NULL
    AND expires_at <= :now AND recovery != 'externally_owned'
    AND NOT (recovery = 'rerunnable' AND attempts < max_attempts)"""
#: The oldest pending process of ``:kinds``.
OLDEST_PENDING_PROCESS = f"""{_SELECT_PROCESS} WHERE status = 'pending' AND {_OF_KINDS}
    ORDER BY seq LIMIT 1"""
#: The oldest rerunnable process of ``:kinds`` whose claim expired at ``:now``, attempts left.
OLDEST_RERUNNABLE_PROCESS = f"""{_SELECT_PROCESS} WHERE status = 'running'
    AND expires_at IS NOT NULL AND expires_at <= :now AND recovery = 'rerunnable'
    AND attempts < max_attempts AND {_OF_KINDS} ORDER BY seq LIMIT 1"""
_LISTED = """(:sid IS NULL OR session_id = :sid) AND (:kind IS NULL OR kind = :kind)
    AND (:status IS NULL OR status = :status) ORDER BY seq LIMIT :limit"""
#: Processes by session, kind and status (NULL: any), oldest first, ``:limit`` of them: those
#: of one session (by its index), of one kind (by its index), or any.
LIST_SESSION_PROCESSES = f"{_SELECT_PROCESS} WHERE session_id = :sid AND {_LISTED}"
LIST_KIND_PROCESSES = f"{_SELECT_PROCESS} WHERE kind = :kind AND {_LISTED}"
LIST_PROCESSES = f"{_SELECT_PROCESS} WHERE {_LISTED}"
#: Finished processes not yet notified, finished before ``:before``, oldest first.
UNNOTIFIED_PROCESSES = f"""{_SELECT_PROCESS} WHERE notified = 0 AND finished_at IS NOT NULL
    AND finished_at < :before ORDER BY seq"""

#: Log one event in session ``:sid`` (making its head row if there is none): the counter
#: first, then the event under the number it gave (``:type``, ``:data``, ``:at``).
LOG_EVENT = (
    """INSERT INTO sessions (session_id, event_seq, events_at) VALUES (:sid, 1, :at)
    ON CONFLICT (session_id) DO UPDATE SET event_seq = event_seq + 1,
        events_at = excluded.events_at""",
    """INSERT INTO events (session_id, seq, type, data, at)
    SELECT :sid, event_seq, :type, :data, :at FROM sessions WHERE session_id = :sid""",
)

#: Sessions with pending input or commands and no live lease at ``:now``, the one waiting
#: longest first (``:limit`` of them): the open inputs and pending commands, by their partial
#: indexes.
RUNNABLE_SESSIONS = f"""SELECT session_id FROM (
    SELECT i.session_id AS session_id, MIN(i.created_at) AS oldest FROM inputs AS i
        JOIN sessions AS h ON h.session_id = i.session_id
        WHERE i.state IN ('pending', 'claimed') AND {EFFECTIVE_STATE} = 'pending'
        AND NOT h.lease_expires_at > :now GROUP BY i.session_id
    UNION ALL
    SELECT c.session_id, MIN(c.created_at) FROM commands AS c
        JOIN sessions AS h ON h.session_id = c.session_id
        WHERE c.state = 'pending' AND NOT h.lease_expires_at > :now GROUP BY c.session_id)
    GROUP BY session_id ORDER BY MIN(oldest), session_id LIMIT :limit"""

#: What a claim reads (each an index range over the rows it may take, see
#: ``test_sqlite_processes``), and the listings of a session's or a kind's processes.
CLAIM_STATEMENTS: dict[str, str] = {
    "EXPIRED_PROCESSES": EXPIRED_PROCESSES,
    "OLDEST_PENDING_PROCESS": OLDEST_PENDING_PROCESS,
    "OLDEST_RERUNNABLE_PROCESS": OLDEST_RERUNNABLE_PROCESS,
    "PROCESS_BY_ID": PROCESS_BY_ID,
    "PROCESS_BY_KEY": PROCESS_BY_KEY,
    "UNNOTIFIED_PROCESSES": UNNOTIFIED_PROCESSES,
    "EXTEND_PROCESS_CLAIM": EXTEND_PROCESS_CLAIM,
    "LIST_SESSION_PROCESSES": LIST_SESSION_PROCESSES,
    "LIST_KIND_PROCESSES": LIST_KIND_PROCESSES,
}


# -- the event log's retention ---------------------------------------------------------------


def event_retention(kept: int, max_age: float) -> tuple[str, ...]:
    """The statements that make a connection trim the event log it writes: a session keeps its
    newest ``kept`` events, and none older than ``max_age`` seconds.

    A ``TEMP`` trigger (it lives with the connection, so each store applies its own URL's
    limits) on the head's ``events_at``, the writer's time, which every write that appends
    events sets as it moves ``event_seq`` -- but for a turn's lease and commit made with plain
    statements (``TAKE_LEASE``, ``PLAIN_HEAD``), which leave ``events_at`` as it is and trim
    the log themselves (:func:`events_due`, :func:`event_trim`), with the same statements: the
    mere presence of an ``AFTER UPDATE`` trigger on the head cost those two statements ~3 µs
    each (2 to 7 µs in a turn), its condition false or not. It trims in batches, not on every
    write: the events beyond the newest ``kept`` go when the counter crosses a multiple of
    :func:`event_batch`, so a write deletes nothing most of the time (``read_events`` never
    shows more than ``kept`` events); events older than ``max_age`` go as soon as the oldest
    one is (one index lookup per write: the oldest event's time; a turn's commit keeps a lower
    bound of it with the head instead, read by the lease).
    """
    batch = event_batch(kept)
    oldest = "(SELECT at FROM main.events WHERE session_id = NEW.session_id ORDER BY seq LIMIT 1)"
    cutoff = f"NEW.events_at - {float(max_age)!r}"
    statements = _trim("NEW.session_id", "NEW.event_seq", "NEW.events_at", kept, max_age)
    body = "".join(f"            {sql};\n" for sql in statements)
    return (
        "DROP TRIGGER IF EXISTS temp.lash_event_retention",
        f"""CREATE TEMP TRIGGER lash_event_retention AFTER UPDATE OF events_at ON main.sessions
        WHEN NEW.event_seq / {batch} != OLD.event_seq / {batch} OR {oldest} < {cutoff}
        BEGIN
{body}        END""",
    )


def event_batch(kept: int) -> int:
    """How many events the log's retention lets past ``kept`` before it trims (at most 1,000)."""
    return max(1, min(1000, kept // 10))


def events_due(
    kept: int, max_age: float, before: int, after: int, oldest: float | None, now: float
) -> bool:
    """The retention trigger's condition, for a write that moved the head's ``event_seq`` from
    ``before`` to ``after`` at ``now``, ``oldest`` being the time of the session's oldest stored
    event (None: it has none): whether :func:`event_trim` is to run."""
    batch = event_batch(kept)
    return after // batch != before // batch or (oldest is not None and oldest < now - max_age)


@functools.cache
def event_trim(kept: int, max_age: float) -> tuple[str, str]:
    """The retention trigger's statements with parameters for its ``NEW`` values (``:sid``,
    ``:seq``, the head's new ``event_seq``, and ``:at``, the writer's time)."""
    return _trim(":sid", ":seq", ":at", kept, max_age)


def _trim(sid: str, seq: str, at: str, kept: int, max_age: float) -> tuple[str, str]:
    """SQL: drop the events of session ``sid`` beyond the newest ``kept`` below ``seq``, and
    those older than ``max_age`` at ``at`` (all of them when all are)."""
    return (
        f"DELETE FROM events WHERE session_id = {sid} AND seq <= {seq} - {int(kept)}",
        f"""DELETE FROM events WHERE session_id = {sid} AND seq < COALESCE(
                (SELECT seq FROM main.events WHERE session_id = {sid}
                    AND at >= {at} - {float(max_age)!r} ORDER BY seq LIMIT 1),
                {seq} + 1)""",
    )


# A turn's lease and commit run them (with the defaults, for the plan check).
HOT_STATEMENTS.update(
    {f"retention {n}": sql for n, sql in enumerate(event_trim(10_000, 604_800.0), start=1)}
)


# -- opening a file ---------------------------------------------------------------------------


@functools.cache
def lash_version() -> str:
    """The installed lash version (recorded with each applied migration)."""
    try:
        return importlib.metadata.version("lash-sdk")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - source checkout
        return "unknown"


def upgrade_to(version: str, migration: int) -> str:
    """What a lash refusing a newer lash's database tells its user to install: the release that
    applied ``migration`` when it is newer than this lash; a newer build of this lash's own
    version when that applied it (migrations are added between releases); otherwise (a source
    checkout's "unknown", an older number) a build that knows the step."""
    ours = lash_version()
    if version == ours:
        return f"upgrade lash to a newer build of {version}, one that knows migration {migration}"
    theirs, mine = _release(version), _release(ours)
    if theirs is not None and mine is not None and theirs > mine:
        return f"upgrade lash to {version} or later"
    return f"upgrade lash to a build that knows migration {migration}"


def _release(version: str) -> tuple[int, ...] | None:
    """``"1.2.3"`` as ``(1, 2, 3)`` (a local part after ``+`` ignored); None for anything else."""
    parts = version.split("+")[0].split(".")
    return tuple(map(int, parts)) if all(p.isdigit() for p in parts) else None


def check_path(path: str, *, create_dirs: bool, mode: str = "rwc") -> None:
    """Refuse paths SQLite could only fail on, with what to do about each.

    ``mode`` is the URL's (:data:`lash_plugins_builtin._sqlite_url.MODES`): ``rw`` and ``ro``
    need the database to exist already (and create nothing), ``ro`` only reads it.
    """
    directory = os.path.dirname(path)
    if mode == "rwc":
        _check_directory(path, directory, create_dirs=create_dirs)
    elif not os.path.exists(path):
        raise lash.ConfigError(
            f"there is no database here, and the store is opened with mode={mode}, which "
            "opens an existing database only and creates no file or directory: check the path "
            "in the store URL (a store opened without mode creates the database)",
            path=path,
        )
    if os.path.isdir(path):
        raise lash.ConfigError(
            "this is a directory, not a database file; point the store URL at a file "
            f"inside it (e.g. sqlite:///{os.path.join(path, 'lash.db')})",
            path=path,
        )
    if mode == "ro":
        if not os.access(path, os.R_OK):
            raise lash.ConfigError(
                "the database file is not readable for this process: make it readable "
                "(chmod u+r), or use another path",
                path=path,
            )
        return
    if os.path.exists(path) and not os.access(path, os.R_OK | os.W_OK):
        raise lash.ConfigError(
            "the database file is read-only (or unreadable) for this process; lash writes "
            "every turn to it: make it readable and writable (chmod u+rw), use another "
            "path, or add ?mode=ro to the store URL to only read it",
            path=path,
        )
    if not os.access(directory, os.W_OK | os.X_OK):
        raise lash.ConfigError(
            f"the directory {directory} is not writable; SQLite creates the database and "
            "its -wal and -shm files there: make it writable, or use another path",
            path=path,
        )


def _check_directory(path: str, directory: str, *, create_dirs: bool) -> None:
    """The database's directory exists (made here with ``create_dirs``)."""
    if os.path.isdir(directory):
        return
    if os.path.exists(directory):
        raise lash.ConfigError(
            f"{directory} is not a directory; point the store URL at a file in a directory",
            path=path,
        )
    if not create_dirs:
        raise lash.ConfigError(
            f"the directory {directory} does not exist; create it "
            f"(mkdir -p {directory}) or add ?create_dirs=1 to the store URL",
            path=path,
        )
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        raise lash.ConfigError(
            f"cannot create the directory {directory}: {exc.strerror or exc}",
            path=path,
        ) from exc


def connect_target(path: str, mode: str) -> tuple[str, bool]:
    """What to give ``sqlite3.connect`` for the database at ``path`` in ``mode``: the name, and
    whether it is a URI.

    ``rw`` and ``ro`` go through a ``file:`` URI, the only way to tell SQLite not to create a
    missing file (the check before the open can be outrun). For ``ro``, SQLite's read-only mode
    is the last resort: a reader of a WAL database makes its ``-wal`` and ``-shm`` files, and
    only a connection that may write removes them when it closes, so a read-only one would
    leave them behind. Where this process may write, ``ro`` opens the file like ``rw`` and
    :func:`prepare` forbids every change with ``PRAGMA query_only``.
    """
    if mode == "rwc" or path == ":memory:":
        return path, False
    if mode == "ro":
        writable = os.access(path, os.R_OK | os.W_OK)
        if not (writable and os.access(os.path.dirname(path), os.W_OK | os.X_OK)):
            return f"file:{urllib.parse.quote(path)}?mode=ro", True
    return f"file:{urllib.parse.quote(path)}?mode=rw", True


async def prepare(
    conn: aiosqlite.Connection,
    path: str,
    *,
    synchronous: str,
    busy_timeout: int,
    read_only: bool = False,
) -> None:
    """Set the connection up and bring the file's schema forward (refusing files not ours).

    ``read_only``: the connection only reads (``mode=ro``: ``PRAGMA query_only``); the file must
    already be a lash database of this lash's schema, which is checked and left as it is.
    """
    memory = path == ":memory:"
    if read_only:  # first: nothing below may write
        await conn.execute("PRAGMA query_only = 1")
    await conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout)}")
    # Read-only checks first: a file that is not ours is refused before anything is written.
    marked, applied = await inspect(conn, path)
    if read_only:
        _check_readable(path, marked, applied)
        return
    if not memory:
        mode = await _switch_to_wal(conn, busy_timeout)
        if mode != "wal":
            raise lash.ConfigError(
                f"SQLite could not switch the database to WAL mode (it stays in {mode!r}); "
                "lash needs WAL so that readers never block a commit: put the database on "
                "a local filesystem",
                path=path,
            )
    await conn.execute(f"PRAGMA synchronous = {synchronous}")
    if marked and set(applied) >= {m.id for m in MIGRATIONS}:
        return
    try:
        await conn.execute("BEGIN IMMEDIATE")
        # Another process may have set the file up while we waited for the write lock.
        _, applied = await inspect(conn, path)
        await conn.execute(CREATE_MIGRATIONS_TABLE)
        now = time.time()
        for migration in MIGRATIONS:
            if migration.id in applied:
                continue
            for statement in migration.statements:
                await conn.execute(statement)
            if migration.run is not None:
                await migration.run(conn)
            await conn.execute(
                "INSERT INTO lash_migrations (id, name, applied_at, lash_version) "
                "VALUES (?, ?, ?, ?)",
                (migration.id, migration.name, now, lash_version()),
            )
        await conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        await conn.execute(f"PRAGMA user_version = {LATEST}")
        await conn.execute("COMMIT")
    except BaseException:
        await rollback(conn)
        raise


async def _switch_to_wal(conn: aiosqlite.Connection, busy_timeout: int) -> str:
    """``PRAGMA journal_mode = WAL``, retried while another connection holds the write lock;
    the journal mode it leaves (``"wal"`` unless the file system cannot do WAL).

    On a file in rollback mode (a new file is), the switch writes the file's header: SQLite
    starts a read transaction, sees the old mode, then upgrades to a write transaction. SQLite
    does not invoke the busy handler for that upgrade (a reader waiting for a writer that waits
    for the readers to leave would deadlock: see ``sqlite3_busy_handler``), so when another
    connection holds the write lock, as every other store does for an instant while it makes
    the same switch on a new file that several open at once, the switch fails with SQLITE_BUSY
    at once, having waited for nothing. The failed statement has released its read lock, and
    SQLite's remedy is to try again: the retry's read lock waits in the busy handler for the
    writer to finish, then finds the file in WAL mode and writes nothing. The short pauses only
    cover the instant before the writer blocks new readers; the whole wait is bounded by
    ``busy_timeout``, like any other wait for a lock.
    """
    deadline = time.monotonic() + busy_timeout / 1000
    pause = 0.001
    while True:
        try:
            rows = list(await conn.execute_fetchall("PRAGMA journal_mode = WAL"))
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorname != "SQLITE_BUSY":
                raise
            if time.monotonic() + pause > deadline:
                raise
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.05)
            continue
        return str(rows[0][0]).lower() if rows else "?"


def _check_readable(path: str, marked: bool, applied: dict[int, str]) -> None:
    """Refuse, for reading only, a file that is not (yet) a lash database of this schema."""
    if not marked:
        raise lash.ConfigError(
            "this file is not a lash database yet (it is empty), and mode=ro in the store URL "
            "writes nothing: a host sets it up the first time it opens it",
            path=path,
        )
    missing = [m for m in MIGRATIONS if m.id not in applied]
    if missing:
        steps = ", ".join(f"{m.id} ({m.name!r})" for m in missing)
        raise lash.ConfigError(
            f"the database was written by an older lash and lacks the schema migrations {steps}; "
            "mode=ro in the store URL writes nothing: open it once without mode=ro (any host "
            "does: it migrates the file forward), then read it",
            path=path,
        )


async def inspect(conn: aiosqlite.Connection, path: str) -> tuple[bool, dict[int, str]]:
    """Whether the file carries lash's marker, and the migrations applied to it.

    :raises lash.ConfigError: for another application's database, or a newer lash's.
    """
    rows = list(await conn.execute_fetchall("PRAGMA application_id"))
    app_id = int(rows[0][0]) if rows else 0
    tables = {
        str(r[0])
        for r in await conn.execute_fetchall(
            "SELECT name FROM sqlite_master WHERE type = 'table' "
            "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
        )
    }
    if app_id not in (0, APPLICATION_ID):
        raise lash.ConfigError(
            f"this SQLite database belongs to another application (application_id "
            f"{app_id:#x}, lash's is {APPLICATION_ID:#x}); lash will not write to it: "
            "point the store URL at a new file or at a lash database",
            path=path,
        )
    if tables and "lash_migrations" not in tables:
        shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise lash.ConfigError(
            f"this SQLite database is not a lash database (it has the tables {shown} and "
            "no lash marker); lash will not write to it: point the store URL at a new file "
            "or at a lash database",
            path=path,
        )
    applied: dict[int, str] = {}
    newest: tuple[int, str, str] | None = None
    if "lash_migrations" in tables:
        for mid, name, version in await conn.execute_fetchall(
            "SELECT id, name, lash_version FROM lash_migrations ORDER BY id"
        ):
            applied[int(mid)] = str(name)
            newest = (int(mid), str(name), str(version))
    known = {m.id: m.name for m in MIGRATIONS}
    if newest is not None and newest[0] > LATEST:
        mid, name, version = newest
        raise lash.ConfigError(
            f"this database was written by a newer lash: its schema has migration {mid} "
            f"({name!r}, applied by lash {version}) but this lash ({lash_version()}) knows "
            f"migrations up to {LATEST}; {upgrade_to(version, mid)} "
            "(lash never downgrades or recreates a database)",
            path=path,
        )
    for mid, name in applied.items():
        if known.get(mid) != name:
            raise lash.ConfigError(
                f"the database's schema migration {mid} is {name!r} but this lash's is "
                f"{known.get(mid)!r}: the file was migrated by an incompatible lash build; "
                "open it with the lash that wrote it",
                path=path,
            )
    return app_id == APPLICATION_ID, applied


def explain(
    exc: sqlite3.Error, path: str, *, busy_timeout: int, read_only: bool = False
) -> lash.LashError:
    """The lash error for a SQLite failure: what happened to which file, and what to do.

    ``read_only``: the store was opened with ``mode=ro``, so a write was refused by design.
    """
    name = str(getattr(exc, "sqlite_errorname", "") or "")
    detail = f"{exc} [{name}]" if name else str(exc)
    if name == "SQLITE_NOTADB":
        return lash.ConfigError(
            f"this file is not a SQLite database ({detail}); lash will not overwrite it: "
            "point the store URL at a new file or at a lash database",
            path=path,
        )
    if name.startswith("SQLITE_CORRUPT"):
        return lash.ConfigError(
            f"the database is corrupt ({detail}); restore it from a backup, or move it "
            "aside so that lash starts a new one",
            path=path,
        )
    if read_only and name.startswith("SQLITE_READONLY"):
        return lash.ConfigError(
            f"this store only reads (mode=ro in its URL): it takes no lease and commits, "
            f"deletes or migrates nothing ({detail}); open it without mode=ro to write",
            path=path,
        )
    if read_only and name.startswith("SQLITE_CANTOPEN"):
        return lash.ConfigError(
            f"cannot open the database for reading ({detail}); the file must exist and be readable",
            path=path,
        )
    if name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_AUTH")):
        return lash.ConfigError(
            f"cannot open the database for writing ({detail}); the file and its directory "
            "must exist and be readable and writable (SQLite creates -wal and -shm files "
            "beside it)",
            path=path,
        )
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return lash.LashError(
            f"{path}: the database stayed locked by another connection for more than "
            f"{busy_timeout} ms ({detail}); retry, or raise the wait with "
            "?busy_timeout=MS in the store URL"
        )
    if name.startswith("SQLITE_FULL"):
        return lash.LashError(f"{path}: the disk is full ({detail}); nothing was written")
    return lash.LashError(f"{path}: SQLite failed: {detail}")


async def rollback(conn: aiosqlite.Connection) -> None:
    """Roll back the open transaction, if any, without masking the error that got us here."""
    # Always queued, never decided here: statements of a cancelled await (BEGIN included) may
    # still be waiting in the connection's worker thread, so `in_transaction` can be stale.
    # The worker runs them first, then this rollback, which is a no-op if nothing is open
    # (as after a COMMIT that completed although its caller was cancelled).
    with contextlib.suppress(sqlite3.Error):
        await conn.rollback()
