"""Test helpers for plugin authors, registered as the ``lash`` pytest plugin (``pytest11``).

Importing this module has no side effects on test suites that do not use its helpers: it defines
no fixtures that run on their own and no hooks.

**Store conformance.** A store backend proves it honours the :class:`lash.Store` contract with
one call::

    import lash.testing

    async def test_my_store_conforms(tmp_path):
        await lash.testing.check_store(lambda: MyStore(f"mine://{tmp_path}/x"))

or with one test case per check::

    @pytest.mark.parametrize("check", lash.testing.STORE_CHECKS)
    async def test_my_store(check, tmp_path):
        await lash.testing.run_store_check(check, lambda: MyStore(f"mine://{tmp_path}/x"))

Every check gets a fresh store from the factory and closes it afterwards. Checks use random
session ids and ignore sessions they did not create, so a factory may hand out stores that share
one database.
"""

from __future__ import annotations

from lash._conformance import (
    CHECKS,
    STORE_CHECKS,
    ConformanceReport,
    StoreCheck,
    StoreConformanceError,
    StoreFactory,
    check_store,
    run_store_check,
)

__all__ = [
    "CHECKS",
    "STORE_CHECKS",
    "ConformanceReport",
    "StoreCheck",
    "StoreConformanceError",
    "StoreFactory",
    "check_store",
    "run_store_check",
]
