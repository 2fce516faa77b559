"""A scripted model keeps a todo list in a workspace with the builtin ``files`` tools."""

import asyncio
import os
import sys
import tempfile
from pathlib import Path

import lash
from lash_plugins_builtin import files


def call(name: str, **arguments: object) -> dict[str, object]:
    return {"name": name, "arguments": arguments}


SCRIPT = [
    {  # Round 1: create a file, and its directory.
        "tool_calls": [
            call(
                "write_file",
                path="notes/todo.md",
                content="- buy tea\n- call Ada\n",
                create_dirs=True,
            )
        ]
    },
    {  # Round 2: edit it in place (calls of one round run concurrently: the edit goes alone).
        "tool_calls": [call("edit_file", path="notes/todo.md", old="buy tea", new="buy green tea")]
    },
    {  # Round 3: look at the directory, read one line back.
        "tool_calls": [
            call("list_dir", path="notes"),
            call("read_file", path="notes/todo.md", offset=1, limit=1),
        ]
    },
    {  # Round 4: every way out of the workspace is refused.
        "tool_calls": [
            call("read_file", path="../../etc/passwd"),
            call("read_file", path="/etc/passwd"),
            call("read_file", path="system/passwd"),  # system -> /etc, a link in the workspace
            call("write_file", path=".env", content="TOKEN=stolen"),
        ]
    },
    {"text": "Your list is in notes/todo.md."},
]


async def main(root: str) -> lash.TurnResult:
    # A link someone left in the workspace, pointing out of it.
    Path(root, "system").symlink_to("/etc", target_is_directory=True)
    core = lash.LashCore(
        plugins=["standard", "stores", "scripted", files],
        autoload=False,
        provider="scripted",
        options={"scripted": {"responses": SCRIPT}, "files": {"root": root}},
    )
    async with core:
        session = await core.session("todo").open()
        result = await session.turn("Start a todo list: buy green tea, call Ada.").run()
    for record in result.tool_calls:
        flag = "error" if record.result.is_error else "ok"
        # The workspace is a fresh temporary directory: show it as <root>.
        content = record.result.content.replace(os.path.realpath(root), "<root>").rstrip("\n")
        print(f"{record.call.name}({dict(record.call.arguments)}) -> {flag}")
        print("   " + content.replace("\n", "\n   "))
    print(f"{result.outcome}: {result.text}")
    return result


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as workspace:
        sys.exit(asyncio.run(main(workspace)).outcome != "completed")
