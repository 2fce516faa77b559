"""The rules every store applies to process records, written once (like :mod:`lash._store.leases`)
and public in :mod:`lash.store`.

A backend keeps the rows; these functions decide what a row becomes: whether a key is reused
with the same content, what a claim does to a record, and what an expired claim means for each
recovery disposition.
"""

from __future__ import annotations

from typing import Any, Literal

import attrs

from lash._contract.serialization import to_data
from lash._contract.turn_types import PROCESS_TERMINAL, ProcessRecord
from lash._store.records import EventDraft, ProcessDraft
from lash.errors import LeaseLost

#: What a store does with a ``running`` process whose claim expired.
Expiry = Literal["rerun", "abandon", "fail", "keep"]


def new_process(draft: ProcessDraft, now: float) -> ProcessRecord:
    """The ``pending`` record ``draft`` starts."""
    return ProcessRecord(
        id=draft.id,
        kind=draft.kind,
        session_id=draft.session_id,
        status="pending",
        payload=draft.payload,
        key=draft.key,
        recovery=draft.recovery,
        max_attempts=draft.max_attempts,
        timeout=draft.timeout,
        source=draft.source,
        created_at=now,
    )


def same_process(existing: ProcessRecord, draft: ProcessDraft) -> bool:
    """Whether starting ``draft`` again under ``existing``'s key is the same start (kind,
    session and payload, the payload compared in JSON form): then it returns ``existing``;
    otherwise the key is an :class:`lash.InputConflict`."""
    return (
        existing.kind == draft.kind
        and existing.session_id == draft.session_id
        and to_data(existing.payload) == to_data(draft.payload)
    )


def on_expiry(record: ProcessRecord) -> Expiry:
    """What an expired claim on the ``running`` ``record`` means: a rerunnable process with
    attempts left runs again; one without fails; an owner-bound one is abandoned; an externally
    owned one is left to its owner."""
    if record.recovery == "rerunnable":
        return "rerun" if record.attempts < record.max_attempts else "fail"
    if record.recovery == "externally_owned":
        return "keep"
    return "abandon"


def claim_expired(record: ProcessRecord, now: float) -> bool:
    """Whether ``record`` is ``running`` under a claim that expired (an externally owned process
    started by its worker and waiting for ``complete`` has no claim: ``expires_at`` None)."""
    return record.status == "running" and record.expires_at is not None and record.expires_at <= now


def claimed_by(record: ProcessRecord, owner: str, *, ttl: float, now: float) -> ProcessRecord:
    """``record`` claimed by ``owner``: running, a new token, one more attempt."""
    return attrs.evolve(
        record,
        status="running",
        owner=owner,
        token=record.token + 1,
        expires_at=now + ttl,
        attempts=record.attempts + 1,
        started_at=now,
    )


def settled_on_expiry(record: ProcessRecord, now: float) -> ProcessRecord | None:
    """The terminal record an expired claim leaves (``abandoned``, or ``failed`` when a
    rerunnable process used all its attempts); ``None`` when it may run again or is kept."""
    what = on_expiry(record)
    if what == "abandon":
        error = f"its worker {record.owner} died (owner-bound processes are never run twice)"
        return settle_record(record, "abandoned", error=error, now=now)
    if what == "fail":
        error = (
            f"its worker {record.owner} died on attempt {record.attempts} of {record.max_attempts}"
        )
        return settle_record(record, "failed", error=error, now=now)
    return None


def settle_record(
    record: ProcessRecord,
    status: str,
    *,
    result: Any = None,
    error: str | None = None,
    now: float,
    notified: bool = False,
) -> ProcessRecord:
    """``record`` settled in the terminal ``status``: its claim ends; it is not notified yet,
    unless ``notified`` (its finisher has nothing to notify)."""
    return attrs.evolve(
        record,
        status=status,  # type: ignore[arg-type]  # checked by the caller against PROCESS_TERMINAL
        result=result,
        error=error,
        expires_at=None,
        finished_at=now,
        notified=notified,
    )


def process_event(kind: str, record: ProcessRecord) -> EventDraft:
    """``process_started`` / ``process_running`` / ``process_progress`` / ``process_finished``
    for ``record``, logged in its session (the record's JSON form, as observers read it)."""
    return EventDraft(kind, {"process": to_data(record)})


def check_claim(process_id: str, token: int, record: ProcessRecord | None) -> ProcessRecord:
    """``record`` (the stored process ``process_id``, or ``None``) while ``token`` is its claim:
    what a heartbeat, a park and a finish by a worker check first.

    :raises LeaseLost: the process is unknown, not running, or claimed with another token (its
        claim expired and another worker took it over, or it was settled).
    """
    if record is None or record.status != "running" or record.token != token:
        raise LeaseLost(
            record.session_id if record is not None and record.session_id else "-",
            f"process {process_id!r} is not claimed by token {token} any more",
        )
    return record


def finish_record(
    process_id: str,
    record: ProcessRecord | None,
    token: int | None,
    *,
    status: str,
    result: Any = None,
    error: str | None = None,
    now: float,
    notified: bool = False,
) -> ProcessRecord:
    """The record ``finish_process`` leaves: ``record`` settled in ``status``, by the worker
    holding claim ``token`` (:func:`check_claim`), or, with ``token`` None, by an external
    completion; ``record`` itself (unchanged: nothing to write) when an external completion
    finds it finished already (the first settlement stands).

    :raises ValueError: ``status`` is not terminal.
    :raises LeaseLost: the claim is not ``token``'s; or, external, the process is unknown.
    """
    if status not in PROCESS_TERMINAL:
        raise ValueError(f"process status {status!r} is not terminal")
    if token is not None:
        record = check_claim(process_id, token, record)
    elif record is None:
        raise LeaseLost("-", f"process {process_id!r} is unknown")
    elif record.finished:
        return record
    return settle_record(record, status, result=result, error=error, now=now, notified=notified)


def cancel_record(record: ProcessRecord, reason: str, now: float) -> ProcessRecord:
    """The record a request to cancel leaves: a ``pending`` one ``cancelled`` at once (logged as
    ``process_finished``), a ``running`` one with ``cancel_requested`` (its worker sees it at
    its next heartbeat); ``record`` itself (nothing to write) when it is finished or was asked
    already (the first reason stands)."""
    if record.finished or record.cancel_requested is not None:
        return record
    if record.status == "pending":
        done = settle_record(record, "cancelled", error=reason, now=now)
        return attrs.evolve(done, cancel_requested=reason)
    return attrs.evolve(record, cancel_requested=reason)
