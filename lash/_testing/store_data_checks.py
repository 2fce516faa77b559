"""Store conformance checks: what a commit persists, how it loads and lists, deletes, size.

See :mod:`lash._testing.store_checks` for how checks are written and the helpers they share.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Any

from lash._contract.graph import GraphNode, StoredNodes
from lash._contract.turn_types import SessionConfig
from lash._contract.types import ToolCall, Usage
from lash._store.protocol import Store
from lash._store.records import CommitDelta, InputDraft, SessionSummary
from lash._testing.store_checks import (
    CLOCK_SLACK,
    EXPIRY_WAIT,
    LONG_TTL,
    SHORT_TTL,
    TICK,
    Chain,
    commit_at,
    expect,
    expect_equal,
    expect_nodes,
    expect_raises,
    load_record,
    new_lease,
    session_id_for,
    short,
    summaries_of,
)
from lash.errors import LeaseLost, RevisionConflict, SessionBusy, UnknownSession

# --------------------------------------------------------------------------------------------
# Loading, revisions, timestamps
# --------------------------------------------------------------------------------------------


async def check_load_missing(store: Store) -> None:
    """load returns None for an unknown session and for one that only ever had a lease."""
    for full in (False, True):
        record = await store.load(session_id_for("unknown"), full=full)
        expect(record is None, f"load(unknown, full={full}) must be None, got {short(record)}")
    lease = await new_lease(store, "lease-only")
    for full in (False, True):
        record = await store.load(lease.session_id, full=full)
        expect(record is None, f"load(lease-only, full={full}) must be None, got {record!r}")
    await store.release_lease(lease)
    expect(await store.load(lease.session_id) is None, "load() after releasing a lease-only id")


async def check_revision_sequence(store: Store) -> None:
    """The first commit makes revision 1; each commit, even an empty one, adds exactly 1."""
    lease = await new_lease(store, "revisions")
    chain = Chain()
    deltas: list[dict[str, Any]] = [
        {"nodes": (chain.boundary(), *chain.exchange("q1", "a1")), "turns": 1},
        {},
        {"nodes": chain.exchange("q2", "a2"), "turns": 1},
        {"plugin_states": {"probe": {"n": 1}}},
    ]
    for revision, delta in enumerate(deltas):
        await commit_at(store, lease, revision, **delta)
        record = await load_record(store, lease.session_id)
        expect_equal(record.revision, revision + 1, f"load().revision after commit {revision + 1}")


async def check_timestamps(store: Store) -> None:
    """created_at is set by the first commit and kept; updated_at moves with every commit."""
    lease = await new_lease(store, "timestamps")
    before = time.time()
    await commit_at(store, lease, 0, nodes=Chain().exchange("q", "a"), turns=1)
    after = time.time()
    first = await load_record(store, lease.session_id)
    expect(
        before - CLOCK_SLACK <= first.created_at <= after + CLOCK_SLACK,
        f"created_at must be the commit time in epoch seconds, got {first.created_at} "
        f"(now {after})",
    )
    expect(first.created_at <= first.updated_at, "created_at must not be after updated_at")
    await asyncio.sleep(TICK)
    await commit_at(store, lease, 1, turns=1)
    second = await load_record(store, lease.session_id)
    expect_equal(second.created_at, first.created_at, "created_at after a second commit")
    expect(
        second.updated_at > first.updated_at,
        f"updated_at must move forward with a commit {TICK} s later "
        f"({first.updated_at} -> {second.updated_at})",
    )


# --------------------------------------------------------------------------------------------
# What a commit persists
# --------------------------------------------------------------------------------------------


def _every_variant() -> tuple[GraphNode, ...]:
    chain = Chain()
    read = ToolCall("call_1", "read_file", {"path": "notes/ä.txt", "range": [1, 40], "opts": {}})
    broken = ToolCall("call_2", "search", {}, invalid_arguments='{"query": "unterminated')
    nodes = (
        chain.boundary(),
        chain.user(
            "Summarise this — “quoted”, émoji 🙂, tab\t and\nnewline; ' OR 1=1 --",
            items=(
                {"type": "image", "url": "https://example.org/a.png", "detail": "low"},
                {"type": "file", "name": "a.txt", "size": 12, "tags": ["x", "y"]},
            ),
        ),
        chain.assistant(
            "",
            tool_calls=(read, broken),
            usage=Usage(input_tokens=1200, output_tokens=34, cached_tokens=1024),
            model="test-model-1",
        ),
        chain.tool_call(read, plugin="files"),
        chain.tool_result("call_1", "read_file", "line\n" * 2000, projected="[2000 lines]"),
        chain.tool_call(broken),
        chain.tool_result("call_2", "search", "arguments are not a JSON object", is_error=True),
        chain.plugin(
            "plan",
            "plan.updated",
            {
                "steps": [{"title": "read", "done": True}, {"title": "write", "score": 0.5}],
                "meta": {"deep": {"deeper": [1, "two", None, False, {"empty": []}]}},
                "count": 3,
            },
        ),
        chain.plugin("marker", "ping"),
        chain.assistant("Done."),
        chain.boundary(reason="compaction", summary="The user asked for a summary; done."),
        chain.user("And now?"),
    )
    return nodes


async def check_node_round_trip(store: Store) -> None:
    """Every node variant, with every optional field set or left default, loads back equal."""
    lease = await new_lease(store, "nodes")
    nodes = _every_variant()
    await commit_at(store, lease, 0, nodes=nodes[:5], turns=1)
    await commit_at(store, lease, 1, nodes=nodes[5:], turns=1)
    record = await load_record(store, lease.session_id, full=True)
    expect_nodes(record.nodes, nodes, "load(full=True).nodes")
    expect(
        isinstance(record.nodes, tuple | StoredNodes),
        "SessionRecord.nodes must be a tuple or a lash.store.StoredNodes",
    )


async def check_load_active_frame(store: Store) -> None:
    """load() returns the nodes from the last FrameBoundary on; load(full=True) returns all."""
    lease = await new_lease(store, "frames")
    sid = lease.session_id
    chain = Chain()
    committed: list[GraphNode] = []
    steps: list[tuple[str, tuple[GraphNode, ...], int]] = []
    first = (chain.boundary(), *chain.exchange("q1", "a1"))
    steps.append(("a root frame", first, 0))
    steps.append(("a second commit in the same frame", chain.exchange("q2", "a2"), 0))
    mid: tuple[GraphNode, ...] = (
        chain.assistant("before"),
        chain.boundary(reason="compaction", summary="s1"),
        *chain.exchange("q3", "a3"),
    )
    # A boundary inside a delta: the nodes before it stay in the previous frame.
    steps.append(("a boundary in the middle of a delta", mid, 6))
    two = (
        chain.boundary(summary="s2"),
        chain.user("q4"),
        chain.boundary(summary="s3"),
        chain.user("q5"),
    )
    steps.append(("two boundaries in one delta", two, 11))
    steps.append(("a commit after them", chain.exchange("q6", "a6"), 11))
    for revision, (what, nodes, frame_start) in enumerate(steps):
        await commit_at(store, lease, revision, nodes=nodes, turns=1)
        committed.extend(nodes)
        active = await load_record(store, sid)
        expect_nodes(active.nodes, committed[frame_start:], f"load().nodes after {what}")
        full = await load_record(store, sid, full=True)
        expect_nodes(full.nodes, committed, f"load(full=True).nodes after {what}")

    # Without any boundary the whole history is the root frame.
    plain = await new_lease(store, "no-frame")
    nodes = Chain().exchange("q", "a")
    await commit_at(store, plain, 0, nodes=nodes, turns=1)
    expect_nodes(
        (await load_record(store, plain.session_id)).nodes, nodes, "load() with no boundary"
    )


async def check_plugin_states(store: Store) -> None:
    """A commit replaces the states of the plugins in its delta, whole; the others are kept."""
    lease = await new_lease(store, "states")
    sid = lease.session_id
    plan = {"steps": [{"title": "a", "done": False}], "meta": {"v": 1}}
    await commit_at(store, lease, 0, plugin_states={"plan": plan, "budget": {"used": 3}})
    expect_equal(
        (await load_record(store, sid)).plugin_states,
        {"plan": plan, "budget": {"used": 3}},
        "plugin_states after the first commit",
    )
    await commit_at(store, lease, 1, plugin_states={"budget": {"used": 7}})
    expect_equal(
        (await load_record(store, sid)).plugin_states,
        {"plan": plan, "budget": {"used": 7}},
        "plugin_states after a commit that changes only 'budget'",
    )
    await commit_at(store, lease, 2, nodes=Chain().exchange("q", "a"), turns=1)
    await commit_at(store, lease, 3, plugin_states={"plan": {"other": []}, "notes": {"n": None}})
    expect_equal(
        (await load_record(store, sid, full=True)).plugin_states,
        {"plan": {"other": []}, "budget": {"used": 7}, "notes": {"n": None}},
        "plugin_states after replacing 'plan' (a state is replaced whole, never merged)",
    )


async def check_session_fields(store: Store) -> None:
    """config is persisted, and kept when the delta leaves it None."""
    lease = await new_lease(store, "fields")
    sid = lease.session_id
    await commit_at(store, lease, 0, turns=1)
    record = await load_record(store, sid)
    expect_equal(record.config, SessionConfig(), "config before any was committed")
    config = SessionConfig(
        provider="scripted",
        model="model-x",
        prompt_layers=("base", "coding"),
        plugin_options={"plan": {"max_steps": 5, "labels": ["a", "b"]}, "files": {}},
    )
    await commit_at(store, lease, 1, config=config)
    for revision, what in ((2, "a commit leaving it None"), (3, "another one")):
        record = await load_record(store, sid)
        expect_equal(record.config, config, f"config (after {what})")
        await commit_at(
            store, lease, revision, nodes=Chain(prefix=f"r{revision}-").exchange("q", "a")
        )
    await commit_at(store, lease, 4, config=SessionConfig(model="m2"))
    record = await load_record(store, sid)
    expect_equal(record.config, SessionConfig(model="m2"), "config after replacing it")


async def check_usage_sums(store: Store) -> None:
    """Usage deltas add up per source across commits."""
    lease = await new_lease(store, "usage")
    sid = lease.session_id
    await commit_at(store, lease, 0, usage={"turn": Usage(10, 5, 1)})
    await commit_at(store, lease, 1, usage={"turn": Usage(1, 2, 3), "compaction": Usage(7, 0, 0)})
    await commit_at(store, lease, 2, turns=1)
    await commit_at(store, lease, 3, usage={"compaction": Usage(0, 9, 2)})
    expect_equal(
        dict((await load_record(store, sid)).usage),
        {"turn": Usage(11, 7, 4), "compaction": Usage(7, 9, 2)},
        "usage per source",
    )


async def check_turns_counter(store: Store) -> None:
    """turns adds up the ``turns`` of every commit."""
    lease = await new_lease(store, "turns")
    for revision, turns in enumerate((1, 0, 2, 1)):
        await commit_at(store, lease, revision, turns=turns)
    expect_equal((await load_record(store, lease.session_id)).turns, 4, "turns after 1+0+2+1")


async def check_replace(store: Store) -> None:
    """A replace commit drops the previous nodes, states, usage and turns; revisions go on."""
    lease = await new_lease(store, "replace")
    sid = lease.session_id
    old = Chain(prefix="old-")
    await commit_at(
        store,
        lease,
        0,
        nodes=(old.boundary(), *old.exchange("old question", "a")),
        turns=1,
        plugin_states={"old": {"v": 1}, "both": {"v": 1}},
        usage={"turn": Usage(10, 10, 0)},
    )
    await commit_at(store, lease, 1, nodes=old.exchange("q", "a"), turns=1)
    new = Chain(prefix="new-")
    fresh = (new.boundary(), new.user("new question"))
    await commit_at(
        store,
        lease,
        2,
        nodes=fresh,
        turns=1,
        replace=True,
        plugin_states={"both": {"v": 2}},
        usage={"turn": Usage(1, 2, 3)},
    )
    record = await load_record(store, sid, full=True)
    expect_nodes(record.nodes, fresh, "load(full=True).nodes after replace")
    expect_equal(dict(record.plugin_states), {"both": {"v": 2}}, "plugin_states after replace")
    expect_equal(dict(record.usage), {"turn": Usage(1, 2, 3)}, "usage after replace")
    expect_equal(record.turns, 1, "turns after replace")
    expect_equal(record.revision, 3, "revision after replace")
    (row,) = await summaries_of(store, [sid])
    expect_equal(row.last_user_message, "new question", "last_user_message after replace")
    more = new.exchange("q2", "a2")
    await commit_at(store, lease, 3, nodes=more, turns=1)
    expect_nodes(
        (await load_record(store, sid)).nodes, fresh + more, "nodes after replace + commit"
    )

    # Replace on a session with no commits simply creates it.
    first = await new_lease(store, "replace-new")
    await commit_at(store, first, 0, nodes=fresh, replace=True, turns=1)
    expect_nodes(
        (await load_record(store, first.session_id)).nodes, fresh, "nodes of a new session"
    )


# --------------------------------------------------------------------------------------------
# Listing, deleting, many sessions
# --------------------------------------------------------------------------------------------


async def check_list_sessions(store: Store) -> None:
    """list_sessions lists committed sessions, most recently updated first, with their totals."""
    leases = {k: await new_lease(store, f"list-{k}") for k in ("s1", "s2", "s3", "s4", "lease")}
    sid = {k: lease.session_id for k, lease in leases.items()}
    chains = {k: Chain(prefix=f"{k}-") for k in leases}
    s4 = chains["s4"]
    plan: list[tuple[str, dict[str, Any]]] = [
        ("s4", {"nodes": (s4.boundary(), s4.assistant("no user message here"))}),
        (
            "s1",
            {
                "nodes": chains["s1"].exchange("first question", "a"),
                "turns": 1,
                "usage": {"turn": Usage(10, 5, 0)},
            },
        ),
        ("s2", {"nodes": (chains["s2"].user("second session"),), "turns": 1}),
        ("s3", {"nodes": (chains["s3"].user("third: old"),), "turns": 1}),
        ("s3", {"nodes": chains["s3"].exchange("third: new", "a"), "turns": 1}),
        (
            "s1",
            {
                "nodes": (chains["s1"].assistant("more"),),
                "turns": 1,
                "usage": {"turn": Usage(1, 1, 1), "compaction": Usage(4, 0, 0)},
            },
        ),
    ]
    revisions = dict.fromkeys(leases, 0)
    for key, delta in plan:
        await asyncio.sleep(TICK)  # distinct updated_at values, so the order is defined
        revisions[key] = await commit_at(store, leases[key], revisions[key], **delta)
    rows = await summaries_of(store, list(sid.values()))
    expect_equal(
        [row.session_id for row in rows],
        [sid["s1"], sid["s3"], sid["s2"], sid["s4"]],
        "list_sessions() order (most recently updated first; lease-only sessions excluded)",
    )
    expected = {
        "s1": (2, 2, "first question", Usage(15, 6, 1)),
        "s3": (2, 2, "third: new", Usage()),
        "s2": (1, 1, "second session", Usage()),
        "s4": (0, 1, None, Usage()),
    }
    for row, key in zip(rows, ("s1", "s3", "s2", "s4"), strict=True):
        expect(isinstance(row, SessionSummary), f"list_sessions() row {short(row)}")
        got = (row.turns, row.revision, row.last_user_message, row.usage)
        expect_equal(got, expected[key], f"(turns, revision, last_user_message, usage) of {key}")
        record = await load_record(store, sid[key])
        expect_equal(
            (row.created_at, row.updated_at),
            (record.created_at, record.updated_at),
            f"(created_at, updated_at) of {key} in list_sessions() and load()",
        )


async def check_delete(store: Store) -> None:
    """delete: UnknownSession when missing, SessionBusy under a live lease, then gone for good."""
    missing = await expect_raises(
        UnknownSession, store.delete(session_id_for("missing")), "delete of an unknown session"
    )
    expect(isinstance(missing, KeyError), "UnknownSession must also be a KeyError")
    lease_only = await new_lease(store, "delete-lease-only")
    await store.release_lease(lease_only)
    await expect_raises(
        UnknownSession, store.delete(lease_only.session_id), "delete of a lease-only session"
    )

    lease = await new_lease(store, "delete")
    sid = lease.session_id
    chain = Chain()
    await commit_at(
        store,
        lease,
        0,
        nodes=(chain.boundary(), *chain.exchange("q", "a")),
        turns=1,
        plugin_states={"probe": {"v": 1}},
        usage={"turn": Usage(1, 1, 1)},
        enqueue=(InputDraft("queued by the commit"),),
    )
    await store.enqueue_input(sid, InputDraft("queued by a host"))
    before = await load_record(store, sid, full=True)
    busy = await expect_raises(SessionBusy, store.delete(sid), "delete under a live lease")
    expect_equal(busy.owner, "owner-a", "SessionBusy.owner")
    expect_equal(await store.load(sid, full=True), before, "the session after a refused delete")
    await store.release_lease(lease)
    await store.delete(sid)
    for full in (False, True):
        expect(await store.load(sid, full=full) is None, f"load(full={full}) after delete")
    expect_equal(await store.list_inputs(sid, settled=True), [], "the inputs of a deleted session")
    expect_equal((await store.read_events(sid)).events, (), "the events of a deleted session")
    expect(not await summaries_of(store, [sid]), "list_sessions() still lists a deleted session")
    await expect_raises(UnknownSession, store.delete(sid), "a second delete")

    # The id can be used again, from scratch; the writer from before cannot write to it.
    again = await store.acquire_lease(sid, "owner-b", ttl=LONG_TTL)
    await expect_raises(
        LeaseLost,
        store.commit(sid, lease=lease, expected_revision=0, delta=CommitDelta(turns=1)),
        "commit with the lease from before the delete",
    )
    nodes = Chain(prefix="new-").exchange("new", "a")
    await commit_at(store, again, 0, nodes=nodes, turns=1)
    record = await load_record(store, sid, full=True)
    expect_nodes(record.nodes, nodes, "nodes of a session re-created after delete")
    got = (dict(record.plugin_states), dict(record.usage), record.turns)
    expect_equal(got, ({}, {}, 1), "(plugin_states, usage, turns) after re-create")

    # An expired lease does not block delete.
    expired = await new_lease(store, "delete-expired", ttl=SHORT_TTL)
    await commit_at(store, expired, 0, turns=1)
    await asyncio.sleep(EXPIRY_WAIT)
    await store.delete(expired.session_id)
    expect(await store.load(expired.session_id) is None, "load() after delete")


async def check_sessions_independent(store: Store) -> None:
    """Many sessions in one store keep their own leases, heads, nodes, states and usage."""
    count = 4
    owners = ["owner-a", "owner-a", "owner-b", "owner-c"]
    leases = [await new_lease(store, f"many{i}", owner=owners[i]) for i in range(count)]
    chains = [Chain(prefix=f"s{i}-") for i in range(count)]
    nodes: list[list[GraphNode]] = [[] for _ in range(count)]
    revisions = [0] * count
    # Session i gets i + 1 commits, interleaved round-robin with the others'.
    for round_ in range(count):
        for i in range(round_, count):
            opening = (chains[i].boundary(),) if round_ == 0 else ()
            delta_nodes = opening + chains[i].exchange(f"s{i} q{round_}", f"s{i} a{round_}")
            nodes[i].extend(delta_nodes)
            revisions[i] = await commit_at(
                store,
                leases[i],
                revisions[i],
                nodes=delta_nodes,
                turns=1,
                plugin_states={"probe": {"session": i, "round": round_}},
                usage={"turn": Usage(i + 1, 1, 0)},
                config=SessionConfig(model=f"model-{i}"),
            )
    for i in range(count):
        record = await load_record(store, leases[i].session_id)
        expect_nodes(record.nodes, nodes[i], f"nodes of session {i}")
        got = (record.revision, record.turns, dict(record.plugin_states), dict(record.usage))
        want = (
            i + 1,
            i + 1,
            {"probe": {"session": i, "round": i}},
            {"turn": Usage((i + 1) * (i + 1), i + 1, 0)},
        )
        expect_equal(got, want, f"(revision, turns, plugin_states, usage) of session {i}")
        expect_equal(record.config, SessionConfig(model=f"model-{i}"), f"config of session {i}")
    await store.release_lease(leases[0])
    await store.delete(leases[0].session_id)
    rows = await summaries_of(store, [lease.session_id for lease in leases])
    expect_equal(
        sorted(row.session_id for row in rows),
        sorted(lease.session_id for lease in leases[1:]),
        "sessions listed after deleting one of them",
    )


# --------------------------------------------------------------------------------------------
# Size
# --------------------------------------------------------------------------------------------


async def check_large_history(store: Store) -> None:
    """2,000 nodes, one commit of 1,000 then ten of 100, load back in order, by frame."""
    lease = await new_lease(store, "large")
    chain = Chain()
    nodes: list[GraphNode] = [chain.boundary()]
    boundary_at = 1537
    while len(nodes) < 2000:
        i = len(nodes)
        if i == boundary_at:
            nodes.append(chain.boundary(reason="compaction", summary=f"summary at {i}"))
        elif i % 4 == 1:
            nodes.append(chain.user(f"question {i} " + "q" * 100))
        elif i % 4 == 2:
            call = ToolCall(f"call_{i}", "lookup", {"n": i})
            nodes.append(chain.assistant("", tool_calls=(call,), usage=Usage(i, 1, 0)))
        elif i % 4 == 3:
            nodes.append(chain.tool_result(f"call_{i - 1}", "lookup", "r" * 200))
        else:
            nodes.append(chain.assistant(f"answer {i}"))
            chain.turn += 1
    cuts = [0, 1000, *range(1100, 2001, 100)]
    for revision, (start, end) in enumerate(itertools.pairwise(cuts)):
        await commit_at(store, lease, revision, nodes=tuple(nodes[start:end]), turns=1)
    full = await load_record(store, lease.session_id, full=True)
    expect_nodes(full.nodes, nodes, "load(full=True).nodes of a 2,000-node history")
    active = await load_record(store, lease.session_id)
    expect_nodes(active.nodes, nodes[boundary_at:], "load().nodes of a 2,000-node history")
    expect_equal(active.revision, len(cuts) - 1, "revision after 11 commits")


async def check_child_link_and_rollup(store: Store) -> None:
    """A child session's commits record its parent in the head (``load``, ``list_sessions``),
    a later commit without ``parent_id`` keeps the link, and ``rollup`` adds usage to other
    sessions' totals without moving their revision (a session with no head is skipped); a
    refused commit rolls nothing up."""
    parent = await new_lease(store, "parent")
    await commit_at(store, parent, 0, usage={"turn": Usage(1, 1, 0)})
    child = await new_lease(store, "child")
    source = f"child:{child.session_id}"
    missing = session_id_for("never-created")
    rollup = {parent.session_id: {source: Usage(5, 2, 1)}, missing: {source: Usage(9, 9, 9)}}
    await commit_at(
        store,
        child,
        0,
        usage={"turn": Usage(5, 2, 1)},
        parent_id=parent.session_id,
        rollup=rollup,
    )
    await commit_at(
        store,
        child,
        1,
        usage={"turn": Usage(1, 0, 0)},
        rollup={parent.session_id: {source: Usage(1, 0, 0)}},
    )
    # A refused commit rolls nothing up: the roll-up is part of the commit.
    stale = CommitDelta(
        usage={"turn": Usage(50, 0, 0)}, rollup={parent.session_id: {source: Usage(50, 0, 0)}}
    )
    await expect_raises(
        RevisionConflict,
        store.commit(child.session_id, lease=child, expected_revision=0, delta=stale),
        "a child's commit at a stale revision",
    )
    record = await load_record(store, child.session_id)
    expect_equal(record.parent_id, parent.session_id, "parent_id of the child after two commits")
    expect_equal(dict(record.usage), {"turn": Usage(6, 2, 1)}, "the child's own usage")
    head = await load_record(store, parent.session_id)
    expect_equal(head.parent_id, None, "parent_id of a root session")
    expect_equal(head.revision, 1, "the parent's revision after its child's roll-ups")
    expect_equal(
        dict(head.usage),
        {"turn": Usage(1, 1, 0), source: Usage(6, 2, 1)},
        "the parent's usage with its child's rolled up",
    )
    expect(await store.load(missing) is None, "a roll-up created a session that had no head")
    rows = {
        r.session_id: r for r in await summaries_of(store, [parent.session_id, child.session_id])
    }
    expect_equal(
        (rows[child.session_id].parent_id, rows[parent.session_id].parent_id),
        (parent.session_id, None),
        "list_sessions() parent_id of the child and of the parent",
    )
    expect_equal(rows[parent.session_id].usage, Usage(7, 3, 1), "the parent's listed usage")
    # The parent commits on as before: its own usage adds to what its child rolled up.
    await commit_at(store, parent, 1, usage={"turn": Usage(1, 0, 0)})
    head = await load_record(store, parent.session_id)
    expect_equal(
        dict(head.usage),
        {"turn": Usage(2, 1, 0), source: Usage(6, 2, 1)},
        "the parent's usage after its own next commit",
    )


async def check_rollup_skips_deleted_ancestor(store: Store) -> None:
    """A child's roll-up reaches its ancestors along its stored chain of parent links only:
    once its parent is deleted, neither the parent's tombstone, nor a session created again
    under the parent's id, nor the ancestors above get anything, and the child keeps its link
    (``incarnation`` counts the deletes of an id, ``parent_incarnation`` is the parent's when
    the link was stored)."""
    grand = await new_lease(store, "rollup-grand")
    await commit_at(store, grand, 0, usage={"turn": Usage(1, 0, 0)})
    parent = await new_lease(store, "rollup-parent")
    pid, gid = parent.session_id, grand.session_id
    await commit_at(store, parent, 0, usage={"turn": Usage(2, 0, 0)}, parent_id=gid)
    child = await new_lease(store, "rollup-child")
    via_parent = f"child:{parent.session_id}"
    own = f"child:{child.session_id}"

    def up(amount: Usage) -> dict[str, dict[str, Usage]]:
        """What the kernel rolls up for one commit of the child: to its parent and grandparent."""
        return {gid: {via_parent: amount}, pid: {own: amount}}

    await commit_at(
        store, child, 0, usage={"turn": Usage(10, 0, 0)}, parent_id=pid, rollup=up(Usage(10, 0, 0))
    )
    record = await load_record(store, child.session_id)
    expect_equal(
        (record.parent_incarnation, record.incarnation),
        (0, 0),
        "the child's link incarnation and its own, before any delete",
    )
    expect_equal(
        dict((await load_record(store, pid)).usage),
        {"turn": Usage(2, 0, 0), own: Usage(10, 0, 0)},
        "the parent's usage with its child's rolled up",
    )

    await store.release_lease(parent)
    await store.delete(pid)
    await commit_at(store, child, 1, usage={"turn": Usage(100, 0, 0)}, rollup=up(Usage(100, 0, 0)))
    expect_equal(
        dict((await load_record(store, gid)).usage),
        {"turn": Usage(1, 0, 0), via_parent: Usage(10, 0, 0)},
        "the grandparent's usage after a commit of the child of its deleted child",
    )

    # The id is used again (a root session now): it starts with its own usage only.
    again = await store.acquire_lease(pid, "owner-b", ttl=LONG_TTL)
    await commit_at(store, again, 0, usage={"turn": Usage(3, 0, 0)})
    recreated = await load_record(store, pid)
    expect_equal(
        dict(recreated.usage),
        {"turn": Usage(3, 0, 0)},
        "the usage of a session created again under a deleted parent's id",
    )
    expect_equal(recreated.incarnation, 1, "the incarnation of a session created after one delete")
    await commit_at(
        store, child, 2, usage={"turn": Usage(1000, 0, 0)}, rollup=up(Usage(1000, 0, 0))
    )
    expect_equal(
        dict((await load_record(store, pid)).usage),
        {"turn": Usage(3, 0, 0)},
        "the usage of the session created again, after a commit of the old one's child",
    )
    expect_equal(
        dict((await load_record(store, gid)).usage),
        {"turn": Usage(1, 0, 0), via_parent: Usage(10, 0, 0)},
        "the grandparent's usage after the orphaned child's next commit",
    )
    record = await load_record(store, child.session_id)
    expect_equal(
        (record.parent_id, record.parent_incarnation),
        (pid, 0),
        "the orphaned child's link (kept as it was stored)",
    )
    expect_equal(dict(record.usage), {"turn": Usage(1110, 0, 0)}, "the orphaned child's usage")

    # Deleted again: the next session under the id is the second incarnation. A child first
    # linked to the id meanwhile (made from a handle on the deleted session) is the deleted
    # one's child: the tombstone gets nothing, nor the session created again under the id.
    await store.release_lease(again)
    await store.delete(pid)
    late = await new_lease(store, "rollup-late-child")
    late_own = {pid: {f"child:{late.session_id}": Usage(20, 0, 0)}}
    await commit_at(store, late, 0, usage={"turn": Usage(20, 0, 0)}, parent_id=pid, rollup=late_own)
    expect_equal(
        (await load_record(store, late.session_id)).parent_incarnation,
        1,
        "the link incarnation of a child first linked to a deleted parent (the deleted one's)",
    )
    third = await store.acquire_lease(pid, "owner-c", ttl=LONG_TTL)
    await commit_at(store, third, 0, turns=1)
    expect_equal(
        (await load_record(store, pid)).incarnation,
        2,
        "the incarnation of a session created after two deletes",
    )
    await commit_at(store, late, 1, usage={"turn": Usage(20, 0, 0)}, rollup=late_own)
    expect_equal(
        dict((await load_record(store, pid)).usage),
        {},
        "the usage of a session created again, after commits of a child linked to its deleted "
        "predecessor",
    )


async def check_rollup_into_first_turn(store: Store) -> None:
    """A child created in its parent's first turn commits before its parent does: its link is
    to the incarnation the parent's lease holds (after a delete too), and its roll-up lands in
    the parent's totals, which the parent's first commit keeps."""
    for deleted in (False, True):
        parent = await new_lease(store, "first-turn-parent")
        pid = parent.session_id
        if deleted:
            await commit_at(store, parent, 0, usage={"turn": Usage(7, 7, 7)})
            await store.release_lease(parent)
            await store.delete(pid)
            parent = await store.acquire_lease(pid, "owner-b", ttl=LONG_TTL)
        child = await new_lease(store, "first-turn-child")
        own = f"child:{child.session_id}"
        await commit_at(
            store,
            child,
            0,
            usage={"turn": Usage(4, 1, 0)},
            parent_id=pid,
            rollup={pid: {own: Usage(4, 1, 0)}},
        )
        await commit_at(store, parent, 0, usage={"turn": Usage(1, 0, 0)})
        await commit_at(
            store, child, 1, usage={"turn": Usage(1, 1, 0)}, rollup={pid: {own: Usage(1, 1, 0)}}
        )
        record = await load_record(store, pid)
        expect_equal(
            dict(record.usage),
            {"turn": Usage(1, 0, 0), own: Usage(5, 2, 0)},
            f"the parent's usage ({'after a delete' if deleted else 'a new id'})",
        )
        linked = await load_record(store, child.session_id)
        expect_equal(
            linked.parent_incarnation,
            record.incarnation,
            f"the child's link incarnation ({'after a delete' if deleted else 'a new id'})",
        )


#: The checks of this module, in the order they run.
CHECKS: tuple[Callable[[Store], Awaitable[None]], ...] = (
    check_load_missing,
    check_revision_sequence,
    check_timestamps,
    check_node_round_trip,
    check_load_active_frame,
    check_plugin_states,
    check_session_fields,
    check_usage_sums,
    check_turns_counter,
    check_replace,
    check_list_sessions,
    check_delete,
    check_sessions_independent,
    check_large_history,
    check_child_link_and_rollup,
    check_rollup_skips_deleted_ancestor,
    check_rollup_into_first_turn,
)
