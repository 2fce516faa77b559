"""``shell``: a process kind that runs a command in a workspace directory, with a timeout, its
output captured and capped.

A host (``core.processes.start("shell", {"argv": [...]}, session_id=...)``), a tool or a hook
starts a ``shell`` process; a worker runs it. The command is an argv list, run **without a
shell** (``["sh", "-c", "..."]`` when you want one), with no input, in the plugin's ``root``
(set it to the ``files`` plugin's root to share that workspace) or a directory below it. It
runs in a process group of its own: when it ends, times out or is cancelled, the whole group
is killed (``SIGKILL``), so nothing it started lingers in the worker. stdout and stderr are
kept up to ``max_output_bytes`` each (the rest is read, counted and dropped); the result holds
the exit status. A process tied to a session wakes it with a short report of the command.

POSIX only (process groups).
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

import attrs

import lash

if TYPE_CHECKING:
    # asyncio (and signal) are imported where a command runs: loading the plugin (every `lash`
    # command, `lash --help` too) must not.
    import asyncio

__all__ = ["KIND", "ShellCommand", "ShellOptions", "ShellResult"]

#: The process kind.
KIND = "shell"
#: Bytes read from a pipe at a time.
_CHUNK = 64 * 1024
#: Seconds between two looks at whether a command exited.
_EXIT_POLL = 0.05
#: Characters of each stream the wake-up text shows.
_SHOWN = 2000


def _positive(instance: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be above 0, got {value}")


def _not_empty(instance: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    if not value.strip():
        raise ValueError(f"{attribute.name} must name a directory ('.' for the working directory)")


@attrs.frozen
class ShellOptions:
    """Options of the shell plugin (host-level, ``[options.shell]``)."""

    root: str = lash.option(
        ".",
        validator=_not_empty,
        help="The directory commands run in (a command's cwd is relative to it); a relative "
        "root is resolved against the worker's working directory ('~' is expanded). Use the "
        "files plugin's root to share its workspace.",
    )
    timeout: float = lash.option(
        60.0, validator=_positive, help="Seconds a command may run when its start sets none."
    )
    max_timeout: float = lash.option(
        3600.0, validator=_positive, help="The longest timeout a start may ask for (seconds)."
    )
    max_output_bytes: int = lash.option(
        64 * 1024,
        validator=_positive,
        help="Bytes of stdout, and of stderr, a result keeps (each); the rest is dropped.",
    )


lash_plugin = lash.PluginMeta(
    options=ShellOptions,
    description="A shell process kind: a command run in a workspace, with a timeout and capped "
    "output.",
    # Running commands is a power the host grants: never enabled just by being installed.
    opt_in=True,
)


def _relative(instance: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    path = PurePosixPath(value)
    if not value or "\x00" in value or path.is_absolute() or ".." in path.parts:
        raise ValueError(
            f"{attribute.name} must be a relative path below the shell root, without '..', "
            f"got {value!r}"
        )


def _argv(instance: Any, attribute: attrs.Attribute[Any], value: list[str]) -> None:
    if not value or not value[0]:
        raise ValueError(f"{attribute.name} must name a program: [program, arg, ...]")


@attrs.frozen
class ShellCommand:
    """The payload of a ``shell`` process: the command (an argv list: no shell), the directory
    it runs in (relative to the root), its timeout (seconds; ``None``: the plugin's
    ``timeout``), and variables added to the worker's environment."""

    argv: list[str] = attrs.field(validator=_argv)
    cwd: str = attrs.field(default=".", validator=_relative)
    timeout: float | None = None
    env: dict[str, str] = attrs.field(factory=dict)


@attrs.frozen
class ShellResult:
    """The result of a ``shell`` process.

    ``exit_code`` is the command's exit status (negative: killed by that signal, ``-9`` after a
    timeout). ``stdout`` and ``stderr`` are the first ``max_output_bytes`` of each (decoded as
    UTF-8, bad bytes replaced); ``stdout_bytes`` and ``stderr_bytes`` count everything written,
    and ``truncated`` says whether anything was dropped. ``timed_out`` says the timeout killed
    it; ``seconds`` is how long it ran.
    """

    argv: list[str]
    exit_code: int
    stdout: str
    stderr: str
    stdout_bytes: int
    stderr_bytes: int
    truncated: bool
    timed_out: bool
    seconds: float


