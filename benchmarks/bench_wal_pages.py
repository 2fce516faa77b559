"""Which SQLite pages a durable turn writes: WAL pages per transaction, per b-tree (issue 17).

Run: ``.venv/bin/python benchmarks/bench_wal_pages.py [--warm 300] [--turns 100]
[--sessions 1]``

``bench_turns.py``'s workload on ``sqlite://`` (a fresh file): ``--warm`` turns first, so the
b-trees have the depth of a session in use, then ``--turns`` measured turns. With
``--sessions N``, N sessions of one store take their turns round-robin (one turn of each in
turn, as ``bench_concurrent.py``'s sessions interleave, but one at a time so that each turn's
pages can be told apart): ``--warm`` turns of each first, then ``--turns`` measured turns in
all, so every b-tree keyed by session receives each turn's rows in one of N places. Before each
measured turn the WAL is checkpointed and truncated (from a connection of this script's own);
after it the WAL's frames are read (each frame header names its page; a commit frame ends a
transaction) and every page is named by ``dbstat``: the table or index whose b-tree holds it,
with ``(overflow)`` for overflow pages and ``(free)`` for a page on the freelist. A turn's
transactions are the lease acquisition and the commit (in that order; any other write
transaction is shown by its number).

Prints the mean number of pages per transaction and b-tree, and the total per turn. Counting,
not timing: the figures do not depend on the machine's load. Exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import sqlite3
import struct
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

#: The names of a turn's write transactions, in order.
TRANSACTIONS = ("lease", "commit")


def wal_transactions(path: str) -> list[list[int]]:
    """The page numbers written by each transaction in the WAL at ``path`` (frames whose salts
    match the header's: a WAL restarted without truncation keeps stale frames after them)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    if len(data) < 32:
        return []
    page_size = struct.unpack(">I", data[8:12])[0]
    salts = data[16:24]
    frame = 24 + page_size
    done: list[list[int]] = []
    current: list[int] = []
    for at in range(32, len(data) - frame + 1, frame):
        pgno, commit = struct.unpack(">II", data[at : at + 8])
        if data[at + 8 : at + 16] != salts:
            break
        current.append(pgno)
        if commit:
            done.append(current)
            current = []
    return done


async def truncate_wal(conn: sqlite3.Connection) -> None:
    """Checkpoint the WAL and truncate it, waiting while the store's own checkpoint (on its
    thread, every few hundred writes) keeps it busy: a truncation that failed left the frames
    of several turns in the WAL, each such turn's transactions counted as "other" (hundreds of
    them in a run of 100 sessions)."""
    for _ in range(1000):
        (busy, _, _), *_ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        if not busy:
            return
        await asyncio.sleep(0.001)


def page_names(conn: sqlite3.Connection) -> dict[int, str]:
    """Page number -> the b-tree holding it (``dbstat``), ``(free)`` for freelist pages."""
    names = {}
    for name, pageno, pagetype in conn.execute("SELECT name, pageno, pagetype FROM dbstat"):
        names[int(pageno)] = f"{name} (overflow)" if pagetype == "overflow" else str(name)
    return names


async def run(warm: int, turns: int, sessions: int, directory: str) -> None:
    from bench_turns import make_core

    path = os.path.join(directory, "pages.db")
    core = make_core(f"sqlite:///{path}", warm * sessions + turns)
    opened = [await core.session(f"bench{k}" if k else "bench").open() for k in range(sessions)]
    for i in range(warm):
        for session in opened:
            await session.turn(f"turn {i}").run()
    spy = sqlite3.connect(path, isolation_level=None)
    per: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    counts: collections.Counter[str] = collections.Counter()
    totals: list[int] = []
    for i in range(turns):
        session = opened[i % sessions]
        await truncate_wal(spy)
        await session.turn(f"turn {warm + i // sessions}").run()
        names = page_names(spy)
        txns = wal_transactions(path + "-wal")
        totals.append(sum(len(t) for t in txns))
        for n, pages in enumerate(txns):
            # A turn whose WAL holds more (or fewer) transactions (the store's own checkpoint
            # restarted the WAL meanwhile, or a third write): its transactions are "other".
            label = TRANSACTIONS[n] if len(txns) == len(TRANSACTIONS) else "other"
            counts[label] += 1
            for page in pages:
                per[label][names.get(page, "(free)")] += 1
    spy.close()
    for session in opened:
        await session.close()
    await core.aclose()
    print(
        f"bench_wal_pages: SQLite {sqlite3.sqlite_version}, {sessions} session(s) round-robin, "
        f"{warm} turns of each before, {turns} measured; WAL pages per turn, mean per "
        "transaction and b-tree"
    )
    for label, counter in per.items():
        n = counts[label]
        of = f"{n} of {turns} turns" if label in TRANSACTIONS else f"{n} transactions"
        print(f"  {label} ({of}): {sum(counter.values()) / n:.2f} pages")
        for name, written in counter.most_common():
            print(f"    {name:32s}{written / n:6.2f}")
    mean = sum(totals) / len(totals)
    print(f"  per turn: {mean:.2f} pages (min {min(totals)}, max {max(totals)})")
    usual = sum(sum(per[label].values()) / counts[label] for label in TRANSACTIONS if counts[label])
    print(f"  per turn of {len(TRANSACTIONS)} transactions (the sum of their means): {usual:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--warm", type=int, default=300, help="turns of each session before (default 300)"
    )
    parser.add_argument("--turns", type=int, default=100, help="turns measured (default 100)")
    parser.add_argument(
        "--sessions", type=int, default=1, help="sessions taking turns round-robin (default 1)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lash-bench-pages-") as directory:
        asyncio.run(run(args.warm, args.turns, args.sessions, directory))


if __name__ == "__main__":
    main()
