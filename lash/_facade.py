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
import warnings

#: Public name -> the private module that defines it.
EXPORTS: dict[str, str] = {
    "AbortToolCall": "lash._contract.turn_types",
    "AbortTurn": "lash._contract.turn_types",
    "AgentFrame": "lash._contract.turn_types",
    "ApprovalAnswer": "lash._kernel.approvals",
    "AssistantMessage": "lash._contract.graph",
    "Compact": "lash._contract.turn_types",
    "Compaction": "lash._contract.turn_types",
    "EmitEvent": "lash._contract.turn_types",
    "EnqueueMessages": "lash._contract.turn_types",
    "FrameBoundary": "lash._contract.graph",
    "GraphNode": "lash._contract.graph",
    "HostConfig": "lash._plugins.hostconfig",
    "LashCore": "lash._kernel.core",
    "Image": "lash._contract.media",
    "Message": "lash._contract.turn_types",
    "ModelDone": "lash._contract.providers",
    "ModelEvent": "lash._contract.providers",
    "ModelOptions": "lash._contract.modeloptions",
    "ModelRequest": "lash._contract.providers",
    "ModelResponse": "lash._contract.providers",
    "ObservationGap": "lash._kernel.observation",
    "OutputSpec": "lash._contract.providers",
    "ObservedEvent": "lash._kernel.observation",
    "ParkedSession": "lash._kernel.session",
    "PendingApproval": "lash._kernel.approvals",
    "OperationContext": "lash._contract.operations",
    "OperationInfo": "lash._contract.operations",
    "Operations": "lash._kernel.plugin_ops",
    "PluginEvent": "lash._contract.events",
    "PluginInfo": "lash._plugins.loading",
    "PluginMeta": "lash._contract.types",
    "PluginNode": "lash._contract.graph",
    "ProcessContext": "lash._contract.processes",
    "ProcessKind": "lash._plugins.process_kinds",
    "ProcessRecord": "lash._contract.turn_types",
    "Processes": "lash._kernel.processes",
    "PromptContribution": "lash._contract.turn_types",
    "PromptView": "lash._contract.turn_types",
    "Provider": "lash._contract.providers",
    "RecoveryDisposition": "lash._contract.types",
    "RegisterCommand": "lash._contract.types",
    "RegisterOperation": "lash._contract.operations",
    "RegisterProcessKind": "lash._contract.types",
    "RegisterProtocol": "lash._contract.types",
    "RegisterProvider": "lash._contract.types",
    "RegisterSessionCommand": "lash._contract.types",
    "RegisterStore": "lash._contract.types",
    "RegisterTool": "lash._contract.types",
    "ReplaceToolArguments": "lash._contract.turn_types",
    "RequireApproval": "lash._contract.turn_types",
    "ScriptedProvider": "lash._testing.scripted",
    "ScriptedResponse": "lash._testing.scripted",
    "ScriptedToolCall": "lash._testing.scripted",
    "Session": "lash._kernel.session",
    "SessionConfig": "lash._contract.turn_types",
    "SessionProcesses": "lash._contract.processes",
    "SessionSnapshot": "lash._kernel.observation",
    "SessionView": "lash._contract.services",
    "ShortCircuitToolCall": "lash._contract.turn_types",
    "StartProcess": "lash._contract.turn_types",
    "TextDelta": "lash._contract.providers",
    "TextDeltaEvent": "lash._contract.events",
    "Tool": "lash._tools.tool",
    "ToolCall": "lash._contract.types",
    "ToolCallDirective": "lash._contract.turn_types",
    "ToolCallFinished": "lash._contract.events",
    "ToolCallNode": "lash._contract.graph",
    "ToolCallReady": "lash._contract.providers",
    "ToolCallRecord": "lash._contract.events",
    "ToolCallStarted": "lash._contract.events",
    "ToolCatalogEntry": "lash._contract.turn_types",
    "ToolContext": "lash._contract.services",
    "ToolResult": "lash._contract.types",
    "ToolResultNode": "lash._contract.graph",
    "ToolSpec": "lash._contract.types",
    "ToolSource": "lash._tools.source",
    "Turn": "lash._kernel.turn",
    "TurnDirective": "lash._contract.turn_types",
    "TurnDriver": "lash._contract.services",
    "TurnEvent": "lash._contract.events",
    "TurnFinished": "lash._contract.events",
    "TurnOutcome": "lash._contract.graph",
    "TurnResult": "lash._contract.events",
    "TurnView": "lash._contract.services",
    "Usage": "lash._contract.types",
    "UserMessage": "lash._contract.graph",
    "collect_response": "lash._contract.providers",
    "event_json": "lash._kernel.event_json",
    "from_data": "lash._contract.serialization",
    "load_script": "lash._testing.scripted",
    "option": "lash._plugins.options",
    "raw_tool": "lash._tools.tool",
    "to_data": "lash._contract.serialization",
    "tool": "lash._tools.tool",
    "turn_event_json": "lash._kernel.event_json",
}

#: Names lash 0.1 exported that moved to a narrower public face (store authors' names to
#: ``lash.store``); ``lash.Name`` still finds them until 0.3, with a DeprecationWarning.
MOVED: dict[str, str] = {
    "CommitDelta": "lash.store",
    "Lease": "lash.store",
    "MemoryStore": "lash.store",
    "SessionRecord": "lash.store",
    "SessionSummary": "lash.store",
    "Store": "lash.store",
    "check_lease": "lash.store",
    "take_lease": "lash.store",
}


def __getattr__(name: str) -> object:
    """Import ``name``'s module, cache the object on ``lash`` and return it."""
    module = EXPORTS.get(name)
    if module is None:
        if name == "store":
            # `lash.store.Lease` works after a plain `import lash`, as submodules do once
            # imported (the store face is light; lash.testing, which imports pytest, is not).
            return importlib.import_module("lash.store")
        moved = MOVED.get(name)
        if moved is None:
            raise AttributeError(f"module 'lash' has no attribute {name!r}")
        warnings.warn(
            f"lash.{name} moved to {moved}.{name} in lash 0.2 (import it from there; the old "
            "name goes away in 0.3)",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(moved), name)
    value = getattr(importlib.import_module(module), name)
    setattr(sys.modules["lash"], name, value)
    return value


def __dir__() -> list[str]:
    """Every name of the package, loaded or not (what ``dir(lash)`` and completion show)."""
    return sorted({*vars(sys.modules["lash"]), *EXPORTS})
