"""A lash host run as a real subprocess by test_crash.py and test_concurrency.py.

Run as ``python crash_child.py MODE --db FILE --session ID ...``; it reports on stdout, one JSON
object per line, flushed at once, so a parent that SIGKILLs it knows exactly what it saw:

- ``crash``: wait for ``GO`` (or ``GO existing``) on stdin, then open or resume the session and
  run turns forever, reporting each just before its commit and again after ``run()`` returns.
- ``race``: wait for ``GO`` on stdin, then race the other racers: open (no wait), one turn, close,
  until this racer has committed enough and has also been refused at least once. A ``--victim``
  racer's first turn blocks in its tool (so the parent can freeze it) until a line on stdin.
- ``stall``: commit a setup turn, then run a turn whose tool blocks until a release file exists
  (the parent SIGSTOPs it there so its lease expires); report how that turn's commit ended, then
  reopen and commit one more turn.
- ``takeover``: open with a long wait, commit one turn, hold the lease until a line on stdin.
- ``enqueue``: after ``GO``, queue inputs keyed by its name (``core.enqueue``, no lease).
- ``drain``: after ``GO``, drain the session (one turn per input) until it stays empty a while.
- ``hold``: run one turn (its id is ``--name``) whose tool blocks until the turn is cancelled.

The parent side (:class:`Child`, :func:`verify_history`) lives here too, so both test modules
share one reading of the protocol and of what a complete turn looks like.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import queue
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

import lash
import lash.store

SCHEME = "sqlite"
KIT = "crashkit"
PROVIDER = "endless"


def store_url(db: str | os.PathLike[str]) -> str:
    """The store URL of the SQLite file ``db``; a URL (``postgresql://...``) as it is."""
    return str(db) if "://" in str(db) else f"{SCHEME}:///{db}"


# -- the plugins ---------------------------------------------------------------------------------


@attrs.define
class KitState:
    """Per-session state: turns seen by ``after_turn`` and tool calls run (one per turn)."""

    count: int = 0
    notes: int = 0
    last: str = ""


class Kit:
    """Declares :class:`KitState`, counts turns in it, and offers the ``note`` tool.

    ``pause(text)`` is awaited inside the tool, so a mode can make a turn slow or block it;
    ``finalized(index)`` is called just before each turn's commit.
    """

    lash_plugin = lash.PluginMeta(name=KIT, state=KitState)

    def __init__(
        self,
        pause: Callable[[str], Awaitable[None]] | None = None,
        finalized: Callable[[int], None] | None = None,
        persisted: Callable[[lash.TurnView, int], None] | None = None,
    ) -> None:
        self._pause = pause
        self._finalized = finalized
        self._persisted = persisted

    @lash.hookimpl
    def register_tools(self, register: lash.RegisterTool) -> None:
        pause = self._pause

        async def note(text: str, context: lash.ToolContext) -> str:
            """Record ``text`` in the session's state."""
            if pause is not None:
                await pause(text)
            state = context.state(KitState)
            state.notes += 1
            state.last = text
            return f"noted: {text}"

        register(lash.tool(note, timeout=600))

    @lash.hookimpl
    def after_turn(self, turn: lash.TurnView) -> None:
        turn.session.state(KitState).count += 1

    @lash.hookimpl
    def turn_finalized(self, turn: lash.TurnView) -> None:
        if self._finalized is not None:
            self._finalized(turn.index)

    @lash.hookimpl
    def turn_persisted(self, turn: lash.TurnView, revision: int) -> None:
        if self._persisted is not None:
            self._persisted(turn, revision)


class Endless:
    """A provider that never runs out: a user message gets a ``note`` call, a tool result the
    final answer. Its replies depend only on the prompt, so a restarted process plays on."""

    lash_plugin = lash.PluginMeta(name="endless")

    @lash.hookimpl
    def register_providers(self, register: lash.RegisterProvider) -> None:
        register(PROVIDER, self)

    async def stream(self, request: lash.ModelRequest) -> AsyncIterator[lash.ModelEvent]:
        last = request.messages[-1]
        user = [m.content for m in request.messages if m.role == "user"][-1]
        if last.role == "user":
            yield lash.TextDelta(f"noting {user}")
            call = lash.ToolCall(id=call_id(user), name="note", arguments={"text": user})
            yield lash.ToolCallReady(call)
            yield lash.ModelDone(usage=lash.Usage(1, 1), finish_reason="tool_calls")
        else:
            yield lash.TextDelta(answer(user))
            yield lash.ModelDone(usage=lash.Usage(1, 1), finish_reason="stop")


def call_id(text: str) -> str:
    """The id of the tool call the provider makes for user message ``text``."""
    return "call-" + text.replace(" ", "-")


def answer(text: str) -> str:
    """The provider's final answer to user message ``text``."""
    return f"done: {text}"


def build_core(
    db: str | os.PathLike[str],
    *,
    lease_ttl: float = 30.0,
    pause: Callable[[str], Awaitable[None]] | None = None,
    finalized: Callable[[int], None] | None = None,
    persisted: Callable[[lash.TurnView, int], None] | None = None,
    extra: Sequence[object] = (),
) -> lash.LashCore:
    """A core on the SQLite file (or store URL) ``db`` with the endless provider, the kit
    plugin and the ``extra`` plugins."""
    return lash.LashCore(
        plugins=["standard", "stores", Endless(), Kit(pause, finalized, persisted), *extra],
        autoload=False,
        disable=["scripted", "openai", "plan"],
        store=store_url(db),
        provider=PROVIDER,
        lease_ttl=lease_ttl,
        strict=True,
    )


# -- the child -----------------------------------------------------------------------------------


def emit(event: str, **fields: Any) -> None:
    """Report one event to the parent, flushed at once (the parent may SIGKILL right after)."""
    print(json.dumps({"event": event, **fields}), flush=True)


def check_result(result: lash.TurnResult, text: str) -> None:
    """Exit loudly unless the turn completed with the expected answer."""
    if result.outcome != "completed" or result.text != answer(text):
        emit("bad_turn", text=text, outcome=result.outcome, error=result.error, got=result.text)
        sys.exit(3)


async def crash(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)

    async def pause(text: str) -> None:
        # Turns of varying length, so kills land at ever different points of a turn.
        await asyncio.sleep(rng.uniform(0.0, 0.005))

    def finalized(index: int) -> None:
        emit("finalized", index=index)  # the commit starts now

    # The core is closed on every way out, or its aiosqlite thread would keep the process alive.
    async with build_core(args.db, lease_ttl=args.ttl, pause=pause, finalized=finalized) as core:
        # Started ahead of time: wait for the parent to say go, and whether the session exists.
        go = sys.stdin.readline().split()
        if not go or go[0] != "GO":
            sys.exit(4)
        session = core.session(args.session)
        await session.open(must_exist=go[1:] == ["existing"], wait=args.wait)
        state = session.state(KitState)
        emit("ready", revision=session.revision, turns=session.turns, count=state.count)
        while True:
            text = f"crash turn {session.turns + 1}"
            result = await session.turn(text).run()
            emit("committed", index=result.index, revision=result.revision, text=text)
            check_result(result, text)


async def race(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)

    first = f"race {args.name} attempt 1"

    async def pause(text: str) -> None:
        if args.victim and text == first:
            # The victim's first turn: the parent freezes it here, lets a racer take the
            # session over, thaws it, then sends a line to let the turn go on to its commit.
            emit("in_tool", text=text)
            await asyncio.to_thread(sys.stdin.readline)
        else:
            # Hold the lease a little, so the other racers find it taken.
            await asyncio.sleep(rng.uniform(0.0, 0.02))

    async with build_core(args.db, lease_ttl=args.ttl, pause=pause) as core:
        await core.store.load(args.session)  # open the database before the race starts
        emit("ready")
        if sys.stdin.readline().strip() != "GO":
            sys.exit(4)
        committed = refused = 0
        for attempt in range(1, args.attempts + 1):
            # A racer left alone once the others are done sees no contention: cap its commits.
            if committed >= args.commits and (refused >= 1 or committed >= 4 * args.commits):
                break
            text = f"race {args.name} attempt {attempt}"
            session = core.session(args.session)
            try:
                # The victim, alone when it starts, may wait for a setup lease to be released;
                # a racer with --wait waits that long for the lease, the others are refused.
                wait = 60 if args.victim and attempt == 1 else args.wait
                await session.open(must_exist=True, wait=wait)
            except lash.SessionBusy:
                refused += 1
                emit("busy", attempt=attempt, text=text)
                await asyncio.sleep(rng.uniform(0.0, 0.01))
                continue
            try:
                # Opening takes no lease: the turn claims it, and with wait=0 a racer that finds
                # it held is refused at once.
                result = await session.turn(text).run()
            except lash.SessionBusy:
                refused += 1
                emit("busy", attempt=attempt, text=text)
            except lash.LeaseLost as exc:
                refused += 1
                emit("lost", attempt=attempt, text=text, error=str(exc))
            except lash.RevisionConflict as exc:
                emit("conflict", attempt=attempt, text=text, error=str(exc))
            else:
                committed += 1
                emit("committed", attempt=attempt, text=text, revision=result.revision)
                check_result(result, text)
            finally:
                await session.close()
            # Step back a moment, so the releasing racer has no head start on the next lease.
            await asyncio.sleep(rng.uniform(0.0, 0.01))
        emit("done", committed=committed, refused=refused)


#: The turns of the ``stall`` and ``takeover`` modes, in the order they should be committed.
SETUP = "writer A setup"
STALLED = "writer A stalled"
TAKEOVER = "writer B takeover"
AGAIN = "writer A again"


async def stall(args: argparse.Namespace) -> None:
    release = Path(args.release_file)

    async def pause(text: str) -> None:
        if text == STALLED:
            emit("in_tool", text=text)
            while not release.exists():
                await asyncio.sleep(0.01)

    async with build_core(args.db, lease_ttl=args.ttl, pause=pause) as core:
        session = await core.session(args.session).open()
        result = await session.turn(SETUP).run()
        check_result(result, SETUP)
        emit("committed", text=SETUP, revision=result.revision)
        try:
            result = await session.turn(STALLED).run()
        except lash.LeaseLost as exc:
            emit("lost", text=STALLED, error=str(exc))
        else:
            emit("committed", text=STALLED, revision=result.revision)
        await session.close()
        session = core.session(args.session)
        await session.open(must_exist=True, wait=args.wait)
        emit("reopened", revision=session.revision, turns=session.turns)
        result = await session.turn(AGAIN).run()
        check_result(result, AGAIN)
        emit("committed", text=AGAIN, revision=result.revision)
        await session.close()


async def takeover(args: argparse.Namespace) -> None:
    async with build_core(args.db, lease_ttl=args.ttl) as core:
        session = await core.session(args.session).open(must_exist=True, wait=args.wait)
        result = await session.turn(TAKEOVER).run()
        check_result(result, TAKEOVER)
        emit("committed", text=TAKEOVER, revision=result.revision)
        await asyncio.to_thread(sys.stdin.readline)  # hold the lease until the parent says so
        await session.close()
    emit("closed")


async def enqueue(args: argparse.Namespace) -> None:
    """Queue ``--commits`` inputs (keyed by this child's name), reporting each once queued."""
    rng = random.Random(args.seed)
    async with build_core(args.db) as core:
        emit("ready")
        if sys.stdin.readline().strip() != "GO":
            sys.exit(4)
        for number in range(args.commits):
            text = f"{args.name} input {number}"
            queued = await core.enqueue(args.session, text, key=f"{args.name}-{number}")
            emit("queued", text=text, id=queued.id)
            await asyncio.sleep(rng.uniform(0.0, 0.01))
        emit("done")


async def drain(args: argparse.Namespace) -> None:
    """Drain the session until it has had no queued input for ``--wait`` seconds, reporting
    each committed turn (the parent may SIGKILL it at any moment)."""
    rng = random.Random(args.seed)

    async def pause(text: str) -> None:
        await asyncio.sleep(rng.uniform(0.0, 0.005))  # kills land at ever different points

    async with build_core(args.db, lease_ttl=args.ttl, pause=pause) as core:
        emit("ready")
        if sys.stdin.readline().strip() != "GO":
            sys.exit(4)
        session = await core.session(args.session).open()
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < args.wait:
            results = await session.drain()
            for result in results:
                # The answer names the input it answers (the history check verifies it).
                text = result.text.removeprefix(answer(""))
                emit("committed", text=text, turn_id=result.turn_id, revision=result.revision)
                check_result(result, text)
            if results:
                idle_since = time.monotonic()
            else:
                await asyncio.sleep(0.01)
        emit("done")


async def hold(args: argparse.Namespace) -> None:
    """Run turn ``--name`` (its id too) whose tool blocks until the turn is cancelled; report
    how it ended."""

    async def pause(text: str) -> None:
        emit("in_tool", text=text)
        await asyncio.Event().wait()  # until cancelled (or killed)

    async with build_core(args.db, lease_ttl=args.ttl, pause=pause) as core:
        session = await core.session(args.session).open()
        result = await session.turn(args.name, id=args.name).run()
        emit(
            "finished",
            outcome=result.outcome,
            reason=result.reason,
            cancelled_by=result.cancelled_by,
            cancel_reason=result.cancel_reason,
            revision=result.revision,
        )


async def worker(args: argparse.Namespace) -> None:
    """Run ``core.run_worker`` (what ``lash worker`` runs) with the ``crashjobs`` process kinds
    (tests/worker_jobs.py, logging to ``$CRASH_DIR``) until killed. Each committed turn is
    appended to ``$CRASH_DIR/committed.log`` (``pid session revision input``) once the store
    has it, so the parent knows which commits a worker saw succeed before it was killed; each
    turn's tool call is appended to ``tools.log`` (``pid input``)."""
    import worker_jobs

    rng = random.Random(args.seed)

    async def pause(text: str) -> None:
        # In the tool, mid-turn: logged, so the parent can tell the turns a kill interrupted.
        worker_jobs.append("tools.log", json.dumps([os.getpid(), text]))
        await asyncio.sleep(rng.uniform(0.05, 0.2))  # long enough for kills to land mid-turn

    def persisted(turn: lash.TurnView, revision: int) -> None:
        line = json.dumps([os.getpid(), turn.session.id, revision, turn.input])
        worker_jobs.append("committed.log", line)

    async with build_core(
        args.db, lease_ttl=args.ttl, pause=pause, persisted=persisted, extra=[worker_jobs]
    ) as core:
        await core.store.runnable_sessions(limit=1)  # connected: the parent may count on it
        emit("ready")
        await core.run_worker(concurrency=args.commits, lease_ttl=args.ttl, poll=args.wait)


MODES = {
    "worker": worker,
    "crash": crash,
    "race": race,
    "stall": stall,
    "takeover": takeover,
    "enqueue": enqueue,
    "drain": drain,
    "hold": hold,
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=sorted(MODES))
    parser.add_argument("--db", required=True)
    parser.add_argument("--session", required=True)
    parser.add_argument("--ttl", type=float, default=30.0)
    parser.add_argument("--wait", type=float, default=0.0)
    parser.add_argument("--name", default="")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--attempts", type=int, default=100_000)
    parser.add_argument("--commits", type=int, default=3)
    parser.add_argument("--release-file", default="")
    parser.add_argument("--victim", action="store_true")
    args = parser.parse_args()
    asyncio.run(MODES[args.mode](args))


# -- the parent side -----------------------------------------------------------------------------


class Child:
    """A running ``crash_child.py``: its JSON events arrive on a queue, read by a thread."""

    def __init__(self, mode: str, *args: str, stderr: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LASH_")}
        self.stderr_path = stderr
        self._stderr = stderr.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, __file__, mode, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
            text=True,
        )
        self.events: list[dict[str, Any]] = []
        self._finished = False
        self._eof = False
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(json.loads(line))
        self._queue.put(None)

    def next_event(self, timeout: float) -> dict[str, Any] | None:
        """The next event (``None`` at end of output); waits up to ``timeout`` seconds."""
        if self._eof:
            return None
        try:
            event = self._queue.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                f"no event from the child within {timeout} s; stderr:\n{self.stderr()}"
            ) from None
        if event is None:
            self._eof = True
        else:
            self.events.append(event)
        return event

    def pump(self, timeout: float) -> None:
        """Collect into :attr:`events` whatever arrives within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not self._eof:
            try:
                event = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return
            if event is None:
                self._eof = True
            else:
                self.events.append(event)

    def expect(self, event: str, timeout: float = 60.0) -> dict[str, Any]:
        """Wait for the next event and check that it is ``event``."""
        got = self.next_event(timeout)
        if got is None or got["event"] != event:
            raise AssertionError(f"expected {event!r}, got {got!r}; stderr:\n{self.stderr()}")
        return got

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def signal(self, signum: signal.Signals) -> None:
        self.proc.send_signal(signum)

    def finish(self, timeout: float = 60.0) -> int:
        """Wait for the child to exit, drain its output, close its pipes; its exit code."""
        code = self.proc.wait(timeout)
        if self._finished:
            return code
        self._finished = True
        deadline = time.monotonic() + timeout
        while self.next_event(max(0.1, deadline - time.monotonic())) is not None:
            pass
        self._reader.join(timeout)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()
        self._stderr.close()
        return code

    def kill(self) -> None:
        """SIGKILL the child (if it still runs, even stopped) and reap it."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.finish()

    def stop(self) -> None:
        """SIGSTOP the child and wait until the kernel reports it stopped."""
        self.proc.send_signal(signal.SIGSTOP)
        stat = Path(f"/proc/{self.proc.pid}/stat")
        deadline = time.monotonic() + 60
        # The state letter follows the parenthesised command name.
        while stat.read_text().rpartition(")")[2].split()[0] not in ("T", "t"):
            assert time.monotonic() < deadline, "the child did not stop"
            time.sleep(0.001)

    def stderr(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")[-4000:]

    def of(self, event: str) -> list[dict[str, Any]]:
        """The events of kind ``event`` received so far."""
        return [e for e in self.events if e["event"] == event]


def verify_history(record: lash.store.SessionRecord) -> list[str]:
    """Check that every turn of ``record`` (loaded with ``full=True``) is complete and in order;
    return the user message of each turn (index 0 is turn 1).

    A turn is exactly: user message, assistant asking for ``note``, the call, its result, the
    final answer, the turn's outcome (completed); turn 1 starts with the root frame boundary.
    Nodes form one parent chain.
    """
    nodes = list(record.nodes)
    assert nodes, "the session has no nodes"
    ids = [n.id for n in nodes]
    assert len(set(ids)) == len(ids), "duplicate node ids"
    assert nodes[0].parent_id is None
    for prev, node in itertools.pairwise(nodes):
        assert node.parent_id == prev.id, f"node {node.id} does not follow {prev.id}"
    assert isinstance(nodes[0], lash.FrameBoundary) and nodes[0].turn == 1
    body = nodes[1:]
    texts: list[str] = []
    for start in range(0, len(body), 6):
        turn = start // 6 + 1
        group = body[start : start + 6]
        kinds = [type(n).__name__ for n in group]
        assert kinds == [
            "UserMessage",
            "AssistantMessage",
            "ToolCallNode",
            "ToolResultNode",
            "AssistantMessage",
            "TurnOutcome",
        ], f"turn {turn} is incomplete or out of shape: {kinds}"
        user, ask, call, result, final, outcome = group
        assert [n.turn for n in group] == [turn] * 6, f"turn {turn}: wrong turn numbers"
        assert outcome.outcome == "completed", f"turn {turn} ended {outcome.outcome}"
        assert len(ask.tool_calls) == 1 and ask.tool_calls[0].id == call_id(user.text)
        assert call.call == ask.tool_calls[0]
        assert result.call_id == call.call.id and not result.is_error
        assert result.content == f"noted: {user.text}"
        assert not final.tool_calls and final.text == answer(user.text)
        texts.append(user.text)
    turns = len(texts)
    assert record.turns == turns, f"turns counter {record.turns} != {turns} turn records"
    assert record.revision == turns, f"head revision {record.revision} != {turns} turns"
    state: Mapping[str, Any] = record.plugin_states[KIT]
    assert state["count"] == turns, f"state counted {state['count']} turns, history has {turns}"
    assert state["notes"] == turns, f"state counted {state['notes']} notes, history has {turns}"
    assert state["last"] == texts[-1]
    return texts


def verify_tables(db: str | os.PathLike[str], session_id: str, turns: int) -> None:
    """Check the SQLite file itself (with every writer dead or idle): ``PRAGMA integrity_check``,
    node seqs contiguous from 0, and one usage-ledger row per revision 1..``turns``.

    This reads the sqlite backend's private tables (``_sqlite_schema``): the invariants are
    about what is on disk, which the public API cannot show.
    """
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        # A row at seq s of n nodes holds the nodes s to s + n - 1.
        query = "SELECT seq, node_count FROM nodes WHERE session_id = ? ORDER BY seq"
        rows = conn.execute(query, (session_id,)).fetchall()
        seqs = [seq + i for seq, count in rows for i in range(count)]
        assert seqs == list(range(len(seqs))), "node seqs are not contiguous"
        query = "SELECT revision, turns, next_seq FROM sessions WHERE session_id = ?"
        assert conn.execute(query, (session_id,)).fetchone() == (turns, turns, len(seqs))
        query = """SELECT turn, SUM(node_count) FROM nodes WHERE session_id = ? GROUP BY turn
            ORDER BY turn"""
        sizes = conn.execute(query, (session_id,)).fetchall()
        assert sizes == [(turn, 7 if turn == 1 else 6) for turn in range(1, turns + 1)]
        query = "SELECT revision FROM usage_ledger WHERE session_id = ? ORDER BY revision"
        revisions = [row[0] for row in conn.execute(query, (session_id,))]
        assert revisions == list(range(1, turns + 1)), "commit revisions are not 1..N"
    finally:
        conn.close()


if __name__ == "__main__":
    main()
