"""The plugin the worker crash tests run in real ``lash worker`` processes (``crashjobs``).

Every run and every ``process_finished`` call appends one line to a file of ``$CRASH_DIR``
(``effects.log``, ``finished.log``): lines shorter than the pipe buffer, appended with
``O_APPEND``, so lines of several processes never mix, and a SIGKILL loses at most the line
being written. The parent reads them to see what ran where, and how often.
"""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path
from typing import Any

import attrs

import lash

lash_plugin = lash.PluginMeta(name="crashjobs")


@attrs.frozen
class Job:
    n: int
    seconds: float = 0.2


def append(name: str, line: str) -> None:
    path = Path(os.environ["CRASH_DIR"]) / name
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


async def _work(context: lash.ProcessContext, job: Job) -> dict[str, Any]:
    append("effects.log", f"{os.getpid()} start {context.id} {context.attempt}")
    await asyncio.sleep(job.seconds * random.uniform(0.5, 1.5))
    append("effects.log", f"{os.getpid()} end {context.id} {context.attempt}")
    return {"n": job.n}


async def rerun(context: lash.ProcessContext, job: Job) -> dict[str, Any]:
    """Safe to run again: at-least-once."""
    return await _work(context, job)


async def owned(context: lash.ProcessContext, job: Job) -> dict[str, Any]:
    """Must never run twice."""
    return await _work(context, job)


async def external(context: lash.ProcessContext, job: Job) -> None:
    """Hands the job over; the parent completes it."""
    append("effects.log", f"{os.getpid()} handoff {context.id} {context.attempt}")


@lash.hookimpl
def register_process_kinds(register: lash.RegisterProcessKind) -> None:
    register("rerun", rerun, recovery=lash.RecoveryDisposition.RERUNNABLE, max_attempts=100)
    register("owned", owned)
    register("external", external, recovery=lash.RecoveryDisposition.EXTERNALLY_OWNED)


@lash.hookimpl
def process_finished(process: lash.ProcessRecord) -> None:
    append("finished.log", f"{os.getpid()} {process.id} {process.status}")
