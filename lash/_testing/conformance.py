"""The store conformance suite: every contract check, run against a :class:`lash.store.Store`.

This module is the runner and its public surface (re-exported by :mod:`lash.testing`); the checks
live in :mod:`lash._testing.store_checks` (leases, fencing, compare-and-swap, races),
:mod:`lash._testing.store_data_checks` (what a commit persists and how it reads back),
:mod:`lash._testing.store_id_checks` (which session ids a store accepts),
:mod:`lash._testing.store_mailbox_checks` (leases per execution, the mailbox, the event log),
:mod:`lash._testing.store_process_checks` (process records, claims, expiry, the outbox) and
:mod:`lash._testing.store_blob_checks` (content-addressed blobs).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TypeAlias

import attrs

from lash._contract.annotations import resolve_here
from lash._store.protocol import Store
from lash._testing import store_blob_checks as _store_blob_checks
from lash._testing import store_checks as _store_checks
from lash._testing import store_data_checks as _store_data_checks
from lash._testing import store_id_checks as _store_id_checks
from lash._testing import store_mailbox_checks as _store_mailbox_checks
from lash._testing import store_process_checks as _store_process_checks
from lash._testing.store_checks import describe

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

#: Builds a fresh store: a store class, a function, or an async function.
StoreFactory: TypeAlias = Callable[[], Store | Awaitable[Store]]
#: One conformance check: a coroutine function taking a fresh store.
StoreCheck: TypeAlias = Callable[[Store], Awaitable[None]]

#: Every check by name, in the order :func:`check_store` runs them.
CHECKS: dict[str, StoreCheck] = {
    check.__name__.removeprefix("check_"): check
    for check in (
        *_store_checks.CHECKS,
        *_store_data_checks.CHECKS,
        *_store_id_checks.CHECKS,
        *_store_mailbox_checks.CHECKS,
        *_store_process_checks.CHECKS,
        *_store_blob_checks.CHECKS,
    )
}

#: The names of every check, in order: ``@pytest.mark.parametrize("check", STORE_CHECKS)``.
STORE_CHECKS: tuple[str, ...] = tuple(CHECKS)


@attrs.frozen
class ConformanceReport:
    """What :func:`check_store` ran: ``checks`` in order, each one's ``durations`` in seconds."""

    checks: tuple[str, ...]
    durations: Mapping[str, float] = attrs.field(factory=dict)

    __module__ = "lash.testing"


class StoreConformanceError(AssertionError):
    """One or more conformance checks failed; ``failures`` maps each check's name to its error."""

    __module__ = "lash.testing"

    def __init__(self, failures: Mapping[str, BaseException], total: int) -> None:
        self.failures = dict(failures)
        lines = "\n".join(f"  - {name}: {describe(exc)}" for name, exc in self.failures.items())
        super().__init__(
            f"the store failed {len(self.failures)} of {total} conformance checks:\n{lines}"
        )


async def check_store(
    factory: StoreFactory,
    *,
    checks: Iterable[str] | None = None,
    timeout: float | None = 60.0,
) -> ConformanceReport:
    """Run conformance checks against stores from ``factory`` and report every failure at once.

    Each check gets a fresh store from ``factory`` (called with no arguments; it may return the
    store or an awaitable of it) and the store is closed after the check. Checks run one after
    another, in the order of :data:`CHECKS`.

    :param checks: names of the checks to run (default: all of :data:`CHECKS`).
    :param timeout: seconds one check may take before it counts as failed (None: no limit).
    :returns: the names of the checks that ran, when every one passed.
    :raises StoreConformanceError: (an :class:`AssertionError`) naming every failed check with its
        message; ``failures`` holds the original exceptions.
    :raises KeyError: when ``checks`` names an unknown check.
    """
    names = list(CHECKS) if checks is None else list(checks)
    _resolve(names)  # unknown names fail before any store is built
    failures: dict[str, BaseException] = {}
    durations: dict[str, float] = {}
    for name in names:
        started = time.perf_counter()
        try:
            await run_store_check(name, factory, timeout=timeout)
        except Exception as exc:
            failures[name] = exc
        durations[name] = time.perf_counter() - started
    if failures:
        raise StoreConformanceError(failures, len(names))
    return ConformanceReport(tuple(names), durations)


async def run_store_check(
    check: str | StoreCheck, factory: StoreFactory, *, timeout: float | None = 60.0
) -> None:
    """Run one check (by name, or a check function) against a fresh store from ``factory``.

    Meant for one test case per check::

        @pytest.mark.parametrize("check", lash.testing.STORE_CHECKS)
        async def test_my_store(check):
            await lash.testing.run_store_check(check, MyStore)

    The check's own exception propagates (with a note naming the check), so pytest shows where
    the contract broke. The store is closed afterwards; a failing ``close()`` fails the check.
    """
    ((name, func),) = _resolve([check]).items()
    made = factory()
    # A Store is never awaitable, so anything awaitable is a coroutine (or task) building one.
    store = await made if inspect.isawaitable(made) else made
    deadline = asyncio.timeout(timeout)
    try:
        async with deadline:
            await func(store)
    except BaseException as exc:
        # The check's failure is the news; a close() that also fails must not hide it.
        with contextlib.suppress(Exception):
            await store.close()
        if isinstance(exc, TimeoutError) and deadline.expired():
            raise AssertionError(f"store check {name!r} did not finish in {timeout} s") from exc
        exc.add_note(f"lash store conformance check {name!r}")
        raise
    try:
        await store.close()
    except Exception as exc:
        raise AssertionError(f"store.close() raised {describe(exc)}") from exc


def _resolve(checks: Iterable[str | StoreCheck]) -> dict[str, StoreCheck]:
    out: dict[str, StoreCheck] = {}
    unknown = []
    for check in checks:
        if callable(check):
            out[getattr(check, "__name__", repr(check)).removeprefix("check_")] = check
        elif check in CHECKS:
            out[check] = CHECKS[check]
        else:
            unknown.append(check)
    if unknown:
        raise KeyError(f"unknown store checks {unknown}; known: {', '.join(CHECKS)}")
    return out


# ConformanceReport says it lives in lash.testing: resolve its annotations here.
resolve_here(globals())
