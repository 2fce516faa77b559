"""``mcp``: the tools of MCP servers (Model Context Protocol), offered to the model as tools.

Each server in ``[options.mcp.servers.NAME]`` is a program run on this machine (``command``,
``args``, ``env``: the stdio transport) or an endpoint (``url``: streamable HTTP). Its tools
appear in the catalog as ``NAME__tool``, with the server's descriptions and input schemas; a
call is forwarded to the server and its answer comes back as the tool result. Built on the
official ``mcp`` SDK (``pip install 'lash-sdk[mcp]'``).

A server starts **lazily**: when a session's catalog is first resolved (the first model call of
any session), once per core, shared by every session of the core; it is stopped when the core
closes. Its listing is kept for the core's life. A server that does not start is reported
(naming it and its command or URL) and left out; the other tools still work, and it is tried
again at a later catalog, no sooner than ``retry_after`` seconds later. What goes wrong in a
call comes back as an error result naming the server and the tool: an error the tool reports
(``isError``), a request the server refuses, a server that dies during the call (it is started,
or connected, again at the next call), a call not answered within the server's ``timeout`` (it
is cancelled).

Opt-in: a server is a program run, or an endpoint reached, with the host's rights.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs

import lash

if TYPE_CHECKING:
    # asyncio is imported where a server is reached: loading the plugin (`lash plugins`,
    # `lash --help`) must not pay for it.
    import asyncio

    import mcp_types

    from lash_plugins_builtin._mcp_link import Link

__all__ = ["SEPARATOR", "MCPOptions", "MCPServer", "MCPServerError"]

#: Between a server's name and its tool's name in the catalog: ``time__get_current_time``.
#: Not a dot: the OpenAI and Anthropic APIs accept tool names matching
#: ``^[a-zA-Z0-9_-]{1,64}$`` only, and so does lash for every tool.
SEPARATOR = "__"
#: A server's name: what providers accept in a tool name, leaving room for the tool's own.
_SERVER_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")
#: A character an MCP tool name may have that a provider's does not (MCP also allows ``.``
#: and ``/``): replaced with ``_`` in the catalog name.
_FOREIGN = re.compile(r"[^A-Za-z0-9_-]")
_MAX_NAME = 64
#: The MCP error code of a connection that closed (the server exited).
_CONNECTION_CLOSED = -32000
#: Seconds the kernel lets a call run beyond the server's timeouts (start, then call): a
#: backstop, as the server's own timeout answers first.
_BACKSTOP = 5.0


def _positive(instance: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be above 0, got {value}")


def _http_url(instance: Any, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None and urllib.parse.urlsplit(value).scheme not in ("http", "https"):
        raise ValueError(f"url must be an http:// or https:// URL, got {value!r}")


@attrs.frozen
class MCPServer:
    """One MCP server: a ``command`` to run (stdio) or a ``url`` to reach (streamable HTTP)."""

    command: str | None = lash.option(
        None, help="The program that runs the server (stdio transport); or set url."
    )
    args: list[str] = lash.option(factory=list, help="Its arguments.")
    env: dict[str, str] = lash.option(
        factory=dict,
        secret=True,
        help="Variables for its environment, added to the few the SDK passes on (HOME, PATH, "
        "SHELL, TERM, USER, LOGNAME); API keys belong here. Never shown.",
    )
    cwd: str | None = lash.option(None, help="The directory it runs in (default: the host's).")
    url: str | None = lash.option(
        None,
        validator=_http_url,
        help="The server's streamable HTTP endpoint (http:// or https://); or set command.",
    )
    headers: dict[str, str] = lash.option(
        factory=dict, secret=True, help="HTTP headers sent to a url server (auth). Never shown."
    )
    timeout: float = lash.option(
        30.0, validator=_positive, help="Seconds the server may take to answer one tool call."
    )
    start_timeout: float = lash.option(
        30.0,
        validator=_positive,
        help="Seconds the server may take to start: run, handshake and list its tools.",
    )
    retry_after: float = lash.option(
        30.0,
        validator=_positive,
        help="Seconds before a server that did not start is tried again.",
    )

    def __attrs_post_init__(self) -> None:
        if (self.command is None) == (self.url is None):
            raise ValueError(
                "a server needs either command (a program run over stdio) or url (a "
                "streamable HTTP endpoint), not both or neither"
            )

    def where(self) -> str:
        """What the server is, for errors: its command line or its URL (without credentials,
        query or fragment)."""
        if self.url is None:
            return f"command {[self.command, *self.args]}"
        parts = urllib.parse.urlsplit(self.url)
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return f"url {urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, '', ''))}"


def _server_names(instance: Any, attribute: attrs.Attribute[Any], value: dict[str, Any]) -> None:
    bad = sorted(name for name in value if not _SERVER_NAME.fullmatch(name))
    if bad:
        raise ValueError(
            f"server names must be 1 to 32 letters, digits, '_' or '-' (they begin the names "
            f"of their tools, which providers restrict), got {', '.join(map(repr, bad))}"
        )


@attrs.frozen
class MCPOptions:
    """Options of the mcp plugin (host-level, ``[options.mcp]``)."""

    servers: dict[str, MCPServer] = lash.option(
        factory=dict,
        validator=_server_names,
        help="The MCP servers, by name ([options.mcp.servers.NAME]); their tools are NAME__tool.",
    )


lash_plugin = lash.PluginMeta(
    options=MCPOptions,
    description="The tools of MCP servers (stdio or streamable HTTP), as NAME__tool.",
    # A server is a program run (or an endpoint reached) with the host's rights.
    opt_in=True,
)


class MCPServerError(RuntimeError):
    """An MCP server did not start (the message names it and its command or URL)."""


class _CallFailed(Exception):
    """A call that did not get an answer; the message is what the model reads."""


def _catalog_name(server: str, tool: str, taken: set[str]) -> str:
    """``server__tool``, made to fit what providers accept: foreign characters become ``_``;
    a name too long, or one another tool of the server already got, ends in a short hash."""
    name = f"{server}{SEPARATOR}{_FOREIGN.sub('_', tool)}"
    if len(name) > _MAX_NAME or name in taken:
        import hashlib  # here: its OpenSSL binding costs every `lash` command ~3 ms at import

        digest = hashlib.sha256(tool.encode()).hexdigest()[:8]
        name = f"{name[: _MAX_NAME - 9]}_{digest}"
    return name


def _describe(exc: BaseException) -> str:
    """What went wrong, with the exception groups of anyio task groups opened up."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    text = str(exc)
    message = getattr(exc, "message", None)  # an MCPError: its message without the code tuple
    if isinstance(message, str) and message:
        text = message
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _Server:
    """One configured server, once per core: its link (started lazily, again after it was
    lost) and its tools as last listed."""

    def __init__(self, name: str, config: MCPServer) -> None:
        self.name = name
        self.config = config
        self.tools: list[lash.Tool] | None = None
        self._link: Link | None = None
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None
        self._failed: tuple[float, str] | None = None
        self._closed = False

    def _head(self) -> str:
        return f"MCP server {self.name!r} ({self.config.where()})"

    async def list_tools(self) -> list[lash.Tool]:
        if self.tools is None:
            await self._connect()
        assert self.tools is not None
        return self.tools

    async def _connect(self) -> Link:
        """The live link, started (or started again) when there is none."""
        import asyncio  # see the note at the imports

        loop = asyncio.get_running_loop()
        link = self._link
        if link is not None and not link.lost and link.loop is loop:
            return link
        if self._lock is None or self._lock_loop is not loop:
            # A lock serves one event loop (a host may run its core in several, one by one).
            self._lock, self._lock_loop = asyncio.Lock(), loop
        async with self._lock:
            link = self._link
            if link is not None and not link.lost and link.loop is loop:
                return link
            if self._closed:
                raise MCPServerError(f"{self._head()}: the core was closed")
            if self._failed is not None and time.monotonic() - self._failed[0] < (
                self.config.retry_after
            ):
                raise MCPServerError(self._failed[1])
            if link is not None and link.loop is loop:
                await link.close()  # lost: let its task finish (an HTTP session is ended)
            self._link = link = await self._start()
            return link

    async def _start(self) -> Link:
        import asyncio  # see the note at the imports

        from lash_plugins_builtin._mcp_link import Link

        link = Link(self.name, self.config)
        try:
            listing = await link.start()
        except TimeoutError:
            self._fail(
                f"did not start within {self.config.start_timeout:g} s (its start_timeout)", link
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fail(f"did not start: {_describe(exc)}", link)
        self._failed = None
        self.tools = self._tools(listing)
        return link

    def _fail(self, why: str, link: Link) -> Any:
        message = f"{self._head()} {why}"
        if link.stderr:
            message += "; its stderr ended with:\n" + "\n".join(link.stderr)
        self._failed = (time.monotonic(), message)
        raise MCPServerError(message)

    def _tools(self, listing: Sequence[mcp_types.Tool]) -> list[lash.Tool]:
        taken: set[str] = set()
        tools: list[lash.Tool] = []
        for item in listing:
            name = _catalog_name(self.name, item.name, taken)
            taken.add(name)
            schema = dict(item.input_schema)
            schema.pop("$schema", None)  # a draft's URI: noise to a provider, refused by some
            description = item.description or item.title or item.name
            tools.append(
                lash.raw_tool(
                    name,
                    description,
                    schema,
                    self._handler(item.name),
                    timeout=self.config.start_timeout + self.config.timeout + _BACKSTOP,
                )
            )
        return tools

    def _handler(self, tool: str) -> Any:
        async def call(arguments: dict[str, Any], context: lash.ToolContext) -> lash.ToolResult:
            try:
                result = await self.call(tool, arguments)
            except _CallFailed as exc:
                return lash.ToolResult(context.call_id, str(exc), is_error=True)
            return _result(self.name, tool, result, context.call_id)

        return call

    async def call(self, tool: str, arguments: dict[str, Any]) -> mcp_types.CallToolResult:
        """Forward one call. :raises _CallFailed: no answer (the message names server and
        tool)."""
        import asyncio  # see the note at the imports

        from lash_plugins_builtin._mcp_link import Call, LinkLost

        where = f"MCP server {self.name!r}, tool {tool!r}"
        try:
            link = await self._connect()
        except MCPServerError as exc:
            raise _CallFailed(f"{where}: not called, as the server is not running: {exc}") from None
        call = Call(tool, arguments, asyncio.get_running_loop().create_future())
        try:
            link.submit(call)
            async with asyncio.timeout(self.config.timeout):
                return await asyncio.shield(call.future)
        except TimeoutError:
            call.abandon()
            raise _CallFailed(
                f"{where}: no answer within {self.config.timeout:g} s (the server's timeout); "
                "the call was cancelled"
            ) from None
        except asyncio.CancelledError:
            call.abandon()
            raise
        except LinkLost:
            raise _CallFailed(self._lost(where)) from None
        except Exception as exc:
            lost = getattr(exc, "code", None) == _CONNECTION_CLOSED
            if lost or self.config.url is not None:
                # Over HTTP a failed request may mean the session is gone (the server
                # restarted): the next call connects again, which costs one handshake.
                link.lost = True
            if lost:
                raise _CallFailed(self._lost(where)) from None
            raise _CallFailed(f"{where}: the server refused the call: {_describe(exc)}") from None

    def _lost(self, where: str) -> str:
        if self.config.url is not None:
            return (
                f"{where}: the connection to the server broke during the call, which got no "
                "answer; the next call connects again"
            )
        return (
            f"{where}: the server exited or its connection broke during the call, which got "
            "no answer; it is started again at the next call"
        )

    async def aclose(self) -> None:
        self._closed = True
        link, self._link = self._link, None
        if link is not None:
            await link.close()


def _block_text(block: Any) -> str:
    """What the model reads of one content block of a result."""
    kind = getattr(block, "type", None)
    if kind == "text":
        return str(block.text)
    if kind in ("image", "audio"):
        size = len(block.data) * 3 // 4  # base64
        return f"[{kind} ({block.mime_type}, about {size} bytes), not shown]"
    if kind == "resource_link":
        return f"[resource {block.uri}" + (f": {block.name}]" if block.name else "]")
    if kind == "resource":
        resource = block.resource
        text = getattr(resource, "text", None)
        if isinstance(text, str):
            return text
        return f"[resource {resource.uri} ({resource.mime_type or 'binary'}), not shown]"
    return f"[{kind} content, not shown]"


def _result(
    server: str, tool: str, result: mcp_types.CallToolResult, call_id: str
) -> lash.ToolResult:
    """The tool result the model reads: the text of every content block (the structured
    content when there is none); an ``isError`` result is an error naming server and tool."""
    parts = [_block_text(block) for block in result.content]
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
    text = "\n".join(parts)
    if result.is_error:
        return lash.ToolResult(
            call_id, f"MCP server {server!r}, tool {tool!r} reported an error: {text}", True
        )
    return lash.ToolResult(call_id, text)


@lash.hookimpl
def register_tools(register: lash.RegisterTool, options: MCPOptions | None) -> None:
    opts = options if options is not None else MCPOptions()
    if not opts.servers:
        return
    import importlib.util

    if importlib.util.find_spec("mcp") is None:
        raise RuntimeError("the mcp plugin needs the official MCP SDK: pip install 'lash-sdk[mcp]'")
    for name, config in opts.servers.items():
        server = _Server(name, config)
        register(
            lash.ToolSource(
                f"mcp:{name}",
                server.list_tools,
                aclose=server.aclose,
                description=f"the tools of MCP server {name!r} ({config.where()})",
            )
        )
