"""What lash checks when it calls a hook: the result's type, and (when asked) the time it takes.

``cleanup`` hides one of its tools by returning its name from ``filter_tool_catalog`` (a ``str``
is one name); ``sloppy`` returns a string from ``before_turn``, which is no directive; ``stuck``
never returns from ``before_turn``. A hook monitor shows what each hook returned. Run it with
``python docs/examples/hook_checks.py``.
"""

from __future__ import annotations

import asyncio
import textwrap
from typing import Any

import lash


def list_files() -> list[str]:
    """List the files in the workspace."""
    return ["notes.txt"]


def delete_files() -> str:
    """Delete every file in the workspace."""
    return "deleted"


class Cleanup:
    lash_plugin = lash.PluginMeta(name="cleanup")

    @lash.hookimpl
    def register_tools(self, register: lash.RegisterTool) -> None:
        register(list_files)
        register(delete_files)

    @lash.hookimpl
    def filter_tool_catalog(self) -> str:
        # One name, not twelve one-letter names.
        return "delete_files"


class Sloppy:
    lash_plugin = lash.PluginMeta(name="sloppy")

    @lash.hookimpl
    def before_turn(self) -> str:
        # A bug: before_turn returns directives, or None.
        return "looks fine"


class Stuck:
    lash_plugin = lash.PluginMeta(name="stuck")

    def __init__(self) -> None:
        self.waiting = asyncio.Event()

    @lash.hookimpl
    async def before_turn(self) -> None:
        self.waiting.set()
        # A bug: waits for something that never happens.
        await asyncio.Event().wait()


def core_of(*plugins: object, **kwargs: Any) -> lash.LashCore:
    return lash.LashCore(
        plugins=["standard", "stores", "scripted", *plugins],
        store="memory://",
        provider="scripted",
        options={"scripted": {"responses": [{"text": "Nothing to do."}]}},
        **kwargs,
    )


def report(result: lash.TurnResult) -> None:
    where = f"plugin {result.error_plugin!r}, hook {result.error_hook!r}"
    text = f"{result.outcome} ({where}): {result.error}"
    print(textwrap.fill(text, 76, subsequent_indent="    "))


def show(hook: str, plugin: str, kwargs: Any, result: Any, error: Any) -> None:
    """A hook monitor's ``after``: what this example's plugins returned."""
    if plugin in ("cleanup", "sloppy"):
        print(f"  {plugin}: {hook} returned {result!r}")


async def results() -> lash.TurnResult:
    """A wrong result is an error naming plugin, hook, value and expectation."""
    core = core_of(Cleanup, Sloppy)
    core.add_hook_monitor(lambda hook, plugin, kwargs: None, show)
    async with core, core.session("results") as session:
        preview = await session.prompt_preview()
        print(f"offered to the model: {list(preview.tools)}")
        result = await session.turn("Clean up my workspace.").run()
        report(result)
        return result


async def timeout() -> lash.TurnResult:
    """hook_timeout bounds every async hook: one that runs longer fails."""
    core = core_of(Stuck(), hook_timeout=0.1)
    async with core, core.session("timeout") as session:
        result = await session.turn("Clean up my workspace.").run()
        report(result)
        return result


async def cancel() -> lash.TurnResult:
    """turn.cancel() interrupts a hung hook; the turn is still committed."""
    stuck = Stuck()
    async with core_of(stuck) as core, core.session("cancel") as session:
        turn = session.turn("Clean up my workspace.")
        running = asyncio.create_task(turn.run())
        await stuck.waiting.wait()  # the hook is hanging now
        turn.cancel()
        result = await running
        print(f"{result.outcome} ({result.reason}), revision {result.revision}")
        return result


async def main() -> list[lash.TurnResult]:
    return [await results(), await timeout(), await cancel()]


if __name__ == "__main__":
    asyncio.run(main())
