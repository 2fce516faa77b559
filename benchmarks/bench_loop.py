"""lash's turn against the hand-written loop a team would write instead (issue 17).

Run: ``.venv/bin/python benchmarks/bench_loop.py [--repeats 21] [--turns 200] [--quick]
[--chunk 10] [--profile]``

Targets (issue 17, 200-turn sessions, 10 no-op plugins implementing the per-turn hooks):

- the durable turn on ``sqlite://`` <= 2.5x the loop's durable turn;
- the kernel on ``memory://`` (no I/O) <= 1.5x the loop's whole (durable) turn;

each as the median of per-repetition ratios.

For information, a fifth variant: lash's durable turn with the session held across its turns
(``async with session.hold():``, docs/mailbox.rst): its lease taken once, each turn one write
transaction, as the loop's; issue 17's target row is the turn on its own.

The loop is the fastest honest hand-written equivalent: plain functions, the history as a list
of dicts, ``await model(history)`` (a fake model returning the same scripted replies as lash's
provider: one tool call, then text), the tool called directly; durable, ``json.dumps`` of the
turn's 4 messages, one ``executemany`` of ``(session_id, seq, data)`` rows and ``commit``
through aiosqlite (two round trips to its thread; WAL, ``synchronous=NORMAL``, a primary key on
``(session_id, seq)``): the turn is durable when it returns, as lash's is. lash runs
``bench_turns.py``'s workload (its scripted-provider plugin, ``echo`` tool and 10 no-op plugins
implementing ``before_turn``, ``after_turn``, ``before_tool_call``, ``after_tool_call`` and
``turn_finalized``; every other builtin disabled); ``await session.turn(text).run()`` returns
once the turn is committed, with its lease claimed and released, its 6 nodes, its turn record
and its events (what the loop does not do is part of what the ratio charges to lash).

Method: ``bench_kernel_v2.py``'s. Each variant ({loop, lash} x {memory, sqlite}) runs in its
own long-lived worker process, this checkout's code. Every repetition opens a fresh session in
each (for ``sqlite://`` a fresh database file) and advances the four sessions ``--chunk`` turns
at a time in a rotating, alternating order until each has run ``--turns``; only one worker runs
at a time, so load hits every variant alike. Repetition 0 warms up and is dropped. Each turn is
timed in its worker (``time.perf_counter_ns``, garbage collector on, as in production); a
repetition's figure is the median of its turns; the table shows the median over repetitions;
the ratios are computed per repetition and the target is their median (every repetition's
ratio is printed too, and the process-CPU ratio for information: it leaves out time the worker
was preempted).

Exits 0 whatever the result: this is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile

from bench_kernel_v2 import ROOT, _loadavg, _spread, measure

TARGETS = (
    # (lash variant, loop variant, target, what)
    ("lash sqlite", "loop sqlite", 2.5, "durable turn on sqlite:// / the loop's durable turn"),
    ("lash memory", "loop sqlite", 1.5, "kernel on memory:// / the loop's whole durable turn"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=21, help="repetitions (default 21)")
    parser.add_argument("--turns", type=int, default=200, help="turns per session (default 200)")
    parser.add_argument("--quick", action="store_true", help="5 repetitions, a smoke run")
    parser.add_argument(
        "--chunk", type=int, default=10, help="turns a worker runs per turn of the rotation"
    )
    parser.add_argument("--profile", action="store_true", help="cProfile one lash session each")
    args = parser.parse_args()
    repeats = 5 if args.quick else max(args.repeats, 3)
    root = tempfile.mkdtemp(prefix="lash-bench-loop-")
    try:
        print(
            f"bench_loop: Python {platform.python_version()} {platform.machine()}, "
            f"{os.cpu_count()} CPUs, load average {_loadavg()}\n  lash: {ROOT}\n"
            f"  {repeats} repetitions x {args.turns} turns per variant, advanced {args.chunk} "
            "turns at a time in rotating order, one worker process each"
        )
        variants = [
            (f"{kind} {store}", kind, store, ROOT)
            for store in ("memory", "sqlite")
            for kind in ("loop", "lash")
        ]
        variants.append(("lash held", "lash", "held", ROOT))
        per, cpu, rows, elapsed, profiles = measure(
            variants, root, repeats, args.turns, args.chunk, profile=args.profile
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)

    med = statistics.median
    print(f"\n(ran {elapsed:.0f} s; load average now {_loadavg()})")
    print("\nper-turn time, ms: median over repetitions of each repetition's median turn")
    print(f"  {'':8s}{'memory://':>12s}{'sqlite://':>12s}   (mean process CPU per turn, ms)")
    for kind in ("loop", "lash"):
        m, s = f"{kind} memory", f"{kind} sqlite"
        print(
            f"  {kind:8s}{med(per[m]):12.4f}{med(per[s]):12.4f}   "
            f"({med(cpu[m]):.4f} / {med(cpu[s]):.4f})"
        )
    print(
        f"  lash held {'':9s}{med(per['lash held']):12.4f}   ({med(cpu['lash held']):.4f}): "
        "sqlite://, the turns in one hold (one transaction each)"
    )
    print(
        f"  rows per session: lash nodes {rows['lash sqlite']}, loop messages "
        f"{rows['loop sqlite']} (sqlite rows written)"
    )
    print("\nper-repetition ratios (median, min-max; then every repetition in order)")
    verdicts = []
    for a, b, target, what in TARGETS:
        wall = [x / y for x, y in zip(per[a], per[b], strict=True)]
        ok = med(wall) <= target
        verdicts.append(ok)
        processor = [x / y for x, y in zip(cpu[a], cpu[b], strict=True)]
        print(
            f"  {a}/{b}  {med(wall):6.2f}  ({_spread(wall)})   target <= {target}  "
            f"{'PASS' if ok else 'FAIL'}   {what}\n      {' '.join(f'{x:.2f}' for x in wall)}"
            f"\n      CPU per turn {med(processor):.2f} ({_spread(processor)})   info"
        )
    kernel = [x / y for x, y in zip(per["lash memory"], per["loop memory"], strict=True)]
    held = [x / y for x, y in zip(per["lash held"], per["loop sqlite"], strict=True)]
    print(
        f"  lash held/loop sqlite  {med(held):6.2f}  ({_spread(held)})   info: the durable turn "
        "in a hold (Session.hold: its lease taken once, one transaction a turn)\n"
        f"      {' '.join(f'{x:.2f}' for x in held)}"
    )
    print(
        f"  lash memory/loop memory  {med(kernel):6.1f}  ({_spread(kernel)})   info: the "
        "kernel against the loop without I/O"
    )
    print(
        "\nRESULT: "
        + ", ".join(
            f"{a} <= {target}x {b}: {'PASS' if ok else 'FAIL'}"
            for (a, b, target, _), ok in zip(TARGETS, verdicts, strict=True)
        )
    )
    for name, text in profiles.items():
        print(f"\n==== cProfile: {name}, one session of {args.turns} turns ====\n{text}")


if __name__ == "__main__":
    try:
        main()
    except Exception as exc:  # a benchmark reports, it never fails the caller
        print(f"\nbenchmark aborted: {type(exc).__name__}: {exc}", file=sys.stderr)
    sys.exit(0)
