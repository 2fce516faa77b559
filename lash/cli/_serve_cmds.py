"""``lash serve``: the HTTP API of :mod:`lash.serve` over the configured core and store, run by
uvicorn (docs: the serving page)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import signal
import socket
from typing import Any

import click

from lash._kernel.core import LashCore
from lash.cli._context import config_or_exit
from lash.cli._sessions_common import display_url
from lash.errors import LashError

#: The environment variable that holds the token (never a command-line option: the process
#: list would show it).
TOKEN_ENV = "LASH_SERVE_TOKEN"

#: Seconds a stopping server waits for open requests (a turn run with ?wait=true) before it
#: cancels them (it ends its event streams at once).
SHUTDOWN_GRACE = 2


def is_loopback(host: str) -> bool:
    """Whether ``host`` binds to this machine only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@click.command("serve", short_help="Serve the store's sessions over HTTP (API, events, web page).")
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to bind.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    help="The port (0: any free port; the address is printed on stderr).",
)
@click.option(
    "--worker",
    is_flag=True,
    help="Also run a worker in this process: it drains queued input (so input queued over "
    "HTTP is answered, its text streamed live) and runs background processes.",
)
@click.option(
    "--max-body",
    type=click.IntRange(min=1024),
    default=None,
    metavar="BYTES",
    help="The largest request body accepted (default: 4 MiB).",
)
@click.option(
    "--log-level",
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    default="warning",
    show_default=True,
    help="uvicorn's log level (requests are logged at info).",
)
@click.pass_context
def serve_command(
    ctx: click.Context,
    host: str,
    port: int,
    worker: bool,
    max_body: int | None,
    log_level: str,
) -> None:
    """Serve the store's sessions over HTTP (API, events, web page).

    Runs until interrupted (Ctrl-C or SIGTERM): the JSON API, each session's events as
    Server-Sent Events (resumable by cursor; AG-UI with ?protocol=ag-ui), the OpenAPI document
    at /openapi.json and the web page at /.

    Binds 127.0.0.1 by default. Any other address needs a token in the environment variable
    LASH_SERVE_TOKEN, which every request must then carry (Authorization: Bearer TOKEN, or
    ?token=TOKEN); on loopback, a token set there is required too.
    """
    token = os.environ.get(TOKEN_ENV) or None
    if token is None and not is_loopback(host):
        raise click.ClickException(
            f"--host {host} is reachable from other machines: set a token in {TOKEN_ENV} "
            "(every request must then carry it), or serve on 127.0.0.1"
        )
    try:
        import uvicorn

        from lash.serve import MAX_BODY, create_app
    except ImportError as exc:
        raise click.ClickException(
            f"lash serve needs the serve extra ({exc.name} is missing): "
            "pip install 'lash-sdk[serve]'"
        ) from None
    config = config_or_exit(ctx)

    async def go() -> None:
        core = LashCore(config=config)
        async with core:
            app = create_app(core, token=token, max_body=max_body or MAX_BODY)
            stop_app = app.state.lash_stop

            class _Server(uvicorn.Server):
                """uvicorn's server, which stops the app's turns and ends its event streams as
                it starts to stop (once it takes no new connection): it would wait
                SHUTDOWN_GRACE for the streams, then cut them off (an error in the log for
                each, and a broken response for its client), and cancel the turns only then."""

                async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
                    for listening in self.servers:
                        listening.close()
                    if not self.force_exit:  # (a second Ctrl-C: out at once, as uvicorn does)
                        await stop_app()
                    await super().shutdown(sockets)

            # Event streams never end on their own: the server ends them as it starts to stop
            # (_Server); uvicorn waits this long for the other requests, then cancels them.
            settings = uvicorn.Config(
                app,
                host=host,
                port=port,
                log_level=log_level,
                lifespan="on",
                timeout_graceful_shutdown=SHUTDOWN_GRACE,
            )
            server = _Server(settings)
            # uvicorn stops on SIGINT/SIGTERM, then raises the signal again for the handler it
            # found: these, which stop the server (again), so the app's shutdown (its turns are
            # cancelled: they commit) and the core's close still run.
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))

            async def serve() -> None:
                try:
                    await server.serve()
                except SystemExit:
                    # uvicorn exits when it cannot start (it logged why: the port is taken, the
                    # address is not this machine's...). Raised in a task, SystemExit would
                    # escape the event loop as a traceback.
                    raise click.ClickException(
                        f"lash serve could not listen on {host}:{port} (the error above); "
                        "choose another --port, or --port 0 for any free one"
                    ) from None

            serving = asyncio.ensure_future(serve())
            working: asyncio.Future[Any] | None = None
            while not server.started and not serving.done():
                await asyncio.sleep(0.01)
            if server.started:
                bound = server.servers[0].sockets[0].getsockname()
                where = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
                click.echo(
                    f"lash serve: http://{where}:{bound[1]}/ (store {display_url(core.store_url)}"
                    f"{', worker on' if worker else ''}{', token required' if token else ''})",
                    err=True,
                )
                if worker:
                    working = asyncio.ensure_future(core.run_worker())
            try:
                await serving
            finally:
                if working is not None:
                    working.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await working

    try:
        asyncio.run(go())
    except LashError as exc:
        raise click.ClickException(str(exc)) from None


__all__ = ["is_loopback", "serve_command"]
