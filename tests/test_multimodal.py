"""Images in turn input: ``session.turn(text, items=[lash.Image(...)])`` with a file, bytes or a
URL; type detection and the errors naming the item; the bytes stored once as a content-addressed
blob with only a reference in the graph; and both providers' wire formats, through the local
wire servers.

Expected values come from the formats' published signatures (PNG, JPEG, GIF, WebP), sha256 of
the bytes, OpenAI's chat content parts (``image_url`` with a ``data:`` or ``https`` URL) and
Anthropic's ``image`` content blocks (``source`` ``base64`` or ``url``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import importlib
import json
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from anthropic_wire_server import AnthropicWireServer
from anthropic_wire_server import Reply as AnthropicReply
from openai_wire_server import Reply, WireServer
from test_sqlite_store import node_rows

import lash

# The smallest files of each format: their signatures, then a few bytes of body.
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(40))
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(30))
GIF = b"GIF89a" + b"\x01\x00\x01\x00\x00\x00\x00;"
WEBP = b"RIFF" + (24).to_bytes(4, "little") + b"WEBPVP8 " + bytes(16)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def scripted_core(store: str, script: list[Any], *plugins: object) -> lash.LashCore:
    return lash.LashCore(
        plugins=["standard", "stores", "scripted", *plugins],
        autoload=False,
        provider="scripted",
        store=store,
        options={"scripted": {"responses": script}},
    )


def provider_of(core: lash.LashCore) -> lash.ScriptedProvider:
    value = core.registry.of("provider")["scripted"].value
    assert isinstance(value, lash.ScriptedProvider)
    return value


def user_images(request: lash.ModelRequest) -> list[list[lash.Image]]:
    return [list(m.images) for m in request.messages if m.role == "user"]


# -- lash.Image ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "media_type"),
    [(PNG, "image/png"), (JPEG, "image/jpeg"), (GIF, "image/gif"), (WEBP, "image/webp")],
)
def test_the_type_is_read_from_the_bytes(data: bytes, media_type: str, tmp_path: Path) -> None:
    """Each accepted format is recognized from its signature, from bytes and from a file (whose
    name says nothing), with its sha256."""
    path = tmp_path / "picture.bin"
    path.write_bytes(data)
    for image in (lash.Image(data), lash.Image(path), lash.Image(str(path))):
        loaded = image.loaded("items[0]")
        assert (loaded.media_type, loaded.data, loaded.sha256) == (media_type, data, sha(data))


def test_bad_images_fail_naming_the_item(tmp_path: Path) -> None:
    """A missing file, a file too large, bytes of another type, a media_type contradicting the
    bytes and a directory: each an ImageError naming the item (and the file)."""
    missing = tmp_path / "missing.png"
    big = tmp_path / "big.png"
    big.write_bytes(PNG + bytes(1000))
    text = tmp_path / "notes.png"
    text.write_bytes(b"just some text, not an image")
    cases = [
        (lash.Image(missing), "items[2] (file '" + str(missing) + "'): the image file does not"),
        (
            lash.Image(big, max_bytes=500),
            f"is {len(PNG) + 1000:,} bytes, more than the 500 allowed",
        ),
        (
            lash.Image(PNG, max_bytes=10),
            f"items[2]: the image is {len(PNG)} bytes, more than the 10",
        ),
        (lash.Image(text), "not a PNG, JPEG, GIF or WebP image"),
        (lash.Image(GIF, media_type="image/png"), "media_type says 'image/png' but the bytes"),
        (lash.Image(tmp_path), "is a directory, not an image file"),
    ]
    for image, expected in cases:
        with pytest.raises(lash.ImageError) as info:
            image.loaded("items[2]")
        assert expected in str(info.value)
        assert info.value.item == "items[2]"
    with pytest.raises(lash.ImageError, match="not an image type lash sends"):
        lash.Image(PNG, media_type="image/bmp")
    with pytest.raises(lash.ImageError, match="file path, bytes or an http"):
        lash.Image(42)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_session_turn_refuses_a_bad_image_before_anything_runs(tmp_path: Path) -> None:
    """session.turn() with a missing file raises ImageError naming the session and the item;
    the model is not called and nothing is committed."""
    async with scripted_core("memory://", [{"text": "never"}]) as core:
        session = await core.session("s").open()
        with pytest.raises(lash.ImageError) as info:
            session.turn("look", items=["a note", lash.Image(tmp_path / "nope.jpg")])
        assert info.value.session_id == "s" and info.value.item == "items[1]"
        assert "session 's': items[1] (file " in str(info.value)
        assert "nope.jpg" in str(info.value) and "does not exist" in str(info.value)
        assert provider_of(core).requests == []
        assert session.revision == 0


# -- stored once, by reference -----------------------------------------------------------------


@pytest.mark.anyio
async def test_an_image_is_stored_once_and_the_graph_holds_a_reference(tmp_path: Path) -> None:
    """Two turns with the same image (a file, then its bytes) in a SQLite file: one blob row,
    the user nodes carry {type, media_type, sha256, size} only, and every model call gets the
    bytes back, also after a restart (loaded from the store)."""
    db = tmp_path / "lash.db"
    photo = tmp_path / "photo.png"
    photo.write_bytes(PNG)
    script: list[Any] = [{"text": "A chart."}, {"text": "Same chart."}, {"text": "Still."}]
    ref = {"type": "image", "media_type": "image/png", "sha256": sha(PNG), "size": len(PNG)}
    async with scripted_core(f"sqlite:///{db}", script) as core:
        session = await core.session("s").open()
        first = await session.turn("What is this?", items=[lash.Image(photo)]).run()
        second = await session.turn("And this?", items=[lash.Image(PNG)]).run()
        assert (first.outcome, second.outcome) == ("completed", "completed")
        requests = provider_of(core).requests
        assert [[i.data for i in images] for images in user_images(requests[0])] == [[PNG]]
        # The second call sees both user messages' images, each with its bytes.
        assert [[(i.media_type, i.data) for i in imgs] for imgs in user_images(requests[1])] == [
            [("image/png", PNG)],
            [("image/png", PNG)],
        ]
        users = [n for n in session.nodes if isinstance(n, lash.UserMessage)]
        assert [n.items for n in users] == [(ref,), (ref,)]
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT sha256, size, data FROM media_blobs").fetchall() == [
            (sha(PNG), len(PNG), PNG)
        ]
    finally:
        conn.close()
    rows = [(node[3], node[6]) for node in node_rows(db)]  # (kind, data) of each node
    stored = [json.loads(data) for _, data in rows]
    users_json = [json.loads(data) for kind, data in rows if kind == "user"]
    assert [n[2] for n in users_json] == [[ref], [ref]]  # positional: [parent, text, items]
    assert base64.b64encode(PNG).decode() not in json.dumps(stored)
    # A new process: the prompt's images come from the store.
    async with scripted_core(f"sqlite:///{db}", [{"text": "Still."}]) as core:
        session = await core.session("s").open(must_exist=True)
        assert (await session.turn("Once more").run()).outcome == "completed"
        (request,) = provider_of(core).requests
        assert [[i.data for i in imgs] for imgs in user_images(request)] == [[PNG], [PNG], []]


@pytest.mark.anyio
async def test_a_url_image_is_kept_as_its_url() -> None:
    """An https image is not downloaded: the node keeps its URL (and the type its name says),
    the prompt passes the URL on."""
    url = "https://example.com/pics/cat.webp?size=large"
    async with scripted_core("memory://", [{"text": "A cat."}]) as core:
        session = await core.session("s").open()
        await session.turn("Who?", items=[lash.Image(url)]).run()
        (user,) = [n for n in session.nodes if isinstance(n, lash.UserMessage)]
        assert user.items == ({"type": "image", "media_type": "image/webp", "url": url},)
        (request,) = provider_of(core).requests
        ((image,),) = user_images(request)
        assert (image.url, image.data) == (url, None)


@pytest.mark.anyio
async def test_queued_input_with_an_image_reaches_the_drained_turn() -> None:
    """core.enqueue(..., items=[lash.Image(bytes)]) queues a reference (the bytes go to the
    store); the drained turn's model call gets the image."""
    async with scripted_core("memory://", [{"text": "Seen."}]) as core:
        pending = await core.enqueue("q", "Look at this", items=[lash.Image(JPEG)])
        ref = {"type": "image", "media_type": "image/jpeg", "sha256": sha(JPEG), "size": len(JPEG)}
        assert pending.items == (ref,)
        assert await core.store.get_blob(sha(JPEG)) == JPEG
        session = await core.session("q").open()
        results = await session.drain()
        assert [r.outcome for r in results] == ["completed"]
        (request,) = provider_of(core).requests
        assert [[i.data for i in imgs] for imgs in user_images(request)] == [[JPEG]]


