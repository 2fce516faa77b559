"""``stores``: the builtin store backends, contributed by URL scheme like any plugin's."""

from __future__ import annotations

import lash

lash_plugin = lash.PluginMeta(description="Builtin store backends: memory://.")


@lash.hookimpl
def register_stores(register: lash.RegisterStore) -> None:
    register("memory", lash.MemoryStore)
