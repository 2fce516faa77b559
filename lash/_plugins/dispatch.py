"""Hook dispatch: the five shapes, in lash's order, through one validated path.

pluggy is synchronous and calls implementations last-registered-first; lash needs config order and
must await ``async def`` implementations itself (a coroutine is not ``None``, so pluggy's
``firstresult`` cannot serve "first" over async code). So the kernel asks pluggy for the validated
implementations once, orders them, and calls them here, in :meth:`HookDispatcher._dispatch`: the
one loop every shape, the registration hooks and the CLI commands go through. It awaits async
results (the one place async bridging happens), applies the per-core hook timeout, checks every
result against the hook's contract (:mod:`lash._plugins.results`), attributes every failure to its
plugin and hook, and records which plugin is running (:data:`lash._contract.calls.CALLER`).

Each public method names the shape it implements and asserts that the hook was declared with that
shape in :data:`lash.hookspecs.SHAPES`: a call site cannot dispatch a hook in the wrong shape.
"""

from __future__ import annotations

import functools
import inspect
import logging
import operator
import types
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, NamedTuple, NoReturn

import attrs
import pluggy

from lash._contract.calls import CALLER, Caller
from lash._contract.slots import plain_slots
from lash._plugins.results import ResultCheck, checker
from lash.errors import ConfigRejected, ExclusiveHookConflict, LashError, PluginError
from lash.hookspecs import DEPRECATED, SHAPES

log = logging.getLogger("lash")

#: A hook result tagged with the plugin that produced it: ``(plugin_name, value)``.
Tagged = tuple[str, Any]

#: ``bind(plugin)``: arguments that differ per plugin (its options, its register callback).
Bind = Callable[[str], Mapping[str, Any]]

#: ``step(plugin, value, kwargs) -> stop``: a fold's step; it may change ``kwargs`` for the next
#: implementation (the value being folded is one of them) and returns True to end the fold.
Step = Callable[[str, Any, dict[str, Any]], bool]

#: ``before(hook, plugin, kwargs)`` and ``after(hook, plugin, kwargs, result, exception)``.
MonitorBefore = Callable[[str, str, Mapping[str, Any]], None]
MonitorAfter = Callable[[str, str, Mapping[str, Any], Any, BaseException | None], None]


class HookImpl(NamedTuple):
    """One ordered implementation: plugin name, function, the arguments it takes, async or not."""

    plugin: str
    function: Callable[..., Any]
    argnames: tuple[str, ...]
    is_async: bool


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


# The dispatch modes of the one loop (module constants: compared by identity on the hot path).
_COLLECT, _CHAIN, _FIRST, _BROADCAST, _FOLD = range(5)


def _no_arguments(kwargs: Mapping[str, Any]) -> tuple[()]:
    return ()


class _Call(NamedTuple):
    """One implementation as the loop calls it: ``function(arguments(kwargs))``, or
    ``function(*arguments(kwargs))`` when ``spread``.

    ``arguments`` is an :func:`operator.itemgetter` of the implementation's argument names, built
    once: on Python 3.11 a list comprehension per call (what pluggy does) costs a function call of
    its own, ~0.25 us per implementation, which alone put dispatch over 1.3x a bare pluggy call at
    10 and 50 implementations. An itemgetter of one name returns the value, not a 1-tuple: such
    implementations (most hooks take one argument) are called without spreading.
    """

    plugin: str
    function: Callable[..., Any]
    arguments: Callable[[Mapping[str, Any]], Any]
    spread: bool
    is_async: bool


def _call(impl: HookImpl) -> _Call:
    names = impl.argnames
    if len(names) == 1:
        arguments: Callable[[Mapping[str, Any]], Any] = operator.itemgetter(names[0])
        return _Call(impl.plugin, impl.function, arguments, False, impl.is_async)
    arguments = operator.itemgetter(*names) if names else _no_arguments
    return _Call(impl.plugin, impl.function, arguments, True, impl.is_async)


#: ``prefix(kwargs, mode, results, key) -> calls``: see :func:`_prefix`.
Prefix = Callable[[dict[str, Any], int, list[Any], str], "tuple[_Call, ...]"]

#: How many dispatches of a hook (without per-plugin arguments) before it gets its fast path:
#: building one costs tens of microseconds (hundreds when its code is not cached yet), which
#: only hooks called over and over (the turn's) earn back; registration and one-off hooks never
#: get one.
_HOT = 8


