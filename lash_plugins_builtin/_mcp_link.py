"""One connection to an MCP server, owned by a task of its own (the ``mcp`` plugin's insides).

The SDK's transports and :class:`mcp.ClientSession` are anyio context managers whose task groups
must be entered and exited **in the same task**. A tool call runs in the turn's task, a listing
in whichever task resolves a catalog, and the core closes in yet another: entering the SDK there
would tie the connection to a task that ends long before it. So each connection runs in a
long-lived task (:meth:`Link.start`) that enters the transport and the session, lists the
server's tools, then serves the calls handed to it through a stream, each in a task of its
group; callers wait for their answers on futures. Closing the stream ends the task, which exits
the SDK's contexts where it entered them: for a stdio server, the SDK closes its stdin, then
terminates and kills its process group.

A stdio server's stdout is watched: when it ends (the server exited or was killed) the link is
marked lost at once, so the next use starts a new one instead of writing to a dead pipe. Its
stderr is read through a pipe of ours: every line is logged (logger ``lash.mcp``, DEBUG) and
the last few are kept for the error that says why a server did not start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
from collections import deque
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    import mcp_types
    from mcp import ClientSession

    from lash_plugins_builtin.mcp import MCPServer

log = logging.getLogger("lash.mcp")

#: Lines of a server's stderr kept for its start error.
_STDERR_LINES = 20
#: Seconds a closing link may take to stop its server before its task is cancelled (the SDK
#: needs up to about 4: 2 for the server to exit once its stdin closes, 2 after SIGTERM).
_CLOSE_GRACE = 10.0


class LinkLost(Exception):
    """The connection ended (the server exited, was killed, or the link was closed)."""


@attrs.define(eq=False)
class Call:
    """One tool call handed to the link's task, and its answer."""

    tool: str
    arguments: dict[str, Any]
    future: asyncio.Future[mcp_types.CallToolResult]
    #: Set by the serving task once the call runs; cancelling it abandons the call.
    scope: Any = None
    abandoned: bool = False

    def abandon(self) -> None:
        """The caller stopped waiting (timeout, cancellation): stop the request too."""
        self.abandoned = True
        self.future.cancel()  # nobody reads its answer any more
        if self.scope is not None:
            self.scope.cancel()


