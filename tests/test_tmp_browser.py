"""The web page of ``lash serve`` in a real browser: headless Chromium (Debian's package, at
/usr/bin/chromium) driven by Playwright, against a real ``lash serve`` process with the scripted
model. Turns wait on a ``gate`` tool the test opens, so what the page shows mid-turn is checked
while the turn really runs. Screenshots of the main views go to ``tmp/artifacts/serve_browser``
(``$LASH_ARTIFACTS/serve_browser`` when set); they are not committed.

No skips: without Playwright or a Chromium that starts, these tests fail and say why (``./dev
setup`` installs both)."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _serve import Process, Server, environment, sse_events, write_config

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("LASH_ARTIFACTS") or ROOT / "tmp" / "artifacts") / "serve_browser"
CHROMIUM = "/usr/bin/chromium"
#: Headless, and nothing that reaches out of the machine (updates, sync, QUIC probes).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: How long the page may take to show something (a loaded 2-core machine runs the suite too).
WAIT_MS = 30_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module, driven by Playwright (never a browser download)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        pytest.fail(f"the browser tests need Playwright's Python package ({exc}): ./dev setup")
    if not Path(CHROMIUM).is_file():
        pytest.fail(
            f"the browser tests need Chromium at {CHROMIUM}: apt-get install -y chromium "
            "(./dev setup installs it when run as root)"
        )
    with sync_playwright() as playwright:
        try:
            chromium = playwright.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
            )
        except Exception as exc:
            pytest.fail(f"Chromium at {CHROMIUM} cannot be started: {exc}")
        yield chromium
        chromium.close()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    """Start ``lash serve`` with the scripted model playing ``responses`` and the ``gate`` tool
    (``serve(responses, *args, **env)``); every server started is stopped."""
    started: list[Server] = []

    def start(responses: list[dict[str, Any]], *args: str, **env: str) -> Server:
        site = write_config(tmp_path, responses)
        # The servetools plugin of the serve tests, plus browsertools (the gate).
        info = site / "browsertools-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            "Metadata-Version: 2.1\nName: browsertools\nVersion: 1.0\n", encoding="utf-8"
        )
        (info / "entry_points.txt").write_text(
            "[lash.plugins]\nbrowsertools = browser_tools\n", encoding="utf-8"
        )
        config = tmp_path / "lash.toml"
        text = config.read_text(encoding="utf-8")
        assert '"servetools"]' in text, text
        config.write_text(text.replace('"servetools"]', '"servetools", "browsertools"]'), "utf-8")
        server = Server(tmp_path, site, *args, **env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


class Pages:
    """Opens pages in fresh browser contexts and records their script errors and failed
    requests (``"404 URL"``) in ``errors``."""

    def __init__(self, browser: Any) -> None:
        self.browser = browser
        self.errors: list[str] = []
        self.contexts: list[Any] = []

    def open(self, **options: Any) -> Any:
        context = self.browser.new_context(**options)
        self.contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.on("pageerror", lambda exc: self.errors.append(f"script error: {exc}"))
        page.on(
            "console",
            # (a failed request is reported by its response, below, with its URL)
            lambda message: (
                self.errors.append(f"console: {message.text}")
                if message.type == "error"
                and not message.text.startswith("Failed to load resource")
                else None
            ),
        )
        page.on(
            "response",
            lambda response: (
                self.errors.append(f"{response.status} {response.url}")
                if response.status >= 400
                else None
            ),
        )
        return page


@pytest.fixture
def pages(browser: Any, serve: Any) -> Iterator[Pages]:
    """The test's pages; closed before its servers stop (an open event stream would hold up a
    server's graceful shutdown)."""
    opened = Pages(browser)
    yield opened
    for context in opened.contexts:
        context.close()


def screenshot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def entries(page: Any, selector: str) -> list[Any]:
    """What the page shows in a transcript (``selector``: its list), one entry per item: the
    role and text of messages, ``[tool, name, arguments, result]`` of tool calls, the frame
    and the outcome."""
    return page.eval_on_selector_all(
        f"{selector} > li, {selector} > li.turn-live > *:not(.row)",
        """items => items.filter(item => !item.classList.contains("turn-live")).map(item => {
            const tool = item.matches(".tool") ? item : item.querySelector(":scope > .tool");
            if (tool) {
                const result = tool.querySelector(".result pre");
                return ["tool", tool.querySelector("code").textContent,
                        JSON.parse(tool.querySelector(".args").textContent),
                        result ? result.textContent : null];
            }
            if (item.matches(".frame")) return ["frame", item.textContent.trim()];
            if (item.matches(".outcome")) return ["outcome", item.textContent.trim()];
            return [item.querySelector(".role").textContent,
                    item.querySelector(".text").textContent];
        })""",
    )


