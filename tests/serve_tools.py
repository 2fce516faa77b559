"""The plugin the ``lash serve`` tests load in real ``lash serve`` and ``lash worker`` processes
(``servetools``): a tool that waits (so a turn is still running when a test acts on it), one
that is slow to stop when cancelled (so a server is still stopping when a test acts), one
that answers at once, one that starts a background process (kind ``note``) under the
session, and one that always needs approval."""

from __future__ import annotations

import asyncio

import attrs

import lash

lash_plugin = lash.PluginMeta(name="servetools")


async def pause(seconds: float) -> str:
    """Waits ``seconds``, then says so."""
    await asyncio.sleep(seconds)
    return f"paused {seconds}s"


async def linger(seconds: float) -> str:
    """Waits until cancelled, then takes ``seconds`` more to stop (a tool slow to clean up,
    so a server that stops is still stopping for that long)."""
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        await asyncio.sleep(seconds)
        raise
    return "never"


def shout(text: str) -> str:
    """Returns ``text`` in capitals."""
    return text.upper()


@attrs.frozen
class Note:
    text: str


async def write_note(context: lash.ProcessContext, note: Note) -> dict[str, str]:
    """The background process: it only gives its text back."""
    return {"text": note.text}


async def start_note(text: str, context: lash.ToolContext) -> str:
    """Starts a background note under the session."""
    record = await context.processes.start("note", Note(text), key=f"note:{text}")
    return f"note {record.id} is {record.status}"


def delete_file(path: str) -> str:
    """Deletes a file (pretends to); every call waits for a human's approval."""
    return f"deleted {path}"


@lash.hookimpl
def register_process_kinds(register: lash.RegisterProcessKind) -> None:
    register("note", write_note, recovery=lash.RecoveryDisposition.RERUNNABLE)


@lash.hookimpl
def register_tools(register: lash.RegisterTool) -> None:
    register(pause)
    register(linger)
    register(shout)
    register(start_note)
    register(lash.tool(delete_file, approval="always"))
