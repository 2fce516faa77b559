"""Idle sessions: what 1,000 open sessions cost in memory, and what parked ones keep.

Run: ``.venv/bin/python benchmarks/bench_idle.py [--sessions 1000]``

Targets (issue 17), on ``sqlite://`` with bench_turns.py's composition (10 no-op plugins):

1. 1,000 open idle sessions, one turn each (7 nodes: the frame boundary and the turn's 6),
   <= 5 KiB each: the Python heap ``tracemalloc`` sees grow from before the first is opened
   to after the last turn, ``gc.collect()`` first, divided by their number. What the sessions
   hold, not SQLite's page cache (allocated by SQLite, per connection, not per session).
2. 1,000 idle sessions resumed (the parked ones of 3., each loaded from the file and not run
   since), <= 5 KiB each, measured as 1. (what the resume adds to the heap).
3. Parked sessions hold nothing: after ``park()`` of each, keeping only the handles it returns
   (the ``Session`` objects dropped, as a host that parks a session does), no graph node is in
   memory, no ``Session`` object is alive, and the heap holds <= 128 bytes per parked session
   beyond the handle the host keeps (a :class:`lash.ParkedSession`, its session id and its
   options overrides: ``sys.getsizeof`` of the three); the 128 bytes leave room for the slack
   of containers that grew while the sessions were open.

Before measuring, three sessions run a turn each, and one of them ~200 more (lazy converters,
tool specs, the connection, and the store's WAL checkpointer, made at its first checkpoint:
its thread and connection, ~20 KB; paid once per core or store, not per session). The
scripted provider records every request (a test aid): cleared before the figure. A resume of
a parked session is checked to reload its nodes. Exits 0 whatever the result: a benchmark, not
a test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_sqlite import memory_run, verdict

OPEN_TARGET = 5 * 1024
PARKED_TARGET = 128


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sessions", type=int, default=1000)
    args = parser.parse_args()
    print(f"bench_idle: python {sys.version.split()[0]}, {args.sessions} sessions")
    directory = tempfile.mkdtemp(prefix="lash-bench-idle-")
    try:
        out = asyncio.run(memory_run(directory, args.sessions, drop_sessions=True))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    per_open, per_parked = out["per_open"], out["per_parked"]
    print(
        f"\n   open idle session       {per_open / 1024:6.2f} KiB each ({out['nodes_open']} nodes)"
    )
    print(
        f"   parked session          {per_parked:6.0f} B each, handle included (handle "
        f"~{out['handle']:.0f} B); graph nodes {out['nodes_parked']}; Session objects "
        f"still alive {out['sessions_alive']}"
    )
    per_resumed = out["per_resumed"]
    print(f"   resumed idle session    {per_resumed / 1024:6.2f} KiB each")
    print(f"   resume reloads its nodes  {out['resume_ok']}")
    if out["parked_top"]:
        print("   what the parked sessions still hold (largest, by line):")
        for line in out["parked_top"]:
            print(f"     {line}")
    beyond = per_parked - out["handle"]
    parked_ok = (
        beyond <= PARKED_TARGET
        and out["nodes_parked"] == 0
        and out["sessions_alive"] == 0
        and out["resume_ok"]
    )
    print("\nRESULTS")
    print(
        f"   open idle session          {per_open / 1024:6.2f} KiB  <= {OPEN_TARGET // 1024} KiB  "
        f"{verdict(per_open <= OPEN_TARGET)}"
    )
    print(
        f"   resumed idle session       {per_resumed / 1024:6.2f} KiB  "
        f"<= {OPEN_TARGET // 1024} KiB  "
        f"{verdict(per_resumed <= OPEN_TARGET)}"
    )
    print(
        f"   parked, beyond the handle  {beyond:6.0f} B    <= {PARKED_TARGET} B   "
        f"{verdict(parked_ok)}"
    )


if __name__ == "__main__":
    main()
