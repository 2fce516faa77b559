"""Store conformance checks: content-addressed blobs (``put_blob`` / ``get_blob``), where the
images of turn input are kept.

Expected values come from the ``Store`` protocol: a blob is stored under the sha256 of its bytes
(64 lowercase hex digits, as :func:`hashlib.sha256` writes it), bytes already stored are not
stored again, every byte value round-trips, and an unknown digest reads as ``None``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Awaitable, Callable

from lash._store.protocol import Store
from lash._testing.store_checks import expect, expect_equal, short


async def check_blob_round_trip(store: Store) -> None:
    """``put_blob`` returns the sha256 of the bytes; ``get_blob`` gives them back exactly (every
    byte value, NULs included, and an empty blob); an unknown digest is ``None``."""
    for data in (bytes(range(256)) * 4 + os.urandom(64), b"", b"\x00\x00png\x00"):
        digest = await store.put_blob(data)
        expect_equal(digest, hashlib.sha256(data).hexdigest(), "put_blob's digest (sha256 hex)")
        back = await store.get_blob(digest)
        expect(
            back == data,
            f"get_blob({digest}) must return the {len(data)} bytes stored, got {short(back)}",
        )
    unknown = hashlib.sha256(os.urandom(32)).hexdigest()
    expect_equal(await store.get_blob(unknown), None, "get_blob of a digest never stored")


async def check_blob_stored_once(store: Store) -> None:
    """Putting the same bytes again (also concurrently) returns the same digest and keeps them;
    different bytes get their own digest."""
    data = os.urandom(4096)
    digest = hashlib.sha256(data).hexdigest()
    results = await asyncio.gather(*(store.put_blob(data) for _ in range(4)))
    expect_equal(list(results), [digest] * 4, "the digests of four puts of the same bytes")
    expect_equal(await store.put_blob(data), digest, "a later put of the same bytes")
    expect(await store.get_blob(digest) == data, "the bytes after putting them five times")
    other = data[::-1] + b"!"
    other_digest = await store.put_blob(other)
    expect(other_digest != digest, "different bytes must get a different digest")
    expect(await store.get_blob(other_digest) == other, "the other blob's bytes")
    expect(await store.get_blob(digest) == data, "the first blob after the other was put")


#: The checks of this module, in the order they run.
CHECKS: tuple[Callable[[Store], Awaitable[None]], ...] = (
    check_blob_round_trip,
    check_blob_stored_once,
)