def run_now(page: Any, url: str, text: str) -> None:
    """Open the session view at ``url``, type ``text``, run it as a turn now (Ctrl+Enter) and
    wait for its outcome."""
    page.goto(url)
    page.wait_for_selector("#connection:text('live')")
    page.fill("#message", text)
    page.press("#message", "Control+Enter")
    page.wait_for_selector("#transcript .outcome")


def committed_after(url: str, session_id: str, cursor: str | None) -> list[tuple[str, str]]:
    """``(cursor, type)`` of the session's committed events after ``cursor``, up to its next
    ``turn_committed``, read from the server's stream by a client that is not the page."""
    got: list[tuple[str, str]] = []
    query = f"?after={cursor}" if cursor else ""
    with (
        httpx.Client(timeout=WAIT_MS / 1000) as client,
        client.stream("GET", f"{url}/sessions/{session_id}/events{query}") as response,
    ):
        for event_id, data in sse_events(response):
            if not data["live"]:
                got.append((str(event_id), data["type"]))
            if data["type"] == "turn_committed":
                return got
    raise AssertionError(f"the stream ended before the turn was committed: {got}")


#: The model's script for the chat: text and a tool call, text and a tool call waiting for gate
#: "one", text and a tool call waiting for gate "two", then the answer. (A round's calls report
#: their results together, when its slowest call is done: a gate gets a round of its own.)
CHAT = [
    {
        "text": "Let me shout it first.",
        "chunk_size": 4,
        "tool_calls": [{"name": "shout", "arguments": {"text": "hello"}}],
    },
    {"text": "Now the first gate.", "tool_calls": [{"name": "gate", "arguments": {"name": "one"}}]},
    {
        "text": "Now the second gate.",
        "chunk_size": 4,
        "tool_calls": [{"name": "gate", "arguments": {"name": "two"}}],
    },
    {
        "text": "The tool said HELLO.",
        "chunk_size": 3,
        "usage": {"input_tokens": 11, "output_tokens": 5},
    },
    # The second message's turn: a tool call waiting for gate "three", then the answer.
    {"text": "Waving.", "tool_calls": [{"name": "gate", "arguments": {"name": "three"}}]},
    {"text": "Waved.", "usage": {"input_tokens": 20, "output_tokens": 2}},
]


