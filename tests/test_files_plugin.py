"""The builtin ``files`` plugin: workspace-confined file tools, run through real turns."""

from __future__ import annotations

import importlib.util
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from _recorder import Recorder

import lash
from lash_plugins_builtin import files, standard, stores

pytestmark = pytest.mark.anyio

EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "examples" / "builtins"
WRITE_TOOLS = {"write_file", "edit_file"}
ALL_TOOLS = {"read_file", "list_dir", "write_file", "edit_file"}


def make_core(rec: Recorder, **options: Any) -> lash.LashCore:
    return lash.LashCore(
        store="memory://",
        plugins=[standard, stores, rec, files],
        autoload=False,
        disable=["scripted", "openai", "plan"],
        provider="recorder",
        options={"files": options},
    )


async def run_calls(
    calls: Sequence[tuple[str, dict[str, Any]]], **options: Any
) -> tuple[list[lash.ToolResult], Recorder]:
    """Run one turn in which the model makes ``calls`` (in one round), then answers."""
    script = [
        {"id": f"c{i}", "name": name, "arguments": args} for i, (name, args) in enumerate(calls)
    ]
    rec = Recorder([{"tool_calls": script}, {"text": "done"}])
    async with make_core(rec, **options) as core:
        session = await core.session("s").open()
        result = await session.turn("work on the files").run()
    assert result.outcome == "completed"
    return [record.result for record in result.tool_calls], rec


async def run_one(name: str, root: Path, **arguments: Any) -> lash.ToolResult:
    (result,), _ = await run_calls([(name, arguments)], root=str(root))
    return result


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    """A workspace with a text file, a subdirectory and a hidden file."""
    root = tmp_path / "ws"
    root.mkdir()
    (root / "notes.txt").write_text("one\ntwo\nthree\n", encoding="utf-8")
    (root / "src").mkdir()
    (root / "src" / "app.py").write_text("print('hi')\n", encoding="utf-8")
    (root / ".env").write_text("TOKEN=x\n", encoding="utf-8")
    return root


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory beside the workspace, with links into it planted in the workspace."""
    out = tmp_path / "outside"
    (out / "sub").mkdir(parents=True)
    (out / "secret.txt").write_text("secret\n", encoding="utf-8")
    ws = tmp_path / "ws"
    (ws / "link.txt").symlink_to(out / "secret.txt")
    (ws / "linkdir").symlink_to(out, target_is_directory=True)
    (ws / "uplink").symlink_to(Path("..") / "outside", target_is_directory=True)
    (ws / "dangling").symlink_to(out / "new.txt")
    return out


def tree(path: Path) -> dict[str, str]:
    """Every file under ``path`` (links not followed) with its content or link target."""
    found: dict[str, str] = {}
    for item in sorted(path.rglob("*")):
        key = str(item.relative_to(path))
        if item.is_symlink():
            found[key] = f"-> {os.readlink(item)}"
        elif item.is_file():
            found[key] = item.read_text(encoding="utf-8", errors="replace")
    return found


def real(path: Path) -> str:
    return os.path.realpath(path)


# -- happy paths -----------------------------------------------------------------------------


async def test_read_file_returns_the_text_the_model_then_reads(ws: Path) -> None:
    """read_file returns the file's text, which is what the model reads next."""
    (result,), rec = await run_calls([("read_file", {"path": "notes.txt"})], root=str(ws))
    assert (result.is_error, result.content) == (False, "one\ntwo\nthree\n")
    seen = [m for m in rec.requests[1].messages if m.role == "tool"]
    assert seen[0].content == "one\ntwo\nthree\n"


async def test_read_file_offset_and_limit_select_lines(ws: Path) -> None:
    """offset counts lines from 1; limit caps how many are returned."""
    results, _ = await run_calls(
        [
            ("read_file", {"path": "notes.txt", "offset": 2, "limit": 1}),
            ("read_file", {"path": "notes.txt", "offset": 2}),
            ("read_file", {"path": "notes.txt", "limit": 2}),
            ("read_file", {"path": "notes.txt", "offset": 9}),
            ("read_file", {"path": "notes.txt", "offset": 0}),
        ],
        root=str(ws),
    )
    assert [r.content for r in results[:3]] == ["two\n", "two\nthree\n", "one\ntwo\n"]
    assert results[3].is_error and "offset 9 is past the end of 'notes.txt' (3 lines)" in (
        results[3].content
    )
    assert results[4].is_error and "offset counts lines from 1, got 0" in results[4].content


