"""The kernel's own per-session state: tool-catalog membership and durable session commands.

It is persisted like a plugin's declared state (snapshotted in every commit, under the reserved
plugin name ``lash``), so catalog membership and queued commands are part of the same atomic
commit as the turn that changes them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal

import attrs

from lash._contract.annotations import resolve_here
from lash._contract.types import ToolCatalogEntry

#: The plugin-state key the kernel state is stored under (no plugin may be named this).
KERNEL_STATE_KEY = "lash"

#: How many applied idempotency keys a session remembers.
APPLIED_KEYS_KEPT = 1000

CommandName = Literal["refresh_tool_catalog", "reset"]
COMMANDS: tuple[str, ...] = ("refresh_tool_catalog", "reset")


@attrs.define
class QueuedCommand:
    """A session command waiting to be applied before the next turn."""

    name: CommandName
    key: str


@attrs.define
class KernelState:
    """Catalog membership (explicit settings and last known plugin of each tool), the catalog
    generation, queued commands, the idempotency keys already applied, and the tool allowlist
    of a child session (``None``: no restriction; a tool outside it is never a member)."""

    members: dict[str, bool] = attrs.field(factory=dict)
    tool_plugins: dict[str, str] = attrs.field(factory=dict)
    generation: int = 0
    commands: list[QueuedCommand] = attrs.field(factory=list)
    applied_keys: list[str] = attrs.field(factory=list)
    allowed: list[str] | None = None

    def permits(self, name: str) -> bool:
        """Whether the allowlist (if any) lets tool ``name`` be a member."""
        return self.allowed is None or name in self.allowed

    def knows_key(self, key: str) -> bool:
        return key in self.applied_keys or any(c.key == key for c in self.commands)

    def mark_applied(self, key: str) -> None:
        self.applied_keys.append(key)
        del self.applied_keys[:-APPLIED_KEYS_KEPT]

    def refresh(self, available: Mapping[str, str]) -> bool:
        """Record the tools available now (name -> plugin); return whether anything changed.

        Tools that vanished keep their entry (they are reported as orphaned non-members) so that
        their membership comes back when their plugin does.
        """
        changed = False
        for name, plugin in available.items():
            if self.tool_plugins.get(name) != plugin:
                self.tool_plugins[name] = plugin
                changed = True
        if changed:
            self.generation += 1
        return changed

    def entries(self, available: Mapping[str, tuple[str, str]]) -> tuple[ToolCatalogEntry, ...]:
        """The catalog: every available tool (name -> (plugin, description)) with its
        membership, then every orphaned tool (its plugin is gone) as a non-member."""
        rows = [
            ToolCatalogEntry(
                name=name,
                plugin=plugin,
                description=description,
                member=self.members.get(name, True) and self.permits(name),
            )
            for name, (plugin, description) in available.items()
        ]
        rows += [
            ToolCatalogEntry(name=name, plugin=plugin, member=False, orphaned=True)
            for name, plugin in sorted(self.tool_plugins.items())
            if name not in available
        ]
        return tuple(rows)

    def set_members(self, changes: Mapping[str, bool], known: Iterable[str]) -> bool:
        """Apply membership changes; unknown tool names are an error. Returns whether changed."""
        names = set(known)
        unknown = sorted(set(changes) - names)
        if unknown:
            raise KeyError(", ".join(unknown))
        refused = sorted(
            name for name, member in changes.items() if member and not self.permits(name)
        )
        if refused:
            raise PermissionError(", ".join(refused))
        changed = False
        for name, member in changes.items():
            if self.members.get(name, True) != member:
                self.members[name] = member
                changed = True
        if changed:
            self.generation += 1
        return changed


resolve_here(globals())
