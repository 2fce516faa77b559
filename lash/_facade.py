"""What ``lash`` exports from its private modules, loaded on first use (PEP 562).

``import lash`` has to be cheap: every plugin module runs it (for ``@lash.hookimpl``), and ``lash
--help`` and ``lash plugins`` import every installed plugin. The kernel behind the facade
(sessions, graph, stores, turns: some ninety attrs classes, each generating its methods when its
module runs) would more than double the start-up of those commands. So ``lash/__init__.py``
binds the hook markers and the errors eagerly and declares every other public name here; the
first ``lash.Name`` imports the one module that defines it and caches the object on the package,
so later lookups are ordinary attribute reads. Objects are real (no proxies): ``isinstance``,
``match`` on event classes, subclassing and pickling behave as with eager imports. Static type
checkers read the same names from the ``if typing.TYPE_CHECKING:`` imports in ``__init__.py``; a
test keeps the two lists identical.
"""

from __future__ import annotations

import importlib
import sys

#: Public name -> the private module that defines it.
EXPORTS: dict[str, str] = {
    "AbortToolCall": "lash._contract.types",
    "AbortTurn": "lash._contract.types",
    "AgentFrame": "lash._contract.types",
    "AssistantMessage": "lash._contract.graph",
    "CommitDelta": "lash._store.protocol",
    "Compaction": "lash._contract.types",
    "Contribution": "lash._plugins.registry",
    "EnqueueMessages": "lash._contract.types",
    "FrameBoundary": "lash._contract.graph",
    "GraphNode": "lash._contract.graph",
    "HookDispatcher": "lash._plugins.dispatch",
    "HookImpl": "lash._plugins.dispatch",
    "HostConfig": "lash._plugins.hostconfig",
    "LashCore": "lash._kernel.core",
    "Lease": "lash._store.protocol",
    "MemoryStore": "lash._store.protocol",
    "Message": "lash._contract.types",
    "ModelDone": "lash._contract.providers",
    "ModelEvent": "lash._contract.providers",
    "ModelRequest": "lash._contract.providers",
    "ModelResponse": "lash._contract.providers",
    "ParkedSession": "lash._kernel.session",
    "PluginInfo": "lash._plugins.loading",
    "PluginMeta": "lash._contract.types",
    "PluginNode": "lash._contract.graph",
    "ProcessRecord": "lash._contract.types",
    "PromptContribution": "lash._contract.types",
    "PromptView": "lash._contract.types",
    "Provider": "lash._contract.providers",
    "RecoveryDisposition": "lash._contract.types",
    "RegisterProcessKind": "lash._contract.types",
    "RegisterProtocol": "lash._contract.types",
    "RegisterProvider": "lash._contract.types",
    "RegisterStore": "lash._contract.types",
    "RegisterTool": "lash._contract.types",
    "Registry": "lash._plugins.registry",
    "ReplaceToolArguments": "lash._contract.types",
    "ScriptedProvider": "lash._testing.scripted",
    "ScriptedResponse": "lash._testing.scripted",
    "ScriptedToolCall": "lash._testing.scripted",
    "Session": "lash._kernel.session",
    "SessionConfig": "lash._contract.types",
    "SessionGraph": "lash._contract.graph",
    "SessionRecord": "lash._store.protocol",
    "SessionSummary": "lash._store.protocol",
    "SessionView": "lash._contract.types",
    "ShortCircuitToolCall": "lash._contract.types",
    "Store": "lash._store.protocol",
    "TextDelta": "lash._contract.providers",
    "TextDeltaEvent": "lash._contract.events",
    "Tool": "lash._tools.tool",
    "ToolCall": "lash._contract.types",
    "ToolCallDirective": "lash._contract.types",
    "ToolCallFinished": "lash._contract.events",
    "ToolCallNode": "lash._contract.graph",
    "ToolCallReady": "lash._contract.providers",
    "ToolCallRecord": "lash._contract.events",
    "ToolCallStarted": "lash._contract.events",
    "ToolCatalogEntry": "lash._contract.types",
    "ToolContext": "lash._tools.tool",
    "ToolContextView": "lash._contract.types",
    "ToolResult": "lash._contract.types",
    "ToolResultNode": "lash._contract.graph",
    "ToolSpec": "lash._contract.providers",
    "Turn": "lash._kernel.turn",
    "TurnDirective": "lash._contract.types",
    "TurnDriver": "lash._kernel.turn",
    "TurnEvent": "lash._contract.events",
    "TurnFinished": "lash._contract.events",
    "TurnInfo": "lash._kernel.turn",
    "TurnResult": "lash._contract.events",
    "TurnView": "lash._contract.types",
    "Usage": "lash._contract.types",
    "UserMessage": "lash._contract.graph",
    "check_lease": "lash._store.protocol",
    "check_session_id": "lash._store.ids",
    "collect_response": "lash._contract.providers",
    "from_data": "lash._contract.serialization",
    "load_script": "lash._testing.scripted",
    "option": "lash._plugins.options",
    "raw_tool": "lash._tools.tool",
    "take_lease": "lash._store.protocol",
    "to_data": "lash._contract.serialization",
    "tool": "lash._tools.tool",
}


def __getattr__(name: str) -> object:
    """Import ``name``'s module, cache the object on ``lash`` and return it."""
    module = EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lash' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    setattr(sys.modules["lash"], name, value)
    return value


def __dir__() -> list[str]:
    """Every name of the package, loaded or not (what ``dir(lash)`` and completion show)."""
    return sorted({*vars(sys.modules["lash"]), *EXPORTS})
