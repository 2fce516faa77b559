"""The public face for store authors: the :class:`Store` contract, its records, the lease rules
every backend applies, and the conformance suite that holds a backend to them.

A store backend is a plugin that registers a URL scheme (``register_stores``) and implements
:class:`Store`. It applies leases with :func:`take_lease` and :func:`check_lease` (written once,
here, so every backend fences writers alike), persists what a :class:`CommitDelta` carries
atomically, and proves it with :func:`check_store` (also in :mod:`lash.testing`)::

    import lash.store

    async def test_my_store_conforms(tmp_path):
        await lash.store.check_store(lambda: MyStore(f"mine://{tmp_path}/x"))

Graph nodes and other records are encoded for storage with :func:`to_data` and read back with
:func:`from_data` (the same converter the kernel uses).
"""

from lash._contract.serialization import from_data, to_data
from lash._store.ids import MAX_SESSION_ID_LENGTH, check_session_id
from lash._store.protocol import (
    CommitDelta,
    Lease,
    MemoryStore,
    SessionRecord,
    SessionSummary,
    Store,
    check_lease,
    take_lease,
)
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

__all__ = [
    "CHECKS",
    "MAX_SESSION_ID_LENGTH",
    "STORE_CHECKS",
    "CommitDelta",
    "ConformanceReport",
    "Lease",
    "MemoryStore",
    "SessionRecord",
    "SessionSummary",
    "Store",
    "StoreCheck",
    "StoreConformanceError",
    "StoreFactory",
    "check_lease",
    "check_session_id",
    "check_store",
    "from_data",
    "run_store_check",
    "take_lease",
    "to_data",
]
