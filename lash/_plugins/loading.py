"""Plugin discovery, enablement policy, loading with isolation, and ordering."""

from __future__ import annotations

import functools
import heapq
import inspect
import logging
import re
import traceback
import types
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

import attrs
import pluggy

from lash import hookspecs
from lash._contract.annotations import resolve_here
from lash._contract.types import PluginMeta
from lash._plugins import entry_points
from lash._plugins.hostconfig import HostConfig
from lash._plugins.markers import PROJECT_NAME
from lash._plugins.options import build_options, check_options_class
from lash._plugins.signatures import signature_problems
from lash.errors import (
    ConfigError,
    OptionsError,
    PluginLoadError,
    PluginOrderError,
    UnknownHookError,
)

log = logging.getLogger("lash")

#: The entry-point group plugins declare themselves in.
ENTRY_POINT_GROUP = "lash.plugins"

#: No plugin may use this name: the kernel keeps its own per-session state under it.
RESERVED_NAME = "lash"

#: The distribution whose plugins are the builtins: lash's own, as installed from the package index.
#: (The index's ``lash`` is an unrelated project; the import package and the command stay ``lash``.)
BUILTIN_DISTRIBUTION = "lash-sdk"

Status = Literal["loaded", "failed", "disabled"]

#: Which builtin plugins load without being listed in the allowlist: ``"default"`` (every
#: installed builtin that is not disabled or opt-in), a sequence of builtin names (exactly those),
#: or ``None``: ``"default"`` when there is no allowlist, none when there is one (an allowlist
#: means what it says).
Builtins = str | Sequence[str] | None


@attrs.frozen
class PluginInfo:
    """What lash knows about one plugin, loaded or not.

    ``status`` is ``"loaded"``, ``"failed"`` (``error`` says why, in one paragraph) or
    ``"disabled"`` (by config, environment or autoload policy; ``error`` says which).
    """

    name: str
    status: Status
    module: str | None = None
    distribution: str | None = None
    version: str | None = None
    builtin: bool = False
    hooks: tuple[str, ...] = ()
    error: str | None = None
    meta: PluginMeta = attrs.field(factory=PluginMeta)

    __module__ = "lash"


@attrs.define
class _Candidate:
    name: str
    load: Callable[[], object]
    module: str | None = None
    distribution: str | None = None
    version: str | None = None
    builtin: bool = False
    #: Named in the allowlist (or passed as an object): required to enable opt-in plugins.
    listed: bool = False


@attrs.define
class LoadedPlugin:
    """A plugin registered with the core's pluggy manager (internal)."""

    name: str
    obj: object
    info: PluginInfo
    #: Host-level options (config defaults), validated; None when the plugin declares none.
    options: Any = None


@attrs.define
class LoadResult:
    """Everything plugin loading produced (internal)."""

    pm: pluggy.PluginManager
    loaded: list[LoadedPlugin]
    infos: list[PluginInfo]
    failures: list[PluginLoadError]
    warnings: list[str]


#: What a module's type defines: a name among these is looked up the general way.
_MODULE_TYPE_NAMES = frozenset(dir(types.ModuleType))

#: What can be a hook implementation (pluggy: functions, classmethods, staticmethods, bound
#: methods).
_HOOKABLE = (types.FunctionType, staticmethod, classmethod, types.MethodType)


class _PluginManager(pluggy.PluginManager):
    """pluggy's manager, quicker at registering module plugins (every installed plugin is
    registered by ``lash --help`` and ``lash plugins``, so registration is start-up time).

    pluggy looks at every name of a plugin with :func:`inspect.getattr_static`, which costs
    ~20 us a name: a module plugin has dozens (its imports, constants, classes). For a module
    and a name its type does not define, ``getattr_static`` finds exactly the module's own
    value, so a value that cannot be a hook is skipped here without it; everything else goes
    through pluggy's own :meth:`~pluggy.PluginManager.parse_hookimpl_opts`.
    """

    def parse_hookimpl_opts(self, plugin: object, name: str) -> pluggy.HookimplOpts | None:
        if type(plugin) is types.ModuleType and name not in _MODULE_TYPE_NAMES:
            if not isinstance(plugin.__dict__.get(name), _HOOKABLE):
                return None
        return super().parse_hookimpl_opts(plugin, name)


