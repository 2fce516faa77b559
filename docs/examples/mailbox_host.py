"""Two processes, one session: a front end queues input and watches; a worker runs the turns.

The front end never opens the session: it enqueues input (``core.enqueue``) and observes the
session's events (``core.observe``), without its lease. The worker is a second process on the
same SQLite file: it drains the session's queued input, one turn per input. Run it with
``python docs/examples/mailbox_host.py``.
"""

import asyncio
import contextlib
import subprocess
import sys
import tempfile
from pathlib import Path

import lash

SCRIPT = [
    {"text": "Lisbon: 21 °C and sunny."},
    {"text": "Porto: 17 °C, light rain."},
]


def build_core(db: Path) -> lash.LashCore:
    return lash.LashCore(
        plugins=["standard", "stores", "scripted"],
        autoload=False,
        store=f"sqlite:///{db.resolve()}",
        provider="scripted",
        options={"scripted": {"responses": SCRIPT}},
    )


async def worker(db: Path, session_id: str, turns: int) -> None:
    """The worker process: run the session's queued input until ``turns`` turns ran."""
    async with build_core(db) as core:
        session = await core.session(session_id).open()
        done = 0
        while done < turns:
            results = await session.drain()  # one turn per queued input, oldest first
            done += len(results)
            if not results:
                await asyncio.sleep(0.05)  # nothing queued yet


async def front_end(db: Path) -> list[str]:
    """The front end: queue two questions, start a worker, and watch the session."""
    lines: list[str] = []
    async with build_core(db) as core:
        cursor = (await core.current("weather")).cursor  # follow from here
        first = await core.enqueue("weather", "Weather in Lisbon?", key="q1")
        second = await core.enqueue("weather", "And in Porto?", key="q2")
        for queued in (first, second):
            lines.append(f"queued {queued.key}: {queued.text!r} ({queued.state})")
        # Retrying with the same key is safe: the input already queued is returned.
        again = await core.enqueue("weather", "Weather in Lisbon?", key="q1")
        lines.append(f"queued q1 again: the same input: {again.id == first.id}")

        command = [sys.executable, __file__, "worker", str(db), "weather", "2"]
        process = subprocess.Popen(command)
        committed = 0
        async with contextlib.aclosing(core.observe("weather", after=cursor)) as events:
            async for event in events:
                if isinstance(event, lash.ObservationGap):
                    continue  # a cursor this fresh is never out of the replay window
                if event.type == "input_claimed":
                    lines.append(f"{event.type}: {event.data['input']['text']!r}")
                elif event.type == "turn_committed":
                    result = event.data["result"]
                    lines.append(
                        f"{event.type}: {event.data['outcome']} at revision "
                        f"{event.data['revision']}: {result['text']!r}"
                    )
                    committed += 1
                    if committed == 2:
                        cursor = event.cursor  # where a watcher would resume later
                        break
                elif not event.live:
                    lines.append(event.type)
        process.wait(timeout=30)
        settled = await core.inputs("weather", settled=True)
        lines.append(f"inputs: {[(i.key, i.state) for i in settled]}")
        lines.append(f"worker exit status: {process.returncode}")
    for line in lines:
        print(line)
    return lines


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        asyncio.run(worker(Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(front_end(Path(tmp) / "lash.db"))
