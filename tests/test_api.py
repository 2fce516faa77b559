"""The public facade: ``lash.__all__`` is sorted and complete; public classes live in ``lash``."""

from __future__ import annotations

import ast
import importlib
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import lash
import lash._facade
import lash.errors

INIT = Path(lash.__file__)

#: Public classes known to break the rule, with the file that must set ``__module__ = "lash"``.
#: These are files this suite's owners do not edit; remove an entry once its file is fixed
#: (the test then passes and pytest reports XPASS).


def _init_imports() -> list[ast.ImportFrom | ast.Import]:
    """The import statements of ``lash/__init__.py``: top level and under ``TYPE_CHECKING``."""
    tree = ast.parse(INIT.read_text(encoding="utf-8"))
    found: list[ast.ImportFrom | ast.Import] = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom | ast.Import):
            found.append(node)
        elif isinstance(node, ast.If):
            found.extend(n for n in node.body if isinstance(n, ast.ImportFrom | ast.Import))
    return found


def names_imported_by_init() -> set[str]:
    """Every public name ``lash/__init__.py`` binds or declares, read from its source."""
    names: set[str] = set()
    for node in _init_imports():
        names.update(alias.asname or alias.name.split(".")[0] for alias in node.names)
    return {n for n in names if not n.startswith("_") and n not in ("annotations", "typing")}


def lazy_imports_of_init() -> dict[str, str]:
    """Name -> module of the imports under ``if typing.TYPE_CHECKING:`` in ``lash/__init__.py``."""
    tree = ast.parse(INIT.read_text(encoding="utf-8"))
    table: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If):
            assert ast.unparse(node.test) == "typing.TYPE_CHECKING"
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom) and imp.module is not None
                table.update({alias.name: imp.module for alias in imp.names})
    return table


def public_classes() -> list[str]:
    return [name for name in lash.__all__ if inspect.isclass(getattr(lash, name))]


def test_all_is_sorted() -> None:
    """``lash.__all__`` is in sorted order."""
    assert lash.__all__ == sorted(lash.__all__)


def test_all_has_no_duplicates() -> None:
    """Every name appears once in ``lash.__all__``."""
    assert len(lash.__all__) == len(set(lash.__all__))


def test_all_is_complete() -> None:
    """Every public name ``lash/__init__.py`` defines is exported, and nothing else is."""
    assert set(lash.__all__) == names_imported_by_init()


def test_all_names_resolve() -> None:
    """Every exported name exists on the package."""
    missing = [name for name in lash.__all__ if not hasattr(lash, name)]
    assert missing == []


def test_no_unexported_public_attributes() -> None:
    """The package has no public attribute outside ``__all__`` except its public submodules."""
    extra = {
        name
        for name, value in vars(lash).items()
        if not name.startswith("_") and name not in lash.__all__ and not inspect.ismodule(value)
    }
    assert extra == set()