def new_plugin_manager() -> pluggy.PluginManager:
    """A fresh pluggy manager with lash's hookspecs: one per core, never global."""
    pm = _PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    return pm


def discover_entry_points() -> list[_Candidate]:
    """Every ``lash.plugins`` entry point of the installed distributions (nothing is imported).

    Found by :mod:`lash._plugins.entry_points` where it can (the same entry points, in the same
    order, without importing importlib-metadata: ~30 ms of every ``lash`` command), else by
    importlib-metadata (not the stdlib copy: the same behaviour on every supported Python).
    """
    found = entry_points.scan(ENTRY_POINT_GROUP)
    if found is None:
        return _discover_with_importlib_metadata()
    identities: dict[str, tuple[str | None, str | None]] = {}
    candidates = []
    for ep in found:
        if ep.path not in identities:
            identities[ep.path] = _identity(
                functools.partial(entry_points.read_text, ep.path), ep.path
            )
        dist_name, version = identities[ep.path]
        candidates.append(
            _Candidate(
                name=ep.name,
                load=functools.partial(entry_points.load_reference, ep.value),
                module=entry_points.reference_module(ep.value),
                distribution=dist_name,
                version=version,
                builtin=dist_name == BUILTIN_DISTRIBUTION,
            )
        )
    return candidates


def _discover_with_importlib_metadata() -> list[_Candidate]:
    import importlib_metadata

    identities: dict[int, tuple[str | None, str | None]] = {}
    candidates = []
    for ep in importlib_metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist
        dist_name, version = None, None
        if dist is not None:
            # The entry points of one distribution share its ``dist`` object: read it once.
            if id(dist) not in identities:
                identities[id(dist)] = _identity(dist.read_text, dist)
            dist_name, version = identities[id(dist)]
        candidates.append(
            _Candidate(
                name=ep.name,
                load=ep.load,
                module=ep.module,
                distribution=dist_name,
                version=version,
                builtin=dist_name == BUILTIN_DISTRIBUTION,
            )
        )
    return candidates


def _identity(read_text: Callable[[str], str | None], dist: Any) -> tuple[str | None, str | None]:
    """A distribution's name and version, read from the head of its core metadata.

    ``dist.name`` and ``dist.version`` each parse the whole file with the ``email`` package, whose
    import alone costs more than the rest of discovery. ``Name`` and ``Version`` are required,
    single-line fields of the header block, so reading that block suffices; anything unusual
    (a missing field, a continuation line) falls back to the full parse.
    """
    text = read_text("METADATA") or read_text("PKG-INFO") or ""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line or line[0] in " \t":
            break  # the end of the headers, or a folded line: leave the rest to the parser
        key, sep, value = line.partition(":")
        if sep and key in ("Name", "Version"):
            fields.setdefault(key, value.strip())
            if len(fields) == 2:
                return fields["Name"], fields["Version"]
    if isinstance(dist, str):  # a metadata directory: importlib-metadata parses it
        import pathlib

        import importlib_metadata

        dist = importlib_metadata.PathDistribution(pathlib.Path(dist))
    metadata = dist.metadata
    return metadata["Name"], metadata["Version"]


def object_name(obj: object) -> str:
    """The name of a plugin passed as an object: ``lash_plugin.name``, else derived from it."""
    meta = getattr(obj, "lash_plugin", None)
    if isinstance(meta, PluginMeta) and meta.name:
        return meta.name
    if isinstance(obj, types.ModuleType):
        return obj.__name__.rsplit(".", 1)[-1]
    if isinstance(obj, type):
        return obj.__name__
    return type(obj).__name__


def _object_candidate(obj: object) -> _Candidate:
    module = obj.__name__ if isinstance(obj, types.ModuleType) else getattr(obj, "__module__", None)
    return _Candidate(name=object_name(obj), load=lambda: obj, module=module)


def _describe_exception(exc: BaseException) -> str:
    # One paragraph: the exception and where it was raised (the innermost frame).
    # importlib's own frames ("<frozen importlib._bootstrap>") say nothing useful: skip them.
    where = ""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<")]
    if isinstance(exc, SyntaxError) and exc.filename:
        # The plugin's source could not be compiled: the location is in the error, not a frame.
        where = f" (at {exc.filename}:{exc.lineno})"
    elif frames:
        last = frames[-1]
        where = f" (at {last.filename}:{last.lineno})"
    # Multi-line exception messages are folded so the recorded error stays one paragraph.
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {message}{where}"


