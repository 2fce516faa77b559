"""The rules every store applies the same way: who gets a lease, whether a lease may commit,
whether an input claim is live, the events the mailbox logs, and how long events are kept.

Written once here (public in ``lash.store``), so every backend fences writers alike and the
conformance suite can hold each backend to them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import attrs

from lash._contract.serialization import to_data
from lash._contract.slots import maker
from lash._store.records import (
    EventDraft,
    InputDraft,
    InputState,
    Lease,
    PendingInput,
    QueuedCommand,
)
from lash.errors import LeaseLost, SessionBusy

#: The replay window a store keeps by default (a backend may let its URL or constructor set
#: other bounds): each session's newest ``EVENTS_KEPT`` events, none older than
#: ``EVENTS_MAX_AGE``. An observer resumes within it; a cursor older than it gets a gap.
EVENTS_KEPT = 10_000
#: How long a store keeps an event by default, in seconds: 7 days (see ``EVENTS_KEPT``).
EVENTS_MAX_AGE = 7 * 24 * 3600.0


#: A new lease, by its maker (the class's ``__init__`` as attribute stores): one a turn.
_new_lease = maker(Lease)


def check_lease(current: Lease | None, lease: Lease) -> None:
    """Raise :class:`LeaseLost` unless ``lease`` is the session's current lease.

    A released lease (kept with ``expires_at == 0`` so the next holder's token is higher) no
    longer commits; an expired one that nobody took over still does, since its token is current.
    """
    if current is None:
        raise LeaseLost(lease.session_id, "the session has no lease (it was released)")
    if current.owner == lease.owner and current.token == lease.token and current.expires_at == 0:
        raise LeaseLost(lease.session_id, "the lease was released")
    if current.session_id != lease.session_id:
        raise LeaseLost(
            current.session_id, f"the lease presented is for session {lease.session_id!r}"
        )
    if current.token != lease.token or current.owner != lease.owner:
        raise LeaseLost(
            lease.session_id,
            f"taken over by {current.owner!r} (fencing token {current.token}, ours {lease.token})",
        )


def take_lease(
    current: Lease | None,
    session_id: str,
    owner: str,
    ttl: float,
    *,
    take_over: Lease | None = None,
) -> Lease:
    """The lease ``owner`` gets given the ``current`` one (the rule every backend applies).

    Another owner's live lease makes it :class:`SessionBusy`, unless it is exactly
    ``take_over`` (same owner and token: the lease the caller saw and proved dead), which is
    taken over at once. The owner's own live lease is refreshed and keeps its token; anything
    else (no lease, an expired or released one) gives a new token, one higher.
    """
    now = time.time()
    live = current is not None and current.expires_at > now
    if current is not None and current.owner != owner and live:
        dead = (
            take_over is not None
            and take_over.owner == current.owner
            and take_over.token == current.token
        )
        if not dead:
            raise SessionBusy(
                session_id, owner=current.owner, expires_at=current.expires_at, token=current.token
            )
    if current is not None and current.owner == owner and live:
        return attrs.evolve(current, expires_at=now + ttl)
    token = (current.token if current is not None else 0) + 1
    return _new_lease(session_id, owner, token, now + ttl)


def lease_is_live(lease: Lease | None, now: float | None = None) -> bool:
    """Whether a stored lease is held now (not released, not expired)."""
    return lease is not None and lease.expires_at > (time.time() if now is None else now)


def effective_state(state: InputState, claim_token: int | None, lease: Lease | None) -> InputState:
    """An input's state as everyone sees it: a claim whose lease is no longer live (released,
    expired, taken over) is ``pending`` again."""
    if state != "claimed":
        return state
    if claim_token is not None and lease_is_live(lease) and lease is not None:
        if lease.token == claim_token:
            return "claimed"
    return "pending"


# -- the events the mailbox logs (their data shapes are part of the observation contract) -------


def same_input(existing: PendingInput, draft: InputDraft) -> bool:
    """Whether ``draft`` is the input ``existing`` already holds (text, items and ingress, items
    compared in their JSON form): then enqueueing it again with the same key returns
    ``existing``; otherwise the key is an :class:`lash.InputConflict`."""
    return (
        existing.text == draft.text
        and existing.ingress == draft.ingress
        and to_data(list(existing.items)) == to_data(list(draft.items))
    )


def input_event(kind: str, pending: PendingInput, **extra: Any) -> EventDraft:
    """``input_queued`` / ``input_claimed`` / ``input_cancelled`` for ``pending``."""
    data: dict[str, Any] = {"input": to_data(pending), **extra}
    return EventDraft(kind, data)


def command_event(kind: str, command: QueuedCommand, **extra: Any) -> EventDraft:
    """``command_queued`` / ``command_applied`` for ``command``."""
    data: Mapping[str, Any] = {"command": to_data(command), **extra}
    return EventDraft(kind, data)