@pytest.mark.anyio
async def test_a_missing_blob_fails_the_turn_naming_it() -> None:
    """A node whose blob the store lost: the turn fails with an error naming the digest."""
    async with scripted_core("memory://", [{"text": "A."}, {"text": "B."}]) as core:
        session = await core.session("s").open()
        await session.turn("one", items=[lash.Image(GIF)]).run()
        core.store._blobs.clear()  # type: ignore[attr-defined]  # what a lost blob looks like
        await session.park()
        session = await core.session("s").open()
        result = await session.turn("two").run()
    assert result.outcome == "failed"
    assert result.error is not None and sha(GIF) in result.error
    assert "is not in the store" in result.error


# -- the providers' wire formats ---------------------------------------------------------------


@pytest.fixture
def openai_server() -> Iterator[WireServer]:
    with WireServer() as wire:
        yield wire


@pytest.fixture
def anthropic_server() -> Iterator[AnthropicWireServer]:
    with AnthropicWireServer() as wire:
        yield wire


async def compare(plugin: str, base_url: str, *images: lash.Image) -> None:
    """One turn "Compare" with ``images``, through provider ``plugin`` at ``base_url``."""
    core = lash.LashCore(
        plugins=["standard", "stores", plugin],
        autoload=False,
        provider=plugin,
        model="vision-model",
        store="memory://",
        options={plugin: {"base_url": base_url, "api_key": "sk-test", "max_retries": 0}},
    )
    async with core:
        session = await core.session("s").open()
        result = await session.turn("Compare", items=images).run()
    assert result.outcome == "completed", result.error


