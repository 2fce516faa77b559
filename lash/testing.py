"""Test helpers for plugin authors, registered as the ``lash`` pytest plugin (``pytest11``).

Installing lash makes two fixtures available to every test suite; nothing runs unless a test asks
for it: this module defines no autouse fixtures and no pytest hooks, so suites that do not use
lash see no difference.

**Plugins.** The ``lash_core`` fixture builds cores holding exactly the plugins under test and
closes them after the test; :class:`Script` (or :func:`script`) is a scripted model;
:func:`run_tool` runs one tool outside a session; :func:`record_hooks` (or the ``hook_recorder``
fixture) records every hook call; :func:`check_plugin` validates a plugin the way hosts will::

    from lash.testing import Script, check_plugin, run_tool

    import hello

    def test_hello_is_a_valid_plugin():
        check_plugin(hello).assert_ok()

    async def test_greets(lash_core):
        core = lash_core(hello, script=[Script.tool_call("greet", name="Ada"), "Done."])
        async with core.session("s") as session:
            result = await session.turn("Greet Ada").run()
        assert result.tool_calls[0].result.content == "Hello, Ada!"

**Store conformance.** A store backend proves it honours the :class:`lash.store.Store` contract with
one call::

    import lash.testing

    async def test_my_store_conforms(tmp_path):
        await lash.testing.check_store(lambda: MyStore(f"mine://{tmp_path}/x"))

or with one test case per check::

    @pytest.mark.parametrize("check", lash.testing.STORE_CHECKS)
    async def test_my_store(check, tmp_path):
        await lash.testing.run_store_check(check, lambda: MyStore(f"mine://{tmp_path}/x"))

Every check gets a fresh store from the factory and closes it afterwards. Checks use random
session ids, process kinds and keys, and ignore sessions and processes they did not create, so a
factory may hand out stores that share one database.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from lash._kernel.core import LashCore
from lash._testing.check import PluginCheck, check_plugin
from lash._testing.conformance import (
    CHECKS,
    STORE_CHECKS,
    ConformanceReport,
    StoreCheck,
    StoreConformanceError,
    StoreFactory,
    check_store,
    run_store_check,
)
from lash._testing.cores import LashCoreFactory
from lash._testing.hooks import HookCall, HookRecorder, record_hooks
from lash._testing.script import Script, script
from lash._testing.tools import StubSession, run_tool, run_tool_sync

__all__ = [
    "CHECKS",
    "STORE_CHECKS",
    "ConformanceReport",
    "HookCall",
    "HookRecorder",
    "LashCoreFactory",
    "PluginCheck",
    "Script",
    "StoreCheck",
    "StoreConformanceError",
    "StoreFactory",
    "StubSession",
    "check_plugin",
    "check_store",
    "record_hooks",
    "run_store_check",
    "run_tool",
    "run_tool_sync",
    "script",
]


@pytest.fixture
def lash_core(request: pytest.FixtureRequest) -> Iterator[LashCoreFactory]:
    """A factory of cores for one test: ``lash_core(*plugins, script=None, provider=None,
    store="memory://", options=None, builtins=("standard", "stores"), **kw)``.

    Each call builds a :class:`lash.LashCore` holding exactly ``plugins`` and the named builtins
    (see :meth:`LashCoreFactory.__call__`); every core built is closed when the test ends.
    """
    factory = LashCoreFactory(lambda: request.getfixturevalue("tmp_path"))
    yield factory
    factory.close_all()


@pytest.fixture
def hook_recorder() -> Iterator[Callable[[LashCore], HookRecorder]]:
    """``hook_recorder(core)`` starts a :class:`HookRecorder` on ``core`` (as
    :func:`record_hooks` does); recorders still running stop when the test ends."""
    started: list[HookRecorder] = []

    def start(core: LashCore) -> HookRecorder:
        recorder = record_hooks(core)
        started.append(recorder)
        return recorder

    yield start
    for recorder in reversed(started):
        recorder.stop()
