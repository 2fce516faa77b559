"""The entry points of one group, found the way importlib-metadata finds them, without it.

``lash --help`` and ``lash plugins`` discover the installed plugins on every run (nothing is
cached: a plugin being debugged never shows stale output). Importing importlib-metadata and
scanning with it costs ~30 ms of CPU, about a third of what the rest of lash adds to those
commands (issue 17: they must start within 1.5x of importing lash's dependencies). For the
common environment this module finds exactly what ``importlib_metadata.entry_points(group=...)``
finds, in the same order, by the same rules:

* every ``sys.path`` entry in order, its ``*.dist-info`` and ``*.egg-info`` children grouped by
  normalized name in directory-listing order;
* distributions with metadata (``METADATA``, ``PKG-INFO``, or an ``.egg-info`` file) before the
  others, then the first of each normalized name only;
* ``entry_points.txt`` read as UTF-8, stripped lines, ``#`` comments and blank lines skipped,
  ``[section]`` headers, ``name = value`` pairs.

It reads each distribution's ``entry_points.txt`` once, and parses only the files that name the
group. Anything less common returns ``None``, and the caller asks importlib-metadata: a path
entry that is a file (a zip) or an ``.egg`` directory, a metadata directory whose suffix is not
spelled in lower case, or an import hook on ``sys.meta_path`` that finds distributions of its
own. One difference, in lash's favour: a malformed line in another group's section is not
looked at here, where importlib-metadata fails the whole discovery. ``tests/test_plugins.py``
checks that both agree on generated environments.
"""

from __future__ import annotations

import functools
import importlib
import importlib.machinery
import os
import re
import sys
from typing import Any, NamedTuple

__all__ = ["Found", "load_reference", "reference_module", "scan"]

#: importlib-metadata's ``EntryPoint.pattern``: ``module``, ``module:attr.sub [extras]``.
_REFERENCE = re.compile(r"(?P<module>[\w.]+)\s*(:\s*(?P<attr>[\w.]+)\s*)?((?P<extras>\[.*\])\s*)?$")
_SUFFIXES = (".dist-info", ".egg-info")


class Found(NamedTuple):
    """One entry point of the group: its name, its value and its distribution's metadata
    directory (or ``.egg-info`` file)."""

    name: str
    value: str
    path: str


def scan(group: str) -> list[Found] | None:
    """The entry points of ``group`` on ``sys.path``, or ``None`` when this environment is one
    to leave to importlib-metadata (see the module docstring)."""
    if not _path_finders_only():
        return None
    candidates: list[str] = []
    for root in sys.path:
        if not isinstance(root, str) or root.lower().endswith(".egg") or os.path.isfile(root):
            return None
        try:
            children = os.listdir(root or ".")
        except OSError:  # a missing directory: importlib-metadata finds nothing there either
            continue
        by_name: dict[str, list[str]] = {}
        for child in children:
            low = child.lower()
            if low.endswith(_SUFFIXES):
                if not child.endswith(_SUFFIXES):
                    return None  # named from its metadata by importlib-metadata: not here
                name = _normalize(low.rpartition(".")[0].partition("-")[0])
                by_name.setdefault(name, []).append(os.path.join(root, child))
        for paths in by_name.values():
            candidates.extend(paths)
    # Those with metadata first (importlib-metadata's _prefer_valid), then the first of a name.
    valid = [p for p in candidates if _has_metadata(p)]
    known = set(valid)
    ordered = valid + [p for p in candidates if p not in known]
    seen: set[str] = set()
    found: list[Found] = []
    for path in ordered:
        name = _normalize(os.path.basename(path).rpartition(".")[0].partition("-")[0])
        if name in seen:
            continue
        seen.add(name)
        text = read_text(path, "entry_points.txt")
        if text is None or group not in text:
            continue
        found.extend(Found(n, v, path) for section, n, v in _pairs(text) if section == group)
    return found


def _path_finders_only() -> bool:
    """Whether every finder on ``sys.meta_path`` that finds distributions is the path-based
    one (the standard ``PathFinder``, or importlib-metadata's own once it is imported)."""
    for finder in sys.meta_path:
        if getattr(finder, "find_distributions", None) is None:
            continue
        if finder is importlib.machinery.PathFinder:
            continue
        kind = type(finder)
        if kind.__module__ == "importlib_metadata" and kind.__name__ == "MetadataPathFinder":
            continue
        return False
    return True


_SEPARATORS = re.compile(r"[-_.]+")


def _normalize(name: str) -> str:
    # importlib-metadata's Prepared.normalize: PEP 503, with dashes as underscores. Most names
    # (every installed distribution's, on each `lash` command) have no run of separators to
    # collapse: only lower-cased then.
    if "-" not in name and "." not in name and "__" not in name:
        return name.lower()
    return _SEPARATORS.sub("-", name).lower().replace("-", "_")


def _has_metadata(path: str) -> bool:
    return (
        os.path.exists(os.path.join(path, "METADATA"))
        or os.path.exists(os.path.join(path, "PKG-INFO"))
        or os.path.isfile(path)
    )


def read_text(path: str, filename: str) -> str | None:
    """A metadata file of the distribution at ``path`` (``None``: not there), as
    importlib-metadata's ``PathDistribution.read_text`` reads it."""
    try:
        with open(os.path.join(path, filename), encoding="utf-8") as file:
            return file.read()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError):
        return None


def _pairs(text: str) -> list[tuple[str, str, str]]:
    """``(section, name, value)`` of every ``name = value`` line (importlib-metadata's
    ``Sectioned``: lines stripped, blank and ``#`` lines skipped, lines before the first
    section ignored)."""
    pairs = []
    section = None
    for line in map(str.strip, text.splitlines()):
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line.strip("[]")
            continue
        if section is not None:
            name, value = map(str.strip, line.split("=", 1))
            pairs.append((section, name, value))
    return pairs


def reference_module(value: str) -> str:
    """The module an entry point's value names (``EntryPoint.module``).

    :raises ValueError: when the value is not an object reference.
    """
    match = _REFERENCE.match(value)
    if match is None:
        raise ValueError(
            f"Invalid object reference: {value!r}",
            "Values must be of the form module:attr (attr and colon optional).",
        )
    return match.group("module")


def load_reference(value: str) -> Any:
    """Import what an entry point's value names (``EntryPoint.load``): the module, or the object
    its ``attr`` path leads to."""
    module = importlib.import_module(reference_module(value))
    match = _REFERENCE.match(value)
    attr = match.group("attr") if match is not None else None
    return functools.reduce(getattr, filter(None, (attr or "").split(".")), module)