def test_a_chat_streams_live_and_a_reload_mid_turn_misses_nothing(
    serve: Any, pages: Pages, tmp_path: Path
) -> None:
    """Type a message: the streamed text and the tool calls appear while the turn runs; a
    second message waits in the queue; reload mid-turn: the rest streams in, and the finished
    transcript is the whole turn, every committed event received once, in order, with no gap;
    then the second message is answered."""
    server = serve(CHAT, "--worker")
    page = pages.open(viewport={"width": 1000, "height": 900})
    page.goto(f"{server.url}/")
    page.wait_for_selector("#sessions-empty:not([hidden])")
    page.fill("#open-id", "chat")
    page.press("#open-id", "Enter")
    page.wait_for_selector("#session-view:not([hidden])")
    page.wait_for_selector("#connection:text('live')")

    page.fill("#message", "Shout hello, please")
    page.press("#message", "Enter")
    page.wait_for_selector(".turn-live .tool:has(code:text-is('gate'))")
    # The first model call streamed, as it came: one text node per chunk of 4 characters.
    text = page.locator(".turn-live .assistant .text").first
    assert text.text_content() == "Let me shout it first."
    assert text.evaluate("node => node.childNodes.length") == math.ceil(22 / 4)
    assert entries(page, "#live") == [
        ["assistant", "Let me shout it first."],
        ["tool", "shout", {"text": "hello"}, "HELLO"],
        ["assistant", "Now the first gate."],
        ["tool", "gate", {"name": "one"}, None],
    ]
    assert entries(page, "#claimed") == [["user · being answered", "Shout hello, please"]]
    assert page.locator("#transcript > li").count() == 0  # nothing committed yet
    screenshot(page, "session-live")
    page.fill("#message", "And then wave")
    page.press("#message", "Enter")
    page.wait_for_selector("#queue li")
    assert page.locator("#queue li").all_text_contents() == ["queuedAnd then wave"]

    page.reload()
    page.wait_for_selector("#connection:text('live')")
    page.wait_for_selector("#claimed li")
    snapshot_cursor = page.evaluate("window.lashPage.snapshotCursor")
    (tmp_path / "one").touch()
    page.wait_for_selector(".turn-live .tool:has(code:text-is('gate'))")
    assert entries(page, "#live") == [
        ["assistant", "Now the second gate."],
        ["tool", "gate", {"name": "two"}, None],
    ]
    screenshot(page, "session-reloaded-live")

    assert page.locator("#queue li .text").all_text_contents() == ["And then wave"]

    # The first turn ends; the worker goes on with the queued message (its turn runs live).
    (tmp_path / "two").touch()
    page.wait_for_selector("#transcript .outcome")
    page.wait_for_function(
        """() => [...document.querySelectorAll('.turn-live')].map(turn => turn.textContent)
            .join().includes('three') && document.querySelectorAll('.turn-live').length === 1"""
    )
    assert entries(page, "#live") == [
        ["assistant", "Waving."],
        ["tool", "gate", {"name": "three"}, None],
    ]
    assert entries(page, "#claimed") == [["user · being answered", "And then wave"]]
    assert page.locator("#queue > li").count() == 0
    assert entries(page, "#transcript") == [
        ["frame", "frame: root"],
        ["user", "Shout hello, please"],
        ["assistant", "Let me shout it first."],
        ["tool", "shout", {"text": "hello"}, "HELLO"],
        ["assistant", "Now the first gate."],
        ["tool", "gate", {"name": "one"}, "gate one opened"],
        ["assistant", "Now the second gate."],
        ["tool", "gate", {"name": "two"}, "gate two opened"],
        ["assistant", "The tool said HELLO."],
        ["outcome", "completed"],
    ]
    assert page.locator("#usage-box summary").text_content() == "Usage: 11 in / 5 out tokens"

    # After the reload the page got every committed event after its snapshot, once, in order:
    # exactly what another client reading the stream from the same cursor gets.
    seen = page.evaluate("window.lashPage")
    assert seen["gaps"] == 0
    expected = committed_after(server.url, "chat", snapshot_cursor)
    assert expected[-1][1] == "turn_committed"
    assert seen["cursors"][: len(expected)] == [cursor for cursor, _ in expected]

    (tmp_path / "three").touch()
    page.wait_for_selector("#transcript .outcome >> nth=1")
    page.wait_for_selector(".turn-live", state="detached")
    assert entries(page, "#transcript")[-5:] == [
        ["user", "And then wave"],
        ["assistant", "Waving."],
        ["tool", "gate", {"name": "three"}, "gate three opened"],
        ["assistant", "Waved."],
        ["outcome", "completed"],
    ]
    assert page.locator("#queue > li, #claimed > li").count() == 0
    assert page.locator("#usage-box summary").text_content() == "Usage: 31 in / 7 out tokens"
    screenshot(page, "session-done")
    # (the one failed request: the session before its first message, which has no history)
    assert pages.errors == [f"404 {server.url}/sessions/chat"]


def test_the_page_works_by_keyboard_alone(serve: Any, pages: Pages) -> None:
    """Tab reaches every control in reading order, with a visible focus ring; Enter opens a
    session and sends a message, which the worker answers."""
    server = serve([{"text": "First answer."}, {"text": "Second answer."}], "--worker")
    httpx.post(f"{server.url}/sessions/kb/turns?wait=true", json={"text": "first"}, timeout=30)
    page = pages.open(viewport={"width": 900, "height": 700})
    page.goto(f"{server.url}/")
    page.wait_for_selector(".session-link")

    def focused() -> dict[str, Any]:
        return page.evaluate(
            """() => {
                const node = document.activeElement;
                const style = getComputedStyle(node);
                return {id: node.id, tag: node.tagName, text: node.textContent.trim(),
                        outline: style.outlineStyle, width: parseFloat(style.outlineWidth)};
            }"""
        )

    order = []
    for _ in range(6):
        page.keyboard.press("Tab")
        now = focused()
        assert now["outline"] != "none" and now["width"] >= 2, now  # a visible focus ring
        order.append(now["id"] or now["text"])
    assert order == ["Skip to content", "lash serve", "refresh-sessions", "open-id", "Open", "kb"]
    screenshot(page, "sessions")

    page.keyboard.press("Enter")  # on the session's link
    page.wait_for_selector("#transcript .outcome")
    assert page.evaluate("location.hash") == "#/sessions/kb"
    for _ in range(10):
        page.keyboard.press("Tab")
        if focused()["id"] == "message":
            break
    else:
        raise AssertionError(f"Tab never reached the message box (last: {focused()})")
    page.keyboard.type("second")
    page.keyboard.press("Enter")
    page.wait_for_selector("#transcript .outcome >> nth=1")
    assert entries(page, "#transcript")[-3:] == [
        ["user", "second"],
        ["assistant", "Second answer."],
        ["outcome", "completed"],
    ]
    assert page.input_value("#message") == ""
    assert pages.errors == []


