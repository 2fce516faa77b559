"""``lash serve`` under load: many SSE clients on one session while many sessions run turns.

Run: ``.venv/bin/python benchmarks/bench_serve.py [--clients 200] [--sessions 50] [--turns 4]
[--hot-turns 10] [--quick]``

One real ``lash serve`` process (SQLite store, the scripted model streaming each answer in
10-character chunks after one ``shout`` tool call) serves, at once:

* ``--clients`` SSE clients (``GET /sessions/hot/events?after=e0``) on one session, ``hot``,
  where ``--hot-turns`` turns run one after another (``POST /turns?wait=true``);
* ``--sessions`` other sessions, each running ``--turns`` turns one after another, all
  sessions concurrently, each watched by one SSE client of its own.

When every turn is committed, each session gets one last queued input (``__end__``) and every
client reads until it sees it. Checked, per client: the committed events it received are the
session's whole log, in order (cursors ``e1, e2, ...`` with none missing, repeated or out of
order) and it got no gap. Reported: the server's resident memory (``VmRSS``) idle, at its
peak (``VmHWM``) and after the clients left; the delivery latency of committed events (from
the event's ``at``, stamped by the server when the commit is logged, to the client reading it:
one machine, one clock), p50 / p99 / max over every delivery; and the live text deltas
delivered to ``hot``'s clients (counted, not parsed). The clients run in this one process, so
on a small machine their reading is part of the latency. Exits 0 whatever the result: a
benchmark, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))

from _serve import (  # type: ignore[import-not-found]  # noqa: E402  (the tests' helpers)
    Server,
    write_config,
)

ANSWER = "The answer, streamed in chunks of ten characters, " * 2


def rss(pid: int) -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` of a process, in KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


class Client:
    """One SSE client: what it received, in order."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.committed: list[int] = []
        self.latencies: list[float] = []
        self.live = 0
        self.gaps = 0
        self.subscribed = asyncio.Event()

    async def follow(self, http: httpx.AsyncClient) -> None:
        url = f"/sessions/{self.session_id}/events?after=e0"
        async with http.stream("GET", url) as response:
            assert response.status_code == 200
            async for line in response.aiter_lines():
                if line.startswith("retry:"):
                    self.subscribed.set()
                if not line.startswith("data:"):
                    continue
                received = time.time()
                if '"live":true' in line:  # (the server's compact JSON) not parsed: cheaper
                    self.live += 1
                    continue
                event = json.loads(line[5:])
                if event["type"] == "gap":
                    self.gaps += 1
                    continue
                self.committed.append(int(event["cursor"][1:]))
                self.latencies.append(received - event["at"])
                if event["type"] == "input_queued" and event["data"]["input"]["text"] == "__end__":
                    return

    def in_order(self, last: int) -> bool:
        return self.gaps == 0 and self.committed == list(range(1, last + 1))


async def run_turns(http: httpx.AsyncClient, session_id: str, turns: int) -> None:
    for n in range(turns):
        reply = await http.post(
            f"/sessions/{session_id}/turns?wait=true", json={"text": f"question {n}"}
        )
        assert reply.status_code == 200, reply.text
        assert reply.json()["turn"]["outcome"] == "completed", reply.text


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def bench(server: Server, args: argparse.Namespace) -> None:
    pid = server.proc.pid
    idle = rss(pid)
    limits = httpx.Limits(max_connections=args.clients + args.sessions + 50)
    timeout = httpx.Timeout(300.0)
    async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=timeout) as http:
        # Every session exists (one queued input each) before its clients connect.
        sessions = [f"s{n}" for n in range(args.sessions)]
        for session_id in ["hot", *sessions]:
            reply = await http.post(f"/sessions/{session_id}/inputs", json={"text": "hello"})
            assert reply.status_code == 201
        clients = [Client("hot") for _ in range(args.clients)]
        clients += [Client(session_id) for session_id in sessions]
        following = [asyncio.ensure_future(c.follow(http)) for c in clients]
        await asyncio.wait_for(asyncio.gather(*(c.subscribed.wait() for c in clients)), 120)
        connected = rss(pid)
        started = time.perf_counter()
        await asyncio.gather(
            run_turns(http, "hot", args.hot_turns),
            *(run_turns(http, s, args.turns) for s in sessions),
        )
        elapsed = time.perf_counter() - started
        lasts = {}
        for session_id in ["hot", *sessions]:
            await http.post(f"/sessions/{session_id}/inputs", json={"text": "__end__"})
            view = (await http.get(f"/sessions/{session_id}")).json()
            lasts[session_id] = int(view["cursor"][1:])
        await asyncio.wait_for(asyncio.gather(*following), 300)
        peak = rss(pid)
    await asyncio.sleep(1.0)
    after = rss(pid)

    hot = [c for c in clients if c.session_id == "hot"]
    ordered = sum(c.in_order(lasts[c.session_id]) for c in clients)
    latencies = [x for c in clients for x in c.latencies]
    hot_latencies = [x for c in hot for x in c.latencies]
    turns = args.hot_turns + args.sessions * args.turns
    print(f"lash serve: {args.clients} SSE clients on one session, {args.sessions} sessions")
    print(f"  (load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs)")
    print(f"turns committed: {turns} in {elapsed:.1f} s ({turns / elapsed:.1f} turns/s)")
    others = f"; others: {lasts['s0']} each" if sessions else ""
    print(f"hot session: {lasts['hot']} committed events{others}")
    print(
        f"clients that received every committed event in order: {ordered} / {len(clients)}"
        f"  {'PASS' if ordered == len(clients) else 'FAIL'}"
    )
    print(f"live text/tool events delivered to hot's clients: {sum(c.live for c in hot)}")
    print(
        "delivery latency of committed events (ms): "
        f"p50 {1000 * statistics.median(latencies):.1f}  p99 {1000 * pct(latencies, 0.99):.1f}  "
        f"max {1000 * max(latencies):.1f}  over {len(latencies)} deliveries"
    )
    print(
        "  hot session only (ms): "
        f"p50 {1000 * statistics.median(hot_latencies):.1f}  "
        f"p99 {1000 * pct(hot_latencies, 0.99):.1f}"
    )
    print(
        f"server RSS (MiB): idle {idle['VmRSS'] / 1024:.1f}, with clients connected "
        f"{connected['VmRSS'] / 1024:.1f}, peak {peak['VmHWM'] / 1024:.1f}, after the clients "
        f"left {after['VmRSS'] / 1024:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--hot-turns", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="20 clients, 5 sessions, 2 turns")
    args = parser.parse_args()
    if args.quick:
        args.clients, args.sessions, args.turns, args.hot_turns = 20, 5, 2, 3
    turns = args.hot_turns + args.sessions * args.turns
    response = [
        {"tool_calls": [{"name": "shout", "arguments": {"text": "hi"}}]},
        {"text": ANSWER, "chunk_size": 10},
    ]
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        root = Path(tmp)
        site = write_config(root, response * turns)
        server = Server(root, site)
        try:
            asyncio.run(bench(server, args))
        except BaseException:
            print(f"the server's stderr:\n{server.stderr()[-4000:]}", file=sys.stderr)
            raise
        finally:
            server.stop()


if __name__ == "__main__":
    main()
