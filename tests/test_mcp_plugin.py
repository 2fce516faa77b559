"""The ``mcp`` builtin end to end, against real MCP servers from the registries: PyPI's
``mcp-server-time`` (stdio) and npm's ``@modelcontextprotocol/server-everything`` (stdio and
streamable HTTP; ``./dev setup`` installs it into .venv/mcp-servers). Servers start at the first
catalog, once per core, and stop with the core; a server that does not start is reported
(naming it and its command) while the rest works; errors of a call (an error result, a server
killed mid-call, no answer in time) come back as tool errors naming the server and the tool."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from _cores import make_core
from _recorder import Recorder
from click.testing import CliRunner

import lash
from lash.cli import cli
from lash_plugins_builtin import mcp

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[1]
EVERYTHING = (
    ROOT / ".venv/mcp-servers/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
)
TIME_SERVER = [sys.executable, "-m", "mcp_server_time", "--local-timezone", "UTC"]


@pytest.fixture
def everything() -> list[str]:
    """The command of the everything server (stdio); the test fails, saying why, without it."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: the mcp tests need it (Debian: apt-get install nodejs)")
    if not EVERYTHING.is_file():
        pytest.fail(f"{EVERYTHING} is missing: run ./dev setup, which installs it with npm")
    return [node, str(EVERYTHING), "stdio"]


def time_server() -> dict[str, Any]:
    try:
        import mcp_server_time  # noqa: F401  (installed by the dev extra)
    except ImportError:
        pytest.fail("mcp-server-time is not installed: run ./dev setup (the dev extra has it)")
    return {"command": TIME_SERVER[0], "args": TIME_SERVER[1:]}


def stdio(command: list[str], **more: Any) -> dict[str, Any]:
    return {"command": command[0], "args": command[1:], **more}


def children(marker: str) -> list[int]:
    """Live child processes of this test whose command line contains ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue  # it exited meanwhile
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == os.getpid() and state != "Z" and marker in cmdline:
            found.append(int(entry.name))
    return found


def mcp_core(
    tmp_path: Path, rec: Recorder, servers: dict[str, Any], **kwargs: Any
) -> lash.LashCore:
    return make_core(tmp_path, rec, mcp, options={"mcp": {"servers": servers}}, **kwargs)


def call(name: str, call_id: str, **arguments: Any) -> dict[str, Any]:
    return {"tool_calls": [{"name": name, "id": call_id, "arguments": arguments}]}


@pytest.fixture
def progress() -> Iterator[asyncio.Event]:
    """Set when the plugin logs a progress notification of a running call (the server is
    working on it)."""
    seen = asyncio.Event()

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "progress" in record.getMessage():
                seen.set()

    logger = logging.getLogger("lash.mcp")
    handler, level = Watch(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield seen
    logger.removeHandler(handler)
    logger.setLevel(level)


# -- configuration -------------------------------------------------------------------------------


def test_mcp_is_opt_in_and_lists_one_source_per_server() -> None:
    """Installed, it loads only when named; named, each server is a tool source; nothing runs."""
    default = lash.LashCore(plugins=[], builtins="default", store="memory://")
    (info,) = [p for p in default.plugins if p.name == "mcp"]
    assert info.status == "disabled" and "opt-in" in (info.error or "")
    core = lash.LashCore(
        plugins=["mcp"],
        builtins=(),
        store="memory://",
        options={"mcp": {"servers": {"time": time_server(), "web": {"url": "http://x/mcp"}}}},
    )
    assert core.registry.by_plugin("mcp") == {"tool_source": ["mcp:time", "mcp:web"]}
    assert children("mcp_server_time") == []


@pytest.mark.parametrize(
    ("server", "problem"),
    [
        ({}, "needs either command"),
        ({"command": "x", "url": "http://h/mcp"}, "needs either command"),
        ({"url": "ftp://h/mcp"}, "url must be an http:// or https:// URL, got 'ftp://h/mcp'"),
        ({"command": "x", "timeout": 0}, "timeout must be above 0, got 0"),
    ],
)
def test_a_bad_server_entry_is_refused_naming_the_field(
    server: dict[str, Any], problem: str
) -> None:
    """Each server needs exactly one of command and url; values are checked at build."""
    with pytest.raises(lash.PluginLoadError) as caught:
        lash.LashCore(
            plugins=["mcp"],
            builtins=(),
            store="memory://",
            options={"mcp": {"servers": {"s": server}}},
            strict=True,
        )
    assert caught.value.plugin == "mcp"
    assert problem in str(caught.value) and "options.mcp.servers" in str(caught.value)


def test_server_names_must_fit_in_tool_names() -> None:
    """A server name with a dot (or too long) is refused: it begins its tools' names."""
    with pytest.raises(lash.PluginLoadError, match=r"server names must be .* got 'my\.srv'"):
        lash.LashCore(
            plugins=["mcp"],
            builtins=(),
            store="memory://",
            options={"mcp": {"servers": {"my.srv": {"command": "x"}}}},
            strict=True,
        )


