"""The ``lash_core`` fixture's factory: cores with exactly the plugins a test names.

A test core loads the plugins it is given plus a few named builtins, and nothing else: autoload is
off, every other builtin is disabled (the set is read from the installed entry points, so a new
builtin is disabled without a change here), ``LASH_*`` environment variables are ignored, and a
plugin that fails to load fails the test (strict mode).

Closing is the delicate part. A core's store and provider clients belong to the event loop they
were opened in, and a sync fixture's teardown runs after that loop is gone: pytest's async
plugins (anyio, pytest-asyncio) and :func:`asyncio.run` close the loop when the test coroutine
returns. So a core built while a loop runs gets a *keeper* task in that loop, which waits forever;
when the loop shuts down it cancels every pending task (``asyncio.run`` and
:class:`asyncio.Runner` both do), and the keeper closes the core then, in the right loop. Cores
built outside a loop (sync tests), and any the keeper could not close, are closed at teardown in a
fresh loop.
"""

from __future__ import annotations

import asyncio
import difflib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

from lash._kernel.core import LashCore
from lash._plugins.hostconfig import HostConfig
from lash._plugins.loading import discover_entry_points
from lash._testing.script import ResponseLike, Script

__all__ = ["DEFAULT_BUILTINS", "LashCoreFactory", "builtin_plugin_names"]

#: The builtins a test core loads unless told otherwise: the turn protocol and the stores.
DEFAULT_BUILTINS: tuple[str, ...] = ("standard", "stores")


def builtin_plugin_names() -> tuple[str, ...]:
    """The names of the builtin plugins: the ``lash.plugins`` entry points of distribution
    ``lash-sdk``, sorted (read from the installed metadata; nothing is imported)."""
    return tuple(sorted(c.name for c in discover_entry_points() if c.builtin))


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


@attrs.define(eq=False)
class _Built:
    """A core the factory built, and how it gets closed."""

    core: LashCore
    loop: asyncio.AbstractEventLoop | None
    keeper: asyncio.Task[None] | None = None
    closed: bool = False
    error: Exception | None = None

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            await self.core.aclose()
        except Exception as exc:  # reported at teardown, as the test's error
            self.error = exc


async def _close_at_loop_shutdown(built: _Built) -> None:
    # Waits until the loop shuts down and cancels it, then closes the core in that loop.
    try:
        await asyncio.get_running_loop().create_future()
    finally:
        await built.close()


