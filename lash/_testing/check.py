"""``check_plugin``: validate a plugin the way hosts will, reporting every problem at once.

Loading a plugin stops at its first problem (a host then skips it, or refuses to start in strict
mode). A plugin author wants the whole list, so :func:`check_plugin` first reads the plugin
without loading it (every hook name, every signature, sync-only hooks, the options and state
classes, the entry point and the name), then loads it into a throwaway core, autoload off and
builtins disabled except those it requires, to catch what only loading and registration reveal
(a tool without type hints, a duplicate name, a failing ``register_*`` hook, a missing
requirement, a clashing CLI command).
"""

from __future__ import annotations

import difflib
import inspect
import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from lash import hookspecs
from lash._contract.annotations import resolve_here
from lash._contract.serialization import from_data, to_data
from lash._contract.types import PluginMeta
from lash._plugins.hostconfig import HostConfig
from lash._plugins.loading import (
    BUILTIN_DISTRIBUTION,
    ENTRY_POINT_GROUP,
    RESERVED_NAME,
    _describe_exception,
    new_plugin_manager,
    object_name,
)
from lash._plugins.options import build_options, check_options_class
from lash._plugins.signatures import signature_problems
from lash._testing.cores import builtin_plugin_names
from lash.errors import OptionsError, PluginOrderError

if TYPE_CHECKING:
    from importlib_metadata import EntryPoint

__all__ = ["PluginCheck", "check_plugin"]


@attrs.frozen
class PluginCheck:
    """What :func:`check_plugin` found about one plugin.

    ``problems`` lists every problem, one sentence each (empty when the plugin is fine). When the
    plugin loaded, ``hooks`` are the hooks it implements and ``contributions`` what its
    ``register_*`` hooks registered, by kind (``{"tool": ["greet"]}``).
    """

    plugin: str
    problems: list[str] = attrs.field(factory=list)
    distribution: str | None = None
    version: str | None = None
    hooks: tuple[str, ...] = ()
    contributions: dict[str, list[str]] = attrs.field(factory=dict)

    __module__ = "lash.testing"

    @property
    def ok(self) -> bool:
        """Whether no problem was found."""
        return not self.problems

    def assert_ok(self) -> None:
        """Fail unless no problem was found.

        :raises AssertionError: listing every problem.
        """
        if self.problems:
            raise AssertionError(str(self))

    def __str__(self) -> str:
        if not self.problems:
            return f"plugin {self.plugin!r}: no problems"
        count = len(self.problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        return f"plugin {self.plugin!r} has {count} problem{'s' if count > 1 else ''}:\n{lines}"


def check_plugin(plugin: object | str, *, options: Mapping[str, Any] | None = None) -> PluginCheck:
    """Validate ``plugin`` the way hosts will, and report every problem at once.

    ``plugin`` is a plugin object (a module, a class or an instance), or the name of an installed
    plugin: an entry point of the ``lash.plugins`` group, or a distribution declaring such entry
    points (all of them are checked). ``options`` are host options for the plugin (what
    ``[options.<name>]`` would hold); its options class must build from them, or from its defaults
    when none are given. The checks:

    * the entry point (for a name): it is declared once, imports, and agrees with the plugin's
      ``lash_plugin.name``; the name is not reserved (``lash``) nor a builtin's;
    * ``lash_plugin`` is a :class:`lash.PluginMeta`; a class plugin builds without arguments;
    * every ``@lash.hookimpl`` names a lash hook (misspellings get a suggestion); functions named
      like a hook but not marked are never called;
    * every argument of an implementation is an argument of its hook, without a default and not
      keyword-only (pluggy never passes those); no ``*args``, no hook wrappers; hooks that run
      while the core is built are not ``async``;
    * the options and state classes are attrs classes lash can validate, build (options from
      ``options``, state from its defaults) and round-trip through :func:`lash.to_data`, JSON
      and :func:`lash.from_data`;
    * loaded into a throwaway core (autoload off, builtins disabled except those it requires):
      it loads, its requirements are met, its ``register_*`` hooks succeed (tools have type
      hints, names are unique), its CLI commands do not clash with lash's.
    """
    if isinstance(plugin, str):
        return _check_installed(plugin, options)
    name = object_name(plugin)
    problems: list[str] = []
    return _check_object(plugin, plugin, name, options, problems)


# -- installed plugins -------------------------------------------------------------------------


def _normalize(name: str) -> str:
    # PEP 503 normalization: "Hello_World" and "hello-world" name one distribution.
    return re.sub(r"[-_.]+", "-", name).lower()


def _check_installed(name: str, options: Mapping[str, Any] | None) -> PluginCheck:
    import importlib_metadata  # as plugin discovery does, for the same behaviour everywhere

    found = list(importlib_metadata.entry_points(group=ENTRY_POINT_GROUP))
    matching = [ep for ep in found if ep.name == name]
    if not matching:
        wanted = _normalize(name)
        matching = [
            ep for ep in found if ep.dist is not None and _normalize(ep.dist.name) == wanted
        ]
    if not matching:
        known = sorted({ep.name for ep in found} | {ep.dist.name for ep in found if ep.dist})
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.7)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return PluginCheck(
            name,
            [
                f"no installed distribution declares a lash plugin named {name!r}: it is neither "
                f"an entry point of the {ENTRY_POINT_GROUP!r} group nor a distribution declaring "
                "one; install the package (`pip install -e .`) and check its "
                f'[project.entry-points."{ENTRY_POINT_GROUP}"] table{hint}'
            ],
        )
    # One check per entry-point name, each knowing every distribution that declares that name
    # (the same distribution may be found twice on sys.path).
    groups: dict[str, list[EntryPoint]] = {}
    for ep in matching:
        if ep.name not in groups:
            groups[ep.name] = [ep]
            for other in found:
                if other.name == ep.name and all(
                    _dist_name(other) != _dist_name(e) for e in groups[ep.name]
                ):
                    groups[ep.name].append(other)
    checks = [_check_entry_point(eps, options) for eps in groups.values()]
    if len(checks) == 1:
        return checks[0]
    contributions: dict[str, list[str]] = {}
    for check in checks:
        for kind, names in check.contributions.items():
            contributions.setdefault(kind, []).extend(names)
    return PluginCheck(
        name,
        [p for check in checks for p in check.problems],
        distribution=checks[0].distribution,
        version=checks[0].version,
        hooks=tuple(sorted({h for check in checks for h in check.hooks})),
        contributions=contributions,
    )