class _FastPath:
    """A hook's fast path (:func:`_prefix`), built once the hook has been dispatched
    :data:`_HOT` times. The shapes call ``run(kwargs, mode, results, key)``, which returns the
    calls the loop still has to make (none: it handled them all, its results in ``results``):
    until the hook is hot, every call (:meth:`_cold`, which counts), then the built fast path
    itself (one call a dispatch, not two: ~1 % of a memory:// turn, five dispatches)."""

    __slots__ = ("chain", "dispatched", "plan", "prefix", "run")

    def __init__(self, chain: bool) -> None:
        self.chain = chain
        self.dispatched = 0
        self.prefix: Prefix | None = None
        self.run: Prefix = self._cold
        self.plan: _Plan | None = None  # (set once the plan holding this is made)

    def _cold(
        self, kwargs: dict[str, Any], mode: int, results: list[Any], key: str
    ) -> tuple[_Call, ...]:
        plan = self.plan
        assert plan is not None
        if self.prefix is None:
            self.dispatched += 1
            if self.dispatched < _HOT:
                return plan.calls
            self.prefix = _prefix(plan, self.chain)
        self.run = self.prefix
        return self.prefix(kwargs, mode, results, key)


class _Plan(NamedTuple):
    """What the loop needs for one hook, computed once per core (and per monitor change)."""

    hook: str
    shape: str
    impls: tuple[HookImpl, ...]
    calls: tuple[_Call, ...]
    accepted: frozenset[type]
    check: Callable[[str, Any], Any]
    caller: str
    fast: _FastPath | None  # None: an implementation is async (the loop awaits it)


def _returning(value: Any) -> Callable[[Any], Any]:
    def replay(_args: Any) -> Any:
        return value

    return replay


def _raising(exc: Exception) -> Callable[[Any], Any]:
    def replay(_args: Any) -> Any:
        raise exc

    return replay


def _keep(
    value: Any,
    plugin: str,
    mode: int,
    results: list[Tagged],
    key: str,
    kwargs: dict[str, Any],
    accepted: frozenset[type],
) -> bool:
    """The fast path's handling of a result that is not ``None``: whether it took it (a
    collect's or chain's result of an accepted class; a broadcast drops one); else the loop
    takes over."""
    if value.__class__ not in accepted:
        return False
    if mode == _COLLECT:
        results.append((plugin, value))
        return True
    if mode == _CHAIN:
        kwargs[key] = value
        return True
    return mode == _BROADCAST


def _rest(calls: tuple[_Call, ...], index: int, replay: Callable[[Any], Any]) -> tuple[_Call, ...]:
    """The calls the loop makes after the fast path stopped at ``calls[index]``: that one with
    ``replay`` (its result, or its exception) in its place, then the others."""
    plugin, _, arguments, _, _ = calls[index]
    return (_Call(plugin, replay, arguments, False, False), *calls[index + 1 :])


#: Whether Caller's __init__ only stores its fields (attrs, no validator): the fast path then
#: makes the dispatch's Caller by two stores instead of a call of __init__.
_PLAIN_CALLER = plain_slots(Caller) is not None and [a.name for a in attrs.fields(Caller)] == [
    "what",
    "plugin",
]


@functools.lru_cache(maxsize=256)
def _prefix_code(argnames: tuple[tuple[str, ...], ...], chain: bool) -> types.CodeType:
    """The code of a fast path over implementations taking ``argnames`` (one tuple each); the
    same for every hook and core where they match, so it is compiled once per process."""
    names: dict[str, str] = {}  # argument name -> the local holding it
    for each in argnames:
        for name in each:
            names.setdefault(name, f"a{len(names)}")
    # Outside the try: an argument the kernel failed to pass is a kernel bug.
    read = [f"{local} = kwargs[{name!r}]" for name, local in names.items()]
    lines = ["def prefix(kwargs, mode, results, key):", *(f"    {r}" for r in read)]
    # The running plugin, for the dispatch (lash._contract.calls): what the loop sets too.
    if _PLAIN_CALLER:
        lines += [
            "    caller = _new(_Caller)",
            "    caller.what = _what",
            "    caller.plugin = None",
        ]
    else:
        lines += ["    caller = _Caller(_what)"]
    lines += ["    token = _set(caller)", "    try:"]
    for index, each in enumerate(argnames):
        # A try of its own for each implementation (free on 3.11 until something raises), so
        # that its exception names its index without a store of the index before each call.
        lines += [
            f"        caller.plugin = p{index}",
            "        try:",
            f"            v = f{index}({', '.join(names[n] for n in each)})",
            "            if v is not None:",
            f"                if not _keep(v, p{index}, mode, results, key, kwargs, accepted):",
            f"                    return _rest(_calls, {index}, _returning(v))",
            # A chain's result is the next implementation's argument.
            *(f"                {r}" for r in (read if chain else ())),
            "        except Exception as exc:",
            f"            return _rest(_calls, {index}, _raising(exc))",
        ]
    lines += ["    finally:", "        _reset(token)", "    return ()"]
    return compile("\n".join(lines), "<lash hook dispatch>", "exec")


