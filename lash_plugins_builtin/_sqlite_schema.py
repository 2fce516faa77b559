"""What a lash SQLite file is: its schema, forward migrations and marker, the statements of
the hot paths, and how a file is checked and prepared before the ``sqlite://`` store uses it.

Tables (one database file holds many sessions):

``sessions``
    One head row per session: ``revision`` (0 for a row a lease created before any commit),
    ``created_at``/``updated_at``, ``turns``, ``next_seq`` (the seq the next node gets, so a
    commit never counts nodes), ``frame_start`` (seq of the active frame's boundary),
    ``last_user_message``, the content hashes of ``config`` / ``protocol_options`` /
    ``pending``, and the lease (``lease_owner``, ``lease_token``, ``lease_expires_at``).
``nodes``
    Append-only graph nodes, keyed by ``(session_id, seq)``; ``data`` is the node's JSON as
    ``lash.to_data(node, lash.GraphNode)`` writes it, and ``kind`` repeats its variant tag
    (``user``, ``assistant``, ``tool_call``, ``tool_result``, ``plugin``, ``frame``).
``blobs``
    Content-addressed JSON (sha256 of the canonical text) for plugin states, config, protocol
    options and pending input. Blobs nothing refers to any more are deleted in the transaction
    that drops the last reference.
``plugin_states``
    ``(session_id, plugin) -> blob hash``.
``usage_ledger``
    One row per commit per usage source, with the revision it was committed at (append-only).
``usage_totals``
    The running sum of the ledger per ``(session_id, source)``, updated by the same commit, so
    loading or listing a session never sums a ledger that grows with its history.
``lash_migrations``
    ``(id, name, applied_at, lash_version)`` of every migration step applied to the file.
``commit_requests``
    A view that holds no rows: a commit is one ``INSERT`` into it, and its trigger checks the
    lease and the head, then writes the delta (see :data:`COMMIT_TRIGGER_STATEMENTS`).

The file is marked as a lash database with ``PRAGMA application_id`` (:data:`APPLICATION_ID`);
``PRAGMA user_version`` mirrors the newest migration id, for tools that only read the header.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.metadata
import os
import sqlite3
import time
import urllib.parse

import aiosqlite
import attrs

import lash

#: ``PRAGMA application_id`` of a lash database: the ASCII bytes of "LASH".
APPLICATION_ID = 0x4C415348


@attrs.frozen
class Migration:
    """One forward step of the schema; ``id`` orders them and is never reused."""

    id: int
    name: str
    statements: tuple[str, ...]


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

#: The head columns a commit continues from: its guard checks each against the stored row.
HEAD_COLUMNS = (
    "revision",
    "created_at",
    "updated_at",
    "turns",
    "next_seq",
    "frame_start",
    "last_user_message",
    "config_hash",
    "protocol_options_hash",
    "pending_hash",
)

#: The columns of ``commit_requests``: one row is one whole commit. The guard columns say which
#: head the writer computed it from (all of it, so that equal timestamps cannot pass another
#: head for it); the rest are the new head's values and the delta, whose variable-length parts
#: are JSON arrays of arrays (``None`` for none).
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
    "nodes",  # [[seq, node_id, kind, frame_id, turn, data], ...]
    "blobs",  # [[hash, data], ...]
    "states",  # [[plugin, blob_hash], ...]
    "usage",  # [[source, input_tokens, output_tokens, cached_tokens], ...]
    "released",  # [hash, ...]: blobs to drop unless something still refers to them
)

#: The message of the guard's ``RAISE``: the head changed since the writer read it (another
#: commit, a lost lease, a delete). The store then reads the head again and says what happened.
STALE_HEAD = "lash: the session head is not the one this commit was computed from"


#: The tables holding a session's rows besides its head (dropped on replace and on delete).
SESSION_TABLES = ("nodes", "plugin_states", "usage_ledger", "usage_totals")

#: ``(table, column)`` of every reference to a blob hash: a blob nothing refers to is dropped.
BLOB_REFERENCES = (
    ("plugin_states", "blob_hash"),
    ("sessions", "config_hash"),
    ("sessions", "protocol_options_hash"),
    ("sessions", "pending_hash"),
)


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


#: The statements of the ``commit_requests`` trigger, in order. A commit is one ``INSERT`` into
#: that view: SQLite undoes every effect of a statement that fails, so a commit is all or
#: nothing even when a ``COMMIT`` was queued right behind it (no separate round trip to check
#: that every write succeeded). ``NEW.replace AND ...`` is tested once, before any row is
#: visited (a term that names no table), so a commit that replaces nothing costs nothing here.
COMMIT_TRIGGER_STATEMENTS: dict[str, str] = {
    "guard": f"""SELECT RAISE(ABORT, '{STALE_HEAD}') WHERE NOT EXISTS (
        SELECT 1 FROM sessions WHERE session_id = NEW.session_id
        {"".join(f"AND {c} IS NEW.expected_{c} " for c in HEAD_COLUMNS)}
        AND lease_owner = NEW.lease_owner AND lease_token = NEW.lease_token
        AND lease_expires_at != 0)""",
    **{
        f"drop {table}": f"DELETE FROM {table} WHERE NEW.replace AND session_id = NEW.session_id"
        for table in SESSION_TABLES
    },
    "nodes": f"""INSERT INTO nodes (session_id, seq, node_id, kind, frame_id, turn, data)
        SELECT NEW.session_id, {_items(6)} FROM json_each(NEW.nodes)""",
    "blobs": f"""INSERT OR IGNORE INTO blobs (hash, data)
        SELECT {_items(2)} FROM json_each(NEW.blobs)""",
    # WHERE 1: an upsert's SELECT needs a WHERE clause (SQLite's parsing rule).
    "states": f"""INSERT INTO plugin_states (session_id, plugin, blob_hash)
        SELECT NEW.session_id, {_items(2)} FROM json_each(NEW.states) WHERE 1
        ON CONFLICT (session_id, plugin) DO UPDATE SET blob_hash = excluded.blob_hash""",
    "ledger": f"""INSERT INTO usage_ledger (session_id, revision, source, input_tokens,
        output_tokens, cached_tokens, recorded_at)
        SELECT NEW.session_id, NEW.revision, {_items(4)}, NEW.updated_at
        FROM json_each(NEW.usage)""",
    "totals": f"""INSERT INTO usage_totals (session_id, source, input_tokens, output_tokens,
        cached_tokens) SELECT NEW.session_id, {_items(4)} FROM json_each(NEW.usage) WHERE 1
        ON CONFLICT (session_id, source) DO UPDATE SET
            input_tokens = input_tokens + excluded.input_tokens,
            output_tokens = output_tokens + excluded.output_tokens,
            cached_tokens = cached_tokens + excluded.cached_tokens""",
    "head": """UPDATE sessions SET revision = NEW.revision, created_at = NEW.created_at,
        updated_at = NEW.updated_at, turns = NEW.turns, next_seq = NEW.next_seq,
        frame_start = NEW.frame_start, last_user_message = NEW.last_user_message,
        config_hash = NEW.config_hash, protocol_options_hash = NEW.protocol_options_hash,
        pending_hash = NEW.pending_hash WHERE session_id = NEW.session_id""",
    # Last: after the head and the states point at their new blobs.
    "release": f"""DELETE FROM blobs WHERE hash IN (SELECT value FROM json_each(NEW.released))
        AND {_unreferenced("blobs.hash")}""",
}

_ONE_STATEMENT_COMMIT = (
    # A view that holds no rows: it exists for its trigger.
    f"""CREATE VIEW commit_requests ({", ".join(COMMIT_COLUMNS)})
        AS SELECT {", ".join(["NULL"] * len(COMMIT_COLUMNS))} WHERE 0""",
    "CREATE TRIGGER apply_commit_request INSTEAD OF INSERT ON commit_requests BEGIN\n"
    + "".join(f"    {sql};\n" for sql in COMMIT_TRIGGER_STATEMENTS.values())
    + "END",
)

#: Every migration this lash knows, in order. Append new steps; never edit or renumber one.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial schema", _INITIAL),
    Migration(2, "one-statement commit", _ONE_STATEMENT_COMMIT),
)

#: The newest migration id this lash knows.
LATEST = MIGRATIONS[-1].id


# -- statements ------------------------------------------------------------------------------
# Named here so a test can check with EXPLAIN QUERY PLAN that none of them scans a table: their
# cost must not grow with a session's history (DESIGN invariant 2).

HEAD = f"""SELECT {", ".join(HEAD_COLUMNS)}, lease_owner, lease_token, lease_expires_at
    FROM sessions WHERE session_id = ?"""

#: The head row as ``load`` needs it, with the JSON of the blobs it refers to (NULL for a
#: hash whose blob is missing, which ``load`` reports).
LOAD_HEAD = """SELECT s.revision, s.created_at, s.updated_at, s.turns,
    s.config_hash, s.protocol_options_hash, s.pending_hash, c.data, p.data, q.data
    FROM sessions AS s
    LEFT JOIN blobs AS c ON c.hash = s.config_hash
    LEFT JOIN blobs AS p ON p.hash = s.protocol_options_hash
    LEFT JOIN blobs AS q ON q.hash = s.pending_hash
    WHERE s.session_id = ?"""

LEASE = "SELECT lease_owner, lease_token, lease_expires_at FROM sessions WHERE session_id = ?"

SET_LEASE = """INSERT INTO sessions (session_id, lease_owner, lease_token, lease_expires_at)
    VALUES (?, ?, ?, ?)
    ON CONFLICT (session_id) DO UPDATE SET lease_owner = excluded.lease_owner,
        lease_token = excluded.lease_token, lease_expires_at = excluded.lease_expires_at"""

SET_EXPIRY = "UPDATE sessions SET lease_expires_at = ? WHERE session_id = ?"

#: The active frame's nodes: from the head's ``frame_start`` on (parameters: the session id,
#: twice), so that ``load`` reads them in the same round trip as the head.
ACTIVE_NODES = """SELECT data FROM nodes WHERE session_id = ?
    AND seq >= (SELECT frame_start FROM sessions WHERE session_id = ?) ORDER BY seq"""

ALL_NODES = "SELECT data FROM nodes WHERE session_id = ? ORDER BY seq"

STATES = """SELECT p.plugin, b.data FROM plugin_states AS p
    JOIN blobs AS b ON b.hash = p.blob_hash WHERE p.session_id = ? ORDER BY p.plugin"""

STATE_HASHES = "SELECT plugin, blob_hash FROM plugin_states WHERE session_id = ?"

USAGE = """SELECT source, input_tokens, output_tokens, cached_tokens FROM usage_totals
    WHERE session_id = ? ORDER BY source"""

#: One commit (see :data:`COMMIT_TRIGGER_STATEMENTS`).
COMMIT = f"""INSERT INTO commit_requests ({", ".join(COMMIT_COLUMNS)})
    VALUES ({", ".join(["?"] * len(COMMIT_COLUMNS))})"""

#: Drop blob ``:h`` unless a plugin state or a session head still refers to it.
RELEASE_BLOB = f"DELETE FROM blobs WHERE hash = :h AND {_unreferenced(':h')}"

#: The statements of ``acquire_lease``/``renew_lease``/``release_lease``, ``load`` and
#: ``commit`` (without ``replace``, the trigger's statements included): each must be an index
#: lookup or an index range (or a pass over the commit's own JSON arrays).
HOT_STATEMENTS: dict[str, str] = {
    "HEAD": HEAD,
    "LOAD_HEAD": LOAD_HEAD,
    "LEASE": LEASE,
    "SET_LEASE": SET_LEASE,
    "SET_EXPIRY": SET_EXPIRY,
    "ACTIVE_NODES": ACTIVE_NODES,
    "STATES": STATES,
    "STATE_HASHES": STATE_HASHES,
    "USAGE": USAGE,
    "RELEASE_BLOB": RELEASE_BLOB,
    **{f"commit trigger: {name}": sql for name, sql in COMMIT_TRIGGER_STATEMENTS.items()},
}

#: Replacing or deleting a session drops its rows (cost: what it stored, by index range).
DROP_SESSION_ROWS = tuple(f"DELETE FROM {table} WHERE session_id = ?" for table in SESSION_TABLES)

#: A deleted session keeps its head row as a tombstone at revision 0 with its lease, so the
#: next holder's fencing token is still higher than any token handed out before.
TOMBSTONE = """UPDATE sessions SET revision = 0, created_at = 0, updated_at = 0, turns = 0,
    next_seq = 0, frame_start = 0, last_user_message = NULL, config_hash = NULL,
    protocol_options_hash = NULL, pending_hash = NULL WHERE session_id = ?"""

#: Committed sessions (revision > 0) with their usage totals, most recently updated first.
LIST_SESSIONS = """SELECT s.session_id, s.created_at, s.updated_at, s.turns, s.revision,
    s.last_user_message, COALESCE(SUM(u.input_tokens), 0), COALESCE(SUM(u.output_tokens), 0),
    COALESCE(SUM(u.cached_tokens), 0)
    FROM sessions AS s LEFT JOIN usage_totals AS u ON u.session_id = s.session_id
    WHERE s.revision > 0
    GROUP BY s.session_id
    ORDER BY s.updated_at DESC, s.session_id"""


# -- opening a file ---------------------------------------------------------------------------


@functools.cache
def lash_version() -> str:
    """The installed lash version (recorded with each applied migration)."""
    try:
        return importlib.metadata.version("lash-sdk")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - source checkout
        return "unknown"


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
            f"migrations up to {LATEST}; upgrade lash to {version} or later "
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
