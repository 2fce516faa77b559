"""The plugin the browser tests load in a real ``lash serve`` beside ``servetools``
(``browsertools``): ``gate``, a tool that waits until the test opens it, so a turn is still
running for exactly as long as the test needs (no sleeps)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import lash

lash_plugin = lash.PluginMeta(name="browsertools")

#: A gate the test never opens fails its call after this long, instead of hanging the test.
GATE_TIMEOUT = 120.0


async def gate(name: str) -> str:
    """Waits until the file ``name`` exists in the working directory (the test creates it)."""
    deadline = time.monotonic() + GATE_TIMEOUT
    while not Path(name).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gate {name!r} was never opened")
        await asyncio.sleep(0.02)
    return f"gate {name} opened"


@lash.hookimpl
def register_tools(register: lash.RegisterTool) -> None:
    register(gate)
