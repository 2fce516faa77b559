"""What a SQLite ``COMMIT`` costs per WAL page it writes, on this machine (issue 17's durable turn).

Run: ``.venv/bin/python benchmarks/bench_page_cost.py [--repeats 3000] [--page-size 4096]``

The ``sqlite3`` module alone, on a fresh WAL file (``synchronous=NORMAL``, no automatic
checkpoint; the WAL truncated every 500 transactions): transactions that each update one row in
each of N one-row tables, so that each writes N pages, for N = 1, 2, 4, 6, 8, 11. Prints the
median of the whole transaction and of its ``COMMIT`` alone. The slope is what each page of a
turn's commit costs (``bench_wal_pages.py`` counts them). Exits 0.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import tempfile
import time

PAGES = (1, 2, 4, 6, 8, 11)


def measure(conn: sqlite3.Connection, pages: int, repeats: int) -> tuple[float, float]:
    """Median µs of a transaction writing ``pages`` pages, and of its ``COMMIT``."""
    whole, commit = [], []
    for i in range(repeats):
        t0 = time.perf_counter_ns()
        conn.execute("BEGIN IMMEDIATE")
        for k in range(pages):
            conn.execute(f"UPDATE t{k} SET v = ? WHERE id = 1", (str(i),))
        t1 = time.perf_counter_ns()
        conn.execute("COMMIT")
        t2 = time.perf_counter_ns()
        whole.append(t2 - t0)
        commit.append(t2 - t1)
        if i % 500 == 499:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return statistics.median(whole) / 1000, statistics.median(commit) / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3000, help="transactions of each size")
    parser.add_argument("--page-size", type=int, default=4096, help="the file's page size")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lash-bench-page-") as directory:
        conn = sqlite3.connect(os.path.join(directory, "pages.db"), isolation_level=None)
        conn.execute(f"PRAGMA page_size = {args.page_size}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        for k in range(max(PAGES)):
            conn.execute(f"CREATE TABLE t{k} (id INTEGER PRIMARY KEY, v TEXT)")
            conn.execute(f"INSERT INTO t{k} VALUES (1, 'x')")
        print(
            f"bench_page_cost: SQLite {sqlite3.sqlite_version}, page size {args.page_size}, "
            f"{args.repeats} transactions of each size, medians"
        )
        figures = {n: measure(conn, n, args.repeats) for n in PAGES}
        conn.close()
    for n, (whole, commit) in figures.items():
        print(f"  {n:2d} pages: transaction {whole:6.1f} µs, COMMIT {commit:6.1f} µs")
    (w1, c1), (wn, cn) = figures[PAGES[0]], figures[PAGES[-1]]
    span = PAGES[-1] - PAGES[0]
    print(f"  per page: COMMIT {(cn - c1) / span:.1f} µs, transaction {(wn - w1) / span:.1f} µs")


if __name__ == "__main__":
    main()
