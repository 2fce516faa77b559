"""The plugin the ``lash serve`` tests load in real ``lash serve`` and ``lash worker`` processes
(``servetools``): a tool that waits (so a turn is still running when a test acts on it) and one
that answers at once."""

from __future__ import annotations

import asyncio

import lash

lash_plugin = lash.PluginMeta(name="servetools")


async def pause(seconds: float) -> str:
    """Waits ``seconds``, then says so."""
    await asyncio.sleep(seconds)
    return f"paused {seconds}s"


def shout(text: str) -> str:
    """Returns ``text`` in capitals."""
    return text.upper()


@lash.hookimpl
def register_tools(register: lash.RegisterTool) -> None:
    register(pause)
    register(shout)
