"""Images given with a turn's input: :class:`Image`, its type detection, and its stored form.

An image reaches a session as an item of ``session.turn(text, items=[lash.Image(...)])``: a
file path, the bytes themselves, or an ``http(s)`` URL. Bytes are stored **once** in the store
as a content-addressed blob (sha256 of the bytes); the user message's node only carries a
reference, a JSON item::

    {"type": "image", "media_type": "image/png", "sha256": "<64 hex digits>", "size": 1234}
    {"type": "image", "media_type": null, "url": "https://example.com/cat.png"}

so a commit never repeats an image's bytes, and resumed history reads the same references. The
prompt a model call gets carries the images again, loaded (``lash.Message.images``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from lash._contract.annotations import resolve_here
from lash.errors import ImageError

__all__ = ["IMAGE_TYPES", "MAX_IMAGE_BYTES", "Image", "detect_media_type", "image_ref"]

#: The image types providers accept: PNG, JPEG, GIF and WebP.
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
#: The default size limit of one image, in bytes (``lash.Image(..., max_bytes=...)``).
MAX_IMAGE_BYTES = 20 * 1024 * 1024

_SUFFIXES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
}


def detect_media_type(data: bytes) -> str | None:
    """The image type of ``data`` from its first bytes (the formats' signatures), or ``None``
    when it is none of :data:`IMAGE_TYPES`."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if len(data) >= 12 and data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "image/webp"
    return None


@attrs.frozen(init=False, repr=False)
class Image:
    """An image to give the model with a turn's input.

    ``lash.Image(source)``: ``source`` is a file path (``str`` or :class:`os.PathLike`), the
    image's bytes, or an ``http://`` / ``https://`` URL (the provider fetches it; nothing is
    downloaded here). The type is read from the bytes (PNG, JPEG, GIF or WebP); a
    ``media_type`` given for bytes or a file must match it. A file is read, and the image
    checked, when the turn is created (``session.turn(...)``): a file that does not exist, an
    image larger than ``max_bytes`` or of another type is a :class:`lash.ImageError` naming the
    item.

    In a prompt (``lash.Message.images``) an image has its ``data`` (with its ``sha256``)
    or its ``url``.
    """

    __module__ = "lash"

    media_type: str | None
    data: bytes | None = None
    url: str | None = None
    sha256: str | None = None
    #: Where it came from, for messages: the file path, or ``None``.
    path: str | None = None
    max_bytes: int = MAX_IMAGE_BYTES

    def __init__(
        self,
        source: str | os.PathLike[str] | bytes,
        *,
        media_type: str | None = None,
        max_bytes: int = MAX_IMAGE_BYTES,
    ) -> None:
        data: bytes | None = None
        url: str | None = None
        path: str | None = None
        if isinstance(source, bytes | bytearray | memoryview):
            data = bytes(source)
        elif isinstance(source, str) and source.lower().startswith(("http://", "https://")):
            url = source
        elif isinstance(source, str | os.PathLike):
            path = os.fspath(source)
        else:
            raise ImageError(
                f"an image is a file path, bytes or an http(s) URL, got {type(source).__name__}"
            )
        if media_type is not None and media_type not in IMAGE_TYPES:
            raise ImageError(
                f"media_type {media_type!r} is not an image type lash sends "
                f"({', '.join(IMAGE_TYPES)})"
            )
        self.__attrs_init__(media_type, data, url, None, path, max_bytes)

    @classmethod
    def _of(cls, **fields: Any) -> Image:
        image = cls.__new__(cls)
        defaults = {"data": None, "url": None, "sha256": None, "path": None}
        image.__attrs_init__(**{**defaults, "max_bytes": MAX_IMAGE_BYTES, **fields})
        return image

    def __repr__(self) -> str:
        if self.url is not None:
            return f"lash.Image(url={self.url!r})"
        where = f"{self.path!r}, " if self.path is not None else ""
        size = f"{len(self.data)} bytes" if self.data is not None else f"sha256 {self.sha256}"
        return f"lash.Image({where}{self.media_type}, {size})"

    def loaded(self, what: str) -> Image:
        """This image with its bytes read and checked, its type known and its sha256 set (a
        URL: as it is). ``what`` names it in errors (``"items[0]"``).

        :raises ImageError: the file does not exist or cannot be read, the image is larger
            than ``max_bytes``, or it is not a PNG, JPEG, GIF or WebP image.
        """
        if self.url is not None or self.sha256 is not None:
            return self
        data = self.data
        name = f"{what} (file {self.path!r})" if self.path is not None else what
        if data is None:
            assert self.path is not None
            file = Path(self.path)
            try:
                size = file.stat().st_size
                if size > self.max_bytes:
                    raise _too_large(name, what, size, self.max_bytes)
                data = file.read_bytes()
            except FileNotFoundError:
                raise ImageError(f"{name}: the image file does not exist", item=what) from None
            except IsADirectoryError:
                raise ImageError(f"{name}: is a directory, not an image file", item=what) from None
            except OSError as exc:
                raise ImageError(
                    f"{name}: the image file cannot be read: {exc.strerror or exc}", item=what
                ) from None
        if len(data) > self.max_bytes:
            raise _too_large(name, what, len(data), self.max_bytes)
        detected = detect_media_type(data)
        if detected is None:
            raise ImageError(
                f"{name}: not a PNG, JPEG, GIF or WebP image (its first bytes are {data[:8]!r})",
                item=what,
            )
        if self.media_type is not None and self.media_type != detected:
            raise ImageError(
                f"{name}: media_type says {self.media_type!r} but the bytes are {detected!r}",
                item=what,
            )
        import hashlib  # here, not at the top: its OpenSSL binding costs `lash --help` ~3 ms

        digest = hashlib.sha256(data).hexdigest()
        return Image._of(
            media_type=detected, data=data, sha256=digest, path=self.path, max_bytes=self.max_bytes
        )

    def with_data(self, data: bytes) -> Image:
        """This stored image (a reference) with its bytes."""
        return Image._of(media_type=self.media_type, data=data, sha256=self.sha256)

    def ref(self) -> dict[str, Any]:
        """The JSON item a session stores for this (loaded) image."""
        if self.url is not None:
            media_type = self.media_type or _SUFFIXES.get(
                Path(self.url.split("?", 1)[0]).suffix.lower()
            )
            return {"type": "image", "media_type": media_type, "url": self.url}
        assert self.sha256 is not None and self.data is not None, "ref() of an unloaded image"
        return {
            "type": "image",
            "media_type": self.media_type,
            "sha256": self.sha256,
            "size": len(self.data),
        }


def _too_large(name: str, what: str, size: int, limit: int) -> ImageError:
    return ImageError(
        f"{name}: the image is {size:,} bytes, more than the {limit:,} allowed "
        "(lash.Image(..., max_bytes=...) raises the limit)",
        item=what,
    )


def image_ref(item: Any) -> Image | None:
    """The image a stored item refers to (its bytes not loaded), or ``None`` when the item is
    not an image reference."""
    if not isinstance(item, Mapping) or item.get("type") != "image":
        return None
    url, digest = item.get("url"), item.get("sha256")
    if isinstance(url, str):
        return Image._of(media_type=item.get("media_type"), url=url)
    if isinstance(digest, str):
        return Image._of(media_type=item.get("media_type"), sha256=digest)
    return None


resolve_here(globals())
