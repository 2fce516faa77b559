"""Lease owner ids (``lash._kernel.liveness``): a holder is provably dead (its lease taken over at
once) only when it ran in this host's PID namespace in a process that is gone, and an owner id
is never misread as a dead holder's by a process of the previous lash version on the same host
(both run side by side during an upgrade)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lash._kernel import liveness

#: A holder: a process that names itself as a core does, then lives until it is killed.
HOLDER = """
import time
from lash._kernel import liveness
print(liveness.owner_id(), flush=True)
time.sleep(600)
"""


def previous_provably_dead(owner: str) -> bool:
    """``provably_dead`` as lash had it before owner ids named their PID namespace, word for
    word: what a process of that version, still running on this host during an upgrade, says
    of an owner id of this version."""
    base = owner.split("/", 1)[0]
    parts = base.split(":")
    if len(parts) != 3 or parts[0] != liveness.host():
        return False
    pid_text, _, start = parts[1].partition("@")
    if not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    if not liveness._alive(pid):
        return True
    if start:
        now = liveness._start_time(pid)
        return now is not None and now != start
    return False


def test_a_live_holder_is_alive_to_both_versions_and_a_killed_one_is_dead_at_once() -> None:
    """A holder in another process of this host and PID namespace is alive while it runs, to
    this version and to the one before (which, reading the namespace into the start time,
    judged every live holder of this version dead and took its lease over: the turn ran
    twice); killed with SIGKILL, it is provably dead at once, its handles (``/3``) too."""
    command = [sys.executable, "-c", HOLDER]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as holder:
        try:
            assert holder.stdout is not None
            owner = holder.stdout.readline().strip()
            assert owner.startswith(f"{liveness.host()}:{holder.pid}@"), owner
            assert not liveness.provably_dead(owner)
            assert not liveness.provably_dead(f"{owner}/3")
            assert not previous_provably_dead(f"{owner}/3")
        finally:
            holder.kill()
            holder.wait(timeout=30)
    assert liveness.provably_dead(owner)
    assert liveness.provably_dead(f"{owner}/3")


def test_a_holder_whose_namespace_could_not_be_read_is_never_provably_dead(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On Linux, a process that cannot read its PID namespace (a restricted ``/proc``) names it
    ``unknown``: two such processes may be in different namespaces of one host, where the
    other's pid means nothing here, so a killed one is not provably dead (its lease expires).
    Before, both named it "" and compared equal, which brought back the pid-only rule."""
    command = [sys.executable, "-c", HOLDER]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as holder:
        assert holder.stdout is not None
        owner = holder.stdout.readline().strip()
        holder.kill()
        holder.wait(timeout=30)
    assert liveness.provably_dead(owner)  # its namespace read here: dead at once
    host, incarnation, _namespace, handle = owner.split(":")
    unknown = f"{host}:{incarnation}:{liveness.UNKNOWN}:{handle}"
    monkeypatch.setattr(liveness, "namespace", lambda: liveness.UNKNOWN)
    assert not liveness.provably_dead(unknown)
    assert not liveness.provably_dead(f"{unknown}/2")
