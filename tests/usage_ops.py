"""Run a sequence of usage operations on a store and print what its API (and, for a SQLite
file, its ``usage_ledger``) gives after each ``observe``: a helper of test_sqlite_usage_review.py,
run in a subprocess so that another lash's code (an older commit's, exported from git) can run
the same operations on the same kind of file.

Usage: ``python usage_ops.py CODE_ROOT|- memory|sqlite|sqlite-trigger DB OPS_JSON`` (CODE_ROOT:
a directory holding ``lash`` and ``lash_plugins_builtin`` to import instead of the installed
ones; ``-`` for the installed ones).

Operations (JSON objects): ``{"op": "commit", "sid", "usage": {source: [i, o, c]}, "turn":
turn id or null, "outcome", "replace", "parent": id or null, "rollup": {session: {source:
[i, o, c]}}}``, ``{"op": "delete", "sid"}``, ``{"op": "observe", "sids": [...]}``."""

from __future__ import annotations

import sys

if __name__ == "__main__" and sys.argv[1] != "-":
    # Import the other lash: drop the editable install's finder, put its root first.
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
    sys.path.insert(0, sys.argv[1])

import asyncio
import json
import sqlite3
from typing import Any


async def run(kind: str, db: str, ops: Any, reply: Any = None) -> list[Any]:
    import lash
    import lash.store

    store: Any
    if kind == "memory":
        store = lash.store.MemoryStore()
    else:
        from lash_plugins_builtin.sqlite import SQLiteStore

        store = SQLiteStore(f"sqlite:///{db}")
        if kind == "sqlite-trigger":
            store._inline = False
    out: list[Any] = []
    try:
        for op in ops:
            if op["op"] == "commit":
                sid = op["sid"]
                lease = await store.acquire_lease(sid, "w", ttl=30)
                turn = (
                    None
                    if op.get("turn") is None
                    else lash.store.TurnRecord(
                        sid, op["turn"], op.get("index", 0), op.get("outcome", "completed"), 0
                    )
                )
                delta = lash.store.CommitDelta(
                    usage={s: lash.Usage(*u) for s, u in op.get("usage", {}).items()},
                    turns=1 if turn is not None else 0,
                    replace=op.get("replace", False),
                    turn=turn,
                    parent_id=op.get("parent"),
                    rollup={
                        a: {s: lash.Usage(*u) for s, u in us.items()}
                        for a, us in op.get("rollup", {}).items()
                    },
                    release=True,
                )
                try:
                    await store.commit(
                        sid, lease=lease, expected_revision=lease.revision, delta=delta
                    )
                    out.append(["ok"])
                except Exception as exc:  # what each lash refuses is compared too
                    out.append(["error", type(exc).__name__])
                    await store.release_lease(lease)
            elif op["op"] == "delete":
                try:
                    await store.delete(op["sid"])
                    out.append(["deleted"])
                except lash.UnknownSession:
                    out.append(["unknown"])
            elif op["op"] == "observe":
                loads: dict[str, Any] = {}
                for sid in op["sids"]:
                    try:
                        record = await store.load(sid)
                    except Exception as exc:
                        loads[sid] = ["error", str(exc).split(": ", 1)[-1]]
                        continue
                    loads[sid] = (
                        None
                        if record is None
                        else {
                            s: [u.input_tokens, u.output_tokens, u.cached_tokens]
                            for s, u in record.usage.items()
                        }
                    )
                listed: Any
                try:
                    listed = {
                        s.session_id: [
                            s.usage.input_tokens,
                            s.usage.output_tokens,
                            s.usage.cached_tokens,
                        ]
                        for s in await store.list_sessions()
                    }
                except Exception as exc:
                    listed = ["error", str(exc).split(": ", 1)[-1]]
                ledger = None
                if kind != "memory":
                    conn = sqlite3.connect(db)
                    ledger = conn.execute(
                        "SELECT session_id, revision, source, input_tokens, output_tokens, "
                        "cached_tokens FROM usage_ledger ORDER BY session_id, revision, source"
                    ).fetchall()
                    conn.close()
                out.append({"load": loads, "list": listed, "ledger": ledger})
            if reply is not None:
                reply(out[-1] if out else None)
    finally:
        if kind != "memory":
            await store.close()
    return out


def _lines() -> Any:
    for line in sys.stdin:
        yield json.loads(line)


def _reply(value: Any) -> None:
    print(json.dumps(value), flush=True)


if __name__ == "__main__":
    if sys.argv[4] == "-":  # one operation a line on stdin, one answer a line on stdout
        asyncio.run(run(sys.argv[2], sys.argv[3], _lines(), _reply))
    else:
        result = asyncio.run(run(sys.argv[2], sys.argv[3], json.loads(sys.argv[4])))
        print(json.dumps(result))