def _import_failure(cand: _Candidate, exc: BaseException) -> str:
    """Why ``cand`` could not be imported. When the module its entry point names is itself
    missing (a typo in the plugin's pyproject.toml, a package not installed), no line of the
    plugin ran: the entry point is what to check, and importlib's location would say nothing."""
    module, missing = cand.module, getattr(exc, "name", None)
    if (
        isinstance(exc, ModuleNotFoundError)
        and module
        and missing
        and (module == missing or module.startswith(f"{missing}."))
    ):
        of = f" of {cand.distribution}" if cand.distribution else ""
        return (
            f"its entry point names module {module!r}, which is not installed "
            f"({type(exc).__name__}: {exc}); check the {ENTRY_POINT_GROUP!r} entry point{of}"
        )
    return _describe_exception(exc)


def _builtin_policy(
    builtins: Builtins, allow: object, known: Mapping[str, _Candidate]
) -> tuple[bool, set[str], list[PluginLoadError]]:
    """(all builtins?, the builtins named, errors for names that are not builtins)."""
    if builtins is None:
        return allow is None, set(), []
    if isinstance(builtins, str):
        if builtins != "default":
            raise ConfigError(
                f'`builtins` must be "default" or a list of builtin plugin names, got {builtins!r}'
            )
        return True, set(), []
    names = set(builtins)
    every = [c.name for c in known.values() if c.builtin]
    errors = [
        PluginLoadError(
            f"`builtins` names {name!r}, which is not an installed builtin plugin "
            f"(builtins: {', '.join(sorted(every)) or 'none'}){_suggest(name, every)}",
            plugin=name,
        )
        for name in sorted(names)
        if name not in every
    ]
    return False, names, errors


def _select(
    config: HostConfig,
    discovered: Sequence[_Candidate],
    explicit: Sequence[object | str] | None,
    builtins: Builtins = None,
) -> tuple[list[_Candidate], list[PluginInfo], list[PluginLoadError]]:
    """Apply the enablement policy; return enabled candidates in configured order."""
    by_name: dict[str, _Candidate] = {}
    failures: list[PluginLoadError] = []
    for cand in discovered:
        if cand.name in by_name:
            other = by_name[cand.name]
            failures.append(
                PluginLoadError(
                    f"plugin name {cand.name!r} is declared by two distributions, "
                    f"{other.distribution!r} and {cand.distribution!r}; uninstall one",
                    plugin=cand.name,
                    distribution=cand.distribution,
                    version=cand.version,
                )
            )
            continue
        by_name[cand.name] = cand

    allow: Sequence[object | str] | None = config.plugins
    if explicit is not None:
        # A bare string is one plugin name, not a sequence of one-letter names.
        allow = [explicit] if isinstance(explicit, str) else list(explicit)
    if builtins is None:
        builtins = config.builtins
    all_builtins, named_builtins, builtin_errors = _builtin_policy(builtins, allow, by_name)
    failures += builtin_errors
    disabled = set(config.disable)
    ordered: list[_Candidate] = []
    seen: set[str] = set()
    infos: list[PluginInfo] = []

    def add(cand: _Candidate) -> None:
        if cand.name in seen:
            return
        seen.add(cand.name)
        if cand.name in disabled:
            infos.append(_info_of(cand, "disabled", "disabled by config `disable`"))
        else:
            ordered.append(cand)

    if allow is not None:
        # What each listed name refers to: the entry point (by its name) or the object itself.
        listed: dict[str, object] = {}
        for entry in allow:
            source: object = entry
            if isinstance(entry, str):
                found = by_name.get(entry)
                if found is None:
                    if entry not in disabled:
                        failures.append(
                            PluginLoadError(
                                f"plugin {entry!r} is listed in `plugins` but no installed "
                                f"distribution declares it in the {ENTRY_POINT_GROUP!r} "
                                f"entry-point group; install it or remove it from the list"
                                + _suggest(entry, by_name),
                                plugin=entry,
                            )
                        )
                    continue
                cand = found
            else:
                cand = _object_candidate(entry)
            previous = listed.setdefault(cand.name, source)
            if previous is not source and not (isinstance(previous, str) and previous == source):
                # Two different plugins under one name: the later one would silently vanish.
                failures.append(
                    PluginLoadError(
                        f"two plugins in `plugins` are named {cand.name!r}; plugin names must be "
                        "unique (give one of them `lash_plugin = lash.PluginMeta(name=...)`)",
                        plugin=cand.name,
                    )
                )
                continue
            cand.listed = True
            add(cand)
    # Builtins not listed load after the listed plugins when the policy says so (unless disabled
    # or opt-in); otherwise they are reported as not enabled.
    for cand in sorted(by_name.values(), key=lambda c: c.name):
        if not cand.builtin or cand.name in seen:
            continue
        if all_builtins or cand.name in named_builtins:
            add(cand)
        else:
            seen.add(cand.name)
            why = "not in the `plugins` allowlist" if allow is not None else "not in `builtins`"
            infos.append(_info_of(cand, "disabled", why))
    for cand in sorted(by_name.values(), key=lambda c: c.name):
        if cand.builtin or cand.name in seen:
            continue
        if allow is not None:
            seen.add(cand.name)
            infos.append(_info_of(cand, "disabled", "not in the `plugins` allowlist"))
        elif not config.autoload:
            seen.add(cand.name)
            infos.append(
                _info_of(cand, "disabled", "autoload disabled and not listed in `plugins`")
            )
        else:
            add(cand)
    return ordered, infos, failures