def test_env_and_headers_are_never_shown(tmp_path: Path) -> None:
    """``lash plugins --json`` lists the servers as tool sources and shows env and headers as
    ***; nor does the options' repr show them."""
    config = tmp_path / "lash.toml"
    config.write_text(
        'plugins = ["mcp"]\nbuiltins = []\n[options.mcp.servers.a]\ncommand = "x"\n'
        'env = { API_KEY = "sk-123456" }\n[options.mcp.servers.b]\nurl = "https://h/mcp"\n'
        'headers = { Authorization = "Bearer tok-98765" }\n',
        encoding="utf-8",
    )
    listing = CliRunner().invoke(cli, ["--config", str(config), "plugins", "--all", "--json"])
    assert listing.exit_code == 0, listing.output
    assert "sk-123456" not in listing.output and "tok-98765" not in listing.output
    (entry,) = [e for e in json.loads(listing.output) if e["name"] == "mcp"]
    assert entry["tool_sources"] == ["mcp:a", "mcp:b"]
    servers = entry["options"]["servers"]["value"]
    assert (servers["a"]["env"], servers["b"]["headers"]) == ("***", "***")
    core = lash.LashCore.from_config(config, store="memory://")
    assert "sk-123456" not in repr(core.plugin_options("mcp"))


def test_catalog_names_fit_what_providers_accept() -> None:
    """``server__tool``; characters outside [A-Za-z0-9_-] become '_'; a name past 64
    characters, or one the server already gave, ends in 8 hex digits of the tool's hash."""
    assert mcp._catalog_name("time", "get_current_time", set()) == "time__get_current_time"
    assert mcp._catalog_name("fs", "files.read/all", set()) == "fs__files_read_all"
    long = mcp._catalog_name("s", "x" * 80, set())
    assert len(long) == 64 and long.startswith("s__xxx") and long[-9] == "_"
    again = mcp._catalog_name("fs", "files_read", {"fs__files_read"})
    assert again != "fs__files_read" and again.startswith("fs__files_read_")


# -- a real stdio server ---------------------------------------------------------------------


async def test_tools_are_listed_and_called_in_a_turn(tmp_path: Path) -> None:
    """No server runs after open; the first model call offers the server's tools with their
    schemas; the model's call is answered by the server; a second session of the core uses
    the same server process; closing the core stops it."""
    rec = Recorder(
        [
            call("time__get_current_time", "c1", timezone="Asia/Tokyo"),
            {"text": "it is late"},
            {"text": "again"},
        ]
    )
    core = mcp_core(tmp_path, rec, {"time": time_server()})
    first = await core.session("a").open()
    assert children("mcp_server_time") == []
    result = await first.turn("what time is it in Tokyo?").run()
    assert result.outcome == "completed"
    tools = {t.name: t for t in rec.requests[0].tools}
    assert set(tools) == {"time__get_current_time", "time__convert_time"}
    assert tools["time__get_current_time"].parameters["required"] == ["timezone"]
    assert tools["time__convert_time"].parameters["properties"]["time"]["type"] == "string"
    (record,) = result.tool_calls
    assert not record.result.is_error
    answer = json.loads(record.result.content)
    assert answer["timezone"] == "Asia/Tokyo" and answer["datetime"].endswith("+09:00")
    (server,) = children("mcp_server_time")
    second = await core.session("b").open()
    assert (await second.turn("and now?").run()).outcome == "completed"
    assert [t.name for t in rec.requests[2].tools] == list(tools)
    assert children("mcp_server_time") == [server]
    await core.aclose()
    assert children("mcp_server_time") == []


async def test_an_error_result_is_a_tool_error_naming_server_and_tool(tmp_path: Path) -> None:
    """A result the server marks isError reaches the model as an error, naming both."""
    rec = Recorder([call("time__get_current_time", "c1", timezone="Mars/Olympus"), {"text": "?"}])
    async with mcp_core(tmp_path, rec, {"time": time_server()}) as core:
        session = await core.session("s").open()
        result = await session.turn("time on Mars?").run()
    (record,) = result.tool_calls
    assert record.result.is_error
    assert record.result.content.startswith(
        "MCP server 'time', tool 'get_current_time' reported an error: "
    )
    assert "Mars/Olympus" in record.result.content