@pytest.mark.anyio
async def test_openai_gets_content_parts_with_data_and_https_urls(
    openai_server: WireServer,
) -> None:
    """The OpenAI request's user message is a list of content parts: the text, then one
    image_url part per image (bytes as a data: URL with their type, a URL as it is)."""
    openai_server.push(Reply(text=["Two pictures."]))
    url = "https://example.com/b.jpg"
    await compare("openai", openai_server.base_url, lash.Image(PNG), lash.Image(url))
    (request,) = openai_server.requests
    (user,) = [m for m in request.body["messages"] if m["role"] == "user"]
    assert user["content"] == [
        {"type": "text", "text": "Compare"},
        {
            "type": "image_url",
            "image_url": {"url": "data:image/png;base64," + base64.b64encode(PNG).decode()},
        },
        {"type": "image_url", "image_url": {"url": url}},
    ]


@pytest.mark.anyio
async def test_anthropic_gets_image_blocks_with_base64_and_url_sources(
    anthropic_server: AnthropicWireServer,
) -> None:
    """The Anthropic request's user message holds image blocks (source base64 with the media
    type, or url), then the text block."""
    anthropic_server.push(AnthropicReply(text=["Two pictures."]))
    url = "https://example.com/b.gif"
    await compare("anthropic", anthropic_server.base_url, lash.Image(WEBP), lash.Image(url))
    (request,) = anthropic_server.requests
    assert request.body["messages"] == [
        {
            "role": "user",
            "content": [
                {
                    "type": "image",
                    "source": {
                        "type": "base64",
                        "media_type": "image/webp",
                        "data": base64.b64encode(WEBP).decode(),
                    },
                },
                {"type": "image", "source": {"type": "url", "url": url}},
                {"type": "text", "text": "Compare"},
            ],
        }
    ]


EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"


@pytest.fixture
def example_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    sys.modules.pop("multimodal", None)
    yield
    sys.modules.pop("multimodal", None)


@pytest.mark.usefixtures("example_path")
def test_multimodal_example_prints_what_the_page_shows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/examples/multimodal.py: the model gets every image of the frame, the nodes keep
    references, the store one blob; its output is docs/examples/multimodal.txt."""
    example = importlib.import_module("multimodal")
    asyncio.run(example.main(tmp_path))
    out = capsys.readouterr().out
    assert out == (EXAMPLES / "multimodal.txt").read_text(encoding="utf-8")
    digest = sha(example.PIXEL)
    assert f"'sha256': '{digest[:12]}...', 'size': {len(example.PIXEL)}" in out
    conn = sqlite3.connect(tmp_path / "lash.db")
    try:
        assert conn.execute("SELECT sha256 FROM media_blobs").fetchall() == [(digest,)]
    finally:
        conn.close()


def test_store_copy_carries_the_image_blobs(tmp_path: Path) -> None:
    """``lash store copy`` puts the blobs a copied session's messages and queued input refer to
    in the destination, where the session goes on with its images."""
    from click.testing import CliRunner

    from lash.cli._main import cli

    src, dst = f"sqlite:///{tmp_path / 'src.db'}", f"sqlite:///{tmp_path / 'dst.db'}"

    async def fill() -> None:
        async with scripted_core(src, [{"text": "A pixel."}]) as core:
            session = await core.session("s").open()
            await session.turn("Look", items=[lash.Image(PNG)]).run()
            await core.enqueue("s", "And later this", items=[lash.Image(GIF)])

    async def go_on() -> list[list[bytes | None]]:
        async with scripted_core(dst, [{"text": "Both."}]) as core:
            assert await core.store.get_blob(sha(PNG)) == PNG
            assert await core.store.get_blob(sha(GIF)) == GIF
            session = await core.session("s").open(must_exist=True)
            (result,) = await session.drain()
            assert result.outcome == "completed", result.error
            (request,) = provider_of(core).requests
            return [[i.data for i in imgs] for imgs in user_images(request)]

    asyncio.run(fill())
    done = CliRunner().invoke(cli, ["store", "copy", src, dst])
    assert done.exit_code == 0, done.output
    assert asyncio.run(go_on()) == [[PNG], [GIF]]
