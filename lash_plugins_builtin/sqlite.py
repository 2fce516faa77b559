"""``sqlite://``: the embedded durable store. One SQLite file holds many sessions.

URLs (SQLAlchemy style: three slashes, then the path)::

    sqlite:///relative/path.db       relative to the working directory when the store is built
    sqlite:////absolute/path.db      four slashes: an absolute path
    sqlite://:memory:                a private in-memory database (gone when the store closes)

Query parameters tune the connection: ``?synchronous=FULL`` (default ``NORMAL``),
``?busy_timeout=10000`` (milliseconds, default 5000) and ``?create_dirs=1`` (create a missing
parent directory instead of refusing to open; lash creates nothing unasked).

**Durability.** The database runs in WAL mode with ``synchronous=NORMAL``: a commit is written
to the WAL before :meth:`SQLiteStore.commit` returns, so a committed turn survives the process
crashing or being killed at any moment. After a *power loss or OS crash*, the last commits before
it may be rolled back (never half-applied: the database stays consistent). Use
``?synchronous=FULL`` to fsync the WAL on every commit and keep those too, at the cost of one
fsync per turn.

**Concurrency.** Every read-then-write (lease acquisition and renewal, commit, delete) runs in
``BEGIN IMMEDIATE``, so two processes sharing the file never interleave inside one; SQLite waits
``busy_timeout`` ms for the file's write lock. Readers never block writers (WAL). Each store
instance holds one connection, opened on first use and used by one task at a time.

The schema, its migrations and the hot statements live in ``_sqlite_schema``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import sqlite3
import time
import urllib.parse
from collections.abc import AsyncIterator, Iterable
from typing import Any

import aiosqlite
import attrs

import lash
from lash import check_lease, take_lease
from lash_plugins_builtin import _sqlite_schema as schema

__all__ = ["SQLiteStore", "parse_url"]

SCHEME = "sqlite"
MEMORY = ":memory:"
#: ``PRAGMA synchronous`` levels accepted in URLs (OFF risks corruption on a power loss).
SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
DEFAULT_SYNCHRONOUS = "NORMAL"
DEFAULT_BUSY_TIMEOUT = 5000

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_URL_FORMS = (
    "sqlite:///relative/path.db, sqlite:////absolute/path.db or sqlite://:memory:, "
    "optionally followed by ?synchronous=NORMAL|FULL&busy_timeout=MS&create_dirs=1"
)


@attrs.frozen
class SQLiteSettings:
    """What a ``sqlite://`` URL says: the file (or ``:memory:``) and connection settings."""

    path: str
    synchronous: str = DEFAULT_SYNCHRONOUS
    busy_timeout: int = DEFAULT_BUSY_TIMEOUT
    create_dirs: bool = False


def parse_url(url: str) -> SQLiteSettings:
    """Read a ``sqlite://`` URL (see the module docs); a relative path stays relative.

    :raises lash.ConfigError: for any other shape, an unknown parameter or a bad value.
    """
    prefix = f"{SCHEME}://"
    if not url.startswith(prefix):
        raise lash.ConfigError(f"not a sqlite URL: {url!r}; use {_URL_FORMS}")
    rest, _, query = url[len(prefix) :].partition("?")
    if rest in (MEMORY, "/" + MEMORY):
        path = MEMORY
    elif rest.startswith("/") and len(rest) > 1:
        # "/rel/x.db" -> "rel/x.db"; "//abs/x.db" -> "/abs/x.db".
        path = urllib.parse.unquote(rest[1:])
    else:
        raise lash.ConfigError(f"bad sqlite URL {url!r}: use {_URL_FORMS}")
    values: dict[str, Any] = {}
    for key, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
        if key == "synchronous":
            level = value.strip().upper()
            if level not in SYNCHRONOUS:
                raise lash.ConfigError(
                    f"bad sqlite URL {url!r}: synchronous={value!r}; use one of "
                    f"{', '.join(SYNCHRONOUS)} (NORMAL: durable against crashes of the process; "
                    "FULL: against power loss too)"
                )
            values["synchronous"] = level
        elif key == "busy_timeout":
            try:
                values["busy_timeout"] = int(value)
                if values["busy_timeout"] < 0:
                    raise ValueError(value)
            except ValueError:
                raise lash.ConfigError(
                    f"bad sqlite URL {url!r}: busy_timeout={value!r} is not a number of "
                    "milliseconds (e.g. busy_timeout=5000)"
                ) from None
        elif key == "create_dirs":
            word = value.strip().lower()
            if word not in _TRUE | _FALSE:
                raise lash.ConfigError(
                    f"bad sqlite URL {url!r}: create_dirs={value!r}; use create_dirs=1 or 0"
                )
            values["create_dirs"] = word in _TRUE
        else:
            raise lash.ConfigError(
                f"bad sqlite URL {url!r}: unknown parameter {key!r} "
                "(known: busy_timeout, create_dirs, synchronous)"
            )
    return SQLiteSettings(path, **values)