def test_init_holds_no_logic() -> None:
    """``lash/__init__.py`` only imports and declares ``__all__`` (no logic in the facade).

    Imports under ``if typing.TYPE_CHECKING:`` are the lazily loaded names (``lash._facade``).
    """
    tree = ast.parse(INIT.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # the module docstring
        if isinstance(node, ast.Import | ast.ImportFrom):
            continue
        if isinstance(node, ast.If):
            assert ast.unparse(node.test) == "typing.TYPE_CHECKING"
            assert all(isinstance(n, ast.ImportFrom) for n in node.body) and not node.orelse
            continue
        assert isinstance(node, ast.Assign), ast.dump(node)
        assert [t.id for t in node.targets if isinstance(t, ast.Name)] == ["__all__"]


def test_lazy_table_matches_the_type_checking_imports() -> None:
    """What ``lash._facade`` loads lazily is exactly what type checkers read in ``__init__``."""
    assert lash._facade.EXPORTS == lazy_imports_of_init()


@pytest.mark.parametrize("name", sorted(lazy_imports_of_init()))
def test_lazy_name_is_the_defining_modules_object(name: str) -> None:
    """``lash.Name`` is the very object its private module defines (no proxy, no copy)."""
    module = importlib.import_module(lazy_imports_of_init()[name])
    assert getattr(lash, name) is getattr(module, name)
    assert vars(lash)[name] is getattr(module, name)  # cached: later reads skip __getattr__


def test_unknown_attribute_raises_attribute_error() -> None:
    """A name lash does not export is an ``AttributeError`` naming it (``hasattr`` works)."""
    with pytest.raises(AttributeError, match="module 'lash' has no attribute 'Sesion'"):
        lash.Sesion  # type: ignore[attr-defined]  # noqa: B018
    assert not hasattr(lash, "Sesion")


def test_dir_lists_names_not_loaded_yet() -> None:
    """``dir(lash)`` shows every exported name, loaded or not (completion, ``help()``)."""
    assert set(lash.__all__) <= set(dir(lash))


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys; print(' '.join(sorted(sys.modules)))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return set(out.split())


def test_import_lash_loads_only_markers_and_errors() -> None:
    """``import lash`` (what every plugin module runs) loads no kernel module and no asyncio."""
    loaded = {m for m in _modules_after("import lash") if m.startswith("lash")}
    assert loaded == {
        "lash",
        "lash._facade",
        "lash._plugins",
        "lash._plugins.markers",
        "lash.errors",
    }


@pytest.mark.parametrize("argv", [["--help"], ["plugins", "--all"]])
def test_cli_inspection_does_not_load_the_session_kernel(argv: list[str]) -> None:
    """``lash --help`` and ``lash plugins`` import no session, store, graph or asyncio code, nor
    the turn data (directives, prompt views, session configs), the model events (a provider
    loads them when it first streams) or the operations contract (no default builtin registers
    an operation)."""
    code = (
        "import contextlib, io, sys\n"
        "from lash.cli import main\n"
        f"sys.argv = ['lash', *{argv!r}]\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    main()"
    )
    loaded = _modules_after(code)
    assert "lash_plugins_builtin.standard" in loaded  # the plugins were really loaded
    heavy = {
        "asyncio",
        "aiosqlite",
        "httpx",
        "lash._kernel.session",
        "lash._store.records",
        "lash._contract.graph",
        "lash._contract.turn_types",
        "lash._contract.operations",
        "lash._contract.providers",
        "lash._contract.media",
        "shutil",  # click imports it for the terminal width; lash measures it without
    }
    assert loaded & heavy == set()


@pytest.mark.parametrize("name", public_classes())
def test_public_class_module_is_lash(name: str) -> None:
    """Public classes say ``lash.Name`` in tracebacks and docs, not their private module."""
    assert getattr(lash, name).__module__ == "lash"


def test_errors_module_exports_every_error() -> None:
    """``lash.errors`` exports each error class, all reachable from ``lash`` as well."""
    for name in lash.errors.__all__:
        error = getattr(lash.errors, name)
        assert issubclass(error, lash.LashError)
        assert getattr(lash, name) is error


def test_foundation_names_are_public() -> None:
    """The plugin-framework foundation is reachable from the top-level package."""
    for name in (
        "ConfigError",
        "ConfigRejected",
        "ExclusiveHookConflict",
        "HostConfig",
        "LashCore",
        "OptionsError",
        "PluginError",
        "PluginInfo",
        "PluginLoadError",
        "PluginMeta",
        "PluginOrderError",
        "UnknownHookError",
        "hookimpl",
        "hookspec",
        "option",
    ):
        assert name in lash.__all__


def test_kernel_plumbing_is_not_public() -> None:
    """Dispatch and registry plumbing stay out of ``lash`` (hosts reach them as ``core.hooks``
    / ``core.registry`` attributes, plugin authors never)."""
    for name in ("Contribution", "HookDispatcher", "HookImpl", "Registry", "SessionGraph"):
        assert name not in lash.__all__
        assert not hasattr(lash, name)