def _dist_name(ep: EntryPoint) -> str | None:
    return ep.dist.name if ep.dist is not None else None


def _check_entry_point(eps: list[EntryPoint], options: Mapping[str, Any] | None) -> PluginCheck:
    """Check the entry point ``eps[0]``; ``eps[1:]`` declare the same name elsewhere."""
    ep = eps[0]
    name: str = ep.name
    dist: str | None = _dist_name(ep)
    version = ep.dist.version if ep.dist is not None else None
    problems: list[str] = []
    others = sorted({str(_dist_name(e)) for e in eps[1:]})
    if dist != BUILTIN_DISTRIBUTION and name in builtin_plugin_names():
        problems.append(
            f"plugin {name!r}: the name is taken by a builtin plugin of lash, so hosts would "
            "find two plugins of that name and skip one; rename the entry point"
        )
    elif others:
        every = sorted([str(dist), *others])
        count = "two" if len(every) == 2 else "several"
        dists = ", ".join(repr(d) for d in every[:-1]) + f" and {every[-1]!r}"
        problems.append(
            f"plugin {name!r} is declared by {count} distributions, {dists}: hosts load one and "
            "skip the others; uninstall all but one or rename the entry points"
        )
    # A name clash already says why hosts would skip a plugin: the loader's word on it (about
    # whichever of them it kept) would only repeat it.
    clash = bool(problems)
    try:
        obj = ep.load()
    except (Exception, SystemExit) as exc:  # SystemExit: a plugin calling sys.exit() at import
        problems.append(
            f"plugin {name!r}: its entry point {ep.value!r} cannot be imported: "
            f"{_describe_exception(exc)}"
        )
        return PluginCheck(name, problems, distribution=dist, version=version)
    meta = getattr(obj, "lash_plugin", None)
    if isinstance(meta, PluginMeta) and meta.name is not None and meta.name != name:
        problems.append(
            f"plugin {name!r}: lash_plugin.name is {meta.name!r} but the entry point is named "
            f"{name!r}; hosts know it by the entry-point name, so make them agree"
        )
    check = _check_object(obj, name, name, options, problems, clash=clash)
    return attrs.evolve(check, distribution=dist, version=version)


