"""A third-party store backend, ``kv://``: sessions in a key-value database.

The database is anything with the interface of a ``MutableMapping[str, str]``: the ``kv://``
URL gets a dict (sessions then live as long as the process, like ``memory://``), and a real
key-value service's client with that interface would slot in unchanged. Every value is JSON text.

Two kinds of keys::

    head/<session id>          the head: revision, counters, config, states, usage, the lease
    node/<session id>/<seq>    one graph node, numbered in commit order

A commit writes its new nodes under fresh keys, then the head, **last**: the head is the commit
point, so a commit that fails half-way leaves nodes nothing points at (the next commit reuses
their keys) and a session that is exactly as before. A commit writes only its delta, and a load
reads only the nodes from the active frame's boundary on, however long the history.

Each method reads and writes without awaiting in between, so on one event loop nothing can slip
into a read-then-write. A backend shared by several processes needs the same guarantee from its
database: a transaction around every read-then-write (``BEGIN IMMEDIATE`` in SQLite,
``SELECT ... FOR UPDATE`` in Postgres).
"""

from __future__ import annotations

import json
import time
from collections.abc import MutableMapping
from typing import Any

import lash
import lash.store

SCHEME = "kv"


class KVStore:
    """``kv://``: a :class:`lash.store.Store` over a key-value mapping of JSON text."""

    def __init__(self, url: str = "kv://", data: MutableMapping[str, str] | None = None) -> None:
        if not url.startswith(f"{SCHEME}://"):
            raise lash.ConfigError(f"not a {SCHEME}:// URL: {url!r}")
        self.url = url
        self.data: MutableMapping[str, str] = {} if data is None else data

    # -- the head record -----------------------------------------------------------------

    def _head(self, session_id: str) -> dict[str, Any] | None:
        text = self.data.get(f"head/{session_id}")
        return None if text is None else json.loads(text)

    def _write_head(self, session_id: str, head: dict[str, Any]) -> None:
        self.data[f"head/{session_id}"] = json.dumps(head)

    @staticmethod
    def _lease(session_id: str, head: dict[str, Any] | None) -> lash.store.Lease | None:
        if head is None or head["lease"] is None:
            return None
        owner, token, expires_at = head["lease"]
        return lash.store.Lease(session_id, owner, token, expires_at)

    # -- leases --------------------------------------------------------------------------

    async def acquire_lease(self, session_id: str, owner: str, *, ttl: float) -> lash.store.Lease:
        lash.store.check_session_id(session_id)  # the same ids as every store, or SessionError
        # A lease may come before the first commit: a head at revision 0 holds it.
        head = self._head(session_id) or empty_head()
        lease = lash.store.take_lease(self._lease(session_id, head), session_id, owner, ttl)
        head["lease"] = [lease.owner, lease.token, lease.expires_at]
        self._write_head(session_id, head)
        return lease

    async def renew_lease(self, lease: lash.store.Lease, *, ttl: float) -> lash.store.Lease:
        head = self._head(lease.session_id)
        lash.store.check_lease(self._lease(lease.session_id, head), lease)
        assert head is not None  # check_lease found the current lease in it
        renewed = lash.store.Lease(lease.session_id, lease.owner, lease.token, time.time() + ttl)
        head["lease"] = [renewed.owner, renewed.token, renewed.expires_at]
        self._write_head(lease.session_id, head)
        return renewed

    async def release_lease(self, lease: lash.store.Lease) -> None:
        head = self._head(lease.session_id)
        current = self._lease(lease.session_id, head)
        if current is not None and (current.owner, current.token) == (lease.owner, lease.token):
            # Expire it but keep its token, so that the next holder's token is higher.
            assert head is not None
            head["lease"] = [current.owner, current.token, 0.0]
            self._write_head(lease.session_id, head)

    # -- sessions ------------------------------------------------------------------------

    async def load(self, session_id: str, *, full: bool = False) -> lash.store.SessionRecord | None:
        lash.store.check_session_id(session_id)
        head = self._head(session_id)
        if head is None or head["revision"] == 0:
            return None
        first = head["first_seq"] if full else head["frame_start"]
        nodes = [
            lash.from_data(json.loads(self.data[f"node/{session_id}/{seq}"]), lash.GraphNode)
            for seq in range(first, head["next_seq"])
        ]
        config = lash.SessionConfig()
        if head["config"] is not None:
            config = lash.from_data(head["config"], lash.SessionConfig)
        return lash.store.SessionRecord(
            session_id=session_id,
            revision=head["revision"],
            created_at=head["created_at"],
            updated_at=head["updated_at"],
            nodes=tuple(nodes),
            config=config,
            plugin_states=head["plugin_states"],
            pending=tuple(head["pending"]),
            usage={k: lash.from_data(v, lash.Usage) for k, v in head["usage"].items()},
            turns=head["turns"],
        )

    async def commit(
        self,
        session_id: str,
        *,
        lease: lash.store.Lease,
        expected_revision: int,
        delta: lash.store.CommitDelta,
    ) -> int:
        lash.store.check_session_id(session_id)
        head = self._head(session_id)
        lash.store.check_lease(self._lease(session_id, head), lease)  # the fencing token
        assert head is not None
        if head["revision"] != expected_revision:  # the compare-and-swap
            raise lash.RevisionConflict(
                session_id, expected=expected_revision, actual=head["revision"]
            )
        now = time.time()
        garbage = range(0)
        if delta.replace and head["revision"] > 0:
            # Start over: a new head keeping the revision, the creation time and the lease. The new
            # nodes are numbered on from the old ones, whose keys go once the head is written.
            old, head = head, empty_head()
            head.update(revision=old["revision"], created_at=old["created_at"], lease=old["lease"])
            head["first_seq"] = head["frame_start"] = head["next_seq"] = old["next_seq"]
            garbage = range(old["first_seq"], old["next_seq"])
        if head["revision"] == 0:
            head["created_at"] = now
        seq = head["next_seq"]
        for node in delta.nodes:
            self.data[f"node/{session_id}/{seq}"] = json.dumps(lash.to_data(node, lash.GraphNode))
            if isinstance(node, lash.FrameBoundary):
                head["frame_start"] = seq  # load() starts here from now on
            elif isinstance(node, lash.UserMessage):
                head["last_user_message"] = node.text
            seq += 1
        head["next_seq"] = seq
        head["plugin_states"].update(delta.plugin_states)  # each state is replaced whole
        if delta.config is not None:
            head["config"] = lash.to_data(delta.config)
        if delta.pending is not None:
            head["pending"] = list(delta.pending)
        for source, usage in delta.usage.items():
            total = lash.from_data(head["usage"].get(source, {}), lash.Usage) + usage
            head["usage"][source] = lash.to_data(total)
        head["turns"] += delta.turns
        head["revision"] += 1
        head["updated_at"] = now
        self._write_head(session_id, head)  # the commit point
        for seq in garbage:
            del self.data[f"node/{session_id}/{seq}"]
        return int(head["revision"])

    async def delete(self, session_id: str) -> None:
        lash.store.check_session_id(session_id)
        head = self._head(session_id)
        if head is None or head["revision"] == 0:
            raise lash.UnknownSession(session_id)
        lease = self._lease(session_id, head)
        if lease is not None and lease.expires_at > time.time():
            raise lash.SessionBusy(session_id, owner=lease.owner, expires_at=lease.expires_at)
        for seq in range(head["first_seq"], head["next_seq"]):
            del self.data[f"node/{session_id}/{seq}"]
        # A tombstone: revision 0 (no session), but the lease and its token stay.
        self._write_head(session_id, {**empty_head(), "lease": head["lease"]})

    async def list_sessions(self) -> list[lash.store.SessionSummary]:
        rows = []
        for key in list(self.data):
            if not key.startswith("head/"):
                continue
            head = json.loads(self.data[key])
            if head["revision"] == 0:
                continue  # a lease without a commit, or a deleted session
            total = lash.Usage()
            for usage in head["usage"].values():
                total = total + lash.from_data(usage, lash.Usage)
            rows.append(
                lash.store.SessionSummary(
                    session_id=key.removeprefix("head/"),
                    created_at=head["created_at"],
                    updated_at=head["updated_at"],
                    turns=head["turns"],
                    revision=head["revision"],
                    last_user_message=head["last_user_message"],
                    usage=total,
                )
            )
        return sorted(rows, key=lambda row: row.updated_at, reverse=True)

    async def close(self) -> None:
        pass  # a real client would close its connections here


def empty_head() -> dict[str, Any]:
    """The head of a session with no commits."""
    return {
        "revision": 0,
        "created_at": 0.0,
        "updated_at": 0.0,
        "turns": 0,
        "first_seq": 0,
        "next_seq": 0,
        "frame_start": 0,
        "last_user_message": None,
        "config": None,
        "plugin_states": {},
        "pending": [],
        "usage": {},
        "lease": None,
    }


# -- the plugin: hosts select the backend with store = "kv://" ----------------------------------


lash_plugin = lash.PluginMeta(name="kv_store", description="Sessions in a key-value database.")


@lash.hookimpl
def register_stores(register: lash.RegisterStore) -> None:
    register(SCHEME, KVStore)
