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
    "AbortToolCall": "lash._types",
    "AbortTurn": "lash._types",
    "AgentFrame": "lash._types",
    "AssistantMessage": "lash._graph",
    "CommitDelta": "lash._store",
    "Compaction": "lash._types",
    "Contribution": "lash._registry",
    "EnqueueMessages": "lash._types",
    "FrameBoundary": "lash._graph",
    "GraphNode": "lash._graph",
    "HookDispatcher": "lash._manager",
    "HookImpl": "lash._manager",
    "HostConfig": "lash._hostconfig",
    "LashCore": "lash._core",
    "Lease": "lash._store",
    "MemoryStore": "lash._store",
    "Message": "lash._types",
    "ModelDone": "lash._providers",
    "ModelEvent": "lash._providers",
    "ModelRequest": "lash._providers",
    "ModelResponse": "lash._providers",
    "ParkedSession": "lash._session",
    "PluginInfo": "lash._plugins",
    "PluginMeta": "lash._types",
    "PluginNode": "lash._graph",
    "ProcessRecord": "lash._types",
    "PromptContribution": "lash._types",
    "PromptView": "lash._types",
    "Provider": "lash._providers",
    "RecoveryDisposition": "lash._types",
    "RegisterProcessKind": "lash._types",
    "RegisterProtocol": "lash._types",
    "RegisterProvider": "lash._types",
    "RegisterStore": "lash._types",
    "RegisterTool": "lash._types",
    "Registry": "lash._registry",
    "ReplaceToolArguments": "lash._types",
    "ScriptedProvider": "lash._scripted",
    "ScriptedResponse": "lash._scripted",
    "ScriptedToolCall": "lash._scripted",
    "Session": "lash._session",
    "SessionConfig": "lash._types",
    "SessionGraph": "lash._graph",
    "SessionRecord": "lash._store",
    "SessionSummary": "lash._store",
    "SessionView": "lash._types",
    "ShortCircuitToolCall": "lash._types",
    "Store": "lash._store",
    "TextDelta": "lash._providers",
    "TextDeltaEvent": "lash._events",
    "Tool": "lash._tools",
    "ToolCall": "lash._types",
    "ToolCallDirective": "lash._types",
    "ToolCallFinished": "lash._events",
    "ToolCallNode": "lash._graph",
    "ToolCallReady": "lash._providers",
    "ToolCallRecord": "lash._events",
    "ToolCallStarted": "lash._events",
    "ToolCatalogEntry": "lash._types",
    "ToolContext": "lash._tools",
    "ToolContextView": "lash._types",
    "ToolResult": "lash._types",
    "ToolResultNode": "lash._graph",
    "ToolSpec": "lash._providers",
    "Turn": "lash._turn",
    "TurnDirective": "lash._types",
    "TurnDriver": "lash._turn",
    "TurnEvent": "lash._events",
    "TurnFinished": "lash._events",
    "TurnInfo": "lash._turn",
    "TurnResult": "lash._events",
    "TurnView": "lash._types",
    "Usage": "lash._types",
    "UserMessage": "lash._graph",
    "check_lease": "lash._store",
    "collect_response": "lash._providers",
    "from_data": "lash._serialization",
    "load_script": "lash._scripted",
    "option": "lash._options",
    "raw_tool": "lash._tools",
    "take_lease": "lash._store",
    "to_data": "lash._serialization",
    "tool": "lash._tools",
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
