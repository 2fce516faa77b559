"""Bad input never escapes as a raw Python error: config bytes, session ids, deep tool arguments.

Config files that are not UTF-8 and invalid session ids are checked here end to end (kernel,
both builtin stores, the command line); the argument checks of ``LashCore(...)`` are in
``test_core.py``, the store side of the id rule in ``test_store_conformance.py``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from _pkgs import run_lash

import lash
from lash_plugins_builtin.sqlite import SQLiteStore

DOCS = Path(__file__).resolve().parent.parent / "docs"

# -- a config file that is not UTF-8 ------------------------------------------------------------


@pytest.mark.parametrize("command", [["doctor"], ["plugins"], ["plugins", "--json"]])
def test_cli_reports_a_config_that_is_not_utf8_without_traceback(
    tmp_path: Path, command: list[str]
) -> None:
    """`lash doctor` and `lash plugins` print the file and byte offset, no traceback, exit 1."""
    config = tmp_path / "lash.toml"
    config.write_bytes(b'store = "memory://"\nmodel = "gpt\xe9"\n')  # Latin-1 é at offset 32
    result = run_lash(*command, cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 1
    assert f"{config}:2:13: not UTF-8 text: byte 0xe9 at byte offset 32 " in output
    assert "Traceback" not in output and "UnicodeDecodeError" not in output


# -- session ids -----------------------------------------------------------------------------------

#: Ids breaking the rule of docs/sessions.rst, and the part of the rule each breaks.
BAD_IDS: list[tuple[Any, str]] = [
    ("", "it is empty"),
    ("x" * 257, "it has 257 characters, more than the 256 allowed"),
    ("ok\udc80", "it holds a lone surrogate (U+DC80) at index 2, so it cannot be encoded as UTF-8"),
    ("a\x00b", "it holds a control character (U+0000) at index 1"),
    ("a\nb", "it holds a control character (U+000A) at index 1"),
    ("a\x1fb", "it holds a control character (U+001F) at index 1"),
    ("\x7f", "it holds a control character (U+007F) at index 0"),
    ("a\x80", "it holds a control character (U+0080) at index 1"),
    ("a\x9fz", "it holds a control character (U+009F) at index 1"),
    ("para\u2029graph", "it holds a control character (U+2029) at index 4"),
    (" lead", "it starts or ends with whitespace"),
    ("trail\t", "it holds a control character (U+0009) at index 5"),
    ("trail\u3000", "it starts or ends with whitespace"),
    (42, "session ids are strings, got int"),
    (None, "session ids are strings, got NoneType"),
]

#: Ids at the edges of the rule, all valid.
GOOD_IDS = [
    "x",
    "é" * 256,
    "😀" * 256,  # 256 characters, 1,024 bytes of UTF-8
    'support/ticket 4711: Zoë\'s "case"; DROP TABLE sessions; --',
    "a\u00a0b",  # a no-break space inside is fine
]


def _refusal(call: Callable[[], object]) -> str:
    with pytest.raises(lash.SessionError) as info:
        call()
    assert type(info.value) is lash.SessionError
    return str(info.value)


@pytest.mark.parametrize(("session_id", "broken"), BAD_IDS, ids=repr)
def test_core_session_refuses_an_invalid_id(session_id: Any, broken: str) -> None:
    """core.session(id) raises SessionError naming the rule broken and showing the id."""
    core = lash.LashCore(plugins=["standard"], store="memory://", autoload=False)
    message = _refusal(lambda: core.session(session_id))
    shown = repr(session_id) if len(repr(session_id)) <= 80 else "'xxxxxxxxxxxx"
    assert message.startswith(f"invalid session id {shown}")
    assert broken in message


def test_long_invalid_id_is_cut_short_in_the_message() -> None:
    """A 100,000-character id is shown cut short (the message stays under 300 characters)."""
    message = _refusal(lambda: lash.check_session_id("y" * 100_000))
    assert len(message) < 300
    assert "it has 100000 characters, more than the 256 allowed" in message


@pytest.mark.parametrize("session_id", GOOD_IDS, ids=repr)
def test_ids_at_the_edges_of_the_rule_are_valid(session_id: str) -> None:
    """The longest ids, any script, emoji, quotes and an inner no-break space are accepted."""
    assert lash.check_session_id(session_id) == session_id


def _calls(store: lash.Store, session_id: Any) -> dict[str, Callable[[], Awaitable[object]]]:
    lease = lash.Lease(session_id, "owner", 1, 2e9)
    return {
        "acquire_lease": lambda: store.acquire_lease(session_id, "owner", ttl=30),
        "load": lambda: store.load(session_id),
        "load_full": lambda: store.load(session_id, full=True),
        "commit": lambda: store.commit(
            session_id, lease=lease, expected_revision=0, delta=lash.CommitDelta()
        ),
        "delete": lambda: store.delete(session_id),
    }


@pytest.mark.anyio
async def test_every_store_method_refuses_invalid_ids_alike(tmp_path: Path) -> None:
    """memory:// and sqlite:// refuse each invalid id in every method with the kernel's message,
    before touching anything: the SQLite file is never created."""
    db = tmp_path / "never.db"
    stores = [lash.MemoryStore(), SQLiteStore(f"sqlite:///{db}")]
    core = lash.LashCore(plugins=["standard"], store="memory://", autoload=False)
    for session_id, _ in BAD_IDS:
        expected = _refusal(lambda sid=session_id: core.session(sid))
        for store in stores:
            for method, call in _calls(store, session_id).items():
                with pytest.raises(lash.SessionError) as info:
                    await call()
                assert type(info.value) is lash.SessionError, (store, method)
                assert str(info.value) == expected, (store, method)
    for store in stores:
        await store.close()
    assert not db.exists()


@pytest.mark.anyio
async def test_a_turn_runs_and_commits_under_the_longest_emoji_id(tmp_path: Path) -> None:
    """A 256-emoji id (1,024 bytes) runs a turn on a real SQLite file and reads back whole."""
    session_id = "😀" * 256
    url = f"sqlite:///{tmp_path}/lash.db"
    options = {"scripted": {"responses": [{"text": "hi"}]}}
    core = lash.LashCore(
        plugins=["standard", "stores", "scripted"],
        store=url,
        provider="scripted",
        options=options,
        autoload=False,
    )
    async with core:
        session = await core.session(session_id).open()
        result = await session.turn("hello").run()
        assert (result.outcome, result.revision) == ("completed", 1)
    reader = SQLiteStore(url)
    try:
        record = await reader.load(session_id)
        listed = [row.session_id for row in await reader.list_sessions()]
    finally:
        await reader.close()
    assert record is not None and record.session_id == session_id and record.turns == 1
    assert listed == [session_id]


def test_docs_show_the_real_message_for_an_invalid_id() -> None:
    """The example error on the sessions page is the message lash gives for 'a\\nb'."""
    page = (DOCS / "sessions.rst").read_text(encoding="utf-8")
    shown = re.search(r"    lash\.SessionError: (invalid session id .*?)\n\n", page, re.S)
    assert shown is not None
    message = _refusal(lambda: lash.check_session_id("a\nb"))
    assert " ".join(shown.group(1).split()) == message


def test_cli_reports_an_invalid_session_id_without_traceback(tmp_path: Path) -> None:
    """`lash sessions show ' x'` prints the rule broken on stderr and exits non-zero."""
    (tmp_path / "lash.toml").write_text('store = "memory://"\n', encoding="utf-8")
    result = run_lash("sessions", "show", " x", cwd=tmp_path)
    assert result.returncode != 0
    assert "invalid session id ' x': it starts or ends with whitespace" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
