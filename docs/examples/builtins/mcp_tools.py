"""The builtin ``mcp``: the tools of an MCP server (PyPI's ``mcp-server-time``, run over stdio)
offered to the model as ``time__...``; a server that does not start is reported and left out."""

import asyncio
import json
import sys

import lash

# Listed by object so the example also runs where the builtin is not installed as an entry point.
from lash_plugins_builtin import mcp

SERVERS = {
    # A real MCP server from PyPI, run with this Python: `pip install mcp-server-time`.
    "time": {
        "command": sys.executable,
        "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"],
        "start_timeout": 20,
    },
    # A program that is not there: reported, and the rest of the catalog still works.
    "weather": {"command": "no-such-weather-server"},
}

CONVERT = {"source_timezone": "UTC", "time": "16:30", "target_timezone": "Asia/Tokyo"}
SCRIPT = [
    {
        "tool_calls": [
            {"name": "time__convert_time", "arguments": CONVERT},
            {"name": "time__get_current_time", "arguments": {"timezone": "Mars/Olympus"}},
        ]
    },
    {"text": "16:30 UTC is 01:30 the next day in Tokyo; Mars has no time zone."},
]


async def main() -> None:
    core = lash.LashCore(
        plugins=["standard", "stores", "scripted", mcp],
        autoload=False,
        store="memory://",
        provider="scripted",
        options={"scripted": {"responses": SCRIPT}, "mcp": {"servers": SERVERS}},
        on_error=lambda error: print(f"reported: {error}"),
    )
    async with core:
        session = await core.session("desk").open()
        print("tools before the first turn:", [t.name for t in session.tools()])
        result = await session.turn("What time is 16:30 UTC in Tokyo, and on Mars?").run()
        print("tools now:", [t.name for t in session.tools()])
        for record in result.tool_calls:
            if record.result.is_error:
                print(f"{record.call.name}, an error: {record.result.content}")
                continue
            answer = json.loads(record.result.content)
            when = answer["target"]["datetime"][11:16]  # the date is today's: left out
            print(f"{record.call.name}: {when} in Tokyo ({answer['time_difference']})")
        print(f"the model: {result.text}")
    # Closing the core stopped the server it had started.


if __name__ == "__main__":
    asyncio.run(main())
