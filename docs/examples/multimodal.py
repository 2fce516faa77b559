"""Images in a turn: a file, bytes and a URL given with the text; what the model is sent, what
the session keeps (references), and the blob the store holds once."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import lash

# A one-pixel PNG, written to a file for the example.
PIXEL = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c63f8cfc0f01f0005000201a5dd2b6e0000000049454e44ae426082"
)
SCRIPT = [{"text": "A single pixel."}, {"text": "The same pixel again."}]


async def main(workdir: Path) -> None:
    photo = workdir / "pixel.png"
    photo.write_bytes(PIXEL)
    core = lash.LashCore(
        plugins=["standard", "stores", "scripted"],
        autoload=False,
        provider="scripted",
        store=f"sqlite:///{workdir / 'lash.db'}",
        options={"scripted": {"responses": SCRIPT}},
    )
    async with core:
        session = await core.session("photos").open()
        # A file path, the bytes themselves, or an https URL (passed on, never downloaded).
        await session.turn("What is this?", items=[lash.Image(photo)]).run()
        await session.turn(
            "And these?",
            items=[lash.Image(PIXEL), lash.Image("https://example.com/cat.jpg")],
        ).run()

        # What the model was sent in the second call: every image of the frame, loaded.
        model = core.registry.of("provider")["scripted"].value
        for message in model.requests[1].messages:
            for image in message.images:
                what = image.url or f"{len(image.data or b'')} bytes"
                print(f"model gets: {message.content!r} + {image.media_type} ({what})")

        # What the session keeps: references; the bytes are in the store, once.
        digests = set()
        for node in session.nodes:
            if isinstance(node, lash.UserMessage):
                for item in node.items:
                    shown = {k: v[:12] + "..." if k == "sha256" else v for k, v in item.items()}
                    print(f"node keeps: {shown}")
                    if "sha256" in item:
                        digests.add(item["sha256"])
        for digest in digests:
            stored = await core.store.get_blob(digest)
            print(f"store holds {digest[:12]}...: {len(stored or b'')} bytes")

        # A bad image fails session.turn() at once, naming the item.
        try:
            session.turn("And this?", items=[lash.Image(workdir / "missing.png")])
        except lash.ImageError as exc:
            print(f"{type(exc).__name__}: {str(exc).replace(str(workdir), '<dir>')}")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(main(Path(tmp)))
