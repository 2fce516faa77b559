"""Entry-point discovery without importlib-metadata agrees with importlib-metadata."""

from __future__ import annotations

import importlib
import sys
import zipfile
from pathlib import Path

import hypothesis.strategies as st
import importlib_metadata
import pytest
from hypothesis import HealthCheck, given, settings

from lash._plugins import entry_points
from lash._plugins.loading import discover_entry_points

GROUP = "lash.plugins"


def reference(group: str, paths: list[str]) -> list[tuple[str, str, str]]:
    """What importlib-metadata finds on ``paths``: (name, value, metadata path)."""
    saved = sys.path[:]
    sys.path[:] = paths
    try:
        importlib_metadata.MetadataPathFinder.invalidate_caches()
        return [
            (ep.name, ep.value, str(ep.dist._path))  # type: ignore[union-attr]
            for ep in importlib_metadata.entry_points(group=group)
        ]
    finally:
        sys.path[:] = saved


def scanned(group: str, paths: list[str]) -> list[tuple[str, str, str]] | None:
    saved = sys.path[:]
    sys.path[:] = paths
    try:
        found = entry_points.scan(group)
    finally:
        sys.path[:] = saved
    return None if found is None else [(f.name, f.value, f.path) for f in found]


# A distribution on disk: (directory index, project name, version, kind, has metadata,
# entry_points.txt text or None).
names = st.sampled_from(["alpha", "Alpha", "al-pha", "al_pha", "Al.Pha", "beta", "gamma-x"])
sections = st.lists(
    st.tuples(
        st.sampled_from([GROUP, "console_scripts", "other.group", "[lash.plugins]"]),
        st.lists(
            st.tuples(
                st.sampled_from(["p1", "p2", " p3 ", "p-4"]),
                st.sampled_from(
                    ["mod", "pkg.mod", "pkg.mod:obj", "pkg.mod : obj.attr", "m:o [extra]"]
                ),
            ),
            max_size=3,
        ),
    ),
    max_size=3,
)


def entry_points_text(parts: list[tuple[str, list[tuple[str, str]]]], noise: bool) -> str:
    lines = ["# a comment", "", "  orphan = before.any:section  "] if noise else []
    for section, pairs in parts:
        lines.append(f"[{section}]")
        lines += [f"  {name} = {value}  " for name, value in pairs]
        if noise:
            lines += ["", "# another comment"]
    return "\n".join(lines) + "\n"


dists = st.lists(
    st.tuples(
        st.integers(0, 2),
        names,
        st.sampled_from(["1.0", "2.0"]),
        st.sampled_from(["dist-info", "egg-info", "egg-info-file"]),
        st.booleans(),
        st.one_of(st.none(), st.tuples(sections, st.booleans())),
    ),
    max_size=8,
)


def build(root: Path, layout: list) -> list[str]:  # type: ignore[type-arg]
    dirs = [root / f"site{i}" for i in range(3)]
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
    for index, name, version, kind, has_metadata, eps in layout:
        where = dirs[index]
        if kind == "egg-info-file":
            target = where / f"{name}-{version}.egg-info"
            if not target.exists():
                target.write_text(f"Metadata-Version: 1.0\nName: {name}\nVersion: {version}\n")
            continue
        info = where / f"{name}-{version}.{kind}"
        if info.exists():
            continue
        info.mkdir()
        if has_metadata:
            filename = "METADATA" if kind == "dist-info" else "PKG-INFO"
            (info / filename).write_text(
                f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
            )
        if eps is not None:
            (info / "entry_points.txt").write_text(entry_points_text(*eps), encoding="utf-8")
    return [str(d) for d in dirs] + [str(root / "missing")]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(layout=dists, group=st.sampled_from([GROUP, "console_scripts"]))
def test_scan_finds_what_importlib_metadata_finds(tmp_path_factory, layout, group) -> None:
    """Same entry points, same order, same distributions, on generated site directories."""
    paths = build(tmp_path_factory.mktemp("site"), layout)
    assert scanned(group, paths) == reference(group, paths)


def test_scan_agrees_on_this_environment() -> None:
    """On the environment the tests run in, for lash's group and for console scripts."""
    paths = [p for p in sys.path if not p.endswith(".zip")]
    for group in (GROUP, "console_scripts"):
        found = scanned(group, paths)
        assert found is not None
        assert found == reference(group, paths)
        assert found  # lash's builtins, and the console scripts of the installed tools


def test_scan_leaves_zips_and_eggs_to_importlib_metadata(tmp_path: Path) -> None:
    """A zip or an .egg directory on the path: importlib-metadata is asked instead."""
    archive = tmp_path / "plugins.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("zipped-1.0.dist-info/METADATA", "Name: zipped\nVersion: 1.0\n")
        zf.writestr("zipped-1.0.dist-info/entry_points.txt", f"[{GROUP}]\nzipped = zipped\n")
    assert scanned(GROUP, [str(archive)]) is None
    egg = tmp_path / "thing-1.0.egg"
    egg.mkdir()
    assert scanned(GROUP, [str(egg)]) is None
    upper = tmp_path / "site"
    (upper / "Thing-1.0.DIST-INFO").mkdir(parents=True)
    assert scanned(GROUP, [str(upper)]) is None


def test_discovery_falls_back_to_importlib_metadata(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a zip on the path, a plugin inside it is still discovered, with its distribution."""
    archive = tmp_path / "plugins.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("zipped-1.0.dist-info/METADATA", "Name: zipped\nVersion: 1.5\n")
        zf.writestr("zipped-1.0.dist-info/entry_points.txt", f"[{GROUP}]\nzipped = zipped_mod\n")
    monkeypatch.syspath_prepend(str(archive))
    importlib.invalidate_caches()
    found = {c.name: c for c in discover_entry_points()}
    assert found["zipped"].distribution == "zipped"
    assert found["zipped"].version == "1.5"
    assert found["zipped"].module == "zipped_mod"


def test_discovery_reads_each_plugin_the_same_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fast path and importlib-metadata give the same candidates (name, module, distribution,
    version) and load the same objects."""
    site = tmp_path / "site"
    info = site / "demo_dist-2.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: demo-dist\nVersion: 2.1\n")
    (info / "entry_points.txt").write_text(
        f"[{GROUP}]\ndemo = demo_plugin_mod:Plugin\nbare = demo_plugin_mod\n"
    )
    (site / "demo_plugin_mod.py").write_text("class Plugin:\n    pass\n")
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    fast = {c.name: c for c in discover_entry_points()}
    monkeypatch.setattr(entry_points, "scan", lambda group: None)
    slow = {c.name: c for c in discover_entry_points()}
    assert list(fast) == list(slow)
    for name in fast:
        a, b = fast[name], slow[name]
        assert (a.module, a.distribution, a.version, a.builtin) == (
            b.module,
            b.distribution,
            b.version,
            b.builtin,
        )
    assert fast["demo"].load() is slow["demo"].load() is sys.modules["demo_plugin_mod"].Plugin
    assert fast["bare"].load() is sys.modules["demo_plugin_mod"]
    assert (fast["demo"].distribution, fast["demo"].version) == ("demo-dist", "2.1")


@settings(max_examples=500)
@given(st.text(alphabet="aB9-_.Z", max_size=12))
def test_normalize_is_importlib_metadatas(name: str) -> None:
    """The distribution-name normalization (with its shortcut for names without separator
    runs) is importlib-metadata's ``Prepared.normalize``."""
    assert entry_points._normalize(name) == importlib_metadata.Prepared.normalize(name)
