"""``lash --help`` measures the terminal without importing shutil (lash.cli._main.terminal_columns)
and must wrap its help exactly as click does with ``shutil.get_terminal_size()``: the width is
compared with shutil's for every kind of ``$COLUMNS`` / ``$LINES`` value, with stdout a pipe, a
terminal of a known size and a terminal that reports no size (real pseudo-terminals, in
subprocesses); and the help text with click's own formatter."""

from __future__ import annotations

import fcntl
import gc
import json
import os
import pty
import struct
import subprocess
import sys
import termios
from typing import Any

import click
import pytest

from lash.cli import _main

ENV_VALUES = [None, "", "0", "-3", "abc", " 90 ", "120", "7"]

CHILD = """
import itertools, json, os, shutil, sys
from lash.cli._main import terminal_columns
values = json.loads(sys.argv[1])
seen = []
for columns, lines in itertools.product(values, values):
    for name, value in (("COLUMNS", columns), ("LINES", lines)):
        os.environ.pop(name, None)
        if value is not None:
            os.environ[name] = value
    seen.append([columns, lines, terminal_columns(), shutil.get_terminal_size().columns])
sys.stderr.write(json.dumps(seen))
"""


def _run_child(stdout: int | None) -> list[list[Any]]:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(ENV_VALUES)],
        stdout=stdout if stdout is not None else subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        check=True,
        timeout=60,
    )
    seen: list[list[Any]] = json.loads(result.stderr)
    assert len(seen) == len(ENV_VALUES) ** 2
    return seen


@pytest.mark.parametrize("size", [None, (132, 40), (0, 0)], ids=["pipe", "pty-132x40", "pty-0x0"])
def test_terminal_columns_is_shutils_width(size: tuple[int, int] | None) -> None:
    """Same width as shutil for every pair of environment values, on each kind of stdout."""
    if size is None:
        seen = _run_child(None)
    else:
        leader, follower = pty.openpty()
        try:
            columns, rows = size
            fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
            seen = _run_child(follower)
        finally:
            os.close(leader)
            os.close(follower)
    for columns, lines, ours, shutils in seen:
        assert ours == shutils, (columns, lines, size)
    widths = {ours for _, _, ours, _ in seen}
    # The cases are not all alike: $COLUMNS wins when positive, else the terminal, else 80.
    assert {90, 120, 7} <= widths
    assert (132 in widths) == (size == (132, 40))


def _help(capsys: pytest.CaptureFixture[str]) -> str:
    try:
        with pytest.raises(SystemExit) as exit_info:
            _main.main(["--help"])
    finally:
        gc.unfreeze()  # main() freezes what exists (a process's start-up); not this one's
    assert exit_info.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("columns", ["40", "72", "100", "200", "nonsense"])
def test_help_wraps_as_clicks_formatter_does(
    columns: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``lash --help`` (the console-script entry point) is the text click's own formatter gives
    for the same ``$COLUMNS`` (stdout is not a terminal here: a bad value means 80)."""
    monkeypatch.setenv("COLUMNS", columns)
    ours = _help(capsys)
    monkeypatch.setattr(_main._Context, "formatter_class", click.HelpFormatter)
    theirs = _help(capsys)
    assert ours == theirs
    assert "Commands:" in ours
    width = max(len(line) for line in ours.splitlines())
    expected = max(min(int(columns) if columns.isdigit() else 80, 80) - 2, 50)
    assert expected - 12 <= width <= expected, (width, expected)


def test_main_freezes_what_start_up_imported() -> None:
    """The console-script entry point moves what exists when it starts (the imported modules,
    classes, functions) out of the collector's sight, in its own process."""
    code = (
        "import gc, sys\n"
        "from lash.cli import main\n"
        "assert gc.get_freeze_count() == 0\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "sys.stderr.write(str(gc.get_freeze_count()))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert int(result.stderr) > 10_000
