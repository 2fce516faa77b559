"""``files``: read_file, write_file, list_dir and edit_file tools confined to a workspace root.

Every path the model gives is relative to the workspace root (option ``root``). A path is refused
when it is absolute, contains ``..``, names a hidden entry (unless ``allow_hidden``), or leads
outside the root through a symbolic link, wherever the link is (a middle directory, the final
name, a dangling link). The check is made twice: on the real path (``os.path.realpath``), then
while opening, by walking the resolved components down from a descriptor of the root with
``O_NOFOLLOW`` on each one, so a link swapped in after the check is refused too (no time-of-check
to time-of-use gap). A file with more than one hard link is neither read nor written: a hard
link is a second name of the same file, which may be outside the root, and nothing says where
the other names are. Writes go to a temporary file in the target's directory, renamed over the
target with ``os.replace``: readers see the old content or the new, never a part.

POSIX only: the walk needs ``dir_fd`` support (Linux, macOS, the BSDs).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any

import attrs

import lash

__all__ = ["FilesOptions", "WorkspaceError"]

_WRITE_TOOLS = ("write_file", "edit_file")
# How open() with O_NOFOLLOW refuses a link: ELOOP on Linux and macOS, EMLINK on FreeBSD.
_LINK_ERRNOS = (errno.ELOOP, errno.EMLINK)
# getattr: the module must import everywhere (builtins load by default); the tools refuse to
# run where these flags or dir_fd are missing (see _open_dir).
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
# O_NONBLOCK: opening a FIFO for reading would otherwise block until a writer shows up. The file
# is checked to be a regular file right after, and reads of regular files ignore the flag.
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0)


def _at_least_one(instance: Any, attribute: attrs.Attribute[Any], value: int) -> None:
    if value < 1:
        raise ValueError(f"{attribute.name} must be at least 1, got {value}")


def _not_empty(instance: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    if not value.strip():
        raise ValueError(f"{attribute.name} must name a directory ('.' for the working directory)")


@attrs.frozen
class FilesOptions:
    """Per-session options of the files plugin."""

    root: str = lash.option(
        ".",
        validator=_not_empty,
        help="The workspace directory every path is relative to; a relative root is resolved "
        "against the process working directory when a tool runs ('~' is expanded).",
    )
    max_read_bytes: int = lash.option(
        256 * 1024, validator=_at_least_one, help="Most bytes one read_file call returns."
    )
    max_write_bytes: int = lash.option(
        1024 * 1024,
        validator=_at_least_one,
        help="Largest file write_file and edit_file write (UTF-8 bytes).",
    )
    max_list_entries: int = lash.option(
        500, validator=_at_least_one, help="Most entries one list_dir call shows."
    )
    read_only: bool = lash.option(
        False, help="Hide write_file and edit_file from the model, and refuse them if called."
    )
    allow_hidden: bool = lash.option(
        False, help="Allow paths with a component starting with '.' (.git, .env, ...)."
    )


lash_plugin = lash.PluginMeta(
    options=FilesOptions,
    description="read_file, write_file, list_dir and edit_file tools confined to a workspace root.",
    # File access is a power the host grants: never enabled just by being installed.
    opt_in=True,
)


class WorkspaceError(Exception):
    """A file tool call refused or failed; the message is what the model reads."""


# --------------------------------------------------------------------------------------------
# Paths: checking, resolving, and opening without following links
# --------------------------------------------------------------------------------------------


@attrs.frozen
class _Target:
    """A checked path: the real root and the components of the real path below it."""

    shown: str  # the path as the model wrote it, for messages
    root: str
    parts: tuple[str, ...]  # empty for the root itself

    @property
    def name(self) -> str:
        return self.parts[-1]


def _real_root(options: FilesOptions) -> str:
    """The workspace root as a real path (resolved on every call: the cwd may have moved)."""
    root = os.path.realpath(os.path.expanduser(options.root))
    if not os.path.isdir(root):
        raise WorkspaceError(
            f"the workspace root {options.root!r} ({root}) is not an existing directory; "
            "the host must create it or set the files plugin's root option"
        )
    return root


def _is_hidden(name: str) -> bool:
    return name.startswith(".") and name not in (".", "..")


def _resolve(options: FilesOptions, path: str) -> _Target:
    """Check ``path`` against the workspace rules and resolve it, or raise WorkspaceError."""
    root = _real_root(options)
    if not path:
        raise WorkspaceError("the path is empty; use '.' for the workspace root")
    if "\x00" in path:
        raise WorkspaceError(f"path {path!r} contains a NUL character")
    pure = PurePosixPath(path)
    if pure.is_absolute():
        raise WorkspaceError(
            f"path {path!r} is absolute; paths are relative to the workspace root {root}"
        )
    if path.startswith("~"):
        raise WorkspaceError(
            f"path {path!r} starts with '~', which is not expanded; paths are relative to the "
            f"workspace root {root}"
        )
    if ".." in pure.parts:
        raise WorkspaceError(
            f"path {path!r} contains '..'; paths must stay inside the workspace root {root}"
        )
    if not options.allow_hidden and any(_is_hidden(p) for p in pure.parts):
        raise WorkspaceError(
            f"path {path!r} names a hidden file or directory (starting with '.'); hidden paths "
            f"in the workspace root {root} are off limits (option allow_hidden)"
        )
    # realpath follows every link, dangling ones included, so a link anywhere on the path is
    # judged by where it really leads.
    real = os.path.realpath(os.path.join(root, path))
    if real != root and not real.startswith(root.rstrip(os.sep) + os.sep):
        raise WorkspaceError(
            f"path {path!r} leads outside the workspace root {root} through a symbolic link"
        )
    relative = os.path.relpath(real, root)
    parts = () if relative == "." else tuple(relative.split(os.sep))
    if not options.allow_hidden and any(_is_hidden(p) for p in parts):
        raise WorkspaceError(
            f"path {path!r} leads to a hidden file or directory through a symbolic link; hidden "
            f"paths in the workspace root {root} are off limits (option allow_hidden)"
        )
    return _Target(path, root, parts)


def _describe_os_error(target: _Target, exc: OSError) -> str:
    where = f"in the workspace root {target.root}"
    if isinstance(exc, FileNotFoundError):
        return f"{target.shown!r} does not exist {where}"
    if isinstance(exc, PermissionError):
        return f"permission denied for {target.shown!r} {where}"
    if exc.errno in _LINK_ERRNOS:
        return (
            f"{target.shown!r} could not be opened without following a symbolic link {where} "
            "(a link loop, or the path changed while in use)"
        )
    return f"{target.shown!r} {where}: {exc.strerror or exc}"


@contextlib.contextmanager
def _os_errors(target: _Target) -> Iterator[None]:
    """Turn the OSErrors of one call into WorkspaceErrors that name the path and the root."""
    try:
        yield
    except WorkspaceError:
        raise
    except OSError as exc:
        raise WorkspaceError(_describe_os_error(target, exc)) from None


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISLNK(mode):
        return "symbolic link"
    return "special file"


@contextlib.contextmanager
def _open_dir(
    target: _Target, parts: tuple[str, ...], *, create: bool = False, hint: str = ""
) -> Iterator[int]:
    """A descriptor of the directory ``root/parts``, reached without following any link.

    The components come from the real path, so none is a link unless one was swapped in after
    the check: ``O_NOFOLLOW`` then refuses it. ``create`` makes missing directories; ``hint``
    ends the message when one is missing.
    """
    if not (hasattr(os, "O_DIRECTORY") and _NOFOLLOW and os.open in os.supports_dir_fd):
        raise WorkspaceError("the files plugin needs a POSIX system (open with dir_fd)")
    fd = os.open(target.root, _DIR_FLAGS)
    try:
        for index, name in enumerate(parts):
            reached = "/".join(parts[: index + 1])
            try:
                child = os.open(name, _DIR_FLAGS | _NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise WorkspaceError(
                        f"directory {reached!r} does not exist in the workspace root "
                        f"{target.root}{hint}"
                    ) from None
                with contextlib.suppress(FileExistsError):  # made by a concurrent call
                    os.mkdir(name, dir_fd=fd)
                child = os.open(name, _DIR_FLAGS | _NOFOLLOW, dir_fd=fd)
            except OSError as exc:
                if exc.errno != errno.ENOTDIR and exc.errno not in _LINK_ERRNOS:
                    raise
                # Linux reports a link under O_DIRECTORY | O_NOFOLLOW as ENOTDIR: look again.
                kind = _kind(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode)
                changed = " (it changed while in use)" if kind == "symbolic link" else ""
                raise WorkspaceError(
                    f"{reached!r} in the workspace root {target.root} is a {kind}, "
                    f"not a directory{changed}"
                ) from None
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def _open_file(dir_fd: int, target: _Target) -> tuple[int, os.stat_result]:
    """Open the target regular file for reading, refusing links and anything not a file."""
    try:
        fd = os.open(target.name, _READ_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno not in _LINK_ERRNOS:
            raise
        raise WorkspaceError(
            f"{target.shown!r} in the workspace root {target.root} is a symbolic link "
            "(it changed while in use)"
        ) from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise WorkspaceError(
            f"{target.shown!r} in the workspace root {target.root} is a "
            f"{_kind(info.st_mode)}, not a file"
        )
    if info.st_nlink > 1:  # checked on the open file: the one that would be read
        os.close(fd)
        raise _hard_linked(target, info.st_nlink)
    return fd, info


def _hard_linked(target: _Target, links: int) -> WorkspaceError:
    return WorkspaceError(
        f"{target.shown!r} in the workspace root {target.root} has {links} hard links: it may "
        "be the same file as one outside the workspace, so the file tools neither read nor "
        "write it"
    )


def _decode(data: bytes, target: _Target) -> str:
    if b"\x00" in data:
        raise WorkspaceError(
            f"{target.shown!r} looks like a binary file (it contains NUL bytes); "
            "the file tools read and edit UTF-8 text only"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WorkspaceError(
            f"{target.shown!r} is not UTF-8 text (invalid byte at offset {exc.start} of the part "
            "read); the file tools read and edit UTF-8 text only"
        ) from None


def _atomic_write(
    dir_fd: int, target: _Target, data: bytes, *, expect: os.stat_result | None = None
) -> bool:
    """Write ``data`` to a temporary file beside the target, then rename it over the target.

    Returns whether a file was replaced. ``expect`` is the file as it was read (edit_file): if
    it changed since, the edit is refused rather than losing the other change.
    """
    old = _lstat(dir_fd, target.name)
    if old is not None and not stat.S_ISREG(old.st_mode):
        raise WorkspaceError(
            f"{target.shown!r} in the workspace root {target.root} is a "
            f"{_kind(old.st_mode)}; only files can be written"
        )
    # The rename below would not write through the link, only split the names apart; refused
    # all the same, as reading is: whoever made the link meant the two names to be one file.
    if old is not None and old.st_nlink > 1:
        raise _hard_linked(target, old.st_nlink)
    # A hidden, random name: O_EXCL never reuses a file, and list_dir does not show it.
    # os.urandom, not secrets.token_hex (the same bytes): secrets imports hmac and OpenSSL, a
    # cost every `lash` command would pay when it imports this plugin.
    temp = f".{target.name}.{os.urandom(6).hex()}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | _NOFOLLOW
    fd = os.open(temp, flags, 0o666, dir_fd=dir_fd)  # the umask applies, as for any new file
    try:
        try:
            if old is not None:
                os.fchmod(fd, stat.S_IMODE(old.st_mode))  # a rewrite keeps the file's mode
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        # Checked last, right before the rename, to leave the smallest window for a lost update.
        if expect is not None and not _same_file(_lstat(dir_fd, target.name), expect):
            raise WorkspaceError(
                f"{target.shown!r} changed while it was being edited; read it again and retry"
            )
        os.replace(temp, target.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp, dir_fd=dir_fd)
        raise
    with contextlib.suppress(OSError):  # durability of the rename; not every system allows it
        os.fsync(dir_fd)
    return old is not None


def _lstat(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _same_file(now: os.stat_result | None, then: os.stat_result) -> bool:
    if now is None:
        return False
    fields = ("st_dev", "st_ino", "st_size", "st_mtime_ns")
    return all(getattr(now, f) == getattr(then, f) for f in fields)


def _writable(options: FilesOptions, tool: str) -> None:
    if options.read_only:
        raise WorkspaceError(
            f"{tool} is disabled: the workspace is read-only (files option read_only = true)"
        )


def _encode(text: str, what: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate from a JSON "\ud800" escape
        raise WorkspaceError(f"{what} is not valid Unicode text: {exc.reason}") from None


# --------------------------------------------------------------------------------------------
# The tools
# --------------------------------------------------------------------------------------------

_CHUNK = 64 * 1024


def _read_lines(fd: int, target: _Target, offset: int, limit: int | None, cap: int) -> bytes:
    """Lines ``offset`` (1-based) to ``offset + limit - 1``, at most ``cap`` bytes of them."""
    with os.fdopen(fd, "rb", closefd=False) as stream:
        line = 1
        while line < offset:
            chunk = stream.readline(_CHUNK)  # bounded: one huge line is read in pieces
            if not chunk:
                raise WorkspaceError(
                    f"offset {offset} is past the end of {target.shown!r} "
                    f"({line - 1} line{'s' if line != 2 else ''})"
                )
            line += chunk.endswith(b"\n")
        out = bytearray()
        taken = 0
        while limit is None or taken < limit:
            chunk = stream.readline(cap + 1 - len(out))
            if not chunk:
                break
            out += chunk
            if len(out) > cap:
                raise WorkspaceError(
                    f"the lines asked for from {target.shown!r} are more than max_read_bytes "
                    f"({cap} bytes); ask for fewer lines with limit"
                )
            taken += chunk.endswith(b"\n")
        return bytes(out)


def read_file(
    path: str, offset: int = 1, limit: int | None = None, *, context: lash.ToolContext
) -> str:
    """Read a UTF-8 text file of the workspace, whole or some of its lines.

    :param path: the file, relative to the workspace root.
    :param offset: the first line to return, counting from 1.
    :param limit: how many lines to return (all the rest when omitted).
    """
    options = context.session.options(FilesOptions)
    if offset < 1:
        raise WorkspaceError(f"offset counts lines from 1, got {offset}")
    if limit is not None and limit < 1:
        raise WorkspaceError(f"limit must be at least 1 line, got {limit}")
    target = _resolve(options, path)
    if not target.parts:
        raise WorkspaceError(f"{path!r} is the workspace root, a directory; use list_dir")
    cap = options.max_read_bytes
    with _os_errors(target), _open_dir(target, target.parts[:-1]) as dir_fd:
        fd, info = _open_file(dir_fd, target)
        try:
            if offset == 1 and limit is None and info.st_size > cap:
                raise WorkspaceError(
                    f"{path!r} is {info.st_size} bytes, more than max_read_bytes ({cap}); "
                    "read it in parts with offset and limit (in lines)"
                )
            data = _read_lines(fd, target, offset, limit, cap)
        finally:
            os.close(fd)
    return _decode(data, target)


def write_file(
    path: str, content: str, create_dirs: bool = False, *, context: lash.ToolContext
) -> str:
    """Create or replace a file of the workspace with this UTF-8 text (atomically).

    :param path: the file, relative to the workspace root.
    :param content: the whole new content of the file.
    :param create_dirs: create missing parent directories.
    """
    options = context.session.options(FilesOptions)
    _writable(options, "write_file")
    data = _encode(content, "content")
    if len(data) > options.max_write_bytes:
        raise WorkspaceError(
            f"content is {len(data)} bytes, more than max_write_bytes ({options.max_write_bytes})"
        )
    target = _resolve(options, path)
    if not target.parts:
        raise WorkspaceError(f"{path!r} is the workspace root, a directory; name a file")
    hint = " (pass create_dirs=true to create it)"
    parent = _open_dir(target, target.parts[:-1], create=create_dirs, hint=hint)
    with _os_errors(target), parent as dir_fd:
        replaced = _atomic_write(dir_fd, target, data)
    done = "replaced" if replaced else "created"
    return f"{done} {path!r}: wrote {len(data)} bytes"


def edit_file(path: str, old: str, new: str, count: int = 1, *, context: lash.ToolContext) -> str:
    """Replace exact text in a file of the workspace (atomically).

    old must occur exactly count times (once by default): copy it from the file with its
    whitespace and line breaks, with enough surrounding text to be unique.

    :param path: the file, relative to the workspace root.
    :param old: the exact text to replace.
    :param new: the replacement text.
    :param count: how many times old occurs and is replaced.
    """
    options = context.session.options(FilesOptions)
    _writable(options, "edit_file")
    if not old:
        raise WorkspaceError("old is empty; give the exact text to replace")
    if old == new:
        raise WorkspaceError("old and new are the same text; there is nothing to change")
    if count < 1:
        raise WorkspaceError(f"count must be at least 1, got {count}")
    target = _resolve(options, path)
    if not target.parts:
        raise WorkspaceError(f"{path!r} is the workspace root, a directory; name a file")
    cap = options.max_write_bytes
    with _os_errors(target), _open_dir(target, target.parts[:-1]) as dir_fd:
        fd, info = _open_file(dir_fd, target)
        try:
            if info.st_size > cap:
                raise WorkspaceError(
                    f"{path!r} is {info.st_size} bytes, more than max_write_bytes ({cap}); "
                    "it is too large to edit"
                )
            text = _decode(_read_lines(fd, target, 1, None, cap), target)
        finally:
            os.close(fd)
        found = text.count(old)
        if found == 0:
            raise WorkspaceError(
                f"old text not found in {path!r}; it must match the file exactly, whitespace "
                "and line breaks included (read the file again)"
            )
        if found != count:
            raise WorkspaceError(
                f"old text found {found} times in {path!r}, expected {count}; include more "
                f"surrounding text to pick one, or pass count={found} to replace every one"
            )
        data = _encode(text.replace(old, new, count), "the edited file")
        if len(data) > cap:
            raise WorkspaceError(
                f"the edited {path!r} would be {len(data)} bytes, more than max_write_bytes ({cap})"
            )
        _atomic_write(dir_fd, target, data, expect=info)
    return f"edited {path!r}: replaced {count} occurrence{'s' if count != 1 else ''}"


def _entry_line(entry: os.DirEntry[str]) -> str:
    try:
        info = entry.stat(follow_symlinks=False)
    except OSError:  # removed since the directory was read
        return f"{entry.name} (gone)"
    kind = _kind(info.st_mode)
    if kind == "directory":
        return f"{entry.name}/ (directory)"
    if kind == "file":
        return f"{entry.name} (file, {info.st_size} bytes)"
    return f"{entry.name} ({kind})"


def list_dir(path: str = ".", *, context: lash.ToolContext) -> str:
    """List a directory of the workspace: one entry per line, sorted, directories ending in '/'.

    :param path: the directory, relative to the workspace root.
    """
    options = context.session.options(FilesOptions)
    target = _resolve(options, path)
    with _os_errors(target), _open_dir(target, target.parts) as dir_fd:
        with os.scandir(dir_fd) as scan:
            entries = sorted(
                (e for e in scan if options.allow_hidden or not _is_hidden(e.name)),
                key=lambda e: e.name,
            )
            lines = [_entry_line(e) for e in entries[: options.max_list_entries]]
    if not entries:
        return f"{path!r} is empty"
    head = f"{path!r}: {len(entries)} entr{'ies' if len(entries) != 1 else 'y'}"
    if len(entries) > len(lines):
        more = len(entries) - len(lines)
        lines.append(f"... {more} more not shown (max_list_entries = {options.max_list_entries})")
    return "\n".join([head, *lines])


# --------------------------------------------------------------------------------------------
# Hooks
# --------------------------------------------------------------------------------------------


@lash.hookimpl
def register_tools(register: lash.RegisterTool) -> None:
    register(read_file)
    register(list_dir)
    register(write_file)
    register(edit_file)


@lash.hookimpl
def filter_tool_catalog(session: lash.SessionView) -> list[str] | None:
    # A read-only workspace hides the write tools; they also refuse if called anyway.
    return list(_WRITE_TOOLS) if session.options(FilesOptions).read_only else None
