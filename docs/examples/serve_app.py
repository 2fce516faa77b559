"""A host that mounts lash's HTTP API in its own ASGI app, and the JSON form of a turn's events.

Run: ``python docs/examples/serve_app.py`` (needs ``lash-sdk[serve]``). It talks to the app in
process, through httpx's ASGI transport; ``lash serve`` runs the same app over HTTP.
"""

from __future__ import annotations

import asyncio
import json
import tempfile

import httpx
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

import lash
from lash.serve import create_app

SCRIPT = [
    {"tool_calls": [{"name": "shout", "arguments": {"text": "hi"}}]},
    {"text": "They said HI."},
    {"text": "Streamed.", "chunk_size": 5},
]


def shout(text: str) -> str:
    """Returns ``text`` in capitals."""
    return text.upper()


class Shouter:
    lash_plugin = lash.PluginMeta(name="shouter")

    @lash.hookimpl
    def register_tools(self, register: lash.RegisterTool) -> None:
        register(shout)


async def health(request: object) -> PlainTextResponse:
    return PlainTextResponse("ok")


def build_app(core: lash.LashCore) -> Starlette:
    """The host's own app, with lash's API under /lash, behind a token."""
    return Starlette(
        routes=[
            Route("/health", health),
            Mount("/lash", app=create_app(core, token="s3cret")),
        ]
    )


async def over_http(core: lash.LashCore) -> None:
    transport = httpx.ASGITransport(app=build_app(core))
    headers = {"Authorization": "Bearer s3cret"}
    async with httpx.AsyncClient(transport=transport, base_url="http://host") as http:
        print("health:", (await http.get("/health")).text)
        refused = await http.get("/lash/sessions")
        print("no token:", refused.status_code, refused.json())
        reply = await http.post(
            "/lash/sessions/desk/turns?wait=true",
            json={"text": "Shout hi", "id": "t1"},
            headers=headers,
        )
        turn = reply.json()["turn"]
        print("turn:", turn["turn_id"], turn["outcome"], repr(turn["result"]["text"]))
        print("tool calls:", [call["name"] for call in turn["tool_calls"]])
        view = (await http.get("/lash/sessions/desk", headers=headers)).json()
        print("session:", view["revision"], view["cursor"], [n["type"] for n in view["nodes"]])


async def turn_events_as_json(core: lash.LashCore) -> None:
    """Each event of turn.stream() in the JSON form a browser reads (``at`` left out here)."""
    session = await core.session("desk").open()
    turn = session.turn("Again, streamed", id="t2")
    async for event in turn.stream():
        data = lash.turn_event_json(event, session_id=session.id, turn_id=turn.id)
        shown = {k: data[k] for k in ("v", "type", "live")}
        if data["type"] == "text_delta":
            shown["text"] = data["data"]["text"]
        if data["type"] == "turn_finished":
            shown["outcome"] = data["data"]["outcome"]
        print(json.dumps(shown))
    await session.close()


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        core = lash.LashCore(
            plugins=["standard", "stores", "scripted", Shouter()],
            autoload=False,
            store=f"sqlite:///{tmp}/lash.db",
            provider="scripted",
            options={"scripted": {"responses": SCRIPT}},
        )
        async with core:
            await over_http(core)
            await turn_events_as_json(core)


if __name__ == "__main__":
    asyncio.run(main())