async def test_write_file_creates_then_replaces_and_reports_bytes(ws: Path) -> None:
    """write_file creates a file, then replaces it, saying so and counting UTF-8 bytes."""
    results, _ = await run_calls(
        [("write_file", {"path": "new.txt", "content": "héllo\n"})], root=str(ws)
    )
    assert (results[0].is_error, results[0].content) == (False, "created 'new.txt': wrote 7 bytes")
    assert (ws / "new.txt").read_text(encoding="utf-8") == "héllo\n"
    again = await run_one("write_file", ws, path="new.txt", content="bye")
    assert again.content == "replaced 'new.txt': wrote 3 bytes"
    assert (ws / "new.txt").read_text(encoding="utf-8") == "bye"


async def test_write_file_keeps_the_mode_of_the_file_it_replaces(ws: Path) -> None:
    """Replacing a file keeps its permission bits."""
    (ws / "notes.txt").chmod(0o640)
    result = await run_one("write_file", ws, path="notes.txt", content="x")
    assert not result.is_error
    assert stat.S_IMODE((ws / "notes.txt").stat().st_mode) == 0o640


async def test_write_file_creates_directories_only_when_asked(ws: Path) -> None:
    """A missing parent directory is an error naming create_dirs; with it, it is created."""
    refused = await run_one("write_file", ws, path="a/b/c.txt", content="x")
    assert refused.is_error
    assert "directory 'a' does not exist" in refused.content
    assert "create_dirs" in refused.content
    assert not (ws / "a").exists()
    done = await run_one("write_file", ws, path="a/b/c.txt", content="x", create_dirs=True)
    assert done.content == "created 'a/b/c.txt': wrote 1 bytes"
    assert (ws / "a" / "b" / "c.txt").read_text(encoding="utf-8") == "x"


async def test_list_dir_is_sorted_with_types_and_sizes(ws: Path) -> None:
    """list_dir shows one sorted entry per line: directories marked with '/', files sized."""
    (ws / "README.md").write_text("hello", encoding="utf-8")
    results, _ = await run_calls([("list_dir", {}), ("list_dir", {"path": "src"})], root=str(ws))
    assert results[0].content == (
        "'.': 3 entries\nREADME.md (file, 5 bytes)\nnotes.txt (file, 14 bytes)\nsrc/ (directory)"
    )
    assert results[1].content == "'src': 1 entry\napp.py (file, 12 bytes)"


async def test_list_dir_caps_the_entries_and_shows_links_unfollowed(ws: Path) -> None:
    """At most max_list_entries entries are shown, then how many more; links are not followed."""
    (ws / "zlink").symlink_to("notes.txt")
    for name in ("a1", "a2", "a3"):
        (ws / name).write_text("", encoding="utf-8")
    (capped,), _ = await run_calls([("list_dir", {})], root=str(ws), max_list_entries=2)
    assert capped.content == (
        "'.': 6 entries\na1 (file, 0 bytes)\na2 (file, 0 bytes)\n"
        "... 4 more not shown (max_list_entries = 2)"
    )
    (listing,), _ = await run_calls([("list_dir", {})], root=str(ws))
    assert listing.content.splitlines()[-1] == "zlink (symbolic link)"


async def test_list_dir_of_a_file_or_missing_directory_is_an_error(ws: Path) -> None:
    """list_dir names what is wrong: not a directory, or not there."""
    results, _ = await run_calls(
        [("list_dir", {"path": "notes.txt"}), ("list_dir", {"path": "nope"})], root=str(ws)
    )
    assert results[0].is_error and "'notes.txt' in the workspace root" in results[0].content
    assert "is a file, not a directory" in results[0].content
    assert results[1].is_error and "directory 'nope' does not exist" in results[1].content


async def test_edit_file_replaces_a_unique_substring(ws: Path) -> None:
    """edit_file replaces the one occurrence of old with new."""
    result = await run_one("edit_file", ws, path="notes.txt", old="two\n", new="TWO\n")
    assert (result.is_error, result.content) == (False, "edited 'notes.txt': replaced 1 occurrence")
    assert (ws / "notes.txt").read_text(encoding="utf-8") == "one\nTWO\nthree\n"