def _suggest(name: str, names: Iterable[str]) -> str:
    import difflib  # only for error messages

    close = difflib.get_close_matches(name, list(names), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _info_of(
    cand: _Candidate,
    status: Status,
    error: str | None = None,
    hooks: tuple[str, ...] = (),
    meta: PluginMeta | None = None,
) -> PluginInfo:
    return PluginInfo(
        name=cand.name,
        status=status,
        module=cand.module,
        distribution=cand.distribution,
        version=cand.version,
        builtin=cand.builtin,
        hooks=hooks,
        error=error,
        meta=meta or PluginMeta(),
    )


def _load_one(pm: pluggy.PluginManager, cand: _Candidate) -> LoadedPlugin:
    """Import, instantiate, validate and register one plugin; raise PluginLoadError on failure."""

    def fail(message: str, cls: type[PluginLoadError] = PluginLoadError, **kw: Any) -> Any:
        return cls(
            message, plugin=cand.name, distribution=cand.distribution, version=cand.version, **kw
        )

    if cand.name == RESERVED_NAME:
        raise fail(
            f"plugin name {RESERVED_NAME!r} is reserved (the kernel stores its own per-session "
            "state under it); rename the entry point"
        )
    try:
        obj = cand.load()
        if isinstance(obj, type):
            # A class plugin is instantiated once per core; it may build clients in __init__.
            obj = obj()
    except (Exception, SystemExit) as exc:  # a plugin calling sys.exit() at import is a failure too
        raise fail(
            f"plugin {cand.name!r} could not be imported: {_import_failure(cand, exc)}"
        ) from exc
    meta = getattr(obj, "lash_plugin", None)
    if meta is None:
        meta = PluginMeta()
    elif not isinstance(meta, PluginMeta):
        raise fail(
            f"plugin {cand.name!r}: `lash_plugin` must be a lash.PluginMeta, "
            f"got {type(meta).__name__}"
        )
    for what, cls in (("options", meta.options), ("state", meta.state)):
        if cls is not None and (problem := check_options_class(cls, what)):
            raise fail(f"plugin {cand.name!r}: {problem}")
    try:
        pm.register(obj, name=cand.name)
    except Exception as exc:  # pluggy.PluginValidationError: bad signature, duplicate object...
        raise fail(_refusal(pm, obj, cand.name, exc)) from exc
    try:
        hooks = _validate_hooks(pm, obj, cand)
    except PluginLoadError:
        pm.unregister(obj)
        raise
    info = _info_of(cand, "loaded", hooks=hooks, meta=meta)
    return LoadedPlugin(name=cand.name, obj=obj, info=info)


def _refusal(pm: pluggy.PluginManager, obj: object, name: str, exc: Exception) -> str:
    """Why pluggy refused to register plugin ``name``: for an implementation whose arguments
    the hook lacks, what is wrong with its signature, in one line as ``check_plugin`` says it
    (pluggy's message takes three and suggests nothing); otherwise pluggy's message. (Only
    then: a signature's other flaws, an argument with a default, are no reason for pluggy to
    refuse, and would hide the real one, a wrapper that is not a generator say.)"""
    found = re.search(r"for hook '(\w+)'", str(exc))
    unknown_arguments = "can not be found in the hookspec" in str(exc)  # pluggy's wording
    if (
        isinstance(exc, pluggy.PluginValidationError)
        and unknown_arguments
        and found
        and found[1] in hookspecs.SHAPES
    ):
        hook = found[1]
        for attr in dir(obj):
            try:
                opts = pm.parse_hookimpl_opts(obj, attr)
                function = getattr(obj, attr)
            except Exception:  # an attribute that fails on access is no hook implementation
                continue
            if opts is not None and (opts.get("specname") or attr) == hook:
                where = f"plugin {name!r}, hook {hook!r}"
                if problems := signature_problems(function, hook, where):
                    return "; ".join(problems)
    return f"plugin {name!r} is invalid: {exc}"


def _validate_hooks(pm: pluggy.PluginManager, obj: object, cand: _Candidate) -> tuple[str, ...]:
    names: list[str] = []
    for caller in pm.get_hookcallers(obj) or ():
        name = caller.name
        if not caller.has_spec():
            import difflib  # only for error messages

            close = difflib.get_close_matches(name, list(hookspecs.SHAPES), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UnknownHookError(
                f"plugin {cand.name!r} implements {name!r}, which is not a lash hook{hint}",
                plugin=cand.name,
                hook=name,
                suggestion=close[0] if close else None,
                distribution=cand.distribution,
                version=cand.version,
            )
        for impl in caller.get_hookimpls():
            if impl.plugin is not obj:
                continue
            if impl.hookwrapper or impl.wrapper:
                raise PluginLoadError(
                    f"plugin {cand.name!r}: hook wrappers are not supported ({name!r}); "
                    "use tryfirst/trylast to adjust order",
                    plugin=cand.name,
                    hook=name,
                    distribution=cand.distribution,
                    version=cand.version,
                )
            current = hookspecs.DEPRECATED.get(name, name)
            if current not in hookspecs.ASYNC_ALLOWED and inspect.iscoroutinefunction(
                impl.function
            ):
                raise PluginLoadError(
                    f"plugin {cand.name!r}: hook {name!r} must be synchronous (it runs while "
                    "the core is built); drop `async`",
                    plugin=cand.name,
                    hook=name,
                    distribution=cand.distribution,
                    version=cand.version,
                )
        names.append(name)
    warn_deprecated_hooks(cand.name, names)
    return tuple(sorted(names))


def warn_deprecated_hooks(plugin: str, hooks: Sequence[str]) -> None:
    """Warn (naming the plugin) for each deprecated hook name it implements."""
    for hook in hooks:
        new = hookspecs.DEPRECATED.get(hook)
        if new is not None:
            warnings.warn(
                f"plugin {plugin!r} implements hook {hook!r}, which lash 0.2 renamed "
                f"{new!r}: rename the function (the old name stops working in lash 0.3)",
                DeprecationWarning,
                stacklevel=2,
            )


def order_plugins(
    loaded: Sequence[LoadedPlugin],
) -> tuple[list[LoadedPlugin], list[PluginOrderError]]:
    """Topologically sort by ``before``/``after``, config order breaking ties.

    A missing ``requires`` fails the requiring plugin (and, transitively, plugins requiring it);
    plugins caught in an ordering cycle all fail with an error naming the cycle. The others are
    ordered as if the failed plugins were not there.
    """
    failures: list[PluginOrderError] = []
    alive = {p.name: p for p in loaded}
    index = {p.name: i for i, p in enumerate(loaded)}
    while True:
        # Dropping a cycle may break another plugin's requirement, and the other way round.
        _drop_unmet_requirements(alive, failures)
        edges = _edges(alive)
        order = _topological(edges, index)
        if len(order) == len(alive):
            return [alive[name] for name in order], failures
        stuck = set(alive) - set(order)
        for members in _cyclic_components(edges, stuck, index):
            text = " -> ".join(repr(n) for n in _cycle_path(edges, members, index))
            names = ", ".join(repr(n) for n in members)
            for name in members:
                del alive[name]
                failures.append(
                    PluginOrderError(
                        f"plugin {name!r} cannot be ordered: the `before`/`after` declarations "
                        f"of {names} form a cycle ({text}, where -> means 'runs before'); "
                        "remove one of them",
                        plugin=name,
                        plugins=members,
                    )
                )


def _drop_unmet_requirements(
    alive: dict[str, LoadedPlugin], failures: list[PluginOrderError]
) -> None:
    changed = True
    while changed:  # fixpoint: a plugin failing may break another's requirement
        changed = False
        for p in list(alive.values()):
            missing = [r for r in p.info.meta.requires if r not in alive]
            if missing:
                del alive[p.name]
                changed = True
                failures.append(
                    PluginOrderError(
                        f"plugin {p.name!r} requires {', '.join(repr(m) for m in missing)}, "
                        "which is not loaded (install it, list it in `plugins`, remove it from "
                        "`disable`, or fix its own load error)",
                        plugin=p.name,
                        plugins=(p.name, *missing),
                    )
                )


def _edges(alive: Mapping[str, LoadedPlugin]) -> dict[str, set[str]]:
    """``a -> {b, ...}``: ``a`` runs before each ``b`` (``before``/``after`` among ``alive``)."""
    edges: dict[str, set[str]] = {name: set() for name in alive}
    for p in alive.values():
        for other in p.info.meta.before:
            if other in alive and other != p.name:
                edges[p.name].add(other)
        for other in p.info.meta.after:
            if other in alive and other != p.name:
                edges[other].add(p.name)
    return edges


def _topological(edges: Mapping[str, set[str]], index: Mapping[str, int]) -> list[str]:
    """Kahn's algorithm, always taking the ready plugin earliest in config order.

    Plugins on or behind a cycle are left out of the result.
    """
    indegree = dict.fromkeys(edges, 0)
    for targets in edges.values():
        for t in targets:
            indegree[t] += 1
    ready = [(index[n], n) for n, d in indegree.items() if d == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        _, name = heapq.heappop(ready)
        order.append(name)
        for t in edges[name]:
            indegree[t] -= 1
            if indegree[t] == 0:
                heapq.heappush(ready, (index[t], t))
    return order


def _cyclic_components(
    edges: Mapping[str, set[str]], stuck: set[str], index: Mapping[str, int]
) -> list[tuple[str, ...]]:
    """The strongly connected components of the stuck plugins that contain a cycle.

    A plugin that is merely ordered after a cycle is stuck too, but is not part of one: it is not
    returned, and is ordered normally once the cycle's plugins are gone.
    """

    def reachable(start: str) -> set[str]:
        seen: set[str] = set()
        todo = [t for t in edges[start] if t in stuck]
        while todo:
            node = todo.pop()
            if node not in seen:
                seen.add(node)
                todo.extend(t for t in edges[node] if t in stuck)
        return seen

    reach = {n: reachable(n) for n in stuck}
    components: list[tuple[str, ...]] = []
    done: set[str] = set()
    for name in sorted(stuck, key=index.__getitem__):
        if name in done or name not in reach[name]:
            continue
        members = tuple(sorted((m for m in reach[name] if name in reach[m]), key=index.__getitem__))
        done.update(members)
        components.append(members)
    return components


def _cycle_path(
    edges: Mapping[str, set[str]], members: Sequence[str], index: Mapping[str, int]
) -> list[str]:
    # In a strongly connected component every member has a successor inside it: walking them
    # (earliest in config order first) must revisit a node, closing a cycle.
    inside = set(members)
    path: list[str] = []
    pos: dict[str, int] = {}
    node = members[0]
    while node not in pos:
        pos[node] = len(path)
        path.append(node)
        node = min((t for t in edges[node] if t in inside), key=index.__getitem__)
    return [*path[pos[node] :], node]


def load_plugins(
    config: HostConfig,
    *,
    explicit: Sequence[object | str] | None = None,
    builtins: Builtins = None,
    discover: bool = True,
) -> LoadResult:
    """Discover, select, load, validate and order plugins into a fresh plugin manager.

    Failures are isolated: each failing plugin is recorded (``status="failed"``) and skipped. With
    ``config.strict`` the first failure is raised instead, listing all of them.
    """
    pm = new_plugin_manager()
    discovered = discover_entry_points() if discover else []
    enabled, infos, failures_sel = _select(config, discovered, explicit, builtins)
    failures: list[PluginLoadError] = list(failures_sel)
    loaded: list[LoadedPlugin] = []
    failed_info: dict[str, PluginInfo] = {}
    warnings: list[str] = []

    def drop(plugin: LoadedPlugin, error: PluginLoadError) -> None:
        pm.unregister(plugin.obj)
        failures.append(error)
        failed_info[plugin.name] = attrs.evolve(plugin.info, status="failed", error=str(error))

    for cand in enabled:
        try:
            plugin = _load_one(pm, cand)
        except PluginLoadError as exc:
            failures.append(exc)
            failed_info[cand.name] = _info_of(cand, "failed", str(exc))
            continue
        if plugin.info.meta.opt_in and not cand.listed:
            # Opt-in plugins (e.g. ones granting file access) never load just by being installed.
            pm.unregister(plugin.obj)
            infos.append(
                attrs.evolve(
                    plugin.info,
                    status="disabled",
                    error="opt-in plugin: name it in `plugins` to enable it",
                )
            )
            continue
        # Options are validated before ordering, so a plugin that fails here cannot satisfy
        # another plugin's `requires`.
        meta = plugin.info.meta
        data = config.options.get(plugin.name, {})
        if meta.options is not None:
            try:
                plugin.options = build_options(plugin.name, meta.options, data)
            except OptionsError as options_error:
                err = PluginLoadError(
                    str(options_error),
                    plugin=plugin.name,
                    distribution=plugin.info.distribution,
                    version=plugin.info.version,
                )
                err.__cause__ = options_error
                drop(plugin, err)
                continue
        elif data:
            warnings.append(
                f"[options.{plugin.name}] is set but plugin {plugin.name!r} declares no options"
            )
        loaded.append(plugin)

    final, order_failures = order_plugins(loaded)
    by_name = {p.name: p for p in loaded}
    for order_failure in order_failures:
        drop(by_name[order_failure.plugin or ""], order_failure)

    known = {p.name for p in final} | set(failed_info) | {i.name for i in infos}
    # Not misspellings either: a plugin the config disables (it may be absent from this install
    # on purpose), and one already reported as a failure (listed in `plugins`, not installed).
    known |= set(config.disable) | {f.plugin for f in failures if f.plugin}
    for name in config.options:
        if name not in known:
            warnings.append(
                f"[options.{name}] is set but no plugin named {name!r} is enabled"
                + _suggest(name, known)  # a misspelled table, like a misspelled hook
            )

    if failures and config.strict:
        first = failures[0]
        if len(failures) > 1:
            rest = "\n".join(f"  - {f}" for f in failures[1:])
            first.args = (f"{first}\n(strict mode) {len(failures) - 1} more failure(s):\n{rest}",)
        raise first

    for failure in failures:
        log.warning("lash: plugin skipped: %s", failure)
    for warning in warnings:
        # Logged like a skipped plugin: a misspelled [options.NAME] table configures nothing,
        # and a host (lash run, a worker) would otherwise say nothing about it.
        log.warning("lash: warning: %s", warning)
    all_infos = [p.info for p in final]
    all_infos += [failed_info[c.name] for c in enabled if c.name in failed_info]
    # Listed-but-missing plugins (and name clashes) have no candidate of their own: record them
    # too, once, unless the name is already accounted for.
    recorded = {i.name for i in all_infos} | {i.name for i in infos}
    for failure in failures:
        if failure.plugin and failure.plugin not in recorded:
            recorded.add(failure.plugin)
            all_infos.append(
                PluginInfo(
                    name=failure.plugin,
                    status="failed",
                    distribution=failure.distribution,
                    version=failure.version,
                    error=str(failure),
                )
            )
    all_infos += infos
    return LoadResult(pm=pm, loaded=final, infos=all_infos, failures=failures, warnings=warnings)


resolve_here(globals())