class SQLiteStore:
    """``sqlite://``: sessions in one SQLite file (WAL), on one aiosqlite connection.

    ``create_dirs``, ``synchronous`` and ``busy_timeout`` override the URL's parameters. The
    database is opened (and migrated forward) on first use, or by :meth:`open`.
    """

    def __init__(
        self,
        url: str = "sqlite:///lash.db",
        *,
        create_dirs: bool | None = None,
        synchronous: str | None = None,
        busy_timeout: int | None = None,
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
        if overrides:
            settings = attrs.evolve(settings, **overrides)
        if settings.path != MEMORY:
            # Fixed now: a later chdir of the host must not move the database.
            settings = attrs.evolve(settings, path=os.path.abspath(settings.path))
        self.url = url
        self.settings = settings
        self._conn: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

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
        if not memory:
            schema.check_path(self.path, create_dirs=self.settings.create_dirs)
        try:
            pending = aiosqlite.connect(self.path, isolation_level=None)
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
            )
        except sqlite3.Error as exc:
            await conn.close()
            raise self._explain(exc) from exc
        except BaseException:
            await conn.close()
            raise
        return conn

    def _explain(self, exc: sqlite3.Error) -> lash.LashError:
        return schema.explain(exc, self.path, busy_timeout=self.settings.busy_timeout)

    @contextlib.asynccontextmanager
    async def _transaction(self, mode: str = "IMMEDIATE") -> AsyncIterator[aiosqlite.Connection]:
        """One transaction on the store's connection (IMMEDIATE: holding the write lock from
        its first statement, so what it reads cannot change before it writes)."""
        async with self._lock:
            conn = await self._connection()
            try:
                if conn.in_transaction:  # defensive: every failed transaction was rolled back
                    await conn.rollback()
                try:
                    # Inside the try: cancelled while queued, BEGIN still runs later.
                    await conn.execute(f"BEGIN {mode}")
                    yield conn
                    await conn.execute("COMMIT")
                except BaseException:
                    await schema.rollback(conn)
                    raise
            except sqlite3.Error as exc:
                raise self._explain(exc) from exc

    # -- leases ----------------------------------------------------------------------------

    async def acquire_lease(self, session_id: str, owner: str, *, ttl: float) -> lash.Lease:
        async with self._transaction() as conn:
            current = _lease_of(session_id, await _one(conn, schema.LEASE, (session_id,)))
            lease = take_lease(current, session_id, owner, ttl)
            await conn.execute(
                schema.SET_LEASE, (session_id, lease.owner, lease.token, lease.expires_at)
            )
        return lease

    async def renew_lease(self, lease: lash.Lease, *, ttl: float) -> lash.Lease:
        sid = lease.session_id
        async with self._transaction() as conn:
            check_lease(_lease_of(sid, await _one(conn, schema.LEASE, (sid,))), lease)
            renewed = lash.Lease(sid, lease.owner, lease.token, time.time() + ttl)
            await conn.execute(schema.SET_EXPIRY, (renewed.expires_at, sid))
        return renewed

    async def release_lease(self, lease: lash.Lease) -> None:
        sid = lease.session_id
        async with self._transaction() as conn:
            current = _lease_of(sid, await _one(conn, schema.LEASE, (sid,)))
            if current is not None and (current.token, current.owner) == (lease.token, lease.owner):
                # Keep the token (as an expired lease) so the next holder's is still higher.
                await conn.execute(schema.SET_EXPIRY, (0.0, sid))

    # -- sessions --------------------------------------------------------------------------

    async def load(self, session_id: str, *, full: bool = False) -> lash.SessionRecord | None:
        async with self._transaction("DEFERRED") as conn:
            head = await _one(conn, schema.HEAD, (session_id,))
            if head is None or head[0] == 0:
                return None
            revision, created_at, updated_at, turns, _next, frame_start = head[:6]
            config_hash, protocol_hash, pending_hash = head[7:10]
            if full:
                node_rows = await conn.execute_fetchall(schema.ALL_NODES, (session_id,))
            else:
                node_rows = await conn.execute_fetchall(
                    schema.ACTIVE_NODES, (session_id, frame_start)
                )
            state_rows = await conn.execute_fetchall(schema.STATES, (session_id,))
            usage_rows = await conn.execute_fetchall(schema.USAGE, (session_id,))
            config = await _blob(conn, config_hash)
            protocol_options = await _blob(conn, protocol_hash)
            pending = await _blob(conn, pending_hash)
        return lash.SessionRecord(
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
            protocol_options=protocol_options if protocol_options is not None else {},
            plugin_states={str(plugin): json.loads(data) for plugin, data in state_rows},
            pending=tuple(pending) if pending is not None else (),
            usage={str(r[0]): lash.Usage(r[1], r[2], r[3]) for r in usage_rows},
            turns=turns,
        )

    async def commit(
        self,
        session_id: str,
        *,
        lease: lash.Lease,
        expected_revision: int,
        delta: lash.CommitDelta,
    ) -> int:
        # Serialize before taking the write lock: a value that is not JSON fails here, with
        # nothing written and no other writer kept waiting.
        nodes = [_node_row(session_id, node) for node in delta.nodes]
        states = {
            plugin: _canonical(session_id, f"state of plugin {plugin!r}", data)
            for plugin, data in delta.plugin_states.items()
        }
        config = (
            None
            if delta.config is None
            else _canonical(session_id, "config", lash.to_data(delta.config))
        )
        protocol = (
            None
            if delta.protocol_options is None
            else _canonical(session_id, "protocol options", dict(delta.protocol_options))
        )
        pending = (
            None
            if delta.pending is None
            else _canonical(session_id, "pending input", list(delta.pending))
        )
        async with self._transaction() as conn:
            now = time.time()  # once the write lock is ours: commits are stamped in order
            head = await _one(conn, schema.HEAD, (session_id,))
            check_lease(_lease_of(session_id, None if head is None else head[10:13]), lease)
            assert head is not None  # a current lease lives in the head row
            current, created_at, _updated, turns, next_seq, frame_start, last_user = head[:7]
            config_hash, protocol_hash, pending_hash = head[7:10]
            if current != expected_revision:
                raise lash.RevisionConflict(session_id, expected=expected_revision, actual=current)
            released: set[str] = set()
            if delta.replace and current > 0:
                released.update(await _drop_session_rows(conn, session_id))
                released.update(h for h in (config_hash, protocol_hash, pending_hash) if h)
                turns = next_seq = frame_start = 0
                last_user = config_hash = protocol_hash = pending_hash = None
            if current == 0:
                created_at = now
            revision = int(current) + 1
            rows = []
            for seq, (node_id, kind, frame_id, turn, text, opens_frame, user_text) in enumerate(
                nodes, start=next_seq
            ):
                if opens_frame:
                    frame_start = seq
                if user_text is not None:
                    last_user = user_text
                rows.append((session_id, seq, node_id, kind, frame_id, turn, text))
            if rows:
                await conn.executemany(schema.INSERT_NODE, rows)
            next_seq += len(rows)
            blobs = [*states.values(), *(b for b in (config, protocol, pending) if b is not None)]
            if blobs:
                await conn.executemany(schema.INSERT_BLOB, blobs)
            for plugin, (digest, _) in states.items():
                old = await _one(conn, schema.STATE_HASH, (session_id, plugin))
                if old is not None and old[0] != digest:
                    released.add(old[0])
                await conn.execute(schema.SET_STATE, (session_id, plugin, digest))
            old_hashes = (config_hash, protocol_hash, pending_hash)
            new_hashes = tuple(
                old if blob is None else blob[0]
                for old, blob in zip(old_hashes, (config, protocol, pending), strict=True)
            )
            released.update(o for o, n in zip(old_hashes, new_hashes, strict=True) if o and o != n)
            config_hash, protocol_hash, pending_hash = new_hashes
            for source, usage in delta.usage.items():
                amounts = (usage.input_tokens, usage.output_tokens, usage.cached_tokens)
                await conn.execute(
                    schema.INSERT_USAGE, (session_id, revision, source, *amounts, now)
                )
                await conn.execute(schema.ADD_USAGE, (session_id, source, *amounts))
            await conn.execute(
                schema.UPDATE_HEAD,
                (
                    revision,
                    created_at,
                    now,
                    turns + delta.turns,
                    next_seq,
                    frame_start,
                    last_user,
                    config_hash,
                    protocol_hash,
                    pending_hash,
                    session_id,
                ),
            )
            # After the head and states point at their new blobs: drop what nothing uses now.
            await _release_blobs(conn, released)
        return revision

    async def delete(self, session_id: str) -> None:
        async with self._transaction() as conn:
            head = await _one(conn, schema.HEAD, (session_id,))
            if head is None or head[0] == 0:
                raise lash.UnknownSession(session_id)
            owner, _token, expires_at = head[10:13]
            if owner is not None and expires_at > time.time():
                raise lash.SessionBusy(session_id, owner=owner, expires_at=expires_at)
            released = await _drop_session_rows(conn, session_id)
            released.update(h for h in head[7:10] if h)
            await conn.execute(schema.TOMBSTONE, (session_id,))
            await _release_blobs(conn, released)

    async def list_sessions(self) -> list[lash.SessionSummary]:
        async with self._transaction("DEFERRED") as conn:
            rows = await conn.execute_fetchall(schema.LIST_SESSIONS)
        return [
            lash.SessionSummary(
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
        async with self._transaction("DEFERRED") as conn:
            values = {}
            for pragma in ("journal_mode", "synchronous", "busy_timeout", "application_id"):
                rows = list(await conn.execute_fetchall(f"PRAGMA {pragma}"))
                values[pragma] = rows[0][0]
            migrations = await conn.execute_fetchall(
                "SELECT id, name, applied_at, lash_version FROM lash_migrations ORDER BY id"
            )
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


async def _one(
    conn: aiosqlite.Connection, sql: str, params: Iterable[Any] = ()
) -> sqlite3.Row | None:
    rows = list(await conn.execute_fetchall(sql, params))
    return rows[0] if rows else None


def _lease_of(session_id: str, row: Iterable[Any] | None) -> lash.Lease | None:
    """The lease stored in a head row's ``(owner, token, expires_at)``, if any."""
    if row is None:
        return None
    owner, token, expires_at = row
    if owner is None:
        return None
    return lash.Lease(session_id, owner, token, expires_at)


async def _blob(conn: aiosqlite.Connection, digest: str | None) -> Any:
    if digest is None:
        return None
    row = await _one(conn, schema.BLOB, (digest,))
    if row is None:  # only a hand-edited database gets here
        raise lash.LashError(f"stored blob {digest} is missing from the database")
    return json.loads(row[0])


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


def _node(session_id: str, text: str) -> Any:
    return lash.from_data(json.loads(text), lash.GraphNode, what=f"stored node of {session_id!r}")


def _nodes(session_id: str, texts: list[str]) -> tuple[Any, ...]:
    """Decode stored nodes. One ``json.loads`` over all rows is ~40% faster than one per row
    (resume cost); a bad row falls back to the per-row path, whose error names it."""
    try:
        datas = json.loads("[" + ",".join(texts) + "]")
    except ValueError:
        return tuple(_node(session_id, text) for text in texts)
    what = f"stored node of {session_id!r}"
    return tuple(lash.from_data(data, lash.GraphNode, what=what) for data in datas)


async def _drop_session_rows(conn: aiosqlite.Connection, session_id: str) -> set[str]:
    """Delete a session's nodes, states and usage; the blob hashes its states referred to."""
    hashes = {
        str(r[0]) for r in await conn.execute_fetchall(schema.SESSION_STATE_HASHES, (session_id,))
    }
    for statement in (
        schema.DROP_NODES,
        schema.DROP_STATES,
        schema.DROP_LEDGER,
        schema.DROP_TOTALS,
    ):
        await conn.execute(statement, (session_id,))
    return hashes


async def _release_blobs(conn: aiosqlite.Connection, hashes: Iterable[str]) -> None:
    for digest in sorted(hashes):
        await conn.execute(schema.RELEASE_BLOB, {"h": digest})
