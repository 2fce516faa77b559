"""Lease owners: who a core is, and whether the holder of a lease is provably dead.

A core's owner id names its host, its process (pid and start time), the PID namespace they are
numbers of and a random suffix: ``"build-7:4121@8812345:5d1e0a7c:9f3a1c2e"``. A lease
whose holder ran on this host, in this PID namespace, in a process that is gone (no such pid,
or a pid reused by a process that started later) can be taken over at once instead of after its
expiry: the holder cannot commit any more, and waiting out its lease would only delay the
session. A holder on another host is never judged dead: there, only the lease's expiry says so.
Nor is one in another PID namespace of this host, or of a machine with the same hostname (a
container with the host's network and hostname, a cloned VM): its pid means nothing here.

The namespace is a part of its own, after the pid's: a process of a lash from before reads an
id of four parts as one that does not parse (never dead), where a namespace written into the
pid's part would have been read as its start time (every live holder dead, its lease taken
over). An id of three parts is from before: its namespace is unknown, and its lease expires.
"""

from __future__ import annotations

import hashlib
import os
import socket
import sys
import uuid
from functools import cache


def _start_time(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot (Linux), or ``None``."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            text = stat.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: fields after its last ")".
    fields = text.rpartition(")")[2].split()
    return fields[19] if len(fields) > 19 else None


#: The namespace part of an owner id made where the PID namespace could not be read.
UNKNOWN = "unknown"


@cache
def host() -> str:
    return socket.gethostname()


@cache
def namespace() -> str:
    """What pids are numbers of here: this boot of this machine (Linux's boot id) and this
    process's PID namespace, hashed to 8 hex digits; ``""`` on a system without them (not
    Linux: one pid space per host); ``UNKNOWN`` on Linux where they cannot be read (a
    restricted ``/proc``): two such processes may be in different namespaces, so neither is
    ever provably dead to the other (:func:`provably_dead`)."""
    if not sys.platform.startswith("linux"):
        return ""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as boot:
            boot_id = boot.read().strip()
        pids = os.readlink("/proc/self/ns/pid")
    except OSError:
        return UNKNOWN
    return hashlib.sha256(f"{boot_id} {pids}".encode()).hexdigest()[:8]


def owner_id() -> str:
    """A new owner id for this process: ``host:pid@start:namespace:random``."""
    pid = os.getpid()
    start = _start_time(pid)
    incarnation = f"{pid}@{start}" if start is not None else str(pid)
    return f"{host()}:{incarnation}:{namespace()}:{uuid.uuid4().hex[:8]}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by someone else
    except OSError:
        return True  # cannot tell: assume alive
    return True


def provably_dead(owner: str) -> bool:
    """Whether ``owner`` (an owner id, with or without a ``/handle`` suffix) ran on this host in
    a process that no longer exists. Anything that does not parse is not provably dead."""
    base = owner.split("/", 1)[0]
    parts = base.split(":")
    if len(parts) != 4 or parts[0] != host():
        return False  # another host's, or an id from before namespaces were named
    if parts[2] != namespace() or parts[2] == UNKNOWN:
        return False  # another PID namespace's or machine's (or unknown): not one of ours
    pid_text, _, start = parts[1].partition("@")
    if not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False  # this process: its own handles are alive by definition
    if not _alive(pid):
        return True
    if start:
        now = _start_time(pid)
        return now is not None and now != start  # the pid was reused by a newer process
    return False