async def test_a_server_that_does_not_start_leaves_the_rest_working(tmp_path: Path) -> None:
    """A command that does not exist and a server that exits at start: both reported (plugin,
    hook, server, command; the server's stderr), once; the working server's tools are offered
    and answer."""
    missing = str(tmp_path / "no-such-server")
    broken = [*TIME_SERVER[:-1], "Mars/Olympus"]
    reported: list[lash.LashError] = []
    rec = Recorder([call("time__get_current_time", "c1", timezone="UTC"), {"text": "ok"}])
    servers = {"gone": {"command": missing}, "broken": stdio(broken), "time": time_server()}
    async with mcp_core(tmp_path, rec, servers, on_error=reported.append) as core:
        session = await core.session("s").open()
        result = await session.turn("time?").run()
    assert result.outcome == "completed"
    assert [t.name for t in rec.requests[0].tools] == [
        "time__get_current_time",
        "time__convert_time",
    ]
    assert json.loads(result.tool_calls[0].result.content)["timezone"] == "UTC"
    assert all(isinstance(e, lash.PluginError) for e in reported)
    assert {(e.plugin, e.hook) for e in reported} == {("mcp", "register_tools")}  # type: ignore[attr-defined]
    gone, bad = sorted(map(str, reported), key=lambda text: "gone" not in text)
    assert gone.startswith(
        f"tool source 'mcp:gone' could not list its tools: MCPServerError: MCP server 'gone' "
        f"(command [{missing!r}]) did not start: FileNotFoundError: "
    )
    assert f"MCP server 'broken' (command {broken}) did not start: " in bad
    assert bad.endswith(
        "its stderr ended with:\nError: invalid --local-timezone 'Mars/Olympus': not a known "
        "IANA timezone name"
    )


async def test_a_server_that_hangs_at_start_is_stopped_after_its_timeout(tmp_path: Path) -> None:
    """A program that never answers the handshake: reported after the server's timeout, its
    process stopped; the turn goes on without its tools."""
    hang = [sys.executable, "-c", "import time; time.sleep(120)  # lash-mcp-hang"]
    reported: list[lash.LashError] = []
    rec = Recorder([{"text": "ok"}])
    servers = {"stuck": stdio(hang, start_timeout=1)}
    async with mcp_core(tmp_path, rec, servers, on_error=reported.append) as core:
        session = await core.session("s").open()
        started = time.monotonic()
        result = await session.turn("hello").run()
        elapsed = time.monotonic() - started
        assert children("lash-mcp-hang") == []
    assert result.outcome == "completed" and rec.requests[0].tools == ()
    (error,) = reported
    assert "MCP server 'stuck' (command [" in str(error)
    assert str(error).endswith("did not start within 1 s (its start_timeout)")
    assert elapsed < 10  # 1 s, then the SDK's stop: stdin closed, 2 s, SIGTERM


# -- server-everything: stdio and streamable HTTP --------------------------------------------


async def test_a_server_killed_mid_call_is_a_tool_error_then_restarted(
    tmp_path: Path, everything: list[str], progress: asyncio.Event
) -> None:
    """SIGKILL while the server works on a call: the call is an error naming server and tool
    at once (not after its 30 s); the next call starts a new server process, which answers."""
    rec = Recorder(
        [
            call("ev__trigger-long-running-operation", "c1", duration=30, steps=30),
            {"text": "it broke"},
            call("ev__echo", "c2", message="still here?"),
            {"text": "yes"},
        ]
    )
    async with mcp_core(tmp_path, rec, {"ev": stdio(everything)}) as core:
        session = await core.session("s").open()
        turn = asyncio.create_task(session.turn("work").run())
        await asyncio.wait_for(progress.wait(), 20)  # the server reports progress: it runs
        (victim,) = children(str(EVERYTHING))
        killed = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        result = await asyncio.wait_for(turn, 20)
        assert time.monotonic() - killed < 10
        (record,) = result.tool_calls
        assert record.result.is_error
        assert record.result.content == (
            "MCP server 'ev', tool 'trigger-long-running-operation': the server exited or its "
            "connection broke during the call, which got no answer; it is started again at "
            "the next call"
        )
        again = await session.turn("again").run()
        assert again.tool_calls[0].result.content == "Echo: still here?"
        (restarted,) = children(str(EVERYTHING))
        assert restarted != victim
    assert children(str(EVERYTHING)) == []