@attrs.define(eq=False)
class Link:
    """One connection: the task that owns it, the stream of calls it serves, its state."""

    name: str
    config: MCPServer
    task: asyncio.Task[None] | None = None
    #: The connection ended: the next use needs a new link.
    lost: bool = False
    stderr: deque[str] = attrs.field(factory=lambda: deque(maxlen=_STDERR_LINES))
    _send: Any = None
    _receive: Any = None
    _ready: asyncio.Future[list[mcp_types.Tool]] | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self.task.get_loop() if self.task is not None else None

    async def start(self) -> list[mcp_types.Tool]:
        """Run the link's task; return the server's tools once it is initialized.

        :raises TimeoutError: it did not start within the server's start_timeout (stopped).
        :raises Exception: whatever made it fail to start (the task has ended then).
        """
        import anyio

        self._send, self._receive = anyio.create_memory_object_stream[Call](math.inf)
        loop = asyncio.get_running_loop()
        self._ready = ready = loop.create_future()
        self.task = loop.create_task(self._run(ready), name=f"lash-mcp-{self.name}")
        try:
            async with asyncio.timeout(self.config.start_timeout):
                return await asyncio.shield(ready)
        except BaseException:
            await self.close()
            raise

    def submit(self, call: Call) -> None:
        """Hand a call to the task. :raises LinkLost: the connection ended."""
        if self.lost:
            raise LinkLost
        try:
            self._send.send_nowait(call)
        except Exception:  # closed: the connection ended since
            raise LinkLost from None

    async def close(self) -> None:
        """Stop serving and let the task exit the SDK's contexts (stopping a stdio server);
        a task that is still starting, or does not finish in time, is cancelled."""
        self.lost = True
        if self._send is not None:
            self._send.close()
        task = self.task
        if task is None or task.done():
            return
        if task.get_loop() is not asyncio.get_running_loop():
            # Its loop is gone or elsewhere: nothing here can await it.
            log.warning("MCP server %r: closed from another event loop; not stopped", self.name)
            return
        if self._ready is not None and not self._ready.done():
            task.cancel()
        done, _ = await asyncio.wait({task}, timeout=_CLOSE_GRACE)
        if not done:
            task.cancel()
            await asyncio.wait({task})

    # -- the link's own task ------------------------------------------------------------------

    async def _run(self, ready: asyncio.Future[list[mcp_types.Tool]]) -> None:
        try:
            from mcp import ClientSession  # in the try: a broken SDK is a failed start too

            async with contextlib.AsyncExitStack() as stack:
                read, write = await stack.enter_async_context(self._transport())
                session = await stack.enter_async_context(ClientSession(read, write))
                await session.initialize()
                tools = await _list_tools(session)
                if not ready.done():
                    ready.set_result(tools)
                await self._serve(session)
        except BaseException as exc:
            if not ready.done():
                if isinstance(exc, asyncio.CancelledError):
                    ready.cancel()
                else:
                    ready.set_exception(exc)
            elif not isinstance(exc, asyncio.CancelledError):
                log.warning("MCP server %r: the connection failed: %r", self.name, exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            self.lost = True
            self._fail_waiting()
            self._send.close()
            self._receive.close()

    @contextlib.asynccontextmanager
    async def _transport(self) -> AsyncIterator[tuple[Any, Any]]:
        if self.config.url is not None:
            from mcp.client.streamable_http import streamable_http_client

            async with self._http_client() as client:
                async with streamable_http_client(self.config.url, http_client=client) as streams:
                    yield streams
            return
        async with self._stdio() as streams:
            yield streams

    @contextlib.asynccontextmanager
    async def _http_client(self) -> AsyncIterator[Any]:
        if not self.config.headers:
            yield None
            return
        import httpx2  # the SDK's HTTP client (a dependency of mcp)

        # The SDK's own default timeouts: a server may hold a response stream open.
        timeout = httpx2.Timeout(30.0, read=300.0)
        async with httpx2.AsyncClient(headers=dict(self.config.headers), timeout=timeout) as client:
            yield client

    @contextlib.asynccontextmanager
    async def _stdio(self) -> AsyncIterator[tuple[Any, Any]]:
        import anyio
        from mcp import StdioServerParameters, stdio_client

        assert self.config.command is not None
        params = StdioServerParameters(
            command=self.config.command,
            args=list(self.config.args),
            env=dict(self.config.env) or None,
            cwd=self.config.cwd,
        )
        reading, writing = os.pipe()
        errlog = os.fdopen(writing, "w")
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(self._read_stderr, reading)
                reading = -1  # the reader owns it now
                try:
                    async with stdio_client(params, errlog=errlog) as (read, write):
                        # The server holds its own copy: ours would keep the pipe open past it.
                        errlog.close()
                        with self._watch(group, read) as watched:
                            yield watched, write
                finally:
                    errlog.close()
                    group.cancel_scope.cancel()
        finally:
            errlog.close()
            if reading >= 0:
                os.close(reading)

    @contextlib.contextmanager
    def _watch(self, group: Any, read: Any) -> Iterator[Any]:
        """Relay the server's messages; mark the link lost the moment its stdout ends."""
        import anyio

        send, receive = anyio.create_memory_object_stream[Any](0)

        async def relay() -> None:
            try:
                async with read:
                    async for item in read:
                        await send.send(item)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream):
                pass
            finally:
                self.lost = True
                if self._send is not None:
                    self._send.close()  # the serving loop ends; new calls go to a new link
                await send.aclose()

        group.start_soon(relay)
        with receive:
            yield receive

    async def _read_stderr(self, fd: int) -> None:
        """Log the server's stderr line by line, keeping the last lines for its start error."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        pipe = os.fdopen(fd, "rb", buffering=0)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), pipe
        )
        try:
            while line := await reader.readline():
                text = line.decode("utf-8", errors="replace").rstrip()
                self.stderr.append(text)
                log.debug("MCP server %r: %s", self.name, text)
        finally:
            transport.close()

    async def _serve(self, session: ClientSession) -> None:
        import anyio

        async with anyio.create_task_group() as calls:
            async with self._receive:
                async for call in self._receive:
                    calls.start_soon(self._call, session, call)
            # The stream was closed (closing, or the server's stdout ended): stop what runs.
            calls.cancel_scope.cancel()

    async def _call(self, session: ClientSession, call: Call) -> None:
        import anyio

        async def report(progress: float, total: float | None, message: str | None) -> None:
            log.debug(
                "MCP server %r, tool %r: progress %g/%s%s",
                self.name,
                call.tool,
                progress,
                f"{total:g}" if total is not None else "?",
                f" ({message})" if message else "",
            )

        try:
            with anyio.CancelScope() as scope:
                call.scope = scope
                if call.abandoned:
                    return
                try:
                    result = await session.call_tool(
                        call.tool, call.arguments, progress_callback=report
                    )
                except Exception as exc:
                    _settle(call.future, exc)
                else:
                    _settle(call.future, result)
        finally:
            _settle(call.future, LinkLost())  # cancelled: the link closed under it

    def _fail_waiting(self) -> None:
        """Calls still queued when the task ends are answered: the connection is gone."""
        if self._receive is None:
            return
        with contextlib.suppress(Exception):
            while True:
                call = self._receive.receive_nowait()
                _settle(call.future, LinkLost())


def _settle(future: asyncio.Future[Any], outcome: Any) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


async def _list_tools(session: ClientSession) -> list[mcp_types.Tool]:
    """Every tool of the server, following the listing's pages."""
    import mcp_types

    tools: list[mcp_types.Tool] = []
    cursor: str | None = None
    while True:
        params = mcp_types.PaginatedRequestParams(cursor=cursor) if cursor else None
        page = await session.list_tools(params=params)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if not cursor:
            return tools
