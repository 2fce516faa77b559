"""The public face for store authors: the :class:`Store` contract, its records, the lease rules
every backend applies, and the conformance suite that holds a backend to them.

A store backend is a plugin that registers a URL scheme (``register_stores``) and implements
:class:`Store`. It applies leases with :func:`take_lease` and :func:`check_lease` (written once,
here, so every backend fences writers alike) and the process rules (:func:`claimed_by`,
:func:`on_expiry`, :func:`settled_on_expiry`...), persists what a :class:`CommitDelta` carries
atomically, and proves it with :func:`check_store` (also in :mod:`lash.testing`)::

    import lash.store

    async def test_my_store_conforms(tmp_path):
        await lash.store.check_store(lambda: MyStore(f"mine://{tmp_path}/x"))

Graph nodes and other records are encoded for storage with :func:`to_data` and read back with
:func:`from_data` (the same converter the kernel uses); :func:`node_json` writes a node's JSON
text directly, and :func:`nodes_from_json` reads a history of them back, for stores that keep
nodes as text (:func:`node_body_json` and :func:`nodes_from_rows` for stores that keep a node's
id, tag, frame and turn in columns of their own, and the rest as text, :func:`node_row_json`
for that rest as a JSON array, quicker to read back; :func:`nodes_on_demand` reads such rows as
:class:`StoredNodes`, each node built when first read).
"""

from lash._contract.graph import StoredNodes
from lash._contract.serialization import (
    from_data,
    node_body_json,
    node_json,
    node_row_json,
    nodes_from_json,
    nodes_from_rows,
    nodes_on_demand,
    to_data,
)
from lash._contract.turn_types import PROCESS_TERMINAL, ProcessStatus
from lash._store.ids import MAX_SESSION_ID_LENGTH, check_session_id
from lash._store.leases import (
    EVENTS_KEPT,
    EVENTS_MAX_AGE,
    check_lease,
    command_event,
    effective_state,
    input_event,
    lease_is_live,
    same_input,
    take_lease,
)
from lash._store.memory import MemoryStore
from lash._store.process_rules import (
    Expiry,
    cancel_record,
    check_claim,
    claim_expired,
    claimed_by,
    finish_record,
    new_process,
    on_expiry,
    process_event,
    same_process,
    settle_record,
    settled_on_expiry,
)
from lash._store.protocol import Store
from lash._store.records import (
    CancelOutcome,
    CancelReceipt,
    CancelRequest,
    CommandDraft,
    CommitDelta,
    EventDraft,
    EventPage,
    Ingress,
    InputCancellation,
    InputDraft,
    InputState,
    Lease,
    PendingInput,
    ProcessDraft,
    QueuedCommand,
    SessionRecord,
    SessionSummary,
    StoredEvent,
    TurnRecord,
    WorkPoll,
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
    "EVENTS_KEPT",
    "EVENTS_MAX_AGE",
    "MAX_SESSION_ID_LENGTH",
    "PROCESS_TERMINAL",
    "STORE_CHECKS",
    "CancelOutcome",
    "CancelReceipt",
    "CancelRequest",
    "CommandDraft",
    "CommitDelta",
    "ConformanceReport",
    "EventDraft",
    "EventPage",
    "Expiry",
    "Ingress",
    "InputCancellation",
    "InputDraft",
    "InputState",
    "Lease",
    "MemoryStore",
    "PendingInput",
    "ProcessDraft",
    "ProcessStatus",
    "QueuedCommand",
    "SessionRecord",
    "SessionSummary",
    "Store",
    "StoreCheck",
    "StoreConformanceError",
    "StoreFactory",
    "StoredEvent",
    "StoredNodes",
    "TurnRecord",
    "WorkPoll",
    "cancel_record",
    "check_claim",
    "check_lease",
    "check_session_id",
    "check_store",
    "claim_expired",
    "claimed_by",
    "command_event",
    "effective_state",
    "finish_record",
    "from_data",
    "input_event",
    "lease_is_live",
    "new_process",
    "node_body_json",
    "node_json",
    "node_row_json",
    "nodes_from_json",
    "nodes_from_rows",
    "nodes_on_demand",
    "on_expiry",
    "process_event",
    "run_store_check",
    "same_input",
    "same_process",
    "settle_record",
    "settled_on_expiry",
    "take_lease",
    "to_data",
]