# -- the plugin object -------------------------------------------------------------------------


def _check_object(
    obj: object,
    listed: object | str,
    name: str,
    options: Mapping[str, Any] | None,
    problems: list[str],
    *,
    clash: bool = False,
) -> PluginCheck:
    """Check ``obj`` (loaded into a core as ``listed``: the object or its entry-point name)."""
    # Problems found from here on include whatever stops loading (see _load_problems).
    static = len(problems)
    if name == RESERVED_NAME:
        problems.append(
            f"plugin name {RESERVED_NAME!r} is reserved (the kernel keeps its own per-session "
            "state under it); rename the plugin"
        )
    if isinstance(obj, type):
        cls = obj
        try:
            obj = cls()
        except Exception as exc:
            problems.append(
                f"plugin {name!r}: class plugin {cls.__qualname__} cannot be built without "
                f"arguments, as hosts build it: {_describe_exception(exc)}"
            )
            return PluginCheck(name, problems)
    meta = getattr(obj, "lash_plugin", None)
    if meta is not None and not isinstance(meta, PluginMeta):
        problems.append(
            f"plugin {name!r}: `lash_plugin` must be a lash.PluginMeta, got {type(meta).__name__}"
        )
        meta = None
    problems += _hook_problems(obj, name)
    if meta is not None:
        problems += _class_problems(meta, name, options)
    loaded = _load_problems(
        listed, name, meta, options, found_already=clash or len(problems) > static
    )
    info_hooks, contributions, load_problems = loaded
    problems += load_problems
    return PluginCheck(name, problems, hooks=info_hooks, contributions=contributions)


def _hook_problems(obj: object, name: str) -> list[str]:
    """Every hook implementation of ``obj`` read without loading it, as pluggy would read it."""
    problems: list[str] = []
    pm = new_plugin_manager()
    for attr in dir(obj):
        try:
            opts = pm.parse_hookimpl_opts(obj, attr)
            function = getattr(obj, attr)
        except Exception:  # an attribute that fails on access: loading reports it
            continue
        if opts is None:
            if attr in hookspecs.SHAPES and inspect.isroutine(function):
                problems.append(
                    f"plugin {name!r}: {attr!r} is named like a lash hook but not marked "
                    "@lash.hookimpl, so lash never calls it; decorate it"
                )
            continue
        hook = opts.get("specname") or attr
        if hook not in hookspecs.SHAPES:
            close = difflib.get_close_matches(hook, list(hookspecs.SHAPES), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems.append(f"plugin {name!r} implements {hook!r}, which is not a lash hook{hint}")
            continue
        where = f"plugin {name!r}, hook {hook!r}"
        if opts.get("hookwrapper") or opts.get("wrapper"):
            problems.append(
                f"{where}: hook wrappers are not supported; use tryfirst/trylast to adjust order"
            )
        if hook not in hookspecs.ASYNC_ALLOWED and (
            inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function)
        ):
            problems.append(
                f"{where}: must be synchronous (it runs while the core is built); drop `async`"
            )
        elif inspect.isasyncgenfunction(function):
            problems.append(f"{where}: an async generator cannot be awaited; return a value")
        problems += signature_problems(function, hook, where)
    return problems


