"""Hooks renamed in lash 0.2: a plugin written for 0.1 and the same plugin written for 0.2.

The old names still run until lash 0.3, with a DeprecationWarning naming the plugin. Run it with
``python docs/examples/renamed_hooks.py``.
"""

from __future__ import annotations

import asyncio
import textwrap
import warnings

import lash

LOG: list[str] = []


class Before:
    """lash 0.1 names."""

    lash_plugin = lash.PluginMeta(name="before")

    @lash.hookimpl
    def materialize_session(self, session: lash.SessionView) -> None:
        LOG.append(f"before: preparing {session.id!r}")

    @lash.hookimpl
    def session_restored(self, session: lash.SessionView) -> None:
        LOG.append(f"before: {session.id!r} was resumed")


class After:
    """The same plugin with lash 0.2 names."""

    lash_plugin = lash.PluginMeta(name="after")

    @lash.hookimpl
    def prepare_session(self, session: lash.SessionView) -> None:
        LOG.append(f"after: preparing {session.id!r}")

    @lash.hookimpl
    def session_opened(self, session: lash.SessionView, restored: bool) -> None:
        if restored:
            LOG.append(f"after: {session.id!r} was resumed")


async def main() -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        core = lash.LashCore(
            plugins=["standard", "stores", "scripted", Before, After],
            store="memory://",
            options={"scripted": {"responses": [{"text": "Hi."}] * 2}},
        )
    for warning in caught:
        text = f"{warning.category.__name__}: {warning.message}"
        print(textwrap.fill(text, 76, subsequent_indent="    "))
    async with core:
        for _ in range(2):  # a new session, then the same session resumed
            async with core.session("s") as session:
                await session.turn("Hello").run()  # committed: the store has the session
    print(*LOG, sep="\n")
    return LOG


if __name__ == "__main__":
    asyncio.run(main())
