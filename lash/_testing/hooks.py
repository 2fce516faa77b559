"""Recording hook calls: :func:`record_hooks` and :class:`HookRecorder`.

Every hook call of a core goes through its dispatcher, ``core.hooks`` (a
:class:`lash.HookDispatcher`), and every call path (the five dispatch shapes, and the call sites
that fold results themselves) first asks :meth:`lash.HookDispatcher.impls` for the ordered
implementations. A recorder shadows that method on the one dispatcher instance: the shadow returns
the same :class:`lash.HookImpl` tuples with each function wrapped. The wrapper records the call,
calls the original and records what it returned (awaited, for async implementations) or raised.
Order, dispatch shapes, error attribution and async bridging stay the dispatcher's own, so the
recorder sees exactly what each plugin was given and what it answered, before the dispatcher
folds the answers. Stopping removes the shadow.

A recorder plugin would see less: registered ``tryfirst`` it sees the arguments of a call, but
not the other plugins' results or exceptions, and it would change the composition under test.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any

import attrs

from lash._contract.annotations import resolve_here
from lash._kernel.core import LashCore
from lash._plugins.dispatch import HookImpl
from lash.hookspecs import ASYNC_ALLOWED

__all__ = ["HookCall", "HookRecorder", "record_hooks"]

_MISSING: Any = object()


@attrs.define
class HookCall:
    """One call of one plugin's implementation of a hook.

    ``arguments`` are the ones the implementation accepts (by name). Once the call is over,
    ``done`` is true and either ``result`` holds what it returned (awaited, when async) or
    ``exception`` what it raised (before the dispatcher wraps it in a :class:`lash.PluginError`).
    """

    hook: str
    plugin: str
    arguments: dict[str, Any]
    result: Any = None
    exception: BaseException | None = None
    done: bool = False

    __module__ = "lash.testing"

    @property
    def raised(self) -> bool:
        """Whether the implementation raised."""
        return self.exception is not None


class HookRecorder:
    """Records every hook call made through one core's dispatcher, in call order.

    Build it with :func:`record_hooks` (or the :func:`hook_recorder <lash.testing.hook_recorder>`
    fixture). Registration hooks run while the core is built, before any recorder can start: they
    are never recorded (``core.registry`` holds what plugins registered). A hook no plugin
    implements records nothing: calls are recorded per implementation.
    """

    __module__ = "lash.testing"

    def __init__(self, core: LashCore) -> None:
        #: The core whose hook calls are recorded.
        self.core = core
        self._calls: list[HookCall] = []
        self._active = False
        self._previous: Any = _MISSING
        self._shadow: _Shadow | None = None
        self._wrapped: dict[str, tuple[tuple[HookImpl, ...], tuple[HookImpl, ...]]] = {}

    # -- recording ----------------------------------------------------------------------------

    @property
    def active(self) -> bool:
        """Whether calls are being recorded."""
        return self._active

    def start(self) -> HookRecorder:
        """Start recording (again); returns the recorder."""
        if self._active:
            return self
        dispatcher = self.core.hooks
        self._previous = vars(dispatcher).get("impls", _MISSING)
        # Whatever answers `impls` now (the method, or an earlier recorder's shadow) is wrapped;
        # an instance attribute shadows the method for this one dispatcher only.
        self._shadow = _Shadow(self, dispatcher.impls)
        setattr(dispatcher, "impls", self._shadow)  # noqa: B010 (mypy refuses assigning a method)
        self._active = True
        return self

    def stop(self) -> None:
        """Stop recording; the calls recorded so far stay."""
        if not self._active:
            return
        self._active = False
        # Unwind every stopped recorder's shadow from the top. A stopped recorder below a running
        # one stays in place, passing calls through, until that one stops too.
        dispatcher = self.core.hooks
        top = vars(dispatcher).get("impls")
        while isinstance(top, _Shadow) and not top.recorder.active:
            previous = top.recorder._previous
            if previous is _MISSING:
                delattr(dispatcher, "impls")
                break
            setattr(dispatcher, "impls", previous)  # noqa: B010 (as in start)
            top = previous

    def _impls(self, hook: str, found: tuple[HookImpl, ...]) -> tuple[HookImpl, ...]:
        """``found`` with every function wrapped (cached per hook and tuple)."""
        cached = self._wrapped.get(hook)
        if cached is None or cached[0] is not found:
            cached = (found, tuple(self._wrap(hook, impl) for impl in found))
            self._wrapped[hook] = cached
        return cached[1]

    def __enter__(self) -> HookRecorder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _wrap(self, hook: str, impl: HookImpl) -> HookImpl:
        function, argnames, plugin = impl.function, impl.argnames, impl.plugin
        calls = self._calls

        def begin(args: Sequence[Any], kwargs: Mapping[str, Any]) -> HookCall:
            call = HookCall(hook, plugin, {**dict(zip(argnames, args, strict=False)), **kwargs})
            calls.append(call)
            return call

        if impl.is_async:

            @functools.wraps(function)
            async def recorded_async(*args: Any, **kwargs: Any) -> Any:
                call = begin(args, kwargs)
                return await _settle(call, function(*args, **kwargs))

            return impl._replace(function=recorded_async)

        may_await = hook in ASYNC_ALLOWED

        @functools.wraps(function)
        def recorded(*args: Any, **kwargs: Any) -> Any:
            call = begin(args, kwargs)
            try:
                value = function(*args, **kwargs)
            except BaseException as exc:
                call.exception, call.done = exc, True
                raise
            if may_await and inspect.isawaitable(value):
                # A sync function handing back a coroutine: the dispatcher awaits this instead.
                return _settle(call, value)
            call.result, call.done = value, True
            return value

        return impl._replace(function=recorded)

    # -- reading ------------------------------------------------------------------------------

    def calls(self, hook: str | None = None, *, plugin: str | None = None) -> list[HookCall]:
        """The recorded calls, in call order: all, or those of ``hook`` and/or ``plugin``."""
        return [
            c
            for c in self._calls
            if (hook is None or c.hook == hook) and (plugin is None or c.plugin == plugin)
        ]

    def hook_names(self, *, plugin: str | None = None) -> list[str]:
        """The hook of each recorded call, in call order (one entry per implementation called:
        a hook two plugins implement appears twice per dispatch, unless ``plugin`` is given)."""
        return [c.hook for c in self.calls(plugin=plugin)]

    def results(self, hook: str, *, plugin: str | None = None) -> list[Any]:
        """What the implementations of ``hook`` returned, in call order (``None`` included;
        calls that raised or are still running left out)."""
        return [c.result for c in self.calls(hook, plugin=plugin) if c.done and not c.raised]

    def clear(self) -> None:
        """Forget the calls recorded so far."""
        self._calls.clear()

    def __iter__(self) -> Iterator[HookCall]:
        return iter(list(self._calls))

    def __len__(self) -> int:
        return len(self._calls)

    def __repr__(self) -> str:
        state = "recording" if self._active else "stopped"
        return f"<HookRecorder {state} calls={len(self._calls)}>"


class _Shadow:
    """What ``dispatcher.impls`` is while a recorder runs: the wrapped implementations."""

    def __init__(self, recorder: HookRecorder, original: Callable[[str], tuple[HookImpl, ...]]):
        self.recorder = recorder
        self.original = original

    def __call__(self, hook: str) -> tuple[HookImpl, ...]:
        found = self.original(hook)
        if not self.recorder.active:
            return found  # stopped while a later recorder still wraps this one
        return self.recorder._impls(hook, found)


async def _settle(call: HookCall, awaitable: Awaitable[Any]) -> Any:
    try:
        value = await awaitable
    except BaseException as exc:
        call.exception, call.done = exc, True
        raise
    call.result, call.done = value, True
    return value


def record_hooks(core: LashCore) -> HookRecorder:
    """Start recording every hook call made through ``core``'s dispatcher.

    The recorder shadows :meth:`lash.HookDispatcher.impls` on ``core.hooks`` (that instance
    only), handing the dispatcher its own implementations with each function wrapped: order,
    dispatch shapes and error handling stay the dispatcher's, and each call's arguments and
    result (or exception) are recorded before the dispatcher folds the results. Use it as a
    context manager, which stops recording on exit, or keep the recorder::

        with lash.testing.record_hooks(core) as recorder:
            await session.turn("hi").run()
        (call,) = recorder.calls("before_turn", plugin="hello")
    """
    return HookRecorder(core).start()


resolve_here(globals())