async def test_edit_file_requires_the_expected_number_of_occurrences(ws: Path) -> None:
    """Not found, or found a different number of times than count, is an error saying how many."""
    (ws / "dup.txt").write_text("a = 1\na = 1\n", encoding="utf-8")
    results, _ = await run_calls(
        [
            ("edit_file", {"path": "dup.txt", "old": "a = 1", "new": "a = 2"}),
            ("edit_file", {"path": "dup.txt", "old": "b = 1", "new": "b = 2"}),
            ("edit_file", {"path": "dup.txt", "old": "a = 1", "new": "a = 2", "count": 3}),
        ],
        root=str(ws),
    )
    assert all(r.is_error for r in results)
    assert "old text found 2 times in 'dup.txt', expected 1" in results[0].content
    assert "count=2" in results[0].content
    assert "old text not found in 'dup.txt'" in results[1].content
    assert "old text found 2 times in 'dup.txt', expected 3" in results[2].content
    assert (ws / "dup.txt").read_text(encoding="utf-8") == "a = 1\na = 1\n"
    done = await run_one("edit_file", ws, path="dup.txt", old="a = 1", new="a = 2", count=2)
    assert done.content == "edited 'dup.txt': replaced 2 occurrences"
    assert (ws / "dup.txt").read_text(encoding="utf-8") == "a = 2\na = 2\n"


async def test_edit_file_refuses_empty_or_unchanged_text(ws: Path) -> None:
    """An empty old, or new equal to old, is refused before the file is touched."""
    results, _ = await run_calls(
        [
            ("edit_file", {"path": "notes.txt", "old": "", "new": "x"}),
            ("edit_file", {"path": "notes.txt", "old": "one", "new": "one"}),
        ],
        root=str(ws),
    )
    assert "old is empty" in results[0].content
    assert "old and new are the same" in results[1].content


async def test_writes_leave_no_temporary_files(ws: Path) -> None:
    """After writes and edits, successful or refused, the directory holds only the real files."""
    before = set(os.listdir(ws))
    await run_calls(
        [
            ("write_file", {"path": "new.txt", "content": "a\n"}),
            ("write_file", {"path": "notes.txt", "content": "replaced\n"}),
            ("write_file", {"path": "src", "content": "not a directory"}),
            ("edit_file", {"path": "src/app.py", "old": "hi", "new": "hello"}),
        ],
        root=str(ws),
    )
    assert set(os.listdir(ws)) == before | {"new.txt"}
    assert os.listdir(ws / "src") == ["app.py"]
    assert (ws / "src" / "app.py").read_text(encoding="utf-8") == "print('hello')\n"


async def test_relative_symlinks_inside_the_root_are_followed(ws: Path) -> None:
    """A link that stays inside the root works: reads and writes go to its target."""
    (ws / "alias.txt").symlink_to("notes.txt")
    (ws / "code").symlink_to("src", target_is_directory=True)
    results, _ = await run_calls(
        [
            ("read_file", {"path": "alias.txt"}),
            ("list_dir", {"path": "code"}),
            ("write_file", {"path": "code/new.py", "content": "x = 1\n"}),
        ],
        root=str(ws),
    )
    assert [r.is_error for r in results] == [False, False, False]
    assert results[0].content == "one\ntwo\nthree\n"
    assert (ws / "src" / "new.py").read_text(encoding="utf-8") == "x = 1\n"
    edited = await run_one("write_file", ws, path="alias.txt", content="via link\n")
    assert not edited.is_error
    assert (ws / "alias.txt").is_symlink()
    assert (ws / "notes.txt").read_text(encoding="utf-8") == "via link\n"