def _class_problems(meta: PluginMeta, name: str, options: Mapping[str, Any] | None) -> list[str]:
    """The options and state classes: usable by lash, buildable, and round-tripping."""
    problems: list[str] = []
    for what, cls in (("options", meta.options), ("state", meta.state)):
        if cls is None:
            continue
        problem = check_options_class(cls, what)
        if problem is not None:
            problems.append(f"plugin {name!r}: {problem}")
            continue
        instance: Any
        if what == "options":
            source = "the options given" if options else "its defaults"
            try:
                instance = build_options(name, cls, options or {})
            except OptionsError as exc:
                problems += [
                    f"plugin {name!r}: options class {cls.__qualname__} cannot be built from "
                    f"{source} (pass check_plugin(..., options={{...}}) for required fields): "
                    f"{line}"
                    for line in exc.problems
                ]
                continue
        else:
            try:
                instance = cls()
            except Exception as exc:
                problems.append(
                    f"plugin {name!r}: state class {cls.__qualname__} cannot be built from its "
                    f"defaults, as the kernel builds it for a new session: "
                    f"{type(exc).__name__}: {exc}"
                )
                continue
        problem = _round_trip(instance, cls, what)
        if problem is not None:
            problems.append(f"plugin {name!r}: {problem}")
    return problems


def _round_trip(instance: Any, cls: type, what: str) -> str | None:
    """How ``instance`` fails to survive to_data -> JSON -> from_data, or ``None``."""
    label = f"{what} class {cls.__qualname__}"
    try:
        data = to_data(instance)
        text = json.dumps(data)
    except Exception as exc:
        return f"{label} does not convert to JSON data: {type(exc).__name__}: {exc}"
    try:
        back = from_data(json.loads(text), cls, what=label)
    except Exception as exc:
        return f"{label} does not read back from its own data: {exc}"
    again = to_data(back)
    if again != data:
        if isinstance(data, dict) and isinstance(again, dict):
            changed = sorted(k for k in data.keys() | again.keys() if data.get(k) != again.get(k))
            detail = f" (field{'s' if len(changed) > 1 else ''} {', '.join(changed)})"
        else:
            detail = ""
        return f"{label} changes when written and read back{detail}"
    return None


# -- loading -----------------------------------------------------------------------------------


def _builtin_commands() -> set[str]:
    # Imported here: the CLI (click, its commands) is needed only for this check.
    from lash.cli._context import builtin_command_names

    return builtin_command_names()


def _load_problems(
    listed: object | str,
    name: str,
    meta: PluginMeta | None,
    options: Mapping[str, Any] | None,
    *,
    found_already: bool,
) -> tuple[tuple[str, ...], dict[str, list[str]], list[str]]:
    """Build the plugin into a throwaway composition (the one a host builds, in isolation mode);
    return its hooks, its contributions, and the problems loading and registration found.

    Loading stops at a plugin's first problem: when the reading found problems already, that
    first one is among them, and the load failure is left out (a failed ``requires`` excepted,
    which only loading sees).
    """
    # Imported here: the CLI's click, needed for the commands check, should not be paid for at
    # pytest startup by suites that never check a plugin (lash.testing is loaded by every run).
    from lash._plugins.composition import compose

    requires = meta.requires if meta is not None else ()
    config = HostConfig(autoload=False, options={name: dict(options)} if options else {})
    explicit = [listed, *(r for r in requires if r != name)]
    composition = compose(
        config, explicit=explicit, builtins=(), isolate=True, commands=_builtin_commands()
    )
    problems: list[str] = []
    for problem in composition.problems:
        if problem.plugin != name:
            continue  # a required plugin's own failure; this plugin's is reported below
        if (
            found_already
            and problem.stage == "load"
            and not isinstance(problem.error, PluginOrderError)
        ):
            continue
        problems.append(problem.message)
    loaded = {p.name: p for p in composition.loaded}
    if name not in loaded:
        return (), {}, problems
    return loaded[name].info.hooks, composition.registry.by_plugin(name), problems


resolve_here(globals())
