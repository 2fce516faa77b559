"""A third-party store backend, ``kv://``: sessions in a key-value database.

The database is anything with the interface of a ``MutableMapping[str, str]``: the ``kv://``
URL gets a dict (sessions then live as long as the process, like ``memory://``), and a real
key-value service's client with that interface would slot in unchanged. Every value is JSON text.

A session is a handful of kinds of keys (``<sid>`` is the session id; it and the other ids
are %-escaped, since an id may hold ``/``)::

    head/<sid>               the head: revision, counters, config, plugin states, usage, the
                             lease and the turn it runs, the open inputs and their claims, the
                             pending commands, the event window, the next number of each kind
    node/<sid>/<n>           one graph node, numbered in commit order
    input/<sid>/<n>          one input of the mailbox, numbered in queue order
    input-id/<sid>/<id>      the number of the input with this id, and
    input-key/<sid>/<key>    of the one with this idempotency key (a key-value database has
                             no secondary indexes: the store keeps its own)
    command/<sid>/<n>        one session command, numbered in queue order
    command-id/<sid>/<id>    the number of the command with this id, and
    command-key/<sid>/<key>  of the one with this idempotency key
    turn/<sid>/<turn id>     the record of a committed turn
    cancel/<sid>/<turn id>   a request to cancel a running turn
    event/<sid>/<n>          one event of the session's log, numbered from 1

Processes are not a session's: their keys are global, like their idempotency keys::

    process/<id>             one process record
    process-key/<key>        the id of the process started with this idempotency key
    processes                the index: every process id in start order, the open ones
                             (pending or running: what a claim looks at) and the finished
                             ones not yet notified (the outbox)

Blobs (the images of turn input) belong to no session either: ``blob/<sha256>`` holds the
bytes, base64 in a JSON string, stored once whatever the number of messages referring to them.

**One write per call.** Each method reads what it needs, checks it, and gathers every change
in a :class:`Batch`; ``_write`` then applies the batch at once, the head last, with no ``await``
anywhere in the method: on one event loop nothing can slip in between a read and the write, and
nobody sees half a commit. That is how a commit (its nodes, the inputs it completes, the commands
it applies, its turn record, its events, the lease it releases) stays all or nothing.

A database shared by several processes needs the same from its own means: apply the batch as
one multi-key transaction, made conditional on the head being unchanged since it was read
(etcd ``Txn`` comparing the head's mod revision, DynamoDB ``TransactWriteItems`` with a condition
on it, Redis ``WATCH``/``MULTI``/``EXEC``, a FoundationDB transaction). Every write to a session
rewrites its head, so that one condition serialises them all; when it fails, read again and
retry. A commit writes only its delta, and a load reads only the active frame's nodes, however
long the history. Every write to processes rewrites the ``processes`` index, the condition that
serialises them (a claim reads the open processes, so two claims never take the same one).
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from collections.abc import Iterator, MutableMapping, Sequence
from typing import Any, TypeVar
from urllib.parse import quote, unquote

import attrs

import lash
import lash.store

SCHEME = "kv"

T = TypeVar("T")


def key(kind: str, session_id: str, *rest: str | int) -> str:
    """``kind/<session id>/...``: each id %-escaped, so that ``/`` in one cannot make two
    sessions' keys collide (session ``a`` turn ``b/c`` against session ``a/b`` turn ``c``)."""
    parts = (str(part) for part in (session_id, *rest))
    return "/".join([kind, *(quote(part, safe="", errors="surrogatepass") for part in parts)])


class Batch:
    """The changes one store call makes, applied at once by ``KVStore._write``. Reads through
    the batch see its own changes (a commit may queue two inputs with one key)."""

    def __init__(self, data: MutableMapping[str, str]) -> None:
        self.data = data
        self.changes: dict[str, str | None] = {}  # None: delete the key

    def get(self, k: str) -> Any:
        text = self.changes[k] if k in self.changes else self.data.get(k)
        return None if text is None else json.loads(text)

    def put(self, k: str, value: Any) -> None:
        self.changes[k] = json.dumps(value)

    def delete(self, k: str) -> None:
        self.changes[k] = None