async def test_default_root_is_the_working_directory(
    ws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no root option, paths are relative to the process working directory."""
    monkeypatch.chdir(ws)
    (result,), _ = await run_calls([("read_file", {"path": "notes.txt"})])
    assert result.content == "one\ntwo\nthree\n"


async def test_a_missing_root_is_a_clear_error(tmp_path: Path) -> None:
    """A root that does not exist is named in the error."""
    result = await run_one("list_dir", tmp_path / "missing")
    assert result.is_error
    assert "the workspace root" in result.content and "missing" in result.content
    assert "is not an existing directory" in result.content


def test_invalid_limits_are_refused_when_the_options_are_validated() -> None:
    """A size limit below 1 is an options error naming the field."""
    with pytest.raises(lash.PluginLoadError, match="max_read_bytes must be at least 1, got 0"):
        lash.LashCore(
            store="memory://",
            plugins=[standard, stores, files],
            autoload=False,
            options={"files": {"max_read_bytes": 0}},
            strict=True,
        )


def test_tool_schemas_come_from_the_signatures() -> None:
    """The tools' JSON schemas: paths required, the rest optional, no context parameter."""
    core = lash.LashCore(plugins=[standard, stores, files], autoload=False)
    tools = {n: c.value for n, c in core.registry.of("tool").items() if c.plugin == "files"}
    assert set(tools) == ALL_TOOLS
    shapes = {
        n: (set(t.parameters["properties"]), t.parameters["required"]) for n, t in tools.items()
    }
    assert shapes == {
        "read_file": ({"path", "offset", "limit"}, ["path"]),
        "write_file": ({"path", "content", "create_dirs"}, ["path", "content"]),
        "list_dir": ({"path"}, []),
        "edit_file": ({"path", "old", "new", "count"}, ["path", "old", "new"]),
    }


# -- escapes ---------------------------------------------------------------------------------

ESCAPES = [
    pytest.param("../outside/secret.txt", "contains '..'", id="dotdot"),
    pytest.param("src/../../outside/secret.txt", "contains '..'", id="dotdot-inside"),
    pytest.param("{outside}/secret.txt", "is absolute", id="absolute"),
    pytest.param("~/secret.txt", "starts with '~'", id="tilde"),
    pytest.param("link.txt", "through a symbolic link", id="file-symlink"),
    pytest.param("linkdir/secret.txt", "through a symbolic link", id="directory-symlink"),
    pytest.param("uplink/sub/x.txt", "through a symbolic link", id="relative-symlink-middle"),
    pytest.param("dangling", "through a symbolic link", id="dangling-symlink"),
]

FILE_CALLS = {
    "read_file": {},
    "write_file": {"content": "pwned"},
    "edit_file": {"old": "secret", "new": "pwned"},
}


@pytest.mark.parametrize("tool", sorted(FILE_CALLS))
@pytest.mark.parametrize(("path", "reason"), ESCAPES)
async def test_file_tools_refuse_paths_that_escape_the_root(
    ws: Path, outside: Path, tool: str, path: str, reason: str
) -> None:
    """Traversal, absolute paths and links out of the root are refused, naming path and root."""
    path = path.format(outside=outside)
    before = tree(outside)
    args: dict[str, Any] = {"path": path, **FILE_CALLS[tool]}
    if tool == "write_file":
        args["create_dirs"] = True
    result = await run_one(tool, ws, **args)
    assert result.is_error
    assert repr(path) in result.content and real(ws) in result.content
    assert reason in result.content
    assert "secret\n" not in result.content
    assert tree(outside) == before


LIST_ESCAPES = [
    pytest.param("..", "contains '..'", id="dotdot"),
    pytest.param("{outside}", "is absolute", id="absolute"),
    pytest.param("linkdir", "through a symbolic link", id="directory-symlink"),
    pytest.param("linkdir/sub", "through a symbolic link", id="symlink-in-the-middle"),
    pytest.param("uplink", "through a symbolic link", id="relative-symlink"),
    pytest.param("dangling", "through a symbolic link", id="dangling-symlink"),
]


@pytest.mark.parametrize(("path", "reason"), LIST_ESCAPES)
async def test_list_dir_refuses_paths_that_escape_the_root(
    ws: Path, outside: Path, path: str, reason: str
) -> None:
    """list_dir never shows a directory outside the root."""
    path = path.format(outside=outside)
    result = await run_one("list_dir", ws, path=path)
    assert result.is_error
    assert repr(path) in result.content and real(ws) in result.content
    assert reason in result.content
    assert "secret.txt" not in result.content


def hard_links_refused(ws: Path, path: str, links: int) -> str:
    """What the model reads when a tool refuses ``path`` for its hard links."""
    return (
        f"{path!r} in the workspace root {real(ws)} has {links} hard links: it may be the same "
        "file as one outside the workspace, so the file tools neither read nor write it"
    )


@pytest.mark.parametrize("tool", sorted(FILE_CALLS))
async def test_file_tools_refuse_a_hard_link_to_a_file_outside(
    ws: Path, outside: Path, tool: str
) -> None:
    """A hard link in the root to a file outside it is neither read nor written; the model is
    told why."""
    os.link(outside / "secret.txt", ws / "hard.txt")
    before = tree(outside)
    (result,), rec = await run_calls(
        [(tool, {"path": "hard.txt", **FILE_CALLS[tool]})], root=str(ws)
    )
    assert result.is_error
    (seen,) = [m for m in rec.requests[1].messages if m.role == "tool"]
    assert seen.content == result.content
    assert seen.content.endswith(f"WorkspaceError: {hard_links_refused(ws, 'hard.txt', 2)}")
    assert "secret\n" not in seen.content
    assert tree(outside) == before
    # Still one file under two names: not even split apart by a rename.
    assert (ws / "hard.txt").stat().st_ino == (outside / "secret.txt").stat().st_ino
    assert (ws / "hard.txt").stat().st_nlink == 2


async def test_a_file_with_two_names_in_the_root_is_refused_until_one_goes(ws: Path) -> None:
    """Two hard links inside the root are refused too (where a link is cannot be known); with
    one name left, the file is read and written again."""
    os.link(ws / "notes.txt", ws / "src" / "again.txt")
    results, _ = await run_calls(
        [
            ("read_file", {"path": "notes.txt"}),
            ("read_file", {"path": "src/again.txt"}),
            ("edit_file", {"path": "notes.txt", "old": "two", "new": "2"}),
            ("write_file", {"path": "src/again.txt", "content": "new"}),
        ],
        root=str(ws),
    )
    refused = [(r.is_error, r.content.rpartition("WorkspaceError: ")[2]) for r in results]
    assert refused == [
        (True, hard_links_refused(ws, "notes.txt", 2)),
        (True, hard_links_refused(ws, "src/again.txt", 2)),
        (True, hard_links_refused(ws, "notes.txt", 2)),
        (True, hard_links_refused(ws, "src/again.txt", 2)),
    ]
    assert (ws / "notes.txt").read_text(encoding="utf-8") == "one\ntwo\nthree\n"
    (ws / "src" / "again.txt").unlink()
    assert (await run_one("read_file", ws, path="notes.txt")).content == "one\ntwo\nthree\n"
    edited = await run_one("edit_file", ws, path="notes.txt", old="two", new="2")
    assert edited.content == "edited 'notes.txt': replaced 1 occurrence"


async def test_a_root_that_is_itself_a_link_works(ws: Path, tmp_path: Path) -> None:
    """The root is resolved first, so a root reached through a link is not an escape."""
    (tmp_path / "ws-link").symlink_to(ws, target_is_directory=True)
    result = await run_one("read_file", tmp_path / "ws-link", path="notes.txt")
    assert result.content == "one\ntwo\nthree\n"


async def test_a_directory_swapped_for_a_link_after_the_check_is_refused(
    ws: Path, outside: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A link swapped in between the check and the open is refused (O_NOFOLLOW walk)."""
    checked = files._resolve

    def race(options: files.FilesOptions, path: str) -> Any:
        target = checked(options, path)
        # The attacker's move, between the check and the use.
        if (ws / "src").is_dir() and not (ws / "src").is_symlink():
            (ws / "src").rename(ws / "src-old")
            (ws / "src").symlink_to(outside, target_is_directory=True)
        return target

    monkeypatch.setattr(files, "_resolve", race)
    before = tree(outside)
    for tool, args in (("write_file", {"content": "pwned"}), ("read_file", {})):
        result = await run_one(tool, ws, path="src/secret.txt", **args)
        assert result.is_error and "'src' in the workspace root" in result.content
        assert "is a symbolic link, not a directory (it changed while in use)" in result.content
        assert "secret\n" not in result.content
        # Undo the swap so the next call passes the check and meets the race again.
        (ws / "src").unlink()
        (ws / "src-old").rename(ws / "src")
    assert tree(outside) == before


async def test_a_file_swapped_for_a_link_after_the_check_is_not_followed(
    ws: Path, outside: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A final name swapped for a link after the check is neither read nor written through."""
    checked = files._resolve

    def race(options: files.FilesOptions, path: str) -> Any:
        target = checked(options, path)
        if not (ws / "notes.txt").is_symlink():
            (ws / "notes.txt").unlink()
            (ws / "notes.txt").symlink_to(outside / "secret.txt")
        return target

    monkeypatch.setattr(files, "_resolve", race)
    before = tree(outside)
    read = await run_one("read_file", ws, path="notes.txt")
    assert read.is_error and "'notes.txt' in the workspace root" in read.content
    assert "is a symbolic link (it changed while in use)" in read.content
    (ws / "notes.txt").unlink()
    (ws / "notes.txt").write_text("mine\n", encoding="utf-8")
    write = await run_one("write_file", ws, path="notes.txt", content="pwned")
    assert write.is_error and "'notes.txt' in the workspace root" in write.content
    assert "is a symbolic link; only files can be written" in write.content
    assert (ws / "notes.txt").is_symlink()
    assert tree(outside) == before


async def test_an_edit_racing_another_writer_is_refused_and_cleans_up(
    ws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the file changes between edit_file's read and its rename, the edit loses nothing."""
    read_lines = files._read_lines

    def race(fd: int, target: Any, offset: int, limit: int | None, cap: int) -> bytes:
        data = read_lines(fd, target, offset, limit, cap)
        (ws / "notes.txt").write_text("changed meanwhile\n", encoding="utf-8")
        return data

    monkeypatch.setattr(files, "_read_lines", race)
    result = await run_one("edit_file", ws, path="notes.txt", old="two", new="TWO")
    assert result.is_error and "changed while it was being edited" in result.content
    assert (ws / "notes.txt").read_text(encoding="utf-8") == "changed meanwhile\n"
    assert sorted(os.listdir(ws)) == [".env", "notes.txt", "src"]


# -- hidden paths ----------------------------------------------------------------------------


async def test_hidden_paths_are_off_limits_unless_allowed(ws: Path) -> None:
    """Dot-names are refused and not listed by default; allow_hidden opens them."""
    (ws / "env-link").symlink_to(".env")
    calls: list[tuple[str, dict[str, Any]]] = [
        ("read_file", {"path": ".env"}),
        ("read_file", {"path": "env-link"}),
        ("write_file", {"path": ".git/config", "content": "x", "create_dirs": True}),
        ("list_dir", {}),
    ]
    results, _ = await run_calls(calls, root=str(ws))
    assert [r.is_error for r in results] == [True, True, True, False]
    assert "path '.env' names a hidden file or directory" in results[0].content
    assert "path 'env-link' leads to a hidden file or directory" in results[1].content
    assert not (ws / ".git").exists()
    assert ".env" not in results[3].content
    allowed, _ = await run_calls(calls, root=str(ws), allow_hidden=True)
    assert [r.is_error for r in allowed] == [False, False, False, False]
    assert allowed[0].content == allowed[1].content == "TOKEN=x\n"
    assert ".env (file, 8 bytes)" in allowed[3].content.splitlines()


# -- size limits and content -----------------------------------------------------------------


async def test_reads_over_max_read_bytes_are_refused_with_advice(ws: Path) -> None:
    """A file over max_read_bytes is refused with a hint at offset/limit, which then work."""
    (ws / "big.txt").write_text("".join(f"line {i:03}\n" for i in range(100)), encoding="utf-8")
    results, _ = await run_calls(
        [
            ("read_file", {"path": "big.txt"}),
            ("read_file", {"path": "big.txt", "offset": 11, "limit": 2}),
            ("read_file", {"path": "big.txt", "offset": 2}),
        ],
        root=str(ws),
        max_read_bytes=100,
    )
    assert results[0].is_error
    assert "'big.txt' is 900 bytes, more than max_read_bytes (100)" in results[0].content
    assert "offset and limit" in results[0].content
    assert results[1].content == "line 010\nline 011\n"
    assert results[2].is_error and "ask for fewer lines with limit" in results[2].content


async def test_writes_over_max_write_bytes_are_refused(ws: Path) -> None:
    """Content over max_write_bytes is refused, unwritten; so is an edit growing past it."""
    results, _ = await run_calls(
        [
            ("write_file", {"path": "big.txt", "content": "x" * 16}),
            ("write_file", {"path": "ok.txt", "content": "x" * 15}),
            ("edit_file", {"path": "src/app.py", "old": "hi", "new": "hello there"}),
        ],
        root=str(ws),
        max_write_bytes=15,
    )
    assert results[0].is_error
    assert "content is 16 bytes, more than max_write_bytes (15)" in results[0].content
    assert not (ws / "big.txt").exists()
    assert results[1].content == "created 'ok.txt': wrote 15 bytes"
    assert results[2].is_error
    assert "would be 21 bytes, more than max_write_bytes (15)" in results[2].content
    assert (ws / "src" / "app.py").read_text(encoding="utf-8") == "print('hi')\n"


async def test_non_utf8_and_binary_files_are_refused(ws: Path) -> None:
    """Files that are not UTF-8 text are refused by read_file and edit_file, unchanged."""
    (ws / "latin1.txt").write_bytes("café\n".encode("latin-1"))
    (ws / "blob.bin").write_bytes(b"ab\x00cd")
    results, _ = await run_calls(
        [
            ("read_file", {"path": "latin1.txt"}),
            ("read_file", {"path": "blob.bin"}),
            ("edit_file", {"path": "latin1.txt", "old": "caf", "new": "CAF"}),
        ],
        root=str(ws),
    )
    assert all(r.is_error for r in results)
    assert "'latin1.txt' is not UTF-8 text (invalid byte at offset 3" in results[0].content
    assert "'blob.bin' looks like a binary file" in results[1].content
    assert "'latin1.txt' is not UTF-8 text" in results[2].content
    assert (ws / "latin1.txt").read_bytes() == "café\n".encode("latin-1")


async def test_directories_and_special_files_are_not_read(ws: Path) -> None:
    """A directory or a FIFO is refused as not a file (opening a FIFO must not wait)."""
    os.mkfifo(ws / "pipe")
    results, _ = await run_calls(
        [("read_file", {"path": "pipe"}), ("read_file", {"path": "src"})], root=str(ws)
    )
    assert results[0].is_error and "'pipe' in the workspace root" in results[0].content
    assert "is a special file, not a file" in results[0].content
    assert results[1].is_error and "'src' in the workspace root" in results[1].content
    assert "is a directory, not a file" in results[1].content


# -- read_only -------------------------------------------------------------------------------


async def test_read_only_hides_the_write_tools_from_the_model(ws: Path) -> None:
    """With read_only, the model is offered read_file and list_dir only."""
    _, rec = await run_calls([("list_dir", {})], root=str(ws), read_only=True)
    offered = {t.name for t in rec.requests[0].tools}
    assert offered & ALL_TOOLS == ALL_TOOLS - WRITE_TOOLS == {"read_file", "list_dir"}
    _, rec = await run_calls([("list_dir", {})], root=str(ws))
    assert {t.name for t in rec.requests[0].tools} >= ALL_TOOLS


async def test_read_only_refuses_write_tools_called_anyway(ws: Path) -> None:
    """A write tool called anyway is refused, by the kernel in a turn and by the tool itself."""
    results, _ = await run_calls(
        [
            ("write_file", {"path": "notes.txt", "content": "x"}),
            ("edit_file", {"path": "notes.txt", "old": "one", "new": "1"}),
        ],
        root=str(ws),
        read_only=True,
    )
    assert all(r.is_error and "unknown tool" in r.content for r in results)
    rec = Recorder([])
    async with make_core(rec, root=str(ws), read_only=True) as core:
        session = await core.session("s").open()
        tools = core.registry.of("tool")
        context = lash.ToolContext(session, "direct")
        write = await tools["write_file"].value.invoke(
            {"path": "notes.txt", "content": "x"}, context
        )
        edit = await tools["edit_file"].value.invoke(
            {"path": "notes.txt", "old": "one", "new": "1"}, context
        )
    for name, result in (("write_file", write), ("edit_file", edit)):
        assert result.is_error
        assert f"{name} is disabled: the workspace is read-only" in result.content
    assert (ws / "notes.txt").read_text(encoding="utf-8") == "one\ntwo\nthree\n"


# -- the docs example ------------------------------------------------------------------------


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"files_example_{name}", EXAMPLE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_docs_example_transcript(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The example on the docs page runs and prints the transcript the page shows."""
    demo = load_example("files_demo")
    result = await demo.main(str(tmp_path))
    assert (result.outcome, result.text) == ("completed", "Your list is in notes/todo.md.")
    expected = (EXAMPLE / "files_demo.txt").read_text(encoding="utf-8")
    assert capsys.readouterr().out == expected
    assert (tmp_path / "notes" / "todo.md").read_text(encoding="utf-8") == (
        "- buy green tea\n- call Ada\n"
    )


def test_docs_example_config_validates() -> None:
    """The example [options.files] table is valid options for the plugin."""
    config = lash.HostConfig.load(EXAMPLE / "files.toml", environ={})
    core = lash.LashCore(
        store="memory://",
        plugins=[standard, stores, files],
        autoload=False,
        options=config.options,
        strict=True,
    )
    assert core.plugin_options("files") == files.FilesOptions(
        root="workspace", max_read_bytes=65536, read_only=True
    )
