"""Images in a turn's input: checked and turned into stored references when the turn is made,
their bytes put in the store once (content-addressed), and loaded back into the prompt.

A turn's items may hold :class:`lash.Image` values. :func:`stage_items` reads and checks each
(naming the bad item in its :class:`lash.ImageError`) and replaces it with its JSON reference
(:meth:`lash.Image.ref`), so the turn's node, its ``turn_started`` event and a queued input
carry references only. :func:`put_blobs` writes the bytes before the commit that refers to
them (a blob nothing refers to, left by a crash in between, is harmless). :func:`load_images`
gives a model call's messages their images' bytes, through the session's blob cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs

from lash._contract.media import Image
from lash._contract.turn_types import Message
from lash.errors import ImageError, SessionError

if TYPE_CHECKING:
    from lash._kernel.runtime import SessionRuntime
    from lash._store.protocol import Store


def stage_items(session_id: str, items: Sequence[Any]) -> tuple[tuple[Any, ...], list[Image]]:
    """``items`` with every :class:`lash.Image` checked and replaced by its reference, and the
    loaded images whose bytes the store must hold."""
    if not items:
        return (), []
    if not any(isinstance(item, Image) for item in items):
        return tuple(items), []
    staged: list[Any] = []
    blobs: list[Image] = []
    for index, item in enumerate(items):
        if not isinstance(item, Image):
            staged.append(item)
            continue
        try:
            image = item.loaded(f"items[{index}]")
        except ImageError as exc:
            exc.session_id = session_id
            exc.args = (f"session {session_id!r}: {exc}",)
            raise
        if image.data is not None:
            blobs.append(image)
        staged.append(image.ref())
    return tuple(staged), blobs


async def put_blobs(store: Store, images: Sequence[Image]) -> None:
    """Store the images' bytes (once each: a blob the store holds already is not written)."""
    for image in images:
        assert image.data is not None
        await store.put_blob(image.data)


async def load_images(
    runtime: SessionRuntime, messages: tuple[Message, ...]
) -> tuple[Message, ...]:
    """``messages`` with every stored image's bytes loaded (from the session's cache, else the
    store). The prompt view calls it only when its graph counts messages with images."""
    cache = runtime.blobs
    out: list[Message] = []
    for message in messages:
        if not message.images or all(i.data is not None or i.url for i in message.images):
            out.append(message)
            continue
        images: list[Image] = []
        for image in message.images:
            if image.data is not None or image.url is not None or image.sha256 is None:
                images.append(image)
                continue
            data = cache.get(image.sha256)
            if data is None:
                data = await runtime.core.store.get_blob(image.sha256)
                if data is None:
                    raise SessionError(
                        f"session {runtime.id!r}: the image blob {image.sha256} a message refers "
                        "to is not in the store",
                        session_id=runtime.id,
                    )
                cache[image.sha256] = data
            images.append(image.with_data(data))
        out.append(attrs.evolve(message, images=tuple(images)))
    return tuple(out)