def _prefix(plan: _Plan, chain: bool) -> Prefix:
    """The fast path of a hook whose implementations are all synchronous: a generated
    function that calls them in order, straight-line, with each argument read from ``kwargs``
    once (the loop pays, per implementation, a tuple unpacked, an itemgetter called and the
    async and awaitable tests: about twice the cost), the dispatch's caller record set
    around them as the loop sets it.

    It handles what most calls of most hooks get back: ``None`` (no-op and observing
    implementations), and, for collect and chain, a result of an ``accepted`` class (valid as
    it is, and not awaitable), collected into ``results`` or passed on as argument ``key``
    (the arguments are then read again); a broadcast drops one. ``prefix(kwargs, mode,
    results, key)`` returns ``()`` when it handled every implementation; else the calls the
    loop has to make, from the first it did not handle (any other result, or an exception)
    on, that one replayed (:func:`_rest`: its result in its place, the value returned or the
    exception raised), so such a result gets the loop's full treatment: awaited, checked,
    attributed, folded.
    """
    impls = plan.impls
    namespace: dict[str, Any] = {
        "_keep": _keep,
        "_returning": _returning,
        "_raising": _raising,
        "_rest": _rest,
        "_calls": plan.calls,
        "_new": object.__new__,
        "_Caller": Caller,
        "_what": plan.caller,
        "_set": CALLER.set,
        "_reset": CALLER.reset,
        # (Every accepted class is plain data; anything awaitable is left to the loop.)
        "accepted": frozenset(t for t in plan.accepted if not hasattr(t, "__await__")),
    }
    for index, impl in enumerate(impls):
        namespace[f"p{index}"], namespace[f"f{index}"] = impl.plugin, impl.function
    exec(_prefix_code(tuple(impl.argnames for impl in impls), chain), namespace)
    prefix: Prefix = namespace["prefix"]
    return prefix


def _restored_only(impl: HookImpl) -> HookImpl:
    """A deprecated ``session_restored`` implementation, called as ``session_opened`` only for
    resumed sessions (what the old hook meant)."""
    function, argnames = impl.function, impl.argnames

    def opened(*args: Any) -> Any:
        *forwarded, restored = args
        return function(*forwarded) if restored else None

    # Not marked async: it returns None for fresh sessions, and the loop awaits what is awaitable.
    return HookImpl(impl.plugin, opened, (*argnames, "restored"), False)


#: How an implementation of a deprecated hook is called under its new name.
_ADAPT: dict[str, Callable[[HookImpl], HookImpl]] = {"session_restored": _restored_only}