class LashCoreFactory:
    """What the :func:`lash_core <lash.testing.lash_core>` fixture gives a test: call it to build
    a :class:`lash.LashCore`; every core it built is closed when the test ends.

    ``tmp_path`` returns the test's temporary directory (asked for only when a core uses
    ``store="sqlite"``).
    """

    __module__ = "lash.testing"

    def __init__(self, tmp_path: Callable[[], Path]) -> None:
        self._tmp_path = tmp_path
        self._built: list[_Built] = []

    def __call__(
        self,
        *plugins: object | str,
        script: Script | Iterable[ResponseLike] | str | None = None,
        provider: str | None = None,
        store: str = "memory://",
        options: Mapping[str, Mapping[str, Any]] | None = None,
        builtins: Iterable[str] = DEFAULT_BUILTINS,
        **kw: Any,
    ) -> LashCore:
        """Build a core with exactly ``plugins`` plus the ``builtins`` named, in that order.

        :param plugins: plugin objects (modules, classes, instances) or installed entry-point
            names, in dispatch order.
        :param script: the model: a :class:`~lash.testing.Script`, or responses to build one
            from (a list, or one string); its provider becomes the core's ``provider``.
        :param provider: the provider name, when it is not the script's.
        :param store: a store URL; ``"sqlite"`` is short for ``sqlite:///<tmp_path>/lash.db``
            (one database per test, shared by every core of the test that asks for it).
        :param options: host-level plugin options, by plugin name (``[options.<name>]``).
        :param builtins: the builtin plugins to load; every other builtin is disabled.
        :param kw: any other :class:`lash.LashCore` argument (``model=``, ``strict=False``,
            ``on_error=``, ``disable=``...). ``strict`` defaults to true, so a plugin that fails
            to load fails the test; ``config`` defaults to an empty :class:`lash.HostConfig`,
            so ``LASH_*`` environment variables do not change what a test loads.
        :raises ValueError: ``builtins`` names a plugin that is not a builtin.
        """
        wanted = (builtins,) if isinstance(builtins, str) else tuple(builtins)
        every = builtin_plugin_names()
        unknown = [name for name in wanted if name not in every]
        if unknown:
            hints = "".join(
                f" (did you mean {close[0]!r} for {name!r}?)"
                for name in unknown
                if (close := difflib.get_close_matches(name, every, n=1))
            )
            raise ValueError(
                f"lash_core: {', '.join(map(repr, unknown))} "
                f"{'is not a builtin' if len(unknown) == 1 else 'are not builtins'}; "
                f"the builtins are {', '.join(every)}{hints}"
            )
        model = script
        if model is not None and not isinstance(model, Script):
            model = Script([model] if isinstance(model, str) else list(model))
        listed: list[object | str] = [*plugins, *(n for n in wanted if n not in plugins)]
        if model is not None and not any(p is model for p in plugins):
            listed.append(model)
        named = {p for p in plugins if isinstance(p, str)}
        extra = kw.pop("disable", None) or ()
        disable = [n for n in every if n not in wanted and n not in named]
        disable += [extra] if isinstance(extra, str) else list(extra)
        if store == "sqlite":
            store = f"sqlite:///{self._tmp_path()}/lash.db"
        if provider is None and model is not None:
            provider = model.name
        kw.setdefault("config", HostConfig())
        kw.setdefault("strict", True)
        core = LashCore(
            listed,
            autoload=False,
            disable=disable,
            store=store,
            provider=provider,
            options=options,
            **kw,
        )
        built = _Built(core, _running_loop())
        if built.loop is not None:
            built.keeper = built.loop.create_task(
                _close_at_loop_shutdown(built), name=f"lash.testing: close {core!r}"
            )
        self._built.append(built)
        return core

    @property
    def cores(self) -> list[LashCore]:
        """The cores built so far, oldest first."""
        return [built.core for built in self._built]

    async def aclose(self) -> None:
        """Close every core built so far, now, in the running loop (cores are closed after the
        test anyway; call this to inspect what closing leaves behind, such as a database file).

        :raises Exception: the first error a core raised while closing.
        """
        for built in reversed(self._built):
            if built.keeper is not None and not built.keeper.done():
                built.keeper.cancel()
            await built.close()
        self._raise_errors()

    def close_all(self) -> None:
        """Close every core not closed yet (the fixture's teardown; outside any running loop).

        :raises Exception: the first error a core raised while closing.
        :raises RuntimeError: when called while an event loop runs (await :meth:`aclose`).
        """
        if _running_loop() is not None:
            raise RuntimeError(
                "LashCoreFactory.close_all() cannot run inside an event loop; "
                "`await lash_core.aclose()` instead"
            )
        for built in reversed(self._built):
            if built.closed:
                continue
            loop, keeper = built.loop, built.keeper
            if keeper is not None and not keeper.done() and loop is not None:
                if not loop.is_closed():
                    # The loop outlives the test (an async fixture still holds it): close the
                    # core in it, through its keeper.
                    keeper.cancel()
                    loop.run_until_complete(asyncio.wait([keeper]))
                    continue
            # Built outside a loop, or its loop closed without cancelling its tasks.
            asyncio.run(built.close())
        self._raise_errors()

    def _raise_errors(self) -> None:
        errors = [built.error for built in self._built if built.error is not None]
        for built in self._built:
            built.error = None
        if len(errors) == 1:
            raise errors[0]
        if errors:
            raise ExceptionGroup("lash_core: closing cores failed", errors)

    def __repr__(self) -> str:
        return f"<LashCoreFactory cores={len(self._built)}>"