async def test_a_call_without_an_answer_times_out(tmp_path: Path, everything: list[str]) -> None:
    """A call longer than the server's timeout (1 s) is cancelled and answered with an error
    naming server and tool; the same server process answers the next call."""
    rec = Recorder(
        [
            call("ev__trigger-long-running-operation", "c1", duration=20, steps=1),
            call("ev__get-sum", "c2", a=2, b=3),
            {"text": "done"},
        ]
    )
    async with mcp_core(tmp_path, rec, {"ev": stdio(everything, timeout=1)}) as core:
        session = await core.session("s").open()
        started = time.monotonic()
        result = await session.turn("work").run()
        elapsed = time.monotonic() - started
        assert len(children(str(EVERYTHING))) == 1
    hung, summed = (r.result for r in result.tool_calls)
    assert hung.is_error and hung.content == (
        "MCP server 'ev', tool 'trigger-long-running-operation': no answer within 1 s (the "
        "server's timeout); the call was cancelled"
    )
    assert (summed.is_error, summed.content) == (False, "The sum of 2 and 3 is 5.")
    assert elapsed < 15


async def test_env_reaches_a_stdio_server(tmp_path: Path, everything: list[str]) -> None:
    """A server's env is added to the environment it runs in."""
    rec = Recorder([call("ev__get-env", "c1"), {"text": "ok"}])
    server = stdio(everything, env={"LASH_MCP_PROBE": "seen-by-server"})
    async with mcp_core(tmp_path, rec, {"ev": server}) as core:
        result = await (await core.session("s").open()).turn("env?").run()
    assert json.loads(result.tool_calls[0].result.content)["LASH_MCP_PROBE"] == "seen-by-server"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class HttpServer:
    """The everything server over streamable HTTP on a fixed local port, started (and
    started again) by the test."""

    def __init__(self, command: list[str]) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.command = [*command[:-1], "streamableHttp"]
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.process: subprocess.Popen[str] | None = None

    async def start(self) -> None:
        self.process = process = subprocess.Popen(
            self.command,
            env={**os.environ, "PORT": str(self.port)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stderr is not None
        while line := await asyncio.to_thread(process.stderr.readline):
            if f"listening on port {self.port}" in line:
                return
        pytest.fail(f"the everything server (HTTP) did not start: {self.command}")

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            assert self.process.stderr is not None
            self.process.stderr.close()
            self.process = None


@pytest.fixture
async def http_server(everything: list[str]) -> AsyncIterator[HttpServer]:
    server = HttpServer(everything)
    await server.start()
    try:
        yield server
    finally:
        server.kill()


async def test_a_streamable_http_server(tmp_path: Path, http_server: HttpServer) -> None:
    """A url server: its tools are offered and called over streamable HTTP."""
    rec = Recorder([call("web__get-sum", "c1", a=2, b=40), {"text": "42"}])
    async with mcp_core(tmp_path, rec, {"web": {"url": http_server.url}}) as core:
        result = await (await core.session("s").open()).turn("2+40?").run()
    assert "web__echo" in [t.name for t in rec.requests[0].tools]
    assert result.tool_calls[0].result.content == "The sum of 2 and 40 is 42."


async def test_an_http_server_that_dies_mid_call_is_reconnected(
    tmp_path: Path, http_server: HttpServer, progress: asyncio.Event
) -> None:
    """The HTTP server killed during a call: an error naming server and tool; once it is
    back, the next call connects again (a new session) and is answered."""
    rec = Recorder(
        [
            call("web__trigger-long-running-operation", "c1", duration=30, steps=30),
            {"text": "it broke"},
            call("web__echo", "c2", message="back?"),
            {"text": "yes"},
        ]
    )
    async with mcp_core(tmp_path, rec, {"web": {"url": http_server.url}}) as core:
        session = await core.session("s").open()
        turn = asyncio.create_task(session.turn("work").run())
        await asyncio.wait_for(progress.wait(), 20)
        http_server.kill()
        result = await asyncio.wait_for(turn, 20)
        assert result.tool_calls[0].result.content == (
            "MCP server 'web', tool 'trigger-long-running-operation': the connection to the "
            "server broke during the call, which got no answer; the next call connects again"
        )
        await http_server.start()
        again = await session.turn("again").run()
    assert again.tool_calls[0].result.content == "Echo: back?"
