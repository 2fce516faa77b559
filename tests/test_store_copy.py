"""``lash store copy SRC DST``: every session of a real SQLite store copied to a real Postgres
server and back, compared record by record, and continued at the destination."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import attrs
from _delegating import Delegating
from _recorder import Recorder
from click.testing import CliRunner

import lash
import lash.store
from lash.cli._main import cli
from lash_plugins_builtin import standard, stores

SESSIONS = ("a", "a/helper", "b")


def make_core(url: str, rec: Recorder) -> lash.LashCore:
    return lash.LashCore(
        plugins=[standard, stores, rec], builtins=(), store=url, provider="recorder"
    )


async def fill(url: str) -> None:
    """Three sessions: ``a`` with two frames (a reset between its turns), a drained input, a
    cancelled and a pending one, an applied and a pending command, a process of its own;
    ``a/helper``, its child; ``b``, one turn. Plus host processes: a pending and a finished
    one."""
    rec = Recorder([{"text": f"answer {n}"} for n in range(6)])
    async with make_core(url, rec) as core:
        a = await core.session("a").open()
        await a.turn("hello", id="t-hello").run()
        await a.enqueue_command("reset", key="reset-1")
        await a.apply_commands()
        await core.enqueue("a", "queued", key="k-queued")
        await a.drain()
        child = await core.child_session("a", id="a/helper").open()
        await child.turn("help").run()
        await child.close()
        await a.close()
        b = await core.session("b").open()
        await b.turn("bee").run()
        await b.close()
        store = core.store
        cancelled = await store.enqueue_input("a", lash.store.InputDraft("dropped", key="k-drop"))
        await store.cancel_inputs("a", [cancelled.id])
        await store.enqueue_input("a", lash.store.InputDraft("later", key="k-later"))
        await store.enqueue_command("b", lash.store.CommandDraft("reset", key="reset-b"))
        await store.start_process(
            lash.store.ProcessDraft(id="job-a", kind="sleep", payload={"s": 1}, session_id="a")
        )
        await store.start_process(lash.store.ProcessDraft(id="job-host", kind="sleep", key="h"))
        await store.start_process(lash.store.ProcessDraft(id="job-done", kind="sleep"))
        await store.finish_process("job-done", None, status="succeeded", result={"ok": True})
        # Two processes a worker (gone by the time of the copy) was running.
        await store.start_process(lash.store.ProcessDraft(id="job-once", kind="send"))
        await store.start_process(
            lash.store.ProcessDraft(
                id="job-again", kind="send", recovery="rerunnable", max_attempts=3
            )
        )
        for _ in range(2):
            assert await store.claim_process("gone-worker", ttl=300, kinds=["send"]) is not None


async def snapshot(url: str) -> dict[str, Any]:
    """What a copy must carry, per session, without what it must not (ids of inputs and
    commands, revisions, times, event numbers)."""
    async with lash.LashCore(plugins=[stores], builtins=()) as core:
        store = core.composition.store_factory(url)(url)
        try:
            out: dict[str, Any] = {}
            for summary in await store.list_sessions():
                sid = summary.session_id
                record = await store.load(sid, full=True)
                assert record is not None
                active = await store.load(sid)
                assert active is not None
                turn_ids = [n.turn_id for n in record.nodes if isinstance(n, lash.TurnOutcome)]
                turns = [await store.turn_record(sid, t) for t in turn_ids]
                inputs = await store.list_inputs(sid, settled=True)
                events = (await store.read_events(sid)).events
                out[sid] = {
                    "nodes": record.nodes,
                    "active": active.nodes,
                    "states": dict(record.plugin_states),
                    "config": record.config,
                    "usage": dict(record.usage),
                    "turns": record.turns,
                    "parent": record.parent_id,
                    "turn_records": [
                        (t.turn_id, t.index, t.outcome, t.reason, dict(t.result))
                        for t in turns
                        if t is not None
                    ],
                    "inputs": sorted(
                        (
                            i.text,
                            i.key,
                            i.ingress,
                            i.source,
                            i.state,
                            i.turn_id,
                        )
                        for i in inputs
                    ),
                    "commands": sorted(
                        (c.name, c.key, dict(c.args), c.state)
                        for c in await store.list_commands(sid, settled=True)
                    ),
                    "events": [(e.type, dict(e.data)) for e in events],
                }
            out["processes"] = sorted(
                (p.id, p.kind, p.session_id, p.status, p.payload, p.result, p.key)
                for p in await store.list_processes()
            )
            return out
        finally:
            await store.close()


def replayed(events: list[tuple[str, Any]], n: int) -> list[tuple[str, Any]]:
    """The ``n`` events a copy replayed into a log: those after its first event, the copy's
    ``store_copy_started``."""
    assert events[0][0] == "store_copy_started"
    return events[1 : 1 + n]


def copy(*args: str) -> Any:
    return CliRunner().invoke(cli, ["store", "copy", *args])


def test_a_sqlite_store_is_copied_to_postgres_and_back(tmp_path: Path, postgres_url: str) -> None:
    """SQLite -> Postgres -> SQLite: every session, frame, state, turn record, input, command
    and process arrives; a second copy to a non-empty destination is refused, --merge skips
    what is copied, and a turn runs on the copy with the pending input."""
    src = f"sqlite:///{tmp_path}/src.db"
    back = f"sqlite:///{tmp_path}/back.db"
    asyncio.run(fill(src))
    result = copy(src, postgres_url)
    assert result.exit_code == 0, result.output
    assert "copied 3 sessions (0 replaced), skipped 0; copied 5 processes" in result.stdout
    assert [line.split(":")[0] for line in result.stderr.splitlines()[:3]] == [
        "[1/3] a",
        "[2/3] a/helper",
        "[3/3] b",
    ]
    result = copy(postgres_url, back)
    assert result.exit_code == 0, result.output
    original, middle, final = (asyncio.run(snapshot(u)) for u in (src, postgres_url, back))
    assert sorted(original) == sorted([*SESSIONS, "processes"])
    for sid in SESSIONS:
        for field in ("nodes", "active", "states", "config", "usage", "turns", "parent"):
            assert middle[sid][field] == original[sid][field], (sid, field)
            assert final[sid][field] == original[sid][field], (sid, field)
        assert middle[sid]["turn_records"] == original[sid]["turn_records"]
        assert final[sid]["turn_records"] == original[sid]["turn_records"]
        assert middle[sid]["inputs"] == original[sid]["inputs"] == final[sid]["inputs"]
        assert middle[sid]["commands"] == original[sid]["commands"] == final[sid]["commands"]
    a = original["a"]
    frames = [n for n in a["nodes"] if isinstance(n, lash.FrameBoundary)]
    assert len(frames) == 2 and len(a["active"]) < len(a["nodes"])
    assert original["a/helper"]["parent"] == "a"
    assert sorted(s[4] for s in a["inputs"]) == ["cancelled", "completed", "pending"]
    assert ("queued", "k-queued", "next_turn", "host", "completed") == a["inputs"][2][:5]
    assert a["inputs"][2][5] is not None  # the turn that consumed it, carried
    for sid in SESSIONS:  # the replay window, in order, with its data
        n = len(original[sid]["events"])
        assert n > 0
        assert replayed(middle[sid]["events"], n) == original[sid]["events"]
        # Postgres -> SQLite replays Postgres's whole log, the first copy's events included.
        whole = middle[sid]["events"]
        assert replayed(final[sid]["events"], len(whole)) == whole
    # A running process's claim is not carried: an owner-bound one ends abandoned, as its
    # worker's death would end it; a rerunnable one is pending, to run again.
    statuses = {p[0]: p[3] for p in original["processes"]}
    assert statuses == {
        **{"job-a": "pending", "job-done": "succeeded", "job-host": "pending"},
        **{"job-once": "running", "job-again": "running"},
    }
    assert {p[0]: p[3] for p in middle["processes"]} == {
        **statuses,
        **{"job-once": "abandoned", "job-again": "pending"},
    }
    assert final["processes"] == middle["processes"]
    unchanged = [p for p in original["processes"] if p[3] != "running"]
    assert [p for p in middle["processes"] if p[0] not in ("job-once", "job-again")] == unchanged

    # A non-empty destination is refused; --merge skips what a copy finished.
    refused = copy(src, postgres_url)
    assert refused.exit_code == 1
    assert "the destination is not empty (3 sessions, 5 processes)" in refused.stderr
    merged = copy(src, postgres_url, "--merge")
    assert merged.exit_code == 0, merged.output
    assert merged.stdout.startswith(
        "copied 0 sessions (0 replaced), skipped 3; copied 0 processes, skipped 4"
    )

    # The copy goes on: a turn consumes the pending input on Postgres.
    async def go_on() -> tuple[lash.TurnResult, ...]:
        async with make_core(postgres_url, Recorder([{"text": "on postgres"}])) as core:
            session = await core.session("a").open()
            results = await session.drain()
            await session.close()
            return tuple(results)

    results = asyncio.run(go_on())
    assert [r.text for r in results] == ["on postgres"]
    after = asyncio.run(snapshot(postgres_url))
    assert ("later", "k-later", "next_turn", None, "completed") in {
        i[:5] for i in after["a"]["inputs"]
    }
    assert after["a"]["turns"] == original["a"]["turns"] + 1


def test_an_interrupted_copy_is_finished_by_merge_and_force_replaces(
    tmp_path: Path, postgres_url: str
) -> None:
    """A session a copy left half done is copied again by --merge; a session of the same id
    that no copy wrote is refused by --merge and replaced by --force."""
    src = f"sqlite:///{tmp_path}/src.db"
    asyncio.run(fill(src))

    async def half_and_foreign() -> None:
        async with lash.LashCore(plugins=[stores], builtins=(), store=postgres_url) as core:
            store = core.store
            # A copy killed while it held the session's lease (a live one).
            lease = await store.acquire_lease(
                "a",
                "lash-store-copy",
                ttl=300,
                events=(lash.store.EventDraft("store_copy_started"),),
            )
            await store.commit(
                "a", lease=lease, expected_revision=0, delta=lash.store.CommitDelta(turns=1)
            )
            lease = await store.acquire_lease("b", "x", ttl=30)
            await store.commit("b", lease=lease, expected_revision=0, delta=attrs_delta(turns=7))

    asyncio.run(half_and_foreign())
    refused = copy(src, postgres_url, "--merge")
    assert refused.exit_code == 1
    assert "session(s) 'b', which no copy wrote" in refused.stderr
    forced = copy(src, postgres_url, "--force")
    assert forced.exit_code == 0, forced.output
    assert "copied 3 sessions (2 replaced)" in forced.stdout
    original, copied = asyncio.run(snapshot(src)), asyncio.run(snapshot(postgres_url))
    for sid in SESSIONS:
        assert copied[sid]["nodes"] == original[sid]["nodes"]
        assert copied[sid]["turns"] == original[sid]["turns"]
        assert copied[sid]["inputs"] == original[sid]["inputs"]


def attrs_delta(**kwargs: Any) -> lash.store.CommitDelta:
    return attrs.evolve(lash.store.CommitDelta(release=True), **kwargs)


def test_an_unreachable_store_is_named_without_its_password(tmp_path: Path) -> None:
    """A Postgres server that does not answer is named, password masked; a missing SQLite
    source is named and not created; --merge with --force is a usage error."""
    src = f"sqlite:///{tmp_path}/src.db"
    asyncio.run(fill(src))
    result = copy(src, "postgresql://lash:s3cret-pw@127.0.0.1:1/lash")
    assert result.exit_code == 1
    assert "cannot read the destination store 'postgresql://lash:***@127.0.0.1:1/lash'" in (
        result.stderr
    )
    assert "s3cret-pw" not in result.output
    both = copy(src, f"sqlite:///{tmp_path}/dst.db", "--merge", "--force")
    assert both.exit_code == 2 and "--merge and --force exclude each other" in both.stderr
    missing = copy(f"sqlite:///{tmp_path}/nothing.db", src)
    assert missing.exit_code == 1
    assert "source store" in missing.stderr and "nothing.db" in missing.stderr


def test_a_forced_copy_keeps_a_child_made_in_its_parents_first_turn_its_child(
    tmp_path: Path,
) -> None:
    """A sub-agent made in its parent's first turn commits before its parent (it is the
    older session); copied again with --force, it is still its parent's child at the
    destination: its next turn rolls up into the parent (docs: subagents.rst, "Usage
    roll-up"), not into a deleted copy of it."""

    def core(url: str, rec: Recorder) -> lash.LashCore:
        plugins = [standard, stores, rec, Delegating()]
        return lash.LashCore(plugins=plugins, builtins=(), store=url, provider="recorder")

    def tokens(n: int) -> dict[str, int]:
        return {"input_tokens": n, "output_tokens": 0}

    src, dst = f"sqlite:///{tmp_path}/src.db", f"sqlite:///{tmp_path}/dst.db"

    async def first_turn() -> None:
        call = {"name": "delegate", "arguments": {"task": "look"}}
        rec = Recorder(
            [
                {"tool_calls": [call], "usage": tokens(10)},
                {"text": "sub", "usage": tokens(7)},
                {"text": "done", "usage": tokens(1)},
            ]
        )
        async with core(src, rec) as host, await host.session("p").open() as parent:
            await parent.turn("go").run()

    async def child_turn_then_parent_usage() -> dict[str, int]:
        rec = Recorder([{"text": "more", "usage": tokens(5)}])
        async with core(dst, rec) as host:
            async with await host.session("p/sub1").open() as child:
                assert child.parent_id == "p"
                await child.turn("more").run()
            async with await host.session("p").open() as parent:
                report = parent.usage_report()["by_source"]
                return {source: row["input_tokens"] for source, row in report.items()}

    asyncio.run(first_turn())
    assert copy(src, dst).exit_code == 0
    forced = copy(src, dst, "--force")
    assert forced.exit_code == 0, forced.output
    assert asyncio.run(child_turn_then_parent_usage()) == {"turn": 11, "child:p/sub1": 12}