def test_the_page_reads_on_a_phone(serve: Any, pages: Pages) -> None:
    """On a 390-pixel-wide phone screen nothing scrolls sideways, long arguments wrap, and the
    message box and its buttons fit."""
    long_word = "x" * 300
    server = serve(
        [
            {"tool_calls": [{"name": "shout", "arguments": {"text": long_word}}]},
            {"text": "Done: " + long_word.upper()},
        ]
    )
    httpx.post(f"{server.url}/sessions/phone/turns?wait=true", json={"text": "go"}, timeout=30)
    page = pages.open(
        viewport={"width": 390, "height": 844},
        is_mobile=True,
        has_touch=True,
        device_scale_factor=2,
    )
    page.goto(f"{server.url}/#/sessions/phone")
    page.wait_for_selector("#transcript .outcome")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page is {width} pixels wide on a 390-pixel screen"
    for selector in ("#message", "#send", "#run-now"):
        box = page.locator(selector).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, selector
    screenshot(page, "phone")
    assert pages.errors == []


def test_the_page_passes_its_token_and_runs_a_turn_now(serve: Any, pages: Pages) -> None:
    """Opened with ?token=, the page sends the token on each API call (bearer header) and on
    the event stream (query); Ctrl+Enter runs a turn in the server (no worker needed). Without
    the token the page says it is needed."""
    secret = "page-token-7f3a"
    server = serve([{"text": "Ran now."}], LASH_SERVE_TOKEN=secret)
    requests: list[tuple[str, str | None]] = []
    page = pages.open(viewport={"width": 900, "height": 700})
    page.on(
        "request",
        lambda request: (
            requests.append((request.url, request.headers.get("authorization")))
            if "/sessions" in request.url
            else None
        ),
    )
    run_now(page, f"{server.url}/?token={secret}#/sessions/tok", "run it")
    assert entries(page, "#transcript")[-2:] == [
        ["assistant", "Ran now."],
        ["outcome", "completed"],
    ]
    streams = [url for url, _ in requests if "/events" in url]
    calls = [(url, auth) for url, auth in requests if "/events" not in url]
    assert streams and all(f"token={secret}" in url for url in streams), streams
    assert calls and all(auth == f"Bearer {secret}" for _, auth in calls), calls
    assert any(url.endswith("/sessions/tok/turns") for url, _ in calls), calls
    assert pages.errors == [f"404 {server.url}/sessions/tok"]  # no history before the turn

    # A browser without the token (no cookie either) is told what is missing; no secret shown.
    stranger = pages.open(viewport={"width": 900, "height": 700})
    stranger.goto(f"{server.url}/sessions")
    assert stranger.evaluate("document.body.textContent").count(secret) == 0
    body = json.loads(stranger.evaluate("document.body.textContent"))
    assert body["error"]["code"] == "unauthorized"