class KVStore:
    """``kv://``: a :class:`lash.store.Store` over a key-value mapping of JSON text.

    ``events_kept`` and ``events_max_age`` bound each session's event log (the window an
    observer resumes in): an append drops the events beyond it.
    """

    def __init__(
        self,
        url: str = "kv://",
        data: MutableMapping[str, str] | None = None,
        *,
        events_kept: int = lash.store.EVENTS_KEPT,  # the replay window every store keeps
        events_max_age: float = lash.store.EVENTS_MAX_AGE,
    ) -> None:
        if not url.startswith(f"{SCHEME}://"):
            raise lash.ConfigError(f"not a {SCHEME}:// URL: {url!r}")
        self.url = url
        self.data: MutableMapping[str, str] = {} if data is None else data
        self.events_kept = events_kept
        self.events_max_age = events_max_age

    # -- reading and writing ------------------------------------------------------------

    def _get(self, k: str) -> Any:
        """The JSON value at ``k``, or None."""
        text = self.data.get(k)
        return None if text is None else json.loads(text)

    def _head(self, session_id: str) -> dict[str, Any] | None:
        head: dict[str, Any] | None = self._get(key("head", session_id))
        return head

    def _write(self, batch: Batch, session_id: str, head: dict[str, Any]) -> None:
        """The one write of a store call: its batch and the head it changed, all at once (no
        other coroutine runs during the loop; a dict dies whole with its process)."""
        self._apply(batch, {session_id: head})

    def _apply(
        self,
        batch: Batch,
        heads: dict[str, dict[str, Any]],
        index: dict[str, list[str]] | None = None,
    ) -> None:
        """:meth:`_write` of a call that changed several heads (a process logs in its session)
        and the process index."""
        if index is not None:
            batch.put(PROCESSES, index)
        for session_id, head in heads.items():
            batch.put(key("head", session_id), head)
        for k, text in batch.changes.items():
            if text is None:
                self.data.pop(k, None)
            else:
                self.data[k] = text

    def _keys(self, prefix: str) -> Iterator[str]:
        # A key-value service lists keys by prefix (an etcd range, Redis SCAN MATCH, a
        # DynamoDB Query); a dict can only be scanned.
        return (k for k in list(self.data) if k.startswith(prefix))

    # -- the lease, kept in the head ------------------------------------------------------

    @staticmethod
    def _lease(session_id: str, head: dict[str, Any] | None) -> lash.store.Lease | None:
        if head is None or head["lease"] is None:
            return None
        owner, token, expires_at = head["lease"]
        return lash.store.Lease(session_id, owner, token, expires_at)

    def _granted(self, session_id: str, head: dict[str, Any]) -> lash.store.Lease:
        """The head's lease, with what its holder needs to know: the revision and the work
        queued (pending inputs: unsettled ones whose claim is not live)."""
        lease = self._lease(session_id, head)
        assert lease is not None
        pending = sum(state(claim, lease) == "pending" for claim in head["inputs"].values())
        return lash.store.Lease(
            session_id,
            lease.owner,
            lease.token,
            lease.expires_at,
            revision=head["revision"],
            pending_inputs=pending,
            pending_commands=len(head["commands"]),
        )

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
        lash.store.check_session_id(session_id)  # the same ids as every store, or SessionError
        # A lease may come before the first commit: a head at revision 0 holds it.
        head = self._head(session_id) or empty_head()
        current = self._lease(session_id, head)
        lease = lash.store.take_lease(current, session_id, owner, ttl, take_over=take_over)
        head["lease"] = [lease.owner, lease.token, lease.expires_at]
        head["running_turn"] = turn  # so that request_cancel can find the turn
        batch = Batch(self.data)
        self._log(batch, session_id, head, events, time.time())
        self._write(batch, session_id, head)
        return self._granted(session_id, head)

    async def renew_lease(self, lease: lash.store.Lease, *, ttl: float) -> lash.store.Lease:
        head = self._head(lease.session_id)
        lash.store.check_lease(self._lease(lease.session_id, head), lease)
        assert head is not None  # check_lease found the current lease in it
        head["lease"] = [lease.owner, lease.token, time.time() + ttl]
        self._write(Batch(self.data), lease.session_id, head)
        return self._granted(lease.session_id, head)

    async def release_lease(self, lease: lash.store.Lease) -> None:
        head = self._head(lease.session_id)
        current = self._lease(lease.session_id, head)
        if current is not None and (current.owner, current.token) == (lease.owner, lease.token):
            # Expire it but keep its token, so that the next holder's token is higher. Its
            # claims need no write: a claim counts only while its lease is live.
            assert head is not None
            head["lease"] = [current.owner, current.token, 0.0]
            head["running_turn"] = None
            self._write(Batch(self.data), lease.session_id, head)

    # -- the head and the graph -----------------------------------------------------------

    async def load(self, session_id: str, *, full: bool = False) -> lash.store.SessionRecord | None:
        lash.store.check_session_id(session_id)
        head = self._head(session_id)
        if head is None or head["revision"] == 0:
            return None
        first = head["first_node"] if full else head["frame_start"]
        nodes = [
            lash.from_data(json.loads(self.data[key("node", session_id, n)]), lash.GraphNode)
            for n in range(first, head["next_node"])
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
            usage={k: lash.from_data(v, lash.Usage) for k, v in head["usage"].items()},
            turns=head["turns"],
            event_seq=head["last_event"],
            parent_id=head.get("parent_id"),
            incarnation=head.get("incarnation", 0),
            parent_incarnation=head.get("parent_incarnation", 0),
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
        batch = Batch(self.data)
        # Every check first: once the batch is written, the commit is whole.
        claimed = [batch.get(key("input-id", session_id, i)) for i in delta.claimed]
        for input_id, n in zip(delta.claimed, claimed, strict=True):
            if n is None or head["inputs"].get(str(n)) != lease.token:
                raise lash.LeaseLost(
                    session_id, f"input {input_id!r} is not claimed by this lease any more"
                )
        applied = [batch.get(key("command-id", session_id, i)) for i in delta.applied]
        for command_id, n in zip(delta.applied, applied, strict=True):
            if n not in head["commands"]:
                raise lash.LeaseLost(session_id, f"command {command_id!r} is not pending any more")
        turn = delta.turn
        if turn is not None and batch.get(key("turn", session_id, turn.turn_id)) is not None:
            raise lash.RevisionConflict(
                session_id, expected=expected_revision, actual=head["revision"]
            )
        for draft in delta.processes:
            self._keyed_process(batch, draft)  # a key taken by other content refuses it all

        now = time.time()
        if delta.replace:
            # Start over: the graph part of the head is emptied (new nodes are numbered on from
            # the old ones, whose keys go in this batch); revision, lease and mailbox stay.
            for n in range(head["first_node"], head["next_node"]):
                batch.delete(key("node", session_id, n))
            head.update(empty_graph(start=head["next_node"]))
        if head["revision"] == 0:
            head["created_at"] = now
        n = head["next_node"]
        for node in delta.nodes:
            batch.put(key("node", session_id, n), lash.to_data(node, lash.GraphNode))
            if isinstance(node, lash.FrameBoundary):
                head["frame_start"] = n  # load() starts here from now on
            elif isinstance(node, lash.UserMessage):
                head["last_user_message"] = node.text
            elif isinstance(node, lash.TurnOutcome):
                head["status"] = node.outcome  # list_sessions() shows how the last turn ended
            n += 1
        head["next_node"] = n
        head["plugin_states"].update(delta.plugin_states)  # each state is replaced whole
        if delta.config is not None:
            head["config"] = lash.to_data(delta.config)
        for source, usage in delta.usage.items():
            total = lash.from_data(head["usage"].get(source, {}), lash.Usage) + usage
            head["usage"][source] = lash.to_data(total)
        head["turns"] += delta.turns
        head["revision"] += 1
        head["updated_at"] = now
        if delta.parent_id is not None and delta.parent_id != head.get("parent_id"):
            # A child session (a sub-agent) of that one: the link names the parent's
            # incarnation as it is now (the kernel cannot know it for a parent in its first
            # turn, not committed yet), or the deleted one's for a parent's tombstone.
            parent = batch.get(key("head", delta.parent_id)) or empty_head()
            incarnation = parent.get("incarnation", 0)
            running = parent["lease"] is not None and parent["lease"][2] > now
            if parent["revision"] == 0 and incarnation > 0 and not running:
                incarnation -= 1  # deleted, not created again: the deleted session's child
            head["parent_id"] = delta.parent_id
            head["parent_incarnation"] = incarnation
        for other_id in self._ancestors(batch, head) if delta.rollup else ():
            # A child's usage rolls up into its ancestors' heads, in the same batch; their
            # revision and lease are not touched.
            other = batch.get(key("head", other_id))
            for source, usage in delta.rollup.get(other_id, {}).items():
                total = lash.from_data(other["usage"].get(source, {}), lash.Usage) + usage
                other["usage"][source] = lash.to_data(total)
            batch.put(key("head", other_id), other)

        # The mailbox: settle what the turn consumed and applied, queue what it queued.
        turn_id = turn.turn_id if turn is not None else None
        for n in claimed:
            k = key("input", session_id, n)
            settle(batch, k, state="completed", settled_at=now, turn_id=turn_id)
            del head["inputs"][str(n)]
        for n in applied:
            settle(batch, key("command", session_id, n), state="applied", applied_at=now)
            head["commands"].remove(n)
        for draft in delta.enqueue:
            self._enqueue(batch, session_id, head, draft, now)
        if turn is not None:
            record = {**lash.to_data(turn), "revision": head["revision"], "committed_at": now}
            batch.put(key("turn", session_id, turn.turn_id), record)
            batch.delete(key("cancel", session_id, turn.turn_id))  # answered by the record
        self._log(batch, session_id, head, delta.events, now)
        heads = {session_id: head}
        index = self._process_index(batch) if delta.processes else None
        for draft in delta.processes:  # started in this write: a refused commit starts none
            if index is not None and self._keyed_process(batch, draft) is None:
                self._start_process(batch, index, heads, draft, now)
        if delta.release:
            head["lease"] = [lease.owner, lease.token, 0.0]  # its token kept: release_lease
            head["running_turn"] = None
        self._apply(batch, heads, index)
        return int(head["revision"])

    def _ancestors(self, batch: Batch, head: dict[str, Any]) -> list[str]:
        """The sessions a commit of ``head``'s session rolls usage up into: its chain of parent
        links, as far as each names its parent's current incarnation (a deleted ancestor, or a
        session created again under its id, ends it). One read per ancestor."""
        found: list[str] = []
        parent_id, incarnation = head.get("parent_id"), head.get("parent_incarnation", 0)
        while parent_id is not None and parent_id not in found:
            parent = batch.get(key("head", parent_id))
            if parent is None or parent.get("incarnation", 0) != incarnation:
                break
            found.append(parent_id)
            parent_id, incarnation = parent.get("parent_id"), parent.get("parent_incarnation", 0)
        return found

    async def delete(self, session_id: str) -> None:
        lash.store.check_session_id(session_id)
        head = self._head(session_id)
        if head is None or (
            head["revision"] == 0 and head["next_input"] == head["next_command"] == 1
        ):
            raise lash.UnknownSession(session_id)  # no history, nothing ever queued
        lease = self._lease(session_id, head)
        if lease is not None and lash.store.lease_is_live(lease):
            raise lash.SessionBusy(
                session_id, owner=lease.owner, expires_at=lease.expires_at, token=lease.token
            )
        batch = Batch(self.data)
        for kind in KINDS:
            for k in self._keys(key(kind, session_id) + "/"):
                batch.delete(k)
        # A tombstone: revision 0 (no session), but the lease and its token stay, so that the
        # lease from before the delete never commits to a session made again under this id, and
        # so does the event counter: event numbers (observers' cursors) go on rising.
        tombstone = {**empty_head(), "lease": head["lease"], "last_event": head["last_event"]}
        # And the id's incarnation, raised: the children of the deleted session roll up into
        # neither the tombstone nor a session created again under the id.
        tombstone["incarnation"] = head.get("incarnation", 0) + 1
        tombstone["first_event"] = head["last_event"] + 1
        # Its processes go too (their keys may start new ones).
        index = self._process_index(batch)
        for process_id in head["processes"]:
            record = self._process(batch, process_id)
            batch.delete(key("process", process_id))
            if record is not None and record.key is not None:
                batch.delete(key("process-key", record.key))
            for ids in index.values():
                if process_id in ids:
                    ids.remove(process_id)
        self._apply(batch, {session_id: tombstone}, index)

    async def list_sessions(self) -> list[lash.store.SessionSummary]:
        rows = []
        for k in self._keys("head/"):
            head = json.loads(self.data[k])
            if head["revision"] == 0:
                continue  # a lease or a mailbox without a commit, or a deleted session
            session_id = unquote(k.removeprefix("head/"), errors="surrogatepass")
            total = lash.Usage()
            for usage in head["usage"].values():
                total = total + lash.from_data(usage, lash.Usage)
            lease = self._lease(session_id, head)
            rows.append(
                lash.store.SessionSummary(
                    session_id=session_id,
                    created_at=head["created_at"],
                    updated_at=head["updated_at"],
                    turns=head["turns"],
                    revision=head["revision"],
                    last_user_message=head["last_user_message"],
                    usage=total,
                    status=head["status"],
                    pending_inputs=sum(
                        state(claim, lease) == "pending" for claim in head["inputs"].values()
                    ),
                    parent_id=head.get("parent_id"),
                )
            )
        return sorted(rows, key=lambda row: row.updated_at, reverse=True)

    # -- the mailbox: inputs and commands, queued by anyone, no lease needed ----------------

    def _input(
        self, batch: Batch, session_id: str, head: dict[str, Any], n: int
    ) -> lash.store.PendingInput:
        """Input ``n`` as everyone sees it: an open input is ``claimed`` while its claim's lease
        is live, and ``pending`` otherwise."""
        data = batch.get(key("input", session_id, n))
        record: lash.store.PendingInput = lash.from_data(data, lash.store.PendingInput)
        if str(n) in head["inputs"]:
            current = state(head["inputs"][str(n)], self._lease(session_id, head))
            record = attrs.evolve(record, state=current)
        return record

    def _enqueue(
        self,
        batch: Batch,
        session_id: str,
        head: dict[str, Any],
        draft: lash.store.InputDraft,
        now: float,
    ) -> lash.store.PendingInput:
        if draft.key is not None:
            n = batch.get(key("input-key", session_id, draft.key))
            if n is not None:  # the key was used: the same input again, or a conflict
                existing = self._input(batch, session_id, head, n)
                same = (existing.text, lash.to_data(list(existing.items)), existing.ingress)
                if same != (draft.text, lash.to_data(list(draft.items)), draft.ingress):
                    raise lash.InputConflict(session_id, draft.key, existing.id)
                return existing
        n = head["next_input"]
        head["next_input"] += 1
        record = from_draft(draft, lash.store.PendingInput, "in", session_id, n, now)
        batch.put(key("input", session_id, n), lash.to_data(record))
        batch.put(key("input-id", session_id, record.id), n)
        if draft.key is not None:
            batch.put(key("input-key", session_id, draft.key), n)
        head["inputs"][str(n)] = None  # open, not claimed
        self._log(batch, session_id, head, [lash.store.input_event("input_queued", record)], now)
        return record

    async def enqueue_input(
        self, session_id: str, draft: lash.store.InputDraft
    ) -> lash.store.PendingInput:
        lash.store.check_session_id(session_id)
        head = self._head(session_id) or empty_head()  # input may come before any commit
        batch = Batch(self.data)
        pending = self._enqueue(batch, session_id, head, draft, time.time())
        if batch.changes:  # none when the key returned the input already queued
            self._write(batch, session_id, head)
        return pending

    async def list_inputs(
        self, session_id: str, *, settled: bool = False
    ) -> list[lash.store.PendingInput]:
        lash.store.check_session_id(session_id)
        head = self._head(session_id)
        if head is None:
            return []
        # The head lists the open inputs: listing them costs their number, not the history's.
        numbers = range(1, head["next_input"]) if settled else sorted(map(int, head["inputs"]))
        batch = Batch(self.data)
        return [self._input(batch, session_id, head, n) for n in numbers]

    async def cancel_inputs(
        self, session_id: str, targets: Sequence[str], *, suffix: bool = False
    ) -> list[lash.store.InputCancellation]:
        lash.store.check_session_id(session_id)
        if suffix and len(targets) != 1:
            raise ValueError("a suffix cancellation takes one target: the first input")
        head = self._head(session_id) or empty_head()
        batch = Batch(self.data)

        def find(target: str) -> int | None:  # by id, else by key
            n: int | None = batch.get(key("input-id", session_id, target))
            return n if n is not None else batch.get(key("input-key", session_id, target))

        chosen: list[tuple[str | None, int | None]] = [(t, find(t)) for t in targets]
        if suffix and chosen[0][1] is not None:  # the input and every later one, by id
            chosen = [(None, n) for n in range(chosen[0][1], head["next_input"])]
        now = time.time()
        outcomes = []
        for target, n in chosen:
            if n is None:
                outcomes.append(lash.store.InputCancellation(str(target), "unknown"))
                continue
            current = self._input(batch, session_id, head, n)
            target = current.id if target is None else target
            if current.state != "pending":
                outcome = ALREADY[current.state]
                outcomes.append(lash.store.InputCancellation(target, outcome, current))
                continue
            cancelled = settle(
                batch, key("input", session_id, n), state="cancelled", settled_at=now
            )
            del head["inputs"][str(n)]
            record = lash.from_data(cancelled, lash.store.PendingInput)
            event = lash.store.input_event("input_cancelled", record)
            self._log(batch, session_id, head, [event], now)
            outcomes.append(lash.store.InputCancellation(target, "cancelled", record))
        if batch.changes:
            self._write(batch, session_id, head)
        return outcomes

    async def claim_inputs(
        self,
        lease: lash.store.Lease,
        *,
        limit: int = 1,
        ingress: lash.store.Ingress | None = None,
    ) -> list[lash.store.PendingInput]:
        session_id = lease.session_id
        head = self._head(session_id)
        lash.store.check_lease(self._lease(session_id, head), lease)
        assert head is not None
        batch = Batch(self.data)
        claimed: list[lash.store.PendingInput] = []
        for n in sorted(map(int, head["inputs"])):  # oldest first
            if len(claimed) >= limit:
                break
            pending = self._input(batch, session_id, head, n)
            if pending.state != "pending" or ingress not in (None, pending.ingress):
                continue
            # A claim is the lease's token beside the input in the head: it lives exactly as
            # long as that lease is live, and the commit that settles it checks the token.
            head["inputs"][str(n)] = lease.token
            claimed.append(attrs.evolve(pending, state="claimed"))
        if claimed:  # nothing to claim, nothing to write
            events = [lash.store.input_event("input_claimed", record) for record in claimed]
            self._log(batch, session_id, head, events, time.time())
            self._write(batch, session_id, head)
        return claimed

    async def enqueue_command(
        self, session_id: str, draft: lash.store.CommandDraft
    ) -> lash.store.QueuedCommand:
        lash.store.check_session_id(session_id)
        head = self._head(session_id) or empty_head()
        batch = Batch(self.data)
        n = batch.get(key("command-key", session_id, draft.key))
        if n is not None:  # the key was used: the same command again, or a conflict
            existing = batch.get(key("command", session_id, n))
            if (existing["name"], existing["args"]) != (draft.name, lash.to_data(draft.args)):
                raise lash.InputConflict(session_id, draft.key, existing["id"], "command")
            queued: lash.store.QueuedCommand = lash.from_data(existing, lash.store.QueuedCommand)
            return queued
        n = head["next_command"]
        head["next_command"] += 1
        now = time.time()
        command = from_draft(draft, lash.store.QueuedCommand, "cmd", session_id, n, now)
        batch.put(key("command", session_id, n), lash.to_data(command))
        batch.put(key("command-id", session_id, command.id), n)
        batch.put(key("command-key", session_id, draft.key), n)
        head["commands"].append(n)
        event = lash.store.command_event("command_queued", command)
        self._log(batch, session_id, head, [event], now)
        self._write(batch, session_id, head)
        return command

    async def list_commands(
        self, session_id: str, *, settled: bool = False
    ) -> list[lash.store.QueuedCommand]:
        lash.store.check_session_id(session_id)
        head = self._head(session_id)
        if head is None:
            return []
        numbers = range(1, head["next_command"]) if settled else head["commands"]
        return [
            lash.from_data(
                json.loads(self.data[key("command", session_id, n)]), lash.store.QueuedCommand
            )
            for n in numbers
        ]

    # -- turns and their cancellation -------------------------------------------------------

    async def turn_record(self, session_id: str, turn_id: str) -> lash.store.TurnRecord | None:
        lash.store.check_session_id(session_id)
        record = self._get(key("turn", session_id, turn_id))
        return None if record is None else lash.from_data(record, lash.store.TurnRecord)

    async def request_cancel(
        self, session_id: str, turn_id: str, *, origin: str, reason: str | None = None
    ) -> lash.store.CancelReceipt:
        lash.store.check_session_id(session_id)
        record = self._get(key("turn", session_id, turn_id))
        if record is not None:
            finished = lash.from_data(record, lash.store.TurnRecord)
            return lash.store.CancelReceipt(
                "already_finished", session_id, turn_id, record=finished
            )
        request = self._get(key("cancel", session_id, turn_id))
        if request is not None:  # the first request stands
            first = lash.from_data(request, lash.store.CancelRequest)
            return lash.store.CancelReceipt("already_requested", session_id, turn_id, request=first)
        head = self._head(session_id)
        live = lash.store.lease_is_live(self._lease(session_id, head))
        if head is None or head["running_turn"] != turn_id or not live:
            return lash.store.CancelReceipt("unknown", session_id, turn_id)
        stored = lash.store.CancelRequest(session_id, turn_id, origin, reason, time.time())
        batch = Batch(self.data)
        batch.put(key("cancel", session_id, turn_id), lash.to_data(stored))
        self._write(batch, session_id, head)  # conditional on the head, like every write
        return lash.store.CancelReceipt("requested", session_id, turn_id, request=stored)

    async def cancel_request(
        self, session_id: str, turn_id: str
    ) -> lash.store.CancelRequest | None:
        lash.store.check_session_id(session_id)
        request = self._get(key("cancel", session_id, turn_id))
        return None if request is None else lash.from_data(request, lash.store.CancelRequest)

    # -- processes: records by id, and an index of them ------------------------------------

    def _process_index(self, batch: Batch) -> dict[str, list[str]]:
        index: dict[str, list[str]] | None = batch.get(PROCESSES)
        return index if index is not None else {"all": [], "open": [], "unnotified": []}

    def _process(self, batch: Batch, process_id: str) -> lash.ProcessRecord | None:
        data = batch.get(key("process", process_id))
        return None if data is None else lash.from_data(data, lash.ProcessRecord)

    def _keyed_process(
        self, batch: Batch, draft: lash.store.ProcessDraft
    ) -> lash.ProcessRecord | None:
        """The process already started under ``draft``'s key, if any. :raises InputConflict:
        it was started with another kind, session or payload."""
        if draft.key is None:
            return None
        process_id = batch.get(key("process-key", draft.key))
        existing = None if process_id is None else self._process(batch, process_id)
        if existing is not None and not lash.store.same_process(existing, draft):
            raise lash.InputConflict(draft.session_id or "-", draft.key, existing.id, "process")
        return existing

    def _put_process(
        self,
        batch: Batch,
        index: dict[str, list[str]],
        heads: dict[str, dict[str, Any]],
        record: lash.ProcessRecord,
        event: str | None,
        now: float,
    ) -> lash.ProcessRecord:
        """Write ``record``, keep the index, and log ``event`` in its session (whose head joins
        ``heads``, the heads the call writes)."""
        batch.put(key("process", record.id), lash.to_data(record))
        if record.finished and record.id in index["open"]:
            index["open"].remove(record.id)
            index["unnotified"].append(record.id)
        if record.notified and record.id in index["unnotified"]:
            index["unnotified"].remove(record.id)
        sid = record.session_id
        if event is not None and sid is not None:
            if sid not in heads:
                heads[sid] = batch.get(key("head", sid)) or empty_head()
            events = [lash.store.process_event(event, record)]
            self._log(batch, sid, heads[sid], events, now)
        return record

    def _start_process(
        self,
        batch: Batch,
        index: dict[str, list[str]],
        heads: dict[str, dict[str, Any]],
        draft: lash.store.ProcessDraft,
        now: float,
    ) -> lash.ProcessRecord:
        if batch.get(key("process", draft.id)) is not None:
            raise lash.SessionError(
                f"process id {draft.id!r} is taken", session_id=draft.session_id
            )
        record = lash.store.new_process(draft, now)
        index["all"].append(record.id)
        index["open"].append(record.id)
        if draft.key is not None:
            batch.put(key("process-key", draft.key), record.id)
        self._put_process(batch, index, heads, record, "process_started", now)
        if draft.session_id is not None:  # its session lists it (a delete drops it)
            heads[draft.session_id]["processes"].append(record.id)
        return record

    async def start_process(self, draft: lash.store.ProcessDraft) -> lash.ProcessRecord:
        if draft.session_id is not None:
            lash.store.check_session_id(draft.session_id)
        batch = Batch(self.data)
        existing = self._keyed_process(batch, draft)
        if existing is not None:
            return existing
        heads: dict[str, dict[str, Any]] = {}
        index = self._process_index(batch)
        record = self._start_process(batch, index, heads, draft, time.time())
        self._apply(batch, heads, index)
        return record

    async def get_process(self, process_id: str) -> lash.ProcessRecord | None:
        return self._process(Batch(self.data), process_id)

    async def list_processes(
        self,
        *,
        session_id: str | None = None,
        kind: str | None = None,
        status: str | None = None,
        limit: int = 1000,
    ) -> list[lash.ProcessRecord]:
        batch = Batch(self.data)
        if session_id is not None:
            ids = (self._head(session_id) or empty_head())["processes"]
        else:
            ids = self._process_index(batch)["all"]
        found = []
        for process_id in ids:
            record = self._process(batch, process_id)
            if record is None or (kind is not None and record.kind != kind):
                continue
            if status is None or record.status == status:
                found.append(record)
        return found[:limit]

    async def claim_process(
        self, owner: str, *, ttl: float, kinds: Sequence[str] | None = None
    ) -> lash.ProcessRecord | None:
        batch = Batch(self.data)
        index = self._process_index(batch)
        heads: dict[str, dict[str, Any]] = {}
        now = time.time()
        claimed = None
        for process_id in list(index["open"]):  # oldest first
            record = self._process(batch, process_id)
            assert record is not None
            if lash.store.claim_expired(record, now):
                # What may not run again is settled first (abandoned, or failed), by any claim.
                settled = lash.store.settled_on_expiry(record, now)
                if settled is not None:
                    self._put_process(batch, index, heads, settled, "process_finished", now)
                    continue
            if claimed is not None or (kinds is not None and record.kind not in kinds):
                continue
            # Runnable: pending, or a rerunnable one whose claim expired (settled_on_expiry left
            # it, and the externally owned ones, as they were).
            expired = lash.store.claim_expired(record, now)
            if record.status == "pending" or (expired and lash.store.on_expiry(record) == "rerun"):
                claimed = lash.store.claimed_by(record, owner, ttl=ttl, now=now)
                self._put_process(batch, index, heads, claimed, "process_running", now)
        if batch.changes:
            self._apply(batch, heads, index)
        return claimed

    def _claimed(self, batch: Batch, process_id: str, token: int) -> lash.ProcessRecord:
        """The process while ``token`` is its claim. :raises LeaseLost: it is not."""
        return lash.store.check_claim(process_id, token, self._process(batch, process_id))

    async def _change_process(
        self, record: lash.ProcessRecord, event: str | None, batch: Batch
    ) -> lash.ProcessRecord:
        """Write ``record`` changed (logging ``event``), with the index."""
        index = self._process_index(batch)
        heads: dict[str, dict[str, Any]] = {}
        self._put_process(batch, index, heads, record, event, time.time())
        self._apply(batch, heads, index)
        return record

    async def heartbeat_process(
        self, process_id: str, token: int, *, ttl: float, progress: Any = None
    ) -> lash.ProcessRecord:
        batch = Batch(self.data)
        record = attrs.evolve(self._claimed(batch, process_id, token), expires_at=time.time() + ttl)
        if progress is None:
            return await self._change_process(record, None, batch)
        record = attrs.evolve(record, progress=progress)
        return await self._change_process(record, "process_progress", batch)

    async def park_process(self, process_id: str, token: int) -> lash.ProcessRecord:
        batch = Batch(self.data)
        record = attrs.evolve(self._claimed(batch, process_id, token), expires_at=None)
        return await self._change_process(record, None, batch)

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
        batch = Batch(self.data)
        record = self._process(batch, process_id)
        # Fenced by the claim's token; None: an external completion (the first one stands).
        done = lash.store.finish_record(
            process_id,
            record,
            token,
            status=status,
            result=result,
            error=error,
            now=time.time(),
            notified=notified,
        )
        if done is record:
            return done
        return await self._change_process(done, "process_finished", batch)

    async def request_process_cancel(
        self, process_id: str, reason: str
    ) -> lash.ProcessRecord | None:
        batch = Batch(self.data)
        record = self._process(batch, process_id)
        if record is None:
            return None
        # Pending: cancelled at once; running: its worker sees it at its next heartbeat.
        asked = lash.store.cancel_record(record, reason, time.time())
        if asked is record:
            return record
        event = "process_finished" if asked.finished else None
        return await self._change_process(asked, event, batch)

    async def unnotified_processes(self, *, finished_before: float) -> list[lash.ProcessRecord]:
        batch = Batch(self.data)
        found = []
        for process_id in self._process_index(batch)["unnotified"]:
            record = self._process(batch, process_id)
            if record is not None and (record.finished_at or 0.0) < finished_before:
                found.append(record)
        return found

    async def mark_process_notified(self, process_id: str) -> None:
        batch = Batch(self.data)
        record = self._process(batch, process_id)
        if record is not None and not record.notified:
            await self._change_process(attrs.evolve(record, notified=True), None, batch)

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
        # A key-value store has no transaction over the three parts: they run one by one (a
        # session or a notification seen one round late only waits for the next round).
        found = await self.claim_process(owner, ttl=ttl, kinds=kinds) if claim else None
        runnable = await self.runnable_sessions(limit=sessions) if sessions > 0 else []
        unnotified = (
            []
            if finished_before is None
            else await self.unnotified_processes(finished_before=finished_before)
        )
        return lash.store.WorkPoll(found, tuple(runnable), tuple(unnotified))

    async def runnable_sessions(self, *, limit: int = 100) -> list[str]:
        now = time.time()
        waiting = []
        for k in self._keys("head/"):
            head = json.loads(self.data[k])
            session_id = unquote(k.removeprefix("head/"), errors="surrogatepass")
            lease = self._lease(session_id, head)
            if lash.store.lease_is_live(lease, now):
                continue
            times = [
                self._get(key("input", session_id, n))["created_at"]
                for n, claim in head["inputs"].items()
                if state(claim, lease) == "pending"
            ]
            times += [
                self._get(key("command", session_id, n))["created_at"] for n in head["commands"]
            ]
            if times:
                waiting.append((min(times), session_id))
        return [session_id for _, session_id in sorted(waiting)[:limit]]

    # -- blobs -------------------------------------------------------------------------------

    async def put_blob(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        if f"blob/{digest}" not in self.data:  # content-addressed: stored once
            self.data[f"blob/{digest}"] = json.dumps(base64.b64encode(data).decode("ascii"))
        return digest

    async def get_blob(self, digest: str) -> bytes | None:
        value = self.data.get(f"blob/{digest}")
        return base64.b64decode(json.loads(value)) if value is not None else None

    # -- the event log ----------------------------------------------------------------------

    def _log(
        self,
        batch: Batch,
        session_id: str,
        head: dict[str, Any],
        drafts: Sequence[lash.store.EventDraft],
        now: float,
    ) -> None:
        """Append events to the log in the batch of the write that makes them happen, numbered
        on from the head's last one (so without gaps), then drop what left the window."""
        if not drafts:
            return
        for draft in drafts:
            head["last_event"] += 1
            event = {"type": draft.type, "data": dict(draft.data), "at": now}
            batch.put(key("event", session_id, head["last_event"]), event)
        # The replay window: the newest `events_kept` events, none older than `events_max_age`.
        # Only the oldest are read, and only until one is young enough: the cost of an append
        # does not grow with the log.
        first, last = head["first_event"], head["last_event"]
        while first <= last and (
            first <= last - self.events_kept
            or batch.get(key("event", session_id, first))["at"] < now - self.events_max_age
        ):
            batch.delete(key("event", session_id, first))
            first += 1
        head["first_event"] = first

    async def read_events(
        self, session_id: str, *, after: int = 0, limit: int = 1000
    ) -> lash.store.EventPage:
        lash.store.check_session_id(session_id)
        head = self._head(session_id) or empty_head()
        first, last = head["first_event"], head["last_event"]
        start = max(after + 1, first)
        events = []
        for n in range(start, min(last, start + limit - 1) + 1):
            event = json.loads(self.data[key("event", session_id, n)])
            events.append(
                lash.store.StoredEvent(session_id, n, event["type"], event["data"], event["at"])
            )
        return lash.store.EventPage(tuple(events), first, last)

    async def close(self) -> None:
        pass  # a real client would close its connections here


# -- the pieces of the layout ---------------------------------------------------------------

#: Every kind of key a session has besides its head (``delete`` removes them all).
KINDS = (
    "node",
    "input",
    "input-id",
    "input-key",
    "command",
    "command-id",
    "command-key",
    "turn",
    "cancel",
    "event",
)

#: The key of the process index.
PROCESSES = "processes"

#: What cancelling an input that is no longer pending says.
ALREADY: dict[str, lash.store.CancelOutcome] = {
    "claimed": "already_claimed",
    "completed": "already_completed",
    "cancelled": "already_cancelled",
}


def state(claim: int | None, lease: lash.store.Lease | None) -> lash.store.InputState:
    """An open input's state, from its claim (the claiming lease's token, or None) and the
    session's current lease: ``claimed`` while that lease is live, else ``pending``."""
    if claim is None:
        return "pending"
    return lash.store.effective_state("claimed", claim, lease)


def from_draft(draft: Any, cls: type[T], prefix: str, session_id: str, n: int, now: float) -> T:
    """The input or command a draft becomes: the draft's fields, and what the store assigns (an
    id unique in the session, the number in the queue, the time), all ``pending``."""
    assigned = {"id": f"{prefix}-{uuid.uuid4().hex[:16]}", "session_id": session_id, "seq": n}
    record: T = lash.from_data({**lash.to_data(draft), **assigned, "created_at": now}, cls)
    return record


def settle(batch: Batch, k: str, **fields: Any) -> dict[str, Any]:
    """Rewrite the input or command stored at ``k`` with ``fields``: its settled state."""
    record = {**batch.get(k), **fields}
    batch.put(k, record)
    return record


def empty_graph(start: int = 0) -> dict[str, Any]:
    """The part of a head that a ``replace`` commit starts over."""
    return {
        "turns": 0,
        "first_node": start,
        "next_node": start,
        "frame_start": start,
        "last_user_message": None,
        "status": None,
        "config": None,
        "plugin_states": {},
        "usage": {},
    }


def empty_head() -> dict[str, Any]:
    """The head of a session with no commits."""
    return {
        "revision": 0,
        "created_at": 0.0,
        "updated_at": 0.0,
        **empty_graph(),
        "lease": None,  # [owner, token, expires_at]
        "running_turn": None,  # the turn the lease runs
        "next_input": 1,
        "inputs": {},  # the open inputs: {"<n>": the token of the lease that claimed it, or None}
        "next_command": 1,
        "commands": [],  # the numbers of the pending commands, oldest first
        "first_event": 1,  # the oldest event kept (last_event + 1 when none is)
        "last_event": 0,
        "processes": [],  # the ids of its processes, in start order
    }


# -- the plugin: hosts select the backend with store = "kv://" ----------------------------------


lash_plugin = lash.PluginMeta(name="kv_store", description="Sessions in a key-value database.")


@lash.hookimpl
def register_stores(register: lash.RegisterStore) -> None:
    register(SCHEME, KVStore)