class HookDispatcher:
    """Calls hooks of one core's plugin manager in the documented order and shapes.

    ``order`` lists plugin names in their resolved order; ``tryfirst`` implementations come before
    all others and ``trylast`` ones after, each group in plugin order. ``hook_timeout`` (seconds)
    bounds every awaited implementation: one that runs longer fails as a
    :class:`lash.PluginError` naming its plugin and hook.
    """

    def __init__(
        self,
        pm: pluggy.PluginManager,
        order: Sequence[str],
        *,
        on_error: Callable[[LashError], None] | None = None,
        hook_timeout: float | None = None,
    ) -> None:
        self._pm = pm
        self._rank = {name: i for i, name in enumerate(order)}
        self._impls: dict[str, tuple[HookImpl, ...]] = {}
        self._plans: dict[str, _Plan] = {}
        self._on_error = on_error
        self._monitors: list[tuple[MonitorBefore, MonitorAfter]] = []
        #: Seconds an awaited implementation may take (``None``: no limit).
        self.hook_timeout = hook_timeout

    # -- implementations ---------------------------------------------------------------------

    def impls(self, hook: str) -> tuple[HookImpl, ...]:
        """The ordered implementations of ``hook`` (cached; the plugin set is fixed per core),
        including implementations of the deprecated name it replaces."""
        cached = self._impls.get(hook)
        if cached is not None:
            return cached
        rank = self._rank
        last = len(rank)
        found: list[tuple[tuple[int, int], HookImpl]] = []
        names = [hook] + [old for old, new in DEPRECATED.items() if new == hook]
        for name in names:
            adapt = _ADAPT.get(name)
            for impl in getattr(self._pm.hook, name).get_hookimpls():
                bucket = 0 if impl.tryfirst else 2 if impl.trylast else 1
                ours = HookImpl(
                    impl.plugin_name,
                    impl.function,
                    tuple(impl.argnames),
                    inspect.iscoroutinefunction(impl.function),
                )
                found.append(
                    ((bucket, rank.get(impl.plugin_name, last)), adapt(ours) if adapt else ours)
                )
        # sorted() is stable: within one plugin, the current name's implementation comes first.
        result = tuple(impl for _, impl in sorted(found, key=lambda item: item[0]))
        self._impls[hook] = result
        return result

    def plugins_implementing(self, hook: str) -> list[str]:
        """Names of the plugins implementing ``hook``, in dispatch order."""
        return [impl.plugin for impl in self.impls(hook)]

    def exclusive_impl(self, hook: str) -> HookImpl | None:
        """The single implementation of an exclusive hook, or ``None``.

        :raises ExclusiveHookConflict: naming both plugins when two implement it.
        """
        impls = self.impls(hook)
        if len(impls) > 1:
            raise ExclusiveHookConflict(hook, [impls[0].plugin, impls[1].plugin])
        return impls[0] if impls else None

    def _plan(self, hook: str) -> _Plan:
        plan = self._plans.get(hook)
        if plan is None:
            shape = SHAPES.get(hook)
            if shape is None:
                raise AssertionError(f"kernel bug: {hook!r} is not a hook of lash.hookspecs")
            impls = self.impls(hook)
            if self._monitors:
                impls = tuple(self._monitored(hook, impl) for impl in impls)
            check: ResultCheck = checker(hook)
            calls = tuple(_call(impl) for impl in impls)
            eligible = bool(impls) and not any(impl.is_async for impl in impls)
            fast = _FastPath(shape == "chain") if eligible else None
            plan = _Plan(hook, shape, impls, calls, check.accepted, check.slow, hook, fast)
            if fast is not None:
                fast.plan = plan
            self._plans[hook] = plan
        return plan

    # -- monitoring ---------------------------------------------------------------------------

    def add_monitor(self, before: MonitorBefore, after: MonitorAfter) -> Callable[[], None]:
        """Call ``before(hook, plugin, kwargs)`` before and ``after(hook, plugin, kwargs, result,
        exception)`` after every implementation this dispatcher calls (``result`` awaited for
        async implementations; ``exception`` as raised, before it is attributed). Returns a
        function that removes the monitor. Monitors see exactly what each plugin was given and
        answered; dispatch itself is unchanged (and costs nothing extra without monitors)."""
        monitor = (before, after)
        self._monitors.append(monitor)
        self._plans.clear()

        def undo() -> None:
            if monitor in self._monitors:
                self._monitors.remove(monitor)
                self._plans.clear()

        return undo

    def _monitored(self, hook: str, impl: HookImpl) -> HookImpl:
        monitors = tuple(self._monitors)
        function, argnames, plugin = impl.function, impl.argnames, impl.plugin

        def begin(args: Sequence[Any]) -> dict[str, Any]:
            kwargs = dict(zip(argnames, args, strict=True))
            for before, _ in monitors:
                before(hook, plugin, kwargs)
            return kwargs

        def end(kwargs: Mapping[str, Any], result: Any, exc: BaseException | None) -> None:
            for _, after in monitors:
                after(hook, plugin, kwargs, result, exc)

        async def settle(kwargs: Mapping[str, Any], awaitable: Any) -> Any:
            try:
                value = await awaitable
            except BaseException as exc:
                end(kwargs, None, exc)
                raise
            end(kwargs, value, None)
            return value

        def monitored(*args: Any) -> Any:
            kwargs = begin(args)
            try:
                value = function(*args)
            except BaseException as exc:
                end(kwargs, None, exc)
                raise
            if _is_awaitable(value):
                return settle(kwargs, value)  # the loop awaits this in the implementation's place
            end(kwargs, value, None)
            return value

        return HookImpl(plugin, monitored, argnames, False)

    # -- the one loop -------------------------------------------------------------------------

    async def _dispatch(
        self,
        plan: _Plan,
        mode: int,
        kwargs: dict[str, Any],
        *,
        key: str = "",
        step: Step | None = None,
        bind: Bind | None = None,
        on_failure: Callable[[LashError], None] | None = None,
        sync: bool = False,
        calls: tuple[_Call, ...] | None = None,
        results: list[Tagged] | None = None,
    ) -> Any:
        """Call ``plan``'s implementations in order; what happens to each result depends on
        ``mode``. ``kwargs`` is this dispatch's own dict (chains and folds change it).
        ``calls`` and ``results``: what is left to call, and what was collected, after the fast
        path (:class:`_FastPath`: its ``run``).

        Results are checked against the hook's contract before anything uses them; an
        implementation's failure (a wrong result included) is raised attributed to its plugin
        and hook, or handed to ``on_failure`` (broadcasts, inspection) and the loop goes on.
        """
        hook = plan.hook
        accepted = plan.accepted
        timeout = self.hook_timeout
        if results is None:
            results = []
        caller = Caller(plan.caller)
        token = CALLER.set(caller)
        try:
            call_kwargs = kwargs
            for plugin, function, arguments, spread, is_async in (
                plan.calls if calls is None else calls
            ):
                if bind is not None:
                    call_kwargs = {**kwargs, **bind(plugin)}
                # Outside the try: an argument the kernel failed to pass is a kernel bug.
                args = arguments(call_kwargs)
                caller.plugin = plugin
                try:
                    value = function(*args) if spread else function(args)
                    # A coroutine is never None: await before testing (also a sync function
                    # that returns one, e.g. a decorated async implementation).
                    if is_async or (
                        _AWAITABLE_TYPES.get(type(value), True) and _is_awaitable(value)
                    ):
                        if sync:
                            _refuse_awaitable(hook, plugin, value)
                        if timeout is None:
                            value = await value
                        else:
                            value = await self._bounded(hook, plugin, value, timeout)
                    if value is not None and value.__class__ not in accepted:
                        value = plan.check(plugin, value)
                except Exception as exc:
                    if on_failure is None:
                        raise_plugin_error(hook, plugin, exc)
                    on_failure(plugin_error(hook, plugin, exc))
                    continue
                if value is None:
                    continue
                if mode is _COLLECT:
                    results.append((plugin, value))
                elif mode is _CHAIN:
                    call_kwargs[key] = value
                elif mode is _FIRST:
                    return (plugin, value)
                elif mode is _FOLD:
                    assert step is not None
                    if step(plugin, value, call_kwargs):
                        break
            if mode is _CHAIN:
                return call_kwargs[key]
            if mode is _FIRST:
                return None
            return results
        finally:
            CALLER.reset(token)

    @staticmethod
    async def _bounded(hook: str, plugin: str, awaitable: Any, timeout: float) -> Any:
        import asyncio  # the dispatcher is built before any loop runs; see lash._tools.tool

        try:
            async with asyncio.timeout(timeout) as scope:
                return await awaitable
        except TimeoutError:
            if not scope.expired():
                raise  # the plugin's own TimeoutError, attributed like any other failure
            raise PluginError(
                f"plugin {plugin!r} did not return from hook {hook!r} within {timeout:g} s "
                "(the core's hook_timeout); it was cancelled",
                plugin=plugin,
                hook=hook,
            ) from None

    def _start(self, hook: str, shape: str) -> _Plan:
        plan = self._plans.get(hook) or self._plan(hook)
        if plan.shape != shape:
            raise AssertionError(
                f"kernel bug: hook {hook!r} is declared {plan.shape!r} in lash.hookspecs.SHAPES "
                f"but dispatched as {shape!r}"
            )
        return plan

    # -- the shapes ---------------------------------------------------------------------------

    def collect_sync(
        self,
        hook: str,
        /,
        *,
        bind: Bind | None = None,
        on_failure: Callable[[LashError], None] | None = None,
        **kwargs: Any,
    ) -> list[Tagged]:
        """Collect from synchronous implementations (registration and command hooks): the same
        loop, driven without an event loop; an implementation returning an awaitable is an
        error. ``bind(plugin)`` supplies per-plugin arguments (its options, its registrar)."""
        plan = self._plans.get(hook) or self._plan(hook)
        if plan.shape not in ("collect", "exclusive"):  # register_protocol is exclusive
            self._start(hook, "collect")
        results: list[Tagged] = _run_sync(
            self._dispatch(plan, _COLLECT, kwargs, bind=bind, on_failure=on_failure, sync=True)
        )
        return results

    async def collect(
        self, hook: str, /, *, bind: Bind | None = None, **kwargs: Any
    ) -> list[Tagged]:
        """Every implementation's non-``None`` result, tagged with its plugin, in order."""
        plan = self._plans.get(hook) or self._plan(hook)
        if plan.shape != "collect":
            self._start(hook, "collect")
        if not plan.calls:  # nothing to call: no coroutine, no caller record (most turn hooks)
            return []
        if bind is not None:
            result: list[Tagged] = await self._dispatch(plan, _COLLECT, kwargs, bind=bind)
            return result
        results: list[Tagged] = []
        fast = plan.fast  # (see _FastPath; None: an implementation is async)
        calls = fast.run(kwargs, _COLLECT, results, "") if fast is not None else plan.calls
        if calls:
            await self._dispatch(plan, _COLLECT, kwargs, calls=calls, results=results)
        return results

    async def fold(self, hook: str, /, step: Step, **kwargs: Any) -> dict[str, Any]:
        """Fold a collect or chain hook's results in order with ``step(plugin, value, kwargs)``,
        which may change the arguments the next implementation gets and returns True to stop.
        Returns the arguments as the fold left them (the tool-call and config hooks read their
        folded value from there)."""
        plan = self._plans.get(hook) or self._plan(hook)
        if plan.shape not in ("collect", "chain"):
            self._start(hook, "collect or chain")
        if plan.calls:  # (kwargs is this call's own dict: the fold may change it)
            fast = plan.fast
            calls = fast.run(kwargs, _FOLD, [], "") if fast is not None else plan.calls
            if calls:
                await self._dispatch(plan, _FOLD, kwargs, step=step, calls=calls)
        return kwargs

    async def chain(self, hook: str, /, key: str, value: Any, **kwargs: Any) -> Any:
        """Pass ``value`` (as argument ``key``) through every implementation in order; a
        non-``None`` result replaces it for the next one. Returns the final value."""
        plan = self._plans.get(hook) or self._plan(hook)
        if plan.shape != "chain":
            self._start(hook, "chain")
        if not plan.calls:
            return value
        kwargs[key] = value
        fast = plan.fast
        calls = fast.run(kwargs, _CHAIN, [], key) if fast is not None else plan.calls
        if not calls:
            return kwargs[key]
        return await self._dispatch(plan, _CHAIN, kwargs, key=key, calls=calls)

    async def first(self, hook: str, /, **kwargs: Any) -> Tagged | None:
        """Call implementations in order until one returns non-``None``; return it, tagged."""
        plan = self._plans.get(hook) or self._plan(hook)
        if plan.shape != "first":
            self._start(hook, "first")
        if not plan.calls:
            return None
        fast = plan.fast
        calls = fast.run(kwargs, _FIRST, [], "") if fast is not None else plan.calls
        if not calls:
            return None
        result: Tagged | None = await self._dispatch(plan, _FIRST, kwargs, calls=calls)
        return result

    async def exclusive(self, hook: str, /, **kwargs: Any) -> Tagged | None:
        """Call the one implementation of an exclusive hook (``None`` when there is none or it
        returned ``None``)."""
        plan = self._plans.get(hook) or self._plan(hook)
        if plan.shape != "exclusive":
            self._start(hook, "exclusive")
        if len(plan.impls) > 1:
            self.exclusive_impl(hook)  # raises, naming both plugins
        if not plan.calls:
            return None
        result: Tagged | None = await self._dispatch(plan, _FIRST, kwargs)
        return result

    async def broadcast(self, hook: str, /, **kwargs: Any) -> list[LashError]:
        """Call every implementation; failures are reported and isolated, never raised.

        Returns the errors (each naming plugin and hook) after passing them to ``on_error``.
        """
        plan = self._plans.get(hook) or self._plan(hook)
        if plan.shape != "broadcast":
            self._start(hook, "broadcast")
        errors: list[LashError] = []
        if not plan.calls:
            return errors

        fast = plan.fast
        calls = fast.run(kwargs, _BROADCAST, [], "") if fast is not None else plan.calls
        if not calls:
            return errors

        def isolate(error: LashError) -> None:
            errors.append(self.report(error))

        await self._dispatch(plan, _BROADCAST, kwargs, on_failure=isolate, calls=calls)
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


def _run_sync(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Drive a dispatch that cannot suspend (``sync=True`` refuses awaitables) to its end."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise AssertionError("kernel bug: a synchronous dispatch suspended")
