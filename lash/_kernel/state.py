"""The kernel's own per-session state: tool-catalog membership, durable session commands, and
the tool calls a stopped turn holds for a human's approval.

It is persisted like a plugin's declared state (snapshotted in every commit, under the reserved
plugin name ``lash``), so catalog membership and queued commands are part of the same atomic
commit as the turn that changes them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

import attrs

from lash._contract.annotations import resolve_here
from lash._contract.turn_types import ToolCatalogEntry

#: The plugin-state key the kernel state is stored under (no plugin may be named this).
KERNEL_STATE_KEY = "lash"

#: How many applied idempotency keys a session remembers.
APPLIED_KEYS_KEPT = 1000

#: How many answered (or expired) approvals a session remembers, to report a late second answer.
APPROVALS_KEPT = 1000

CommandName = Literal["refresh_tool_catalog", "reset"]
COMMANDS: tuple[str, ...] = ("refresh_tool_catalog", "reset")


@attrs.define
class QueuedCommand:
    """A session command waiting to be applied before the next turn."""

    name: CommandName
    key: str


@attrs.define
class HeldCall:
    """A tool call held for a human's approval: the call as it would run (its arguments after
    ``before_tool_call`` replacements), who asked for approval (``requested_by``: the plugin whose
    ``before_tool_call`` did, ``None`` for a tool declared ``approval="always"``) and why, and
    the answer once one was applied (``decision``: ``"approve"`` or ``"reject"``)."""

    call_id: str
    tool: str
    arguments: dict[str, Any]
    turn_id: str
    requested_at: float
    requested_by: str | None = None
    why: str | None = None
    decision: str | None = None
    reason: str | None = None
    answered_at: float | None = None
    #: Once the call left the waiting list: ``approved``, ``rejected`` or ``expired``.
    fate: str | None = None


@attrs.define
class AwaitingTurn:
    """A turn stopped with reason ``awaiting_approval``: its id, index and input, and its held
    calls in the order the model asked for them. The session's next execution continues it once
    every call is answered."""

    turn_id: str
    index: int
    input: str
    calls: list[HeldCall] = attrs.field(factory=list)

    def find(self, call_id: str) -> HeldCall | None:
        return next((c for c in self.calls if c.call_id == call_id), None)

    @property
    def answered(self) -> bool:
        return all(c.decision is not None for c in self.calls)


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
    #: The turn waiting for approvals, if any.
    awaiting: AwaitingTurn | None = None
    #: Held calls that left the waiting list (answered and continued, or expired), newest last.
    settled_calls: list[HeldCall] = attrs.field(factory=list)

    def permits(self, name: str) -> bool:
        """Whether the allowlist (if any) lets tool ``name`` be a member."""
        return self.allowed is None or name in self.allowed

    def knows_key(self, key: str) -> bool:
        return key in self.applied_keys or any(c.key == key for c in self.commands)

    def mark_applied(self, key: str) -> None:
        self.applied_keys.append(key)
        del self.applied_keys[:-APPLIED_KEYS_KEPT]

    def settle_awaiting(self, fate: str | None = None) -> AwaitingTurn | None:
        """Take the awaiting turn off the waiting list (its calls remembered as settled: each
        ``fate`` as given, else from its decision); returns it."""
        awaiting, self.awaiting = self.awaiting, None
        if awaiting is not None:
            for call in awaiting.calls:
                call.fate = fate or ("approved" if call.decision == "approve" else "rejected")
            self.settled_calls.extend(awaiting.calls)
            del self.settled_calls[:-APPROVALS_KEPT]
        return awaiting

    def settled_call(self, call_id: str) -> HeldCall | None:
        """The latest settled held call with this id."""
        return next((c for c in reversed(self.settled_calls) if c.call_id == call_id), None)

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