@attrs.define
class _Capture:
    """The head of one output stream, and how much was written in all."""

    limit: int
    kept: bytearray = attrs.field(factory=bytearray)
    total: int = 0

    async def read(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(_CHUNK):
            self.total += len(chunk)
            room = self.limit - len(self.kept)
            if room > 0:
                self.kept += chunk[:room]

    @property
    def text(self) -> str:
        return self.kept.decode("utf-8", errors="replace")


def _workdir(options: ShellOptions, cwd: str) -> str:
    """The real directory ``cwd`` names below the root; refuses one that leads outside."""
    root = os.path.realpath(os.path.expanduser(options.root))
    if not os.path.isdir(root):
        raise lash.ProcessError(
            f"the shell root {options.root!r} ({root}) is not an existing directory; the host "
            "must create it or set the shell plugin's root option",
            kind=KIND,
        )
    target = os.path.realpath(os.path.join(root, cwd))
    if os.path.commonpath([root, target]) != root:
        raise lash.ProcessError(
            f"cwd {cwd!r} leads outside the shell root {root} (through a link)", kind=KIND
        )
    if not os.path.isdir(target):
        raise lash.ProcessError(f"cwd {cwd!r} is not a directory below {root}", kind=KIND)
    return target


def _kill_group(process: asyncio.subprocess.Process) -> None:
    import signal  # see the note at the imports

    # The command leads its own group (start_new_session): its pid is the group's id.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def _kill_spawned(spawn: asyncio.Future[asyncio.subprocess.Process]) -> None:
    if not spawn.cancelled() and spawn.exception() is None:
        _kill_group(spawn.result())


async def run_command(
    options: ShellOptions, context: lash.ProcessContext, command: ShellCommand
) -> ShellResult:
    """Run ``command`` under ``options``; kill its process group however it ends."""
    import asyncio  # see the note at the imports
    import signal

    cwd = _workdir(options, command.cwd)
    timeout = min(command.timeout or options.timeout, options.max_timeout)
    out, err = _Capture(options.max_output_bytes), _Capture(options.max_output_bytes)
    started = time.monotonic()
    spawn = asyncio.ensure_future(
        asyncio.create_subprocess_exec(
            *command.argv,
            cwd=cwd,
            env={**os.environ, **command.env},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
    )
    try:
        # Shielded: the command may run before the spawn returns; cancelled then, asyncio
        # would kill the leader alone. Its whole group is killed once it is known instead.
        process = await asyncio.shield(spawn)
    except asyncio.CancelledError:
        spawn.add_done_callback(_kill_spawned)
        raise
    except OSError as exc:  # no such program, not executable...
        raise lash.ProcessError(
            f"cannot run {command.argv[0]!r}: {exc}", process_id=context.id, kind=KIND
        ) from None
    assert process.stdout is not None and process.stderr is not None

    async def leader() -> None:
        # Not process.wait(): on Python 3.11 it also waits for the pipes to close, which a
        # child the command left running may keep open. The return code is set at the exit.
        while process.returncode is None:
            await asyncio.sleep(_EXIT_POLL)
        # What it left running (holding the pipes open, maybe) goes with it: the reads end.
        _kill_group(process)

    timed_out = False
    try:
        async with asyncio.timeout(timeout):
            await asyncio.gather(out.read(process.stdout), err.read(process.stderr), leader())
    except TimeoutError:
        timed_out = True
    finally:
        # Ended, timed out or cancelled (the worker cancels this task): nothing of the
        # command may outlive it. Its pipes then close, and asyncio reaps the leader and
        # closes the transport (shielded: a cancelled run still gets there, then the
        # cancellation goes on).
        _kill_group(process)
        await asyncio.shield(process.wait())
    return ShellResult(
        argv=list(command.argv),
        exit_code=process.returncode if process.returncode is not None else -signal.SIGKILL,
        stdout=out.text,
        stderr=err.text,
        stdout_bytes=out.total,
        stderr_bytes=err.total,
        truncated=out.total > len(out.kept) or err.total > len(err.kept),
        timed_out=timed_out,
        seconds=round(time.monotonic() - started, 3),
    )


@lash.hookimpl
def register_process_kinds(
    register: lash.RegisterProcessKind, options: ShellOptions | None
) -> None:
    opts = options if options is not None else ShellOptions()

    async def shell(context: lash.ProcessContext, command: ShellCommand) -> ShellResult:
        """Run a command (an argv list, no shell) in the workspace, with a timeout."""
        return await run_command(opts, context, command)

    # Owner-bound: a command is not run twice behind its starter's back. The kind's timeout
    # is a backstop over the command's own (which kills the group and reports timed_out).
    register(
        KIND,
        shell,
        recovery=lash.RecoveryDisposition.OWNER_BOUND,
        timeout=opts.max_timeout + 30,
    )


def _shown(text: str) -> str:
    return text if len(text) <= _SHOWN else text[:_SHOWN] + " [...]"


@lash.hookimpl
def render_process_result(process: lash.ProcessRecord) -> str | None:
    if process.kind != KIND:
        return None  # another plugin's process
    argv = process.payload.get("argv") if isinstance(process.payload, dict) else None
    head = f"The command {argv} (process {process.id})"
    result = process.result
    if process.status != "succeeded" or not isinstance(result, dict):
        return f"{head} did not run to the end ({process.status}): {process.error}"
    how = "timed out" if result["timed_out"] else f"exited with status {result['exit_code']}"
    lines = [f"{head} {how} after {result['seconds']:g} s."]
    for stream in ("stdout", "stderr"):
        if result[stream]:
            lines.append(f"{stream}:\n{_shown(result[stream])}")
    if result["truncated"]:
        lines.append("(output was cut at the shell plugin's max_output_bytes)")
    return "\n".join(lines)
