"""A worker asked to stop (``run_worker(stop=...)``) takes no more work: a drain it started
just before starts no turn once it sees the stop."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import lash

pytestmark = pytest.mark.anyio


class StopOnOpen:
    """Sets the worker's stop event as a drain opens its session: the stop arrives after the
    worker chose to drain the session, before any turn of it started."""

    lash_plugin = lash.PluginMeta(name="stop_on_open")

    def __init__(self) -> None:
        self.stop = asyncio.Event()

    @lash.hookimpl
    def session_opened(self, session: Any, restored: bool) -> None:
        self.stop.set()


async def test_a_drain_started_as_the_stop_arrives_runs_no_turn(tmp_path: Path) -> None:
    """The docs (processes.rst, cli.rst): a worker asked to stop takes no more work, and the
    input behind the running turns stays queued. A drain whose session opened after the stop
    must leave its input to the next worker; before, it ran the turn (a model call, tools: a
    deploy's stop timeout spent on work the worker was told not to take)."""
    stopper = StopOnOpen()
    core = lash.LashCore(
        ["standard", "stores", "scripted", stopper],
        store=f"sqlite:///{tmp_path / 'lash.db'}",
        provider="scripted",
        autoload=False,
        options={"scripted": {"responses": [{"text": "answer"}]}},
    )
    async with core:
        await core.enqueue("s1", "question", key="k1")
        await asyncio.wait_for(core.run_worker(stop=stopper.stop, poll=0.05), 30)
        assert [(i.text, i.state) for i in await core.store.list_inputs("s1", settled=True)] == [
            ("question", "pending")
        ]
