"""Recording hook calls: :func:`record_hooks` and :class:`HookRecorder`.

A recorder is a hook monitor (:meth:`lash.LashCore.add_hook_monitor`): the dispatcher tells it
before and after every implementation it calls, with the arguments that implementation was given
and what it returned (awaited, for async implementations) or raised, before the dispatcher checks
and folds the answers. Order, dispatch shapes, error attribution and async bridging stay the
dispatcher's own, so the recorder sees exactly what each plugin was given and what it answered.
Stopping removes the monitor.

A recorder plugin would see less: registered ``tryfirst`` it sees the arguments of a call, but
not the other plugins' results or exceptions, and it would change the composition under test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import attrs

from lash._contract.annotations import resolve_here
from lash._kernel.core import LashCore

__all__ = ["HookCall", "HookRecorder", "record_hooks"]


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
        # The call each in-flight implementation belongs to, by its arguments dict (the monitor
        # is handed the same dict before and after one call; calls may interleave).
        self._open: dict[int, HookCall] = {}
        self._undo: Callable[[], None] | None = None

    # -- recording ----------------------------------------------------------------------------

    @property
    def active(self) -> bool:
        """Whether calls are being recorded."""
        return self._undo is not None

    def start(self) -> HookRecorder:
        """Start recording (again); returns the recorder."""
        if self._undo is None:
            self._undo = self.core.add_hook_monitor(self._before, self._after)
        return self

    def stop(self) -> None:
        """Stop recording; the calls recorded so far stay."""
        undo, self._undo = self._undo, None
        if undo is not None:
            undo()

    def _before(self, hook: str, plugin: str, kwargs: Mapping[str, Any]) -> None:
        call = HookCall(hook, plugin, dict(kwargs))
        self._calls.append(call)
        self._open[id(kwargs)] = call

    def _after(
        self,
        hook: str,
        plugin: str,
        kwargs: Mapping[str, Any],
        result: Any,
        exception: BaseException | None,
    ) -> None:
        call = self._open.pop(id(kwargs), None)
        if call is None:
            return  # started before this recorder did
        call.result, call.exception, call.done = result, exception, True

    def __enter__(self) -> HookRecorder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

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
        state = "recording" if self.active else "stopped"
        return f"<HookRecorder {state} calls={len(self._calls)}>"


def record_hooks(core: LashCore) -> HookRecorder:
    """Start recording every hook call made through ``core``'s dispatcher.

    The recorder is a hook monitor (:meth:`lash.LashCore.add_hook_monitor`): order, dispatch
    shapes and error handling stay the dispatcher's, and each call's arguments and result (or
    exception) are recorded before the dispatcher checks and folds the results. Use it as a
    context manager, which stops recording on exit, or keep the recorder::

        with lash.testing.record_hooks(core) as recorder:
            await session.turn("hi").run()
        (call,) = recorder.calls("before_turn", plugin="hello")
    """
    return HookRecorder(core).start()


resolve_here(globals())