def test_the_page_works_mounted_in_a_host_app(serve: Any, pages: Pages, tmp_path: Path) -> None:
    """Mounted under /lash in a host's own app (create_app), the page loads its files and
    calls the API under /lash/, and runs a turn there."""
    script = tmp_path / "host-script.json"
    script.write_text(json.dumps([{"text": "Hosted answer."}]), encoding="utf-8")
    err = tmp_path / "host.err"
    host_py = Path(__file__).parent / "browser_host.py"
    with err.open("wb") as sink:
        host = subprocess.Popen(
            [sys.executable, str(host_py), str(tmp_path / "host.db"), str(script)],
            env=environment(tmp_path),
            stderr=sink,
            stdout=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + 30
        while not (found := re.search(r"host: (\S+)", err.read_text("utf-8"))):
            assert host.poll() is None and time.monotonic() < deadline, err.read_text("utf-8")
            time.sleep(0.05)
        url = found.group(1)
        requested: list[str] = []
        page = pages.open(viewport={"width": 900, "height": 700})
        page.on("request", lambda request: requested.append(request.url))
        run_now(page, f"{url}#/sessions/hosted", "hello host")
        assert entries(page, "#transcript")[-3:] == [
            ["user", "hello host"],
            ["assistant", "Hosted answer."],
            ["outcome", "completed"],
        ]
        assert all(u.startswith(url) for u in requested), requested
        assert {f"{url}static/app.js", f"{url}static/app.css"} <= set(requested)
        print("REQUESTED", [u.replace(url, "") for u in requested]); print("ERRORS", pages.errors)
    finally:
        for context in pages.contexts:
            context.close()
        host.send_signal(signal.SIGTERM)
        try:
            host.wait(timeout=20)
        except subprocess.TimeoutExpired:
            host.kill()
            host.wait()


def test_stop_cancels_the_running_turn(serve: Any, pages: Pages) -> None:
    """The running turn's Stop button cancels it (from the server, while a worker runs it): it
    is committed as stopped, reason cancelled, by the server."""
    server = serve(
        [{"text": "Waiting.", "tool_calls": [{"name": "gate", "arguments": {"name": "x"}}]}],
        "--worker",
    )
    page = pages.open(viewport={"width": 900, "height": 700})
    page.goto(f"{server.url}/#/sessions/stop")
    page.wait_for_selector("#connection:text('live')")
    page.fill("#message", "wait for ever")
    page.press("#message", "Enter")
    page.wait_for_selector(".turn-live .tool:has(code:text-is('gate'))")
    page.click(".turn-live .stop")
    page.wait_for_selector("#transcript .outcome")
    outcome = entries(page, "#transcript")[-1]
    assert outcome[0] == "outcome" and outcome[1].startswith("stopped cancelled"), outcome
    assert "by serve" in outcome[1], outcome
    assert page.locator(".turn-live").count() == 0
    assert pages.errors == [f"404 {server.url}/sessions/stop"]  # no history before the turn


def test_the_page_resumes_after_the_server_comes_back(
    serve: Any, pages: Pages, tmp_path: Path
) -> None:
    """The server dies (SIGKILL); meanwhile a ``lash worker`` answers input queued for the
    session; the server starts again on its port: the page reconnects after its own cursor
    and shows that turn, having received every committed event it missed, in order."""
    with socket.socket() as probe:  # a free port, to start the server on it twice
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    server = serve([{"text": "Answered by the server."}], "--port", port)
    page = pages.open(viewport={"width": 900, "height": 700})
    run_now(page, f"{server.url}/#/sessions/back", "first")
    before = page.evaluate("window.lashPage.cursors.length")
    last = page.evaluate("window.lashPage.cursors.at(-1)")

    server.proc.kill()
    server.proc.wait()
    page.wait_for_selector("#connection:text('reconnecting…')")
    # While the server is down: input queued and answered by another process.
    site = write_config(tmp_path, [{"text": "Answered by the worker."}])
    for args in (["sessions", "enqueue", "back", "while away"], ["worker", "--once"]):
        done = Process(tmp_path, site, args)
        assert done.proc.wait(timeout=60) == 0, done.stderr()

    again = Server(tmp_path, site, "--port", port)
    try:
        # (the page retries every 1, 2, 4, 8, then 10 seconds)
        page.wait_for_selector("#transcript .outcome >> nth=1", timeout=2 * WAIT_MS)
        assert entries(page, "#transcript")[-3:] == [
            ["user", "while away"],
            ["assistant", "Answered by the worker."],
            ["outcome", "completed"],
        ]
        expected = committed_after(again.url, "back", last)
        cursors = page.evaluate("window.lashPage.cursors")
        assert cursors[before : before + len(expected)] == [cursor for cursor, _ in expected]
        assert page.evaluate("window.lashPage.gaps") == 0
    finally:
        for context in pages.contexts:
            context.close()
        again.stop()
