"""Which builtin plugins a core loads: an allowlist means what it says.

Run it with ``python docs/examples/explicit_builtins.py``.
"""

from __future__ import annotations

import asyncio
import textwrap

import lash


class Notes:
    """A plugin of the host's own (it contributes nothing here)."""

    lash_plugin = lash.PluginMeta(name="notes")


async def main() -> None:
    # An allowlist loads exactly what it lists, in that order: no builtin
    # comes uninvited.
    exact = lash.LashCore(plugins=["standard", "scripted", Notes])
    print(f"allowlist:  {exact.plugin_names}")

    # builtins= adds builtins without listing them: some, or all ("default").
    some = lash.LashCore(plugins=[Notes], builtins=["standard", "stores"])
    print(f"two:        {some.plugin_names}")
    every = lash.LashCore(plugins=[Notes], builtins="default", disable=["openai"])
    print(f"default:    {every.plugin_names}")

    # A builtin left out is not loaded; when what it provides is needed,
    # the error says so.
    core = lash.LashCore(plugins=["standard", "scripted"], store="memory://")
    async with core:
        try:
            await core.session("s").open()
        except lash.UnknownStore as exc:
            text = f"UnknownStore: {exc}"
            print(textwrap.fill(text, 76, subsequent_indent="    "))


if __name__ == "__main__":
    asyncio.run(main())
