"""The ``shell`` builtin: real commands run by a worker in the shell root, with their exit
status, capped output, a timeout and cancellation that kill the whole process group."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest

import lash
from lash_plugins_builtin import shell, standard, stores

pytestmark = pytest.mark.anyio


def core_of(root: Path, **options: Any) -> lash.LashCore:
    return lash.LashCore(
        plugins=[standard, stores, shell],
        builtins=(),
        store="memory://",
        options={"shell": {"root": str(root), **options}},
    )


async def run(core: lash.LashCore, payload: dict[str, Any]) -> lash.ProcessRecord:
    record = await core.processes.start("shell", payload)
    await core.run_worker(once=True, sessions=False)
    done = await core.processes.get(record.id)
    assert done is not None
    return done


def test_shell_is_opt_in() -> None:
    """Installed, it loads only when named."""
    core = lash.LashCore(plugins=[], builtins="default", store="memory://")
    (info,) = [p for p in core.plugins if p.name == "shell"]
    assert info.status == "disabled" and "opt-in" in (info.error or "")


async def test_exit_status_and_both_streams(tmp_path: Path) -> None:
    """A command's exit status and its stdout and stderr are the result; argv is no shell."""
    async with core_of(tmp_path) as core:
        done = await run(core, {"argv": ["sh", "-c", "echo out; echo err >&2; exit 3"]})
        assert done.status == "succeeded"
        result = done.result
        assert (result["exit_code"], result["stdout"], result["stderr"]) == (3, "out\n", "err\n")
        assert (result["stdout_bytes"], result["stderr_bytes"]) == (4, 4)
        assert result["truncated"] is False and result["timed_out"] is False
        # No shell: a ';' is an argument like any other.
        done = await run(core, {"argv": ["echo", "a;", "exit", "7"]})
        assert (done.result["exit_code"], done.result["stdout"]) == (0, "a; exit 7\n")


async def test_it_runs_in_the_root_or_below(tmp_path: Path) -> None:
    """The working directory is the root, or a directory below it; '..', an absolute cwd and a
    link leading outside are refused."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "out").symlink_to(tmp_path.parent)
    async with core_of(tmp_path) as core:
        assert (await run(core, {"argv": ["pwd"]})).result["stdout"] == f"{tmp_path}\n"
        below = await run(core, {"argv": ["pwd"], "cwd": "sub"})
        assert below.result["stdout"] == f"{tmp_path / 'sub'}\n"
        for bad in ("..", "/tmp", "sub/../.."):
            with pytest.raises(lash.ProcessError, match="relative path below the shell root"):
                await core.processes.start("shell", {"argv": ["pwd"], "cwd": bad})
        linked = await run(core, {"argv": ["pwd"], "cwd": "out"})
        assert linked.status == "failed" and "leads outside the shell root" in (linked.error or "")


async def test_output_is_capped_and_counted(tmp_path: Path) -> None:
    """Past max_output_bytes a stream is read to its end and counted, its head kept."""
    async with core_of(tmp_path, max_output_bytes=1000) as core:
        code = "import sys; sys.stdout.write('x' * 300000); sys.stderr.write('e' * 10)"
        done = await run(core, {"argv": [sys.executable, "-c", code]})
        result = done.result
        assert result["stdout"] == "x" * 1000 and result["stdout_bytes"] == 300000
        assert result["stderr"] == "e" * 10 and result["truncated"] is True
        assert result["exit_code"] == 0


async def test_a_timeout_kills_the_process_group(tmp_path: Path) -> None:
    """At its timeout the command and what it started are killed (SIGKILL); the result says
    timed_out with the output written so far."""
    pidfile = tmp_path / "pid"
    script = f"sleep 60 & echo $! > {pidfile}; echo started; wait"
    async with core_of(tmp_path) as core:
        done = await run(core, {"argv": ["sh", "-c", script], "timeout": 0.5})
        result = done.result
        assert done.status == "succeeded" and result["timed_out"] is True
        assert result["exit_code"] == -9 and result["stdout"] == "started\n"
        assert await gone(int(pidfile.read_text()))


async def test_what_a_command_leaves_running_is_killed_when_it_exits(tmp_path: Path) -> None:
    """A background child still holding the output pipes is killed when the command exits: the
    result comes at once, not at the timeout."""
    pidfile = tmp_path / "pid"
    script = f"sleep 60 & echo $! > {pidfile}; echo done"
    async with core_of(tmp_path) as core:
        done = await run(core, {"argv": ["sh", "-c", script], "timeout": 30})
        result = done.result
        assert (result["exit_code"], result["stdout"], result["timed_out"]) == (0, "done\n", False)
        assert await gone(int(pidfile.read_text()))


async def test_a_missing_program_fails_the_process(tmp_path: Path) -> None:
    """A program that does not exist is a failed process naming it."""
    async with core_of(tmp_path) as core:
        done = await run(core, {"argv": ["no-such-program-here"]})
        assert done.status == "failed"
        assert "cannot run 'no-such-program-here'" in (done.error or "")


async def test_cancelling_kills_the_process_group(tmp_path: Path) -> None:
    """A cancelled shell process is recorded cancelled, and its whole group is gone."""
    pidfile = tmp_path / "pid"
    script = f"sleep 60 & echo $! > {pidfile}; wait"
    async with core_of(tmp_path) as core:
        record = await core.processes.start("shell", {"argv": ["sh", "-c", script]})
        worker = asyncio.create_task(core.run_worker(poll=0.01, sessions=False))
        try:
            for _ in range(1000):
                if pidfile.exists() and pidfile.read_text().strip():
                    break
                await asyncio.sleep(0.01)
            sleeper = int(pidfile.read_text())
            assert alive(sleeper)
            await core.processes.cancel(record.id, reason="enough")
            done = await core.processes.wait(record.id, timeout=30)
        finally:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
        assert (done.status, done.error) == ("cancelled", "enough")
        assert await gone(sleeper)


async def test_a_finished_command_wakes_its_session(tmp_path: Path) -> None:
    """Tied to a session, the finished command is queued for it with a short report."""
    async with core_of(tmp_path) as core:
        record = await core.processes.start(
            "shell", {"argv": ["sh", "-c", "echo hi; exit 2"]}, session_id="desk"
        )
        await core.run_worker(once=True, sessions=False)
        (woken,) = await core.inputs("desk")
        assert woken.text.startswith(
            f"The command ['sh', '-c', 'echo hi; exit 2'] (process {record.id}) exited with "
            "status 2 after "
        )
        assert woken.text.endswith(" s.\nstdout:\nhi\n")


async def gone(pid: int) -> bool:
    """Whether ``pid`` ends within 10 s (a SIGKILL is delivered, not awaited, by killpg)."""
    for _ in range(1000):
        if not alive(pid):
            return True
        await asyncio.sleep(0.01)
    return False


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its reaper does not count)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
