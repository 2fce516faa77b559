"""The ``approvaltools`` plugin of the approval tests (in-process, and installed for ``lash``
subprocesses): a ``delete_file`` tool that always needs approval, ``read_file`` and
``move_file`` tools that do not, a ``before_tool_call`` that asks for approval of a
``move_file`` to an absolute path, and the ``policy`` provider.

The provider behaves the same in every process (a script would start over in each): the user
message is a JSON list of the tool calls to ask for (``[name, arguments, id]`` each); asked with
no tool result after that message, it asks for them; once results are in, it answers
``answer: <the results as a JSON list>``. Every tool run and model call is appended to the file
named by the environment variable ``APPROVAL_LOG`` (when set), one line each with the pid, so a
test sees what ran, in which process, how often.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from typing import Any

import lash

lash_plugin = lash.PluginMeta(name="approvaltools")


def log(line: str) -> None:
    path = os.environ.get("APPROVAL_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(f"{line} pid={os.getpid()}\n")


def logged(path: str) -> list[str]:
    """The log's lines without their pids."""
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as lines:
        return [line.rsplit(" pid=", 1)[0] for line in lines.read().splitlines()]


def delete_file(path: str) -> str:
    """Delete a file (always asks a person first)."""
    log(f"delete_file {path}")
    return f"deleted {path}"


def read_file(path: str) -> str:
    """Read a file."""
    log(f"read_file {path}")
    return f"contents of {path}"


def move_file(source: str, target: str) -> str:
    """Move a file."""
    log(f"move_file {source} {target}")
    return f"moved {source} to {target}"


@lash.hookimpl
def register_tools(register: lash.RegisterTool) -> None:
    register(lash.tool(delete_file, approval="always"))
    register(read_file)
    register(move_file)


@lash.hookimpl
def before_tool_call(call: lash.ToolCall, context: lash.ToolContext) -> Any:
    target = str(call.arguments.get("target", ""))
    if call.name == "move_file" and target.startswith("/"):
        return lash.RequireApproval(f"moves a file out of the project, to {target}")
    return None


def calls_message(*calls: tuple[str, dict[str, Any], str]) -> str:
    """The user message that makes the policy provider ask for ``calls``."""
    return json.dumps([list(call) for call in calls])


class PolicyProvider:
    """See the module docstring."""

    async def stream(self, request: lash.ModelRequest) -> AsyncIterator[lash.ModelEvent]:
        last_user = max(i for i, m in enumerate(request.messages) if m.role == "user")
        results = [m.content for m in request.messages[last_user:] if m.role == "tool"]
        try:
            wanted = json.loads(request.messages[last_user].content)
        except ValueError:
            wanted = []
        if not results and isinstance(wanted, list) and wanted:
            log("model asks_for_tools")
            for name, arguments, call_id in wanted:
                yield lash.ToolCallReady(lash.ToolCall(call_id, name, arguments))
        else:
            log("model answers")
            yield lash.TextDelta("answer: " + json.dumps(results))
        yield lash.ModelDone(lash.Usage(1, 1))


@lash.hookimpl
def register_providers(register: lash.RegisterProvider) -> None:
    register("policy", PolicyProvider())
