"""Hook dispatch: the five shapes, in lash's order, awaiting async implementations.

pluggy is synchronous and calls implementations last-registered-first; lash needs config order and
must await ``async def`` implementations itself (a coroutine is not ``None``, so pluggy's
``firstresult`` cannot serve "first" over async code). So the kernel asks pluggy for the validated
implementations once, orders them, and calls them here. This module is the one place async
bridging happens: call sites never guess.
"""

from __future__ import annotations

import inspect
import logging
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, NoReturn

import pluggy

from lash.errors import ConfigRejected, ExclusiveHookConflict, LashError, PluginError

log = logging.getLogger("lash")

#: A hook result tagged with the plugin that produced it: ``(plugin_name, value)``.
Tagged = tuple[str, Any]

Bind = Callable[[str], Mapping[str, Any]]


class HookImpl(NamedTuple):
    """One ordered implementation: plugin name, function, the arguments it takes, async or not."""

    plugin: str
    function: Callable[..., Any]
    argnames: tuple[str, ...]
    is_async: bool


# Set outside the body: NamedTuple bodies may only declare fields (for mypy).
HookImpl.__module__ = "lash"


def raise_plugin_error(hook: str, plugin: str, exc: Exception) -> NoReturn:
    """Raise :func:`plugin_error` for ``exc``, chained to it unless it is ``exc`` itself."""
    error = plugin_error(hook, plugin, exc)
    if error is exc:
        raise exc
    raise error from exc


def plugin_error(hook: str, plugin: str, exc: BaseException) -> LashError:
    """The error a failing implementation surfaces as.

    A :class:`PluginError` (already attributed, e.g. from a nested dispatch) and a
    :class:`ConfigRejected` (the documented way to reject a config change) keep their type, with
    any missing plugin/hook filled in. Everything else, other lash errors included, is wrapped in
    a :class:`PluginError` whose message names the plugin and the hook, so a host always learns
    who failed where; the original is the ``__cause__``.
    """
    if isinstance(exc, PluginError | ConfigRejected):
        for attr, value in (("plugin", plugin), ("hook", hook)):
            if getattr(exc, attr, None) is None:
                setattr(exc, attr, value)
        return exc
    err = PluginError(
        f"plugin {plugin!r} failed in hook {hook!r}: {type(exc).__name__}: {exc}",
        plugin=plugin,
        hook=hook,
    )
    err.__cause__ = exc
    return err


def _args(impl: HookImpl, kwargs: Mapping[str, Any]) -> list[Any]:
    # Outside the plugin's try block: an argument the kernel failed to pass is a kernel bug, not
    # the plugin's failure.
    return [kwargs[a] for a in impl.argnames]


async def call_impl(hook: str, impl: HookImpl, **kwargs: Any) -> Any:
    """Call one implementation (for call sites that fold results themselves); failures become
    errors naming the plugin and the hook, exactly as in the dispatch shapes."""
    args = _args(impl, kwargs)
    try:
        return await _call(impl, args)
    except Exception as exc:
        raise_plugin_error(hook, impl.plugin, exc)


#: Whether values of a type are awaitable, learned per type: inspect.isawaitable goes through
#: the Awaitable ABC, several times slower than a dict lookup on the hot path.
_AWAITABLE_TYPES: dict[type, bool] = {types.CoroutineType: True, type(None): False}


def _is_awaitable(value: object) -> bool:
    kind = type(value)
    known = _AWAITABLE_TYPES.get(kind)
    if known is None:
        known = inspect.isawaitable(value)
        if kind is not types.GeneratorType:  # only some generators are awaitable (by flag)
            _AWAITABLE_TYPES[kind] = known
    return known


def _refuse_awaitable(hook: str, plugin: str, value: object) -> NoReturn:
    # Nothing can await it here; close it so it does not warn "never awaited".
    close = getattr(value, "close", None)
    if close is not None:
        close()
    raise PluginError(
        f"plugin {plugin!r}: hook {hook!r} must be synchronous, but the implementation "
        "returned an awaitable; drop `async`",
        plugin=plugin,
        hook=hook,
    )


async def _call(impl: HookImpl, args: Sequence[Any]) -> Any:
    """Call one implementation, awaiting its result if needed.

    ``is_async`` covers ``async def``; the awaitable test also covers a sync function that returns
    a coroutine (a decorated or partial async function), which would otherwise never be awaited.
    """
    value = impl.function(*args)
    if impl.is_async or _is_awaitable(value):
        value = await value
    return value


