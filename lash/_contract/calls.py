"""Which plugin code is running: the hook (or tool) and plugin of the current call.

The dispatcher sets :data:`CALLER` once per hook dispatch to a small mutable :class:`Caller` and
updates its ``plugin`` as it moves from implementation to implementation; the kernel sets it around
a tool call. Session services read it to attribute what a plugin records, and the kernel to name
the hook or tool in a re-entrancy error. A context variable, because hooks run concurrently in
tasks (parallel tool calls) and each task must see its own caller.
"""

from __future__ import annotations

import contextvars

import attrs


@attrs.define(slots=True)
class Caller:
    """The hook (``"before_turn"``) or tool (``"tool 'update_plan'"``) running, and its plugin."""

    what: str
    plugin: str | None = None

    def describe(self) -> str:
        """``"hook 'before_turn' of plugin 'x'"`` / ``"tool 'update_plan' of plugin 'plan'"``."""
        where = self.what if self.what.startswith("tool ") else f"hook {self.what!r}"
        return f"{where} of plugin {self.plugin!r}" if self.plugin else where


#: The plugin code running in this context (``None`` outside plugin code).
CALLER: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("lash_caller", default=None)
