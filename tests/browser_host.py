"""A host of the browser tests: ``lash.serve.create_app(core)`` mounted under ``/lash`` in the
host's own Starlette app, served by uvicorn on a free port of 127.0.0.1. Prints ``host: URL``
(the page's URL) on stderr once it serves.

Usage: ``python browser_host.py STORE_PATH SCRIPT_PATH`` (the scripted model's script file).
"""

from __future__ import annotations

import asyncio
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount

import lash
from lash.serve import create_app


async def main(store: str, script: str) -> None:
    core = lash.LashCore(
        plugins=["standard", "stores", "scripted"],
        autoload=False,
        store=f"sqlite:///{store}",
        provider="scripted",
        options={"scripted": {"script": script}},
    )
    async with core:
        app = Starlette(routes=[Mount("/lash", app=create_app(core))])
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        serving = asyncio.ensure_future(server.serve())
        while not server.started and not serving.done():
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        print(f"host: http://127.0.0.1:{port}/lash/", file=sys.stderr, flush=True)
        await serving


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