class HookDispatcher:
    """Calls hooks of one core's plugin manager in the documented order and shapes.

    ``order`` lists plugin names in their resolved order; ``tryfirst`` implementations come before
    all others and ``trylast`` ones after, each group in plugin order.
    """

    __module__ = "lash"

    def __init__(
        self,
        pm: pluggy.PluginManager,
        order: Sequence[str],
        *,
        on_error: Callable[[LashError], None] | None = None,
    ) -> None:
        self._pm = pm
        self._rank = {name: i for i, name in enumerate(order)}
        self._cache: dict[str, tuple[HookImpl, ...]] = {}
        self._on_error = on_error

    def impls(self, hook: str) -> tuple[HookImpl, ...]:
        """The ordered implementations of ``hook`` (cached; the plugin set is fixed per core)."""
        cached = self._cache.get(hook)
        if cached is not None:
            return cached
        caller = getattr(self._pm.hook, hook)
        rank = self._rank
        last = len(rank)

        def key(impl: pluggy.HookImpl) -> tuple[int, int]:
            bucket = 0 if impl.tryfirst else 2 if impl.trylast else 1
            return (bucket, rank.get(impl.plugin_name, last))

        result = tuple(
            HookImpl(
                impl.plugin_name,
                impl.function,
                tuple(impl.argnames),
                inspect.iscoroutinefunction(impl.function),
            )
            for impl in sorted(caller.get_hookimpls(), key=key)
        )
        self._cache[hook] = result
        return result

    def plugins_implementing(self, hook: str) -> list[str]:
        """Names of the plugins implementing ``hook``, in dispatch order."""
        return [impl.plugin for impl in self.impls(hook)]

    # -- collect -------------------------------------------------------------------------------
    #
    # The loops below are the kernel's hottest code: they unpack the cached tuples, build the
    # argument list outside the plugin's try block (a missing argument is a kernel bug, not the
    # plugin's failure), and await inline rather than through a helper coroutine per call.

    def collect_sync(
        self, hook: str, /, *, bind: Bind | None = None, **kwargs: Any
    ) -> list[Tagged]:
        """Collect from synchronous implementations (registration hooks); ``None`` results are
        dropped. ``bind(plugin)`` supplies per-plugin arguments (such as its options)."""
        results: list[Tagged] = []
        call_kwargs = kwargs
        for plugin, function, argnames, _ in self.impls(hook):
            if bind is not None:
                call_kwargs = {**kwargs, **bind(plugin)}
            args = [call_kwargs[a] for a in argnames]
            try:
                value = function(*args)
            except Exception as exc:
                raise_plugin_error(hook, plugin, exc)
            if value is not None:
                if _AWAITABLE_TYPES.get(type(value), True) and _is_awaitable(value):
                    _refuse_awaitable(hook, plugin, value)
                results.append((plugin, value))
        return results

    async def collect(
        self, hook: str, /, *, bind: Bind | None = None, **kwargs: Any
    ) -> list[Tagged]:
        """Collect from every implementation, awaiting async ones; ``None`` results are dropped."""
        results: list[Tagged] = []
        call_kwargs = kwargs
        for plugin, function, argnames, is_async in self.impls(hook):
            if bind is not None:
                call_kwargs = {**kwargs, **bind(plugin)}
            args = [call_kwargs[a] for a in argnames]
            try:
                value = function(*args)
                # A coroutine is never None: await before testing (also a sync function that
                # returns one, e.g. a decorated async implementation).
                if is_async or (_AWAITABLE_TYPES.get(type(value), True) and _is_awaitable(value)):
                    value = await value
            except Exception as exc:
                raise_plugin_error(hook, plugin, exc)
            if value is not None:
                results.append((plugin, value))
        return results

    # -- chain ---------------------------------------------------------------------------------

    async def chain(self, hook: str, /, key: str, value: Any, **kwargs: Any) -> Any:
        """Pass ``value`` (as argument ``key``) through every implementation in order; a
        non-``None`` result replaces it for the next one. Returns the final value."""
        call_kwargs = dict(kwargs)
        for plugin, function, argnames, is_async in self.impls(hook):
            call_kwargs[key] = value
            args = [call_kwargs[a] for a in argnames]
            try:
                result = function(*args)
                if is_async or (_AWAITABLE_TYPES.get(type(result), True) and _is_awaitable(result)):
                    result = await result
            except Exception as exc:
                raise_plugin_error(hook, plugin, exc)
            if result is not None:
                value = result
        return value

    # -- first ---------------------------------------------------------------------------------

    async def first(self, hook: str, /, **kwargs: Any) -> Tagged | None:
        """Call implementations in order until one returns non-``None``; return it, tagged."""
        for plugin, function, argnames, is_async in self.impls(hook):
            args = [kwargs[a] for a in argnames]
            try:
                value = function(*args)
                # Awaited before the None test: a coroutine object is never None.
                if is_async or (_AWAITABLE_TYPES.get(type(value), True) and _is_awaitable(value)):
                    value = await value
            except Exception as exc:
                raise_plugin_error(hook, plugin, exc)
            if value is not None:
                return (plugin, value)
        return None

    # -- exclusive -----------------------------------------------------------------------------

    def exclusive_impl(self, hook: str) -> HookImpl | None:
        """The single implementation of an exclusive hook, or ``None``.

        :raises ExclusiveHookConflict: naming both plugins when two implement it.
        """
        impls = self.impls(hook)
        if len(impls) > 1:
            raise ExclusiveHookConflict(hook, [impls[0].plugin, impls[1].plugin])
        return impls[0] if impls else None

    async def exclusive(self, hook: str, /, **kwargs: Any) -> Tagged | None:
        """Call the one implementation of an exclusive hook (``None`` when there is none)."""
        impl = self.exclusive_impl(hook)
        if impl is None:
            return None
        args = _args(impl, kwargs)
        try:
            value = await _call(impl, args)
        except Exception as exc:
            raise_plugin_error(hook, impl.plugin, exc)
        return (impl.plugin, value)

    # -- broadcast -----------------------------------------------------------------------------

    async def broadcast(self, hook: str, /, **kwargs: Any) -> list[LashError]:
        """Call every implementation; failures are reported and isolated, never raised.

        Returns the errors (each naming plugin and hook) after passing them to ``on_error``.
        """
        errors: list[LashError] = []
        for plugin, function, argnames, is_async in self.impls(hook):
            args = [kwargs[a] for a in argnames]
            try:
                value = function(*args)
                if is_async or (_AWAITABLE_TYPES.get(type(value), True) and _is_awaitable(value)):
                    await value
            except Exception as exc:
                errors.append(self.report(plugin_error(hook, plugin, exc)))
        return errors

    def report(self, error: LashError) -> LashError:
        """Report an isolated error: log it and hand it to the ``on_error`` callback."""
        log.error("lash: %s", error, exc_info=error.__cause__ or error)
        if self._on_error is not None:
            try:
                self._on_error(error)
            except Exception:  # a broken error sink must not break the turn either
                log.exception("lash: error callback failed")
        return error
